"""``check`` settings from config files and given values.

Config files: ``ghostcli.toml`` (top-level keys or a ``[check]`` table) or ``pyproject.toml``
(``[tool.ghostcli]`` or ``[tool.ghostcli.check]``), found from a folder up to the repository
root. Keys are those of :data:`~ghostcli.analysis.check_keys.CHECK_KEYS`; given values (the
command line) win over config values.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ghostcli.analysis.check_keys import CHECK_KEYS, CheckSettings
from ghostcli.errors import UsageError, one_line


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
            tool = _load_toml(py, hint=" (fix it, or pass `no_config`)").get("tool")
            if isinstance(tool, dict) and "ghostcli" in tool:
                return py
        if (folder / ".git").exists():
            break
    return None


def _load_toml(path: Path, hint: str = "") -> dict[str, Any]:
    """Parse a TOML file; a missing, unreadable or malformed one raises a usage error (``hint`` is appended)."""
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
    """The check settings of a config file as a flat dict with dashed keys; bad files raise a usage error."""
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
    return {_known(key, f"{path}: ", f" in {label}"): value for key, value in flat.items()}


def _known(key: str, before: str = "", after: str = "") -> str:
    """``key`` with dashes; an unknown key raises a usage error (a typo must not switch a limit off)."""
    k = key.replace("_", "-")
    if k not in CHECK_KEYS:
        raise UsageError(f"{before}unknown key {key!r}{after} (known: {', '.join(sorted(CHECK_KEYS))})")
    return k


def build_settings(given: Mapping[str, Any], config: Mapping[str, Any], config_path: Path | None) -> CheckSettings:
    """Merge config values with given values (which win; ``None`` means not given); parse and validate all.

    Keys are config keys (``max-macs``; ``max_macs`` too). ``sources`` records the config file's
    name for config values and the backquoted field (`` `max_macs` ``) for given ones, which the
    command line shows as its option. A relative path in a config file is relative to it.
    """
    s = CheckSettings(config_path=config_path)
    label = config_path.name if config_path else "config"
    merged: dict[str, tuple[Any, str, str, bool]] = {}  # key -> (value, source, what, from config)
    for key, value in config.items():
        k = _known(key)
        merged[k] = (value, label, f"{label} {k}", True)
    for key, value in given.items():
        if value is not None:
            k = _known(key)
            what = f"`{CHECK_KEYS[k].field}`"
            merged[k] = (value, what, what, False)
    for key, (value, source, what, from_config) in merged.items():
        spec = CHECK_KEYS[key]
        try:
            parsed = spec.parse(value, what)
        except UsageError as exc:
            msg = str(exc)
            raise UsageError(msg if msg.startswith(what) else f"{what}: {msg}") from None
        if isinstance(parsed, Path) and from_config and config_path is not None and not parsed.is_absolute():
            parsed = config_path.parent / parsed
        setattr(s, spec.field, parsed)
        s.sources[key] = source
    if s.max_latency_ratio is not None and not s.latency_reference:
        raise UsageError("`max_latency_ratio` needs `latency_reference` MODEL (timed in the same run)")
    if s.latency_tolerance is not None and s.baseline is None:
        raise UsageError("`latency_tolerance` compares against a baseline: give `baseline` FILE")
    return s
