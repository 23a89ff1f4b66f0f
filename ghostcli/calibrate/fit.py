"""The per-unit fits: activation caches (a unit's inputs and the original's outputs at the same place), the
closed-form initialisation applied to a Ghost module, block-wise reconstruction with Adam, relative errors, and
BatchNorm statistics re-estimated without changing the function."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ghostcli.calibrate.closed_form import (
    Choice,
    FitStats,
    PairFits,
    choose_channels,
    fit_all,
    fit_pairs,
    fixed_pairing,
)
from ghostcli.calibrate.readers import ReaderGraph, Readers, permute_readers
from ghostcli.calibrate.units import Unit


class _Stop(Exception):
    """Raised by a capture hook: the rest of the forward pass is not needed."""


class Cache:
    """Tensors for every calibration image (one unit's inputs, or its targets): float32, or bfloat16 when float32
    would exceed ``limit_mb`` (only one unit's activations are held at a time, never all layers'). With ``drop``
    the limit is a bound: when even bfloat16 would exceed it, only the first images that fit are kept."""

    def __init__(self, limit_mb: float, *, drop: bool = False) -> None:
        self.limit = limit_mb * 2**20
        self.drop = drop
        self.data: torch.Tensor | None = None
        self.filled = 0
        self.halved = False

    def add(self, x: torch.Tensor, total: int) -> None:
        if self.data is None:
            per = x[0].numel() * 4
            self.halved = per * total > self.limit
            dtype = torch.bfloat16 if self.halved else torch.float32
            keep = total if not (self.drop and self.halved) else min(total, int(self.limit // (per // 2)))
            self.data = torch.empty((keep, *x.shape[1:]), dtype=dtype, device=x.device)
        take = min(len(x), len(self.data) - self.filled)
        if take > 0:
            self.data[self.filled:self.filled + take] = x[:take].detach()
            self.filled += take

    @property
    def mb(self) -> float:
        return 0.0 if self.data is None else self.data.numel() * self.data.element_size() / 2**20

    def rows(self, idx: torch.Tensor | slice) -> torch.Tensor:
        assert self.data is not None
        return self.data[idx].float()


@dataclass
class Pairs:
    """A unit's cached inputs ``x`` and the original's outputs ``y`` at the same place, image by image."""

    x: Cache
    y: Cache

    @property
    def count(self) -> int:
        return min(self.x.filled, self.y.filled)

    @property
    def mb(self) -> float:
        return self.x.mb + self.y.mb

    def batches(self, batch_size: int, limit: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The pairs in order, ``batch_size`` at a time; with ``limit`` below the count, ``limit`` of them spread
        evenly over the cache (calibration images may come grouped: crops of one photo, a class's folder)."""
        if limit is None or limit >= self.count:
            for i in range(0, self.count, batch_size):
                sl = slice(i, min(i + batch_size, self.count))
                yield self.x.rows(sl), self.y.rows(sl)
            return
        idx = torch.arange(limit) * self.count // limit
        for i in range(0, limit, batch_size):
            yield self.x.rows(idx[i:i + batch_size]), self.y.rows(idx[i:i + batch_size])

    def sample(self, batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(0, self.count, (min(batch_size, self.count),), generator=generator)
        return self.x.rows(idx), self.y.rows(idx)


def capture(model: nn.Module, module: nn.Module, images: torch.Tensor, batch_size: int, cache: Cache, *,
            output: bool = False, perm: torch.Tensor | None = None) -> None:
    """Fill ``cache`` with ``module``'s input (or ``output``) for every image, running ``model`` only that far;
    ``perm`` reorders the channels (``x[:, perm]``)."""

    def keep(x: torch.Tensor) -> None:
        cache.add(x if perm is None else x[:, perm], len(images))
        raise _Stop

    if output:
        handle = module.register_forward_hook(lambda mod, args, out: keep(out))
    else:
        handle = module.register_forward_pre_hook(lambda mod, args: keep(args[0]))
    try:
        with torch.no_grad():
            for i in range(0, len(images), batch_size):
                x = images[i:i + batch_size]
                try:
                    model(x.float() if x.dtype == torch.bfloat16 else x)
                except _Stop:
                    if cache.data is not None and cache.filled >= len(cache.data):
                        break  # the cache holds no more images
                    continue
                raise RuntimeError("the forward pass did not reach the module being calibrated")
    finally:
        handle.remove()


def relative_error(unit: Unit, pairs: Pairs, batch_size: int, limit: int | None = None) -> float:
    """``||unit(x) - target|| / ||target||`` over the cached pairs (``limit`` of them, spread, when given)."""
    num = den = 0.0
    with torch.no_grad():
        for x, y in pairs.batches(batch_size, limit):
            t = unit.target(y)
            num += float((unit.module(x) - t).square().sum())
            den += float(t.square().sum())
    return (num / den) ** 0.5 if den > 0 else 0.0


def _pre_activation(unit: Unit, x: torch.Tensor) -> torch.Tensor:
    bn = unit.ref_bn
    y = unit.ref_conv(x)
    return bn(y) if bn is not None else y


def closed_form(unit: Unit, pairs: Pairs, graph: ReaderGraph | None, units: dict[str, Unit], *, ridge: float,
                batch_size: int, search_seconds: float, images: int | None = None) -> tuple[Choice, float, Readers]:
    """Choose the channels (when the readers can be permuted), fit the cheap filters, write the Ghost module;
    the statistics come from ``images`` cached pairs spread over the cache (all when None).

    Returns the choice, the total relative cost of the layer's fixed pairing (for comparison) and the readers.
    """
    gm = unit.ghost
    n, s, d = gm.out_ch, gm.ratio, gm.dw_kernel
    readers = graph.readers(unit.name) if graph is not None else Readers("`select_channels` is off")
    free = not readers.reason
    fixed_p, fixed_c = fixed_pairing(n, s)
    fixed_pairs = ([p for p, cs in zip(fixed_p, fixed_c) for _ in cs], [c for cs in fixed_c for c in cs])
    stats = FitStats(n, d, None if free else fixed_pairs)
    with torch.no_grad():  # parents: what the primary conv computes here; children: the original's channels
        for x, y in pairs.batches(batch_size, images):
            a = _pre_activation(unit, x)
            stats.add(y, F.relu(a) if unit.activated else a)
    if free:
        cost = fit_all(stats, ridge)
        fixed_cost = float(sum(float(cost[p, c]) for p, c in zip(*fixed_pairs)))
        choice = choose_channels(cost, s, seconds=search_seconds)
    else:
        fits = fit_pairs(stats, *fixed_pairs, ridge)
        fixed_cost = float(fits.cost.sum())
        choice = Choice(fixed_p, fixed_c, fixed_cost)
    chosen = ([p for p, cs in zip(choice.primaries, choice.children) for _ in cs],
              [c for cs in choice.children for c in cs])
    fits = fit_pairs(stats, *chosen, ridge) if free else fit_pairs(stats, *fixed_pairs, ridge)
    perm = torch.tensor(choice.order(), dtype=torch.long)
    if free and not torch.equal(perm, torch.arange(n)):
        _permute_outputs(unit, perm)
        unit.out_perm = perm
        permute_readers(graph.modules if graph is not None else {}, readers, perm)
        for name in readers.terminals:  # a later unit reads the permuted tensor: so does its reference
            later = units.get(name)
            if later is not None and later.kind == "ghost":
                with torch.no_grad():
                    ref = later.ref_conv
                    ref.weight.copy_(ref.weight[:, perm])
                later.in_perm = perm
    _write(unit, choice, fits)
    return choice, fixed_cost, readers


def _permute_outputs(unit: Unit, perm: torch.Tensor) -> None:
    with torch.no_grad():
        conv = unit.ref_conv
        conv.weight.copy_(conv.weight[perm])
        if conv.bias is not None:
            conv.bias.copy_(conv.bias[perm])
        bn = unit.ref_bn
        if bn is not None:
            for t in (bn.weight, bn.bias, bn.running_mean, bn.running_var):
                if t is not None:
                    t.copy_(t[perm])


def _write(unit: Unit, choice: Choice, fits: PairFits) -> None:
    """Primary conv + BN from the (permuted) reference's first m channels; cheap filters, biases and BN from the fits
    (cheap channel j = child t of primary i, j = i * (s - 1) + t)."""
    gm = unit.ghost
    m, s, d = gm.init_channels, gm.ratio, gm.dw_kernel
    conv, bn = unit.ref_conv, unit.ref_bn
    primary, cheap = gm.primary_conv[0], gm.cheap_operation[0]
    assert isinstance(primary, nn.Conv2d) and isinstance(cheap, nn.Conv2d)
    slots = [i * (s - 1) + t for i, cs in enumerate(choice.children) for t in range(len(cs))]
    idx = torch.tensor(slots, dtype=torch.long)
    dtype = cheap.weight.dtype
    with torch.no_grad():
        primary.weight.copy_(conv.weight[:m])
        cheap.weight.zero_()
        cheap.weight[idx] = fits.w.to(dtype).view(-1, 1, d, d)
        if bn is not None:
            pbn, cbn = gm.primary_conv[1], gm.cheap_operation[1]
            assert isinstance(pbn, nn.BatchNorm2d) and isinstance(cbn, nn.BatchNorm2d)
            assert pbn.running_mean is not None and pbn.running_var is not None
            assert cbn.running_mean is not None and cbn.running_var is not None
            assert bn.running_mean is not None and bn.running_var is not None
            mean = bn.running_mean[:m]
            pbn.running_mean.copy_(mean - conv.bias[:m] if conv.bias is not None else mean)
            pbn.running_var.copy_(bn.running_var[:m])
            pbn.weight.copy_(bn.weight[:m] if bn.affine else torch.ones(m))
            pbn.bias.copy_(bn.bias[:m] if bn.affine else torch.zeros(m))
            # BN(u) = u + b: running statistics of u itself, so train-mode BN later normalises as eval does now
            cbn.running_mean.zero_()
            cbn.running_var.fill_(1.0)
            cbn.weight.zero_()
            cbn.bias.zero_()
            var = fits.var.to(dtype)
            cbn.running_mean[idx] = fits.mean.to(dtype)
            cbn.running_var[idx] = var
            cbn.weight[idx] = (var + cbn.eps).sqrt()
            cbn.bias[idx] = (fits.b + fits.mean).to(dtype)
        else:
            assert primary.bias is not None and cheap.bias is not None
            primary.bias.copy_(conv.bias[:m] if conv.bias is not None else torch.zeros(m))
            cheap.bias.zero_()
            cheap.bias[idx] = fits.b.to(dtype)


def reconstruct(unit: Unit, pairs: Pairs, *, steps: int, lr: float, batch_size: int, seed: int,
                report: Any = None) -> None:
    """Block-wise reconstruction: Adam on the unit's parameters (BatchNorms frozen in eval mode, their affine
    parameters trained) for ``steps`` steps of ``batch_size`` cached inputs, loss = MSE to the original layer's
    output on the same inputs, cosine-decayed learning rate."""
    module = unit.module
    params = [p for p in module.parameters()]
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, steps))
    g = torch.Generator().manual_seed(seed)
    module.eval()
    try:
        for step in range(steps):
            x, y = pairs.sample(batch_size, g)
            loss = F.mse_loss(module(x), unit.target(y))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if report is not None and (step + 1) % 25 == 0:
                report(step + 1, float(loss.detach()))
    finally:
        for p, f in zip(params, flags):
            p.requires_grad_(f)


def snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return copy.deepcopy(module.state_dict())


def recenter_batchnorms(module: nn.Module, pairs: Pairs, batch_size: int) -> None:
    """Set each BatchNorm's running statistics to the mean / variance of what it reads on the cached inputs and
    rescale its weight and bias so that it computes exactly the same function: a later train-mode fine-tune then
    starts from the function calibration found."""
    bns = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
           and m.running_mean is not None and m.running_var is not None and m.affine]
    if not bns:
        return
    sums: dict[int, tuple[torch.Tensor, torch.Tensor, list[int]]] = {}

    def hook(mod: nn.Module, args: tuple[Any, ...]) -> None:
        x = args[0]
        dims = [0, *range(2, x.dim())]
        if id(mod) not in sums:
            sums[id(mod)] = (torch.zeros(x.shape[1], dtype=torch.float64),
                             torch.zeros(x.shape[1], dtype=torch.float64), [0])
        s1, s2, count = sums[id(mod)]
        s1 += x.sum(dims, dtype=torch.float64)
        s2 += x.square().sum(dims, dtype=torch.float64)
        count[0] += x.numel() // x.shape[1]

    handles = [bn.register_forward_pre_hook(hook) for bn in bns]
    try:
        with torch.no_grad():
            for x, _ in pairs.batches(batch_size):
                module(x)
    finally:
        for h in handles:
            h.remove()
    with torch.no_grad():
        for bn in bns:
            entry = sums.get(id(bn))
            if entry is None or not entry[2][0]:
                continue
            mu = entry[0] / entry[2][0]
            var = (entry[1] / entry[2][0] - mu.square()).clamp_min(0)
            assert bn.running_mean is not None and bn.running_var is not None
            a = bn.weight.double() / (bn.running_var.double() + bn.eps).sqrt()
            b = bn.bias.double() - bn.running_mean.double() * a
            bn.running_mean.copy_(mu)
            bn.running_var.copy_(var)
            bn.weight.copy_(a * (var + bn.eps).sqrt())
            bn.bias.copy_(b + a * mu)
