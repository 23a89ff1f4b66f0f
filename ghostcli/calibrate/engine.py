"""``calibrate_model``: fit a ghostified model to its original on unlabelled images, in stages, and report each.

1. **Closed-form initialisation** (per Ghost module, in forward order): the target is the original model's
   output at the same place (its conv -> BN, on the same images); the module's inputs are taken from the
   ghostified model as calibrated so far (``inputs="ghost"``: each layer also corrects the error of the layers
   before it, so errors do not pile up) or from the original (``inputs="original"``: every layer on its own).
   Where the module's readers can be permuted (:mod:`ghostcli.calibrate.readers`) it chooses which original
   channels the primary conv computes and the pairing of cheap to primary channels
   (:mod:`ghostcli.calibrate.closed_form`), and permutes the readers' weights so every tensor keeps its meaning;
   elsewhere it keeps the layer's own pairing. The cheap depthwise filters come from a ridge least-squares fit.
2. **Block-wise reconstruction** (cf. BRECQ, Li et al., ICLR 2021): each Ghost module (and each G-Ghost stage,
   against the original stage) is trained with Adam to reproduce the original's output on the same inputs. Only
   one unit's inputs are held at a time.
3. **Network-wise reconstruction** (``network_epochs``): the whole ghostified model is trained to match the
   original's outputs (soft targets, KL) on the calibration images, randomly translated: the layers learn to work
   together where no layer alone can reproduce its original. Its BatchNorms normalise with batch statistics, as in
   training, and their running statistics are measured again on the calibration images afterwards.
4. **Distillation** (``distill_epochs`` > 0): the same over every image of the source's training split (labels are
   never read).

Every stage is measured: per unit the relative error ``||ghost - original|| / ||original||`` of its output against
the original model's output at the same place, on the calibration images (before, after initialisation, after
block-wise) and on held-out images (after calibration, after distillation), the ghostified model running on its
own (errors of earlier layers included); per model the top-1 agreement with the original on the held-out images.
"""

from __future__ import annotations

import contextlib
import copy
import math
import resource
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ghostcli.calibrate.fit import (
    Cache,
    Pairs,
    closed_form,
    recenter_batchnorms,
    reconstruct,
    relative_error,
    snapshot,
)
from ghostcli.calibrate.images import CalibrationImages, batches, load_images
from ghostcli.calibrate.prefix import Prefix
from ghostcli.calibrate.readers import ReaderGraph
from ghostcli.calibrate.units import Unit, find_units
from ghostcli.errors import UsageError
from ghostcli.progress import Progress, no_progress

if TYPE_CHECKING:
    from ghostcli.calibrate.distill import FeaturePair

INPUTS = ("ghost", "original")


