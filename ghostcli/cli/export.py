"""``ghostcli export``: ONNX or OpenVINO IR, BN folded, verified numerically against PyTorch."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ghostcli.cli.common import (
    AllowPickleOpt,
    ForceOpt,
    InputSizeOpt,
    JsonOpt,
    ModelArg,
    TrustFactoryOpt,
    WeightsOpt,
)
from ghostcli.units import format_input_size

if TYPE_CHECKING:
    from ghostcli.deploy.export import ExportResult

HELP = """Export MODEL to ONNX or OpenVINO IR and check it numerically against PyTorch.

Every conv -> BatchNorm pair is folded into the conv first, so Ghost models export as plain Conv/Concat graphs (no BatchNormalization, and no Slice where the Ghost channels divide evenly). ONNX goes through torch.onnx.export (TorchScript-based, dynamo=False), onnx.checker and onnxsim; OpenVINO IR (.xml + .bin) through openvino.convert_model.

Verification (on by default) runs the written model (onnxruntime for ONNX, OpenVINO CPU at f32 for IR) on the same random inputs as PyTorch; above --atol/--rtol the command exits 1 and writes nothing.

Examples:

  ghostcli export ghostnet_100 --format onnx -o ghostnet_100.onnx

  ghostcli ghostify resnet50 -o ghost_resnet50.safetensors

  ghostcli export ghost_resnet50.safetensors --format openvino --fp16 -o ghost_resnet50.xml

  ghostcli export resnet56 --format onnx --dynamic-batch --opset 17 --json

  ghostcli export ghostnet_100 --format openvino --input-size 3x160x160 --batch-size 4
"""


def _default_output(name: str, fmt: str) -> Path:
    stem = Path(name).stem if ("/" in name or name.endswith((".safetensors", ".pt", ".pth"))) else name
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", stem).strip("_.") or "model"
    return Path(stem + (".onnx" if fmt == "onnx" else ".xml"))


def export_command(
    model: ModelArg,
    fmt: Annotated[str, typer.Option("--format", "-f", metavar="FORMAT", help="onnx or openvino (IR .xml + .bin).")] = "onnx",
    output: Annotated[Path | None, typer.Option("--output", "-o", metavar="FILE", help="Where to write the model "
                                                "(default: MODEL's name with .onnx, or .xml + .bin for OpenVINO).")]
    = None,
    input_size: InputSizeOpt = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", "-b", metavar="N", help="Static batch size (default 1).")]
    = None,
    dynamic_batch: Annotated[bool, typer.Option("--dynamic-batch", help="Export a dynamic batch dimension; "
                                                "verification then checks batch 8 against 8 x batch 1.")] = False,
    opset: Annotated[int | None, typer.Option("--opset", metavar="N", help="ONNX opset (default: the exporter's, 20).")] = None,
    no_simplify: Annotated[bool, typer.Option("--no-simplify", help="Skip onnxsim (ONNX only).")] = False,
    fp16: Annotated[bool, typer.Option("--fp16", help="Compress IR weights to FP16 (OpenVINO only; default "
                                       "tolerances become 1e-2).")] = False,
    verify: Annotated[bool, typer.Option("--verify/--no-verify", help="Check the written model against PyTorch.")]
    = True,
    atol: Annotated[float | None, typer.Option("--atol", metavar="X", help="Absolute tolerance (default 1e-4; 1e-2 with "
                                                  "--fp16).")] = None,
    rtol: Annotated[float | None, typer.Option("--rtol", metavar="X", help="Relative tolerance (default 1e-3; 1e-2 with "
                                                  "--fp16).")] = None,
    force: ForceOpt = False,
    weights: WeightsOpt = None,
    allow_pickle: AllowPickleOpt = False,
    trust_factory: TrustFactoryOpt = False,
    as_json: JsonOpt = False,
) -> None:
    from ghostcli.deploy.options import ExportOptions, export_format

    size = None
    if input_size is not None:
        from ghostcli.units import parse_input_size

        size = parse_input_size(input_size)
    options = ExportOptions(  # checked here, before anything is loaded
        output=output if output is not None else _default_output(model, export_format(fmt)), format=fmt,
        input_size=size, batch_size=batch_size, dynamic_batch=dynamic_batch, opset=opset, simplify=not no_simplify,
        fp16=fp16, verify=verify, atol=atol, rtol=rtol, force=force)

    from ghostcli import render
    from ghostcli.deploy.export import export_model
    from ghostcli.resolve import resolve_model
    from ghostcli.usercode import stdout_to_stderr

    with stdout_to_stderr():  # a factory's prints must not precede the report / JSON
        loaded = resolve_model(model, weights=str(weights) if weights else None, allow_pickle=allow_pickle,
                               trust_factory=trust_factory)
    status = render.stderr.status(f"Exporting {loaded.name} to {options.format}...")
    with status if render.stderr.is_terminal else contextlib.nullcontext():
        result = export_model(loaded, options=options)
    for w in result.warnings:
        render.warn(w)
    if as_json:
        render.print_json("export", result)
        return
    _print_human(result)


def _print_human(r: ExportResult) -> None:
    from ghostcli import render
    from ghostcli.units import format_bytes

    shape = format_input_size(r.input_shape)
    rows = [
        ("model", r.model),
        ("format", r.format + (f" (opset {r.opset})" if r.opset else "")),
        ("exporter", r.exporter),
        ("input", shape + (" (dynamic batch)" if r.dynamic_batch else "")),
        ("written", ", ".join(r.files)),
        ("size", format_bytes(r.size_bytes) + (" (FP16 weights)" if r.fp16 else "")),
    ]
    if r.format == "onnx":
        rows.append(("onnxsim", r.simplify_status))
        rows.append(("external data", "yes" if r.external_data else "no"))
    rows.append(("BN folded into conv", f"{r.bn_folded} (left in graph: {r.bn_left})"))
    if r.ghost_modules:
        rows.append(("Ghost modules", f"{r.ghost_modules} ({r.ghost_modules_sliced} need a channel slice)"))
    ops = r.op_counts
    rows.append(("ops", ", ".join(f"{k} {v}" for k, v in ops.items()) or "-"))
    v = r.verification
    if v is None:
        rows.append(("verification", "skipped (--no-verify)"))
    else:
        rows.append(("verified with", v.backend + " on " + "; ".join(v.checks)))
        rows.append(("max abs error", f"{v.max_abs:.3g} (largest |output| {v.ref_max_abs:.3g})"))
        rows.append(("max rel error", f"{v.max_rel:.3g}"))
        rows.append(("tolerance", f"atol {v.atol:g}, rtol {v.rtol:g}: {'passed' if v.passed else 'FAILED'}"))
    render.stdout.print(render.table(None, ["", ""], rows))


def register(app: typer.Typer) -> None:
    """Add ``export`` to the app."""
    app.command(name="export", help=HELP)(export_command)
