"""Saved models, file I/O only: safetensors weights plus a JSON recipe that says how to rebuild the architecture.

The recipe lives in the safetensors metadata under ``ghostcli_recipe``. Reading a
file never imports or calls anything it names: :meth:`Recipe.from_dict` checks
every field against a fixed schema, and rebuilding the network from a recipe is
:func:`ghostcli.resolve.load_artifact`'s job (where a ``factory:`` source needs the
caller's explicit opt-in). Nothing is unpickled.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ghostcli import __version__
from ghostcli.errors import ArtifactError, UsageError, one_line
from ghostcli.fsutil import atomic_path, check_output

if TYPE_CHECKING:
    import torch
    from torch import nn

FORMAT = "ghostcli-artifact/1"
RECIPE_KEY = "ghostcli_recipe"
SOURCE_KINDS = ("zoo", "torchvision", "timm", "factory")
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}$")
_FACTORY = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")
_OPTION_KEY = re.compile(r"^[A-Za-z_]\w{0,63}$")
MAX_SIDE = 16384


class CorruptRecipe(ArtifactError):
    """A recipe whose JSON does not fit the schema."""


def _corrupt(why: str) -> CorruptRecipe:
    return CorruptRecipe(f"corrupt ghostcli recipe: {why}")


def check_source(source: Any) -> str:
    """Validate a canonical source string (``zoo:NAME``, ``torchvision:NAME``, ``timm:NAME``, ``factory:mod:fn``)."""
    if not isinstance(source, str):
        raise _corrupt(f"'source' must be a string, not {type(source).__name__}")
    kind, _, name = source.partition(":")
    if kind == "pickle":
        raise ArtifactError("the recipe says the model came from a pickled file: no recipe can rebuild it")
    if kind not in SOURCE_KINDS:
        raise _corrupt(f"unknown source {source[:80]!r} (expected one of {', '.join(k + ':' for k in SOURCE_KINDS)})")
    if not (_FACTORY if kind == "factory" else _NAME).match(name):
        raise _corrupt(f"malformed source {source[:80]!r}")
    return source


def _json_value(value: Any, where: str, depth: int = 0) -> Any:
    """A builder option value: a finite number, a short string, a bool, null, or a short list of those."""
    if value is None or isinstance(value, (bool, str)) and len(str(value)) <= 256:
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _corrupt(f"{where} is not a finite number")
        return value
    if isinstance(value, list) and depth == 0 and len(value) <= 64:
        return [_json_value(v, where, 1) for v in value]
    raise _corrupt(f"{where} has an unsupported value of type {type(value).__name__}")


def _check_options(options: Any) -> dict[str, Any]:
    if not isinstance(options, dict):
        raise _corrupt("'options' must be an object")
    for key in options:
        if not _OPTION_KEY.match(key):
            raise _corrupt(f"bad option name {key[:40]!r}")
    return {k: _json_value(v, f"option {k!r}") for k, v in options.items()}


def _check_input_size(size: Any) -> list[int]:
    if not isinstance(size, list) or not 1 <= len(size) <= 4 or not all(
            isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_SIDE for v in size):
        raise _corrupt(f"'input_size' must be a list of 1-4 positive integers, got {json.dumps(size)[:60]}")
    return list(size)


def _check_ghostify(options: Any) -> dict[str, Any] | None:
    if options is None:
        return None
    if not isinstance(options, dict):
        raise _corrupt("'ghostify' must be an object or null")
    from ghostcli.errors import GhostcliError
    from ghostcli.ghostify_options import GhostifyOptions  # torch-free

    try:
        return GhostifyOptions.from_dict(options).to_dict()
    except (GhostcliError, TypeError) as exc:
        # the value came from the file, not from an option: name the recipe's key, without backquotes
        raise _corrupt(f"ghostify options: {one_line(exc, 120).replace('`', '')}") from None


@dataclass
class Recipe:
    """How to rebuild a model: its source, builder options and the ghostify options applied."""

    source: str  # "zoo:NAME" | "torchvision:NAME" | "timm:NAME" | "factory:pkg.mod:fn" | "pickle:FILE" (not saved)
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
    def from_dict(cls, data: Any) -> Recipe:
        """Validate every field against the schema and build; anything off is :class:`CorruptRecipe` (exit 1)."""
        if not isinstance(data, dict):
            raise _corrupt("not a JSON object")
        if "source" not in data:
            raise _corrupt("no 'source'")
        fmt = data.get("format", FORMAT)
        if fmt != FORMAT:
            raise ArtifactError(f"unsupported artifact format {str(fmt)[:40]!r} (this ghostcli reads {FORMAT!r})")
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise _corrupt(f"unknown key(s) {', '.join(repr(k[:40]) for k in unknown[:5])}")
        version = data.get("ghostcli_version", __version__)
        extra = data.get("extra", {})
        if not isinstance(version, str) or not isinstance(extra, dict):
            raise _corrupt("'ghostcli_version' must be a string and 'extra' an object")
        return cls(source=check_source(data["source"]), options=_check_options(data.get("options", {})),
                   input_size=_check_input_size(data.get("input_size", [3, 224, 224])),
                   ghostify=_check_ghostify(data.get("ghostify")), ghostcli_version=version, format=FORMAT,
                   extra=extra)


def check_artifact_output(path: str | Path, force: bool = False) -> Path:
    """Refuse an artifact output before any work: wrong suffix (usage error), exists without ``force``, ..."""
    if Path(path).suffix != ".safetensors":
        raise UsageError(f"artifacts are saved as .safetensors: -o must name a .safetensors file, "
                         f"got {Path(path).name!r}")
    return check_output(path, force)


def save_artifact(model: nn.Module, path: str | Path, recipe: Recipe, *, force: bool = False) -> Path:
    """Save ``model``'s weights and ``recipe`` to ``path`` (``.safetensors``), atomically."""
    from safetensors.torch import save_model

    dest = check_artifact_output(path, force)
    check_source(recipe.source)
    recipe.ghostcli_version = __version__
    meta = {RECIPE_KEY: json.dumps(recipe.to_dict(), sort_keys=True), "format": FORMAT}
    with atomic_path(dest) as tmp:
        save_model(model, str(tmp), metadata=meta)
    return dest


