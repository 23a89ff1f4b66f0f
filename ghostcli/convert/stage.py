"""Stage-level Ghost (G-Ghost, Han et al., IJCV 2022): a stage of residual blocks of an existing network
rebuilt as a :class:`~ghostcli.layers.GGhostStage`.

A stage is an ``nn.Sequential`` (or a subclass that keeps its ``forward``, like torchvision's RegNet
``AnyStage``) whose children are all residual blocks of a supported type, the blocks after the first
keeping their channels (``planes`` in and out) at stride 1 with an identity shortcut. Supported
blocks, recognised by type: torchvision ``resnet.BasicBlock`` / ``resnet.Bottleneck`` (ResNet,
ResNeXt, Wide-ResNet), torchvision ``regnet.ResBottleneckBlock`` (RegNetX, and RegNetY with its
squeeze-excitation) and, when timm is loaded, ``timm.models.resnet.BasicBlock`` / ``Bottleneck``
(with no attention layer or timm's ``SEModule``).

How a stage of ``n >= 3`` blocks is rebuilt:

- ``base`` is the first block and ``end`` the last one, copied unchanged (same weights, same
  function: ``end`` reads all ``planes`` channels).
- ``raw_planes`` channels stay "real": ``planes * (1 - cheap_ratio)`` rounded *down* to a whole number
  of units, at least one unit and at most all but one. Where the blocks have a grouped conv with ``g``
  groups (ResNeXt, RegNet), a unit is ``planes / g`` channels, so that every narrowed conv keeps whole
  groups of the original (RegNet: a multiple of its group width); in dense blocks (ResNet,
  Wide-ResNet) a unit is 8 channels. ``cheap_planes = planes - raw_planes``.
- The ``n - 2`` middle blocks become narrowed copies that read and write the first ``raw_planes``
  channels; every inner width shrinks by the same fraction (a grouped conv keeps its first ``q`` of
  ``g`` groups, ``q = raw_planes / unit``; a dense inner width ``w`` keeps ``round(w * raw_planes /
  planes)`` channels). Their identity shortcut stays an identity on the raw channels. With
  ``inherit_weights`` each narrowed conv / BatchNorm keeps the original tensors of the kept
  channels (``weight[:out_kept, :in_kept]``; a grouped conv: the first ``q`` groups' filters); a
  squeeze-excitation keeps all its squeeze units, reading and gating only the kept channels.
- ``cheap`` (1x1 conv + BN on the first block's last ``cheap_planes`` channels) and ``merge`` (the
  pooled mix of the first and every middle block's output) are **new layers** with default
  initialisation: the rebuilt stage computes a different function until it is fine-tuned
  (``ghostcli train``).
"""

from __future__ import annotations

import copy
import math
import sys
from dataclasses import dataclass, field

import torch
from torch import nn

from ghostcli.errors import ConversionError, UsageError
from ghostcli.ghostify_options import GhostifyOptions
from ghostcli.layers import GGhostStage

DENSE_UNIT = 8  # channels per rounding unit of raw_planes in blocks without a grouped conv


@dataclass(frozen=True)
class _Family:
    """Where a block type keeps its parts (dotted paths inside the block)."""

    chain: tuple[tuple[str, str], ...]  # (conv, its BatchNorm) in forward order: planes -> ... -> planes
    attention: tuple[tuple[str, int], ...] = ()  # (squeeze-excitation, chain position whose output it gates)
    shortcut: str = "downsample"  # must be None in blocks 2..n (identity shortcut)
    identities: tuple[str, ...] = ()  # must be nn.Identity (or absent) in blocks 2..n (timm's anti-aliasing)


_REGISTERED: dict[type[nn.Module], _Family] = {}


def register_stage_block(block_type: type[nn.Module], chain: tuple[tuple[str, str], ...], *,
                         shortcut: str = "downsample") -> None:
    """Let stages of ``block_type`` become G-Ghost stages: ``chain`` lists its (conv, BatchNorm) paths in
    forward order (``planes -> ... -> planes``), ``shortcut`` the attribute that is None (or absent) when
    the block's shortcut is the identity. The zoo registers its own CIFAR ResNet block this way."""
    _REGISTERED[block_type] = _Family(tuple(chain), shortcut=shortcut)


