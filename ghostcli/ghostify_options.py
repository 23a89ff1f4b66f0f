"""The options of a ghostify run: what ``artifacts.rebuild`` passes back to re-create the same network."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ghostcli.errors import UsageError


def _patterns(value: Any, option: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = (value,)
    out = tuple(str(v).strip() for v in value)
    if any(not p for p in out):
        raise UsageError(f"`{option}` patterns must not be empty")
    return out


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@dataclass(frozen=True)
class GhostifyOptions:
    """Structural options of ghostify. The same options on the same architecture give the same module tree.

    An impossible value is a :class:`~ghostcli.errors.UsageError` naming the field in backquotes
    (`` `dw_kernel` must be a positive odd integer ...``); the CLI shows its option (``--dw-kernel``).
    """

    ratio: int = 2
    dw_kernel: int = 3
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    min_channels: int = 0
    keep_stem: bool = True
    min_fan_in: int = 0

    def __post_init__(self) -> None:
        if not _is_int(self.ratio) or self.ratio < 2:
            raise UsageError(f"`ratio` must be an integer >= 2, got {self.ratio!r}")
        if not _is_int(self.dw_kernel) or self.dw_kernel < 1 or self.dw_kernel % 2 == 0:
            raise UsageError(f"`dw_kernel` must be a positive odd integer (1, 3, 5 ...), got {self.dw_kernel!r}")
        if not _is_int(self.min_channels) or self.min_channels < 0:
            raise UsageError(f"`min_channels` must be a non-negative integer, got {self.min_channels!r}")
        if not _is_int(self.min_fan_in) or self.min_fan_in < 0:
            raise UsageError(f"`min_fan_in` must be a non-negative integer, got {self.min_fan_in!r}")
        object.__setattr__(self, "include", _patterns(self.include, "include"))
        object.__setattr__(self, "exclude", _patterns(self.exclude, "exclude"))
        object.__setattr__(self, "keep_stem", bool(self.keep_stem))

    def to_dict(self) -> dict[str, Any]:
        """The keyword arguments ``ghostify`` needs to rebuild the same structure (plain JSON types)."""
        return {
            "ratio": self.ratio,
            "dw_kernel": self.dw_kernel,
            "include": list(self.include),
            "exclude": list(self.exclude),
            "min_channels": self.min_channels,
            "min_fan_in": self.min_fan_in,
            "keep_stem": self.keep_stem,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GhostifyOptions:
        """Inverse of :meth:`to_dict` (unknown keys are an error)."""
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise UsageError(f"unknown ghostify option(s): {', '.join(unknown)}")
        return cls(**data)
