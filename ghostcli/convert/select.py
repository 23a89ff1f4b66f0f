"""Layer selection: ``include`` / ``exclude`` globs, the stem rule, layers inside existing Ghost modules."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable


def matches(name: str, pattern: str) -> bool:
    """True when ``name`` matches the glob ``pattern`` or lies inside a module that does (``layer1`` -> ``layer1.*``)."""
    return fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(name, pattern + ".*")


def first_match(name: str, patterns: Iterable[str]) -> str | None:
    """The first of ``patterns`` that ``name`` matches, or None."""
    return next((p for p in patterns if matches(name, p)), None)


def selection_reason(name: str, *, include: tuple[str, ...], exclude: tuple[str, ...], is_stem: bool,
                     keep_stem: bool, in_ghost: bool) -> str | None:
    """Why the options keep layer ``name`` (None when it is a candidate for conversion)."""
    if in_ghost:
        return "part of a Ghost module"
    if include and first_match(name, include) is None:
        return "not matched by `include`"
    hit = first_match(name, exclude)
    if hit is not None:
        return f"excluded by `exclude` {hit}"
    if keep_stem and is_stem:
        return "stem (reads the input image)"
    return None


def unmatched_patterns(names: list[str], patterns: Iterable[str]) -> list[str]:
    """The patterns that match none of ``names``."""
    return [p for p in patterns if not any(matches(n, p) for n in names)]
