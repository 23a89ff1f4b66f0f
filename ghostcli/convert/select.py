"""Layer selection: ``include`` / ``exclude`` globs, the stem rule, layers inside existing Ghost modules."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping


def matches(name: str, pattern: str) -> bool:
    """True when ``name`` matches the glob ``pattern`` or lies inside a module that does (``layer1`` -> ``layer1.*``)."""
    return fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(name, pattern + ".*")


def first_match(name: str, patterns: Iterable[str]) -> str | None:
    """The first of ``patterns`` that ``name`` matches, or None."""
    return next((p for p in patterns if matches(name, p)), None)


def selection_reason(name: str, *, include: tuple[str, ...], exclude: tuple[str, ...], is_stem: bool,
                     keep_stem: bool, in_ghost: bool, ghost_class: str | None = None) -> str | None:
    """Why the options keep layer ``name`` (None when it is a candidate for conversion).

    ``in_ghost``: the layer is inside a Ghost module; ``ghost_class`` names a module of another code base
    (``timm GhostModule``), whose convs are kept just like those of ghostcli's own.
    """
    if in_ghost:
        return f"part of a Ghost module ({ghost_class})" if ghost_class else "part of a Ghost module"
    if include and first_match(name, include) is None:
        return "not matched by `include`"
    hit = first_match(name, exclude)
    if hit is not None:
        return f"excluded by `exclude` {hit}"
    if keep_stem and is_stem:
        return "stem (reads the input image)"
    return None


def enclosing_ghost(name: str, ghosts: Mapping[str, str]) -> str | None:
    """The label of the Ghost module (``ghosts``: module name -> label, ``""`` for ghostcli's) that holds ``name``."""
    return next((label for prefix, label in ghosts.items() if name.startswith(prefix + ".")), None)


def unmatched_patterns(names: list[str], patterns: Iterable[str]) -> list[str]:
    """The patterns that match none of ``names``."""
    return [p for p in patterns if not any(matches(n, p) for n in names)]
