"""What ghostify did: one row per conv layer (and per G-Ghost stage), totals, inherited tensors; and the one
forward pass it measures.

MACs are multiply-accumulates of conv and linear layers (BatchNorm excluded), the
GhostNet paper's "FLOPs", counted by fvcore (``analysis.macs``): totals over every
conv / linear operator, per row over the conv / linear modules of the layer (fvcore's
``by_module``). ``flops`` fields are ``2 x MACs``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ghostcli.analysis.macs import count_macs
from ghostcli.errors import GhostcliError
from ghostcli.runtime.probe import ForwardError, run_once


@dataclass
class ConvRow:
    """One conv layer of the original model and what happened to it."""

    name: str
    type: str
    kernel: list[int]
    in_channels: int
    out_channels: int
    stride: list[int]
    groups: int
    action: str  # "ghost" or "kept"
    reason: str  # why kept (options named in backquotes: "< `min_channels` 32"); for "ghost" what was absorbed
    bn: str | None  # the BatchNorm the Ghost module took over (replaced by Identity), if any
    params_before: int  # conv params (+ the absorbed BatchNorm's)
    params_after: int
    macs_before: int | None  # None when the model could not run at the input size
    macs_after: int | None


@dataclass
class StageRow:
    """One residual stage rebuilt as a G-Ghost stage (``GhostifyOptions.stages``).

    Its convs are not conv rows: the stage is one row, counted with its merge and cheap layers.
    """

    name: str
    block: str  # the type of its residual blocks ("Bottleneck", "ResBottleneckBlock", ...)
    blocks: int  # first (base) + middle + last (end)
    planes: int  # the stage's output channels
    raw_planes: int  # channels the middle blocks compute
    cheap_planes: int  # channels made by the cheap operations (new layers: they need fine-tuning)
    widths: list[int]  # a middle block's channel widths before: planes, inner..., planes
    middle_widths: list[int]  # after: raw_planes, inner..., raw_planes
    params_before: int
    params_after: int
    macs_before: int | None  # conv + linear MACs of the stage (None when not counted)
    macs_after: int | None


@dataclass
class GhostifyReport:
    """The result of a ghostify run (JSON-serialisable through ``render.print_json``)."""

    options: dict[str, Any]
    input_size: list[int]
    graph: str  # "fx" or "registration-order": how conv -> BatchNorm pairs were found
    rows: list[ConvRow]
    replaced: int
    kept: int
    params_before: int
    params_after: int
    macs_before: int | None
    macs_after: int | None
    macs_counter: str  # "fvcore" (conv + linear ops) or "none" (not counted)
    inherited: list[dict[str, str]] = field(default_factory=list)  # {"tensor": new name, "source": original}
    warnings: list[str] = field(default_factory=list)  # options named in backquotes (`include`)
    forward_error: str | None = None  # why the original model did not run at ``input_size`` (then no MACs)
    stages: list[StageRow] = field(default_factory=list)  # the G-Ghost stages, in the order of ``options.stages``

    @property
    def params_ratio(self) -> float:
        """params after / before."""
        return self.params_after / self.params_before if self.params_before else math.nan

    @property
    def macs_ratio(self) -> float | None:
        """MACs after / before (None when MACs are unknown)."""
        if not self.macs_before or self.macs_after is None:
            return None
        return self.macs_after / self.macs_before

    def to_dict(self) -> dict[str, Any]:
        """Stable JSON form: the fields (``stages`` rows included) plus ratios and ``flops`` (= 2 x MACs)."""
        from ghostcli.render import to_jsonable

        d = to_jsonable(self)
        d["params_ratio"] = self.params_ratio
        d["macs_ratio"] = self.macs_ratio
        d["flops_before"] = None if self.macs_before is None else 2 * self.macs_before
        d["flops_after"] = None if self.macs_after is None else 2 * self.macs_after
        return d


def _dummy(model: nn.Module, input_size: tuple[int, ...]) -> torch.Tensor:
    p = next(model.parameters(), None)
    dtype = p.dtype if p is not None and p.is_floating_point() else torch.float32
    device = p.device if p is not None else torch.device("cpu")
    return torch.randn(1, *input_size, dtype=dtype, device=device)


_COUNTED = (nn.modules.conv._ConvNd, nn.Linear)  # the modules whose MACs a report row sums


@dataclass
class Measurement:
    """One forward pass at batch 1: output shapes, and fvcore's conv + linear MACs (total and per module)."""

    outputs: list[tuple[int, ...]]
    error: str | None = None  # the model did not run (a ForwardError message naming the layer)
    fvcore: int | None = None  # conv + linear MACs (None: not counted, or fvcore could not trace the model)
    macs: dict[int, int] = field(default_factory=dict)  # id(conv or linear module) -> its MACs (fvcore by_module)
    macs_error: str | None = None  # why fvcore could not count, when it could not

    def of(self, module: nn.Module) -> int | None:
        """MACs of the conv / linear modules in ``module`` (None when they were not counted)."""
        if self.error is not None or self.fvcore is None:
            return None
        return sum(self.macs.get(id(m), 0) for m in module.modules())


def _shapes(out: Any, per_item: bool = False) -> list[tuple[int, ...]]:
    """The shapes of every tensor in ``out``. A list of dicts is a detector's per-image results, whose first
    dimension counts what was detected (it depends on the weights), so there it is left out."""
    if isinstance(out, torch.Tensor):
        shape = tuple(int(v) for v in out.shape)
        return [shape[1:] if per_item else shape]
    if isinstance(out, dict):
        return [s for v in out.values() for s in _shapes(v, per_item)]
    if isinstance(out, (list, tuple)):
        detections = isinstance(out, list) and bool(out) and all(isinstance(v, dict) for v in out)
        return [s for v in out for s in _shapes(v, per_item or detections)]
    return []


def run_and_count(model: nn.Module, input_size: tuple[int, ...], use_fvcore: bool = True,
            what: str = "the model") -> Measurement:
    """Run ``model`` once (eval mode, no grad, batch 1): its output shapes and, with ``use_fvcore``,
    fvcore's MACs (``analysis.macs.count_macs``).

    fvcore's trace is the forward pass when it succeeds; otherwise the model runs once more
    (``runtime.probe.run_once``), so a failure names the layer. Training flags are restored.
    """
    outputs: list[list[tuple[int, ...]]] = []

    def top_hook(module: nn.Module, args: tuple[Any, ...], out: Any) -> None:
        outputs.append(_shapes(out))

    x = _dummy(model, input_size)
    result = Measurement([])
    training = {m: m.training for m in model.modules()}
    model.eval()
    try:
        if use_fvcore:
            handle = model.register_forward_hook(top_hook)
            try:
                count = count_macs(model, x)
                names = dict(model.named_modules())
                result.fvcore = count.conv_linear
                result.macs = {id(m): count.by_module.get(n, 0) for n, m in names.items() if isinstance(m, _COUNTED)}
            except GhostcliError as exc:
                result.macs_error = str(exc)
            finally:
                handle.remove()
        if result.fvcore is None or len(outputs) != 1:
            try:
                outputs = [_shapes(run_once(model, x, what))]
            except ForwardError as exc:
                return Measurement([], error=str(exc))
        result.outputs = outputs[0]
        return result
    finally:
        for m, t in training.items():
            m.training = t


def fvcore_macs(model: nn.Module, input_size: tuple[int, ...]) -> int | None:
    """Conv + linear MACs counted by fvcore's ``FlopCountAnalysis`` (None when fvcore cannot trace)."""
    return run_and_count(model, input_size).fvcore
