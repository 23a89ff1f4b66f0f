"""Parsing and formatting of sizes, counts and times (no torch import).

Conventions, stated once: a *MAC* is one fused multiply-add, the unit the
GhostNet paper calls a FLOP. Where ghostcli writes ``flops`` (JSON) it means
``2 x MACs``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from ghostcli.errors import UsageError

_SUFFIX = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}
_QTY = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([kKmMgGtT]?)\s*(?:mac|macs|flops|params|b)?\s*$", re.I)
_SIZE = re.compile(r"^\s*(\d+)\s*[xX,]\s*(\d+)\s*[xX,]\s*(\d+)\s*$")
_SIZE_HW = re.compile(r"^\s*(\d+)\s*(?:[xX,]\s*(\d+))?\s*$")


def parse_quantity(text: str) -> float:
    """Parse a human count such as ``2.5G``, ``15M``, ``500k`` or ``1e6``."""
    m = _QTY.match(str(text))
    if not m:
        raise UsageError(f"cannot read {text!r} as a number (examples: 2.5G, 15M, 500k, 1200)")
    value = float(m.group(1)) * _SUFFIX[m.group(2).lower()]
    if not math.isfinite(value):
        raise UsageError(f"{text!r} is not a finite number")
    return value


def parse_percent(text: str) -> float:
    """Parse ``2%`` or ``0.02`` into a fraction (0.02)."""
    s = str(text).strip()
    try:
        value = float(s[:-1]) / 100.0 if s.endswith("%") else float(s)
    except ValueError:
        raise UsageError(f"cannot read {text!r} as a tolerance (examples: 2%, 0.02)") from None
    if value < 0 or not math.isfinite(value):
        raise UsageError(f"tolerance must be a non-negative number, got {text!r}")
    return value


def parse_factor(text: str) -> float:
    """Parse a relative size such as ``0.7x``, ``0.7`` or ``70%`` into a fraction (0.7)."""
    s = str(text).strip().lower()
    try:
        value = float(s[:-1]) / 100.0 if s.endswith("%") else float(s[:-1] if s.endswith("x") else s)
    except ValueError:
        raise UsageError(f"cannot read {text!r} as a factor (examples: 0.7x, 70%)") from None
    if not math.isfinite(value) or value <= 0:
        raise UsageError(f"a factor must be a positive number, got {text!r}")
    return value


def parse_input_size(text: str, channels: int = 3) -> tuple[int, int, int]:
    """Parse ``3x224x224`` (C x H x W), ``224x224`` or ``224`` into ``(C, H, W)``."""
    s = str(text)
    m = _SIZE.match(s)
    if m:
        c, h, w = (int(g) for g in m.groups())
    else:
        m2 = _SIZE_HW.match(s)
        if not m2:
            raise UsageError(f"cannot read input size {text!r}: use CxHxW such as 3x224x224")
        h = int(m2.group(1))
        w = int(m2.group(2) or h)
        c = channels
    if min(c, h, w) <= 0:
        raise UsageError(f"input size {text!r} has a zero dimension")
    if max(c, h, w) > 16384:
        raise UsageError(f"input size {text!r} is implausibly large")
    return (c, h, w)


def format_input_size(size: Sequence[int | str]) -> str:
    """``(3, 224, 224)`` -> ``3x224x224`` (a named dimension stays a name: ``batchx3x224x224``)."""
    return "x".join(v if isinstance(v, str) else str(int(v)) for v in size)


def _scaled(value: float, unit: str, digits: int = 2) -> str:
    for threshold, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= threshold:
            return f"{value / threshold:.{digits}f} {prefix}{unit}"
    return f"{value:.0f} {unit}".rstrip()


def format_macs(macs: float) -> str:
    """``4.11e9`` -> ``4.11 GMac``."""
    return _scaled(macs, "Mac")


def format_count(n: float) -> str:
    """``25557032`` -> ``25.56 M``."""
    return _scaled(n, "").rstrip() if abs(n) >= 1e3 else f"{n:.0f}"


def format_bytes(n: float) -> str:
    """Bytes in MiB/GiB with the unit."""
    for threshold, unit in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
        if abs(n) >= threshold:
            return f"{n / threshold:.2f} {unit}"
    return f"{n:.0f} B"


def format_ms(ms: float) -> str:
    """Milliseconds with a sensible number of digits."""
    if ms >= 100:
        return f"{ms:.1f} ms"
    if ms >= 1:
        return f"{ms:.2f} ms"
    return f"{ms * 1000:.1f} us"


def format_ratio(x: float) -> str:
    """``0.532`` -> ``0.53x``."""
    return f"{x:.2f}x"


def format_speedup(speedup: float) -> str:
    """A time ratio ``before / after`` in words: ``1.35`` -> ``1.35x faster``, ``0.74`` -> ``1.35x slower``."""
    if not math.isfinite(speedup) or speedup <= 0:
        return "not measured"
    return f"{speedup:.2f}x faster" if speedup >= 1 else f"{1 / speedup:.2f}x slower"


def check_timing(runs: int, warmup: int, threads: int | None, *, runs_hint: str = "") -> None:
    """Refuse impossible ``runs``/``warmup``/``threads`` values (the one check every timed command shares).

    Messages name the setting in backquotes (`` `runs` ``: the command line shows ``--runs``); ``runs_hint``
    is appended to the one about ``runs``, e.g. ``" (use `no_latency` to skip timing)"``.
    """
    from ghostcli.errors import UsageError

    if runs < 1:
        raise UsageError(f"`runs` must be at least 1, got {runs}{runs_hint}")
    if warmup < 0:
        raise UsageError(f"`warmup` must be 0 or more, got {warmup}")
    if threads is not None and threads < 1:
        raise UsageError(f"`threads` must be at least 1, got {threads}")
