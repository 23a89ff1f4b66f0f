"""GhostNetV2's blocks (Tang et al., NeurIPS 2022): the Ghost module with DFC attention.

DFC ("decoupled fully connected") attention gates the Ghost module's output with long-range
information at little cost: the input is average-pooled 2x down, mixed by a 1x1 conv (the module's
primary geometry) + BN, then by a horizontal 1 x K and a vertical K x 1 depthwise conv (each + BN),
squashed by a sigmoid and up-sampled back (nearest) to multiply the Ghost output.

Attribute names are those of the official code and of timm (``short_conv``, ``ghost1``, ``conv_dw``
...), so their state dicts load strictly.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ghostcli.layers.ghost import GhostBottleneck, GhostModule, _pair

#: the bottleneck modes: ``original`` (GhostNet's module) or ``attn`` (first module with DFC attention)
V2_MODES = ("original", "attn")


def dfc_branch(in_ch: int, out_ch: int, kernel_size: int | tuple[int, int] = 1, stride: int | tuple[int, int] = 1,
               dfc_kernel: int = 5) -> nn.Sequential:
    """The DFC attention map before its gate: conv(in -> out) + BN, 1 x K depthwise + BN, K x 1 depthwise + BN.

    Index order (0..5) is the official ``short_conv``'s.
    """
    if dfc_kernel < 1 or dfc_kernel % 2 == 0:
        raise ValueError(f"`dfc_kernel` must be a positive odd integer, got {dfc_kernel!r}")
    pad = dfc_kernel // 2
    k = _pair(kernel_size)
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, k, stride, (k[0] // 2, k[1] // 2), bias=False),
        nn.BatchNorm2d(out_ch),
        nn.Conv2d(out_ch, out_ch, (1, dfc_kernel), 1, (0, pad), groups=out_ch, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.Conv2d(out_ch, out_ch, (dfc_kernel, 1), 1, (pad, 0), groups=out_ch, bias=False),
        nn.BatchNorm2d(out_ch),
    )


def dfc_gate(attention: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``out`` times sigmoid(``attention``) up-sampled (nearest) to ``out``'s height and width."""
    return out * F.interpolate(torch.sigmoid(attention), size=(out.shape[-2], out.shape[-1]), mode="nearest")


class GhostModuleV2(GhostModule):
    """A :class:`GhostModule` whose output is gated by DFC attention computed from its input.

    ``short_conv`` sees the input average-pooled 2x2 (stride 2), so the attention costs about a
    quarter of a dense branch; ``dfc_kernel`` is the length of its horizontal/vertical convs (5 in
    the paper). The primary/cheap branches are exactly :class:`GhostModule`'s (keyword options too:
    ``padding``, ``dilation``, ``norm`` ...). A map smaller than 2x2 is not pooled (the official code
    fails there).
    """

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int | tuple[int, int] = 1, ratio: int = 2,
                 dw_kernel: int = 3, stride: int | tuple[int, int] = 1, relu: bool = True, *, dfc_kernel: int = 5,
                 **ghost_options: Any) -> None:
        super().__init__(in_ch, out_ch, kernel_size, ratio, dw_kernel, stride, relu, **ghost_options)
        self.short_conv = dfc_branch(in_ch, out_ch, kernel_size, stride, dfc_kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = F.avg_pool2d(x, kernel_size=2, stride=2) if min(x.shape[-2:]) >= 2 else x
        return dfc_gate(self.short_conv(pooled), super().forward(x))

    def extra_repr(self) -> str:
        return super().extra_repr() + ", DFC attention"


class GhostBottleneckV2(GhostBottleneck):
    """GhostNetV2's bottleneck: the Ghost bottleneck whose first (expanding) module has DFC attention
    in ``attn`` mode; the second (projecting) module stays a plain :class:`GhostModule`.

    ghost1 (ReLU) -> [dw stride-2 + BN] -> [SE] -> ghost2 (no ReLU) + shortcut.
    """

    def __init__(self, in_ch: int, mid_ch: int, out_ch: int, dw_kernel_size: int = 3, stride: int = 1,
                 se_ratio: float = 0.0, mode: str = "attn") -> None:
        if mode not in V2_MODES:
            raise ValueError(f"GhostBottleneckV2 `mode` must be one of {', '.join(V2_MODES)}, got {mode!r}")
        super().__init__(in_ch, mid_ch, out_ch, dw_kernel_size, stride, se_ratio)
        self.mode = mode
        if mode == "attn":  # same place in the module tree, so state-dict keys stay timm's
            self.ghost1 = GhostModuleV2(in_ch, mid_ch, relu=True)
