"""What :mod:`ghostcli.resolve` makes: a LoadedModel (a PyTorch model with its recipe) or a DeployedModel (an exported file)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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


@dataclass
class DeployedModel:
    """An exported model file as its runtime reads it: ``.onnx``, or an OpenVINO ``.xml`` with its ``.bin``.

    Made by :func:`ghostcli.resolve.load_deployed`; ``profile_models`` and ``run_check`` take it beside
    :class:`LoadedModel`. ``graph`` is the ``openvino.Model`` read from the file (OpenVINO reads ONNX
    too): MACs and parameters are counted on it and OpenVINO compiles it. ``input_shape`` is the graph's
    input shape, batch first, ``None`` where a dimension is dynamic.
    """

    path: Path
    format: str  # "onnx" | "openvino" (IR)
    graph: Any
    input_shape: tuple[int | None, ...]
    name: str
    notes: list[str] = field(default_factory=list)

    @property
    def input_size(self) -> tuple[int | None, ...]:
        """The input shape without the batch (C, H, W), ``None`` where dynamic."""
        return self.input_shape[1:]

    @property
    def fixed_batch(self) -> int | None:
        """The batch size the graph is fixed to, or None when its batch is dynamic."""
        return self.input_shape[0] if self.input_shape else None

    @property
    def source(self) -> str:
        """``onnx:model.onnx`` or ``openvino:model.xml``."""
        return f"{self.format}:{self.path.name}"
