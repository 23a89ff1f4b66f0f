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


def _layer_ratios(value: Any) -> tuple[tuple[str, int], ...]:
    items = value.items() if isinstance(value, dict) else (value or ())
    out = []
    for item in items:
        if not isinstance(item, (tuple, list)) or len(item) != 2 or not isinstance(item[0], str) or not item[0]:
            raise UsageError(f"`layer_ratios` must map layer names to ratios, got {item!r}")
        name, ratio = item
        if not _is_int(ratio) or ratio < 2:
            raise UsageError(f"`layer_ratios` {name}: the ratio must be an integer >= 2, got {ratio!r}")
        out.append((name, int(ratio)))
    if len({n for n, _ in out}) != len(out):
        raise UsageError("`layer_ratios` names a layer twice")
    return tuple(sorted(out))


#: what ``GhostifyOptions.module`` names: the CVPR 2020 Ghost module, or GhostNetV2's with DFC attention
GHOST_MODULES = ("v1", "v2")


DEFAULT_DW_KERNEL = 3  # the cheap depthwise kernel d (the paper's)
#: with ``--target`` and no ``--dw-kernel``, these cheap kernels are measured too (d=1: the paper's ablation)
TARGET_EXTRA_DW_KERNELS = (1,)


@dataclass(frozen=True)
class GhostifyOptions:
    """Structural options of ghostify. The same options on the same architecture give the same module tree.

    An impossible value is a :class:`~ghostcli.errors.UsageError` naming the field in backquotes
    (`` `dw_kernel` must be a positive odd integer ...``); the CLI shows its option (``--dw-kernel``).
    """

    ratio: int = 2
    dw_kernel: int = DEFAULT_DW_KERNEL
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    min_channels: int = 0
    keep_stem: bool = True
    min_fan_in: int = 0
    layer_ratios: tuple[tuple[str, int], ...] = ()  # (conv name, s): this conv's ratio instead of `ratio`
    stages: tuple[str, ...] = ()  # names of residual stages rebuilt as G-Ghost stages (before the convs)
    cheap_ratio: float = 0.5  # G-Ghost: the fraction of a stage's channels made by the cheap operations
    module: str = "v1"  # the module a conv becomes: "v1" GhostModule, "v2" GhostModuleV2 (DFC attention)

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
        object.__setattr__(self, "layer_ratios", _layer_ratios(self.layer_ratios))
        object.__setattr__(self, "stages", _patterns(self.stages, "stages"))
        if isinstance(self.cheap_ratio, bool) or not isinstance(self.cheap_ratio, (int, float)) \
                or not 0.0 < self.cheap_ratio < 1.0:
            raise UsageError(f"`cheap_ratio` must be a number between 0 and 1 (exclusive), got {self.cheap_ratio!r}")
        object.__setattr__(self, "cheap_ratio", float(self.cheap_ratio))
        if self.module not in GHOST_MODULES:
            raise UsageError(f"`module` must be one of {', '.join(GHOST_MODULES)}, got {self.module!r}")

    def ratio_of(self, name: str) -> int:
        """The ratio s of conv ``name``: its entry in ``layer_ratios``, else ``ratio``."""
        return dict(self.layer_ratios).get(name, self.ratio)

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
            "layer_ratios": {n: r for n, r in self.layer_ratios},
            "stages": list(self.stages),
            "cheap_ratio": self.cheap_ratio,
            "module": self.module,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GhostifyOptions:
        """Inverse of :meth:`to_dict` (unknown keys are an error)."""
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise UsageError(f"unknown ghostify option(s): {', '.join(unknown)}")
        return cls(**data)
