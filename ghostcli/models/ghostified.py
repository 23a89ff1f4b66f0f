"""The zoo's Ghost versions of plain baselines are built THROUGH ghostify, with its defaults."""

from __future__ import annotations

from torch import nn


def ghostified(model: nn.Module, *, ratio: int, dw_kernel: int, input_size: tuple[int, int, int]) -> nn.Module:
    """``model`` with every dense conv but the stem replaced by a Ghost module (random cheap convs).

    No MACs are counted (no fvcore pass); ``input_size`` only checks that the output shape is kept.
    """
    from ghostcli.convert import GhostifyOptions, ghostify

    return ghostify(model, GhostifyOptions(ratio=ratio, dw_kernel=dw_kernel), input_size=input_size,
                    inherit_weights=False, count_macs=False)[0]
