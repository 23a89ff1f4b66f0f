"""Layer selection by measured redundancy: which convs to ghostify under a budget, from how well each one's output
channels can be reconstructed by the Ghost form on calibration images.

1. **Ranking** (:func:`rank_layers`): ghostify converts every candidate conv at its ratio; on the calibration images
   each candidate's original output ``Y = BN(conv(X))`` is fitted in closed form as the Ghost form computes it
   (:mod:`ghostcli.calibrate.closed_form`: the primary conv keeps ``m`` original channels exactly, each other channel
   is a ridge-fitted depthwise filter of one primary map; the channels and pairing are chosen where the layer's
   readers can be permuted, else the layer's own pairing). The layer's **fit error** is the mean relative residual
   of its cheap channels (0: every cheap channel *is* a depthwise transform of a primary one; 1: the fit explains
   nothing). Inputs come from the original model, so each layer is measured on its own; one forward pass serves
   several layers (their statistics are streamed, never the activations). Most redundant (lowest error) first.
2. **Budget** (:func:`select_layers`): the first ``k`` layers of the ranking are converted and the model calibrated
   (:func:`~ghostcli.calibrate.engine.calibrate_model`):

   * ``macs_budget`` / ``macs_fraction``: the smallest ``k`` whose predicted conv + linear MACs hold the budget
     (the per-conv MACs of the ghostify report add up exactly); one calibration.
   * ``max_agreement_drop``: the largest ``k`` whose calibrated model keeps the top-1 agreement with the original on
     the held-out images at ``100 - drop`` percent or more, by bisection over ``k``: ``ceil(log2(N + 1))``
     calibrations for ``N`` ranked layers (each point is measured, not predicted; the model of the best passing
     point is returned as measured, never calibrated again).

Every point tried is a row of the report (layers, MACs, agreement before and after calibration, time). The choice
goes into the ghostify options as ``--target`` writes its own (``include`` = the converted convs by name), so an
artifact's recipe rebuilds the same network bit-exactly.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ghostcli.calibrate.closed_form import FitStats, choose_channels, fit_all, fit_pairs, fixed_pairing
from ghostcli.calibrate.engine import CalibrateOptions, CalibrationReport, calibrate_model
from ghostcli.calibrate.images import CalibrationImages, batches, load_images
from ghostcli.calibrate.readers import ReaderGraph
from ghostcli.calibrate.units import Unit, find_units
from ghostcli.convert import GhostifyReport, ghostify
from ghostcli.errors import UsageError
from ghostcli.ghostify_options import GhostifyOptions
from ghostcli.progress import Progress, no_progress
from ghostcli.units import format_macs


class SelectionUnreachable(UsageError):
    """No number of converted layers meets the budget; the message says the best reachable value."""


@dataclass(frozen=True)
class SelectOptions:
    """The budget of :func:`select_layers` (exactly one of ``macs_budget``, ``macs_fraction``,
    ``max_agreement_drop``) and how the ranking is measured."""

    macs_budget: int | None = None  # conv + linear MACs the result may have at most
    macs_fraction: float | None = None  # ... as a fraction of the original's (0.75 = 0.75x)
    max_agreement_drop: float | None = None  # percentage points of top-1 agreement with the original (2.0 = 2%)
    rank_images: int = 256  # calibration images the ranking is measured on (at most all of them)
    search_seconds: float = 0.5  # per layer: swap search of the channel choice while ranking
    stats_mb: float = 512.0  # fit statistics held at once (layers measured in one forward pass)

    def check(self) -> None:
        """Raise UsageError on a missing or doubled budget or a value out of range (settings in backquotes)."""
        given = [n for n in ("macs_budget", "macs_fraction", "max_agreement_drop") if getattr(self, n) is not None]
        if len(given) != 1:
            raise UsageError("layer selection needs exactly one budget: `macs_budget`, `macs_fraction` or "
                             f"`max_agreement_drop`{' (got ' + ', '.join(given) + ')' if given else ''}")
        if self.macs_budget is not None and self.macs_budget <= 0:
            raise UsageError(f"`macs_budget` must be positive, got {self.macs_budget!r}")
        if self.macs_fraction is not None and not (math.isfinite(self.macs_fraction) and 0 < self.macs_fraction < 1):
            raise UsageError(f"`macs_fraction` must be between 0 and 1 (exclusive), e.g. 0.75x, got {self.macs_fraction!r}")
        if self.max_agreement_drop is not None and not (math.isfinite(self.max_agreement_drop)
                                                        and 0 <= self.max_agreement_drop < 100):
            raise UsageError(f"`max_agreement_drop` must be a percentage in [0, 100), got {self.max_agreement_drop!r}")
        if self.rank_images < 1:
            raise UsageError(f"`rank_images` must be at least 1, got {self.rank_images}")
        if not (math.isfinite(self.search_seconds) and self.search_seconds >= 0):
            raise UsageError(f"`search_seconds` must be >= 0, got {self.search_seconds}")
        if not (math.isfinite(self.stats_mb) and self.stats_mb > 0):
            raise UsageError(f"`stats_mb` must be positive, got {self.stats_mb}")


@dataclass
class LayerFit:
    """One candidate conv: how well the Ghost form reconstructs it, and what converting it saves."""

    name: str
    rank: int  # 1 = most redundant; unmeasured layers rank last
    fit_error: float | None  # mean relative residual of the cheap channels' fits (0 = exact); None: not measured
    pairing: str  # "chosen" (channels chosen, readers permutable) | "fixed" (the layer's own) | "" (not measured)
    fixed_reason: str  # why the pairing is fixed, or why the layer was not measured
    ratio: int
    macs_before: int
    macs_after: int
    chosen: bool = False

    @property
    def macs_saved(self) -> int:
        return self.macs_before - self.macs_after


@dataclass
class Ranking:
    """The candidates, most redundant first, and the original's conv + linear MACs."""

    layers: list[LayerFit]
    macs_before: int
    images: int  # calibration images the fits were measured on
    seconds: float
    notes: list[str] = field(default_factory=list)

    @property
    def measured(self) -> list[LayerFit]:
        """The layers with a fit error (the only ones a budget converts)."""
        return [r for r in self.layers if r.fit_error is not None]

    def macs_with(self, k: int) -> int:
        """Predicted MACs with the first ``k`` measured layers converted."""
        return self.macs_before - sum(r.macs_saved for r in self.measured[:k])

    def prefix_for(self, macs: float) -> int | None:
        """The fewest leading layers whose conversion brings the MACs to ``macs`` or below (None: out of reach)."""
        for k in range(len(self.measured) + 1):
            if self.macs_with(k) <= macs:
                return k
        return None


