"""Ghost-ResNet-50 for ImageNet (GhostNet paper, Table 5), built through ghostify from torchvision's ResNet-50."""

from __future__ import annotations

from torch import nn

from ghostcli.models.ghostified import ghostified
from ghostcli.models.registry import register_model


@register_model("ghost_resnet50", family="ghost-resnet", description="Ghost-ResNet-50 (s=2, d=3) for ImageNet: "
                "ghostify(torchvision resnet50)", paper={"params": 13.0e6, "macs": 2.2e9, "top1": 75.0})
def ghost_resnet50(num_classes: int = 1000, ratio: int = 2, dw_kernel: int = 3) -> nn.Module:
    """torchvision ResNet-50 with every conv but the 7x7 stem replaced by a Ghost module."""
    import torchvision

    return ghostified(torchvision.models.resnet50(weights=None, num_classes=num_classes), ratio=ratio,
                      dw_kernel=dw_kernel, input_size=(3, 224, 224))
