"""``ghostcli list``: the zoo and the other sources a MODEL argument can name."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from ghostcli.cli.common import JsonOpt

HELP = """Show the model zoo and the other sources a MODEL argument can name.

Examples:

  ghostcli list

  ghostcli list ghostnet

  ghostcli list 'resnet*' --json
"""


def list_command(
    pattern: Annotated[
        Optional[str],
        typer.Argument(metavar="PATTERN", help="Show only the names that match this glob ('ghost*') or contain this "
                       "text."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    from ghostcli import render
    from ghostcli.models import list_models, name_matches
    from ghostcli.resolve import torchvision_names
    from ghostcli.units import format_input_size

    specs = list_models(pattern)
    tv = [n for n in torchvision_names() if name_matches(n, pattern)]
    try:
        import timm  # noqa: F401

        timm_state = "installed: timm:<name>"
    except ImportError:
        timm_state = "not installed (pip install 'ghostcli[timm]')"
    if as_json:
        render.print_json("list", {
            "zoo": [
                {"name": s.name, "family": s.family, "description": s.description,
                 "input_size": list(s.input_size), "num_classes": s.num_classes, "options": s.options(),
                 "paper": s.paper}
                for s in specs
            ],
            "torchvision": tv,
            "timm": timm_state,
        })
        return
    rows = [
        (s.name, format_input_size(s.input_size), s.num_classes,
         f"{s.paper['params'] / 1e6:.2f}M" if "params" in s.paper else "-",
         _published_macs(s.paper["macs"]) if "macs" in s.paper else "-",
         f"{s.paper['top1']:.1f}" if "top1" in s.paper else "-",
         s.description)
        for s in specs
    ]
    render.stdout.print(render.table(
        "Zoo (params, MACs and top-1 as published in the paper)",
        ["name", "input", "classes", "params", "MACs", "top-1", "description"], rows, numeric=(2, 3, 4, 5),
    ))
    render.stdout.print(f"\n[bold]torchvision[/] ({len(tv)} match): " + (", ".join(tv) if tv else "none"))
    render.stdout.print(f"[bold]timm[/]: {timm_state}")
    render.stdout.print(
        "[bold]files[/]: a .safetensors artifact written by ghostcli, or NAME --weights FILE (.safetensors/.pt/.pth)"
    )
    render.stdout.print("[bold]factories[/]: package.module:function returning an nn.Module")


def _published_macs(macs: float) -> str:
    """A paper's MACs as it printed them: ``141M`` below a billion, ``1.8G`` (one decimal) above."""
    return f"{macs / 1e9:.1f}G" if macs >= 1e9 else f"{macs / 1e6:.0f}M"


def register(app: typer.Typer) -> None:
    """Add ``list`` to the app."""
    app.command(name="list", help=HELP)(list_command)
