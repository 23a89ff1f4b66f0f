"""GhostNetV3 for ImageNet (Liu et al., 2024): GhostNetV2 trained with re-parameterisable branches.

The zoo builds the training form (timm's ``ghostnetv3_*`` layout: its state dicts load strictly and give
bit-identical outputs). :func:`reparameterize` folds every branch into one conv, in place, leaving
GhostNetV2's network of the same width (same MACs; fewer parameters than ``ghostnetv2_*``, as the
BNs of the Ghost modules and the stride-2 depthwise convs become conv biases); ``ghostcli export``
does it on its copy before exporting.
"""

from __future__ import annotations

from torch import nn

from ghostcli.layers.ghost_v3 import GhostBottleneckV3, has_training_branches, reparameterize
from ghostcli.models.ghostnet_v2 import FIRST_ATTENTION_BLOCK, GhostNetV2, width_namer
from ghostcli.models.registry import register_model

__all__ = ["GhostNetV3", "has_training_branches", "reparameterize"]


class GhostNetV3(GhostNetV2):
    """GhostNetV3 (training form): GhostNetV2 with :class:`GhostBottleneckV3` blocks."""

    def make_block(self, index: int, in_ch: int, mid_ch: int, out_ch: int, kernel: int, stride: int,
                   se_ratio: float) -> nn.Module:
        mode = "attn" if index >= FIRST_ATTENTION_BLOCK else "original"
        return GhostBottleneckV3(in_ch, mid_ch, out_ch, kernel, stride, se_ratio=se_ratio, mode=mode)

    def _init_weights(self) -> None:
        """PyTorch's default initialisation, as the official code and timm: GhostNetV2's fan-out Kaiming
        init, applied to every one of the summed branches, makes activations grow about 5x per Ghost module
        (a random ghostnetv3_050's logits reach 1e8 and float32 rounding no longer holds)."""


_DESC = "GhostNetV3 {w}x for ImageNet, re-parameterisable training form (Liu et al., 2024)"
_NAME = width_namer("ghostnetv3")


# Published numbers of the deployed (re-parameterized) networks, conv + linear MACs at 224x224 (the paper's
# "FLOPs"): 1.0x 6.1M / 0.17G / 77.1%, 1.3x 8.9M / 269M / 79.1%, 1.6x 12.3M / 0.40G / 80.4%. None for 0.5x.
@register_model("ghostnetv3_050", family="ghostnetv3", description=_DESC.format(w=0.5), variant_name=_NAME)
def ghostnetv3_050(num_classes: int = 1000, in_chans: int = 3, width: float = 0.5) -> GhostNetV3:
    """GhostNetV3 0.5x."""
    return GhostNetV3(num_classes=num_classes, width=width, in_chans=in_chans)


@register_model("ghostnetv3_100", family="ghostnetv3", description=_DESC.format(w=1.0),
                paper={"params": 6.1e6, "macs": 170e6, "top1": 77.1}, variant_name=_NAME)
def ghostnetv3_100(num_classes: int = 1000, in_chans: int = 3, width: float = 1.0) -> GhostNetV3:
    """GhostNetV3 1.0x."""
    return GhostNetV3(num_classes=num_classes, width=width, in_chans=in_chans)


@register_model("ghostnetv3_130", family="ghostnetv3", description=_DESC.format(w=1.3),
                paper={"params": 8.9e6, "macs": 269e6, "top1": 79.1}, variant_name=_NAME)
def ghostnetv3_130(num_classes: int = 1000, in_chans: int = 3, width: float = 1.3) -> GhostNetV3:
    """GhostNetV3 1.3x."""
    return GhostNetV3(num_classes=num_classes, width=width, in_chans=in_chans)


@register_model("ghostnetv3_160", family="ghostnetv3", description=_DESC.format(w=1.6),
                paper={"params": 12.3e6, "macs": 400e6, "top1": 80.4}, variant_name=_NAME)
def ghostnetv3_160(num_classes: int = 1000, in_chans: int = 3, width: float = 1.6) -> GhostNetV3:
    """GhostNetV3 1.6x."""
    return GhostNetV3(num_classes=num_classes, width=width, in_chans=in_chans)
