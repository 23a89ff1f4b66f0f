"""``synthetic-bn`` calibration images, for users with no data at all: images optimised so that the batch
statistics every BatchNorm layer sees match the running statistics it learnt in training (ZeroQ, Cai et al.,
CVPR 2020; "The Knowledge Within", Haroush et al., CVPR 2020).

Each batch starts as seeded Gaussian noise (in the model's normalised input space) and Adam, with a cosine-decayed
learning rate, minimises the sum over BatchNorm layers of ``||mean_batch - running_mean||^2 +
||std_batch - running_std||^2`` (per channel, over the batch and spatial positions of the layer's input), plus
``tv_weight`` x a total-variation prior (mean squared difference of neighbouring pixels). The model runs in eval
mode with its parameters frozen; it is left as it was found. The result is a function of the model, the seed and
the options only (deterministic on one machine for a given thread count).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ghostcli.errors import UsageError
from ghostcli.progress import Progress, no_progress

#: multiply-adds one synthetic image may cost when ``steps`` is None (3 x the model's MACs per step: forward and
#: the backward pass to the input): ResNet-20 at 3x28x28 (31 MMac) gets MAX_STEPS, ResNet-50 at 224 MIN_STEPS
STEP_BUDGET_MACS = 2e10
MIN_STEPS, MAX_STEPS = 10, 200


@dataclass(frozen=True)
class SyntheticBNOptions:
    """How :func:`synthesize_bn_images` optimises. Cost: ``steps`` forward + backward passes per image.

    ``steps`` Adam steps per batch (cosine-decayed from ``lr``); None: as many as ``STEP_BUDGET_MACS`` per image
    allows, ``MIN_STEPS`` to ``MAX_STEPS`` (:meth:`steps_for`). ``batch_size`` images whose statistics are matched
    together (batches are made as equal as possible); ``tv_weight`` weight of the total-variation prior (0: none,
    as in ZeroQ). The default 10 was measured: ResNet-20 trained on digits at 3x16x16 (99.44% val top-1),
    ghostified and calibrated on 256 synthetic-bn images, agreed with the original on the 360 real val images
    85.3% with no prior, 88.9 / 89.4 / 91.4 / 94.4 / 92.8% at 0.3 / 1 / 3 / 10 / 30 (seed 0, one model; real
    digits: 97.8%). ``amp``: bfloat16 autocast on the CPU (float16 on CUDA), faster where the CPU has bf16
    instructions; the statistics and the loss stay float32.
    """

    steps: int | None = None
    batch_size: int = 64
    lr: float = 0.25
    tv_weight: float = 10.0
    amp: bool = False

    def steps_for(self, macs: float) -> int:
        """The Adam steps per batch for a model of ``macs`` multiply-adds per image."""
        if self.steps is not None:
            return self.steps
        return int(min(MAX_STEPS, max(MIN_STEPS, STEP_BUDGET_MACS // max(3.0 * macs, 1.0))))

    def check(self) -> None:
        """Raise UsageError on an option out of range (settings named in backquotes)."""
        if self.steps is not None and self.steps < 1:
            raise UsageError(f"`steps` must be at least 1, got {self.steps}")
        if self.batch_size < 1:
            raise UsageError(f"`batch_size` must be at least 1, got {self.batch_size}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise UsageError(f"`lr` must be a positive number, got {self.lr}")
        if not (math.isfinite(self.tv_weight) and self.tv_weight >= 0):
            raise UsageError(f"`tv_weight` must be >= 0, got {self.tv_weight}")


def batchnorm_layers(model: nn.Module) -> list[tuple[str, _BatchNorm]]:
    """The BatchNorm layers of ``model`` that hold running statistics, by qualified name."""
    return [(name, m) for name, m in model.named_modules()
            if isinstance(m, _BatchNorm) and m.running_mean is not None and m.running_var is not None]


class _StatsLoss:
    """Forward pre-hooks on the BatchNorm layers that sum each layer's statistics mismatch into ``total``."""

    def __init__(self, layers: list[tuple[str, _BatchNorm]]) -> None:
        self.total: torch.Tensor | None = None
        self.handles = [m.register_forward_pre_hook(self._hook) for _, m in layers]

    def _hook(self, module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        assert isinstance(module, _BatchNorm) and module.running_mean is not None and module.running_var is not None
        x = args[0].float()
        dims = [0, *range(2, x.dim())]
        mean = x.mean(dim=dims)
        std = torch.sqrt(x.var(dim=dims, unbiased=False) + module.eps)
        loss = ((mean - module.running_mean.float()) ** 2).sum() + \
               ((std - torch.sqrt(module.running_var.float() + module.eps)) ** 2).sum()
        self.total = loss if self.total is None else self.total + loss

    def take(self) -> torch.Tensor:
        """The summed loss of the last forward (and reset)."""
        if self.total is None:
            raise UsageError("no BatchNorm layer ran in the forward pass: synthetic-bn needs BatchNorm layers that "
                             "the model uses")
        total, self.total = self.total, None
        return total

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def _tv(x: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of vertically and horizontally neighbouring pixels."""
    if x.dim() < 4:
        return x.new_zeros(())
    return ((x[..., 1:, :] - x[..., :-1, :]) ** 2).mean() + ((x[..., :, 1:] - x[..., :, :-1]) ** 2).mean()


def _require_bn(model: nn.Module) -> list[tuple[str, _BatchNorm]]:
    layers = batchnorm_layers(model)
    if not layers:
        raise UsageError(f"synthetic-bn matches BatchNorm statistics, and {type(model).__name__} has no BatchNorm "
                         "layer with running statistics: calibrate on real images (a folder, digits, ...)")
    return layers


class _Frozen:
    """The model in eval mode with frozen parameters for the duration; restored afterwards."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def __enter__(self) -> nn.Module:
        self.training = self.model.training
        self.params = list(self.model.parameters())
        self.flags = [p.requires_grad for p in self.params]
        for p in self.params:
            p.requires_grad_(False)
        self.model.eval()
        return self.model

    def __exit__(self, *exc: object) -> None:
        for p, f in zip(self.params, self.flags):
            p.requires_grad_(f)
        self.model.train(self.training)


def _device(model: nn.Module) -> torch.device:
    for t in (*model.parameters(), *model.buffers()):
        return t.device
    return torch.device("cpu")


def model_macs(model: nn.Module, input_size: tuple[int, int, int]) -> int:
    """Multiply-adds of the convolutions and linear layers of ``model`` for one image (one traced forward)."""
    total = 0

    def hook(module: nn.Module, args: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.modules.conv._ConvNd):
            k = 1
            for v in module.kernel_size:
                k *= int(v)
            total += out.numel() * (module.in_channels // module.groups) * k
        elif isinstance(module, nn.Linear):
            total += out.numel() * module.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear))]
    try:
        with _Frozen(model) as net, torch.no_grad():
            net(torch.zeros(1, *input_size, device=_device(model)))
    finally:
        for h in handles:
            h.remove()
    return total


