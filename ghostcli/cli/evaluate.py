"""``ghostcli evaluate``: top-1, top-5, loss and images/s of a model, an ONNX file or an OpenVINO IR."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ghostcli.cli.common import AllowPickleOpt, InputSizeOpt, JsonOpt, TrustFactoryOpt, WeightsOpt

if TYPE_CHECKING:
    from ghostcli.loaded import LoadedModel

HELP = (
    "Measure the accuracy of MODEL on labelled images: top-1, top-5, loss and images/s.\n\n"
    "MODEL is anything ghostcli resolves (zoo name, artifact .safetensors ...), an exported .onnx file "
    "(run with onnxruntime) or an OpenVINO .xml IR (run on the CPU at f32 unless --precision says otherwise) "
    "— so an INT8 model from 'ghostcli quantize' can be checked against the float one. --data is an ImageFolder "
    "directory (DIR/<class>/<image>, resized and center-cropped; a DIR holding train/ and val/ is evaluated on "
    "its --split), or digits, fashion-mnist or idx:PATH (their --split, val by default: digits' 360 held-out images, "
    "the 10,000 test images of the others).\n\nimages/s counts time spent in the model only.\n\n"
    "Examples:\n\n"
    "  ghostcli evaluate resnet20_digits.safetensors --data digits\n\n"
    "  ghostcli evaluate model_int8.xml --data ~/imagenette/val --batch-size 32\n\n"
    "  ghostcli evaluate model.onnx --data digits --json\n\n"
    "(resnet20_digits.safetensors is what 'ghostcli train --help' makes first; model_int8.xml comes from "
    "'ghostcli quantize', model.onnx from 'ghostcli export'.)\n"
)


def evaluate_command(
    model: Annotated[str, typer.Argument(metavar="MODEL", help="What the other commands take as MODEL, an exported .onnx file or an OpenVINO .xml IR.")],
    data: Annotated[str, typer.Option("--data", metavar="DATA", help="An ImageFolder directory, digits, fashion-mnist (the Debian package) or idx:PATH (MNIST-format files).")],
    split: Annotated[
        str | None,
        typer.Option("--split", metavar="SPLIT", help="val (default) or train: of 'digits', or of a DIR holding train/ and val/."),
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", metavar="N", help="Images per batch (at least 1).")] = 64,
    device: Annotated[str, typer.Option("--device", metavar="DEVICE", help="cpu, cuda, cuda:N or auto (OpenVINO IR: cpu).")] = "auto",
    precision: Annotated[
        str, typer.Option("--precision", metavar="PRECISION", help="OpenVINO inference precision: f32, bf16 or f16 (.xml models only).")
    ] = "f32",
    input_size: InputSizeOpt = None,
    weights: WeightsOpt = None,
    workers: Annotated[int, typer.Option("--workers", metavar="N", help="Data-loading worker processes (0: none).")] = 0,
    amp: Annotated[
        bool, typer.Option("--amp", help="PyTorch mixed precision (float16 on CUDA, bfloat16 on CPU).")
    ] = False,
    allow_pickle: AllowPickleOpt = False,
    trust_factory: TrustFactoryOpt = False,
    as_json: JsonOpt = False,
) -> None:
    from ghostcli.errors import UsageError
    from ghostcli.train.data import eval_source
    from ghostcli.train.evaluate import EXPORTED_SUFFIXES, EvalOptions, evaluate_model
    from ghostcli.units import parse_input_size

    options = EvalOptions(split=split, batch_size=batch_size, device=device,
                          input_size=parse_input_size(input_size) if input_size else None,
                          precision=precision.lower(), workers=workers, amp=amp)
    suffix = Path(model).suffix.lower()
    options.check_model_kind(suffix)
    eval_source(data, split)  # a missing data folder is named before any model is loaded
    if suffix in EXPORTED_SUFFIXES:  # an exported file: every option is checked before it is opened
        given = [f"`{name}`" for name, on in (("weights", weights), ("allow_pickle", allow_pickle)) if on]
        if given:
            raise UsageError(f"{', '.join(given)} applies to PyTorch models, not to an exported {suffix} file")
        target: Path | LoadedModel = Path(model)
    else:
        from ghostcli.resolve import resolve_model

        target = resolve_model(model, weights=str(weights) if weights else None, allow_pickle=allow_pickle,
                               trust_factory=trust_factory)
    r = evaluate_model(target, data, options=options)
    from ghostcli import render

    if as_json:
        render.print_json("evaluate", r)
        return
    from ghostcli.units import format_input_size

    data_label = f"{r.data} ({r.split} split)" if r.split else r.data
    rows = [
        ("model", f"{r.model} ({r.backend})"),
        ("data", f"{data_label}: {r.images} images, {r.num_classes} classes"),
        ("device", f"{r.device}, {r.precision}, batch {r.batch_size}, input {format_input_size(tuple(r.input_size))}"),
        ("top-1", f"{r.top1:.2f}%"),
        ("top-5", f"{r.top5:.2f}%"),
        ("loss", f"{r.loss:.4f}"),
        ("throughput", f"{r.images_per_s:,.1f} images/s"),
        ("time", f"{r.seconds:.2f} s"),
    ]
    rows += [("note", n) for n in r.notes]
    render.stdout.print(render.table("Evaluation", ["", ""], rows))


def register(app: typer.Typer) -> None:
    """Add ``evaluate`` to the app."""
    app.command(name="evaluate", help=HELP)(evaluate_command)
