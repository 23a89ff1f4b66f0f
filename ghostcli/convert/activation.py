"""Move the ReLU that follows a converted conv + BN into the Ghost module's branches.

``relu(concat(a, b)) == concat(relu(a), relu(b))``, so a Ghost module built with
``relu=True`` can replace conv -> BN -> ReLU. Deployed graphs then fuse each ReLU
into its conv (primary and cheap) instead of running a separate element-wise
pass over the concatenated tensor; ``benchmarks/bench_ghostify.py`` measures the
difference. The primary channels stay exactly as before (conv -> BN -> ReLU);
the cheap operation now reads the activated intrinsic maps, as in the paper's
own Ghost module, and its ghost channels are new in any case.

Two cases are handled, both deterministic so that artifacts rebuild exactly:

- a ReLU module that is called once, right after the absorbed BN (found by
  torch.fx): it is replaced by ``nn.Identity``;
- torchvision's ResNet blocks, which call one shared ``self.relu`` several
  times: the block's class is swapped for a subclass whose forward leaves out
  the ReLUs now inside ``conv1`` and/or ``conv2`` (``block.relu_inside`` says which).
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck

from ghostcli.fx import replace_module
from ghostcli.layers import GhostModule


def activate(gm: GhostModule) -> None:
    """Give both branches of ``gm`` a ReLU (the paper's activated Ghost module)."""
    gm.primary_conv[2] = nn.ReLU(inplace=True)
    gm.cheap_operation[2] = nn.ReLU(inplace=True)


def _absorbed(block: nn.Module, conv: str, bn: str) -> bool:
    gm = getattr(block, conv, None)
    return (isinstance(gm, GhostModule) and isinstance(getattr(block, bn, None), nn.Identity)
            and isinstance(gm.primary_conv[1], nn.BatchNorm2d) and isinstance(gm.primary_conv[2], nn.Identity))


class GhostReluBasicBlock(BasicBlock):
    """torchvision BasicBlock whose ``conv1`` Ghost module applies the first ReLU itself."""

    relu_inside: frozenset[str] = frozenset({"1"})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.bn2(self.conv2(self.bn1(self.conv1(x))))
        out += identity  # in place, as torchvision does: ``out`` is a fresh tensor
        return self.relu(out)


class GhostReluBottleneck(Bottleneck):
    """torchvision Bottleneck whose ``conv1`` and/or ``conv2`` (``relu_inside``) Ghost modules apply
    their ReLUs themselves."""

    relu_inside: frozenset[str] = frozenset({"1", "2"})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.bn1(self.conv1(x))
        if "1" not in self.relu_inside:
            out = self.relu(out)
        out = self.bn2(self.conv2(out))
        if "2" not in self.relu_inside:
            out = self.relu(out)
        out = self.bn3(self.conv3(out))
        out += identity
        return self.relu(out)


#: torchvision block type -> its subclass with ReLUs left out (``relu_inside``: the convs that can take them).
#: Module-level classes, so ghostified models pickle, copy and cross process boundaries.
FUSED_BLOCKS: dict[type[nn.Module], type[GhostReluBasicBlock] | type[GhostReluBottleneck]] = {
    BasicBlock: GhostReluBasicBlock, Bottleneck: GhostReluBottleneck,
}


def absorb_relus(model: nn.Module, relu_after: dict[str, str], absorbed_bns: dict[str, str]) -> list[str]:
    """Move ReLUs into converted Ghost modules; returns the names of the modules activated.

    ``relu_after`` maps a BN name to the single-use ReLU module that alone reads it;
    ``absorbed_bns`` maps a converted conv's name to the BN its module took over.
    """
    named = dict(model.named_modules())
    done: list[str] = []
    for conv_name, bn_name in absorbed_bns.items():
        relu_name = relu_after.get(bn_name)
        relu = named.get(relu_name) if relu_name else None
        gm = named.get(conv_name)
        if relu is not None and type(relu) is nn.ReLU and isinstance(gm, GhostModule):
            replace_module(model, relu, nn.Identity())
            activate(gm)
            done.append(conv_name)
    for name, block in named.items():
        fused_cls = FUSED_BLOCKS.get(type(block))
        if fused_cls is None:
            continue
        inside = frozenset(i for i in fused_cls.relu_inside if _absorbed(block, f"conv{i}", f"bn{i}"))
        if inside:
            for i in sorted(inside):
                activate(getattr(block, f"conv{i}"))
                done.append(f"{name}.conv{i}")
            block.__class__ = fused_cls
            if inside != fused_cls.relu_inside:
                block.relu_inside = inside
    return done
