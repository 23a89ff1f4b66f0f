"""A Ghost module whose input is zero-padded first, for convs whose padding ``nn.Conv2d.padding`` cannot hold.

TensorFlow's "SAME" padding (timm's ``Conv2dSame``, ``efficientnet_pytorch``'s ``Conv2d*SamePadding``) pads
one pixel more at the bottom/right than at the top/left when the total is odd, and the dynamic kind computes the
amount from the input's height and width at every call. :class:`PaddedGhostModule` puts that padding (a
``nn.ZeroPad2d`` for a fixed amount, :class:`SamePad2d` for the dynamic kind) before the primary conv; the rest
is exactly a :class:`~ghostcli.layers.GhostModule` (the same parameters and state-dict keys: a pad has none).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from ghostcli.layers import GhostModule


def same_padding(size: int, kernel: int, stride: int, dilation: int) -> int:
    """Total zero padding of TensorFlow's "SAME" along one axis of ``size`` pixels: the output has
    ``ceil(size / stride)`` pixels (0 when none is needed)."""
    out = -(-size // stride)
    return max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)


def pad_same(x: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int],
             dilation: tuple[int, int]) -> torch.Tensor:
    """``x`` zero-padded for a "SAME" conv: half of each axis's total before, the rest (one more when odd) after."""
    ph = same_padding(int(x.shape[-2]), kernel[0], stride[0], dilation[0])
    pw = same_padding(int(x.shape[-1]), kernel[1], stride[1], dilation[1])
    if ph == 0 and pw == 0:
        return x
    return F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])


torch.fx.wrap("pad_same")  # one call in torch.fx traces (its amounts depend on the input's size)


class SamePad2d(nn.Module):
    """Zero padding for a conv with TensorFlow's "SAME" padding, computed from the input's size at each call."""

    def __init__(self, kernel_size: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int]) -> None:
        super().__init__()
        self.kernel_size, self.stride, self.dilation = tuple(kernel_size), tuple(stride), tuple(dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pad_same(x, self.kernel_size, self.stride, self.dilation)  # type: ignore[arg-type]

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, dilation={self.dilation}"


class PaddedGhostModule(GhostModule):
    """A :class:`~ghostcli.layers.GhostModule` that zero-pads its input with ``pad`` before the primary conv.

    Takes :class:`GhostModule`'s arguments (``padding`` is then what the primary conv adds on each side, usually 0)
    plus ``pad``: ``nn.ZeroPad2d((left, right, top, bottom))`` or :class:`SamePad2d`.
    """

    def __init__(self, *args: Any, pad: nn.Module, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(self.pad(x))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, input padded by {type(self.pad).__name__}"
