"""Latency for ``profile`` and ``check``: OpenVINO compilation for timing, and :class:`LatencyStats` of timed runs.

The runners and the interleaved timer itself are :mod:`ghostcli.runtime.timing`'s.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ghostcli.analysis.report import LatencyStats
from ghostcli.errors import DeviceError
from ghostcli.runtime.timing import timing_stats


def openvino_compile(model: nn.Module, example: torch.Tensor, *, precision: str | None,
                     threads: int | None) -> tuple[Any, str]:
    """Convert and compile on the OpenVINO CPU plugin with the LATENCY hint (ghostcli.runtime's helpers).

    Returns the compiled model and the inference precision that OpenVINO actually uses.
    """
    try:
        import openvino  # noqa: F401
    except ImportError:
        raise DeviceError("`device` openvino needs the openvino package (pip install openvino)") from None
    from ghostcli.fold import deploy_form
    from ghostcli.runtime.openvino import compile_cpu, to_openvino

    return compile_cpu(to_openvino(deploy_form(model), tuple(example.shape)), precision, threads=threads)


def latency_stats(times_ms: Sequence[float], *, batch_size: int, warmup: int) -> LatencyStats:
    """Median, p90, p99, mean, std (sample), min, max and throughput (images/s at the median) of ``times_ms``."""
    s = timing_stats(times_ms)
    return LatencyStats(
        batch_size=batch_size, warmup=warmup, runs=s.runs,
        median_ms=s.median_ms, p90_ms=s.p90_ms, p99_ms=s.p99_ms, mean_ms=s.mean_ms, std_ms=s.std_ms,
        min_ms=s.min_ms, max_ms=s.max_ms,
        throughput_ips=batch_size * 1000.0 / s.median_ms if s.median_ms > 0 else math.inf,
    )
