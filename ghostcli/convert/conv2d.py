"""The converter of a plain ``nn.Conv2d``, and what every converter gets and may raise.

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
from typing import Any, TypeVar

import torch
from torch import nn

from ghostcli.convert.padded_ghost import PaddedGhostModule
from ghostcli.layers import GhostModule, GhostModuleV2

_M = TypeVar("_M", bound=nn.Module)


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
    module: str = "v1"  # GhostifyOptions.module: "v1" GhostModule, "v2" GhostModuleV2
    bn: nn.modules.batchnorm._BatchNorm | None = None  # the BatchNorm fed only by this layer, or None
    bn_name: str | None = None
    absorbed_bn: bool = False  # set by the converter when the new module took over ``bn``
    inherited: list[tuple[str, str]] = field(default_factory=list)  # (tensor in new module, its source)


#: ``fn(module, ctx) -> replacement``; ``module`` is an instance of the type the converter is registered for.
Converter = Callable[[Any, ConvertContext], nn.Module]


def _copy(dst: torch.Tensor, src: torch.Tensor) -> None:
    with torch.no_grad():
        dst.copy_(src.to(dtype=dst.dtype, device=dst.device))


def _part(seq: nn.Module, index: int, cls: type[_M]) -> _M:
    part = seq[index] if isinstance(seq, nn.Sequential) else None
    if not isinstance(part, cls):
        raise TypeError(f"expected {cls.__name__} at position {index} of a Ghost module, got {type(part).__name__}")
    return part


def _pair(v: int | tuple[int, ...]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[-1]))


def convert_conv2d(conv: nn.Conv2d, ctx: ConvertContext, *, padding: tuple[int, int] | str | None = None,
                   padding_mode: str | None = None, pad: nn.Module | None = None) -> nn.Module:
    """A dense ``nn.Conv2d`` (+ its BatchNorm) -> :class:`GhostModule` with the same geometry.

    ``padding`` and ``padding_mode`` replace the conv's own for the primary conv, and ``pad`` (a module
    that pads the input before the primary conv) makes a :class:`PaddedGhostModule`: what the converters
    of convs that pad in ``forward`` need (:mod:`ghostcli.convert.same_padding`).

    With a following BatchNorm the module is primary conv -> BN -> cheap depthwise
    conv -> BN (no ReLU); its BNs take over the original BN's per-channel
    parameters (primary BN: the first ``m`` channels, cheap BN: the rest; a BN without
    affine parameters gives weight 1, bias 0) and a conv bias is folded into the BN's
    running mean. Without a BN both convs carry a bias. The primary conv inherits the
    original filters of the ``m`` channels it produces; the cheap (ghost) convs are new.

    With ``ctx.module == "v2"`` the module is a :class:`GhostModuleV2`. Its DFC branch is new; the last BN
    of that branch starts with weight 0 and bias :data:`V2_GATE_BIAS`, so the gate is the constant
    sigmoid(2) = 0.881 (gradients still reach it), and the primary conv's output is scaled by 1 / 0.881:
    the module's first ``m`` channels equal the original conv's exactly, as in the plain module.
    """
    n, s = conv.out_channels, ctx.ratio
    if conv.groups != 1:
        if conv.groups == conv.in_channels and conv.out_channels % conv.in_channels == 0:
            raise KeepLayer("depthwise conv (already cheap)")
        raise KeepLayer(f"grouped conv (groups={conv.groups})")
    if n < s:
        raise KeepLayer(f"{n} output channels < ratio {s}")
    if n < ctx.min_channels:
        raise KeepLayer(f"{n} output channels < `min_channels` {ctx.min_channels}")
    kh, kw = _pair(conv.kernel_size)
    fan_in = conv.in_channels * kh * kw
    if fan_in < ctx.min_fan_in:
        raise KeepLayer(f"fan-in {fan_in} (k*k*in) < `min_fan_in` {ctx.min_fan_in}")
    bn = ctx.bn if isinstance(ctx.bn, nn.BatchNorm2d) else None
    bias = conv.bias
    if padding is None:
        padding = conv.padding if isinstance(conv.padding, str) else _pair(conv.padding)
    kwargs: dict[str, Any] = dict(
        padding=padding, dilation=_pair(conv.dilation), padding_mode=padding_mode or conv.padding_mode,
        bias=False, norm=bn is not None,
        bn_eps=bn.eps if bn is not None else 1e-5, bn_momentum=bn.momentum if bn is not None else 0.1)
    geometry = (conv.in_channels, n, (kh, kw))
    if ctx.module == "v2" and pad is not None:
        raise KeepLayer("GhostModuleV2 has no form that pads in forward (`module` v1 converts it)")
    cls = GhostModuleV2 if ctx.module == "v2" else GhostModule
    gm = (cls(*geometry, ratio=s, dw_kernel=ctx.dw_kernel, stride=_pair(conv.stride), relu=False, **kwargs)
          if pad is None else
          PaddedGhostModule(*geometry, ratio=s, dw_kernel=ctx.dw_kernel, stride=_pair(conv.stride), relu=False,
                            pad=pad, **kwargs))
    gm = gm.to(device=conv.weight.device, dtype=conv.weight.dtype)
    m = gm.init_channels
    rest = n - m  # original channels now produced by the cheap operation
    primary = _part(gm.primary_conv, 0, nn.Conv2d)
    cheap = _part(gm.cheap_operation, 0, nn.Conv2d)
    if ctx.inherit_weights:
        _copy(primary.weight, conv.weight[:m])
        ctx.inherited.append(("primary_conv.0.weight", f"{ctx.name}.weight[:{m}]"))
    if bn is not None:
        ctx.absorbed_bn = True
        if ctx.inherit_weights:
            _absorb_bn(gm, bn, bias, ctx)
    elif ctx.inherit_weights:
        with torch.no_grad():
            if bias is not None:
                _copy(_bias(primary), bias[:m])
                _copy(_bias(cheap)[:rest], bias[m:n])
                ctx.inherited.append(("primary_conv.0.bias", f"{ctx.name}.bias[:{m}]"))
                ctx.inherited.append(("cheap_operation.0.bias", f"{ctx.name}.bias[{m}:{n}]"))
            else:  # the original conv had no bias: start the new biases at zero
                _bias(primary).zero_()
                _bias(cheap).zero_()
    if isinstance(gm, GhostModuleV2) and ctx.inherit_weights:
        _open_gate(gm)
    return gm


#: the DFC gate of a converted GhostModuleV2 starts at sigmoid(V2_GATE_BIAS)
V2_GATE_BIAS = 2.0


def _open_gate(gm: GhostModuleV2) -> None:
    """Make the DFC gate a constant and undo its scale on the primary channels (see :func:`convert_conv2d`)."""
    last = _part(gm.short_conv, 5, nn.BatchNorm2d)
    gate = torch.sigmoid(torch.tensor(V2_GATE_BIAS, dtype=torch.float64)).item()
    with torch.no_grad():
        last.weight.zero_()
        last.bias.fill_(V2_GATE_BIAS)
        primary = _part(gm.primary_conv, 0, nn.Conv2d)
        scaled = _part(gm.primary_conv, 1, nn.BatchNorm2d) if isinstance(gm.primary_conv[1], nn.BatchNorm2d) \
            else primary  # with a BN its affine parameters scale the output; without, the conv's own
        scaled.weight.div_(gate)
        if scaled.bias is not None:
            scaled.bias.div_(gate)


def _bias(conv: nn.Conv2d) -> torch.Tensor:
    if conv.bias is None:
        raise TypeError("expected a conv with a bias")
    return conv.bias


def _absorb_bn(gm: GhostModule, bn: nn.BatchNorm2d, conv_bias: torch.Tensor | None, ctx: ConvertContext) -> None:
    """Split ``bn``'s per-channel tensors over the Ghost module's two BNs; a conv bias goes into the mean."""
    n, m = gm.out_ch, gm.init_channels
    if bn.running_mean is None or bn.running_var is None:
        raise KeepLayer(f"{ctx.bn_name} has no running statistics")
    mean = bn.running_mean - conv_bias.detach() if conv_bias is not None else bn.running_mean
    var = bn.running_var
    pbn = _part(gm.primary_conv, 1, nn.BatchNorm2d)
    cbn = _part(gm.cheap_operation, 1, nn.BatchNorm2d)
    for dst, lo, hi, tag in ((pbn, 0, m, "primary_conv.1"), (cbn, m, n, "cheap_operation.1")):
        k = hi - lo
        assert dst.running_mean is not None and dst.running_var is not None  # GhostModule's BNs track stats
        _copy(dst.running_mean[:k], mean[lo:hi])
        _copy(dst.running_var[:k], var[lo:hi])
        if bn.num_batches_tracked is not None and dst.num_batches_tracked is not None:
            _copy(dst.num_batches_tracked, bn.num_batches_tracked)
        sources = ["running_var"]
        if bn.affine:  # otherwise the new BN keeps weight 1, bias 0: the same function
            _copy(dst.weight[:k], bn.weight[lo:hi])
            _copy(dst.bias[:k], bn.bias[lo:hi])
            sources = ["weight", "bias", "running_var"]
        for t in sources:
            ctx.inherited.append((f"{tag}.{t}", f"{ctx.bn_name}.{t}[{lo}:{hi}]"))
        ctx.inherited.append((f"{tag}.running_mean", f"{ctx.bn_name}.running_mean[{lo}:{hi}]"
                              + (f" - {ctx.name}.bias" if conv_bias is not None else "")))
