"""Multi-process training on an existing engine: ``torchrun`` sets RANK/WORLD_SIZE/LOCAL_RANK.

Choices (documented in docs/training.md):

- ``--batch-size`` is the *global* batch; each of the N ranks takes ``batch / N``
  samples of every step, and DDP averages the gradients, so one step sees the same
  samples and the same mean loss as a single process.
- BatchNorm statistics are computed over the *global* batch (``sync_batchnorm``):
  on CPU/gloo ``torch.nn.SyncBatchNorm`` is not available, so the BatchNorm layers
  are switched, in place and only for the duration of training, to a subclass that
  all-reduces the per-channel sums (autograd-aware), in float32 or the input's wider
  dtype (a float64 model stays float64). The state dict is unchanged.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from ghostcli.errors import DeviceError, UsageError


@dataclass(frozen=True)
class DistEnv:
    """Where this process sits in a (possibly single-process) job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        """True when more than one process takes part."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 logs and saves."""
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise UsageError(f"environment variable {name}={value!r} is not an integer") from None


def detect() -> DistEnv:
    """Read the torchrun environment without initializing anything."""
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local = _env_int("LOCAL_RANK", rank)
    if world < 1 or not 0 <= rank < world:
        raise UsageError(f"inconsistent torchrun environment: RANK={rank}, WORLD_SIZE={world}")
    return DistEnv(rank=rank, world_size=world, local_rank=local)


def init(env: DistEnv, device_type: str) -> None:
    """Join the process group when ``env`` has several processes (gloo on CPU, nccl on CUDA)."""
    if not env.enabled:
        return
    backend = "nccl" if device_type == "cuda" else "gloo"
    if not dist.is_available():
        raise DeviceError("this PyTorch build has no torch.distributed support")
    if not dist.is_initialized():
        if device_type == "cuda":
            torch.cuda.set_device(env.local_rank)
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=30))


def shutdown(env: DistEnv) -> None:
    """Leave the process group if this module joined one."""
    if env.enabled and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(values: list[float], env: DistEnv, device: torch.device) -> list[float]:
    """Sum a few floats over all ranks (identity in a single process)."""
    if not env.enabled:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return [float(v) for v in t.tolist()]


def any_rank(flag: bool, env: DistEnv, device: torch.device) -> bool:
    """True when ``flag`` is set on any rank (used to stop all ranks together on Ctrl-C)."""
    if not env.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def barrier(env: DistEnv) -> None:
    """Wait for every rank."""
    if env.enabled:
        dist.barrier()


# --- BatchNorm over the global batch --------------------------------------------------------------

def _global_bn_forward(self: nn.modules.batchnorm._BatchNorm, x: torch.Tensor) -> torch.Tensor:
    if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return super(type(self), self).forward(x)  # the plain BatchNorm this class was made from
    from torch.distributed.nn.functional import all_reduce

    c = x.shape[1]
    dims = [0, *range(2, x.dim())]
    shape = [1, c] + [1] * (x.dim() - 2)
    dtype = torch.promote_types(x.dtype, torch.float32)  # float16/bfloat16 in float32, float64 stays float64
    xf = x.to(dtype)
    count = torch.full((1,), x.numel() / c, dtype=dtype, device=x.device)
    first = all_reduce(torch.cat([xf.sum(dims), count]))
    n = first[c]
    mean = first[:c] / n
    centered = xf - mean.view(shape)
    var = all_reduce((centered * centered).sum(dims)) / n  # two passes: no E[x^2]-E[x]^2 cancellation
    if (self.track_running_stats and self.running_mean is not None and self.running_var is not None
            and self.num_batches_tracked is not None):
        with torch.no_grad():
            self.num_batches_tracked.add_(1)
            m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
            self.running_mean.mul_(1 - m).add_(mean.detach().to(self.running_mean.dtype), alpha=m)
            unbiased = var.detach() * n / torch.clamp(n - 1, min=1)
            self.running_var.mul_(1 - m).add_(unbiased.to(self.running_var.dtype), alpha=m)
    y = centered * torch.rsqrt(var.view(shape) + self.eps)
    if self.affine:
        y = y * self.weight.view(shape) + self.bias.view(shape)
    return y.to(x.dtype)


_GLOBAL_CLASSES: dict[type, type] = {}


def _global_class(base: type) -> type:
    if base not in _GLOBAL_CLASSES:
        _GLOBAL_CLASSES[base] = type(f"Global{base.__name__}", (base,),
                                     {"forward": _global_bn_forward})
    return _GLOBAL_CLASSES[base]


def sync_batchnorm(model: nn.Module) -> list[tuple[nn.Module, type]]:
    """Make every BatchNorm1d/2d/3d of ``model`` normalize over the global batch; returns what to undo."""
    swapped = []
    for m in model.modules():
        if type(m) in (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d):
            swapped.append((m, type(m)))
            m.__class__ = _global_class(type(m))
    return swapped


def restore_batchnorm(swapped: list[tuple[nn.Module, type]]) -> None:
    """Undo :func:`sync_batchnorm` (the saved model holds plain BatchNorm layers)."""
    for m, cls in swapped:
        m.__class__ = cls
