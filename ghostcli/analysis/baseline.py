"""The baseline file of ``check``: what one model measured, as versioned JSON (docs/output.md).

Written by ``check --update-baseline``; a ``profile --json`` file is read as a baseline too.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ghostcli.analysis.report import PROFILE_KIND, SCHEMA_VERSION, Environment
from ghostcli.errors import ArtifactError, one_line

BASELINE_KIND = "ghostcli.baseline"


class BaselineError(ArtifactError):
    """A baseline file that is missing, malformed or does not fit this check (exit 1)."""


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
    input_size: list[int] | None = None  # None in files that do not record it


def read_baseline(path: Path, model_name: str | None = None) -> BaselineEntry:
    """Read a baseline (or a ``profile --json`` file: the model named ``model_name``, else the first).

    Missing or malformed files raise :class:`BaselineError`.
    """
    if path.is_dir():
        raise BaselineError(f"baseline {path} is a directory, expected a JSON file")
    if not path.is_file():
        raise BaselineError(f"baseline file {path} does not exist (create it with `update_baseline`)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise BaselineError(f"cannot read baseline {path}: {exc.strerror or one_line(exc)}") from None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise BaselineError(f"baseline {path} is not JSON (expected a file written by "
                            "'ghostcli check `update_baseline`')") from None
    kind = data.get("kind") if isinstance(data, dict) else None
    if kind not in (BASELINE_KIND, PROFILE_KIND):
        raise BaselineError(f"{path} is not a ghostcli baseline (no kind {BASELINE_KIND!r}); "
                            "write one with 'ghostcli check `model` `baseline` FILE `update_baseline`'")
    major = str(data.get("schema_version", "")).split(".")[0]
    if major != SCHEMA_VERSION.split(".")[0]:
        raise BaselineError(f"{path} has schema version {data.get('schema_version')!r}; this ghostcli reads "
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
        raise BaselineError(f"{path} is a ghostcli file but lacks {', '.join(missing)}: not a usable baseline")

    def num(key: str, cast: type[int | float], required: bool = False) -> Any:
        value = entry.get(key)
        if value is None and not required:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise BaselineError(f"baseline {path}: {key!r} must be a finite non-negative number, got {value!r}")
        return cast(value)

    ref = entry.get("latency_reference")
    return BaselineEntry(
        name=str(entry["name"]), macs=num("macs", int, True), params=num("params", int, True),
        weight_bytes=num("weight_bytes", int), latency_median_ms=num("latency_median_ms", float),
        latency_reference=None if ref is None else str(ref), latency_ratio=num("latency_ratio", float),
        batch_size=num("batch_size", int), input_size=_input_size(entry.get("input_size"), path),
    )


def _input_size(value: Any, path: Path) -> list[int] | None:
    """A recorded ``[C, H, W]``; absent is None, anything else but three positive integers is an error."""
    if value is None:
        return None
    if (not isinstance(value, list) or len(value) != 3
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)):
        raise BaselineError(f"baseline {path}: 'input_size' must be three positive integers [C, H, W], got {value!r}")
    return list(value)


def baseline_dict(entry: BaselineEntry, *, environment: Environment) -> dict[str, Any]:
    """The JSON written by ``--update-baseline``."""
    from ghostcli.render import to_jsonable

    return {"schema_version": SCHEMA_VERSION, "kind": BASELINE_KIND,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "input_size": entry.input_size, **to_jsonable(entry), "environment": to_jsonable(environment)}


def write_baseline(path: Path, entry: BaselineEntry, *, environment: Environment) -> None:
    """Write ``entry`` to ``path`` atomically (replacing it)."""
    from ghostcli.fsutil import write_text_atomic

    write_text_atomic(path, json.dumps(baseline_dict(entry, environment=environment), indent=2) + "\n")
