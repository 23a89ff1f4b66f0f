"""The conversion table: layer type -> converter. Users extend it with :func:`register_converter`.

A converter is a callable ``fn(module, ctx) -> nn.Module`` that returns the
replacement for ``module`` or raises :class:`KeepLayer` with the reason the layer
stays as it is. ``ctx`` (:class:`ConvertContext`) carries the options, the
BatchNorm that directly follows the layer (which the converter may absorb by
setting ``ctx.absorbed_bn = True``) and a list in which it records the tensors it
inherited from the original layer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from ghostcli.layers import GhostModule


class KeepLayer(Exception):
    """Raised by a converter: keep this layer, for the given reason."""


@dataclass
class ConvertContext:
    """What a converter knows about the layer it converts."""

    name: str
    ratio: int
    dw_kernel: int
    min_channels: int
    inherit_weights: bool
    min_fan_in: int = 0
    bn: nn.Module | None = None  # the BatchNorm fed only by this layer, or None
    bn_name: str | None = None
    absorbed_bn: bool = False  # set by the converter when the new module took over ``bn``
    inherited: list[tuple[str, str]] = field(default_factory=list)  # (tensor in new module, its source)


Converter = Callable[[nn.Module, ConvertContext], nn.Module]

_CONVERTERS: dict[type, Converter] = {}


def register_converter(layer_type: type, fn: Converter | None = None) -> Callable[[Converter], Converter] | Converter:
    """Register ``fn`` as the converter for ``layer_type`` (usable as a decorator).

    Registering a type again replaces its converter. Subclasses of a registered
    type use the same converter only when they do not override ``forward``.
    """
    if not isinstance(layer_type, type) or not issubclass(layer_type, nn.Module):
        raise TypeError(f"register_converter needs an nn.Module subclass, got {layer_type!r}")

    def deco(f: Converter) -> Converter:
        _CONVERTERS[layer_type] = f
        return f

    return deco(fn) if fn is not None else deco


def registered_types() -> tuple[type, ...]:
    """The layer types that have a converter."""
    return tuple(_CONVERTERS)


def find_converter(module: nn.Module) -> tuple[Converter | None, str]:
    """The converter for ``module`` and, when there is none, the reason why."""
    cls = type(module)
    if cls in _CONVERTERS:
        return _CONVERTERS[cls], ""
    for base in cls.__mro__[1:]:
        if base in _CONVERTERS:
            same = all(getattr(cls, attr, None) is getattr(base, attr, None) for attr in ("forward", "_conv_forward"))
            if same:
                return _CONVERTERS[base], ""
            return None, f"{cls.__name__} overrides {base.__name__}.forward (register a converter for it)"
    if isinstance(module, nn.modules.conv._ConvTransposeNd):
        return None, "transposed conv (not replaced)"
    return None, f"no converter for {cls.__name__}"


def _copy(dst: torch.Tensor, src: torch.Tensor) -> None:
    with torch.no_grad():
        dst.copy_(src.to(dtype=dst.dtype, device=dst.device))


def convert_conv2d(conv: nn.Conv2d, ctx: ConvertContext) -> nn.Module:
    """A dense ``nn.Conv2d`` (+ its BatchNorm) -> :class:`GhostModule` with the same geometry.

    With a following BatchNorm the module is primary conv -> BN -> cheap depthwise
    conv -> BN (no ReLU); its BNs take over the original BN's per-channel
    parameters (primary BN: the first ``m`` channels, cheap BN: the rest) and a
    conv bias is folded into the BN's running mean. Without a BN both convs carry
    a bias. The primary conv inherits the original filters of the ``m`` channels
    it produces; the cheap (ghost) convs are new.
    """
    n, s = conv.out_channels, ctx.ratio
    if conv.groups != 1:
        if conv.groups == conv.in_channels and conv.out_channels % conv.in_channels == 0:
            raise KeepLayer("depthwise conv (already cheap)")
        raise KeepLayer(f"grouped conv (groups={conv.groups})")
    if n < s:
        raise KeepLayer(f"{n} output channels < ratio {s}")
    if n < ctx.min_channels:
        raise KeepLayer(f"{n} output channels < --min-channels {ctx.min_channels}")
    fan_in = conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1]
    if fan_in < ctx.min_fan_in:
        raise KeepLayer(f"fan-in {fan_in} (k*k*in) < --min-fan-in {ctx.min_fan_in}")
    bn = ctx.bn
    norm = isinstance(bn, nn.BatchNorm2d)
    has_bias = conv.bias is not None
    gm = GhostModule(
        conv.in_channels, n, conv.kernel_size, ratio=s, dw_kernel=ctx.dw_kernel, stride=conv.stride, relu=False,
        padding=conv.padding, dilation=conv.dilation, padding_mode=conv.padding_mode,
        bias=False, norm=norm,
        bn_eps=bn.eps if norm else 1e-5, bn_momentum=bn.momentum if norm else 0.1,
    ).to(device=conv.weight.device, dtype=conv.weight.dtype)
    m = gm.init_channels
    rest = n - m  # original channels now produced by the cheap operation
    primary, cheap = gm.primary_conv[0], gm.cheap_operation[0]
    if ctx.inherit_weights:
        _copy(primary.weight, conv.weight[:m])
        ctx.inherited.append(("primary_conv.0.weight", f"{ctx.name}.weight[:{m}]"))
    if norm:
        ctx.absorbed_bn = True
        if ctx.inherit_weights:
            pbn, cbn = gm.primary_conv[1], gm.cheap_operation[1]
            mean = bn.running_mean - conv.bias.detach() if has_bias else bn.running_mean  # fold the conv bias
            for dst, lo, hi, tag in ((pbn, 0, m, "primary_conv.1"), (cbn, m, n, "cheap_operation.1")):
                k = hi - lo
                _copy(dst.weight[:k], bn.weight[lo:hi])
                _copy(dst.bias[:k], bn.bias[lo:hi])
                _copy(dst.running_mean[:k], mean[lo:hi])
                _copy(dst.running_var[:k], bn.running_var[lo:hi])
                _copy(dst.num_batches_tracked, bn.num_batches_tracked)
                for t in ("weight", "bias", "running_var"):
                    ctx.inherited.append((f"{tag}.{t}", f"{ctx.bn_name}.{t}[{lo}:{hi}]"))
                ctx.inherited.append((f"{tag}.running_mean", f"{ctx.bn_name}.running_mean[{lo}:{hi}]"
                                      + (f" - {ctx.name}.bias" if has_bias else "")))
    elif ctx.inherit_weights:
        with torch.no_grad():
            if has_bias:
                _copy(primary.bias, conv.bias[:m])
                _copy(cheap.bias[:rest], conv.bias[m:n])
                ctx.inherited.append(("primary_conv.0.bias", f"{ctx.name}.bias[:{m}]"))
                ctx.inherited.append(("cheap_operation.0.bias", f"{ctx.name}.bias[{m}:{n}]"))
            else:  # the original conv had no bias: start the new biases at zero
                primary.bias.zero_()
                cheap.bias.zero_()
    return gm


register_converter(nn.Conv2d, convert_conv2d)
