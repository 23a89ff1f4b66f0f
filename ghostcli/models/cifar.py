"""The CIFAR-10 baselines of the GhostNet paper: ResNet-56 and VGG-16 (32x32 inputs)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ghostcli.convert.stage import register_stage_block
from ghostcli.models.registry import register_model

CIFAR_INPUT = (3, 32, 32)


class BasicBlock(nn.Module):
    """ResNet basic block with the parameter-free "option A" shortcut of He et al. for CIFAR."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.stride = stride
        self.pad = out_ch - in_ch

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1 and self.pad == 0:
            return x
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


# its shortcut is the identity unless the block changes stride or width (then the first of a stage)
register_stage_block(BasicBlock, (("conv1", "bn1"), ("conv2", "bn2")))


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for CIFAR: 3 stages of 16/32/64 channels."""

    def __init__(self, depth: int = 56, num_classes: int = 10, in_chans: int = 3) -> None:
        super().__init__()
        if (depth - 2) % 6 != 0 or depth < 8:
            raise ValueError(f"CIFAR ResNet `depth` must be 6n+2 (20, 32, 44, 56, 110 ...), got {depth}")
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_chans, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        layers, in_ch = [], 16
        for i, ch in enumerate((16, 32, 64)):
            blocks = []
            for j in range(n):
                blocks.append(BasicBlock(in_ch, ch, 2 if (i > 0 and j == 0) else 1))
                in_ch = ch
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = layers
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


VGG16_CFG: list[int | str] = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


class CifarVGG(nn.Module):
    """VGG-16 with BatchNorm for 32x32 inputs and a single linear classifier."""

    def __init__(self, num_classes: int = 10, in_chans: int = 3, cfg: list[int | str] | None = None) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_chans
        for v in cfg or VGG16_CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c, int(v), 3, padding=1, bias=False), nn.BatchNorm2d(int(v)), nn.ReLU(inplace=True)]
                c = int(v)
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


@register_model("resnet56", family="cifar", description="ResNet-56 for CIFAR-10 (He et al.), the paper's baseline",
                input_size=CIFAR_INPUT, num_classes=10, paper={"params": 0.85e6, "macs": 125e6, "top1": 93.0})
def resnet56(num_classes: int = 10, in_chans: int = 3) -> CifarResNet:
    """ResNet-56 for 32x32 inputs."""
    return CifarResNet(56, num_classes, in_chans)


@register_model("resnet20", family="cifar", description="ResNet-20 for CIFAR-10 (He et al.), a small fast baseline",
                input_size=CIFAR_INPUT, num_classes=10)
def resnet20(num_classes: int = 10, in_chans: int = 3) -> CifarResNet:
    """ResNet-20 for 32x32 inputs (used by the quick training tests)."""
    return CifarResNet(20, num_classes, in_chans)


@register_model("vgg16", family="cifar", description="VGG-16 with BN for CIFAR-10, the paper's baseline",
                input_size=CIFAR_INPUT, num_classes=10, paper={"params": 15.0e6, "macs": 313e6, "top1": 93.6})
def vgg16(num_classes: int = 10, in_chans: int = 3) -> CifarVGG:
    """VGG-16 (BN) for 32x32 inputs."""
    return CifarVGG(num_classes, in_chans)
