"""`ghostcli check`: the CI gate on MACs, parameters, weights and (opt-in) latency."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ghostcli.cli.common import InputSizeOpt, JsonOpt, TrustFactoryOpt

HELP = """Check a model against size limits and a committed baseline; exit 3 when one is exceeded.

Limits come from the options below or from ghostcli.toml / [tool.ghostcli] in pyproject.toml
(found from the current directory up to the repository root; options win). Exit codes:
0 all limits hold, 3 a limit is exceeded, 1 the check itself failed, 2 bad usage.
Latency limits are opt-in: prefer --latency-reference with --max-latency-ratio (both timed
in the same run) over --max-latency-ms, which depends on the machine and its load.

Examples:

  ghostcli check ghost_resnet50.safetensors --max-macs 2.5G --max-params 15M

  ghostcli check ghostnet_100 --baseline ci/baseline.json --tolerance 2%

  ghostcli check ghostnet_100 --baseline ci/baseline.json --update-baseline

  ghostcli check ghostnet_100 --latency-reference mobilenet_v2 --max-latency-ratio 1.2
"""


def check_cmd(
    model: Annotated[
        str | None,
        typer.Argument(metavar="MODEL", help="Model to check (default: 'model' from the config file)."),
    ] = None,
    max_macs: Annotated[
        str | None,
        typer.Option("--max-macs", help="Most MACs allowed (fvcore total), e.g. 2.5G."),
    ] = None,
    max_params: Annotated[
        str | None,
        typer.Option("--max-params", help="Most parameters allowed, e.g. 15M or 500k."),
    ] = None,
    max_weights: Annotated[
        str | None,
        typer.Option("--max-weights", help="Most weight bytes allowed, e.g. 60M (bytes)."),
    ] = None,
    max_latency_ms: Annotated[
        str | None,
        typer.Option("--max-latency-ms", help="Most median latency in ms (absolute; opt-in, flaky on shared runners)."),
    ] = None,
    latency_reference: Annotated[
        str | None,
        typer.Option("--latency-reference", help="A model timed interleaved in the same run, for ratio limits."),
    ] = None,
    max_latency_ratio: Annotated[
        str | None,
        typer.Option("--max-latency-ratio", help="Most median latency relative to --latency-reference, e.g. 0.8."),
    ] = None,
    baseline: Annotated[
        Path | None,
        typer.Option("--baseline", help="Baseline JSON to compare against (written by --update-baseline)."),
    ] = None,
    tolerance: Annotated[
        str | None,
        typer.Option("--tolerance", help="Growth allowed over the baseline MACs/params, e.g. 2% (default 0%)."),
    ] = None,
    latency_tolerance: Annotated[
        str | None,
        typer.Option("--latency-tolerance", help="Latency growth allowed over the baseline, e.g. 10% (opt-in)."),
    ] = None,
    update_baseline: Annotated[
        bool,
        typer.Option("--update-baseline", help="Write the measured values to --baseline (replacing it)."),
    ] = False,
    input_size: InputSizeOpt = None,
    batch_size: Annotated[
        int | None,
        typer.Option("--batch-size", "-b", help="Batch size for latency (default 1)."),
    ] = None,
    device: Annotated[str | None, typer.Option("--device", "-d", help="cpu, cuda or openvino, for latency.")] = None,
    threads: Annotated[int | None, typer.Option("--threads", help="CPU threads for latency.")] = None,
    warmup: Annotated[int | None, typer.Option("--warmup", help="Untimed runs (default 5).")] = None,
    runs: Annotated[int | None, typer.Option("--runs", help="Timed runs (default 30).")] = None,
    channels_last: Annotated[
        bool | None,
        typer.Option(
            "--channels-last/--no-channels-last",
            help="Time cpu/cuda models in channels_last (NHWC) memory format (default: off, or the config file's "
            "channels-last).",
            show_default=False,
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="Config file (default: nearest ghostcli.toml or pyproject.toml)."),
    ] = None,
    no_config: Annotated[bool, typer.Option("--no-config", help="Ignore config files.")] = False,
    trust_factory: TrustFactoryOpt = False,
    json_out: JsonOpt = False,
) -> None:
    from ghostcli.analysis.budget import build_settings, find_config, read_config, run_check
    from ghostcli.errors import RegressionError, UsageError

    if config is not None and no_config:
        raise UsageError("choose one of --config and --no-config")
    cfg_path = None if no_config else (config or find_config())
    cfg = read_config(cfg_path) if cfg_path else {}
    cli = {
        "model": model, "max-macs": max_macs, "max-params": max_params, "max-weights": max_weights,
        "max-latency-ms": max_latency_ms, "latency-reference": latency_reference,
        "max-latency-ratio": max_latency_ratio, "baseline": str(baseline) if baseline else None,
        "tolerance": tolerance, "latency-tolerance": latency_tolerance, "input-size": input_size,
        "batch-size": batch_size, "device": device, "threads": threads, "warmup": warmup, "runs": runs,
        "channels-last": channels_last,
    }
    settings = build_settings(cli, cfg, cfg_path)
    from ghostcli.resolve import resolve_model

    report = run_check(settings, update_baseline=update_baseline,
                       load=lambda spec: resolve_model(spec, trust_factory=trust_factory))

    from ghostcli import render
    from ghostcli.analysis.budget import format_value

    if json_out:
        render.print_json("check", report.to_dict())
    else:
        rows = [[r.name, format_value(r.measured, r.unit), "<= " + format_value(r.limit, r.unit),
                 "[green]pass[/]" if r.passed else "[red bold]FAIL[/]", r.source, r.detail] for r in report.results]
        if report.baseline_updated:
            m = report.measured
            rows += [[k, format_value(v, u), "-", "recorded", report.baseline or "", ""]
                     for k, v, u in (("macs", m["macs"], "MAC"), ("params", m["params"], "params"),
                                     ("latency_ms", m["latency_median_ms"], "ms"),
                                     ("latency_ratio", m["latency_ratio"], "x")) if v is not None]
        title = f"ghostcli check: {report.model} (input {'x'.join(map(str, report.input_size))})"
        render.stdout.print(render.table(title, ["Limit", "Measured", "Allowed", "Verdict", "From", "Note"], rows,
                                         numeric=(1, 2)))
        if report.baseline_updated:
            render.stdout.print(f"Baseline written to {report.baseline}.", highlight=False, soft_wrap=True)
        render.stdout.print("MACs: fvcore total (conv, linear, norms, pooling); 1 multiply-add = 1 MAC.",
                            highlight=False, soft_wrap=True)
        if report.conditions is not None:
            from ghostcli.cli.profile_view import format_conditions

            render.stdout.print(format_conditions(report.conditions, report.environment), highlight=False,
                                soft_wrap=True)
    if not report.passed:
        fails = report.failures
        what = "; ".join(f"{r.name} {format_value(r.measured, r.unit)} > {format_value(r.limit, r.unit)}"
                         for r in fails)
        raise RegressionError(f"{len(fails)} of {len(report.results)} limits exceeded: {what}")


def register(app: typer.Typer) -> None:
    """Register ``ghostcli check``."""
    app.command(name="check", help=HELP)(check_cmd)
