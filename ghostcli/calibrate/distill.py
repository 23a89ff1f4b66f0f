"""End-to-end distillation from the original (soft targets only, unlabelled images): network-wise reconstruction on
the calibration images, and distillation over a whole training split."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, RandomSampler

from ghostcli.progress import Progress, no_progress
from ghostcli.train.distill import kd_kl


class Translated(Dataset):
    """Images randomly translated by up to 1/8 of their size (pad with the image's minimum, crop), label 0: the
    calibration images for network-wise reconstruction, augmented so that a few hundred steps do not memorise them."""

    def __init__(self, images: torch.Tensor, seed: int = 0) -> None:
        self.images = images
        self.pad = max(1, images.shape[-1] // 8)
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = self.images[i]
        p = self.pad
        padded = torch.nn.functional.pad(x, (p, p, p, p), value=float(x.min()))
        dy, dx = (int(v) for v in torch.randint(0, 2 * p + 1, (2,), generator=self.generator))
        return padded[:, dy:dy + x.shape[1], dx:dx + x.shape[2]], 0


def distill(teacher: nn.Module, student: nn.Module, dataset: Dataset, *, epochs: int, lr: float, temperature: float,
            batch_size: int, limit: int | None, seed: int, progress: Progress = no_progress,
            task: str = "distilling") -> int:
    """Train every parameter of ``student`` for ``epochs`` passes over ``dataset`` (``limit`` images per pass when
    given; labels unused) to match ``teacher``'s softened outputs (``T^2 * KL``, Hinton et al. 2015); Adam with a
    cosine-decayed ``lr``. BatchNorms stay in eval mode: their statistics are the calibrated ones, their affine
    parameters train. Returns the images per epoch."""
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
    try:
        progress(task, 0, epochs * steps)
        for epoch in range(epochs):
            total = 0.0
            for step, (x, _) in enumerate(loader):
                x = x.to(device)
                with torch.no_grad():
                    t = teacher(x)
                loss = kd_kl(student(x), t, temperature)
                if not math.isfinite(float(loss.detach())):
                    raise FloatingPointError("distillation diverged (loss is not finite): lower `distill_lr`")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                total += float(loss.detach())
                if (step + 1) % 10 == 0 or step + 1 == steps:
                    progress(task, epoch * steps + step + 1, epochs * steps,
                             f"epoch {epoch + 1}/{epochs}, KL {total / (step + 1):.4f}")
    finally:
        for p, f in zip(params, flags):
            p.requires_grad_(f)
    student.eval()
    return per_epoch
