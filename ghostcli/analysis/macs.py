"""MAC counting with fvcore: total, by operator, by module, and the operators it could not count.

Convention: one MAC is one fused multiply-add, which the GhostNet paper calls a FLOP.
``total`` follows fvcore's default handles (conv, linear/matmul, batch/group/layer/instance
norm, adaptive average pooling: 1 per input element, nearest/bilinear 2-D up-sampling: 1 / 4 per
output element) plus the pooling and up-sampling ops fvcore leaves out (:data:`EXTRA_HANDLES`):
average pooling (``avg_pool1d/2d/3d``, e.g. GhostNetV2's DFC branch) counts the kernel's size per
output element (the adds of each window; 1 per input element when windows neither overlap nor pad,
as adaptive pooling), adaptive 1-D/3-D average pooling 1 per input element, and up-sampling the
interpolation taps per output element (nearest 1, linear 2, bilinear 4, trilinear 8, bicubic 16).
``conv_linear`` keeps only conv and linear/matmul, the convention of the paper's tables
(BatchNorm excluded, as it folds into the conv at inference time): these handles leave it as it was.

Ops without a multiply-add (activations such as ReLU and sigmoid, max pooling, elementwise ``add`` /
``mul``) stay out of ``total`` and are listed in ``uncounted``, never silently zero.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ghostcli.errors import GhostcliError, one_line
from ghostcli.layers.ghost import cheap_ops_as_convs

# fvcore operator names (after its simplification) that belong to the paper's convention.
CONV_LINEAR_OPS = frozenset({"conv", "linear", "addmm", "mm", "matmul", "bmm", "einsum"})
# Compute ops fvcore silently ignores; we report them as uncounted instead of hiding them.
_SURFACED_IGNORED = frozenset({"aten::relu", "aten::relu_", "aten::clamp", "aten::clamp_", "aten::max"})


def _shape(value: Any) -> list[int] | None:
    """The static shape of a traced value, None when it is not a tensor of known shape."""
    return [int(d) for d in value.type().sizes()] if value.isCompleteTensor() else None


def _int_list(value: Any) -> list[int] | None:
    """A traced ``int[]`` argument (a constant or a ``prim::ListConstruct`` of constants), None when not constant."""
    node = value.node()
    items = [v.toIValue() for v in node.inputs()] if node.kind() == "prim::ListConstruct" else [value.toIValue()]
    if len(items) == 1 and isinstance(items[0], (list, tuple)):
        items = list(items[0])
    return [int(v) for v in items] if items and all(isinstance(v, int) for v in items) else None


def _avg_pool(dims: int) -> Callable[[list[Any], list[Any]], int]:
    """``avg_pool{dims}d``: the kernel's size (its adds) per output element."""

    def handle(inputs: list[Any], outputs: list[Any]) -> int:
        out = _shape(outputs[0])
        if out is None:
            return 0
        kernel = _int_list(inputs[1]) if len(inputs) > 1 else None
        if not kernel:  # not a constant: count each input element once, as adaptive pooling
            return _per_input(inputs, outputs)
        per_output = int(kernel[0]) ** dims if len(kernel) == 1 else math.prod(int(k) for k in kernel)
        return math.prod(out) * per_output

    return handle


def _per_input(inputs: list[Any], outputs: list[Any]) -> int:
    shape = _shape(inputs[0])
    return math.prod(shape) if shape else 0


def _per_output(taps: int) -> Callable[[list[Any], list[Any]], int]:
    def handle(inputs: list[Any], outputs: list[Any]) -> int:
        shape = _shape(outputs[0])
        return taps * math.prod(shape) if shape else 0

    return handle


#: Pooling and up-sampling ops fvcore's defaults leave uncounted (see the module docstring).
EXTRA_HANDLES: dict[str, Callable[[list[Any], list[Any]], int]] = {
    "aten::avg_pool1d": _avg_pool(1),
    "aten::avg_pool2d": _avg_pool(2),
    "aten::avg_pool3d": _avg_pool(3),
    "aten::adaptive_avg_pool1d": _per_input,
    "aten::adaptive_avg_pool3d": _per_input,
    "aten::upsample_nearest1d": _per_output(1),
    "aten::upsample_nearest3d": _per_output(1),
    "aten::_upsample_nearest_exact1d": _per_output(1),
    "aten::_upsample_nearest_exact2d": _per_output(1),
    "aten::_upsample_nearest_exact3d": _per_output(1),
    "aten::upsample_linear1d": _per_output(2),
    "aten::upsample_trilinear3d": _per_output(8),
    "aten::upsample_bicubic2d": _per_output(16),
}


@dataclass
class MacCount:
    """fvcore's counts for one model at batch 1."""

    total: int
    conv_linear: int
    by_operator: dict[str, int]
    by_module: dict[str, int]
    uncounted: dict[str, int]


def count_macs(model: nn.Module, example: torch.Tensor) -> MacCount:
    """Trace ``model`` on ``example`` with fvcore and count MACs; torch/fvcore warnings are silenced."""
    import logging

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fvcore.nn import FlopCountAnalysis

        fvlog = logging.getLogger("fvcore")
        old_level = fvlog.level
        fvlog.setLevel(logging.ERROR)
        try:
            fa = FlopCountAnalysis(model, (example,))
            fa.set_op_handle(**EXTRA_HANDLES)
            fa.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
            ignored = getattr(fa, "_ignored_ops", None)
            if isinstance(ignored, set):
                ignored.difference_update(_SURFACED_IGNORED)
            with torch.no_grad(), cheap_ops_as_convs():
                total = int(fa.total())
                by_op = {k: int(v) for k, v in sorted(fa.by_operator().items(), key=lambda kv: -kv[1])}
                by_module = {k: int(v) for k, v in fa.by_module().items()}
                uncounted = dict(Counter(fa.unsupported_ops()).most_common())
        except GhostcliError:
            raise
        except Exception as exc:  # tracing failures: dynamic control flow, non-tensor outputs ...
            msg = one_line(exc, 200)
            raise GhostcliError(f"fvcore could not trace the model to count MACs: {type(exc).__name__}: {msg}") from None
        finally:
            fvlog.setLevel(old_level)
    conv_linear = sum(v for k, v in by_op.items() if k in CONV_LINEAR_OPS)
    return MacCount(total=total, conv_linear=conv_linear, by_operator=by_op, by_module=by_module,
                    uncounted={k.removeprefix("aten::"): int(v) for k, v in uncounted.items()})
