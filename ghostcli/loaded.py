"""LoadedModel: a resolved model with what is needed to save, profile or rebuild it (made by :mod:`ghostcli.resolve`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from ghostcli.artifacts import Recipe


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
