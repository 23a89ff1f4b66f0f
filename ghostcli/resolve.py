"""Turn a user's MODEL argument into an ``nn.Module``: the one place every command resolves models.

Accepted forms, tried in this order:

- a file path: ``.safetensors`` artifact (weights + recipe), or a ``.pt``/``.pth``
  file (refused unless it is a full pickled model *and* ``allow_pickle`` is set);
- ``timm:NAME`` (needs the ``timm`` extra);
- ``torchvision:NAME``;
- ``pkg.module:factory`` (a callable returning an ``nn.Module``);
- a zoo name (``ghostnet_100``, ``resnet56`` ...), then a torchvision name (``resnet50``).

Nothing is downloaded: pretrained weights come from a local file (``weights=``).
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from ghostcli.artifacts import Recipe, load_artifact
from ghostcli.errors import ArtifactError, GhostcliError, ModelNotFoundError, UsageError, one_line

WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".ckpt", ".bin")
_FACTORY = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
_SPECIAL_SIZES = {"inception_v3": (3, 299, 299)}


@dataclass
class LoadedModel:
    """A resolved model with what is needed to save, profile or rebuild it."""

    model: nn.Module
    recipe: Recipe
    input_size: tuple[int, ...]
    name: str
    path: Path | None = None
    weights: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def is_ghostified(self) -> bool:
        """True when the model was produced by ghostify (or is a ghost zoo model)."""
        from ghostcli.layers import GhostModule

        return self.recipe.ghostify is not None or any(isinstance(m, GhostModule) for m in self.model.modules())


def torchvision_names() -> list[str]:
    """Classification model names torchvision can build."""
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def _timm_create(name: str, options: dict[str, Any]) -> nn.Module:
    try:
        import timm
    except ImportError:
        raise GhostcliError("timm models need the timm extra: pip install 'ghostcli[timm]'") from None
    if name not in timm.list_models():
        from ghostcli.models.registry import suggest

        raise ModelNotFoundError(f"unknown timm model {name!r}{suggest(name, timm.list_models())}")
    return timm.create_model(name, pretrained=False, **options)


def _factory_create(target: str, options: dict[str, Any]) -> nn.Module:
    mod_name, fn_name = target.rsplit(":", 1)
    try:
        module = importlib.import_module(mod_name)
    except ImportError as exc:
        raise ModelNotFoundError(f"cannot import {mod_name!r} for factory {target!r}: {exc}") from None
    fn = getattr(module, fn_name, None)
    if not callable(fn):
        raise ModelNotFoundError(f"{mod_name!r} has no callable {fn_name!r}")
    model = fn(**options)
    if not isinstance(model, nn.Module):
        raise ModelNotFoundError(f"factory {target!r} returned {type(model).__name__}, not a torch nn.Module")
    return model


def build_source(source: str, options: dict[str, Any]) -> nn.Module:
    """Build a model from a canonical source string (``zoo:``, ``torchvision:``, ``timm:``, ``factory:``)."""
    kind, _, name = source.partition(":")
    try:
        if kind == "zoo":
            from ghostcli.models import build_model

            return build_model(name, **options)
        if kind == "torchvision":
            import torchvision

            if name not in torchvision_names():
                from ghostcli.models.registry import suggest

                raise ModelNotFoundError(f"unknown torchvision model {name!r}{suggest(name, torchvision_names())}")
            return torchvision.models.get_model(name, weights=None, **options)
        if kind == "timm":
            return _timm_create(name, options)
        if kind == "factory":
            return _factory_create(name, options)
    except TypeError as exc:  # a builder that does not take an option
        raise UsageError(f"{source}: {exc}") from None
    raise ArtifactError(f"unknown model source {source!r}")


def canonical_source(spec: str) -> str:
    """Map a user's MODEL name to a canonical source string, or raise with suggestions."""
    from ghostcli.models import zoo_names

    if spec.startswith(("timm:", "torchvision:", "zoo:")):
        return spec
    if spec.startswith("factory:"):
        return spec
    if _FACTORY.match(spec):
        return f"factory:{spec}"
    if spec in zoo_names():
        return f"zoo:{spec}"
    names = torchvision_names()
    if spec in names:
        return f"torchvision:{spec}"
    from ghostcli.models.registry import suggest

    raise ModelNotFoundError(
        f"unknown model {spec!r}{suggest(spec, zoo_names() + names)}; see 'ghostcli list'"
    )


