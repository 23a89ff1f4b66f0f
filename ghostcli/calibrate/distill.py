"""End-to-end distillation from the original (soft targets only, unlabelled images): network-wise reconstruction on
the calibration images, and distillation over a whole training split."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, RandomSampler

from ghostcli.progress import Progress, no_progress
from ghostcli.train.distill import kd_kl


class Translated(Dataset):
    """Images randomly translated by up to 1/8 of their size (pad with the image's minimum, crop) and, with ``flip``,
    mirrored half of the time; label 0: the calibration images for network-wise reconstruction, augmented so that a
    few hundred steps do not memorise them."""

    def __init__(self, images: torch.Tensor, seed: int = 0, flip: bool = False) -> None:
        self.images = images
        self.flip = flip
        self.pad = max(1, images.shape[-1] // 8)
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = self.images[i]
        p = self.pad
        padded = torch.nn.functional.pad(x, (p, p, p, p), value=float(x.min()))
        dy, dx, f = (int(v) for v in torch.randint(0, 2 * p + 1, (3,), generator=self.generator))
        x = padded[:, dy:dy + x.shape[1], dx:dx + x.shape[2]]
        return (x.flip(-1) if self.flip and f % 2 else x), 0


#: (teacher module, student module, target transform): the student module's output must match the transformed
#: output of the teacher module (a Ghost module and the original BN whose output it reproduces, in its channel order)
FeaturePair = tuple[nn.Module, nn.Module, Callable[[torch.Tensor], torch.Tensor]]


class _Features:
    """Outputs of paired teacher / student modules during one step, and their mean relative squared error."""

    def __init__(self, pairs: Sequence[FeaturePair]) -> None:
        self.pairs = list(pairs)
        self.teacher: dict[int, torch.Tensor] = {}
        self.student: dict[int, torch.Tensor] = {}
        self.handles: list[Any] = []
        for i, (t, s, _) in enumerate(self.pairs):
            self.handles.append(t.register_forward_hook(self._keep(self.teacher, i, detach=True)))
            self.handles.append(s.register_forward_hook(self._keep(self.student, i, detach=False)))

    @staticmethod
    def _keep(store: dict[int, torch.Tensor], i: int, detach: bool) -> Callable[..., None]:
        def hook(mod: nn.Module, args: Any, out: torch.Tensor) -> None:
            store[i] = out.detach().clone() if detach else out.clone()  # clone: an in-place ReLU may follow
        return hook

    def loss(self) -> torch.Tensor:
        terms = []
        for i, (_, _, transform) in enumerate(self.pairs):
            t = transform(self.teacher.pop(i))
            terms.append((self.student.pop(i) - t).square().sum() / t.square().sum().clamp_min(1e-12))
        return torch.stack(terms).mean()

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def distill(teacher: nn.Module, student: nn.Module, dataset: Dataset, *, epochs: int, lr: float, temperature: float,
            batch_size: int, limit: int | None, seed: int, progress: Progress = no_progress,
            task: str = "distilling", features: Sequence[FeaturePair] = (), feature_weight: float = 1.0,
            mixup: float = 0.0, micro_batch: int | None = None) -> int:
    """Train every parameter of ``student`` for ``epochs`` passes over ``dataset`` (``limit`` images per pass when
    given; labels unused) to match ``teacher``'s softened outputs (``T^2 * KL``, Hinton et al. 2015); Adam with a
    cosine-decayed ``lr``. BatchNorms stay in eval mode: their statistics are the calibrated ones, their affine
    parameters train. With ``features`` the loss adds ``feature_weight`` x the mean relative squared error of each
    student module's output to its teacher module's (hints, Romero et al. 2015). With ``mixup`` > 0 each batch is
    mixed with itself reversed, ``lam ~ Beta(mixup, mixup)`` (teacher and student see the same mixed images: more
    distinct inputs from few images). With ``micro_batch`` smaller than ``batch_size`` each batch runs in chunks of
    that many images whose gradients add up to the batch's (the memory of one chunk's backward, the same step).
    Returns the images per epoch."""
    n = len(dataset)  # type: ignore[arg-type]
    per_epoch = min(n, limit) if limit else n
    g = torch.Generator().manual_seed(seed)
    sampler = RandomSampler(dataset, replacement=False, num_samples=per_epoch, generator=g)  # type: ignore[arg-type]
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=per_epoch > batch_size)
    steps = len(loader)
    params = [p for p in student.parameters()]
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs * steps))
    device = next(iter(params)).device if params else torch.device("cpu")
    teacher.eval()
    student.eval()
    hints = _Features(features) if features else None
    try:
        progress(task, 0, epochs * steps)
        for epoch in range(epochs):
            total = 0.0
            for step, (x, _) in enumerate(loader):
                x = x.to(device)
                if mixup > 0:
                    lam = float(torch.distributions.Beta(mixup, mixup).sample())
                    x = lam * x + (1 - lam) * x.flip(0)
                opt.zero_grad(set_to_none=True)
                batch_loss = 0.0
                for chunk in x.split(micro_batch or len(x)):
                    with torch.no_grad():
                        t = teacher(chunk)
                    loss = kd_kl(student(chunk), t, temperature)
                    if hints is not None:
                        loss = loss + feature_weight * hints.loss()
                    loss = loss * (len(chunk) / len(x))
                    if not math.isfinite(float(loss.detach())):
                        raise FloatingPointError("distillation diverged (loss is not finite): lower `distill_lr`")
                    loss.backward()
                    batch_loss += float(loss.detach())
                opt.step()
                sched.step()
                total += batch_loss
                if (step + 1) % 10 == 0 or step + 1 == steps:
                    progress(task, epoch * steps + step + 1, epochs * steps,
                             f"epoch {epoch + 1}/{epochs}, KL {total / (step + 1):.4f}")
    finally:
        if hints is not None:
            hints.remove()
        for p, f in zip(params, flags):
            p.requires_grad_(f)
    student.eval()
    return per_epoch


def micro_batch_for(student: nn.Module, example: torch.Tensor, features: Sequence[FeaturePair], budget_mb: float,
                    batch_size: int) -> int:
    """Images per forward/backward chunk so that one chunk's activations stay within ``budget_mb``: an upper bound
    per image from one forward of ``example`` (one image) with gradients, the outputs of every leaf module plus two
    copies of each hint module's output (teacher and student). ``batch_size`` when the whole batch fits."""
    sizes: list[int] = []
    hinted = {id(s) for _, s, _ in features}

    def hook(mod: nn.Module, args: Any, out: Any) -> None:
        if isinstance(out, torch.Tensor):
            sizes.append(out.numel() * out.element_size() * (3 if id(mod) in hinted else 1))

    leaves = [m for m in student.modules() if next(m.children(), None) is None or id(m) in hinted]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        with torch.enable_grad():
            student(example[:1])
    finally:
        for h in handles:
            h.remove()
    per_image = max(1, sum(sizes))
    return max(1, min(batch_size, int(budget_mb * 2**20 // per_image)))
