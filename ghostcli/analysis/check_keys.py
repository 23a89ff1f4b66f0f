"""The ``check`` settings: one table of keys and the settings dataclass.

Each :class:`CheckKey` is one setting, spelled the same in config files (``max-macs``) and
(as ``--max-macs``) on the command line; its :attr:`~CheckKey.field` is the
:class:`CheckSettings` attribute (``max_macs``). The table :data:`CHECK_KEYS` drives config
parsing and validation, the merge of given values over config values, the limit comparison,
the command-line help and the key list in docs/ci.md; tests hold :class:`CheckSettings`, the
CLI options and the docs to it. Nothing here imports torch.

Messages and help name a setting in backquotes by its field (`` `max_macs` ``), the convention
of :mod:`ghostcli.option_names`: the command line shows it as ``--max-macs``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ghostcli.errors import UsageError
from ghostcli.units import (
    format_bytes,
    format_count,
    format_macs,
    format_ms,
    parse_input_size,
    parse_percent,
    parse_quantity,
)

DEFAULT_CHECK_RUNS = 30
DEFAULT_CHECK_WARMUP = 5

# ---------------------------------------------------------------- parsers: (value, what) -> setting

Parser = Callable[[Any, str], Any]


def _text(value: Any, what: str) -> str:
    return str(value)


def _lower(value: Any, what: str) -> str:
    return str(value).lower()


def _path(value: Any, what: str) -> Path:
    return Path(str(value))


def _input_size(value: Any, what: str) -> tuple[int, int, int]:
    return parse_input_size(str(value))


def _boolean(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise UsageError(f"{what} must be true or false, got {value!r}")
    return value


def _at_least(minimum: int) -> Parser:
    def parse(value: Any, what: str) -> int:
        if isinstance(value, bool) or not str(value).strip().isdigit() or int(value) < minimum:
            raise UsageError(f"{what}: expected an integer >= {minimum}, got {value!r}")
        return int(value)

    return parse


def _float(text: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise UsageError(f"{what}: cannot read {text!r} as a number") from None


def _positive(read: Callable[[str, str], float]) -> Parser:
    """A limit: a finite number above zero (a limit of 0 could never pass); text is read with ``read``."""

    def parse(value: Any, what: str) -> float:
        if isinstance(value, bool):
            raise UsageError(f"{what}: expected a number, got {value!r}")
        if isinstance(value, str) and value.strip().startswith("-"):
            raise UsageError(f"{what}: expected a positive number, got {value!r}")
        v = float(value) if isinstance(value, (int, float)) else read(str(value), what)
        if not math.isfinite(v) or v <= 0:
            raise UsageError(f"{what}: expected a positive number, got {value!r}")
        return v

    return parse


def _percent(value: Any, what: str) -> float:
    if isinstance(value, bool):
        raise UsageError(f"{what}: expected a tolerance such as 2%, got {value!r}")
    return parse_percent(str(value))


_quantity = _positive(lambda text, what: parse_quantity(text))
_ms = _positive(_float)
_ratio = _positive(lambda text, what: _float(text.rstrip("xX"), what))

# ---------------------------------------------------------------- the table


@dataclass(frozen=True)
class Limit:
    """What a limit key bounds: the :class:`LimitResult` name and the measured value it compares."""

    name: str  # macs | params | weights | latency_ms | latency_ratio
    measured: str  # key of CheckReport.measured
    detail: str = ""  # note for the verdict table; {reference} is the latency reference


@dataclass(frozen=True)
class CheckKey:
    """One ``check`` setting: config key (``--KEY`` on the command line), parser, unit and help."""

    key: str
    parse: Parser
    help: str  # command-line help; other settings in backquotes (`latency_reference`)
    unit: str = ""  # unit of a limit's values (MAC, params, bytes, ms, x), % for tolerances
    limit: Limit | None = None  # set for keys that bound a measurement
    timed: bool = False  # setting it means latency is measured

    @property
    def field(self) -> str:
        """The :class:`CheckSettings` attribute."""
        return self.key.replace("-", "_")


CHECK_KEYS: dict[str, CheckKey] = {k.key: k for k in (
    CheckKey("model", _text, "Model to check (default: 'model' from the config file)."),
    CheckKey("input-size", _input_size, "Input size CxHxW, e.g. 3x224x224 (default: the model's own)."),
    CheckKey("batch-size", _at_least(1), "Batch size for latency (default 1)."),
    CheckKey("device", _lower, "cpu, cuda or openvino, for latency."),
    CheckKey("threads", _at_least(1), "CPU threads for latency."),
    CheckKey("warmup", _at_least(0), f"Untimed runs (default {DEFAULT_CHECK_WARMUP})."),
    CheckKey("runs", _at_least(1), f"Timed runs (default {DEFAULT_CHECK_RUNS})."),
    CheckKey("channels-last", _boolean, "Time cpu/cuda models in channels_last (NHWC) memory format "
             "(default: off, or the config file's channels-last)."),
    CheckKey("max-macs", _quantity, "Most MACs allowed (fvcore total), e.g. 2.5G.", "MAC", Limit("macs", "macs")),
    CheckKey("max-params", _quantity, "Most parameters allowed, e.g. 15M or 500k.", "params",
             Limit("params", "params")),
    CheckKey("max-weights", _quantity, "Most weight bytes allowed, e.g. 60M (bytes).", "bytes",
             Limit("weights", "weight_bytes")),
    CheckKey("max-latency-ms", _ms, "Most median latency in ms (absolute; opt-in, flaky on shared runners).", "ms",
             Limit("latency_ms", "latency_median_ms", "absolute time: varies with the machine and its load"),
             timed=True),
    CheckKey("latency-reference", _text, "A model timed interleaved in the same run, for ratio limits."),
    CheckKey("max-latency-ratio", _ratio,
             "Most median latency relative to `latency_reference`, e.g. 0.8.", "x",
             Limit("latency_ratio", "latency_ratio", "median vs {reference}, timed interleaved in this run"),
             timed=True),
    CheckKey("baseline", _path, "Baseline JSON to compare against (written by `update_baseline`)."),
    CheckKey("tolerance", _percent, "Growth allowed over the baseline MACs/params, e.g. 2% (default 0%).", "%"),
    CheckKey("latency-tolerance", _percent, "Latency growth allowed over the baseline, e.g. 10% (opt-in).", "%",
             timed=True),
)}
LIMIT_KEYS = tuple(k for k in CHECK_KEYS.values() if k.limit is not None)


@dataclass
class CheckSettings:
    """Everything ``check`` needs, one attribute per :data:`CHECK_KEYS` entry; ``sources`` says where each came from."""

    model: str | None = None
    input_size: tuple[int, int, int] | None = None
    batch_size: int = 1
    device: str = "cpu"
    threads: int | None = None
    warmup: int = DEFAULT_CHECK_WARMUP
    runs: int = DEFAULT_CHECK_RUNS
    channels_last: bool = False
    max_macs: float | None = None
    max_params: float | None = None
    max_weights: float | None = None  # bytes
    max_latency_ms: float | None = None
    latency_reference: str | None = None
    max_latency_ratio: float | None = None
    baseline: Path | None = None
    tolerance: float = 0.0
    latency_tolerance: float | None = None
    config_path: Path | None = None
    sources: dict[str, str] = field(default_factory=dict)

    @property
    def needs_latency(self) -> bool:
        """True when any latency limit is set."""
        return any(getattr(self, k.field) is not None for k in CHECK_KEYS.values() if k.timed)


_UNIT_FORMAT: dict[str, Callable[[float], str]] = {
    "MAC": format_macs, "params": format_count, "bytes": format_bytes, "ms": format_ms,
}


def format_value(value: float, unit: str) -> str:
    """Human form of a measured value or limit in a limit unit (``MAC`` -> ``40.93 MMac``, ``x`` -> ``1.200x``)."""
    return _UNIT_FORMAT.get(unit, lambda v: f"{v:.3f}x")(value)