def _split(count: int, batch_size: int) -> list[int]:
    """``count`` as ceil(count / batch_size) batch sizes that differ by at most one."""
    n = max(1, math.ceil(count / batch_size))
    return [count // n + (1 if i < count % n else 0) for i in range(n)]


def synthesize_bn_images(model: nn.Module, count: int, input_size: tuple[int, int, int], *, seed: int = 0,
                         options: SyntheticBNOptions | None = None, progress: Progress = no_progress,
                         task: str = "synthetic-bn images") -> torch.Tensor:
    """``count`` images (``count`` x C x H x W, float32, on the CPU) optimised from seeded noise so that the batch
    statistics at every BatchNorm layer of ``model`` match its running statistics; see the module docstring.

    ``progress`` hears ``task`` after every Adam step (steps done of all batches' steps, and the batch's loss).
    Raises UsageError when the model has no BatchNorm layer with running statistics.
    """
    o = options or SyntheticBNOptions()
    o.check()
    if count < 1:
        raise UsageError(f"the number of synthetic-bn images must be at least 1, got {count}")
    size = tuple(int(v) for v in input_size)
    if len(size) != 3 or min(size) < 1:
        raise UsageError(f"input_size must be (C, H, W), got {input_size!r}")
    layers = _require_bn(model)
    device = _device(model)
    steps = o.steps if o.steps is not None else o.steps_for(model_macs(model, size))
    g = torch.Generator().manual_seed(int(seed))
    noise = torch.randn((count, *size), generator=g)
    sizes = _split(count, o.batch_size)
    total_steps = len(sizes) * steps
    out: list[torch.Tensor] = []
    stats = _StatsLoss(layers)
    try:
        with _Frozen(model) as net:
            progress(task, 0, total_steps)
            start = 0
            for b, n in enumerate(sizes):
                x = noise[start:start + n].to(device).requires_grad_(True)
                start += n
                opt = torch.optim.Adam([x], lr=o.lr)
                sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
                for step in range(steps):
                    with torch.autocast(device.type, dtype=torch.float16 if device.type == "cuda" else torch.bfloat16,
                                        enabled=o.amp):
                        net(x)
                    loss = stats.take()
                    if o.tv_weight > 0:
                        loss = loss + o.tv_weight * _tv(x)
                    value = float(loss.detach())
                    if not math.isfinite(value):
                        raise FloatingPointError(f"synthetic-bn diverged (loss {value}): lower `lr`")
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    sched.step()
                    progress(task, b * steps + step + 1, total_steps,
                             f"batch {b + 1}/{len(sizes)}, BN loss {value:.4g}")
                out.append(x.detach().cpu())
    finally:
        stats.remove()
    return torch.cat(out)


@torch.no_grad()
def bn_mismatch(model: nn.Module, images: torch.Tensor, batch_size: int = 64) -> float:
    """The summed BatchNorm statistics mismatch of ``images`` (the loss :func:`synthesize_bn_images` minimises,
    without the prior), averaged over batches of ``batch_size`` made as equal as possible."""
    layers = _require_bn(model)
    device = _device(model)
    stats = _StatsLoss(layers)
    losses: list[float] = []
    try:
        with _Frozen(model) as net:
            start = 0
            for n in _split(len(images), batch_size):
                net(images[start:start + n].to(device))
                start += n
                losses.append(float(stats.take()))
    finally:
        stats.remove()
    return sum(losses) / len(losses)
