"""``ghostify --target``: convert only what pays back in time on the target, and prove it at the end.

1. ghostify the model at every ratio s in play (the user's ``ratio`` and the larger ones of 2, 3, 4)
   and every cheap kernel d in play (the options' ``dw_kernel`` and ``TargetOptions.dw_kernels``, model-wide):
   the convs converted there are the candidates;
2. time every layer of the original and of each of those models on the target, in place in the
   whole model; a residual add that a conversion left unfused is charged to the conv that fed it;
3. decide per conv (``target.decide``), for each d: the fastest choice that compresses no more than
   ``ratio`` asks at that d, or the NetAdapt-style greedy for a latency / MACs budget;
4. build the chosen model of each d and time them against the original and the paper ghostify (every
   candidate at ``ratio`` and ``dw_kernel``) in one interleaved run; the fastest d is kept. The result is
   never slower than the original or the paper beyond the noise of that run: if it is, the faster of the
   two is returned, and the report says so.

The choice is written into the ghostify options (``include`` = the converted convs,
``layer_ratios`` = their ratios where not ``ratio``, ``dw_kernel``), so the artifact's recipe rebuilds the
same network on any machine without measuring again.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import nn

from ghostcli.convert import GhostifyReport, ghostify
from ghostcli.convert.stage import stages_in_play
from ghostcli.errors import ConversionError, UsageError
from ghostcli.fx import residual_feeders
from ghostcli.ghostify_options import GhostifyOptions
from ghostcli.progress import Progress, no_progress
from ghostcli.target.decide import KEEP, BudgetUnreachable, Candidate, Plan, charge_unfused, decide, decide_for_budget
from ghostcli.target.measure import RuntimeTiming, TimingSource
from ghostcli.target.spec import Target, check_available, parse_target

RATIOS = (2, 3, 4)  # the ratios s a conv may get
MODES = ("conv", "stage", "auto")  # per-conv C-Ghost; G-Ghost stages; per stage the faster of the two or neither


@dataclass(frozen=True)
class TargetOptions:
    """How ``ghostify_for_target`` measures and decides."""

    target: str
    threads: int | None = None
    mode: str = "auto"  # conv: C-Ghost per conv; stage: G-Ghost per stage; auto: per stage the fastest of both
    latency_budget: float | None = None  # fraction of the original's latency on the target (0.7 = 0.7x)
    macs_budget: int | None = None  # MACs the result may have at most
    ratios: tuple[int, ...] = RATIOS  # the ratios s a conv may get (those below `ratio` are never used)
    dw_kernels: tuple[int, ...] = ()  # more cheap kernels d to try, model-wide, beside the options' dw_kernel
    layer_runs: int = 10  # inferences whose per-layer median is taken
    verify_runs: int = 30  # interleaved rounds of the final check
    warmup: int = 3

    def __post_init__(self) -> None:
        parse_target(self.target)
        if self.mode not in MODES:
            raise UsageError(f"`mode` must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise UsageError(f"`threads` must be a positive integer, got {self.threads!r}")
        if self.latency_budget is not None and not 0.0 < self.latency_budget <= 1.0:
            raise UsageError(f"`latency_budget` must be a fraction of the original's latency in (0, 1], "
                             f"e.g. 0.7x, got {self.latency_budget!r}")
        if self.macs_budget is not None and self.macs_budget <= 0:
            raise UsageError(f"`macs_budget` must be positive, got {self.macs_budget!r}")
        if not self.ratios or any(not isinstance(s, int) or s < 2 for s in self.ratios):
            raise UsageError(f"`ratios` must be integers >= 2, got {self.ratios!r}")
        if any(isinstance(d, bool) or not isinstance(d, int) or d < 1 or d % 2 == 0 for d in self.dw_kernels):
            raise UsageError(f"`dw_kernels` must be positive odd integers, got {self.dw_kernels!r}")
        for name in ("layer_runs", "verify_runs"):
            if getattr(self, name) < 3:
                raise UsageError(f"`{name}` must be at least 3, got {getattr(self, name)!r}")
        if self.warmup < 0:
            raise UsageError(f"`warmup` must be >= 0, got {self.warmup!r}")


@dataclass
class Measured:
    """Whole-model latency of one contender in the final interleaved run."""

    name: str
    median_ms: float
    p90_ms: float
    macs: int | None


@dataclass
class TargetReport:
    """What the decision pass measured and chose (JSON-serialisable)."""

    target: str
    conditions: str
    decisions: list[dict[str, Any]]
    predicted_ms: float
    original_layers_ms: float
    measured: list[Measured]
    chosen: str  # "target" (the measured choice), "paper" or "original" (a fallback)
    dw_kernel: int  # the cheap kernel d of the returned model
    stages: list[dict[str, Any]]  # per eligible stage: {name, choice (g-ghost / c-ghost / dense), ms per form}
    ratio_vs_original: float
    ratio_vs_paper: float
    noise: float  # half the IQR of the per-round latency ratio chosen / paper
    seconds: float
    runs: int  # interleaved rounds of the final check
    budget: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types."""
        return dataclasses.asdict(self)

    def recipe_summary(self) -> dict[str, Any]:
        """What an artifact's recipe keeps: where it was measured, the choice per conv and the final times."""
        return {
            "target": self.target, "conditions": self.conditions, "chosen": self.chosen, "dw_kernel": self.dw_kernel,
            "measured_ms": {m.name: round(m.median_ms, 4) for m in self.measured},
            "ratio_vs_original": round(self.ratio_vs_original, 4), "ratio_vs_paper": round(self.ratio_vs_paper, 4),
            "decisions": {d["name"]: [d["ratio"], round(d["time_before_ms"], 4), round(d["time_after_ms"], 4)]
                          for d in self.decisions},
            "stages": {s["name"]: s["choice"] for s in self.stages},
        }


