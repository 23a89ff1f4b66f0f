"""Latency backends (PyTorch on cpu/cuda, OpenVINO on CPU) and the statistics of many timed runs.

A *runner* is a zero-argument callable that does one forward and returns its
wall-clock time in milliseconds. Several runners are timed interleaved (A, B, A, B ...)
so that a slow spell on a shared machine hits every model alike.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from ghostcli.analysis.report import LatencyStats
from ghostcli.errors import DeviceError

Runner = Callable[[], float]


def torch_runner(model: nn.Module, example: torch.Tensor) -> Runner:
    """Time ``model(example)``; on CUDA with events and a synchronize, on CPU with ``perf_counter``."""
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


def openvino_compile(model: nn.Module, example: torch.Tensor, *, precision: str | None,
                     threads: int | None) -> tuple[Any, str]:
    """Convert and compile on the OpenVINO CPU plugin with the LATENCY hint (ghostcli.deploy's helpers).

    Returns the compiled model and the inference precision that OpenVINO actually uses.
    """
    try:
        import openvino  # noqa: F401
    except ImportError:
        raise DeviceError("--device openvino needs the openvino package (pip install openvino)") from None
    from ghostcli.runtime.openvino import compile_cpu, to_openvino

    return compile_cpu(to_openvino(model, tuple(example.shape)), precision, threads=threads)


def openvino_runner(compiled: Any, example: torch.Tensor) -> Runner:
    """Time one synchronous inference of an OpenVINO compiled model."""
    request = compiled.create_infer_request()
    data = example.detach().cpu().numpy()

    def run_ov() -> float:
        t0 = time.perf_counter()
        request.infer({0: data})
        return (time.perf_counter() - t0) * 1000.0

    return run_ov


def percentile(sorted_ms: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (``q`` in 0..100) of already sorted values."""
    if not sorted_ms:
        return math.nan
    pos = (len(sorted_ms) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_ms) - 1)
    return sorted_ms[lo] + (sorted_ms[hi] - sorted_ms[lo]) * (pos - lo)


def summarize(times_ms: Sequence[float], *, batch_size: int, warmup: int) -> LatencyStats:
    """Median, p90, p99, mean, std (sample), min, max and throughput of ``times_ms``."""
    s = sorted(times_ms)
    median = percentile(s, 50)
    return LatencyStats(
        batch_size=batch_size, warmup=warmup, runs=len(s),
        median_ms=median, p90_ms=percentile(s, 90), p99_ms=percentile(s, 99),
        mean_ms=statistics.fmean(s), std_ms=statistics.stdev(s) if len(s) > 1 else 0.0,
        min_ms=s[0], max_ms=s[-1],
        throughput_ips=batch_size * 1000.0 / median if median > 0 else math.inf,
    )


def measure(runners: Sequence[Runner], *, warmup: int, runs: int, max_seconds: float | None = None,
            min_runs: int = 10, on_step: Callable[[int, int], None] | None = None) -> list[list[float]]:
    """Warm each runner up, then time them interleaved ``runs`` times; returns ms per runner.

    With ``max_seconds``, timing stops early once that much wall time was spent on the
    timed rounds and at least ``min_runs`` rounds were done (the default-runs budget).
    """
    total = len(runners) * (warmup + runs)
    done = 0
    for r in runners:
        for _ in range(warmup):
            r()
            done += 1
            if on_step:
                on_step(done, total)
    times: list[list[float]] = [[] for _ in runners]
    t_start = time.perf_counter()
    for k in range(runs):
        if max_seconds is not None and k >= min_runs and time.perf_counter() - t_start > max_seconds:
            break
        for i, r in enumerate(runners):
            times[i].append(r())
            done += 1
            if on_step:
                on_step(done, total)
    return times
