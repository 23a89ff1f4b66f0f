"""Options shared by several commands (plain typer, no heavy imports)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

ModelArg = Annotated[
    str,
    typer.Argument(
        metavar="MODEL",
        help="Zoo name, torchvision name, timm:NAME, artifact .safetensors path, or package.module:factory.",
    ),
]
WeightsOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--weights", metavar="FILE",
        help="Load weights from a local .safetensors or .pt/.pth state dict (never unpickled).",
    ),
]
AllowPickleOpt = Annotated[
    bool,
    typer.Option(
        "--allow-pickle",
        help="Allow loading a full pickled model from a .pt file. DANGEROUS: unpickling runs arbitrary code from "
        "the file; use only for files you created or fully trust.",
    ),
]
TrustFactoryOpt = Annotated[
    bool,
    typer.Option(
        "--trust-factory",
        help="Allow a .safetensors artifact whose recipe names a package.module:factory to import and call it "
        "(the module must already be installed; ghostcli never imports a path from a file). Without it such "
        "files are refused.",
    ),
]
InputSizeOpt = Annotated[
    Optional[str],
    typer.Option("--input-size", metavar="CxHxW", help="Input size, e.g. 3x224x224 (default: the model's own)."),
]
OutputOpt = Annotated[
    Optional[Path],
    typer.Option("--output", "-o", metavar="FILE", help="Save the model as a .safetensors artifact that every "
                 "command can load."),
]
ForceOpt = Annotated[bool, typer.Option("--force", help="Replace the output if it already exists.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]

