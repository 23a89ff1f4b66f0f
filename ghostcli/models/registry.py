"""The model zoo registry: name -> builder, with what the paper published for it."""

from __future__ import annotations

import difflib
import fnmatch
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ghostcli.errors import ModelNotFoundError, UsageError


@dataclass(frozen=True)
class ModelSpec:
    """One zoo entry."""

    name: str
    builder: Callable[..., nn.Module]
    family: str
    description: str
    input_size: tuple[int, int, int] = (3, 224, 224)
    num_classes: int = 1000
    paper: dict[str, float] = field(default_factory=dict)  # published params / macs / top1

    def options(self) -> list[str]:
        """Keyword options the builder accepts (``num_classes``, ``width`` ...)."""
        return [p for p in inspect.signature(self.builder).parameters if p != "kwargs"]


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(
    name: str,
    *,
    family: str,
    description: str,
    input_size: tuple[int, int, int] = (3, 224, 224),
    num_classes: int = 1000,
    paper: dict[str, float] | None = None,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: add a builder to the zoo under ``name``."""

    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = ModelSpec(name, fn, family, description, input_size, num_classes, dict(paper or {}))
        return fn

    return deco


def list_models(pattern: str | None = None) -> list[ModelSpec]:
    """Zoo entries whose name matches the glob ``pattern`` (substring when no wildcard)."""
    specs = sorted(_REGISTRY.values(), key=lambda s: (s.family, s.name))
    if not pattern:
        return specs
    glob = pattern if any(c in pattern for c in "*?[") else f"*{pattern}*"
    return [s for s in specs if fnmatch.fnmatch(s.name, glob)]


def zoo_names() -> list[str]:
    """All registered names."""
    return sorted(_REGISTRY)


def suggest(name: str, candidates: list[str]) -> str:
    """A ``did you mean ...?`` suffix, or an empty string."""
    close = difflib.get_close_matches(name, candidates, n=3, cutoff=0.6)
    return f" (did you mean {', '.join(close)}?)" if close else ""


def get_model_spec(name: str) -> ModelSpec:
    """The zoo entry for ``name``; unknown names raise with suggestions."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ModelNotFoundError(f"unknown zoo model {name!r}{suggest(name, zoo_names())}") from None


def build_model(name: str, **options: Any) -> nn.Module:
    """Build zoo model ``name`` with random weights; ``options`` go to its builder.

    Options set to ``None`` are dropped; an option the builder does not take is an error.
    """
    spec = get_model_spec(name)
    options = {k: v for k, v in options.items() if v is not None}
    unknown = sorted(set(options) - set(spec.options()))
    if unknown:
        raise UsageError(f"model {name!r} has no option {', '.join(unknown)} (it takes: {', '.join(spec.options()) or 'none'})")
    return spec.builder(**options)