@dataclass
class _Choice:
    """The decision for one cheap kernel d and the model it builds."""

    dw_kernel: int
    plan: Plan
    stage_rows: list[dict[str, Any]]
    model: nn.Module
    report: GhostifyReport


def _options_for(plan: Plan, options: GhostifyOptions, stages: Sequence[str] = ()) -> GhostifyOptions:
    """Ghostify options that rebuild the choice exactly: the G-Ghost stages, the converted convs by name, their ratios."""
    converted = [d for d in plan.decisions if d.ratio != KEEP]
    if not converted:
        return dataclasses.replace(_nothing(options), stages=tuple(stages))
    return dataclasses.replace(
        options, include=tuple(d.name for d in converted), stages=tuple(stages),
        layer_ratios=tuple((d.name, d.ratio) for d in converted if d.ratio != options.ratio))


def _nothing(options: GhostifyOptions) -> GhostifyOptions:
    """Options that convert no conv (``include`` empty means every conv, so exclude them all)."""
    return dataclasses.replace(options, include=(), exclude=("*",), layer_ratios=(), stages=())


def _explain_rows(report: GhostifyReport, plan: Plan) -> None:
    """Each candidate's row says what was measured, not "not matched by `include`"."""
    why = {d.name: d.reason for d in plan.decisions}
    for row in report.rows:
        if row.name in why:
            row.reason = why[row.name] if row.action == "kept" else f"{why[row.name]}; {row.reason}"


def _under(rows: dict[str, float], prefix: str) -> float:
    return sum(v for k, v in rows.items() if k == prefix or k.startswith(prefix + "."))


def _decide_stages(plan: Plan, stages: Sequence[str], base: dict[str, float], g_times: dict[str, float],
                   target: str) -> tuple[Plan, list[dict[str, Any]]]:
    """Per stage the fastest of: dense, the plan's C-Ghost choice inside it, the G-Ghost stage (by layer times)."""
    rows: list[dict[str, Any]] = []
    saved = 0.0  # what the G-Ghost stages save against dense, predicted
    for stage in stages:
        inside = [d for d in plan.decisions if d.name.startswith(stage + ".")]
        dense = _under(base, stage)
        c_ghost = dense + sum(d.time_after_ms - d.time_before_ms for d in inside)
        g_ghost = _under(g_times, stage)
        forms = {"dense": dense, "c-ghost": c_ghost, "g-ghost": g_ghost}
        choice = min(forms, key=lambda f: (forms[f], f != "dense"))
        if choice == "c-ghost" and not any(d.ratio != KEEP for d in inside):
            choice = "dense"
        rows.append({"name": stage, "choice": choice, **{f"{k}_ms": v for k, v in forms.items()}})
        if choice == "c-ghost" or (choice == "dense" and not any(d.ratio != KEEP for d in inside)):
            continue  # the convs' own decisions stand
        if choice == "g-ghost":
            saved += g_ghost - dense
        why = (f"{dense:.3f} ms dense, {c_ghost:.3f} ms C-Ghost, {g_ghost:.3f} ms G-Ghost on {target}")
        for d in inside:
            d.ratio, d.time_after_ms, d.macs_after = KEEP, d.time_before_ms, d.macs_before
            d.reason = f"in G-Ghost stage {stage}: {why}" if choice == "g-ghost" else f"kept: stage {stage} {why}"
    predicted = plan.original_ms + sum(d.time_after_ms - d.time_before_ms for d in plan.decisions) + saved
    return dataclasses.replace(plan, predicted_ms=predicted), rows


