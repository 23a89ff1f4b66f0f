"""The Ghost module, the Ghost bottleneck and squeeze-excite, as in GhostNet.

Attribute names follow the official implementation (``primary_conv``,
``cheap_operation``, ``ghost1``, ``conv_dw`` ...) so that official checkpoints
load with ``--weights``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal, TypeGuard

import torch
from torch import nn

_PaddingT = int | tuple[int, int] | str
_PaddingMode = Literal["zeros", "reflect", "replicate", "circular"]
_PADDING_MODES: tuple[_PaddingMode, ...] = ("zeros", "reflect", "replicate", "circular")


def make_divisible(v: float, divisor: int = 4, min_value: int | None = None) -> int:
    """Round ``v`` to the nearest multiple of ``divisor`` (at least ``divisor``),
    adding one ``divisor`` when rounding lost more than 10%."""
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def _pair(v: int | tuple[int, ...]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


class GhostModule(nn.Module):
    """``out_ch`` feature maps from ``ceil(out_ch / ratio)`` intrinsic maps plus cheap ghosts.

    primary: Conv(in -> m, ``kernel_size``, ``stride``) + BN (+ ReLU when ``relu``);
    cheap: depthwise Conv(m -> m * (ratio - 1), ``dw_kernel``, groups=m) + BN (+ ReLU);
    output: concat(primary, cheap), cut to ``out_ch`` only when ``m * ratio != out_ch``.

    ``padding``, ``dilation``, ``padding_mode`` and ``bias`` apply to the primary
    conv so that a replaced ``nn.Conv2d``'s geometry is kept exactly. With
    ``norm=False`` both convs carry a bias instead of a BatchNorm.
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel_size: int | tuple[int, int] = 1,
        ratio: int = 2,
        dw_kernel: int = 3,
        stride: int | tuple[int, int] = 1,
        relu: bool = True,
        *,
        padding: _PaddingT | None = None,
        dilation: int | tuple[int, int] = 1,
        padding_mode: str = "zeros",
        bias: bool = False,
        norm: bool = True,
        bn_eps: float = 1e-5,
        bn_momentum: float | None = 0.1,
    ) -> None:
        super().__init__()
        if isinstance(ratio, bool) or not isinstance(ratio, int):
            raise TypeError(f"`ratio` (the Ghost ratio) must be an integer >= 2, got {ratio!r}")
        if ratio < 2:
            raise ValueError(f"`ratio` (the Ghost ratio) must be an integer >= 2, got {ratio!r}")
        if isinstance(dw_kernel, bool) or not isinstance(dw_kernel, int):
            raise TypeError("`dw_kernel` (the cheap depthwise kernel) must be a positive odd integer, "
                            f"got {dw_kernel!r}")
        if dw_kernel < 1 or dw_kernel % 2 == 0:
            raise ValueError("`dw_kernel` (the cheap depthwise kernel) must be a positive odd integer, "
                             f"got {dw_kernel!r}")
        if in_ch < 1:
            raise ValueError(f"`in_ch` must be positive, got {in_ch}")
        if out_ch < ratio:
            raise ValueError(f"`out_ch` ({out_ch}) must be at least the ratio ({ratio})")
        if padding_mode not in _PADDING_MODES:
            raise ValueError(f"`padding_mode` must be one of {', '.join(_PADDING_MODES)}, got {padding_mode!r}")
        k = _pair(kernel_size)
        if padding is None:
            padding = (k[0] // 2, k[1] // 2)
        self.in_ch, self.out_ch, self.ratio, self.dw_kernel = in_ch, out_ch, ratio, dw_kernel
        self.init_channels = math.ceil(out_ch / ratio)
        self.new_channels = self.init_channels * (ratio - 1)
        self.needs_slice = self.init_channels * ratio != out_ch

        def bn(c: int) -> nn.Module:
            return nn.BatchNorm2d(c, eps=bn_eps, momentum=bn_momentum) if norm else nn.Identity()

        def act() -> nn.Module:
            return nn.ReLU(inplace=True) if relu else nn.Identity()

        self.primary_conv = nn.Sequential(
            nn.Conv2d(in_ch, self.init_channels, k, stride, padding, dilation,
                      bias=bias or not norm, padding_mode=padding_mode),
            bn(self.init_channels),
            act(),
        )
        self.cheap_operation = nn.Sequential(
            nn.Conv2d(self.init_channels, self.new_channels, dw_kernel, 1, dw_kernel // 2,
                      groups=self.init_channels, bias=not norm),
            bn(self.new_channels),
            act(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.primary_conv(x)
        x2 = self._cheap(x1)
        out = torch.cat([x1, x2], dim=1)
        if self.needs_slice:
            out = out[:, : self.out_ch]
        return out

    def _cheap(self, x1: torch.Tensor) -> torch.Tensor:
        """The cheap operation. A 1x1 depthwise conv (``dw_kernel`` 1, the paper's d = 1) runs as the per-channel
        multiply-add it is, in PyTorch and (at ratio 2) in exported graphs: PyTorch's CPU kernel for the conv is 10-100x slower
        than for a 3x3 one (0.97 ms against 0.09 ms at 64 x 56 x 56, channels_last, 1 thread, AMD EPYC with
        AVX-512), ``addcmul`` takes 0.02 ms, and OpenVINO runs ResNet-50's Ghost form 1-4% faster with Multiply/Add
        nodes than with 1x1 GroupConvolutions (most at INT8). Same weights, same result. The conv runs as a conv
        when something hooks it and inside :func:`cheap_ops_as_convs` (MAC counting)."""
        conv = self.cheap_operation[0]
        if _AS_CONVS or not _pointwise(conv):
            return self.cheap_operation(x1)
        repeat = conv.out_channels // conv.in_channels  # ratio - 1
        if repeat > 1:
            if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
                return self.cheap_operation(x1)  # the channel repeat would export as a Gather/Tile subgraph
            x1 = x1.repeat_interleave(repeat, dim=1)
        w = conv.weight.view(1, -1, 1, 1)
        y = x1 * w if conv.bias is None else torch.addcmul(conv.bias.view(1, -1, 1, 1), x1, w)
        for m in list(self.cheap_operation)[1:]:
            y = m(y)
        return y

    def extra_repr(self) -> str:
        return f"{self.in_ch} -> {self.out_ch}, ratio={self.ratio}, dw_kernel={self.dw_kernel}"


_AS_CONVS = False  # set by cheap_ops_as_convs()


@contextmanager
def cheap_ops_as_convs() -> Iterator[None]:
    """Inside the block every Ghost module runs its cheap op as the conv it is, so that a MAC counter that reads
    the traced operators (fvcore) sees the 1x1 depthwise convs' multiply-adds as convolution MACs."""
    global _AS_CONVS
    old, _AS_CONVS = _AS_CONVS, True
    try:
        yield
    finally:
        _AS_CONVS = old


def _pointwise(conv: nn.Module) -> TypeGuard[nn.Conv2d]:
    """``conv`` is a plain 1x1 depthwise ``nn.Conv2d`` (stride 1, no padding) that nothing hooks."""
    return (type(conv) is nn.Conv2d and conv.kernel_size == (1, 1) and conv.groups == conv.in_channels
            and conv.stride == (1, 1) and conv.padding == (0, 0) and conv.padding_mode == "zeros"
            and not conv._forward_hooks and not conv._forward_pre_hooks)


class SqueezeExcite(nn.Module):
    """Global pool -> 1x1 reduce (bias) -> ReLU -> 1x1 expand (bias) -> hard-sigmoid gate."""

    def __init__(self, in_ch: int, se_ratio: float = 0.25, divisor: int = 4) -> None:
        super().__init__()
        reduced = make_divisible(in_ch * se_ratio, divisor)
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.conv_reduce = nn.Conv2d(in_ch, reduced, 1, bias=True)
        self.act1 = nn.ReLU(inplace=True)
        self.conv_expand = nn.Conv2d(reduced, in_ch, 1, bias=True)
        self.gate = nn.Hardsigmoid()  # relu6(x + 3) / 6, the official hard_sigmoid

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.conv_expand(self.act1(self.conv_reduce(self.avg_pool(x))))
        return x * self.gate(s)


class GhostBottleneck(nn.Module):
    """Ghost bottleneck: ghost(ReLU) -> [dw stride-2 + BN] -> [SE] -> ghost(no ReLU) + shortcut."""

    def __init__(
        self,
        in_ch: int,
        mid_ch: int,
        out_ch: int,
        dw_kernel_size: int = 3,
        stride: int = 1,
        se_ratio: float = 0.0,
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"GhostBottleneck `stride` must be 1 or 2, got {stride}")
        pad = (dw_kernel_size - 1) // 2
        self.stride = stride
        self.ghost1 = GhostModule(in_ch, mid_ch, relu=True)
        if stride > 1:
            self.conv_dw = nn.Conv2d(mid_ch, mid_ch, dw_kernel_size, stride, pad, groups=mid_ch, bias=False)
            self.bn_dw = nn.BatchNorm2d(mid_ch)
        self.se = SqueezeExcite(mid_ch, se_ratio) if se_ratio and se_ratio > 0 else None
        self.ghost2 = GhostModule(mid_ch, out_ch, relu=False)
        if in_ch == out_ch and stride == 1:
            self.shortcut: nn.Module = nn.Sequential()
        else:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_ch, in_ch, dw_kernel_size, stride, pad, groups=in_ch, bias=False),
                nn.BatchNorm2d(in_ch),
                nn.Conv2d(in_ch, out_ch, 1, 1, 0, bias=False),
                nn.BatchNorm2d(out_ch),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x
        x = self.ghost1(x)
        if self.stride > 1:
            x = self.bn_dw(self.conv_dw(x))
        if self.se is not None:
            x = self.se(x)
        x = self.ghost2(x)
        return x + self.shortcut(residual)
