"""`ghostcli check`: the CI gate on MACs, parameters, weights and (opt-in) latency."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ghostcli.analysis.check_keys import CHECK_KEYS
from ghostcli.cli.check_view import spell_help
from ghostcli.cli.common import JsonOpt, TrustFactoryOpt

if TYPE_CHECKING:
    from ghostcli.analysis.check import CheckReport

HELP = """Check a model against size limits and a committed baseline; exit 3 when one is exceeded.

Limits come from the options below or from ghostcli.toml / [tool.ghostcli] in pyproject.toml
(found from the current directory up to the repository root; options win).

Latency limits are opt-in: prefer --latency-reference with --max-latency-ratio (both timed
in the same run) over --max-latency-ms, which depends on the machine and its load.

MODEL may be an exported .onnx or OpenVINO .xml (INT8 IRs too): MACs, parameters and weights are
counted on its graph and latency is timed on its runtime (as in 'ghostcli profile').

Exit codes: 0 all limits hold, 3 a limit is exceeded, 1 the check itself failed, 2 bad usage.

Examples:

  ghostcli ghostify resnet50 -o ghost_resnet50.safetensors

  ghostcli check ghost_resnet50.safetensors --max-macs 2.5G --max-params 15M

  ghostcli check ghostnet_100 --baseline ci/baseline.json --update-baseline

  ghostcli check ghostnet_100 --baseline ci/baseline.json --tolerance 2%

  ghostcli check ghostnet_100 --latency-reference mobilenet_v2 --max-latency-ratio 1.2

  ghostcli export resnet50 --format openvino -o resnet50.xml

  ghostcli check resnet50.xml --max-params 26M --latency-reference resnet50 --max-latency-ratio 1.2
"""

def _help(key: str) -> str:
    """The help of the option for check key ``key`` (from the table), settings spelled as options."""
    return spell_help(CHECK_KEYS[key].help)


def check_cmd(
    model: Annotated[str | None, typer.Argument(metavar="MODEL", help=_help("model"))] = None,
    max_macs: Annotated[str | None, typer.Option("--max-macs", metavar="COUNT", help=_help("max-macs"))] = None,
    max_params: Annotated[str | None, typer.Option("--max-params", metavar="COUNT", help=_help("max-params"))] = None,
    max_weights: Annotated[str | None, typer.Option("--max-weights", metavar="BYTES", help=_help("max-weights"))] = None,
    max_latency_ms: Annotated[str | None, typer.Option("--max-latency-ms", metavar="MS", help=_help("max-latency-ms"))] = None,
    latency_reference: Annotated[
        str | None, typer.Option("--latency-reference", metavar="MODEL", help=_help("latency-reference"))
    ] = None,
    max_latency_ratio: Annotated[
        str | None, typer.Option("--max-latency-ratio", metavar="X", help=_help("max-latency-ratio"))
    ] = None,
    baseline: Annotated[Path | None, typer.Option("--baseline", metavar="FILE", help=_help("baseline"))] = None,
    tolerance: Annotated[str | None, typer.Option("--tolerance", metavar="PCT", help=_help("tolerance"))] = None,
    latency_tolerance: Annotated[
        str | None, typer.Option("--latency-tolerance", metavar="PCT", help=_help("latency-tolerance"))
    ] = None,
    update_baseline: Annotated[
        bool,
        typer.Option("--update-baseline", help="Write the measured values to --baseline (replacing it)."),
    ] = False,
    input_size: Annotated[str | None, typer.Option("--input-size", metavar="CxHxW", help=_help("input-size"))] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", "-b", metavar="N", help=_help("batch-size"))] = None,
    device: Annotated[str | None, typer.Option("--device", "-d", metavar="DEVICE", help=_help("device"))] = None,
    threads: Annotated[int | None, typer.Option("--threads", metavar="N", help=_help("threads"))] = None,
    warmup: Annotated[int | None, typer.Option("--warmup", metavar="N", help=_help("warmup"))] = None,
    runs: Annotated[int | None, typer.Option("--runs", metavar="N", help=_help("runs"))] = None,
    channels_last: Annotated[
        bool | None,
        typer.Option("--channels-last/--no-channels-last", help=_help("channels-last"), show_default=False),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", metavar="FILE", help="Config file (default: nearest ghostcli.toml or pyproject.toml)."),
    ] = None,
    no_config: Annotated[bool, typer.Option("--no-config", help="Ignore config files.")] = False,
    trust_factory: TrustFactoryOpt = False,
    json_out: JsonOpt = False,
) -> None:
    options = dict(locals())  # the parameters: one per check key (named as its settings field) and the rest
    from ghostcli.errors import RegressionError, UsageError

    if config is not None and no_config:
        raise UsageError("choose one of --config and --no-config")
    report = _run(options, config=config, no_config=no_config, update_baseline=update_baseline,
                  trust_factory=trust_factory)

    from ghostcli.cli.check_view import print_report, regression_message

    if json_out:
        from ghostcli import render

        render.print_json("check", report.to_dict())
    else:
        print_report(report)
    if not report.passed:
        if json_out:  # the report is the one JSON object on stdout (docs/output.md): no error object after it
            typer.echo(f"Error: {regression_message(report)}", err=True)
            raise typer.Exit(RegressionError.exit_code)
        raise RegressionError(regression_message(report))


def _run(options: dict[str, Any], *, config: Path | None, no_config: bool, update_baseline: bool,
         trust_factory: bool) -> CheckReport:
    """Find and read the config, merge the options over it, and run the check."""
    from ghostcli.analysis.check import run_check
    from ghostcli.analysis.check_config import build_settings, find_config, read_config
    from ghostcli.resolve import resolve_model_or_deployed

    cfg_path = None if no_config else (config or find_config())
    cfg = read_config(cfg_path) if cfg_path else {}
    given = {k.key: options[k.field] for k in CHECK_KEYS.values()}
    settings = build_settings(given, cfg, cfg_path)
    return run_check(settings, update_baseline=update_baseline,
                     load=lambda spec: resolve_model_or_deployed(spec, trust_factory=trust_factory))


def register(app: typer.Typer) -> None:
    """Register ``ghostcli check``."""
    app.command(name="check", help=HELP)(check_cmd)