@dataclass(frozen=True)
class CalibrateOptions:
    """How :func:`calibrate_model` calibrates (field names are the ``ghostify`` command's options where it has
    them: ``calib_data`` is ``--calib-data``)."""

    calib_data: str = "digits"  # digits | fashion-mnist | idx:PATH | synthetic | synthetic-bn | DIR (no labels read)
    calib_images: int = 256  # images the fits use
    held_out_images: int = 512  # images errors and agreement are measured on (the source's val split when it has one)
    batch_size: int = 64
    inputs: str = "ghost"  # where each unit's inputs come from: "ghost" (the model being calibrated) or "original"
    select_channels: bool = True  # choose primary channels and pairing where the readers can be permuted
    ridge: float = 1e-4  # ridge of the cheap filters' least squares, relative to the parent map's energy
    search_seconds: float = 2.0  # per layer, for swaps after the greedy channel choice
    block_steps: int | None = None  # Adam steps per unit; None: 12 passes over the calibration images, 50 to 500,
    #                                 at most what `block_budget` allows (then at least 10)
    block_budget: float = 4e10  # multiply-adds per unit that the default block_steps may spend (3 x forward per image)
    block_lr: float = 1e-3
    block_batch_size: int = 32
    network_epochs: int | None = None  # passes over the calibration images; None: about `network_steps` steps, 1 to
    #                                    90 epochs, and the whole epochs `network_budget` allows (at least 1)
    network_steps: int = 1200  # steps of `batch_size` the default network_epochs aims at
    network_budget: float = 8e12  # multiply-adds the default network_epochs may spend (student 3x + teacher 1x)
    network_min_steps: int = 32  # the default network_epochs is 0 (stage skipped) when the budget allows fewer
    #                              steps: a few Adam steps move every weight by about the learning rate, i.e. noise
    network_lr: float = 1e-3
    network_features: float = 1.0  # weight of the per-layer output losses beside the KL (0: model outputs only)
    network_mixup: float = 0.0  # Beta(a, a) mixup of the calibration images in network-wise reconstruction (0: off)
    network_flip: bool = True  # also mirror the calibration images (left-right) in network-wise reconstruction
    network_batch_stats: bool = True  # BatchNorms use batch statistics in network-wise reconstruction (running
    #                                   statistics measured again on the calibration images after it); False: frozen
    distill_epochs: int = 0
    distill_lr: float = 3e-4
    distill_temperature: float = 1.0
    distill_images: int | None = None  # per epoch; None: the whole training split
    distill_features: float = 0.0  # weight of the per-layer output losses in distillation (0: model outputs only)
    distill_batch_stats: bool = True  # as network_batch_stats, for distillation
    cache_mb: float = 1024.0  # above this one unit's inputs are held as bfloat16
    train_mb: float = 2048.0  # activations one network-wise / distillation step keeps for backward; a batch that
    #                           needs more runs in chunks whose gradients add up (the same step, less memory)
    error_images: int = 256  # per-unit errors (and their undo checks) use N calibration images, spread over them
    fit_elements: float = 3.2e7  # the closed-form statistics and per-unit errors of a layer use images (spread over
    #                              the set) up to this many output values (images x channels x H x W), at least 128
    #                              (32 of EfficientNet-Lite0's 128 crops: 72.7% -> 59.1% agreement on real photos)
    kl_images: int = 1024  # the undo checks of whole-model stages compare the KL on the first N calibration images
    #                        (256 undid a network-wise stage that helped the ccexam MNIST CNN: the KL's noise)
    seed: int = 0

    def check(self) -> None:
        """Raise UsageError on an option out of range (settings named in backquotes)."""
        if self.calib_images < 1:
            raise UsageError(f"`calib_images` must be at least 1, got {self.calib_images}")
        for name in ("error_images", "kl_images"):
            if getattr(self, name) < 1:
                raise UsageError(f"`{name}` must be at least 1, got {getattr(self, name)}")
        if self.held_out_images < 1:
            raise UsageError(f"`held_out_images` must be at least 1, got {self.held_out_images}")
        if self.batch_size < 1 or self.block_batch_size < 1:
            raise UsageError("`batch_size` and `block_batch_size` must be at least 1")
        if self.inputs not in INPUTS:
            raise UsageError(f"`inputs` must be one of {', '.join(INPUTS)}, got {self.inputs!r}")
        if self.block_steps is not None and self.block_steps < 0:
            raise UsageError(f"`block_steps` must be >= 0, got {self.block_steps}")
        if self.network_epochs is not None and self.network_epochs < 0:
            raise UsageError(f"`network_epochs` must be >= 0, got {self.network_epochs}")
        if self.distill_epochs < 0:
            raise UsageError(f"`distill_epochs` must be >= 0, got {self.distill_epochs}")
        if self.distill_images is not None and self.distill_images < 1:
            raise UsageError(f"`distill_images` must be at least 1, got {self.distill_images}")
        for name in ("network_features", "distill_features"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise UsageError(f"`{name}` must be >= 0, got {v}")
        if self.network_steps < 1:
            raise UsageError(f"`network_steps` must be >= 1, got {self.network_steps}")
        if self.network_min_steps < 0:
            raise UsageError(f"`network_min_steps` must be >= 0, got {self.network_min_steps}")
        for name in ("ridge", "block_lr", "network_lr", "distill_lr", "distill_temperature", "cache_mb", "train_mb",
                     "block_budget", "network_budget", "fit_elements"):
            v = getattr(self, name)
            if not (math.isfinite(v) and (v > 0 or (name == "ridge" and v == 0))):
                raise UsageError(f"`{name}` must be a positive number, got {v}")

    def steps_for(self, images: int, macs: float = 0.0) -> int:
        """Block-wise steps per unit: ``block_steps``, or 12 passes over ``images`` in batches, within 50..500, and
        for a unit of ``macs`` multiply-adds per image at most ``block_budget / (3 * macs * block_batch_size)`` (at
        least 10)."""
        if self.block_steps is not None:
            return self.block_steps
        steps = min(500, max(50, 12 * math.ceil(images / self.block_batch_size)))
        if macs > 0:
            steps = min(steps, max(10, int(self.block_budget / (3 * macs * self.block_batch_size))))
        return steps

    def network_steps_within(self, macs: float, teacher_macs: float = 0.0) -> float:
        """Network-wise steps of ``batch_size`` that ``network_budget`` pays for (student 3x, teacher 1x)."""
        return self.network_budget / (self.batch_size * (3 * macs + teacher_macs)) if macs > 0 else math.inf

    def network_epochs_for(self, images: int, macs: float = 0.0, teacher_macs: float = 0.0) -> int:
        """Network-wise epochs: ``network_epochs``, or about ``network_steps`` steps of ``batch_size``, 1 to 90
        epochs, within ``network_budget`` for a student of ``macs`` and a teacher of ``teacher_macs`` multiply-adds
        per image; 0 when the budget pays for fewer than ``network_min_steps`` steps."""
        if self.network_epochs is not None:
            return self.network_epochs
        per_epoch = math.ceil(images / self.batch_size)
        within = self.network_steps_within(macs, teacher_macs)
        if within < self.network_min_steps:
            return 0
        epochs = math.ceil(self.network_steps / per_epoch)
        if math.isfinite(within):
            epochs = min(epochs, math.floor(within / per_epoch))
        return min(90, max(1, epochs))

    def fit_images(self, cached: int, values_per_image: int) -> int:
        """How many images of a layer's cache its closed-form statistics use: all, or as many as ``fit_elements``
        allows (at least 128); its errors use at most ``error_images``."""
        return max(1, min(cached, max(128, int(self.fit_elements // max(1, values_per_image)))))


@dataclass
class CalibrationRow:
    """One unit: a Ghost module (``kind`` "ghost") or a G-Ghost stage ("stage"). Errors are
    ``||ghost - original|| / ||original||`` of the unit's output, the original layer reading the same input."""

    name: str
    kind: str
    pairing: str  # "chosen": channels chosen, readers permuted; "fixed": the layer's own pairing; "" for a stage
    fixed_reason: str  # why the pairing is fixed (a residual add reads it, ...)
    fit_cost: float | None  # mean relative residual of the cheap channels' least squares (chosen or fixed)
    fit_cost_fixed: float | None  # the same with the layer's own pairing (for comparison)
    error_before: float  # calibration inputs (`error_images` of them, within `fit_elements`), as ghostify made it
    error_init: float | None  # after the closed-form initialisation (None for a stage)
    error_block: float | None  # after block-wise reconstruction (None when skipped)
    error_held_out: float | None  # held-out images, after block-wise reconstruction
    error_network: float | None  # held-out images, after network-wise reconstruction (None when skipped)
    error_distill: float | None  # held-out images, after distillation (None without)
    seconds: float  # capture + initialisation + block-wise
    cache_mb: float  # the unit's cached inputs
    steps: int = 0  # its block-wise steps


@dataclass
class CalibrationReport:
    """What :func:`calibrate_model` did and measured (JSON-serialisable with ``render.to_jsonable``)."""

    calib_data: str
    calib_images: int
    held_out: str  # where the held-out images come from
    inputs: str
    block_steps: int  # the most block-wise steps of any unit
    network_epochs: int
    distill_epochs: int
    distill_images: int  # images per distillation epoch (0 without distillation)
    rows: list[CalibrationRow]
    agreement_before: float | None  # top-1 agreement with the original on the held-out images, percent
    agreement_block: float | None  # after block-wise reconstruction
    agreement_network: float | None  # after network-wise reconstruction (None when skipped)
    agreement_distilled: float | None
    seconds_data: float
    seconds_calibrate: float  # closed form + block-wise, all units
    seconds_network: float
    seconds_distill: float
    seconds_measure: float  # the held-out passes
    seconds_total: float
    peak_rss_mb: float  # the process's peak resident memory at the end
    peak_cache_mb: float  # the largest unit input cache
    notes: list[str] = field(default_factory=list)

    @property
    def agreement_calibrated(self) -> float | None:
        """Agreement after calibration (network-wise when it ran, else block-wise), before distillation."""
        return self.agreement_network if self.agreement_network is not None else self.agreement_block

    @property
    def agreement_final(self) -> float | None:
        return self.agreement_distilled if self.agreement_distilled is not None else self.agreement_calibrated


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _logits(out: Any) -> torch.Tensor | None:
    return out if isinstance(out, torch.Tensor) and out.dim() == 2 else None


def _measure(original: nn.Module, ghosted: nn.Module, units: list[Unit], images: torch.Tensor, batch_size: int,
             reference_top1: torch.Tensor | None) -> tuple[list[float], float | None]:
    """Held-out pass: each unit's relative error to the original's output at the same place, and the top-1
    agreement with ``reference_top1`` (percent). Per batch the original runs first (keeping only the units'
    targets of that batch), then the ghostified model, whose hooks compare at once."""
    num = [0.0] * len(units)
    den = [0.0] * len(units)
    named = dict(original.named_modules())
    targets: dict[int, torch.Tensor] = {}
    handles = []

    def keep(i: int) -> Any:
        def hook(mod: nn.Module, args: tuple[Any, ...], out: Any) -> None:
            targets[i] = out.detach().clone()  # clone: an in-place ReLU may follow
        return hook

    def compare(i: int, unit: Unit) -> Any:
        def hook(mod: nn.Module, args: tuple[Any, ...], out: Any) -> None:
            t = unit.target(targets[i])
            num[i] += float((out - t).square().sum())
            den[i] += float(t.square().sum())
        return hook

    for i, u in enumerate(units):
        handles.append(named[u.original_output].register_forward_hook(keep(i)))
        handles.append(u.module.register_forward_hook(compare(i, u)))
    agree = total = 0
    try:
        with torch.no_grad():
            for k, x in enumerate(batches(images, batch_size)):
                if units:
                    original(x)
                out = _logits(ghosted(x))
                targets.clear()
                if out is not None and reference_top1 is not None:
                    ref = reference_top1[k * batch_size:k * batch_size + len(x)]
                    agree += int((out.argmax(1) == ref).sum())
                    total += len(x)
    finally:
        for h in handles:
            h.remove()
    errors = [(n / d) ** 0.5 if d > 0 else 0.0 for n, d in zip(num, den)]
    return errors, (100.0 * agree / total if total else None)


def _macs(model: nn.Module, example: torch.Tensor, units: Sequence[nn.Module] = ()) -> tuple[float, list[float]]:
    """Multiply-adds per image of ``model``'s convs and linear layers (one forward pass on ``example``), in all and
    inside each of ``units``."""
    per: dict[int, float] = {}
    handles = []

    def hook(mod: nn.Module, args: tuple[Any, ...], out: Any) -> None:
        if not isinstance(out, torch.Tensor) or not out.numel():
            return
        n = out.numel() / max(1, out.shape[0])
        if isinstance(mod, nn.Conv2d):
            k = mod.kernel_size[0] * mod.kernel_size[1]
            per[id(mod)] = per.get(id(mod), 0.0) + n * mod.in_channels // mod.groups * k
        elif isinstance(mod, nn.Linear):
            per[id(mod)] = per.get(id(mod), 0.0) + n * mod.in_features

    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            handles.append(m.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in handles:
            h.remove()
    inside = [sum(per.get(id(m), 0.0) for m in u.modules()) for u in units]
    return sum(per.values()), inside


def _kl(original: nn.Module, ghosted: nn.Module, images: torch.Tensor, batch_size: int, temperature: float) -> float:
    """Mean ``T^2 * KL`` of the ghostified model's outputs to the original's on ``images``."""
    from ghostcli.train.distill import kd_kl

    total = 0.0
    with torch.no_grad():
        for x in batches(images, batch_size):
            total += float(kd_kl(ghosted(x), original(x), temperature)) * len(x)
    return total / max(1, len(images))


@contextlib.contextmanager
def _kept_if_better(original: nn.Module, ghosted: nn.Module, calib: torch.Tensor, opts: CalibrateOptions,
                    notes: list[str], what: str) -> Iterator[None]:
    """Undo a whole-model stage that left the outputs on the calibration images (the first `kl_images`) further
    from the original's (Adam moves every weight by about the learning rate even where the gradient is ~0)."""
    sample = calib[:opts.kl_images]
    before = _kl(original, ghosted, sample, opts.batch_size, opts.distill_temperature)
    saved = copy.deepcopy(ghosted.state_dict())
    yield
    after = _kl(original, ghosted, sample, opts.batch_size, opts.distill_temperature)
    if not after <= before:
        ghosted.load_state_dict(saved)
        notes.append(f"{what} raised the KL divergence to the original on the calibration images "
                     f"({before:.3g} -> {after:.3g}); kept the weights from before it")
    ghosted.eval()


#: fewest images per forward for batch statistics in the whole-model stages (fewer: BatchNorms stay in eval mode)
MIN_BATCH_STATS = 16


def _bn_images(wanted: bool, micro: int, calib: torch.Tensor, notes: list[str], stage: str) -> torch.Tensor | None:
    """The images a whole-model stage measures BatchNorm statistics on again after training with batch statistics
    (the calibration images), or None: frozen statistics, when not ``wanted`` or its chunks are too small."""
    if not wanted:
        return None
    if micro < MIN_BATCH_STATS:
        notes.append(f"{stage}: BatchNorms kept their statistics (chunks of {micro} images, fewer than "
                     f"{MIN_BATCH_STATS}, give noisy batch statistics)")
        return None
    return calib


def _hints(original: nn.Module, ghosted: nn.Module, units: Sequence[Unit], calib: torch.Tensor, opts: CalibrateOptions,
           weight: float) -> tuple[list[FeaturePair], int]:
    """A whole-model stage's per-layer hints (each Ghost module against the original output it replaces; none when
    ``weight`` is 0) and the images per chunk that keep its step within ``train_mb``."""
    from ghostcli.calibrate.distill import micro_batch_for

    named_o = dict(original.named_modules())
    features: list[FeaturePair] = [(named_o[u.original_output], u.module, u.target) for u in units] if weight else []
    return features, micro_batch_for(ghosted, calib, features, opts.train_mb, opts.batch_size)


def calibrate_model(original: nn.Module, ghosted: nn.Module, *, options: CalibrateOptions | None = None,
                    input_size: Sequence[int], progress: Progress = no_progress,
                    images: CalibrationImages | None = None) -> CalibrationReport:
    """Fit ``ghosted`` (modified in place) to reproduce ``original`` on unlabelled images; see the module docstring.

    ``input_size`` is (C, H, W) of the images. ``images`` (from :func:`~ghostcli.calibrate.images.load_images`)
    replaces loading ``options.calib_data``. The architecture is unchanged (channel choices permute weights only),
    so a saved ghostified artifact rebuilds and loads as before. Both models are left in eval mode.
    """
    opts = options or CalibrateOptions()
    if not isinstance(opts, CalibrateOptions):
        raise TypeError(f"options must be CalibrateOptions, got {type(opts).__name__}")
    opts.check()
    t_start = time.perf_counter()
    size = tuple(int(v) for v in input_size)
    if len(size) != 3:
        raise UsageError(f"input_size must be (C, H, W), got {input_size!r}")
    c, h, w = size
    device = _device(ghosted)
    original.eval()
    ghosted.eval()
    data = images or load_images(opts.calib_data, opts.calib_images, opts.held_out_images, (c, h, w), opts.seed,
                                 model=original, progress=progress)
    calib = data.calib.to(device)
    held = data.held_out.to(device)
    notes = list(data.notes)
    seconds_data = time.perf_counter() - t_start

    units, unit_notes = find_units(original, ghosted, calib[:1])
    notes += unit_notes
    if not units:
        raise UsageError("nothing to calibrate: the model has no Ghost module or G-Ghost stage that replaced a layer "
                         "of the original")
    bs = opts.batch_size
    t_measure = time.perf_counter()
    with torch.no_grad():
        ref_out = [_logits(original(x)) for x in batches(held, bs)]
    top1 = torch.cat([o.argmax(1) for o in ref_out if o is not None]) if all(o is not None for o in ref_out) else None
    if top1 is None:
        notes.append("the model does not return (batch, classes) logits: no top-1 agreement is measured")
        if opts.distill_epochs:
            raise UsageError("`distill_epochs` needs a classifier that returns (batch, classes) logits")
    _, agreement_before = _measure(original, ghosted, [], held, bs, top1)
    seconds_measure = time.perf_counter() - t_measure

    graph = ReaderGraph(ghosted) if opts.select_channels else None
    if graph is not None and graph.error:
        notes.append(f"channel choice is off: {graph.error}")
    by_name = {u.name: u for u in units}
    macs_g, unit_macs = _macs(ghosted, calib[:1], [u.module for u in units])
    macs_o, _ = _macs(original, calib[:1])
    steps = opts.steps_for(len(calib))  # the most any unit takes (reported)
    rows: list[CalibrationRow] = []
    peak_cache = 0.0
    # the inputs of the modules enclosing the unit at hand (a stage, a block) are cached, so that each capture runs
    # only the innermost of them: about one pass of each model in all instead of one per unit
    prefix_g = Prefix(ghosted, calib, bs, [u.name for u in units], opts.cache_mb / 2)
    prefix_o = Prefix(original, calib, bs, [n for u in units for n in (u.original_input, u.original_output)],
                      opts.cache_mb / 2)
    t_cal = time.perf_counter()
    for i, unit in enumerate(units):
        t0 = time.perf_counter()
        progress("calibrating", i, len(units), unit.name)
        cache = Pairs(Cache(opts.cache_mb, drop=True), Cache(opts.cache_mb, drop=True))
        if opts.inputs == "original":
            prefix_o.capture(unit.original_input, cache.x, perm=unit.in_perm)
        else:
            prefix_g.capture(unit.name, cache.x)
        prefix_o.capture(unit.original_output, cache.y, output=True)
        peak_cache = max(peak_cache, cache.mb + prefix_o.mb + prefix_g.mb)
        if cache.x.halved or cache.y.halved:
            kept = f", {cache.count} of the {len(calib)} images" if cache.count < len(calib) else ""
            notes.append(f"{unit.name}: activations held as bfloat16 ({cache.mb:.0f} MB{kept}; "
                         f"`cache_mb` {opts.cache_mb:g})")
        assert cache.y.data is not None
        fit_n = opts.fit_images(cache.count, cache.y.data[0].numel())
        err_n = min(fit_n, opts.error_images)
        before = relative_error(unit, cache, bs, err_n)
        row = CalibrationRow(unit.name, unit.kind, "", "", None, None, before, None, None, None, None, None, 0.0,
                             cache.mb)
        if unit.kind == "ghost":
            choice, fixed_cost, readers = closed_form(unit, cache, graph, by_name, ridge=opts.ridge, batch_size=bs,
                                                      search_seconds=opts.search_seconds, images=fit_n)
            kids = max(1, sum(len(cs) for cs in choice.children))
            row.pairing = "fixed" if readers.reason else "chosen"
            row.fixed_reason = readers.reason
            row.fit_cost, row.fit_cost_fixed = choice.cost / kids, fixed_cost / kids
            row.error_init = relative_error(unit, cache, bs, err_n)
        start = row.error_init if row.error_init is not None else before
        unit_steps = row.steps = opts.steps_for(cache.count, unit_macs[i])
        if unit_steps:
            saved = snapshot(unit.module)

            def tick(step: int, loss: float, i: int = i, unit: Unit = unit, total: int = unit_steps) -> None:
                progress("calibrating", i, len(units), f"{unit.name}: step {step}/{total}, loss {loss:.3g}")

            reconstruct(unit, cache, steps=unit_steps, lr=opts.block_lr, batch_size=opts.block_batch_size,
                        seed=opts.seed + i, report=tick)
            recenter_batchnorms(unit.module, cache, bs)
            row.error_block = relative_error(unit, cache, bs, err_n)
            if not row.error_block <= start:  # never leave a unit worse than it was (NaN included)
                unit.module.load_state_dict(saved)
                notes.append(f"{unit.name}: block-wise reconstruction raised the error {start:.3g} -> "
                             f"{row.error_block:.3g}; kept the previous weights")
                row.error_block = start
        del cache
        row.seconds = time.perf_counter() - t0
        rows.append(row)
    progress("calibrating", len(units), len(units), "done")
    del prefix_g, prefix_o
    seconds_cal = time.perf_counter() - t_cal

    t_m = time.perf_counter()
    errors, agreement_cal = _measure(original, ghosted, units, held, bs, top1)
    for row, err in zip(rows, errors):
        row.error_held_out = err
    seconds_measure += time.perf_counter() - t_m

    from ghostcli.calibrate.distill import Translated, distill

    net_epochs = opts.network_epochs_for(len(calib), macs_g, macs_o)
    if not net_epochs and opts.network_epochs is None and top1 is not None:
        notes.append(f"network-wise reconstruction skipped: `network_budget` {opts.network_budget:g} pays for "
                     f"{opts.network_steps_within(macs_g, macs_o):.0f} steps of {bs} images on this model, fewer "
                     f"than `network_min_steps` {opts.network_min_steps} (so few Adam steps add noise); "
                     "`CalibrateOptions(network_epochs=N)` runs it anyway")
    agreement_net = None
    seconds_network = 0.0
    if net_epochs and top1 is not None:
        t_n = time.perf_counter()
        with _kept_if_better(original, ghosted, calib, opts, notes, "network-wise reconstruction"):
            features, micro = _hints(original, ghosted, units, calib, opts, opts.network_features)
            distill(original, ghosted, Translated(calib, opts.seed, opts.network_flip), epochs=net_epochs, lr=opts.network_lr,
                    temperature=opts.distill_temperature, batch_size=bs, limit=None, seed=opts.seed,
                    progress=progress, task="network-wise", features=features, feature_weight=opts.network_features,
                    mixup=opts.network_mixup, micro_batch=micro,
                    bn_images=_bn_images(opts.network_batch_stats, micro, calib, notes, "network-wise reconstruction"))
        seconds_network = time.perf_counter() - t_n
        t_m = time.perf_counter()
        errors, agreement_net = _measure(original, ghosted, units, held, bs, top1)
        for row, err in zip(rows, errors):
            row.error_network = err
        seconds_measure += time.perf_counter() - t_m
    elif net_epochs:
        net_epochs = 0
    agreement_dis = None
    distilled = 0
    seconds_distill = 0.0
    if opts.distill_epochs:
        t_d = time.perf_counter()
        # no undo here: network-wise reconstruction fitted the calibration images closely, so distillation over
        # the whole split may rightly move away from them
        features, micro = _hints(original, ghosted, units, calib, opts, opts.distill_features)
        distilled = distill(original, ghosted, data.train_set, epochs=opts.distill_epochs, lr=opts.distill_lr,
                            temperature=opts.distill_temperature, batch_size=bs, limit=opts.distill_images,
                            seed=opts.seed, progress=progress, features=features,
                            feature_weight=opts.distill_features, micro_batch=micro,
                            bn_images=_bn_images(opts.distill_batch_stats, micro, calib, notes, "distillation"))
        seconds_distill = time.perf_counter() - t_d
        t_m = time.perf_counter()
        errors, agreement_dis = _measure(original, ghosted, units, held, bs, top1)
        for row, err in zip(rows, errors):
            row.error_distill = err
        seconds_measure += time.perf_counter() - t_m
    ghosted.eval()
    return CalibrationReport(
        calib_data=opts.calib_data, calib_images=len(calib), held_out=data.held_out_source, inputs=opts.inputs,
        block_steps=steps, network_epochs=net_epochs, distill_epochs=opts.distill_epochs, distill_images=distilled,
        rows=rows, agreement_before=agreement_before, agreement_block=agreement_cal, agreement_network=agreement_net,
        agreement_distilled=agreement_dis, seconds_data=seconds_data, seconds_calibrate=seconds_cal,
        seconds_network=seconds_network, seconds_distill=seconds_distill,
        seconds_measure=seconds_measure, seconds_total=time.perf_counter() - t_start, peak_rss_mb=_rss_mb(),
        peak_cache_mb=peak_cache, notes=notes)