def _round_ratio(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Median and half-IQR of the per-round ratio b / a."""
    r = np.asarray(b) / np.asarray(a)
    q25, q75 = np.percentile(r, [25, 75])
    return float(np.median(r)), float(q75 - q25) / 2


def ghostify_for_target(model: nn.Module, options: GhostifyOptions | None = None, *,
                        target: TargetOptions, input_size: Sequence[int] = (3, 224, 224),
                        timing: TimingSource | None = None,
                        progress: Progress = no_progress) -> tuple[nn.Module, GhostifyReport, TargetReport]:
    """Ghostify ``model`` for ``target``: only the conversions that measure faster there (see the module doc).

    ``timing`` replaces the measurements on this machine (tests pass a fake one). Returns the
    model, the ghostify report of the final options and the :class:`TargetReport`.
    """
    started = time.perf_counter()
    opts = options or GhostifyOptions()
    spec: Target = parse_target(target.target)
    if timing is None:
        check_available(spec)
        timing = RuntimeTiming(spec, tuple(input_size), threads=target.threads, layer_runs=target.layer_runs,
                               warmup=target.warmup)
    size = tuple(int(v) for v in input_size)
    progress("ghostifying candidates", 0, 0)
    ratios = sorted({opts.ratio} | {s for s in target.ratios if s >= opts.ratio})
    kernels = list(dict.fromkeys((opts.dw_kernel, *(target.dw_kernels if target.mode != "stage" else ()))))
    versions: dict[tuple[int, int], tuple[nn.Module, GhostifyReport]] = {
        (d, s): ghostify(model, dataclasses.replace(opts, ratio=s, dw_kernel=d), input_size=size)
        for d in kernels for s in ratios}
    paper_model, paper = versions[(opts.dw_kernel, opts.ratio)]
    if paper.macs_before is None or paper.macs_after is None:
        raise ConversionError("`target` needs the MACs of every conv, and fvcore could not count them "
                              f"({'; '.join(paper.warnings) or 'no count'})")
    names = [r.name for r in paper.rows if r.action == "ghost"] if target.mode != "stage" else []
    stage_names = stages_in_play(model, opts, target.mode)
    g_model = None
    if stage_names:
        g_model, _ = ghostify(model, dataclasses.replace(_nothing(opts), stages=tuple(stage_names)),
                              input_size=size, allow_empty=True)

    keys = list(versions)
    timed = [model, *(versions[k][0] for k in keys)] + ([g_model] if g_model is not None else [])
    times = timing.layer_times(timed, progress=progress)
    base = times[0]
    total_ms = sum(base.values())
    budget: dict[str, Any] = {}
    if target.latency_budget is not None or target.macs_budget is not None:
        latency_ms = None if target.latency_budget is None else target.latency_budget * total_ms
        budget = {"latency": target.latency_budget, "latency_ms": latency_ms, "macs": target.macs_budget}
    feeders = residual_feeders(model)
    dense_macs = {r.name: int(r.macs_before or 0) for r in paper.rows}
    choices: list[_Choice] = []
    unreachable: BudgetUnreachable | None = None
    for d in kernels:
        per_ratio = {}
        for s in ratios:
            t = times[1 + keys.index((d, s))]
            extra = charge_unfused(t, base, feeders, names)
            per_ratio[s] = {n: t.get(n, 0.0) + extra.get(n, 0.0) for n in names}
        macs = {s: {r.name: int(r.macs_after or 0) for r in versions[(d, s)][1].rows} for s in ratios}
        macs[KEEP] = dense_macs
        candidates = [Candidate(n, {KEEP: base.get(n, 0.0), **{s: per_ratio[s][n] for s in ratios}},
                                {KEEP: macs[KEEP][n], **{s: macs[s][n] for s in ratios}}) for n in names]
        try:
            if not budget:
                plan = decide(candidates, target=spec.name, total_ms=total_ms, total_macs=paper.macs_before,
                              macs_floor=versions[(d, opts.ratio)][1].macs_after)
            else:
                plan = decide_for_budget(candidates, target=spec.name, total_ms=total_ms,
                                         total_macs=paper.macs_before, latency_ms=budget["latency_ms"],
                                         macs=target.macs_budget)
        except BudgetUnreachable as exc:
            unreachable = unreachable or exc
            continue
        stage_rows: list[dict[str, Any]] = []
        g_stages: list[str] = []
        if g_model is not None:
            plan, stage_rows = _decide_stages(plan, stage_names, base, times[-1], spec.name)
            g_stages = [r["name"] for r in stage_rows if r["choice"] == "g-ghost"]
        chosen_opts = _options_for(plan, dataclasses.replace(opts, dw_kernel=d), g_stages)
        chosen_model, chosen_report = ghostify(model, chosen_opts, input_size=size, allow_empty=True)
        choices.append(_Choice(d, plan, stage_rows, chosen_model, chosen_report))
    if not choices:
        assert unreachable is not None
        raise unreachable

    contenders: list[tuple[str, nn.Module, int | None]] = [("original", model, paper.macs_before),
                                                            ("paper", paper_model, paper.macs_after)]
    contenders += [(f"target, d={c.dw_kernel}", c.model, c.report.macs_after) for c in choices]
    runs = timing.compare([m for _, m, _ in contenders], runs=target.verify_runs, warmup=target.warmup,
                          progress=progress)
    best = min(range(len(choices)), key=lambda i: statistics.median(runs[2 + i]))
    pick = choices[best]
    runs = [runs[0], runs[1], runs[2 + best]] + [r for i, r in enumerate(runs[2:]) if i != best]
    contenders = [contenders[0], contenders[1], ("target", pick.model, pick.report.macs_after)] + \
        [c for i, c in enumerate(contenders[2:]) if i != best]
    plan, stage_rows, chosen_report = pick.plan, pick.stage_rows, pick.report
    measured = [Measured(n, statistics.median(r), float(np.percentile(r, 90)), mc)
                for (n, _, mc), r in zip(contenders, runs)]
    vs_original, _ = _round_ratio(runs[0], runs[2])
    vs_paper, noise = _round_ratio(runs[1], runs[2])
    notes: list[str] = []
    chosen = "target"
    allowed = [m for m in measured[:3] if target.macs_budget is None or m.name == "target"
               or (m.macs is not None and m.macs <= target.macs_budget)]  # a fallback must keep the MACs budget
    fastest = min(allowed, key=lambda m: m.median_ms)
    slack = 1.0 + max(noise, 0.005)
    if fastest.name != "target" and measured[2].median_ms > fastest.median_ms * slack:
        chosen = fastest.name
        notes.append(f"the measured choice ran {measured[2].median_ms:.2f} ms, slower than the {fastest.name} "
                     f"({fastest.median_ms:.2f} ms) beyond the noise (+-{noise:.3f}): the {fastest.name} is returned")
        if budget:
            notes.append("the budget was met by the prediction only; the measurement did not confirm it")
    if chosen == "paper":
        final_model, final_report = paper_model, paper
    elif chosen == "original":
        final_model, final_report = ghostify(model, _nothing(opts), input_size=size, allow_empty=True)
    else:
        final_model, final_report = pick.model, chosen_report
    if chosen == "target":
        _explain_rows(final_report, plan)
    if budget.get("latency_ms") is not None and chosen == "target":
        if vs_original > budget["latency"] + noise:
            notes.append(f"measured {vs_original:.3f}x of the original against the budget {budget['latency']}x "
                         f"(predicted {plan.predicted_ms / total_ms:.3f}x)")
    report = TargetReport(
        target=spec.name, conditions=timing.conditions(),
        dw_kernel=pick.dw_kernel if chosen == "target" else opts.dw_kernel,
        decisions=[dataclasses.asdict(d) for d in plan.decisions], predicted_ms=plan.predicted_ms,
        original_layers_ms=total_ms, measured=measured, chosen=chosen, stages=stage_rows, ratio_vs_original=vs_original,
        ratio_vs_paper=vs_paper, noise=noise, seconds=time.perf_counter() - started, runs=target.verify_runs,
        budget=budget, notes=notes)
    return final_model, final_report, report


__all__ = ["MODES", "RATIOS", "Measured", "TargetOptions", "TargetReport", "ghostify_for_target"]
