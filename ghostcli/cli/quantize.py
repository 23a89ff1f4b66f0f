"""`ghostcli quantize`: INT8 post-training quantization (NNCF) into an OpenVINO IR, with its cost and gain."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ghostcli.cli.common import AllowPickleOpt, ForceOpt, InputSizeOpt, JsonOpt, ModelArg, TrustFactoryOpt, WeightsOpt

HELP = """INT8 post-training quantization with NNCF into an OpenVINO IR for Intel CPUs.

Calibrates on real images (an image folder, or the built-in 'digits' set); with no data at all on 'synthetic-bn' images, optimised until every BatchNorm layer of the model sees its running statistics (ZeroQ); or, with a loud warning, on synthetic noise.

Reports, side by side from one run: FP32 (f32 inference precision) vs INT8 latency on the OpenVINO CPU plugin (batch 1, interleaved runs, median; the CPU's default precision, often bf16, is shown too), IR size, the precision the layers really execute at, top-1 agreement with FP32 on the evaluation images, and accuracy when those have class labels.

With labels and --max-accuracy-drop, NNCF's accuracy-controlled quantization keeps the most sensitive layers in floating point.

Examples:

  ghostcli quantize resnet20 --calib-data digits --subset-size 300 -o resnet20_int8.xml

  ghostcli quantize ghost_resnet50 --calib-data ~/imagenet/val --eval-data ~/imagenet/val -o g50_int8.xml

  ghostcli quantize ghost_resnet50.safetensors --calib-data DIR --max-accuracy-drop 1% -o ghost_resnet50_int8.xml

(DIR: your labelled images, DIR/<class>/<image>; ghost_resnet50.safetensors comes from 'ghostcli ghostify resnet50 -o ghost_resnet50.safetensors'.)

  ghostcli quantize resnet56 --calib-data synthetic --json

  ghostcli quantize resnet20 --input-size 3x16x16 --calib-data synthetic-bn --calib-images 64 --eval-data digits
"""


def _floats(text: str | None, what: str) -> tuple[float, ...] | None:
    """Comma-separated numbers (checked later by ``check_normalization``)."""
    from ghostcli.errors import UsageError

    if text is None:
        return None
    try:
        return tuple(float(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError:
        raise UsageError(f"cannot read {what} {text!r}: use comma-separated numbers such as "
                         "0.485,0.456,0.406") from None


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


def _render(result: Any) -> None:
    from ghostcli import render
    from ghostcli.analysis.env import cpu_isa, isa_text
    from ghostcli.units import format_bytes, format_input_size, format_ms, format_ratio, format_speedup

    f32, dflt, q = result.fp32, result.fp32_default, result.int8
    rows = [
        ("executed precision", f32.executed_precision, dflt.executed_precision, q.executed_precision),
        ("latency (median)", format_ms(f32.latency_ms), format_ms(dflt.latency_ms), format_ms(q.latency_ms)),
        ("latency (min)", format_ms(f32.latency_min_ms), format_ms(dflt.latency_min_ms), format_ms(q.latency_min_ms)),
        ("speed-up vs FP32 f32", format_ratio(1.0), format_ratio(f32.latency_ms / dflt.latency_ms),
         format_ratio(result.speedup)),
        ("IR size", format_bytes(f32.size_bytes or 0), format_bytes(dflt.size_bytes or 0),
         format_bytes(q.size_bytes or 0)),
    ]
    if result.labeled:
        rows.append(("top-1 accuracy", _pct(f32.top1_accuracy), "-", _pct(q.top1_accuracy)))
    title = f"{result.model} ({format_input_size(result.input_size)}): FP32 vs INT8 on OpenVINO CPU"
    render.stdout.print(render.table(title, ["", "FP32 (f32)", f"FP32 ({dflt.executed_precision}, default)", "INT8"],
                                     rows, numeric=(1, 2, 3)))
    m = result.measurement
    lines = [
        (f"top-1 agreement with FP32: {_pct(result.top1_agreement)} on {result.eval_images} images "
         f"from {result.eval_data}"),
    ]
    if result.accuracy_drop is not None:
        lines.append(f"accuracy drop: {100 * result.accuracy_drop:.2f} points"
                     + (f" (allowed {100 * result.max_accuracy_drop:.2f})" if result.max_accuracy_drop is not None
                        else ""))
    lines += [
        (f"quantization: {'NNCF accuracy control' if result.method == 'accuracy_control' else 'NNCF PTQ'}, "
         f"preset {result.preset}, {result.calib_images} calibration images from {result.calib_data}; "
         f"{result.fake_quantize} FakeQuantize ops; {result.int8_layers}/{result.compute_layers} conv/FC layers "
         "run in INT8"),
        (f"INT8 vs FP32 at the default precision ({dflt.executed_precision}): "
         f"{format_speedup(result.speedup_vs_default)}"),
        (f"measured on {m['device']} ({isa_text(cpu_isa())}), {m['threads']} threads, batch {m['batch']}, hint {m['hint']}, "
         f"{m['warmup']} warm-up + {m['runs']} interleaved runs, median"),
    ]
    if result.output:
        lines.append(f"wrote {result.output} (+ {Path(result.output_bin).name})")
    for line in lines:
        render.stdout.print(line, highlight=False)
    for w in result.warnings:
        render.warn(w)


def quantize_command(
    model: ModelArg,
    calib_data: Annotated[str, typer.Option("--calib-data", metavar="DATA", help="Calibration images: an image folder, 'digits' "
                                            "(built-in, real), 'synthetic-bn' (made from the model's BatchNorm "
                                            "statistics) or 'synthetic' (noise; accuracy then unknown).")]
    = "digits",
    subset_size: Annotated[int, typer.Option("--subset-size", "--calib-images", metavar="N", help="Number of calibration "
                                             "images.")] = 300,
    preset: Annotated[str, typer.Option("--preset", metavar="PRESET", help="NNCF preset: 'performance' (symmetric) or 'mixed' "
                                        "(asymmetric activations).")] = "performance",
    eval_data: Annotated[str | None, typer.Option("--eval-data", metavar="DATA", help="Evaluation images (folder | digits | "
                                                  "synthetic); default: digits' val split, or the calibration images "
                                                  "themselves for a folder.")]
    = None,
    eval_size: Annotated[int, typer.Option("--eval-size", metavar="N", help="At most this many evaluation images.")] = 300,
    max_accuracy_drop: Annotated[str | None, typer.Option("--max-accuracy-drop", metavar="DROP", help="Largest absolute top-1 drop "
                                                          "allowed (0.01 or 1%); needs labelled evaluation "
                                                          "images; uses NNCF accuracy control.")] = None,
    output: Annotated[Path | None, typer.Option("-o", "--output", metavar="FILE", help="Write the INT8 IR here (.xml + .bin).")]
    = None,
    force: ForceOpt = False,
    input_size: InputSizeOpt = None,
    weights: WeightsOpt = None,
    allow_pickle: AllowPickleOpt = False,
    trust_factory: TrustFactoryOpt = False,
    mean: Annotated[str | None, typer.Option("--mean", metavar="X,X,X", help="Normalization mean, e.g. 0.485,0.456,0.406 "
                                             "(default ImageNet).")] = None,
    std: Annotated[str | None, typer.Option("--std", metavar="X,X,X", help="Normalization std, e.g. 0.229,0.224,0.225.")] = None,
    ignored_types: Annotated[list[str] | None, typer.Option("--ignore-type", metavar="TYPE", help="OpenVINO op type NNCF must not "
                                                            "quantize (repeatable), e.g. GroupConvolution.")] = None,
    threads: Annotated[int | None, typer.Option("--threads", metavar="N", help="CPU threads for timing (default: OpenVINO's).")]
    = None,
    runs: Annotated[int, typer.Option("--runs", metavar="N", help="Timed runs per variant (interleaved).")] = 50,
    warmup: Annotated[int, typer.Option("--warmup", metavar="N", help="Warm-up runs per variant.")] = 5,
    as_json: JsonOpt = False,
) -> None:
    """Quantize MODEL to INT8 (see the command help)."""
    from ghostcli import render
    from ghostcli.deploy.options import QuantizeOptions
    from ghostcli.units import parse_input_size, parse_percent
    from ghostcli.usercode import stdout_to_stderr

    options = QuantizeOptions(  # checked here, before anything is loaded
        calib_data=calib_data, subset_size=subset_size, preset=preset, eval_data=eval_data, eval_size=eval_size,
        max_accuracy_drop=parse_percent(max_accuracy_drop) if max_accuracy_drop is not None else None,
        input_size=parse_input_size(input_size) if input_size else None, mean=_floats(mean, "--mean"),
        std=_floats(std, "--std"), output=output, force=force, threads=threads, runs=runs, warmup=warmup,
        ignored_types=tuple(ignored_types or ()))
    from ghostcli.deploy.quantize import quantize_model
    from ghostcli.resolve import resolve_model

    with stdout_to_stderr():  # a factory's prints must not precede the report / JSON
        loaded = resolve_model(model, weights=str(weights) if weights else None, allow_pickle=allow_pickle,
                               trust_factory=trust_factory)
    with render.progress_bar() as progress:
        result = quantize_model(loaded, options=options, progress=progress)
    if as_json:
        render.print_json("quantize", result)
        for w in result.warnings:
            render.warn(w)
    else:
        _render(result)


def register(app: typer.Typer) -> None:
    """Register ``ghostcli quantize``."""
    app.command(name="quantize", help=HELP)(quantize_command)
