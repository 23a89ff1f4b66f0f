"""Ghost versions of the paper's baselines, built THROUGH ghostify (every dense conv but the stem, no ReLU
inside the module): Ghost-ResNet-56 and Ghost-VGG-16 for CIFAR-10, and Ghost-ResNet-50 for ImageNet."""

from __future__ import annotations

from torch import nn

from ghostcli.models.cifar import CIFAR_INPUT, resnet56, vgg16
from ghostcli.models.registry import register_model


def _ghost(model: nn.Module, ratio: int, dw_kernel: int, input_size: tuple[int, int, int]) -> nn.Module:
    from ghostcli.convert import ghostify

    return ghostify(model, ratio=ratio, dw_kernel=dw_kernel, input_size=input_size, inherit_weights=False,
                    count_macs=False)[0]  # the report is dropped: no fvcore pass


@register_model("ghost_resnet56", family="cifar", description="Ghost-ResNet-56 (s=2, d=3) for CIFAR-10: "
                "ghostify(resnet56)", input_size=CIFAR_INPUT, num_classes=10,
                paper={"params": 0.43e6, "macs": 63e6, "top1": 92.7})
def ghost_resnet56(num_classes: int = 10, in_chans: int = 3, ratio: int = 2, dw_kernel: int = 3) -> nn.Module:
    """ResNet-56 with every conv but the stem replaced by a Ghost module."""
    return _ghost(resnet56(num_classes, in_chans), ratio, dw_kernel, (in_chans, 32, 32))


@register_model("ghost_vgg16", family="cifar", description="Ghost-VGG-16 (s=2, d=3) for CIFAR-10: ghostify(vgg16)",
                input_size=CIFAR_INPUT, num_classes=10, paper={"params": 7.7e6, "macs": 158e6, "top1": 93.7})
def ghost_vgg16(num_classes: int = 10, in_chans: int = 3, ratio: int = 2, dw_kernel: int = 3) -> nn.Module:
    """VGG-16 (BN) with every conv but the first replaced by a Ghost module."""
    return _ghost(vgg16(num_classes, in_chans), ratio, dw_kernel, (in_chans, 32, 32))


@register_model("ghost_resnet50", family="ghost-resnet", description="Ghost-ResNet-50 (s=2, d=3) for ImageNet: "
                "ghostify(torchvision resnet50)", paper={"params": 13.0e6, "macs": 2.2e9, "top1": 75.0})
def ghost_resnet50(num_classes: int = 1000, ratio: int = 2, dw_kernel: int = 3) -> nn.Module:
    """torchvision ResNet-50 with every conv but the 7x7 stem replaced by a Ghost module."""
    import torchvision

    return _ghost(torchvision.models.resnet50(weights=None, num_classes=num_classes), ratio, dw_kernel, (3, 224, 224))
