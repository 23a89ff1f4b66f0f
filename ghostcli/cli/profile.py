"""`ghostcli profile`: MACs, parameters, activations, memory and latency of one or more models."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Optional

import typer

from ghostcli.cli.common import AllowPickleOpt, ForceOpt, InputSizeOpt, JsonOpt, TrustFactoryOpt, WeightsOpt

HELP = """Measure MACs, parameters, activations, memory and latency of one or more models.

MACs are counted with fvcore: one fused multiply-add = one MAC, the GhostNet paper's "FLOP".
'MACs' includes conv, linear/matmul, norms and pooling; 'conv+linear' is the paper's convention
(BN excluded). JSON 'flops' = 2 x MACs.

Several models give one comparison table with ratios against the first.

A MODEL may be an exported .onnx or OpenVINO .xml (with its .bin; INT8 IRs too): counted on its
graph and timed on its own runtime (.xml: OpenVINO; .onnx: ONNX Runtime, or OpenVINO with
--device openvino), interleaved with the others; --layer-times lines its nodes up with the
PyTorch model's layers. The 'Runtimes:' line says what ran.

Latency: warm-up runs, then timed runs (by default 50, or fewer after 5 s with at least 10); the
conditions (device, threads, batch, dtype, versions) are printed beside the numbers.

Examples:

  ghostcli profile resnet50

  ghostcli ghostify resnet50 -o ghost_resnet50.safetensors

  ghostcli profile resnet50 ghost_resnet50.safetensors --batch-size 1,8

  ghostcli profile resnet50 ghost_resnet50.safetensors --channels-last --threads 1

  ghostcli profile ghostnet_100 --device openvino --ov-precision bf16 --threads 4

  ghostcli profile resnet50 ghost_resnet50.safetensors --device openvino --layer-times --threads 1

  ghostcli profile resnet56 --per-layer --json > profile.json

  ghostcli export resnet50 --format openvino -o resnet50.xml

  ghostcli profile resnet50 resnet50.xml --layer-times
