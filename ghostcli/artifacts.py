"""Saved models: safetensors weights plus a JSON recipe that says how to rebuild the architecture.

The recipe lives in the safetensors metadata under ``ghostcli_recipe``; loading
rebuilds the network from it (the source model, then ghostify with the recorded
options) and loads the weights strictly. Nothing is unpickled.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ghostcli import __version__
from ghostcli.errors import ArtifactError, one_line
from ghostcli.fsutil import atomic_path, check_output

if TYPE_CHECKING:
    from torch import nn

    from ghostcli.resolve import LoadedModel

FORMAT = "ghostcli-artifact/1"
RECIPE_KEY = "ghostcli_recipe"


@dataclass
class Recipe:
    """How to rebuild a model: its source, builder options and the ghostify options applied."""

    source: str  # "zoo:NAME" | "torchvision:NAME" | "timm:NAME" | "factory:pkg.mod:fn"
    options: dict[str, Any] = field(default_factory=dict)
    input_size: list[int] = field(default_factory=lambda: [3, 224, 224])
    ghostify: dict[str, Any] | None = None
    ghostcli_version: str = __version__
    format: str = FORMAT
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Recipe:
        """Validate and build from the JSON form."""
        if not isinstance(data, dict) or "source" not in data:
            raise ArtifactError("the recipe has no 'source': not a ghostcli artifact")
        fmt = data.get("format", FORMAT)
        if fmt != FORMAT:
            raise ArtifactError(f"unsupported artifact format {fmt!r} (this ghostcli reads {FORMAT!r})")
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


def rebuild(recipe: Recipe) -> nn.Module:
    """Build the architecture a recipe describes (random weights)."""
    from ghostcli.resolve import build_source

    model = build_source(recipe.source, dict(recipe.options))
    if recipe.ghostify is not None:
        from ghostcli.convert import ghostify

        model, _ = ghostify(model, input_size=tuple(recipe.input_size), inherit_weights=False, count_macs=False,
                            **recipe.ghostify)
    return model


def save_artifact(model: nn.Module, path: str | Path, recipe: Recipe, *, force: bool = False) -> Path:
    """Save ``model``'s weights and ``recipe`` to ``path`` (``.safetensors``), atomically."""
    from safetensors.torch import save_model

    dest = check_output(path, force)
    if dest.suffix != ".safetensors":
        raise ArtifactError(f"artifacts are saved as .safetensors, got {dest.name!r}")
    recipe.ghostcli_version = __version__
    meta = {RECIPE_KEY: json.dumps(recipe.to_dict(), sort_keys=True), "format": FORMAT}
    with atomic_path(dest) as tmp:
        save_model(model, str(tmp), metadata=meta)
    return dest


def read_recipe(path: str | Path) -> Recipe:
    """Read only the recipe of an artifact (no weights are loaded)."""
    from safetensors import safe_open

    p = Path(path)
    if not p.is_file():
        raise ArtifactError(f"no such file: {p}")
    try:
        with safe_open(str(p), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as exc:  # safetensors raises several types for bad headers
        raise ArtifactError(f"{p} is not a readable safetensors file (truncated or corrupt?): {one_line(exc)}") from None
    if RECIPE_KEY not in meta:
        raise ArtifactError(
            f"{p} holds weights but no ghostcli recipe: name the architecture and pass the file with --weights"
        )
    try:
        return Recipe.from_dict(json.loads(meta[RECIPE_KEY]))
    except json.JSONDecodeError:
        raise ArtifactError(f"{p} has a corrupt ghostcli recipe") from None


def load_artifact(path: str | Path) -> LoadedModel:
    """Rebuild and load a saved artifact; the result's outputs are bit-identical to the saved model's."""
    from safetensors.torch import load_model

    from ghostcli.resolve import LoadedModel

    p = Path(path)
    recipe = read_recipe(p)
    model = rebuild(recipe)
    try:
        load_model(model, str(p), strict=True)
    except RuntimeError as exc:
        raise ArtifactError(f"{p} does not match the architecture its recipe describes: {one_line(exc)}") from None
    except Exception as exc:
        raise ArtifactError(f"{p} could not be read (truncated or corrupt?): {one_line(exc)}") from None
    model.eval()
    return LoadedModel(model=model, recipe=recipe, input_size=tuple(recipe.input_size), name=p.name, path=p)
