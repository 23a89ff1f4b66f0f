"""What :mod:`ghostcli.resolve` makes: a LoadedModel (a PyTorch model with its recipe) or a DeployedModel (an exported file)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from ghostcli.artifacts import Recipe

#: Class names of the Ghost modules of other code bases: timm (``timm.models.ghostnet``, ``timm.models.repghost``)
#: and the official code (huawei-noah ``ghostnet.py``, ``ghostnetv2_torch.py``, GhostNetV3; RepGhost).
FOREIGN_GHOST_MODULES = frozenset({"GhostModule", "GhostModuleV2", "GhostModuleV3", "RepGhostModule"})
#: ... and of their Ghost bottlenecks (a model made of them is a Ghost network as well).
FOREIGN_GHOST_BLOCKS = frozenset({"GhostBottleneck", "GhostBottleneckV2", "GhostBottleneckV3", "RepGhostBottleneck"})


def foreign_ghost_class(module: nn.Module, *, blocks: bool = False) -> str | None:
    """How a Ghost module of another code base is named in reports, or None (ghostcli's own classes too).

    Recognised by class name along the class's bases (a subclass of timm's ``GhostModule`` is one as
    well), so neither timm nor the official code is imported: a model can only contain their classes
    once they are loaded. timm's classes read ``timm GhostModuleV2``, others by module and class
    (``ghostnetv2_torch.GhostModuleV2``). ``blocks`` also recognises the Ghost bottlenecks.
    """
    names = FOREIGN_GHOST_MODULES | FOREIGN_GHOST_BLOCKS if blocks else FOREIGN_GHOST_MODULES
    for cls in type(module).__mro__:
        if cls.__module__.partition(".")[0] == "ghostcli":
            return None
        if cls.__name__ in names:
            if cls.__module__.partition(".")[0] == "timm":
                return f"timm {cls.__name__}"
            return f"{cls.__module__}.{cls.__name__}"
    return None


@dataclass
class LoadedModel:
    """A resolved model with what is needed to save, profile or rebuild it."""

    model: nn.Module
    recipe: Recipe
    input_size: tuple[int, ...]
    name: str
    path: Path | None = None
    weights: str | None = None

    @property
    def is_ghostified(self) -> bool:
        """True when the model was produced by ghostify, or contains Ghost modules: a ghost zoo model, or a Ghost
        network of another code base (timm's or the official GhostNet V1/V2/V3, RepGhost: :func:`foreign_ghost_class`)."""
        return self.recipe.ghostify is not None or bool(self.ghost_classes)

    @property
    def ghost_classes(self) -> list[str]:
        """The Ghost module and bottleneck classes the model contains, for messages: ghostcli's by class name
        (``GhostModuleV2``), other code bases' as :func:`foreign_ghost_class` names them (``timm GhostModule``)."""
        from ghostcli.layers import GhostModule

        found = {type(m).__name__ if isinstance(m, GhostModule) else foreign_ghost_class(m, blocks=True)
                 for m in self.model.modules()}
        return sorted(c for c in found if c is not None)


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