@dataclass
class SelectionPoint:
    """One calibrate-and-measure round: the first ``layers`` of the ranking converted."""

    layers: int
    macs: int
    macs_ratio: float  # of the original's conv + linear MACs
    agreement_before: float | None  # top-1 agreement with the original on the held-out images, before calibration
    agreement: float | None  # after calibration (percent)
    passed: bool | None  # against `max_agreement_drop` (None with a MACs budget)
    seconds: float


@dataclass
class SelectionReport:
    """What :func:`select_layers` measured and chose (JSON-serialisable with ``render.to_jsonable``)."""

    budget: str  # the budget in words ("MACs <= 2.5 GMac", "agreement >= 98%")
    macs_budget: int | None  # the MACs budget in MACs (a fraction resolved against the original)
    max_agreement_drop: float | None
    layers: list[LayerFit]  # the ranking, ``chosen`` set
    points: list[SelectionPoint]  # in the order tried
    chosen: int  # layers converted: the first ``chosen`` of the ranking
    macs_before: int
    macs_after: int
    agreement: float | None  # of the returned model, after calibration
    rank_images: int
    held_out: str
    seconds_rank: float
    seconds_total: float
    notes: list[str] = field(default_factory=list)


@dataclass
class Selection:
    """The chosen, calibrated model with its ghostify report and options, its calibration and the selection."""

    model: nn.Module
    report: GhostifyReport
    options: GhostifyOptions
    calibration: CalibrationReport
    selection: SelectionReport


class _Stop(Exception):
    """Raised by a statistics hook once the last layer of a group is measured."""


