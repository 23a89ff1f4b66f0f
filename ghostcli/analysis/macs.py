"""MAC counting with fvcore: total, by operator, by module, and the operators it could not count.

Convention: one MAC is one fused multiply-add, which the GhostNet paper calls a FLOP.
``total`` follows fvcore's default handles (conv, linear/matmul, batch/group/layer/instance
norm, adaptive average pooling, upsampling); ``conv_linear`` keeps only conv and
linear/matmul, the convention of the paper's tables (BatchNorm excluded, as it folds
into the conv at inference time).
"""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass

import torch
from torch import nn

from ghostcli.errors import GhostcliError, one_line

# fvcore operator names (after its simplification) that belong to the paper's convention.
CONV_LINEAR_OPS = frozenset({"conv", "linear", "addmm", "mm", "matmul", "bmm", "einsum"})
# Compute ops fvcore silently ignores; we report them as uncounted instead of hiding them.
_SURFACED_IGNORED = frozenset({"aten::relu", "aten::relu_", "aten::clamp", "aten::clamp_", "aten::max"})


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
            fa.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
            ignored = getattr(fa, "_ignored_ops", None)
            if isinstance(ignored, set):
                ignored.difference_update(_SURFACED_IGNORED)
            with torch.no_grad():
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
