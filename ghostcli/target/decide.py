"""Which convs to convert, and at which ratio s, from measured times: pure logic, no timing here.

Each candidate conv has, per option (``1`` = keep the dense conv, ``s`` = a Ghost module of
ratio s), its measured time in the whole model on the target (the time of a residual add
that the conversion left unfused is charged to the conv that caused it) and its MACs.

* No budget (:func:`decide`): the fastest model that compresses no more than the user's
  ratio asks: start from each conv's fastest option, then, while the MACs fall below the
  floor (the MACs of converting every candidate at the user's ratio), take back the change
  that costs the least time per MAC restored. A conversion that is not faster than the
  dense conv is never chosen ("kept: slower on T").
* ``latency_ms`` / ``macs`` budgets: NetAdapt-style greedy (Yang et al., ECCV 2018): from the
  original, repeatedly take the change with the most time saved per MAC removed, and stop as
  soon as every budget holds. A budget no choice reaches raises :class:`BudgetUnreachable`
  with the best value reachable.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from ghostcli.errors import UsageError

KEEP = 1  # the option "keep the dense conv"


class BudgetUnreachable(UsageError):
    """No choice of conversions meets the budget; the message says the best reachable value."""


@dataclass(frozen=True)
class Candidate:
    """One conv that may become a Ghost module: time (ms) and MACs per option (1 = dense, s = Ghost of ratio s)."""

    name: str
    time_ms: Mapping[int, float]
    macs: Mapping[int, int]

    def options(self) -> list[int]:
        """The options measured for this conv, ``1`` first."""
        return sorted(set(self.time_ms) & set(self.macs))


@dataclass
class Decision:
    """What happens to one candidate conv, and why."""

    name: str
    ratio: int  # 1: kept dense; s: Ghost module of ratio s
    reason: str
    time_before_ms: float
    time_after_ms: float
    macs_before: int
    macs_after: int


@dataclass
class Plan:
    """The decisions and what they predict for the whole model."""

    decisions: list[Decision]
    predicted_ms: float
    predicted_macs: int
    original_ms: float
    original_macs: int
    notes: list[str] = field(default_factory=list)

    def ratios(self) -> dict[str, int]:
        """conv name -> chosen ratio (1 = kept)."""
        return {d.name: d.ratio for d in self.decisions}


def _check(candidates: Sequence[Candidate]) -> None:
    for c in candidates:
        if KEEP not in c.time_ms or KEEP not in c.macs:
            raise ValueError(f"candidate {c.name} has no measurement of the dense conv (option 1)")


def _plan(candidates: Sequence[Candidate], choice: dict[str, int], target: str, total_ms: float, total_macs: int,
          notes: list[str]) -> Plan:
    decisions = []
    for c in candidates:
        s = choice[c.name]
        before, after = c.time_ms[KEEP], c.time_ms[s]
        if s == KEEP:
            faster = [o for o in c.options() if o != KEEP and c.time_ms[o] < before]
            if not faster:
                best = min((o for o in c.options() if o != KEEP), key=lambda o: c.time_ms[o], default=None)
                why = (f"kept: slower on {target} ({before:.3f} ms -> {c.time_ms[best]:.3f} ms at s={best})"
                       if best is not None else "kept: no Ghost form measured")
            else:
                why = f"kept: the MACs floor / budget needs it ({before:.3f} ms dense)"
        else:
            why = f"ghost s={s}: {before:.3f} ms -> {after:.3f} ms on {target}"
        decisions.append(Decision(c.name, s, why, before, after, c.macs[KEEP], c.macs[s]))
    predicted = total_ms + sum(d.time_after_ms - d.time_before_ms for d in decisions)
    macs = total_macs + sum(d.macs_after - d.macs_before for d in decisions)
    return Plan(decisions, predicted, macs, total_ms, total_macs, notes)


def decide(candidates: Sequence[Candidate], *, target: str, total_ms: float, total_macs: int,
           macs_floor: int | None = None) -> Plan:
    """The fastest choice whose MACs stay >= ``macs_floor`` (None: no floor), never choosing a slower Ghost form."""
    _check(candidates)
    choice = {c.name: min(c.options(), key=lambda o: (c.time_ms[o], o != KEEP)) for c in candidates}
    if macs_floor is not None:
        by_name = {c.name: c for c in candidates}

        def macs_now() -> int:
            return total_macs + sum(by_name[n].macs[s] - by_name[n].macs[KEEP] for n, s in choice.items())

        while macs_now() < macs_floor:
            best: tuple[float, str, int] | None = None
            for c in candidates:
                cur = choice[c.name]
                for o in c.options():
                    added = c.macs[o] - c.macs[cur]
                    if added <= 0:
                        continue
                    cost = (c.time_ms[o] - c.time_ms[cur]) / added
                    if best is None or cost < best[0]:
                        best = (cost, c.name, o)
            if best is None:
                break
            choice[best[1]] = best[2]
    return _plan(candidates, choice, target, total_ms, total_macs, [])


def decide_for_budget(candidates: Sequence[Candidate], *, target: str, total_ms: float, total_macs: int,
                      latency_ms: float | None = None, macs: int | None = None) -> Plan:
    """NetAdapt-style greedy: the most time saved per MAC removed first, until every given budget holds."""
    _check(candidates)
    if latency_ms is None and macs is None:
        raise ValueError("decide_for_budget needs a latency or a MACs budget")
    choice = {c.name: KEEP for c in candidates}
    ms, mc = total_ms, total_macs

    def met() -> bool:
        return (latency_ms is None or ms <= latency_ms) and (macs is None or mc <= macs)

    while not met():
        best: tuple[float, float, str, int] | None = None
        for c in candidates:
            cur = choice[c.name]
            for o in c.options():
                removed = c.macs[cur] - c.macs[o]
                saved = c.time_ms[cur] - c.time_ms[o]
                if removed <= 0 or (macs is None and saved <= 0):
                    continue  # a latency budget takes only changes that save time
                key = (saved / removed, saved)
                if best is None or key > best[:2]:
                    best = (*key, c.name, o)
        if best is None:
            break
        _, _, name, o = best
        c = next(c for c in candidates if c.name == name)
        ms += c.time_ms[o] - c.time_ms[choice[name]]
        mc += c.macs[o] - c.macs[choice[name]]
        choice[name] = o
    if not met():
        if latency_ms is not None and ms > latency_ms:
            raise BudgetUnreachable(
                f"the `latency_budget` {latency_ms:.2f} ms ({latency_ms / total_ms:.2f}x) is out of reach on {target}: "
                f"the best reachable is {ms:.2f} ms ({ms / total_ms:.2f}x of {total_ms:.2f} ms), predicted")
        assert macs is not None
        raise BudgetUnreachable(f"the `macs_budget` {macs / 1e9:.3g} GMac is out of reach: the fewest reachable "
                                f"are {mc / 1e9:.3g} GMac (of {total_macs / 1e9:.3g} GMac)")
    return _plan(candidates, choice, target, total_ms, total_macs, [])


def charge_unfused(times: Mapping[str, float], reference: Mapping[str, float],
                   feeders: Mapping[str, Iterable[str]], converted: Iterable[str]) -> dict[str, float]:
    """The extra time of each block-level row (``times`` minus ``reference``), split over its converted feeders.

    A residual add that fused into the dense conv before it runs as its own node once that
    conv ends in a Ghost module's concat; the runtime puts that node under the block. Its time
    belongs to the decision about the conv that caused it: returns conv name -> ms to add.
    """
    done = set(converted)
    out: dict[str, float] = {}
    for block, convs in feeders.items():
        mine = [c for c in convs if c in done]
        extra = times.get(block, 0.0) - reference.get(block, 0.0)
        for c in mine:
            out[c] = out.get(c, 0.0) + extra / len(mine)
    return out


__all__ = ["KEEP", "BudgetUnreachable", "Candidate", "Decision", "Plan", "charge_unfused", "decide",
           "decide_for_budget"]