def default_input_size(source: str, model: nn.Module, options: dict[str, Any]) -> tuple[int, int, int]:
    """The input size a source's model expects by default (C, H, W)."""
    kind, _, name = source.partition(":")
    size: tuple[int, int, int] = (3, 224, 224)
    if kind == "zoo":
        from ghostcli.models import get_model_spec

        size = get_model_spec(name).input_size
    elif kind == "torchvision":
        size = _SPECIAL_SIZES.get(name, size)
    elif kind == "timm":
        cfg = getattr(model, "pretrained_cfg", None) or {}
        if "input_size" in cfg:
            size = tuple(int(v) for v in cfg["input_size"])  # type: ignore[assignment]
    if "in_chans" in options:
        size = (int(options["in_chans"]), size[1], size[2])
    return size


def load_weights(model: nn.Module, path: str | Path) -> None:
    """Load a state dict from ``.safetensors`` or ``.pt``/``.pth`` (``weights_only``) strictly."""
    import torch

    p = Path(path)
    if not p.is_file():
        raise ArtifactError(f"no such weights file: {p}")
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(p))
        else:
            state = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ArtifactError(f"{p} could not be read as weights (corrupt, truncated, or a pickled model?): "
                            f"{one_line(exc, 160)}") from None
    for key in ("state_dict", "model", "model_state"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ArtifactError(f"{p} does not hold a state dict")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    result = model.load_state_dict(state, strict=False)
    bad = [*result.missing_keys, *result.unexpected_keys]
    if bad:
        raise ArtifactError(
            f"{p} does not match the model: {len(result.missing_keys)} missing and "
            f"{len(result.unexpected_keys)} unexpected keys (first: {bad[0]})"
        )
    shapes = [k for k, v in state.items() if hasattr(v, "shape") and v.shape != model.state_dict()[k].shape]
    if shapes:
        raise ArtifactError(f"{p} does not match the model: shape mismatch at {shapes[0]}")


def _load_torch_file(p: Path, allow_pickle: bool) -> LoadedModel:
    import pickle

    import torch

    try:
        obj = torch.load(str(p), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        if not allow_pickle:
            raise ArtifactError(
                f"{p} contains a pickled Python object; loading it can run arbitrary code. "
                "Pass --allow-pickle only if you trust its author"
            ) from None
        try:
            obj = torch.load(str(p), map_location="cpu", weights_only=False)
        except Exception as exc:
            raise ArtifactError(f"{p} could not be unpickled: {one_line(exc, 160)}") from None
    except Exception:
        raise ArtifactError(f"{p} is not a readable PyTorch file (truncated or corrupt?)") from None
    if isinstance(obj, nn.Module):
        return LoadedModel(model=obj.eval(), recipe=Recipe(source=f"pickle:{p.name}"),
                           input_size=(3, 224, 224), name=p.name, path=p,
                           notes=["loaded from a pickled model (no recipe): it cannot be rebuilt from a saved artifact"])
    raise ArtifactError(
        f"{p} is a state dict without an architecture: name the architecture and pass the file with "
        f"--weights (e.g. 'ghostcli profile resnet50 --weights {p.name}')"
    )


def resolve_model(
    spec: str,
    *,
    weights: str | Path | None = None,
    allow_pickle: bool = False,
    options: dict[str, Any] | None = None,
) -> LoadedModel:
    """Resolve a MODEL argument into a :class:`LoadedModel` in eval mode."""
    options = {k: v for k, v in (options or {}).items() if v is not None}
    spec = spec.strip()
    if not spec:
        raise UsageError("empty MODEL argument")
    p = Path(spec)
    if p.suffix.lower() in WEIGHT_SUFFIXES or p.exists():
        if not p.exists():
            raise ArtifactError(f"no such file: {p}")
        if p.is_dir():
            raise ArtifactError(f"{p} is a directory, not a model file")
        if options:
            raise UsageError("builder options (e.g. --num-classes) do not apply to a saved artifact")
        loaded = load_artifact(p) if p.suffix.lower() == ".safetensors" else _load_torch_file(p, allow_pickle)
        if weights is not None:
            load_weights(loaded.model, weights)
            loaded.weights = str(weights)
        return loaded
    source = canonical_source(spec)
    model = build_source(source, options)
    if weights is not None:
        load_weights(model, weights)
    model.eval()
    size = default_input_size(source, model, options)
    recipe = Recipe(source=source, options=options, input_size=list(size))
    return LoadedModel(model=model, recipe=recipe, input_size=size, name=spec,
                       weights=str(weights) if weights is not None else None)
