"""Build a model from its name and options, optionally save it: the library side of ``ghostcli build``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ghostcli.artifacts import save_artifact
from ghostcli.resolve import LoadedModel, resolve_model
from ghostcli.units import parse_input_size


@dataclass
class BuildSummary:
    """What ``build`` made. ``name`` is the zoo's name for the variant the options make
    (``ghostnet_050`` built with width 1.3 is ``ghostnet_130``)."""

    name: str
    source: str
    options: dict[str, Any]
    input_size: tuple[int, ...]
    output_shape: tuple[int, ...]
    params: int
    output: str | None


def build(name: str, *, width: float | None = None, num_classes: int | None = None, in_chans: int | None = None,
          input_size: str | tuple[int, int, int] | None = None, weights: str | Path | None = None) -> LoadedModel:
    """Resolve ``name`` with builder options; ``input_size`` overrides the recorded default."""
    loaded = resolve_model(name, weights=weights, options={"width": width, "num_classes": num_classes,
                                                          "in_chans": in_chans})
    if input_size is not None:
        size = parse_input_size(input_size) if isinstance(input_size, str) else tuple(input_size)
        loaded.input_size = size
        loaded.recipe.input_size = list(size)
    return loaded


def output_shape(model: torch.nn.Module, input_size: tuple[int, ...], what: str = "the model") -> tuple[int, ...]:
    """Shape of one forward pass at batch 1 (a :class:`~ghostcli.runtime.probe.ForwardError` names the failure)."""
    from ghostcli.runtime.probe import run_once

    out = run_once(model, torch.zeros(1, *input_size), what)
    if isinstance(out, (tuple, list)):
        out = out[0]
    if hasattr(out, "logits"):
        out = out.logits
    return tuple(out.shape)


def build_summary(name: str, *, output: str | Path | None = None, force: bool = False, **kw: Any) -> BuildSummary:
    """Build, run one forward pass, save when ``output`` is given, and summarize."""
    loaded = build(name, **kw)
    shape = output_shape(loaded.model, loaded.input_size, loaded.name)
    written = None
    if output is not None:
        written = str(save_artifact(loaded.model, output, loaded.recipe, force=force))
    return BuildSummary(
        name=loaded.name, source=loaded.recipe.source, options=dict(loaded.recipe.options),
        input_size=tuple(loaded.input_size), output_shape=shape,
        params=sum(p.numel() for p in loaded.model.parameters()), output=written,
    )
