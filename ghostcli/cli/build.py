"""``ghostcli build``: create a zoo architecture and (optionally) save it as an artifact."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from ghostcli.cli.common import ForceOpt, InputSizeOpt, JsonOpt, OutputOpt, WeightsOpt

HELP = """Build a model from the zoo (random weights unless --weights) and save it as an artifact.

The artifact is a .safetensors file whose metadata holds a JSON recipe (source,
options, input size, ghostcli version), so every other command can load it.

Examples:

  ghostcli build ghostnet_100 -o ghostnet_100.safetensors

  ghostcli build ghostnet_100 --width 0.75 --num-classes 10 --input-size 3x160x160

  ghostcli build ghost_resnet56 --json
"""


def build_command(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Zoo name (see 'ghostcli list').")],
    width: Annotated[
        Optional[float], typer.Option("--width", metavar="X", help="Width multiplier (GhostNet).", min=0.01)
    ] = None,
    num_classes: Annotated[
        Optional[int], typer.Option("--num-classes", metavar="N", help="Classifier outputs.", min=1)
    ] = None,
    in_chans: Annotated[Optional[int], typer.Option("--in-chans", metavar="N", help="Input channels.", min=1)] = None,
    input_size: InputSizeOpt = None,
    weights: WeightsOpt = None,
    output: OutputOpt = None,
    force: ForceOpt = False,
    as_json: JsonOpt = False,
) -> None:
    from ghostcli.artifacts import check_artifact_output

    if output is not None:
        check_artifact_output(output, force)  # fail before building anything
    from ghostcli.build import build_summary

    summary = build_summary(name, width=width, num_classes=num_classes, in_chans=in_chans,
                            input_size=input_size, weights=weights, output=output, force=force)
    from ghostcli import render
    from ghostcli.units import format_count, format_input_size

    if as_json:
        render.print_json("build", summary)
        return
    rows = [
        ("model", summary.name),
        ("source", summary.source),
        ("options", ", ".join(f"{k}={v}" for k, v in summary.options.items()) or "-"),
        ("input", format_input_size(summary.input_size)),
        ("output shape", format_input_size(summary.output_shape)),
        ("parameters", f"{format_count(summary.params)} ({summary.params:,})"),
        ("written", summary.output or "- (use -o to save)"),
    ]
    render.stdout.print(render.table(None, ["", ""], rows))


def register(app: typer.Typer) -> None:
    """Add ``build`` to the app."""
    app.command(name="build", help=HELP)(build_command)
