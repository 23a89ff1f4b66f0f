"""What ghostify did: one row per conv layer, totals, inherited tensors; plus the MAC counters it uses.

MACs are multiply-accumulates of conv and linear layers (BatchNorm excluded), the
GhostNet paper's "FLOPs"; ``flops`` fields are ``2 x MACs``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ghostcli.analysis.macs import count_macs
from ghostcli.errors import one_line


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
    reason: str  # why kept; for "ghost" what was absorbed/inherited
    bn: str | None  # the BatchNorm the Ghost module took over (replaced by Identity), if any
    params_before: int  # conv params (+ the absorbed BatchNorm's)
    params_after: int
    macs_before: int | None  # None when the model could not run at the input size
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
    macs_counter: str  # "fvcore" (conv + linear ops) or "hooks" (nn.Conv/nn.Linear modules)
    inherited: list[dict[str, str]] = field(default_factory=list)  # {"tensor": new name, "source": original}
    warnings: list[str] = field(default_factory=list)

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
        """Stable JSON form: the fields plus ratios and ``flops`` (= 2 x MACs)."""
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


def _layer_macs(module: nn.Module, inp: torch.Tensor, out: torch.Tensor) -> int:
    if isinstance(module, nn.modules.conv._ConvTransposeNd):
        return inp.numel() * (module.out_channels // module.groups) * math.prod(module.kernel_size)
    if isinstance(module, nn.modules.conv._ConvNd):
        return out.numel() * (module.in_channels // module.groups) * math.prod(module.kernel_size)
    if isinstance(module, nn.Linear):
        return out.numel() * module.in_features
    return 0


@dataclass
class Measurement:
    """One forward pass at batch 1: MACs per conv/linear module (by id), output shapes, fvcore's count."""

    macs: dict[int, int]
    outputs: list[tuple[int, ...]]
    error: str | None = None
    fvcore: int | None = None  # conv + linear MACs counted by fvcore in the same pass (None: not available)

    def of(self, module: nn.Module) -> int | None:
        """MACs of ``module`` and its children (None when the forward pass failed)."""
        if self.error is not None:
            return None
        return sum(self.macs.get(id(m), 0) for m in module.modules())

    @property
    def total(self) -> int:
        """MACs of every conv / linear module (hook count)."""
        return sum(self.macs.values())


def _shapes(out: Any) -> list[tuple[int, ...]]:
    if isinstance(out, torch.Tensor):
        return [tuple(out.shape)]
    if isinstance(out, dict):
        return [s for v in out.values() for s in _shapes(v)]
    if isinstance(out, (list, tuple)):
        return [s for v in out for s in _shapes(v)]
    return []


def _fvcore_count(model: nn.Module, x: torch.Tensor) -> int | None:
    try:
        return count_macs(model, x).conv_linear
    except Exception:  # noqa: BLE001 - fvcore cannot trace every model: the caller falls back to hooks
        return None


def measure(model: nn.Module, input_size: tuple[int, ...], use_fvcore: bool = True) -> Measurement:
    """Run ``model`` once (eval mode, no grad, batch 1) with hooks on conv and linear layers.

    With ``use_fvcore`` the pass is fvcore's own trace, so its conv + linear count comes for free;
    when fvcore cannot trace the model a plain forward pass is used instead.
    """
    macs: dict[int, int] = {}
    outputs: list[list[tuple[int, ...]]] = []

    def hook(module: nn.Module, args: tuple[Any, ...], out: Any) -> None:
        if args and isinstance(args[0], torch.Tensor) and isinstance(out, torch.Tensor):
            macs[id(module)] = macs.get(id(module), 0) + _layer_macs(module, args[0], out)

    def top_hook(module: nn.Module, args: tuple[Any, ...], out: Any) -> None:
        outputs.append(_shapes(out))

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear))]
    handles.append(model.register_forward_hook(top_hook))
    training = {m: m.training for m in model.modules()}
    model.eval()
    try:
        x = _dummy(model, input_size)
        with torch.no_grad():
            count = _fvcore_count(model, x) if use_fvcore else None
            if count is None or len(outputs) != 1:
                macs.clear()
                outputs.clear()
                model(x)
        return Measurement(macs, outputs[0], fvcore=count)
    except Exception as exc:  # noqa: BLE001 - reported, not raised: the structure does not depend on it
        return Measurement({}, [], f"{type(exc).__name__}: {one_line(exc, 200)}")
    finally:
        for h in handles:
            h.remove()
        for m, t in training.items():
            m.training = t


def fvcore_macs(model: nn.Module, input_size: tuple[int, ...]) -> int | None:
    """Conv + linear MACs counted by fvcore's ``FlopCountAnalysis`` (None when fvcore cannot trace)."""
    return measure(model, input_size).fvcore
