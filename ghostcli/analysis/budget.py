"""``ghostcli check``: compare a model against limits and a committed baseline (the CI gate).

Limits come from the command line, overriding a config file found in the repository:
``ghostcli.toml`` (top-level keys or a ``[check]`` table) or ``pyproject.toml``
(``[tool.ghostcli]`` or ``[tool.ghostcli.check]``). Sizes and counts are deterministic and
are compared exactly (with an optional tolerance against the baseline). Latency is opt-in;
the robust form times a *reference* model interleaved in the same run and limits the
ratio, because absolute milliseconds on shared CI runners vary with the neighbours.
"""

from __future__ import annotations

import json
import math
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ghostcli.analysis.report import CHECK_KIND, PROFILE_KIND, SCHEMA_VERSION, Conditions, Environment
from ghostcli.errors import ArtifactError, UsageError, one_line

if TYPE_CHECKING:
    from ghostcli.loaded import LoadedModel
from ghostcli.units import format_bytes, format_count, format_macs, format_ms, parse_percent, parse_quantity

BASELINE_KIND = "ghostcli.baseline"
CONFIG_KEYS = {
    "model", "input-size", "batch-size", "device", "threads", "warmup", "runs", "channels-last",
    "max-macs", "max-params", "max-weights", "max-latency-ms", "latency-reference", "max-latency-ratio",
    "baseline", "tolerance", "latency-tolerance",
}
DEFAULT_CHECK_RUNS = 30
DEFAULT_CHECK_WARMUP = 5


@dataclass
class CheckSettings:
    """Everything ``check`` needs; ``sources`` says where each value came from."""

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
        return any(v is not None for v in (self.max_latency_ms, self.max_latency_ratio, self.latency_tolerance))


@dataclass
class LimitResult:
    """One row of the verdict table."""

    name: str  # macs | params | weights | latency_ms | latency_ratio
    measured: float
    limit: float
    unit: str  # MAC | params | bytes | ms | x
    passed: bool
    source: str  # e.g. "--max-macs", "ghostcli.toml", "baseline ci/base.json +2%"
    detail: str = ""


@dataclass
class BaselineEntry:
    """What a baseline file records for one model."""

    name: str
    macs: int
    params: int
    weight_bytes: int | None = None
    latency_median_ms: float | None = None
    latency_reference: str | None = None
    latency_ratio: float | None = None
    batch_size: int | None = None


