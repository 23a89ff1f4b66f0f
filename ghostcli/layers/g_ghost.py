"""The G-Ghost stage (Han et al., "GhostNets on Heterogeneous Devices via Cheap Operations", IJCV 2022).

A stage of ``n`` residual blocks becomes: the first block at full width (``base``), the
``n - 2`` middle blocks on the first ``raw_planes`` channels only (``layers``), and the
other ``cheap_planes`` channels made cheaply from the first block's output: a 1x1 conv
(``cheap``) plus a "mix" of the globally pooled outputs of the first and every middle block
(``merge``). The two parts are concatenated and feed the stage's last block (``end``).
Only dense and grouped convolutions run, no depthwise ones. The attribute names are the
official implementation's (``g_ghost_regnet.py``), so its checkpoints load by name.
"""

from __future__ import annotations

import torch
from torch import nn


class ChannelSlice(nn.Module):
    """``x[:, start:stop]``, a parameter-free module (it prints, scripts and exports, unlike a lambda)."""

    def __init__(self, start: int, stop: int) -> None:
        super().__init__()
        if not 0 <= start < stop:
            raise ValueError(f"ChannelSlice needs 0 <= start < stop, got {start}, {stop}")
        self.start, self.stop = int(start), int(stop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, self.start:self.stop]

    def extra_repr(self) -> str:
        return f"start={self.start}, stop={self.stop}"


def mix_branch(in_channels: int, cheap_planes: int) -> nn.Sequential:
    """The "mix" of the pooled stage features: pool, 1x1 conv + BN + ReLU, 1x1 conv + BN (a 1x1 map)."""
    return nn.Sequential(
        nn.AdaptiveAvgPool2d(1),
        nn.Conv2d(in_channels, cheap_planes, kernel_size=1, bias=False),
        nn.BatchNorm2d(cheap_planes),
        nn.ReLU(inplace=True),
        nn.Conv2d(cheap_planes, cheap_planes, kernel_size=1, bias=False),
        nn.BatchNorm2d(cheap_planes),
    )


def cheap_branch(cheap_planes: int) -> nn.Sequential:
    """The cheap operation on the first block's last ``cheap_planes`` channels: 1x1 conv + BN."""
    return nn.Sequential(nn.Conv2d(cheap_planes, cheap_planes, kernel_size=1, bias=False),
                         nn.BatchNorm2d(cheap_planes))


class GGhostStage(nn.Module):
    """One G-Ghost stage: ``end(cat(layers(base(x)[:, :raw]), relu(cheap(base(x)[:, raw:]) + merge(...))))``.

    ``base`` maps the stage input to ``planes = raw_planes + cheap_planes`` channels; every
    block of ``layers`` maps ``raw_planes`` to ``raw_planes`` channels at the same resolution;
    ``end`` takes ``planes`` channels. ``merge`` and ``cheap`` default to :func:`mix_branch`
    and :func:`cheap_branch`.
    """

    def __init__(self, base: nn.Module, layers: nn.Sequential, end: nn.Module, *, raw_planes: int,
                 cheap_planes: int, merge: nn.Module | None = None, cheap: nn.Module | None = None) -> None:
        super().__init__()
        if raw_planes < 1 or cheap_planes < 1:
            raise ValueError(f"a G-Ghost stage needs raw and cheap channels, got {raw_planes} and {cheap_planes}")
        planes = raw_planes + cheap_planes
        self.raw_planes, self.cheap_planes = int(raw_planes), int(cheap_planes)
        self.base = base
        self.end = end
        self.merge = merge if merge is not None else mix_branch(planes + raw_planes * len(layers), cheap_planes)
        self.cheap = cheap if cheap is not None else cheap_branch(cheap_planes)
        self.cheap_relu = nn.ReLU(inplace=True)
        self.layers = layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x0 = self.base(x)
        features = [x0]
        e = x0[:, :self.raw_planes]
        for block in self.layers:
            e = block(e)
            features.append(e)
        m = self.merge(torch.cat(features, 1))
        c = self.cheap_relu(self.cheap(x0[:, self.raw_planes:]) + m)
        return self.end(torch.cat((e, c), 1))

    def extra_repr(self) -> str:
        return f"raw_planes={self.raw_planes}, cheap_planes={self.cheap_planes}"


__all__ = ["ChannelSlice", "GGhostStage", "cheap_branch", "mix_branch"]
