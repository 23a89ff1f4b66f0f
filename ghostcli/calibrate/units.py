"""What calibration fits: the units of a ghostified model and the original layers they must reproduce.

A unit is a :class:`~ghostcli.layers.GhostModule` that replaced an original conv (with the BatchNorm it absorbed
and the ReLU moved inside, when it was), or a :class:`~ghostcli.layers.GGhostStage` that replaced an original stage.
Units are found by name, so any pair (original, ghostified) works: the ghostify report is not needed, and a saved
ghostified artifact can be calibrated against its original later.

Each unit keeps a private, frozen copy of the original layer (``reference``): the conv -> BN (-> ReLU) it replaced
or the original stage. Calibration permutes the copy's channels together with the model's (``ghostcli.calibrate.
readers``), so that ``unit.module(x)`` and ``unit.reference(x)`` always compute the same channels in the same order.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ghostcli.fx import conv_bn_pairs
from ghostcli.layers import GGhostStage, GhostModule


@dataclass
class Unit:
    """One Ghost module or G-Ghost stage and the original layer it replaced."""

    name: str
    kind: str  # "ghost" | "stage"
    module: nn.Module  # in the ghostified model
    reference: nn.Module  # frozen copy of the original: Sequential(conv, bn | Identity, ReLU | Identity), or the stage
    original_input: str  # the original model's module whose input is this unit's input (for inputs="original")
    original_output: str  # the original model's module whose output is the target (the BN, the conv, the stage)
    activated: bool = False  # a ReLU is inside the Ghost module (and at the end of ``reference``)
    in_perm: torch.Tensor | None = None  # the unit's input holds original channel in_perm[q] at position q
    out_perm: torch.Tensor | None = None  # the unit's output holds original channel out_perm[q] at position q
    notes: list[str] = field(default_factory=list)

    @property
    def ghost(self) -> GhostModule:
        assert isinstance(self.module, GhostModule)
        return self.module

    @property
    def ref_conv(self) -> nn.Conv2d:
        assert isinstance(self.reference, nn.Sequential)
        conv = self.reference[0]
        assert isinstance(conv, nn.Conv2d)
        return conv

    @property
    def ref_bn(self) -> nn.BatchNorm2d | None:
        assert isinstance(self.reference, nn.Sequential)
        bn = self.reference[1]
        return bn if isinstance(bn, nn.BatchNorm2d) else None

    def target(self, y: torch.Tensor) -> torch.Tensor:
        """What the unit's output must match, from the original's output at ``original_output`` (the BN's,
        before the ReLU the Ghost module took inside): in the unit's channel order, activated like the unit."""
        if self.out_perm is not None:
            y = y[:, self.out_perm]
        return torch.relu(y) if self.activated else y


def _frozen(module: nn.Module) -> nn.Module:
    ref = copy.deepcopy(module).eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    return ref


def find_units(original: nn.Module, ghosted: nn.Module, example: torch.Tensor) -> tuple[list[Unit], list[str]]:
    """The units of ``ghosted`` in the order the forward pass reaches them (run once on ``example``), and notes on
    Ghost modules that are left alone (no original conv of the same name and shape, called more than once)."""
    named_o = dict(original.named_modules())
    named_g = dict(ghosted.named_modules())
    pairs = conv_bn_pairs(original).bn_after
    units: list[Unit] = []
    notes: list[str] = []
    for name, m in named_g.items():
        old = named_o.get(name)
        if isinstance(m, GhostModule):
            if not isinstance(old, nn.Conv2d) or old.groups != 1 or old.out_channels != m.out_ch \
                    or old.in_channels != m.in_ch:
                notes.append(f"{name}: a Ghost module with no original conv of its shape (left as it is)")
                continue
            bn_name = pairs.get(name)
            bn = named_o.get(bn_name) if bn_name else None
            norm = isinstance(m.primary_conv[1], nn.BatchNorm2d)
            if norm != (isinstance(bn, nn.BatchNorm2d) and isinstance(named_g.get(bn_name or ""), nn.Identity)):
                notes.append(f"{name}: its BatchNorm does not match the original's (left as it is)")
                continue
            activated = isinstance(m.primary_conv[2], nn.ReLU)
            reference = nn.Sequential(_frozen(old), _frozen(bn) if norm and bn is not None else nn.Identity(),
                                      nn.ReLU() if activated else nn.Identity())
            units.append(Unit(name, "ghost", m, reference, original_input=name,
                              original_output=bn_name if norm and bn_name else name, activated=activated))
        elif isinstance(m, GGhostStage) and old is not None and not isinstance(old, GGhostStage):
            units.append(Unit(name, "stage", m, _frozen(old), original_input=name, original_output=name))
    order = _call_order(ghosted, [u.module for u in units], example)
    ordered = []
    for u in units:
        calls = order.get(id(u.module))
        if calls is None:
            notes.append(f"{u.name}: not reached by the forward pass (left as it is)")
        elif calls[1] > 1:
            notes.append(f"{u.name}: called {calls[1]} times per forward pass (left as it is)")
        else:
            ordered.append((calls[0], u))
    return [u for _, u in sorted(ordered, key=lambda t: t[0])], notes


def _call_order(model: nn.Module, modules: list[nn.Module], example: torch.Tensor) -> dict[int, list[int]]:
    """id(module) -> [position of its first call, number of calls] in one forward pass."""
    seen: dict[int, list[int]] = {}
    handles = []

    def hook(mod: nn.Module, args: Any) -> None:
        entry = seen.setdefault(id(mod), [len(seen), 0])
        entry[1] += 1

    for m in modules:
        handles.append(m.register_forward_pre_hook(hook))
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in handles:
            h.remove()
    return seen
