"""GhostNet for ImageNet (Han et al., CVPR 2020), exactly as the paper and official code."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ghostcli.layers import GhostBottleneck, make_divisible
from ghostcli.models.registry import register_model

# Rows per stage: [kernel, expansion, out, se_ratio, stride]
GHOSTNET_CFG: list[list[list[float]]] = [
    [[3, 16, 16, 0, 1]],
    [[3, 48, 24, 0, 2]],
    [[3, 72, 24, 0, 1]],
    [[5, 72, 40, 0.25, 2]],
    [[5, 120, 40, 0.25, 1]],
    [[3, 240, 80, 0, 2]],
    [[3, 200, 80, 0, 1], [3, 184, 80, 0, 1], [3, 184, 80, 0, 1], [3, 480, 112, 0.25, 1], [3, 672, 112, 0.25, 1]],
    [[5, 672, 160, 0.25, 2]],
    [[5, 960, 160, 0, 1], [5, 960, 160, 0.25, 1], [5, 960, 160, 0, 1], [5, 960, 160, 0.25, 1]],
]


class ConvBnAct(nn.Module):
    """Conv + BN + ReLU (the official ``ConvBnAct``)."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel_size, stride, kernel_size // 2, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.act1 = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act1(self.bn1(self.conv(x)))


#: what the official GhostNetV3 code calls the BN of a training-time branch (``_conv_bn``: ``conv`` + ``bn``);
#: timm and ghostcli call it ``bn1``
_OFFICIAL_BRANCH_BN = re.compile(r"(_rpr_(?:conv\.\d+|scale))\.bn\.")
#: counters thop's ``profile`` leaves in a state dict (some published checkpoints carry them)
_PROFILER_COUNTERS = ("total_ops", "total_params")


def adapt_ghostnet_state_dict(state: Mapping[str, Any]) -> dict[str, Any]:
    """A GhostNet V1/V2/V3 checkpoint in the official (Huawei) layout -> ghostcli's, which is timm's.

    V1 and V2 share the names already; GhostNetV3's branches are ``..._rpr_conv.N.bn.*`` /
    ``..._rpr_scale.bn.*`` there and ``.bn1.*`` here; thop's ``total_ops`` / ``total_params`` counters
    are dropped. A state dict already in ghostcli's layout comes back unchanged.
    """
    return {_OFFICIAL_BRANCH_BN.sub(r"\1.bn1.", k): v for k, v in state.items()
            if k.rsplit(".", 1)[-1] not in _PROFILER_COUNTERS}


class GhostNet(nn.Module):
    """GhostNet: stem, 16 Ghost bottlenecks, 1x1 conv, pool, 1280-channel head, classifier."""

    #: ``--weights`` files are passed through this first (the official checkpoints' layout)
    adapt_state_dict = staticmethod(adapt_ghostnet_state_dict)

    def __init__(self, num_classes: int = 1000, width: float = 1.0, in_chans: int = 3,
                 dropout: float = 0.2, head_channels: int = 1280) -> None:
        super().__init__()
        if width <= 0:
            raise ValueError(f"`width` must be positive, got {width}")
        if num_classes < 1:
            raise ValueError(f"`num_classes` must be positive, got {num_classes}")
        if in_chans < 1:
            raise ValueError(f"`in_chans` must be positive, got {in_chans}")
        self.num_classes, self.width = num_classes, width
        out = make_divisible(16 * width, 4)
        self.conv_stem = nn.Conv2d(in_chans, out, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out)
        self.act1 = nn.ReLU(inplace=True)
        in_ch = out
        stages: list[nn.Module] = []
        last_exp = 16.0
        for stage in GHOSTNET_CFG:
            layers = []
            for k, last_exp, c, se, s in stage:
                out = make_divisible(c * width, 4)
                mid = make_divisible(last_exp * width, 4)
                layers.append(GhostBottleneck(in_ch, mid, out, int(k), int(s), se_ratio=se))
                in_ch = out
            stages.append(nn.Sequential(*layers))
        out = make_divisible(last_exp * width, 4)
        stages.append(nn.Sequential(ConvBnAct(in_ch, out, 1)))
        self.blocks = nn.Sequential(*stages)
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.conv_head = nn.Conv2d(out, head_channels, 1, 1, 0, bias=True)
        self.act2 = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(head_channels, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.bn1(self.conv_stem(x)))
        x = self.blocks(x)
        x = self.act2(self.conv_head(self.global_pool(x)))
        x = self.dropout(torch.flatten(x, 1))
        return self.classifier(x)


_DESC = "GhostNet {w}x for ImageNet (Han et al., CVPR 2020)"


def width_name(options: dict[str, Any]) -> str | None:
    """The zoo name of a GhostNet built with ``options["width"]``: ``ghostnet_130`` for 1.3 (timm's names);
    ``ghostnet_1.25x``-style when the width is not a whole percentage. None without a width."""
    width = options.get("width")
    if width is None:
        return None
    pct = float(width) * 100
    return f"ghostnet_{round(pct):03d}" if abs(pct - round(pct)) < 1e-6 else f"ghostnet_{float(width):g}x"


@register_model("ghostnet_050", family="ghostnet", description=_DESC.format(w=0.5),
                paper={"params": 2.6e6, "macs": 42e6, "top1": 66.2}, variant_name=width_name)
def ghostnet_050(num_classes: int = 1000, in_chans: int = 3, width: float = 0.5) -> GhostNet:
    """GhostNet 0.5x."""
    return GhostNet(num_classes=num_classes, width=width, in_chans=in_chans)


@register_model("ghostnet_100", family="ghostnet", description=_DESC.format(w=1.0),
                paper={"params": 5.2e6, "macs": 141e6, "top1": 73.9}, variant_name=width_name)
def ghostnet_100(num_classes: int = 1000, in_chans: int = 3, width: float = 1.0) -> GhostNet:
    """GhostNet 1.0x."""
    return GhostNet(num_classes=num_classes, width=width, in_chans=in_chans)


@register_model("ghostnet_130", family="ghostnet", description=_DESC.format(w=1.3),
                paper={"params": 7.3e6, "macs": 226e6, "top1": 75.7}, variant_name=width_name)
def ghostnet_130(num_classes: int = 1000, in_chans: int = 3, width: float = 1.3) -> GhostNet:
    """GhostNet 1.3x."""
    return GhostNet(num_classes=num_classes, width=width, in_chans=in_chans)