def _metadata(p: Path) -> dict[str, str]:
    from safetensors import safe_open

    if p.is_dir():
        raise ArtifactError(f"{p} is a directory, not a model file")
    if not p.is_file():
        raise ArtifactError(f"no such file: {p}")
    try:
        with safe_open(str(p), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception as exc:  # safetensors raises several types for bad headers
        raise ArtifactError(f"{p} is not a readable safetensors file (truncated or corrupt?): "
                            f"{one_line(exc, 120)}") from None


def read_recipe(path: str | Path) -> Recipe:
    """Read and validate only the recipe of an artifact (no weights are loaded, nothing is built)."""
    p = Path(path)
    meta = _metadata(p)
    if RECIPE_KEY not in meta:
        raise ArtifactError(
            f"{p} holds weights but no ghostcli recipe: name the architecture and pass the file with `weights`"
        )
    try:
        data = json.loads(meta[RECIPE_KEY])
    except (json.JSONDecodeError, RecursionError):
        raise ArtifactError(f"{p} has a corrupt ghostcli recipe (not JSON)") from None
    try:
        return Recipe.from_dict(data)
    except CorruptRecipe as exc:
        raise CorruptRecipe(f"{p} has a {exc}") from None


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a ``.safetensors`` file (never unpickled)."""
    from safetensors.torch import load_file

    p = Path(path)
    try:
        return load_file(str(p))
    except Exception as exc:
        raise ArtifactError(f"{p} could not be read (truncated or corrupt?): {one_line(exc, 120)}") from None


def read_artifact(path: str | Path) -> tuple[Recipe, dict[str, torch.Tensor]]:
    """An artifact's validated recipe and its weights."""
    recipe = read_recipe(path)
    return recipe, read_state_dict(path)
