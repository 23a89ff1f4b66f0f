"""G-Ghost RegNet for ImageNet (Han et al., "GhostNets on Heterogeneous Devices via Cheap Operations", IJCV 2022).

A RegNetX (residual bottlenecks with grouped 3x3 convs, expansion 1) whose long stages are
G-Ghost stages (:class:`ghostcli.layers.GGhostStage`): the third stage always, the second and
fourth when they hold more than two blocks. Module and parameter names follow the official
``g_ghost_pytorch/g_ghost_regnet.py`` of huawei-noah/Efficient-AI-Backbones, so its released
checkpoints load with ``load_state_dict(strict=True)``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ghostcli.layers import ChannelSlice, GGhostStage
from ghostcli.models.registry import register_model

STEM_CHANNELS = 32
#: the share of a G-Ghost stage's channels made by the cheap branch
CHEAP_RATIO = 0.5
#: the middle blocks of a G-Ghost stage use this fraction of the network's group width
MIDDLE_GROUP_SCALE = 0.75


def _conv1x1(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size=1, stride=stride, bias=False)


def _projection(in_ch: int, out_ch: int, stride: int) -> nn.Sequential:
    """The residual shortcut of a block that changes shape: 1x1 conv (with the block's stride) + BN."""
    return nn.Sequential(_conv1x1(in_ch, out_ch, stride), nn.BatchNorm2d(out_ch))


class Bottleneck(nn.Module):
    """RegNetX block: 1x1 conv, grouped 3x3 conv (``group_width`` channels a group), 1x1 conv, each with BN;
    ReLU after the first two and after the residual sum. Expansion 1: every conv has ``planes`` outputs."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 group_width: int = 1) -> None:
        super().__init__()
        if group_width < 1:
            raise ValueError(f"`group_width` must be positive, got {group_width}")
        width = planes * self.expansion
        groups = width // min(width, group_width)
        if width % groups:
            raise ValueError(f"a block of {width} channels cannot be split into groups of {group_width}")
        self.conv1 = _conv1x1(inplanes, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, kernel_size=3, stride=stride, padding=1, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = _conv1x1(width, planes)
        self.bn3 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = self.downsample(x) if self.downsample is not None else x
        return self.relu(out + identity)


def g_ghost_stage(inplanes: int, planes: int, blocks: int, group_width: int, stride: int = 2,
                  cheap_ratio: float = CHEAP_RATIO) -> GGhostStage:
    """A G-Ghost stage of ``blocks`` (>= 3) bottlenecks, built as the official ``Stage``.

    ``base`` and ``end`` are full-width blocks with ``group_width``; the ``blocks - 2`` middle blocks run on
    ``raw_planes`` channels with 3/4 of the group width, ``raw_planes`` being ``(1 - cheap_ratio) * planes``
    rounded down to a multiple of that group width; the other ``cheap_planes`` come from the cheap branch.
    """
    if blocks < 3:
        raise ValueError(f"a G-Ghost stage needs at least 3 blocks, got {blocks}")
    base = Bottleneck(inplanes, planes, stride, _projection(inplanes, planes, stride), group_width)
    end = Bottleneck(planes, planes, group_width=group_width)
    middle_group = int(group_width * MIDDLE_GROUP_SCALE)
    if middle_group < 1:
        raise ValueError(f"`group_width` {group_width} leaves no group width for a G-Ghost stage's middle blocks")
    raw_planes = int(planes * (1 - cheap_ratio) / middle_group) * middle_group
    cheap_planes = planes - raw_planes
    if raw_planes < 1 or cheap_planes < 1:
        raise ValueError(f"a G-Ghost stage of {planes} channels with `cheap_ratio` {cheap_ratio} and middle group "
                         f"width {middle_group} has {raw_planes} raw and {cheap_planes} cheap channels")
    # The first middle block's shortcut is the official one, a (here no-op) slice to the raw channels.
    middle = [Bottleneck(raw_planes, raw_planes, 1, nn.Sequential(ChannelSlice(0, raw_planes)), middle_group)]
    middle += [Bottleneck(raw_planes, raw_planes, group_width=middle_group) for _ in range(blocks - 3)]
    return GGhostStage(base, nn.Sequential(*middle), end, raw_planes=raw_planes, cheap_planes=cheap_planes)


def plain_stage(inplanes: int, planes: int, blocks: int, group_width: int, stride: int = 2) -> nn.Sequential:
    """A RegNetX stage of ``blocks`` bottlenecks, the first one strided (the official ``_make_layer``)."""
    shortcut = _projection(inplanes, planes, stride) if stride != 1 or inplanes != planes else None
    layers = [Bottleneck(inplanes, planes, stride, shortcut, group_width)]
    layers += [Bottleneck(planes, planes, group_width=group_width) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


class GGhostRegNet(nn.Module):
    """G-Ghost RegNetX: 3x3/2 stem to 32 channels, four stages of stride 2, pool, dropout 0.2, classifier.

    ``depths`` and ``widths`` give each stage's block count and channels. ``layer3`` is always a G-Ghost
    stage; ``layer2`` and ``layer4`` are one when they hold more than two blocks, ``layer1`` never.
    """

    def __init__(self, depths: tuple[int, int, int, int], widths: tuple[int, int, int, int], group_width: int,
                 num_classes: int = 1000, in_chans: int = 3, dropout: float = 0.2) -> None:
        super().__init__()
        if len(depths) != 4 or len(widths) != 4:
            raise ValueError(f"`depths` and `widths` need 4 stages each, got {len(depths)} and {len(widths)}")
        if min(depths) < 1 or min(widths) < 1:
            raise ValueError(f"stage depths and widths must be positive, got {list(depths)} and {list(widths)}")
        if depths[2] < 3:
            raise ValueError(f"the third stage is a G-Ghost stage and needs at least 3 blocks, got {depths[2]}")
        if num_classes < 1:
            raise ValueError(f"`num_classes` must be positive, got {num_classes}")
        if in_chans < 1:
            raise ValueError(f"`in_chans` must be positive, got {in_chans}")
        self.depths, self.widths, self.group_width = tuple(depths), tuple(widths), group_width
        self.conv1 = nn.Conv2d(in_chans, STEM_CHANNELS, kernel_size=3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(STEM_CHANNELS)
        self.relu = nn.ReLU(inplace=True)
        ins = (STEM_CHANNELS, *widths[:3])

        def stage(i: int) -> nn.Module:
            if i == 2 or (i in (1, 3) and depths[i] > 2):
                return g_ghost_stage(ins[i], widths[i], depths[i], group_width)
            return plain_stage(ins[i], widths[i], depths[i], group_width)

        self.layer1, self.layer2, self.layer3, self.layer4 = (stage(i) for i in range(4))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(widths[3] * Bottleneck.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(self.dropout(x))


# name -> (depths, widths, group width, RegNetX size in the description), as the official builders.
G_GHOST_REGNET_CFG: dict[str, tuple[tuple[int, int, int, int], tuple[int, int, int, int], int, str]] = {
    "g_ghost_regnetx_002": ((1, 1, 4, 7), (24, 56, 152, 368), 8, "200MF"),
    "g_ghost_regnetx_004": ((1, 2, 7, 12), (32, 64, 160, 384), 16, "400MF"),
    "g_ghost_regnetx_006": ((1, 3, 5, 7), (48, 96, 240, 528), 24, "600MF"),
    "g_ghost_regnetx_008": ((1, 3, 7, 5), (64, 128, 288, 672), 16, "800MF"),
    "g_ghost_regnetx_016": ((2, 4, 10, 2), (72, 168, 408, 912), 24, "1.6GF"),
    "g_ghost_regnetx_032": ((2, 6, 15, 2), (96, 192, 432, 1008), 48, "3.2GF"),
    "g_ghost_regnetx_040": ((2, 5, 14, 2), (80, 240, 560, 1360), 40, "4.0GF"),
    "g_ghost_regnetx_064": ((2, 4, 10, 1), (168, 392, 784, 1624), 56, "6.4GF"),
    "g_ghost_regnetx_080": ((2, 5, 15, 1), (80, 240, 720, 1920), 120, "8.0GF"),
    "g_ghost_regnetx_120": ((2, 5, 11, 1), (224, 448, 896, 2240), 112, "12GF"),
    "g_ghost_regnetx_160": ((2, 6, 13, 1), (256, 512, 896, 2048), 128, "16GF"),
    "g_ghost_regnetx_320": ((2, 7, 13, 1), (336, 672, 1344, 2520), 168, "32GF"),
}

# What the official readme publishes (its "FLOPs" are multiply-adds); the other eight have no published numbers.
_PAPER: dict[str, dict[str, float]] = {
    "g_ghost_regnetx_032": {"params": 10.5e6, "macs": 1.8e9, "top1": 77.8},
    "g_ghost_regnetx_040": {"params": 15.7e6, "macs": 2.2e9, "top1": 78.6},
    "g_ghost_regnetx_080": {"params": 24.6e6, "macs": 4.2e9, "top1": 79.0},
    "g_ghost_regnetx_160": {"params": 32.4e6, "macs": 9.0e9, "top1": 79.9},
}


def g_ghost_regnet(name: str, num_classes: int = 1000, in_chans: int = 3) -> GGhostRegNet:
    """Build the G-Ghost RegNet variant ``name`` (a key of :data:`G_GHOST_REGNET_CFG`)."""
    depths, widths, group_width, _ = G_GHOST_REGNET_CFG[name]
    return GGhostRegNet(depths, widths, group_width, num_classes=num_classes, in_chans=in_chans)


def _zoo(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register variant ``name`` in family ``g-ghost-regnet``, with the readme's numbers where it has them."""
    size = G_GHOST_REGNET_CFG[name][3]
    return register_model(name, family="g-ghost-regnet", paper=_PAPER.get(name),
                          description=f"G-Ghost RegNetX-{size} for ImageNet (Han et al., IJCV 2022)")


@_zoo("g_ghost_regnetx_002")
def g_ghost_regnetx_002(num_classes: int = 1000, in_chans: int = 3) -> GGhostRegNet:
    """G-Ghost RegNetX-200MF (the official ``g_ghost_regnetx_002``)."""
    return g_ghost_regnet("g_ghost_regnetx_002", num_classes=num_classes, in_chans=in_chans)


@_zoo("g_ghost_regnetx_004")
def g_ghost_regnetx_004(num_classes: int = 1000, in_chans: int = 3) -> GGhostRegNet:
    """G-Ghost RegNetX-400MF (the official ``g_ghost_regnetx_004``)."""
    return g_ghost_regnet("g_ghost_regnetx_004", num_classes=num_classes, in_chans=in_chans)


@_zoo("g_ghost_regnetx_006")
def g_ghost_regnetx_006(num_classes: int = 1000, in_chans: int = 3) -> GGhostRegNet:
    """G-Ghost RegNetX-600MF (the official ``g_ghost_regnetx_006``)."""
    return g_ghost_regnet("g_ghost_regnetx_006", num_classes=num_classes, in_chans=in_chans)


@_zoo("g_ghost_regnetx_008")
def g_ghost_regnetx_008(num_classes: int = 1000, in_chans: int = 3) -> GGhostRegNet:
    """G-Ghost RegNetX-800MF (the official ``g_ghost_regnetx_008``)."""
    return g_ghost_regnet("g_ghost_regnetx_008", num_classes=num_classes, in_chans=in_chans)


@_zoo("g_ghost_regnetx_016")
def g_ghost_regnetx_016(num_classes: int = 1000, in_chans: int = 3) -> GGhostRegNet:
    """G-Ghost RegNetX-1.6GF (the official ``g_ghost_regnetx_016``)."""
    return g_ghost_regnet("g_ghost_regnetx_016", num_classes=num_classes, in_chans=in_chans)


@_zoo("g_ghost_regnetx_032")
def g_ghost_regnetx_032(num_classes: int = 1000, in_chans: int = 3) -> GGhostRegNet:
    """G-Ghost RegNetX-3.2GF (the official ``g_ghost_regnetx_032``)."""
    return g_ghost_regnet("g_ghost_regnetx_032", num_classes=num_classes, in_chans=in_chans)


@_zoo("g_ghost_regnetx_040")
def g_ghost_regnetx_040(num_classes: int = 1000, in_chans: int = 3) -> GGhostRegNet:
    """G-Ghost RegNetX-4.0GF (the official ``g_ghost_regnetx_040``)."""
    return g_ghost_regnet("g_ghost_regnetx_040", num_classes=num_classes, in_chans=in_chans)


@_zoo("g_ghost_regnetx_064")
def g_ghost_regnetx_064(num_classes: int = 1000, in_chans: int = 3) -> GGhostRegNet:
    """G-Ghost RegNetX-6.4GF (the official ``g_ghost_regnetx_064``)."""
    return g_ghost_regnet("g_ghost_regnetx_064", num_classes=num_classes, in_chans=in_chans)


@_zoo("g_ghost_regnetx_080")
def g_ghost_regnetx_080(num_classes: int = 1000, in_chans: int = 3) -> GGhostRegNet:
    """G-Ghost RegNetX-8.0GF (the official ``g_ghost_regnetx_080``)."""
    return g_ghost_regnet("g_ghost_regnetx_080", num_classes=num_classes, in_chans=in_chans)


@_zoo("g_ghost_regnetx_120")
def g_ghost_regnetx_120(num_classes: int = 1000, in_chans: int = 3) -> GGhostRegNet:
    """G-Ghost RegNetX-12GF (the official ``g_ghost_regnetx_120``)."""
    return g_ghost_regnet("g_ghost_regnetx_120", num_classes=num_classes, in_chans=in_chans)


@_zoo("g_ghost_regnetx_160")
def g_ghost_regnetx_160(num_classes: int = 1000, in_chans: int = 3) -> GGhostRegNet:
    """G-Ghost RegNetX-16GF (the official ``g_ghost_regnetx_160``)."""
    return g_ghost_regnet("g_ghost_regnetx_160", num_classes=num_classes, in_chans=in_chans)


@_zoo("g_ghost_regnetx_320")
def g_ghost_regnetx_320(num_classes: int = 1000, in_chans: int = 3) -> GGhostRegNet:
    """G-Ghost RegNetX-32GF (the official ``g_ghost_regnetx_320``)."""
    return g_ghost_regnet("g_ghost_regnetx_320", num_classes=num_classes, in_chans=in_chans)


__all__ = ["Bottleneck", "G_GHOST_REGNET_CFG", "GGhostRegNet", "g_ghost_regnet", "g_ghost_stage", "plain_stage",
           *G_GHOST_REGNET_CFG]
