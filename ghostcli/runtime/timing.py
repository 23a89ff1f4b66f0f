"""The one interleaved timer and the statistics of its runs (imports torch only for :func:`torch_runner`).

A *runner* is a zero-argument callable that does one inference and returns its wall-clock
time in milliseconds (:func:`torch_runner`, :func:`openvino_runner`, or any callable that
times itself). :func:`time_interleaved` warms every runner up, then times them round-robin
(A, B, A, B ...) so that a slow spell on a shared machine hits every model alike;
:func:`timing_stats` summarizes each runner's times (median, p90, p99, mean, std, min, max).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ghostcli.errors import UsageError
from ghostcli.progress import Progress, no_progress

if TYPE_CHECKING:
    import torch
    from torch import nn

Runner = Callable[[], float]


def torch_runner(model: nn.Module, example: torch.Tensor) -> Runner:
    """Time ``model(example)``; on CUDA with events and a synchronize, on CPU with ``perf_counter``."""
    import torch

    if example.device.type == "cuda":
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)

        def run_cuda() -> float:
            with torch.inference_mode():
                start.record()
                model(example)
                end.record()
            end.synchronize()
            return float(start.elapsed_time(end))

        return run_cuda

    def run_cpu() -> float:
        with torch.inference_mode():
            t0 = time.perf_counter()
            model(example)
            return (time.perf_counter() - t0) * 1000.0

    return run_cpu


def openvino_runner(compiled: Any, example: np.ndarray | torch.Tensor) -> Runner:
    """Time one synchronous inference of an OpenVINO compiled model on ``example`` (one request, reused)."""
    request = compiled.create_infer_request()
    data = example if isinstance(example, np.ndarray) else example.detach().cpu().numpy()

    def run_ov() -> float:
        t0 = time.perf_counter()
        request.infer({0: data})
        return (time.perf_counter() - t0) * 1000.0

    return run_ov


def time_interleaved(runners: Sequence[Runner], *, warmup: int, runs: int, max_seconds: float | None = None,
                     min_runs: int = 10, alternate: bool = False, progress: Progress = no_progress,
                     description: str = "timing") -> list[list[float]]:
    """Warm each runner up ``warmup`` times, then time them interleaved ``runs`` rounds; ms per runner.

    With ``max_seconds``, timing stops early once that much wall time was spent on the timed
    rounds and at least ``min_runs`` rounds were done. ``alternate`` reverses the order every
    other round (A, B, B, A ...), so that no runner always goes first. ``progress`` hears of
    every call, warm-up included, as ``description``.
    """
    if runs < 1 or warmup < 0:
        raise UsageError(f"runs must be >= 1 and warm-up >= 0, got runs={runs}, warmup={warmup}")
    total = len(runners) * (warmup + runs)
    done = 0
    for r in runners:
        for _ in range(warmup):
            r()
            done += 1
            progress(description, done, total)
    times: list[list[float]] = [[] for _ in runners]
    order = list(range(len(runners)))
    t_start = time.perf_counter()
    for k in range(runs):
        if max_seconds is not None and k >= min_runs and time.perf_counter() - t_start > max_seconds:
            break
        for i in (order[::-1] if alternate and k % 2 else order):
            times[i].append(runners[i]())
            done += 1
            progress(description, done, total)
    return times


def percentile(sorted_ms: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (``q`` in 0..100) of already sorted values."""
    if not sorted_ms:
        return math.nan
    pos = (len(sorted_ms) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_ms) - 1)
    return sorted_ms[lo] + (sorted_ms[hi] - sorted_ms[lo]) * (pos - lo)


@dataclass
class TimingStats:
    """Statistics of one runner's times, in milliseconds."""

    runs: int
    median_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    std_ms: float  # sample standard deviation (0 for a single run)
    min_ms: float
    max_ms: float


def timing_stats(times_ms: Sequence[float]) -> TimingStats:
    """Median, p90, p99 (linear interpolation), mean, sample std, min and max of ``times_ms`` (not empty)."""
    s = sorted(float(t) for t in times_ms)
    if not s:
        raise ValueError("no times to summarize")
    return TimingStats(runs=len(s), median_ms=percentile(s, 50), p90_ms=percentile(s, 90), p99_ms=percentile(s, 99),
                       mean_ms=statistics.fmean(s), std_ms=statistics.stdev(s) if len(s) > 1 else 0.0,
                       min_ms=s[0], max_ms=s[-1])
