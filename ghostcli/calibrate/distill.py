"""End-to-end distillation from the original (soft targets only, unlabelled images): network-wise reconstruction on
the calibration images, and distillation over a whole training split."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
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
    """The mean relative squared error of paired student / teacher module outputs during one step. Each error is
    taken in the student module's forward hook, before anything after the module can change its output in place
    (a residual ``+=``), so no output is copied but the teacher's where its target is the output itself."""

    def __init__(self, pairs: Sequence[FeaturePair]) -> None:
        self.targets: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self.terms: list[torch.Tensor] = []
        self.handles: list[Any] = []
        for i, (t, s, transform) in enumerate(pairs):
            self.handles.append(t.register_forward_hook(self._teacher(i, transform)))
            self.handles.append(s.register_forward_hook(self._student(i)))

    def _teacher(self, i: int, transform: Callable[[torch.Tensor], torch.Tensor]) -> Callable[..., None]:
        def hook(mod: nn.Module, args: Any, out: torch.Tensor) -> None:
            d = out.detach()
            t = transform(d)
            t = t.clone() if t is d else t  # an in-place op may follow
            self.targets[i] = (t, t.square().sum().clamp_min(1e-12))
        return hook

    def _student(self, i: int) -> Callable[..., None]:
        def hook(mod: nn.Module, args: Any, out: torch.Tensor) -> None:
            t, energy = self.targets.pop(i)
            self.terms.append((out - t).square().sum() / energy)
        return hook

    def loss(self) -> torch.Tensor:
        terms, self.terms = self.terms, []
        return torch.stack(terms).mean()

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


@contextmanager
def channels_last(*models: nn.Module) -> Iterator[None]:
    """Hold the 4-D weights of ``models`` in channels_last while the block runs, contiguous (NCHW) again after it
    (safetensors and every later step expect that). Parameters keep their identity, so an optimiser made inside
    the block trains the models' own tensors. On the 2-core AMD EPYC (AVX-512, no AMX) a network-wise step of the
    ghostified ResNet-20 on 64 images of 3 x 28 x 28 took 0.23 s in NCHW and 0.21 s in channels_last (convs faster,
    BatchNorms of 8 channels slower)."""
    for m in models:
        m.to(memory_format=torch.channels_last)
    try:
        yield
    finally:
        for m in models:
            m.to(memory_format=torch.contiguous_format)


def _input(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A batch on ``device``, in channels_last when it is images (N, C, H, W), as the models inside
    :func:`channels_last` want it."""
    return x.to(device, memory_format=torch.channels_last) if x.dim() == 4 else x.to(device)


def distill(teacher: nn.Module, student: nn.Module, dataset: Dataset, *, epochs: int, lr: float, temperature: float,
            batch_size: int, limit: int | None, seed: int, progress: Progress = no_progress,
            task: str = "distilling", features: Sequence[FeaturePair] = (), feature_weight: float = 1.0,
            mixup: float = 0.0, micro_batch: int | None = None, bn_images: torch.Tensor | None = None) -> int:
    """Train every parameter of ``student`` for ``epochs`` passes over ``dataset`` (``limit`` images per pass when
    given; labels unused) to match ``teacher``'s softened outputs (``T^2 * KL``, Hinton et al. 2015); Adam with a
    cosine-decayed ``lr``. Without ``bn_images`` BatchNorms stay in eval mode: their statistics are the calibrated
    ones, their affine parameters train. With ``features`` the loss adds ``feature_weight`` x the mean relative
    squared error of each student module's output to its teacher module's (hints, Romero et al. 2015). With ``mixup`` > 0 each batch is
    mixed with itself reversed, ``lam ~ Beta(mixup, mixup)`` (teacher and student see the same mixed images: more
    distinct inputs from few images). With ``micro_batch`` smaller than ``batch_size`` each batch runs in chunks of
    that many images whose gradients add up to the batch's (the memory of one chunk's backward, the same step).
    Both models run in channels_last meanwhile (:func:`channels_last`). With ``bn_images`` the student's BatchNorms
    normalise with each batch's statistics while training, as in training from labels, and their running statistics
    are measured again on ``bn_images`` afterwards (:func:`reestimate_batchnorms`). Returns the images per epoch."""
    n = len(dataset)  # type: ignore[arg-type]
    per_epoch = min(n, limit) if limit else n
    g = torch.Generator().manual_seed(seed)
    sampler = RandomSampler(dataset, replacement=False, num_samples=per_epoch, generator=g)  # type: ignore[arg-type]
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=per_epoch > batch_size)
    with channels_last(teacher, student):
        _train(teacher, student, loader, epochs=epochs, lr=lr, temperature=temperature, progress=progress, task=task,
               features=features, feature_weight=feature_weight, mixup=mixup, micro_batch=micro_batch,
               batch_stats=bn_images is not None)
        if bn_images is not None:
            reestimate_batchnorms(student, bn_images, batch_size)
    return per_epoch


def _batchnorms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


def reestimate_batchnorms(model: nn.Module, images: torch.Tensor, batch_size: int) -> None:
    """Replace the running statistics of every BatchNorm of ``model`` by their averages over ``images`` (the batch
    mean and variance of each batch, in order; as ``torch.optim.swa_utils.update_bn``). Leaves ``model`` in eval
    mode."""
    bns = _batchnorms(model)
    momenta = [bn.momentum for bn in bns]
    model.eval()
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the batches
        bn.train()
    device = next(model.parameters()).device
    try:
        with torch.no_grad():
            for i in range(0, len(images), batch_size):
                model(_input(images[i:i + batch_size], device))
    finally:
        for bn, m in zip(bns, momenta):
            bn.momentum = m
        model.eval()


def _train(teacher: nn.Module, student: nn.Module, loader: DataLoader[Any], *, epochs: int, lr: float,
           temperature: float, progress: Progress, task: str, features: Sequence[FeaturePair], feature_weight: float,
           mixup: float, micro_batch: int | None, batch_stats: bool) -> None:
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
    if batch_stats:
        for bn in _batchnorms(student):
            bn.train()
    hints = _Features(features) if features else None
    try:
        progress(task, 0, epochs * steps)
        for epoch in range(epochs):
            total = 0.0
            for step, (x, _) in enumerate(loader):
                x = _input(x, device)
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
