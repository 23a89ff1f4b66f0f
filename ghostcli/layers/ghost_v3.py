"""GhostNetV3's blocks (Liu et al., 2024): re-parameterisable training-time branches.

During training every conv of the Ghost module and of the stride-2 depthwise conv is a sum of
parallel branches: ``num_branches`` convs of the same shape, each + BN; the cheap (depthwise) op adds
a 1x1 "scale" conv + BN and a BN-only identity ("skip") branch; the stride-2 depthwise conv adds a
1x1 scale branch. All of them are linear until the activation, so :func:`reparameterize` folds them
exactly into one conv with a bias, and the deployed network is GhostNetV2's of the same width
(DFC attention on the first module from the third bottleneck on).

Attribute names are timm's (``primary_rpr_conv``, ``cheap_rpr_scale``, ``dw_rpr_conv``, ``bn1`` ...), so
its ``ghostnetv3_*`` state dicts load strictly; after :func:`reparameterize` the names are timm's deployed
ones (``primary_conv.0``, ``cheap_operation.0``, ``conv_dw``). The official code calls the attention mode
``shortcut``; here it is ``attn``, as in GhostNetV2.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from ghostcli.layers.ghost import GhostModule, SqueezeExcite
from ghostcli.layers.ghost_v2 import V2_MODES, dfc_branch, dfc_gate

DEFAULT_BRANCHES = 3  # parallel convs per re-parameterisable op, as in the paper's models


class ConvBn(nn.Module):
    """Conv (no bias) + BN, padding ``kernel_size // 2``: one training-time branch (timm's ``ConvBnAct``
    without activation; same parameter names)."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, stride: int = 1, groups: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel_size, stride, kernel_size // 2, groups=groups, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn1(self.conv(x))