def _stats_bytes(n: int, d: int, free: bool) -> int:
    k = d * d
    return 8 * (n * k * k + n * k + 2 * n + (n * n * k if free else n * k))


def rank_layers(original: nn.Module, options: GhostifyOptions | None = None, *, input_size: Sequence[int],
                images: torch.Tensor, ridge: float = 1e-4, search_seconds: float = 0.5, stats_mb: float = 512.0,
                batch_size: int = 64, progress: Progress = no_progress) -> Ranking:
    """Rank the convs ``options`` would convert by the fit error of their Ghost form on ``images`` (module doc).

    ``original`` is not changed. Raises :class:`~ghostcli.errors.ConversionError` (from ghostify) when no conv is
    eligible, UsageError with G-Ghost ``stages`` (selection picks single convs).
    """
    started = time.perf_counter()
    opts = options or GhostifyOptions()
    if opts.stages:
        raise UsageError("layer selection picks single convs: not with G-Ghost `stages`")
    size = tuple(int(v) for v in input_size)
    original.eval()
    full, report = ghostify(original, opts, input_size=size)
    if report.macs_before is None:
        raise UsageError("layer selection needs the MACs of every conv, and fvcore could not count them "
                         f"({'; '.join(report.warnings) or 'no count'})")
    rows = {r.name: r for r in report.rows if r.action == "ghost"}
    units, notes = find_units(original, full, images[:1])
    units = [u for u in units if u.kind == "ghost" and u.name in rows]
    graph = ReaderGraph(full)
    if graph.error:
        notes.append(f"channel choice is off while ranking: {graph.error}")
    named_o = dict(original.named_modules())
    fits: dict[str, tuple[float, str, str]] = {}
    todo = list(units)
    done = 0
    while todo:  # groups in forward order whose statistics fit in `stats_mb`
        group: list[tuple[Unit, FitStats, tuple[list[int], list[int]] | None, str]] = []
        held = 0
        while todo:
            u = todo[0]
            gm = u.ghost
            readers = graph.readers(u.name)
            free = not readers.reason
            need = _stats_bytes(gm.out_ch, gm.dw_kernel, free)
            if group and held + need > stats_mb * 2**20:
                break
            todo.pop(0)
            held += need
            fp, fc = fixed_pairing(gm.out_ch, gm.ratio)
            pairs = None if free else ([p for p, cs in zip(fp, fc) for _ in cs], [c for cs in fc for c in cs])
            group.append((u, FitStats(gm.out_ch, gm.dw_kernel, pairs), pairs, readers.reason))
        progress("ranking layers", done, len(units), ", ".join(u.name for u, *_ in group)[:60])
        _measure_group(original, named_o, group, images, batch_size)
        for u, stats, pairs, reason in group:
            if pairs is None:
                choice = choose_channels(fit_all(stats, ridge), u.ghost.ratio, seconds=search_seconds)
                kids = sum(len(cs) for cs in choice.children)
                fits[u.name] = (choice.cost / max(1, kids), "chosen", "")
            else:
                cost = fit_pairs(stats, *pairs, ridge).cost
                fits[u.name] = (float(cost.mean()) if len(cost) else 0.0, "fixed", reason)
        done += len(group)
    progress("ranking layers", len(units), len(units), "done")
    layers = []
    for name, row in rows.items():
        err, pairing, reason = fits.get(name, (None, "", "not calibratable (see the notes)"))
        layers.append(LayerFit(name, 0, err, pairing, reason, int(dict(opts.layer_ratios).get(name, opts.ratio)),
                               int(row.macs_before or 0), int(row.macs_after or 0)))
    layers.sort(key=lambda r: (r.fit_error is None, r.fit_error if r.fit_error is not None else 0.0, -r.macs_saved))
    for i, r in enumerate(layers):
        r.rank = i + 1
    return Ranking(layers, int(report.macs_before), len(images), time.perf_counter() - started, notes)