def _families() -> dict[type[nn.Module], _Family]:
    """Supported block type -> its layout. timm's blocks only when timm is already imported (a model
    cannot hold timm blocks otherwise, and timm is optional)."""
    from torchvision.models import regnet, resnet

    basic = (("conv1", "bn1"), ("conv2", "bn2"))
    bottleneck = (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3"))
    table: dict[type[nn.Module], _Family] = {
        resnet.BasicBlock: _Family(basic),
        resnet.Bottleneck: _Family(bottleneck),
        regnet.ResBottleneckBlock: _Family((("f.a.0", "f.a.1"), ("f.b.0", "f.b.1"), ("f.c.0", "f.c.1")),
                                           attention=(("f.se", 2),), shortcut="proj"),
    }
    table.update(_REGISTERED)
    timm_resnet = sys.modules.get("timm.models.resnet")
    if timm_resnet is not None:
        table[timm_resnet.BasicBlock] = _Family(basic, attention=(("se", 2),), identities=("aa",))
        table[timm_resnet.Bottleneck] = _Family(bottleneck, attention=(("se", 3),), identities=("aa",))
    return table


def _se_types() -> tuple[type[nn.Module], ...]:
    """Squeeze-excitation types a narrowed block can keep: ``fc1`` (C -> r) and ``fc2`` (r -> C), 1x1 convs."""
    from torchvision.ops import SqueezeExcitation

    types: list[type[nn.Module]] = [SqueezeExcitation]
    timm_se = sys.modules.get("timm.layers.squeeze_excite")
    if timm_se is not None:
        types.append(timm_se.SEModule)
    return tuple(types)


def _get(block: nn.Module, path: str) -> nn.Module | None:
    try:
        return block.get_submodule(path)
    except AttributeError:
        return None


def _conv(block: nn.Module, path: str) -> nn.Conv2d:
    conv = block.get_submodule(path)
    if not isinstance(conv, nn.Conv2d):
        raise TypeError(f"expected an nn.Conv2d at {path}, got {type(conv).__name__}")
    return conv


def _is_stage(module: nn.Module) -> bool:
    return isinstance(module, nn.Sequential) and type(module).forward is nn.Sequential.forward


@dataclass
class _Plan:
    """How one stage is narrowed."""

    planes: int
    raw_planes: int
    widths: list[int]  # a middle block's chain widths: planes, inner..., planes
    kept: list[int]  # the same after narrowing: raw_planes, inner kept..., raw_planes


def _block_problem(block: nn.Module, fam: _Family, planes: int, middle: bool) -> str | None:
    """Why ``block`` cannot be a middle/last block of a G-Ghost stage of ``planes`` channels (None: it can)."""
    if getattr(block, fam.shortcut, None) is not None:
        return "has a projection shortcut (it changes the shape)"
    for path in fam.identities:
        part = _get(block, path)
        if part is not None and not isinstance(part, nn.Identity):
            return f"has an anti-aliasing layer ({type(part).__name__})"
    convs = [_get(block, c) for c, _ in fam.chain]
    norms = [_get(block, n) for _, n in fam.chain]
    if not all(isinstance(c, nn.Conv2d) for c in convs):
        return "has a conv that is not an nn.Conv2d"
    if any(c.stride not in (1, (1, 1)) for c in convs if isinstance(c, nn.Conv2d)):
        return "has a strided conv (it changes the resolution)"
    width = planes
    for conv, norm in zip(convs, norms):
        assert isinstance(conv, nn.Conv2d)
        if conv.in_channels != width:
            return f"reads {conv.in_channels} channels where {width} come in"
        width = conv.out_channels
        if not middle:
            continue
        if not isinstance(norm, nn.modules.batchnorm._BatchNorm) or norm.num_features != width:
            return f"has a {type(norm).__name__} where a BatchNorm of its conv's channels was expected"
    if width != planes:
        return f"writes {width} channels, not the stage's {planes}"
    if middle:
        for path, _ in fam.attention:
            part = _get(block, path)
            if part is not None and not isinstance(part, _se_types()):
                return f"has an attention layer ghostify cannot narrow ({type(part).__name__})"
    return None


def _block_name(child: str) -> str:
    """How a message names a stage's child: ``block 1`` (ResNet's ``layer1.1``), ``block1-1`` (RegNet's)."""
    return f"block {child}" if child.isdigit() else child


def _plan(stage: nn.Sequential, cheap_ratio: float) -> _Plan | str:
    """The narrowing plan of ``stage``, or why it cannot be a G-Ghost stage."""
    families = _families()
    blocks = list(stage.children())
    names = list(stage._modules)
    n = len(blocks)
    if n < 3:
        return f"{n} block{'s' if n != 1 else ''}; a G-Ghost stage needs at least 3"
    first = families[type(blocks[0])]
    last_conv = _get(blocks[0], first.chain[-1][0])
    if not isinstance(last_conv, nn.Conv2d):
        return f"{_block_name(names[0])} has a conv that is not an nn.Conv2d"
    planes = last_conv.out_channels
    for i in range(1, n):
        problem = _block_problem(blocks[i], families[type(blocks[i])], planes, middle=i < n - 1)
        if problem:
            return f"{_block_name(names[i])} {problem}"
    widths: list[int] | None = None
    groups: set[int] = set()
    grouped: set[int] = set()  # chain positions next to a grouped conv
    for block in blocks[1:-1]:
        convs = [_conv(block, c) for c, _ in families[type(block)].chain]
        w = [planes] + [c.out_channels for c in convs]
        if widths is not None and w != widths:
            return "its middle blocks differ in width"
        widths = w
        for k, c in enumerate(convs):
            if c.groups > 1:
                groups.add(c.groups)
                grouped.update((k, k + 1))
    assert widths is not None
    if len(groups) > 1:
        return f"its blocks have convs with different group counts ({sorted(groups)})"
    if groups:
        units = groups.pop()
        if planes % units:
            return f"its {planes} channels are not a multiple of the {units} conv groups"
        unit = planes // units
    else:
        unit, units = DENSE_UNIT, planes // DENSE_UNIT
        if units < 2:
            return f"{planes} channels; a G-Ghost stage of dense blocks needs at least {2 * DENSE_UNIT}"
    q = min(max(math.floor(units * (1.0 - cheap_ratio) + 1e-9), 1), units - 1)
    raw = q * unit
    kept = [raw]
    for pos, width in enumerate(widths[1:-1], start=1):
        kept.append(q * width // units if pos in grouped else max(1, (width * raw + planes // 2) // planes))
    kept.append(raw)
    return _Plan(planes=planes, raw_planes=raw, widths=widths, kept=kept)


def stage_candidates(model: nn.Module) -> dict[str, str | None]:
    """Every stage of supported residual blocks in ``model``: its module name -> None when it can be
    rebuilt as a G-Ghost stage, else the reason it cannot (at any ``cheap_ratio``).

    A stage is an ``nn.Sequential`` whose children are all supported blocks (module docstring), outside
    any G-Ghost stage; stages of fewer than 3 blocks are listed with that reason.
    """
    families = _families()
    out: dict[str, str | None] = {}
    inside = tuple(n + "." for n, m in model.named_modules() if isinstance(m, GGhostStage))
    for name, module in model.named_modules():
        children = list(module.children())
        if not name or name.startswith(inside) or not _is_stage(module) or not children \
                or not all(type(c) in families for c in children):
            continue
        plan = _plan(module, 0.5)
        out[name] = plan if isinstance(plan, str) else None
    return out


def stages_in_play(model: nn.Module, opts: GhostifyOptions, mode: str) -> list[str]:
    """The eligible stages ghostify's `mode` considers: none for ``conv``; for ``stage`` / ``auto`` those
    ``include`` / ``exclude`` keep (``stage`` with none is a ConversionError)."""
    if mode == "conv":
        return []
    from ghostcli.convert.select import first_match

    names = [n for n in eligible_stages(model)
             if (not opts.include or first_match(n, opts.include)) and not first_match(n, opts.exclude)]
    if mode == "stage" and not names:
        raise ConversionError("`mode` stage: the model has no stage of 3 or more residual blocks that can be "
                              "rebuilt as a G-Ghost stage")
    return names


def eligible_stages(model: nn.Module) -> list[str]:
    """The names of the stages of ``model`` that can be rebuilt as G-Ghost stages (``GhostifyOptions.stages``)."""
    return [name for name, reason in stage_candidates(model).items() if reason is None]


@dataclass
class StageBuild:
    """A rebuilt stage and what it took from the original."""

    stage: GGhostStage
    planes: int
    raw_planes: int
    cheap_planes: int
    widths: list[int]  # a middle block's channel widths before: planes, inner..., planes
    middle_widths: list[int]  # after narrowing: raw_planes, inner..., raw_planes
    inherited: list[tuple[str, str]] = field(default_factory=list)  # (tensor in the new stage, its source)


def _param(t: torch.Tensor, like: torch.Tensor) -> nn.Parameter:
    return nn.Parameter(t.detach().clone(), requires_grad=like.requires_grad)


def _narrow_conv(conv: nn.Conv2d, k_in: int, k_out: int) -> str:
    """Keep ``conv``'s first ``k_in`` input and ``k_out`` output channels (a grouped conv: its first groups),
    in place. Returns the slice it kept, for the report."""
    g = int(conv.groups)
    if g > 1:
        q = k_out * g // conv.out_channels  # groups kept; k_in == q * in / g by the plan
        conv.weight = _param(conv.weight[:k_out], conv.weight)
        kept = f"[:{k_out}] (first {q} of {g} groups)"
        conv.groups = q
    else:
        conv.weight = _param(conv.weight[:k_out, :k_in], conv.weight)
        kept = f"[:{k_out}, :{k_in}]"
    if conv.bias is not None:
        conv.bias = _param(conv.bias[:k_out], conv.bias)
    conv.in_channels, conv.out_channels = k_in, k_out
    return kept


def _narrow_norm(bn: nn.modules.batchnorm._BatchNorm, k: int) -> None:
    bn.num_features = k
    if bn.weight is not None:
        bn.weight = _param(bn.weight[:k], bn.weight)
    if bn.bias is not None:
        bn.bias = _param(bn.bias[:k], bn.bias)
    if bn.running_mean is not None:
        bn.running_mean = bn.running_mean[:k].clone()
    if bn.running_var is not None:
        bn.running_var = bn.running_var[:k].clone()


def _narrow_block(block: nn.Module, fam: _Family, kept: list[int], inherit_weights: bool,
                  source: str, target: str) -> list[tuple[str, str]]:
    """Narrow a copy of a middle block in place to the chain widths ``kept``; (tensor, source) pairs."""
    inherited: list[tuple[str, str]] = []
    for pos, (conv_path, norm_path) in enumerate(fam.chain):
        conv = block.get_submodule(conv_path)
        norm = block.get_submodule(norm_path)
        assert isinstance(conv, nn.Conv2d) and isinstance(norm, nn.modules.batchnorm._BatchNorm)
        sl = _narrow_conv(conv, kept[pos], kept[pos + 1])
        _narrow_norm(norm, kept[pos + 1])
        holder = _get(block, conv_path.rpartition(".")[0]) if "." in conv_path else None
        if holder is not None and isinstance(getattr(holder, "out_channels", None), int):
            holder.__dict__["out_channels"] = kept[pos + 1]  # torchvision's Conv2dNormActivation says its width
        if inherit_weights:
            inherited.append((f"{target}{conv_path}.weight", f"{source}{conv_path}.weight{sl}"))
            if conv.bias is not None:
                inherited.append((f"{target}{conv_path}.bias", f"{source}{conv_path}.bias[:{kept[pos + 1]}]"))
            tensors = [t for t in ("weight", "bias", "running_mean", "running_var") if getattr(norm, t) is not None]
            inherited += [(f"{target}{norm_path}.{t}", f"{source}{norm_path}.{t}[:{kept[pos + 1]}]") for t in tensors]
        else:
            conv.reset_parameters()
            norm.reset_parameters()
    for path, pos in fam.attention:
        se = _get(block, path)
        if se is None:
            continue
        fc1, fc2 = se.get_submodule("fc1"), se.get_submodule("fc2")
        assert isinstance(fc1, nn.Conv2d) and isinstance(fc2, nn.Conv2d)
        k = kept[pos]
        s1 = _narrow_conv(fc1, k, fc1.out_channels)
        s2 = _narrow_conv(fc2, fc2.in_channels, k)
        if inherit_weights:
            inherited.append((f"{target}{path}.fc1.weight", f"{source}{path}.fc1.weight{s1}"))
            inherited.append((f"{target}{path}.fc2.weight", f"{source}{path}.fc2.weight{s2}"))
            for fc, tag in ((fc1, "fc1"), (fc2, "fc2")):
                if fc.bias is not None:
                    cut = f"[:{k}]" if tag == "fc2" else ""
                    inherited.append((f"{target}{path}.{tag}.bias", f"{source}{path}.{tag}.bias{cut}"))
        else:
            for m in se.modules():
                if isinstance(m, (nn.Conv2d, nn.modules.batchnorm._BatchNorm)):
                    m.reset_parameters()
    return inherited


def build_g_ghost_stage(stage: nn.Module, cheap_ratio: float, *, inherit_weights: bool = True,
                        name: str = "") -> StageBuild:
    """:func:`to_g_ghost_stage` with what the report needs (widths, inherited tensors named under ``name``)."""
    if isinstance(cheap_ratio, bool) or not isinstance(cheap_ratio, (int, float)) or not 0.0 < cheap_ratio < 1.0:
        raise UsageError(f"`cheap_ratio` must be a number between 0 and 1 (exclusive), got {cheap_ratio!r}")
    what = name or "the module"
    families = _families()
    children = list(stage.children()) if isinstance(stage, nn.Module) else []
    if not isinstance(stage, nn.Module) or not _is_stage(stage) or not children \
            or not all(type(c) in families for c in children):
        raise ConversionError(f"{what} is not a stage of residual blocks ghostify knows (an nn.Sequential of "
                              "torchvision ResNet/ResNeXt/Wide-ResNet/RegNet or timm ResNet blocks)")
    assert isinstance(stage, nn.Sequential)
    plan = _plan(stage, float(cheap_ratio))
    if isinstance(plan, str):
        raise ConversionError(f"{what} cannot be a G-Ghost stage: {plan}")
    names = list(stage._modules)
    prefix = f"{name}." if name else ""
    base = copy.deepcopy(children[0])
    end = copy.deepcopy(children[-1])
    inherited = [(f"{prefix}base.*", f"{prefix}{names[0]}.*"), (f"{prefix}end.*", f"{prefix}{names[-1]}.*")]
    middle = []
    for j, (child_name, block) in enumerate(zip(names[1:-1], children[1:-1])):
        narrow = copy.deepcopy(block)
        inherited += _narrow_block(narrow, families[type(block)], plan.kept, inherit_weights,
                                   source=f"{prefix}{child_name}.", target=f"{prefix}layers.{j}.")
        middle.append(narrow)
    new = GGhostStage(base, nn.Sequential(*middle), end, raw_planes=plan.raw_planes,
                      cheap_planes=plan.planes - plan.raw_planes)
    p = next(stage.parameters(), None)
    if p is not None:
        for part in (new.merge, new.cheap):
            part.to(device=p.device, dtype=p.dtype)
    for part in (new, new.cheap_relu, *new.merge.modules(), *new.cheap.modules()):
        part.training = stage.training  # base, end and the middle blocks keep their copies' flags
    return StageBuild(stage=new, planes=plan.planes, raw_planes=plan.raw_planes,
                      cheap_planes=plan.planes - plan.raw_planes, widths=plan.widths, middle_widths=plan.kept,
                      inherited=inherited if inherit_weights else [])


def to_g_ghost_stage(stage: nn.Module, cheap_ratio: float = 0.5, *, inherit_weights: bool = True) -> GGhostStage:
    """``stage`` (an ``nn.Sequential`` of >= 3 supported residual blocks) rebuilt as a G-Ghost stage.

    ``base`` and ``end`` are copies of the first and last blocks; the middle blocks are narrowed copies
    on ``raw_planes`` channels (keeping the original weights of their kept channels when
    ``inherit_weights``); ``merge`` and ``cheap`` are new layers that need fine-tuning (module
    docstring). ``stage`` itself is not changed. Raises ConversionError, with the reason, for a
    stage that cannot be rebuilt.
    """
    return build_g_ghost_stage(stage, cheap_ratio, inherit_weights=inherit_weights).stage


__all__ = ["StageBuild", "build_g_ghost_stage", "eligible_stages", "stage_candidates", "to_g_ghost_stage"]