@dataclass
class CheckReport:
    """The result of :func:`run_check`."""

    model: str
    input_size: list[int]
    batch_size: int
    passed: bool
    results: list[LimitResult]
    measured: dict[str, float | None]
    environment: Environment
    baseline: str | None = None
    baseline_updated: bool = False
    config: str | None = None
    conditions: Conditions | None = None  # how latency was measured; None when nothing was timed
    schema_version: str = SCHEMA_VERSION
    kind: str = CHECK_KIND

    @property
    def failures(self) -> list[LimitResult]:
        """Rows whose limit was exceeded."""
        return [r for r in self.results if not r.passed]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict."""
        from ghostcli.render import to_jsonable

        d = to_jsonable(self)
        return {"schema_version": d.pop("schema_version"), "kind": d.pop("kind"), **d}


# ---------------------------------------------------------------- config

def find_config(start: Path | None = None) -> Path | None:
    """The nearest ``ghostcli.toml``, or ``pyproject.toml`` with ``[tool.ghostcli]``, from ``start`` upwards.

    The search stops at a directory holding ``.git`` (the repository root).
    """
    d = (start or Path.cwd()).resolve()
    for folder in (d, *d.parents):
        cand = folder / "ghostcli.toml"
        if cand.is_file():
            return cand
        py = folder / "pyproject.toml"
        if py.is_file():
            tool = _load_toml(py, hint=" (fix it, or pass --no-config)").get("tool")
            if isinstance(tool, dict) and "ghostcli" in tool:
                return py
        if (folder / ".git").exists():
            break
    return None


def _load_toml(path: Path, hint: str = "") -> dict[str, Any]:
    """Parse a TOML file; a missing, unreadable or malformed one raises UsageError (``hint`` is appended)."""
    if path.is_dir():
        raise UsageError(f"config file {path} is a directory, expected a .toml file")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"config file {path} does not exist") from None
    except OSError as exc:
        raise UsageError(f"cannot read config file {path}: {exc.strerror or one_line(exc)}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"config file {path} is not valid TOML: {one_line(exc)}{hint}") from None


def read_config(path: Path) -> dict[str, Any]:
    """The check settings of a config file as a flat dict with dashed keys; bad files raise UsageError."""
    data = _load_toml(path)
    if path.name == "pyproject.toml":
        tool = data.get("tool")
        section = tool.get("ghostcli") if isinstance(tool, dict) else None
        if not isinstance(section, dict):
            raise UsageError(f"{path} has no [tool.ghostcli] table")
        label = "[tool.ghostcli]"
    else:
        section, label = data, path.name
    flat = {k: v for k, v in section.items() if not isinstance(v, dict)}
    if isinstance(section.get("check"), dict):
        flat.update(section["check"])
    out = {}
    for key, value in flat.items():
        k = key.replace("_", "-")
        if k not in CONFIG_KEYS:
            raise UsageError(f"{path}: unknown key {key!r} in {label} (known: {', '.join(sorted(CONFIG_KEYS))})")
        out[k] = value
    return out


def _positive(value: Any, what: str, parse: Any = parse_quantity) -> float:
    """A limit: a finite number above zero (a limit of 0 could never pass)."""
    if isinstance(value, bool):
        raise UsageError(f"{what}: expected a number, got {value!r}")
    if isinstance(value, str) and value.strip().startswith("-"):
        raise UsageError(f"{what}: expected a positive number, got {value!r}")
    v = float(value) if isinstance(value, (int, float)) else parse(str(value))
    if not math.isfinite(v) or v <= 0:
        raise UsageError(f"{what}: expected a positive number, got {value!r}")
    return v


def _percent(value: Any, what: str) -> float:
    if isinstance(value, bool):
        raise UsageError(f"{what}: expected a tolerance such as 2%, got {value!r}")
    return parse_percent(str(value))


def _int(value: Any, what: str, minimum: int) -> int:
    if isinstance(value, bool) or not str(value).strip().isdigit() or int(value) < minimum:
        raise UsageError(f"{what}: expected an integer >= {minimum}, got {value!r}")
    return int(value)


def build_settings(cli: dict[str, Any], config: dict[str, Any], config_path: Path | None) -> CheckSettings:
    """Merge config values with command-line values (which win); parse and validate all of them."""
    s = CheckSettings(config_path=config_path)
    label = config_path.name if config_path else "config"
    merged: dict[str, tuple[Any, str]] = {k: (v, label) for k, v in config.items()}
    for k, v in cli.items():
        if v is not None:
            merged[k] = (v, f"--{k}")
    for key, (value, src) in merged.items():
        what = f"{src} {key}" if not src.startswith("--") else src
        try:
            _apply(s, key, value, src, what, label, config_path)
        except UsageError as exc:
            msg = str(exc)
            raise UsageError(msg if msg.startswith(what) else f"{what}: {msg}") from None
        s.sources[key] = src
    if s.max_latency_ratio is not None and not s.latency_reference:
        raise UsageError("--max-latency-ratio needs --latency-reference MODEL (timed in the same run)")
    if s.latency_tolerance is not None and s.baseline is None:
        raise UsageError("--latency-tolerance compares against a baseline: give --baseline FILE")
    return s


def _apply(s: CheckSettings, key: str, value: Any, src: str, what: str, label: str,
           config_path: Path | None) -> None:
    """Parse one setting into ``s``."""
    from ghostcli.units import parse_input_size

    if key == "model":
        s.model = str(value)
    elif key == "input-size":
        s.input_size = parse_input_size(str(value))
    elif key == "batch-size":
        s.batch_size = _int(value, what, 1)
    elif key == "device":
        s.device = str(value).lower()
    elif key == "threads":
        s.threads = _int(value, what, 1)
    elif key == "warmup":
        s.warmup = _int(value, what, 0)
    elif key == "runs":
        s.runs = _int(value, what, 1)
    elif key == "channels-last":
        if not isinstance(value, bool):
            raise UsageError(f"{what} must be true or false, got {value!r}")
        s.channels_last = value
    elif key == "max-macs":
        s.max_macs = _positive(value, what)
    elif key == "max-params":
        s.max_params = _positive(value, what)
    elif key == "max-weights":
        s.max_weights = _positive(value, what)
    elif key == "max-latency-ms":
        s.max_latency_ms = _positive(value, what, parse=lambda t: _float(t, what))
    elif key == "latency-reference":
        s.latency_reference = str(value)
    elif key == "max-latency-ratio":
        s.max_latency_ratio = _positive(value, what, parse=lambda t: _float(t.rstrip("xX"), what))
    elif key == "baseline":
        p = Path(str(value))
        if config_path is not None and src == label and not p.is_absolute():
            p = config_path.parent / p  # config paths are relative to the config file
        s.baseline = p
    elif key == "tolerance":
        s.tolerance = _percent(value, what)
    elif key == "latency-tolerance":
        s.latency_tolerance = _percent(value, what)


def _float(text: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise UsageError(f"{what}: cannot read {text!r} as a number") from None


# ---------------------------------------------------------------- baseline

def read_baseline(path: Path, model_name: str | None = None) -> BaselineEntry:
    """Read a baseline written by ``check --update-baseline`` (or ``profile --json``); bad files raise ArtifactError."""
    if path.is_dir():
        raise ArtifactError(f"baseline {path} is a directory, expected a JSON file")
    if not path.is_file():
        raise ArtifactError(f"baseline file {path} does not exist (create it with --update-baseline)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ArtifactError(f"cannot read baseline {path}: {exc.strerror or one_line(exc)}") from None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise ArtifactError(f"baseline {path} is not JSON "
                            "(expected a file written by 'ghostcli check --update-baseline')") from None
    kind = data.get("kind") if isinstance(data, dict) else None
    if kind not in (BASELINE_KIND, PROFILE_KIND):
        raise ArtifactError(f"{path} is not a ghostcli baseline (no kind {BASELINE_KIND!r}); "
                            "write one with 'ghostcli check MODEL --baseline FILE --update-baseline'")
    major = str(data.get("schema_version", "")).split(".")[0]
    if major != SCHEMA_VERSION.split(".")[0]:
        raise ArtifactError(f"{path} has schema version {data.get('schema_version')!r}; this ghostcli reads "
                            f"{SCHEMA_VERSION.split('.')[0]}.x")
    try:
        if kind == BASELINE_KIND:
            entry = data
        else:
            models = data["models"]
            named = [m for m in models if m.get("name") == model_name]
            entry = named[0] if named else models[0]
            lat = entry.get("latency") or []
            entry = {**entry, "latency_median_ms": lat[0]["median_ms"] if lat else None,
                     "batch_size": lat[0]["batch_size"] if lat else None}
        missing = [k for k in ("name", "macs", "params") if k not in entry]
    except (KeyError, TypeError, IndexError, AttributeError):
        missing = ["a list of models"]
    if missing:
        raise ArtifactError(f"{path} is a ghostcli file but lacks {', '.join(missing)}: not a usable baseline")

    def num(key: str, cast: type[int | float], required: bool = False) -> Any:
        value = entry.get(key)
        if value is None and not required:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ArtifactError(f"baseline {path}: {key!r} must be a finite non-negative number, got {value!r}")
        return cast(value)

    ref = entry.get("latency_reference")
    return BaselineEntry(
        name=str(entry["name"]), macs=num("macs", int, True), params=num("params", int, True),
        weight_bytes=num("weight_bytes", int), latency_median_ms=num("latency_median_ms", float),
        latency_reference=None if ref is None else str(ref), latency_ratio=num("latency_ratio", float),
        batch_size=num("batch_size", int),
    )


def baseline_dict(entry: BaselineEntry, *, input_size: list[int], environment: Environment) -> dict[str, Any]:
    """The JSON written by ``--update-baseline``."""
    from ghostcli.render import to_jsonable

    return {"schema_version": SCHEMA_VERSION, "kind": BASELINE_KIND,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "input_size": input_size, **to_jsonable(entry), "environment": to_jsonable(environment)}


# ---------------------------------------------------------------- the check

def _fmt(value: float, unit: str) -> str:
    return {"MAC": format_macs, "params": format_count, "bytes": format_bytes, "ms": format_ms}.get(
        unit, lambda v: f"{v:.3f}x")(value)


def run_check(settings: CheckSettings, *, load: Callable[[str], LoadedModel],
              update_baseline: bool = False) -> CheckReport:
    """Measure the model, compare against every limit, and (optionally) rewrite the baseline.

    ``load`` turns the settings' MODEL names into loaded models (the CLI passes ``resolve_model``).

    Returns the report; the caller decides the exit code (3 when ``report.passed`` is False).
    """
    from ghostcli.analysis.profile import profile_models
    from ghostcli.fsutil import check_output, write_text_atomic
    from ghostcli.usercode import stdout_to_stderr

    if not settings.model:
        raise UsageError("no MODEL given (pass it, or set 'model' in ghostcli.toml / [tool.ghostcli])")
    limits = [settings.max_macs, settings.max_params, settings.max_weights, settings.max_latency_ms,
              settings.max_latency_ratio]
    if all(v is None for v in limits) and settings.baseline is None:
        raise UsageError("nothing to check: give --max-macs, --max-params, --max-latency-ms or --baseline "
                         "(or set them in ghostcli.toml / [tool.ghostcli])")
    if update_baseline and settings.baseline is None:
        raise UsageError("--update-baseline needs --baseline FILE")
    if "tolerance" in settings.sources and settings.baseline is None:
        raise UsageError("--tolerance is the growth allowed over a baseline: give --baseline FILE "
                         "(limits such as --max-macs are exact)")
    base = None
    if settings.baseline is not None:
        if update_baseline:  # refuse an unwritable path before minutes of measuring, not after
            check_output(settings.baseline, force=True)
        else:
            base = read_baseline(settings.baseline, settings.model)

    timed = settings.needs_latency or (update_baseline and settings.latency_reference is not None)
    specs = [settings.model] + ([settings.latency_reference] if timed and settings.latency_reference else [])
    with stdout_to_stderr():  # the models' own prints must not corrupt --json
        report = profile_models([load(spec) for spec in specs], input_size=settings.input_size,
                                batch_sizes=[settings.batch_size],
                                device=settings.device, threads=settings.threads, warmup=settings.warmup,
                                runs=settings.runs, latency=timed, memory=False,
                                channels_last=settings.channels_last)
    prof = report.models[0]
    median = prof.latency[0].median_ms if prof.latency else None
    ratio = report.comparisons[0].latency_ratio if report.comparisons else None
    ratio = 1.0 / ratio if ratio else None  # comparisons are against the first model: invert to model / reference
    measured = {"macs": prof.macs, "params": prof.params, "weight_bytes": prof.weight_bytes,
                "latency_median_ms": median, "latency_ratio": ratio}

    results: list[LimitResult] = []

    def add(name: str, value: float | None, limit: float | None, unit: str, source: str, detail: str = "") -> None:
        if limit is None or value is None:
            return
        results.append(LimitResult(name, float(value), float(limit), unit, value <= limit + 1e-9, source, detail))

    src = settings.sources
    add("macs", prof.macs, settings.max_macs, "MAC", src.get("max-macs", ""))
    add("params", prof.params, settings.max_params, "params", src.get("max-params", ""))
    add("weights", prof.weight_bytes, settings.max_weights, "bytes", src.get("max-weights", ""))
    add("latency_ms", median, settings.max_latency_ms, "ms", src.get("max-latency-ms", ""),
        "absolute time: varies with the machine and its load")
    if settings.max_latency_ratio is not None:
        add("latency_ratio", ratio, settings.max_latency_ratio, "x", src.get("max-latency-ratio", ""),
            f"median vs {settings.latency_reference}, timed interleaved in this run")
    if base is not None:
        tol = settings.tolerance
        label = f"baseline {settings.baseline} +{tol * 100:g}%"
        add("macs", prof.macs, base.macs * (1 + tol), "MAC", label, f"baseline {_fmt(base.macs, 'MAC')}")
        add("params", prof.params, base.params * (1 + tol), "params", label,
            f"baseline {_fmt(base.params, 'params')}")
        if settings.latency_tolerance is not None:
            lt = settings.latency_tolerance
            llabel = f"baseline {settings.baseline} +{lt * 100:g}%"
            same_reference = base.latency_reference == settings.latency_reference
            if base.latency_ratio is not None and ratio is not None and same_reference:
                add("latency_ratio", ratio, base.latency_ratio * (1 + lt), "x", llabel,
                    f"vs {settings.latency_reference} in the same run; baseline ratio {base.latency_ratio:.3f}")
            elif base.latency_median_ms is not None and median is not None:
                add("latency_ms", median, base.latency_median_ms * (1 + lt), "ms", llabel,
                    f"absolute, baseline {_fmt(base.latency_median_ms, 'ms')} from another run: "
                    "flaky on shared runners")
            else:
                raise ArtifactError(f"baseline {settings.baseline} records no latency to compare against "
                                    "(re-create it with --update-baseline and a latency option)")

    updated = False
    if update_baseline and settings.baseline is not None:
        entry = BaselineEntry(name=prof.name, macs=prof.macs, params=prof.params, weight_bytes=prof.weight_bytes,
                              latency_median_ms=median, latency_reference=settings.latency_reference if ratio else None,
                              latency_ratio=ratio, batch_size=settings.batch_size)
        text = json.dumps(baseline_dict(entry, input_size=prof.input_size, environment=report.environment), indent=2)
        write_text_atomic(settings.baseline, text + "\n")
        updated = True

    return CheckReport(
        model=prof.name, input_size=prof.input_size, batch_size=settings.batch_size,
        passed=all(r.passed for r in results), results=results, measured=measured,
        environment=report.environment, baseline=str(settings.baseline) if settings.baseline else None,
        baseline_updated=updated, config=str(settings.config_path) if settings.config_path else None,
        conditions=report.conditions if timed else None,
    )


def format_value(value: float, unit: str) -> str:
    """Human form of a measured value or limit."""
    return _fmt(value, unit)