"""


def parse_batch_sizes(text: str) -> list[int]:
    """``"1,8,32"`` -> ``[1, 8, 32]``; zero, negative or non-integer sizes raise UsageError."""
    from ghostcli.errors import UsageError

    sizes = []
    for part in str(text).split(","):
        part = part.strip()
        if not part.isdigit():
            raise UsageError(f"cannot read batch size {text!r}: use positive integers such as 1 or 1,8,32")
        if int(part) < 1:
            raise UsageError(f"batch size must be at least 1, got {part}")
        sizes.append(int(part))
    return sizes


def profile_cmd(
    models: Annotated[list[str], typer.Argument(metavar="MODEL...", help="One or more models (an exported .onnx or OpenVINO .xml too); the first is the reference for ratios.")],
    input_size: InputSizeOpt = None,
    batch_size: Annotated[str, typer.Option("--batch-size", "-b", metavar="N[,N...]", help="Batch size(s) for memory and latency, e.g. 1 or 1,8,32.")] = "1",
    device: Annotated[str, typer.Option("--device", "-d", metavar="DEVICE", help="cpu, cuda or openvino (OpenVINO runtime on CPU).")] = "cpu",
    dtype: Annotated[str, typer.Option("--dtype", metavar="DTYPE", help="float32, float16 or bfloat16 (cpu/cuda).")] = "float32",
    ov_precision: Annotated[Optional[str], typer.Option("--ov-precision", metavar="PRECISION", help="OpenVINO inference precision hint: f32, bf16 or f16.")] = None,
    threads: Annotated[Optional[int], typer.Option("--threads", metavar="N", help="CPU threads (torch.set_num_threads / INFERENCE_NUM_THREADS).")] = None,
    warmup: Annotated[int, typer.Option("--warmup", metavar="N", help="Untimed runs before timing.")] = 5,
    runs: Annotated[Optional[int], typer.Option("--runs", metavar="N", help="Timed runs (default 50, ending early after 5 s with at least 10).")] = None,
    no_latency: Annotated[bool, typer.Option("--no-latency", help="Skip timing (MACs, params and memory only).")] = False,
    per_layer: Annotated[bool, typer.Option("--per-layer", help="Table of every leaf layer: output shape, MACs, params.")] = False,
    depth: Annotated[int, typer.Option("--depth", metavar="N", help="Module tree to this depth with MACs and params (0: none).")] = 0,
    layer_times: Annotated[bool, typer.Option("--layer-times", help="Time per layer (a Ghost module counts as one): OpenVINO's per-node counters, or forward hooks in PyTorch; several models line up layer by layer.")] = False,
    channels_last: Annotated[bool, typer.Option("--channels-last", help="Run cpu/cuda models and inputs in channels_last (NHWC) memory format: ghostified models run faster in it on CPU (docs/ghostify.md).")] = False,
    weights: WeightsOpt = None,
    allow_pickle: AllowPickleOpt = False,
    trust_factory: TrustFactoryOpt = False,
    json_out: JsonOpt = False,
    markdown: Annotated[bool, typer.Option("--markdown", help="GitHub Markdown tables on stdout.")] = False,
    plot: Annotated[Optional[Path], typer.Option("--plot", metavar="FILE", help="Also draw time and MACs per layer of the models side by side into FILE (.png, .svg or a self-contained .html; implies --layer-times; needs the 'plot' extra: matplotlib).")] = None,
    force: ForceOpt = False,
) -> None:
    from ghostcli.errors import UsageError
    from ghostcli.units import parse_input_size

    if json_out and markdown:
        raise UsageError("choose one of --json and --markdown")
    size = parse_input_size(input_size) if input_size else None
    batches = parse_batch_sizes(batch_size)

    if weights is not None and len(models) > 1:
        raise UsageError("--weights applies to a single MODEL")
    if plot is not None:
        from ghostcli.cli.plot import check_plot_output

        if no_latency:
            raise UsageError("--plot draws per-layer times: it cannot be combined with --no-latency")
        check_plot_output(plot, force)
    from ghostcli import render
    from ghostcli.analysis.profile import DEFAULT_RUNS, DEFAULT_TIME_BUDGET_S, ProfileOptions, profile_models
    from ghostcli.resolve import resolve_model_or_deployed

    options = ProfileOptions(  # checked before any model loads
        input_size=size, batch_sizes=batches, device=device, dtype=dtype, ov_precision=ov_precision,
        threads=threads, warmup=warmup, runs=DEFAULT_RUNS if runs is None else runs,
        time_budget_s=None if runs is not None else DEFAULT_TIME_BUDGET_S, latency=not no_latency,
        depth=depth, per_layer=per_layer or plot is not None, channels_last=channels_last,
        layer_times=layer_times or plot is not None)
    with render.progress_bar() as progress:
        loaded = []
        for i, spec in enumerate(models):
            progress("loading", i, len(models), spec)
            loaded.append(resolve_model_or_deployed(spec, weights=weights, allow_pickle=allow_pickle,
                                                    trust_factory=trust_factory))
        progress("loading", len(models), len(models))
        report = profile_models(loaded, options=options, progress=progress)
    if plot is not None:
        from ghostcli.cli.plot import profile_plot_data, write_plot
        from ghostcli.fsutil import display_path

        write_plot(profile_plot_data(report), plot)
        if not per_layer:  # collected for the chart only: the tables and JSON stay as asked
            report = dataclasses.replace(report, models=[dataclasses.replace(p, layers=[]) for p in report.models])
    if json_out:
        render.print_json("profile", report.to_dict())
        return
    from ghostcli.cli.profile_view import print_report

    print_report(report, markdown=markdown)
    if plot is not None:
        render.info(f"wrote {display_path(plot)}")


def register(app: typer.Typer) -> None:
    """Register ``ghostcli profile``."""
    app.command(name="profile", help=HELP, no_args_is_help=True)(profile_cmd)