def _bn_scale_shift(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode BN as ``x * scale + shift``, in float64."""
    assert bn.running_mean is not None and bn.running_var is not None, "BN without running statistics"
    scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
    return scale, bn.bias.double() - bn.running_mean.double() * scale


def fold_branches(convs: Iterable[nn.Module], scale: ConvBn | None = None, skip: nn.BatchNorm2d | None = None) -> nn.Conv2d:
    """One conv (with bias) equal, in eval mode, to ``sum(convs) + scale + skip`` on the same input.

    ``convs`` share one geometry (the result's); ``scale`` is a 1x1 conv + BN of the same stride and
    groups, zero-padded to the kernel's centre; ``skip`` is a BN of the input (identity kernel, needs
    as many output as input channels). Sums are taken in float64 and cast once.
    """
    items = list(convs)
    branches = [b for b in items if isinstance(b, ConvBn)]
    if not branches or len(branches) != len(items):
        raise ValueError("fold_branches needs at least one conv branch, each a ConvBn")
    ref = branches[0].conv
    weight = ref.weight
    kh, kw = ref.kernel_size
    kernel = torch.zeros(weight.shape, dtype=torch.float64, device=weight.device)
    bias = torch.zeros(ref.out_channels, dtype=torch.float64, device=weight.device)
    with torch.no_grad():
        for branch in branches:
            if branch.conv.weight.shape != weight.shape:
                raise ValueError(f"branches differ in shape: {tuple(branch.conv.weight.shape)} vs {tuple(weight.shape)}")
            s, b = _bn_scale_shift(branch.bn1)
            kernel += branch.conv.weight.double() * s.view(-1, 1, 1, 1)
            bias += b
        if scale is not None:
            sh, sw = scale.conv.kernel_size
            s, b = _bn_scale_shift(scale.bn1)
            w = scale.conv.weight.double() * s.view(-1, 1, 1, 1)
            kernel += F.pad(w, [(kw - sw) // 2, (kw - sw) // 2, (kh - sh) // 2, (kh - sh) // 2])
            bias += b
        if skip is not None:
            in_per_group = ref.in_channels // ref.groups
            if ref.out_channels != ref.in_channels:
                raise ValueError("an identity branch needs as many output as input channels")
            s, b = _bn_scale_shift(skip)
            identity = torch.zeros_like(kernel)
            rows = torch.arange(ref.out_channels, device=weight.device)
            identity[rows, rows % in_per_group, kh // 2, kw // 2] = 1.0
            kernel += identity * s.view(-1, 1, 1, 1)
            bias += b
    padding = ref.padding if isinstance(ref.padding, str) else (int(ref.padding[0]), int(ref.padding[1]))
    conv = nn.Conv2d(ref.in_channels, ref.out_channels, (kh, kw), (int(ref.stride[0]), int(ref.stride[1])), padding,
                     (int(ref.dilation[0]), int(ref.dilation[1])), ref.groups, bias=True, device=weight.device,
                     dtype=weight.dtype)
    with torch.no_grad():
        conv.weight.copy_(kernel.to(weight.dtype))
        assert conv.bias is not None
        conv.bias.copy_(bias.to(weight.dtype))
    return conv


class GhostModuleV3(GhostModule):
    """A Ghost module whose primary conv and cheap depthwise conv are sums of training-time branches.

    primary = ReLU?(sum of ``num_branches`` conv k x k + BN);
    cheap = ReLU?(sum of ``num_branches`` depthwise d x d + BN, + depthwise 1x1 + BN, + BN(primary));
    output = concat(primary, cheap) [cut to ``out_ch``], gated by DFC attention in ``attn`` mode.
    After :meth:`reparameterize` it is exactly a :class:`GhostModule` (conv with bias in place of conv +
    BN), with GhostNetV2's DFC attention in ``attn`` mode.

    It is a :class:`GhostModule` (ghostify and the profiles treat it as one), but builds its own
    branches: ``primary_conv`` and ``cheap_operation`` are empty (identities) until it is re-parameterised.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 1, ratio: int = 2, dw_kernel: int = 3,
                 stride: int = 1, relu: bool = True, *, mode: str = "original",
                 num_branches: int = DEFAULT_BRANCHES) -> None:
        nn.Module.__init__(self)  # GhostModule's own branches are not built: these replace them
        if mode not in V2_MODES:
            raise ValueError(f"GhostModuleV3 `mode` must be one of {', '.join(V2_MODES)}, got {mode!r}")
        if isinstance(ratio, bool) or not isinstance(ratio, int) or ratio < 2:
            raise ValueError(f"`ratio` (the Ghost ratio) must be an integer >= 2, got {ratio!r}")
        if out_ch < ratio or in_ch < 1:
            raise ValueError(f"`in_ch` ({in_ch}) must be positive and `out_ch` ({out_ch}) at least the ratio ({ratio})")
        if num_branches < 1:
            raise ValueError(f"`num_branches` must be at least 1, got {num_branches}")
        self.in_ch, self.out_ch, self.ratio, self.dw_kernel = in_ch, out_ch, ratio, dw_kernel
        self.init_channels = init = math.ceil(out_ch / ratio)
        self.new_channels = new = init * (ratio - 1)
        self.needs_slice = init * ratio != out_ch
        self.mode, self.num_branches, self.infer_mode = mode, num_branches, False

        def act() -> nn.Module:
            return nn.ReLU(inplace=True) if relu else nn.Identity()

        self.primary_conv = nn.Sequential()  # empty: the identity, until reparameterize() fills it
        self.cheap_operation = nn.Sequential()
        self.primary_rpr_conv = nn.ModuleList(ConvBn(in_ch, init, kernel_size, stride) for _ in range(num_branches))
        self.primary_activation = act()
        self.cheap_rpr_skip = nn.BatchNorm2d(init) if new == init else None
        self.cheap_rpr_conv = nn.ModuleList(ConvBn(init, new, dw_kernel, groups=init) for _ in range(num_branches))
        self.cheap_rpr_scale = ConvBn(init, new, 1, groups=init)
        self.cheap_activation = act()
        self.short_conv = dfc_branch(in_ch, out_ch, kernel_size, stride) if mode == "attn" else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.infer_mode:
            out = super().forward(x)
        else:  # branch sums in timm's order, so that its checkpoints give bit-identical outputs
            x1 = self.primary_rpr_conv[0](x)
            for branch in self.primary_rpr_conv[1:]:
                x1 = x1 + branch(x)
            x1 = self.primary_activation(x1)
            x2 = self.cheap_rpr_scale(x1)
            if self.cheap_rpr_skip is not None:
                x2 = x2 + self.cheap_rpr_skip(x1)
            for branch in self.cheap_rpr_conv:
                x2 = x2 + branch(x1)
            out = torch.cat([x1, self.cheap_activation(x2)], dim=1)
            if self.needs_slice:
                out = out[:, : self.out_ch]
        if self.short_conv is None:
            return out
        return dfc_gate(self.short_conv(F.avg_pool2d(x, kernel_size=2, stride=2)), out)

    @torch.no_grad()
    def reparameterize(self) -> None:
        """Fold the branches (eval-mode BN) into ``primary_conv`` / ``cheap_operation``: conv with bias + activation."""
        if self.infer_mode:
            return
        primary = fold_branches(self.primary_rpr_conv)
        cheap = fold_branches(self.cheap_rpr_conv, self.cheap_rpr_scale, self.cheap_rpr_skip)
        self.primary_conv = nn.Sequential(primary, self.primary_activation)
        self.cheap_operation = nn.Sequential(cheap, self.cheap_activation)
        del self.primary_rpr_conv, self.cheap_rpr_conv, self.cheap_rpr_scale, self.cheap_rpr_skip
        self.infer_mode = True

    def extra_repr(self) -> str:
        form = "re-parameterized" if self.infer_mode else f"{self.num_branches} branches"
        return super().extra_repr() + f", {form}" + (", DFC attention" if self.short_conv is not None else "")