def _measure_group(original: nn.Module, named_o: dict[str, nn.Module],
                   group: list[tuple[Unit, FitStats, Any, str]], images: torch.Tensor, batch_size: int) -> None:
    """Stream ``images`` through ``original`` once, adding each group layer's (pre-activation, parent map) to its
    statistics; the pass stops after the group's last layer."""
    last = group[-1][0]
    handles = []

    def hook(unit: Unit, stats: FitStats) -> Any:
        def fn(mod: nn.Module, args: tuple[Any, ...]) -> None:
            y = unit.ref_conv(args[0])
            bn = unit.ref_bn
            if bn is not None:
                y = bn(y)
            stats.add(y, F.relu(y) if unit.activated else y)
            if unit is last:
                raise _Stop
        return fn

    for u, stats, _, _ in group:
        handles.append(named_o[u.original_input].register_forward_pre_hook(hook(u, stats)))
    try:
        with torch.no_grad():
            for x in batches(images, batch_size):
                try:
                    original(x)
                except _Stop:
                    pass
    finally:
        for h in handles:
            h.remove()


def options_for(ranking: Ranking, k: int, options: GhostifyOptions) -> GhostifyOptions:
    """Ghostify options that convert exactly the first ``k`` measured layers of ``ranking`` (by name, in ``include``;
    their ratios kept), and nothing when ``k`` is 0."""
    names = [r.name for r in ranking.measured[:k]]
    if not names:
        return dataclasses.replace(options, include=(), exclude=("*",), layer_ratios=(), stages=())
    return dataclasses.replace(options, include=tuple(names),
                               layer_ratios=tuple((n, s) for n, s in options.layer_ratios if n in names))


