"""Closed-form initialisation of a Ghost module: which original channels the primary conv computes, which primary
channel each cheap channel derives from, and the cheap depthwise filters by ridge least squares.

Notation: the replaced layer computes ``Y = BN(conv(X))`` with ``n`` channels; the Ghost module's primary conv
computes ``m = ceil(n / s)`` of them exactly (the original filters and BatchNorm of those channels); each cheap
channel ``c`` is ``w_c * A_p + b_c``, a ``d x d`` depthwise filter on the activated primary map ``A_p`` (``A =
relu(Y)`` when the module is activated, else ``Y``) plus a bias. For every candidate pair (parent ``p``, child
``c``) the ridge fit and its residual come from sufficient statistics accumulated over the calibration batches
(:class:`FitStats`: per-channel Gram matrices of the ``d x d`` shifted copies of ``A_p``, their correlation with
every ``Y_c``), so the data is streamed once and never held whole.

The cost of a pair is its relative residual ``SSE / var(Y_c)``: 0 when ``Y_c`` *is* a depthwise transform of
``A_p``, 1 when the fit explains nothing. :func:`choose_channels` picks the primary set and the pairing (greedy on
the cheapest pairs, then an exact assignment of children to the primaries' cheap slots, then swaps while they
lower the total); with the module's output order fixed (its readers cannot be permuted) the pairing is the
layer's own: channels ``0..m-1`` primary, channel ``m + j`` derived from primary ``j // (s - 1)``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

#: elements of one batch's shifted copies (B x n x d^2 x H*W) above which the batch is split
_CHUNK_ELEMENTS = 32_000_000


def shifted(a: torch.Tensor, d: int) -> torch.Tensor:
    """``(B, n, H, W)`` -> ``(B, n, d*d, H*W)``: the zero-padded ``d x d`` neighbourhood of every pixel, in the
    order of a depthwise conv's ``weight[c, 0].flatten()`` (stride 1, padding ``d // 2``)."""
    b, n, h, w = a.shape
    return F.unfold(a.reshape(b * n, 1, h, w), d, padding=d // 2).view(b, n, d * d, h * w)


def _index(ids: list[int]) -> slice | torch.Tensor:
    """``ids`` as a slice when they are consecutive (a view, no copy), else as an index tensor."""
    if ids and ids == list(range(ids[0], ids[0] + len(ids))):
        return slice(ids[0], ids[0] + len(ids))
    return torch.tensor(ids, dtype=torch.long)


class FitStats:
    """Sufficient statistics of the ridge fits ``Y_c ~ w * A_p + b`` over streamed batches (float64 sums).

    ``pairs=None`` collects every (parent, child) pair (needed to choose channels: ``n x n x d^2`` numbers);
    ``pairs=(parents, children)`` only those pairs (the fixed pairing: ``len(children) x d^2``).
    """

    def __init__(self, n: int, d: int, pairs: tuple[list[int], list[int]] | None = None) -> None:
        self.n, self.d, self.k = n, d, d * d
        self.pairs = pairs
        dd = torch.float64
        self.count = 0
        self.gff = torch.zeros(n, self.k, self.k, dtype=dd)  # sum of u u^T per parent
        self.gf1 = torch.zeros(n, self.k, dtype=dd)  # sum of u per parent
        self.y1 = torch.zeros(n, dtype=dd)  # sum of Y_c
        self.yy = torch.zeros(n, dtype=dd)  # sum of Y_c^2
        size = (n, n, self.k) if pairs is None else (len(pairs[1]), self.k)
        self.h = torch.zeros(size, dtype=dd)  # sum of u_p Y_c
        if pairs is not None:  # only the parents' neighbourhoods are needed (half the work at s = 2)
            self._parents = sorted(set(pairs[0]))
            where = {p: i for i, p in enumerate(self._parents)}
            self._pick = _index([where[p] for p in pairs[0]])  # each pair's parent among self._parents
            self._children = _index(pairs[1])
            self._rows = _index(self._parents)

    def add(self, y: torch.Tensor, a: torch.Tensor) -> None:
        """One batch: ``y`` the original pre-activation output, ``a`` the map the cheap conv reads (B, n, H, W)."""
        b = y.shape[0]
        parents = self.n if self.pairs is None else len(self._parents)
        per_image = parents * self.k * y.shape[2] * y.shape[3]
        step = max(1, _CHUNK_ELEMENTS // max(1, per_image))
        for i in range(0, b, step):
            self._add(y[i:i + step].float(), a[i:i + step].float())

    def _add(self, y: torch.Tensor, a: torch.Tensor) -> None:
        rows = slice(None) if self.pairs is None else self._rows
        u = shifted(a[:, rows], self.d)  # B, parents, K, P
        yf = y.flatten(2)  # B, n, P
        self.count += yf.shape[0] * yf.shape[2]
        self.gff[rows] += torch.einsum("bpkx,bplx->pkl", u, u).double()
        self.gf1[rows] += u.sum((0, 3)).double()
        self.y1 += yf.sum((0, 2)).double()
        self.yy += yf.square().sum((0, 2)).double()
        if self.pairs is None:
            ut = u.permute(1, 2, 0, 3).reshape(self.n * self.k, -1)  # (p, k) x (b, x)
            yt = yf.permute(0, 2, 1).reshape(-1, self.n)  # (b, x) x c
            self.h += (ut @ yt).view(self.n, self.k, self.n).permute(0, 2, 1).double()
        else:
            self.h += torch.einsum("bjkx,bjx->jk", u[:, self._pick], yf[:, self._children]).double()

    def variance_sums(self) -> torch.Tensor:
        """``sum (Y_c - mean)^2`` per channel."""
        return (self.yy - self.y1.square() / max(self.count, 1)).clamp_min(0)


@dataclass
class PairFits:
    """Ridge fits for a set of (parent, child) pairs: filters ``w`` (pairs x d^2), biases ``b``, relative residuals
    ``cost`` (SSE / variance of the child; 0 = exact) and the mean / variance of ``w * A_p`` (for the cheap BN)."""

    w: torch.Tensor
    b: torch.Tensor
    cost: torch.Tensor
    mean: torch.Tensor
    var: torch.Tensor


def _systems(stats: FitStats, ridge: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per parent: the (d^2 + 1)^2 normal matrix with the ridge on the filter part, and the ridge weights."""
    n, k = stats.n, stats.k
    a = torch.zeros(n, k + 1, k + 1, dtype=torch.float64)
    a[:, :k, :k] = stats.gff
    a[:, :k, k] = stats.gf1
    a[:, k, :k] = stats.gf1
    a[:, k, k] = float(stats.count)
    scale = torch.diagonal(stats.gff, dim1=1, dim2=2).mean(1)  # mean energy of a shifted map, per parent
    floor = 1e-9 * float(scale.mean()) + 1e-12
    lam = ridge * scale + floor
    idx = torch.arange(k)
    a[:, idx, idx] += lam[:, None]
    return a, lam


def fit_all(stats: FitStats, ridge: float) -> torch.Tensor:
    """Relative residual of every (parent p, child c) fit, ``n x n`` (``inf`` on the diagonal)."""
    if stats.pairs is not None:
        raise ValueError("fit_all needs the statistics of every pair (pairs=None)")
    n, k = stats.n, stats.k
    a, lam = _systems(stats, ridge)
    rhs = torch.empty(n, k + 1, n, dtype=torch.float64)
    rhs[:, :k, :] = stats.h.permute(0, 2, 1)
    rhs[:, k, :] = stats.y1[None, :]
    sol = torch.linalg.solve(a, rhs)  # n(p), K+1, n(c)
    explained = (sol * rhs).sum(1)  # w.h
    penalty = lam[:, None] * sol[:, :k, :].square().sum(1)
    sse = stats.yy[None, :] - explained - penalty
    var = stats.variance_sums()
    cost = torch.where(var[None, :] > 1e-12 * (stats.yy.max() + 1e-30), sse / var[None, :].clamp_min(1e-30),
                       torch.zeros_like(sse))
    cost = cost.clamp_min(0)
    cost.fill_diagonal_(math.inf)
    return cost


def fit_pairs(stats: FitStats, parents: list[int], children: list[int], ridge: float) -> PairFits:
    """The ridge fit of each child from its parent (statistics of every pair, or of exactly these pairs)."""
    k = stats.k
    a, lam = _systems(stats, ridge)
    p = torch.tensor(parents, dtype=torch.long)
    c = torch.tensor(children, dtype=torch.long)
    rhs = torch.empty(len(children), k + 1, dtype=torch.float64)
    rhs[:, :k] = stats.h[p, c] if stats.pairs is None else stats.h
    rhs[:, k] = stats.y1[c]
    sol = torch.linalg.solve(a[p], rhs.unsqueeze(-1)).squeeze(-1)
    w, b = sol[:, :k], sol[:, k]
    sse = stats.yy[c] - (sol * rhs).sum(1) - lam[p] * w.square().sum(1)
    var = stats.variance_sums()[c]
    cost = torch.where(var > 1e-12 * (stats.yy.max() + 1e-30), sse / var.clamp_min(1e-30), torch.zeros_like(sse))
    n_px = max(stats.count, 1)
    mean = (w * stats.gf1[p]).sum(1) / n_px
    second = torch.einsum("jk,jkl,jl->j", w, stats.gff[p], w) / n_px
    return PairFits(w=w, b=b, cost=cost.clamp_min(0), mean=mean, var=(second - mean.square()).clamp_min(0))


def capacities(n: int, ratio: int) -> list[int]:
    """Children each primary slot holds, in output order: ``concat(primary, cheap)[:, :n]`` keeps the first
    ``n - m`` cheap channels, so the first primaries have ``s - 1`` children, then at most one has fewer, the
    rest none."""
    m = math.ceil(n / ratio)
    left = n - m
    out = []
    for _ in range(m):
        take = min(ratio - 1, left)
        out.append(take)
        left -= take
    return out


def fixed_pairing(n: int, ratio: int) -> tuple[list[int], list[list[int]]]:
    """The layer's own pairing: primaries ``0..m-1`` and the children of primary ``i`` in its cheap slots."""
    m = math.ceil(n / ratio)
    children: list[list[int]] = [[] for _ in range(m)]
    for j in range(n - m):
        children[j // (ratio - 1)].append(m + j)
    return list(range(m)), children


@dataclass
class Choice:
    """Primaries in output order with their children (``children[i]`` of ``primaries[i]``), and the total cost."""

    primaries: list[int]
    children: list[list[int]]
    cost: float

    def order(self) -> list[int]:
        """Output position -> original channel: primaries first, then the children of each primary in turn."""
        return [*self.primaries, *(c for group in self.children for c in group)]


def _assign(cost: torch.Tensor, primaries: list[int], caps: list[int]) -> Choice | None:
    """The best assignment of every other channel to the primaries' cheap slots (``caps`` in output order, the
    primaries placed on the slots to fit: exact for s = 2 and whenever the layer keeps every cheap channel)."""
    from scipy.optimize import linear_sum_assignment

    n = cost.shape[0]
    in_s = set(primaries)
    kids = [c for c in range(n) if c not in in_s]
    if not kids:
        return Choice(list(primaries), [[] for _ in primaries], 0.0)
    full = max(caps)
    cols = [p for p in primaries for _ in range(full)]
    sub = cost[torch.tensor(cols)][:, torch.tensor(kids)].T.numpy()  # kids x slots
    sub = sub.clip(max=1e6)
    rows, picked = linear_sum_assignment(sub)
    groups: dict[int, list[int]] = {p: [] for p in primaries}
    for r, col in zip(rows, picked):
        groups[cols[col]].append(kids[r])
    ranked = sorted(primaries, key=lambda p: -len(groups[p]))
    counts = [len(groups[p]) for p in ranked]
    if counts != caps:  # s > 2 with a cut: fix which primaries get fewer children, then assign again
        rows_caps = list(caps)
        cols = [p for p, cap in zip(ranked, rows_caps) for _ in range(cap)]
        sub = cost[torch.tensor(cols)][:, torch.tensor(kids)].T.numpy().clip(max=1e6)
        rows, picked = linear_sum_assignment(sub)
        groups = {p: [] for p in primaries}
        for r, col in zip(rows, picked):
            groups[cols[col]].append(kids[r])
        if [len(groups[p]) for p in ranked] != caps:
            return None
    total = float(sum(float(cost[p, c]) for p in ranked for c in groups[p]))
    return Choice(ranked, [sorted(groups[p]) for p in ranked], total)


def _greedy_primaries(cost: torch.Tensor, m: int, ratio: int) -> list[int]:
    """Primaries from the cheapest pairs first: a pair (p, c) makes p a primary (while fewer than m) and c its
    child (while p has room); channels left over become primaries."""
    n = cost.shape[0]
    role = [0] * n  # 0 undecided, 1 primary, 2 child
    room = [0] * n
    primaries = children = 0
    order = torch.argsort(cost.flatten()).tolist()
    for flat in order:
        p, c = divmod(flat, n)
        if p == c or role[c] != 0 or role[p] == 2:
            continue
        if role[p] == 0:
            if primaries >= m:
                continue
            role[p], room[p] = 1, ratio - 1
            primaries += 1
        if room[p] == 0:
            continue
        role[c] = 2
        room[p] -= 1
        children += 1
        if children == n - m:
            break
    chosen = [i for i in range(n) if role[i] == 1]
    return chosen + [i for i in range(n) if role[i] == 0][: m - len(chosen)]


def choose_channels(cost: torch.Tensor, ratio: int, *, seconds: float = 2.0) -> Choice:
    """Primaries and pairing of lowest total cost (``cost[p, c]``: child c from parent p), within ``seconds`` of
    swap search after the greedy start. Exact when some choice costs 0 (the children are depthwise transforms of
    their parents) and the greedy start finds it; never worse than the layer's fixed pairing."""
    n = cost.shape[0]
    m = math.ceil(n / ratio)
    caps = capacities(n, ratio)
    fixed_p, fixed_c = fixed_pairing(n, ratio)
    fixed = Choice(fixed_p, fixed_c, float(sum(float(cost[p, c]) for p, cs in zip(fixed_p, fixed_c) for c in cs)))
    best = _assign(cost, _greedy_primaries(cost, m, ratio), caps) or fixed
    deadline = time.perf_counter() + seconds
    improved = True
    while improved and time.perf_counter() < deadline:
        improved = False
        # the worst-fitted children first: try making each the primary in its parent's place
        pairs = sorted(((float(cost[p, c]), i, c) for i, (p, cs) in enumerate(zip(best.primaries, best.children))
                        for c in cs), reverse=True)
        for _, i, c in pairs:
            if time.perf_counter() >= deadline:
                break
            trial_p = list(best.primaries)
            trial_p[i] = c
            trial = _assign(cost, trial_p, caps)
            if trial is not None and trial.cost < best.cost - 1e-12:
                best, improved = trial, True
                break
    return best if best.cost <= fixed.cost else fixed