class GhostBottleneckV3(nn.Module):
    """GhostNetV3's bottleneck: GhostNetV2's, with re-parameterisable Ghost modules and stride-2 depthwise conv.

    ghost1 (ReLU; DFC attention in ``attn`` mode) -> [stride 2: sum of ``num_branches`` depthwise k x k + BN
    and a depthwise 1x1 + BN] -> [SE] -> ghost2 (no ReLU, no attention) + shortcut.
    """

    def __init__(self, in_ch: int, mid_ch: int, out_ch: int, dw_kernel_size: int = 3, stride: int = 1,
                 se_ratio: float = 0.0, mode: str = "attn", num_branches: int = DEFAULT_BRANCHES) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"GhostBottleneckV3 `stride` must be 1 or 2, got {stride}")
        pad = (dw_kernel_size - 1) // 2
        self.stride, self.infer_mode = stride, False
        self.ghost1 = GhostModuleV3(in_ch, mid_ch, relu=True, mode=mode, num_branches=num_branches)
        self.conv_dw: nn.Module = nn.Identity()
        self.bn_dw: nn.Module = nn.Identity()
        self.dw_rpr_conv = nn.ModuleList()
        self.dw_rpr_scale: ConvBn | None = None
        if stride > 1:
            self.dw_rpr_conv.extend(ConvBn(mid_ch, mid_ch, dw_kernel_size, stride, groups=mid_ch)
                                    for _ in range(num_branches))
            self.dw_rpr_scale = ConvBn(mid_ch, mid_ch, 1, stride, groups=mid_ch)
        self.se = SqueezeExcite(mid_ch, se_ratio) if se_ratio and se_ratio > 0 else None
        self.ghost2 = GhostModuleV3(mid_ch, out_ch, relu=False, mode="original", num_branches=num_branches)
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
            if self.infer_mode:
                x = self.bn_dw(self.conv_dw(x))
            else:
                assert self.dw_rpr_scale is not None
                y = self.dw_rpr_scale(x)
                for branch in self.dw_rpr_conv:
                    y = y + branch(x)
                x = y
        if self.se is not None:
            x = self.se(x)
        x = self.ghost2(x)
        return x + self.shortcut(residual)

    @torch.no_grad()
    def reparameterize(self) -> None:
        """Fold the stride-2 depthwise branches into ``conv_dw`` (with bias); the Ghost modules fold themselves."""
        if self.infer_mode:
            return
        if self.stride > 1:
            self.conv_dw = fold_branches(self.dw_rpr_conv, self.dw_rpr_scale)
        del self.dw_rpr_conv, self.dw_rpr_scale
        self.infer_mode = True


def has_training_branches(model: nn.Module) -> bool:
    """True when ``model`` holds GhostNetV3 branches that :func:`reparameterize` would fold."""
    return any(isinstance(m, (GhostModuleV3, GhostBottleneckV3)) and not m.infer_mode for m in model.modules())


def reparameterize(model: nn.Module) -> int:
    """Fold every GhostNetV3 training-time branch of ``model`` in place; returns how many modules were folded.

    The folded model equals the original in eval mode (BN running statistics are folded), up to float
    rounding; afterwards it trains as the deployed architecture, not with branches. Idempotent.
    """
    todo = [m for m in model.modules() if isinstance(m, (GhostModuleV3, GhostBottleneckV3)) and not m.infer_mode]
    for m in todo:
        m.reparameterize()
    return len(todo)
