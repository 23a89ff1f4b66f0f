"""The model zoo registry: name -> builder, with what the paper published for it."""

from __future__ import annotations

import difflib
import fnmatch
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ghostcli.errors import ModelNotFoundError, UsageError, one_line

#: ``options -> name`` of the model those builder options make, or None for the registered name
VariantName = Callable[[dict[str, Any]], "str | None"]


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
    variant_name: VariantName | None = None

    def options(self) -> list[str]:
        """Keyword options the builder accepts (``num_classes``, ``width`` ...)."""
        return [p for p in inspect.signature(self.builder).parameters if p != "kwargs"]

    def display_name(self, options: dict[str, Any]) -> str:
        """The name of the model these builder options make (``ghostnet_050`` with width 1.3: ``ghostnet_130``)."""
        given = {k: v for k, v in options.items() if v is not None}
        return (self.variant_name(given) if self.variant_name is not None else None) or self.name


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(
    name: str,
    *,
    family: str,
    description: str,
    input_size: tuple[int, int, int] = (3, 224, 224),
    num_classes: int = 1000,
    paper: dict[str, float] | None = None,
    variant_name: VariantName | None = None,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: add a builder to the zoo under ``name``.

    ``variant_name(options)`` names the model that non-default options make (None: ``name``).
    """

    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = ModelSpec(name, fn, family, description, input_size, num_classes, dict(paper or {}),
                                    variant_name)
        return fn

    return deco


def name_matches(name: str, pattern: str | None) -> bool:
    """True when ``name`` matches the glob ``pattern`` (a substring when it has no wildcard; no pattern: all)."""
    if not pattern:
        return True
    return fnmatch.fnmatch(name, pattern if any(c in pattern for c in "*?[") else f"*{pattern}*")


def list_models(pattern: str | None = None) -> list[ModelSpec]:
    """Zoo entries whose name matches ``pattern`` (see :func:`name_matches`)."""
    specs = sorted(_REGISTRY.values(), key=lambda s: (s.family, s.name))
    return [s for s in specs if name_matches(s.name, pattern)]


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

    Options set to ``None`` are dropped. An option the builder does not take (named in backquotes,
    `` `width` ``, as every setting in a library message), or a value its constructor rejects
    (ValueError / TypeError), is a :class:`UsageError` with the same message.
    """
    spec = get_model_spec(name)
    options = {k: v for k, v in options.items() if v is not None}
    unknown = sorted(set(options) - set(spec.options()))
    if unknown:
        takes = ", ".join(f"`{o}`" for o in spec.options()) or "none"
        raise UsageError(f"model {name!r} has no option {', '.join(f'`{o}`' for o in unknown)} (it takes: {takes})")
    try:
        return spec.builder(**options)
    except (TypeError, ValueError) as exc:
        raise UsageError(one_line(exc)) from None
