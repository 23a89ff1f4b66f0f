"""Ghost versions of the paper's CIFAR-10 baselines, built through ghostify: Ghost-ResNet-56 and Ghost-VGG-16."""

from __future__ import annotations

from torch import nn

from ghostcli.models.cifar import CIFAR_INPUT, resnet56, vgg16
from ghostcli.models.ghostified import ghostified
from ghostcli.models.registry import register_model


@register_model("ghost_resnet56", family="cifar", description="Ghost-ResNet-56 (s=2, d=3) for CIFAR-10: "
                "ghostify(resnet56)", input_size=CIFAR_INPUT, num_classes=10,
                paper={"params": 0.43e6, "macs": 63e6, "top1": 92.7})
def ghost_resnet56(num_classes: int = 10, in_chans: int = 3, ratio: int = 2, dw_kernel: int = 3) -> nn.Module:
    """ResNet-56 with every conv but the stem replaced by a Ghost module."""
    return ghostified(resnet56(num_classes, in_chans), ratio=ratio, dw_kernel=dw_kernel, input_size=(in_chans, 32, 32))


@register_model("ghost_vgg16", family="cifar", description="Ghost-VGG-16 (s=2, d=3) for CIFAR-10: ghostify(vgg16)",
                input_size=CIFAR_INPUT, num_classes=10, paper={"params": 7.7e6, "macs": 158e6, "top1": 93.7})
def ghost_vgg16(num_classes: int = 10, in_chans: int = 3, ratio: int = 2, dw_kernel: int = 3) -> nn.Module:
    """VGG-16 (BN) with every conv but the first replaced by a Ghost module."""
    return ghostified(vgg16(num_classes, in_chans), ratio=ratio, dw_kernel=dw_kernel, input_size=(in_chans, 32, 32))
