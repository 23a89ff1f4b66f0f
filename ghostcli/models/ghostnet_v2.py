"""GhostNetV2 for ImageNet (Tang et al., NeurIPS 2022): GhostNet with DFC attention.

The network is GhostNet's (same stem, bottleneck table, 1x1 conv, 1280-channel head); from the
third bottleneck on, the first Ghost module of every bottleneck carries DFC attention (the
official code's ``attn`` mode). Layer names are timm's ``ghostnetv2_*`` names, so its state dicts
load strictly and give the same outputs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ghostcli.layers import GhostBottleneckV2, make_divisible
from ghostcli.models.ghostnet import GHOSTNET_CFG, ConvBnAct, adapt_ghostnet_state_dict
from ghostcli.models.registry import register_model

#: bottlenecks before this index keep GhostNet's plain module (as in the official code and timm)
FIRST_ATTENTION_BLOCK = 2


class GhostNetV2(nn.Module):
    """GhostNetV2: stem, 16 bottlenecks (DFC attention from the third), 1x1 conv, pool, 1280-channel head.

    Subclasses change the bottleneck through :meth:`make_block`; everything else is shared.
    """

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
        in_ch, index, last_exp = out, 0, 16.0
        stages: list[nn.Module] = []
        for stage in GHOSTNET_CFG:
            layers = []
            for k, last_exp, c, se, s in stage:
                out = make_divisible(c * width, 4)
                mid = make_divisible(last_exp * width, 4)
                layers.append(self.make_block(index, in_ch, mid, out, int(k), int(s), se))
                in_ch, index = out, index + 1
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

    def make_block(self, index: int, in_ch: int, mid_ch: int, out_ch: int, kernel: int, stride: int,
                   se_ratio: float) -> nn.Module:
        """Bottleneck number ``index`` (0-based, over the whole network)."""
        mode = "attn" if index >= FIRST_ATTENTION_BLOCK else "original"
        return GhostBottleneckV2(in_ch, mid_ch, out_ch, kernel, stride, se_ratio=se_ratio, mode=mode)

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


def width_namer(prefix: str) -> Callable[[dict[str, Any]], str | None]:
    """``options -> name`` for a width family: ``{prefix}_130`` for width 1.3 (timm's names), ``{prefix}_1.25x``
    when the width is not a whole percentage, None without a width."""

    def name(options: dict[str, Any]) -> str | None:
        width = options.get("width")
        if width is None:
            return None
        pct = float(width) * 100
        return f"{prefix}_{round(pct):03d}" if abs(pct - round(pct)) < 1e-6 else f"{prefix}_{float(width):g}x"

    return name


_DESC = "GhostNetV2 {w}x for ImageNet, DFC attention (Tang et al., NeurIPS 2022)"
_NAME = width_namer("ghostnetv2")


# Published numbers (MACs of conv + linear layers at 224x224, which the papers call FLOPs): 1.0x from the
# GhostNetV2 paper (6.1M params, 167M MACs, 75.3% top-1). The authors' readme shows the 1.3x/1.6x results
# as an image only; their params and MACs are the GhostNetV3 paper's for the same network after
# re-parameterization (8.9M / 269M, 12.3M / 0.40G). No top-1 is given where we could not read one.
@register_model("ghostnetv2_100", family="ghostnetv2", description=_DESC.format(w=1.0),
                paper={"params": 6.1e6, "macs": 167e6, "top1": 75.3}, variant_name=_NAME)
def ghostnetv2_100(num_classes: int = 1000, in_chans: int = 3, width: float = 1.0) -> GhostNetV2:
    """GhostNetV2 1.0x."""
    return GhostNetV2(num_classes=num_classes, width=width, in_chans=in_chans)


@register_model("ghostnetv2_130", family="ghostnetv2", description=_DESC.format(w=1.3),
                paper={"params": 8.9e6, "macs": 269e6}, variant_name=_NAME)
def ghostnetv2_130(num_classes: int = 1000, in_chans: int = 3, width: float = 1.3) -> GhostNetV2:
    """GhostNetV2 1.3x."""
    return GhostNetV2(num_classes=num_classes, width=width, in_chans=in_chans)


@register_model("ghostnetv2_160", family="ghostnetv2", description=_DESC.format(w=1.6),
                paper={"params": 12.3e6, "macs": 400e6}, variant_name=_NAME)
def ghostnetv2_160(num_classes: int = 1000, in_chans: int = 3, width: float = 1.6) -> GhostNetV2:
    """GhostNetV2 1.6x."""
    return GhostNetV2(num_classes=num_classes, width=width, in_chans=in_chans)