def select_layers(original: nn.Module, options: GhostifyOptions | None = None, *, select: SelectOptions,
                  calibration: CalibrateOptions | None = None, input_size: Sequence[int],
                  images: CalibrationImages | None = None, ranking: Ranking | None = None,
                  progress: Progress = no_progress) -> Selection:
    """Convert the most redundant convs of ``original`` until the budget of ``select`` holds, calibrated with
    ``calibration`` (see the module doc). ``images`` replaces loading ``calibration.calib_data``; ``ranking``
    (from :func:`rank_layers` on the same options) skips measuring it again. ``original`` is not changed.

    Raises :class:`SelectionUnreachable` when no number of converted layers meets the budget.
    """
    started = time.perf_counter()
    select.check()
    opts = options or GhostifyOptions()
    cal = calibration or CalibrateOptions()
    cal.check()
    size = tuple(int(v) for v in input_size)
    if len(size) != 3:
        raise UsageError(f"input_size must be (C, H, W), got {input_size!r}")
    data = images or load_images(cal.calib_data, cal.calib_images, cal.held_out_images, (size[0], size[1], size[2]),
                                 cal.seed, model=original, progress=progress)
    if ranking is None:
        ranking = rank_layers(original, opts, input_size=size, images=data.calib[:select.rank_images],
                              ridge=cal.ridge, search_seconds=select.search_seconds, stats_mb=select.stats_mb,
                              batch_size=cal.batch_size, progress=progress)
    notes = list(ranking.notes)
    measured = ranking.measured
    if not measured:
        raise SelectionUnreachable("layer selection found no conv it can measure (see the ghostify report)")
    points: list[SelectionPoint] = []
    results: dict[int, tuple[nn.Module, GhostifyReport, GhostifyOptions, CalibrationReport]] = {}

    def run(k: int) -> SelectionPoint:
        t0 = time.perf_counter()
        chosen_opts = options_for(ranking, k, opts)
        model, rep = ghostify(original, chosen_opts, input_size=size)
        report = calibrate_model(original, model, options=cal, input_size=size, images=data, progress=progress)
        macs = int(rep.macs_after) if rep.macs_after is not None else ranking.macs_with(k)
        point = SelectionPoint(k, macs, macs / ranking.macs_before, report.agreement_before, report.agreement_final,
                               None, time.perf_counter() - t0)
        points.append(point)
        results[k] = (model, rep, chosen_opts, report)
        return point

    macs_budget: int | None = None
    if select.max_agreement_drop is None:
        macs_budget = int(select.macs_budget if select.macs_budget is not None
                          else math.floor(float(select.macs_fraction or 0) * ranking.macs_before))
        budget = f"MACs <= {format_macs(macs_budget)} ({macs_budget / ranking.macs_before:.3f}x)"
        k = ranking.prefix_for(macs_budget)
        if k is None:
            fewest = ranking.macs_with(len(measured))
            raise SelectionUnreachable(
                f"the `macs_budget` {format_macs(macs_budget)} is out of reach: converting all {len(measured)} "
                f"ranked convs gives {format_macs(fewest)} ({fewest / ranking.macs_before:.3f}x of "
                f"{format_macs(ranking.macs_before)})")
        if k == 0:
            raise SelectionUnreachable(f"the original's {format_macs(ranking.macs_before)} already meet the "
                                       f"`macs_budget` {format_macs(macs_budget)}: nothing to convert")
        progress("selecting", 0, 1, f"{k} of {len(measured)} layers")
        run(k)
        best = k
    else:
        floor = 100.0 - select.max_agreement_drop
        budget = f"top-1 agreement >= {floor:.4g}%"
        lo, hi = 0, len(measured) + 1  # lo: passes (nothing converted), hi: fails (sentinel)
        rounds = math.ceil(math.log2(len(measured) + 1))
        while hi - lo > 1:
            mid = (lo + hi) // 2
            progress("selecting", len(points), rounds, f"{mid} of {len(measured)} layers")
            point = run(mid)
            point.passed = point.agreement is not None and point.agreement >= floor - 1e-9
            if point.agreement is None:
                raise UsageError("`max_agreement_drop` needs a classifier that returns (batch, classes) logits")
            if point.passed:
                results.pop(lo, None)
                lo = mid
            else:
                results.pop(mid, None)
                hi = mid
        if lo == 0:
            first = measured[0]
            got = next(p.agreement for p in points if p.layers == 1)
            raise SelectionUnreachable(
                f"no conv can be converted within the `max_agreement_drop` {select.max_agreement_drop:g}%: the most "
                f"redundant one alone ({first.name}, fit error {first.fit_error:.3f}) keeps {got:.1f}% agreement "
                f"with the original after calibration")
        best = lo
    progress("selecting", 1, 1, "done")
    model, rep, chosen_opts, report = results[best]
    for r in ranking.layers:
        r.chosen = r.rank <= best and r.fit_error is not None
    _explain_rows(rep, ranking, best)
    tried = [p.agreement or 0.0 for p in sorted(points, key=lambda p: p.layers)]
    if any(b > a for a, b in zip(tried, tried[1:])):
        notes.append("agreement did not fall monotonically with the layers converted: the bisection assumes it does")
    sel = SelectionReport(
        budget=budget, macs_budget=macs_budget, max_agreement_drop=select.max_agreement_drop, layers=ranking.layers,
        points=points, chosen=best, macs_before=ranking.macs_before,
        macs_after=int(rep.macs_after) if rep.macs_after is not None else ranking.macs_with(best),
        agreement=report.agreement_final, rank_images=ranking.images, held_out=report.held_out,
        seconds_rank=ranking.seconds, seconds_total=time.perf_counter() - started, notes=notes)
    return Selection(model, rep, chosen_opts, report, sel)


def _explain_rows(report: GhostifyReport, ranking: Ranking, k: int) -> None:
    """Each candidate's row says where the ranking put it, not "not matched by `include`"."""
    total = len(ranking.layers)
    by_name = {r.name: r for r in ranking.layers}
    for row in report.rows:
        r = by_name.get(row.name)
        if r is None:
            continue
        fit = "not measured" if r.fit_error is None else f"fit error {r.fit_error:.3f}"
        if row.action == "ghost":
            row.reason = f"rank {r.rank} of {total}, {fit}" + (f"; {row.reason}" if row.reason else "")
        else:
            row.reason = f"kept: rank {r.rank} of {total}, {fit}" + (
                f" ({r.fixed_reason})" if r.fit_error is None else ": the budget held without it")


__all__ = ["LayerFit", "Ranking", "Selection", "SelectOptions", "SelectionPoint", "SelectionReport",
           "SelectionUnreachable", "options_for", "rank_layers", "select_layers"]
