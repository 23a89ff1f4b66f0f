"""Shipped converters for the ``nn.Conv2d`` subclasses that pad in ``forward`` (TensorFlow's "SAME" padding).

===========================================================  =========================================
class                                                        padding it computes
===========================================================  =========================================
``timm.layers.conv2d_same.Conv2dSame``                       "SAME" from the input's size, at each call
``efficientnet_pytorch.utils.Conv2dDynamicSamePadding``      "SAME" from the input's size, at each call
``efficientnet_pytorch.utils.Conv2dStaticSamePadding``       fixed ``static_padding`` (from ``image_size``)
``efficientnet_lite_pytorch.utils.Conv2d*SamePadding``       the same two
===========================================================  =========================================

Each becomes a Ghost module whose primary conv sees exactly the padded input the original conv saw: padding
that is the same on both sides (and, for the dynamic kind, at every input size: stride 1, or a 1x1 kernel) goes
into the primary conv's ``padding``, so the result is a plain :class:`~ghostcli.layers.GhostModule`; any other
becomes a :class:`~ghostcli.convert.padded_ghost.PaddedGhostModule` that zero-pads its input first. Weights are
inherited as :func:`~ghostcli.convert.conv2d.convert_conv2d` inherits them.

The classes are matched by their module and name (:data:`SAME_PADDING_CONVERTERS` keys), so ghostcli imports
none of those packages: a model can only contain their layers once its code loaded them.
"""

from __future__ import annotations

from torch import nn

from ghostcli.convert.conv2d import ConvertContext, Converter, KeepLayer, convert_conv2d
from ghostcli.convert.padded_ghost import SamePad2d


def _pair(v: int | tuple[int, ...] | list[int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[-1]))


def _conv_padding(conv: nn.Conv2d, name: str) -> tuple[int, int]:
    """The symmetric padding ``F.conv2d`` adds after the layer's own padding (its ``padding`` attribute)."""
    if isinstance(conv.padding, str):
        raise KeepLayer(f"{name} with padding={conv.padding!r} (not the layout the converter knows)")
    return _pair(conv.padding)


def _dynamic(conv: nn.Conv2d, ctx: ConvertContext, extra: tuple[int, int]) -> nn.Module:
    """"SAME" padding computed at each call, then ``extra`` on each side: fixed where every input size gets the
    same amount (stride 1 or a 1x1 kernel along the axis) and it splits evenly, otherwise a :class:`SamePad2d`."""
    k, s, d = _pair(conv.kernel_size), _pair(conv.stride), _pair(conv.dilation)
    totals = [(ki - 1) * di if si == 1 or ki == 1 else None for ki, si, di in zip(k, s, d)]
    if all(t is not None and t % 2 == 0 for t in totals):
        fixed = tuple(int(t) // 2 + e for t, e in zip(totals, extra) if t is not None)
        return convert_conv2d(conv, ctx, padding=(fixed[0], fixed[1]), padding_mode="zeros")
    return convert_conv2d(conv, ctx, padding=extra, padding_mode="zeros", pad=SamePad2d(k, s, d))


def convert_conv2d_same(conv: nn.Conv2d, ctx: ConvertContext) -> nn.Module:
    """timm's ``Conv2dSame``: "SAME" padding from the input's size (its ``padding`` attribute is not used)."""
    return _dynamic(conv, ctx, (0, 0))


def convert_dynamic_same_padding(conv: nn.Conv2d, ctx: ConvertContext) -> nn.Module:
    """``efficientnet_pytorch``'s (and ``efficientnet_lite_pytorch``'s) ``Conv2dDynamicSamePadding``: "SAME"
    padding from the input's size, then the conv's own ``padding`` (0 as they build it)."""
    return _dynamic(conv, ctx, _conv_padding(conv, type(conv).__name__))


def convert_static_same_padding(conv: nn.Conv2d, ctx: ConvertContext) -> nn.Module:
    """``efficientnet_pytorch``'s (and ``efficientnet_lite_pytorch``'s) ``Conv2dStaticSamePadding``: its
    ``static_padding`` (``nn.ZeroPad2d`` or an identity), then the conv's own ``padding``."""
    extra = _conv_padding(conv, type(conv).__name__)
    static = getattr(conv, "static_padding", None)
    if isinstance(static, nn.ZeroPad2d):
        left, right, top, bottom = (int(p) for p in static.padding)
    elif isinstance(static, nn.Module) and type(static).__name__ == "Identity" and not list(static.parameters()):
        left = right = top = bottom = 0
    else:
        raise KeepLayer(f"{type(conv).__name__}.static_padding is {type(static).__name__} "
                        "(not the layout the converter knows)")
    if left == right and top == bottom:
        return convert_conv2d(conv, ctx, padding=(top + extra[0], left + extra[1]), padding_mode="zeros")
    return convert_conv2d(conv, ctx, padding=extra, padding_mode="zeros",
                          pad=nn.ZeroPad2d((left, right, top, bottom)))


#: class (module + qualified name) -> converter; :data:`~ghostcli.convert.rules.DEFAULT_CONVERTERS` holds them
SAME_PADDING_CONVERTERS: dict[str, Converter] = {
    "timm.layers.conv2d_same.Conv2dSame": convert_conv2d_same,
    "timm.models.layers.conv2d_same.Conv2dSame": convert_conv2d_same,  # timm before 0.9
    **{f"{pkg}.utils.Conv2dDynamicSamePadding": convert_dynamic_same_padding
       for pkg in ("efficientnet_pytorch", "efficientnet_lite_pytorch")},
    **{f"{pkg}.utils.Conv2dStaticSamePadding": convert_static_same_padding
       for pkg in ("efficientnet_pytorch", "efficientnet_lite_pytorch")},
}

__all__ = ["SAME_PADDING_CONVERTERS", "convert_conv2d_same", "convert_dynamic_same_padding",
           "convert_static_same_padding"]
