"""Fold every BatchNorm that directly follows a convolution into that convolution.

Done explicitly in PyTorch before export, so that the exported ONNX / OpenVINO
graph is free of BatchNormalization (and of the Mul/Add pairs a runtime would
otherwise put in its place) whatever the exporter or simplifier does.

Conv -> BN pairs come from :func:`ghostcli.fx.conv_bn_pairs`, the rule ghostify uses too: a
BN that alone reads a conv's output in the ``torch.fx`` trace, or, when the model cannot be
traced, the BN registered right after a conv in the same parent module.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ghostcli.fx import conv_bn_pairs, module_parents, replace_module
from ghostcli.layers.ghost_v3 import has_training_branches, reparameterize

_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


@dataclass
class FoldReport:
    """What :func:`fold_batchnorm` did."""

    folded: int = 0                 # conv -> BN pairs folded
    unfolded: list[str] = field(default_factory=list)  # BN modules left as they are (names)
    method: str = "fx"              # "fx" or "module-structure" (the registration-order fallback)
    trace_error: str | None = None  # why fx tracing failed, when it did
    reparameterized: int = 0        # GhostNetV3 modules whose training-time branches were folded first


def deploy_form(model: nn.Module) -> nn.Module:
    """``model`` as it is deployed: a copy with GhostNetV3's training-time branches folded, or ``model`` itself."""
    if not has_training_branches(model):
        return model
    model = copy.deepcopy(model).eval()
    reparameterize(model)
    return model


def fold_batchnorm(model: nn.Module, *, inplace: bool = False) -> tuple[nn.Module, FoldReport]:
    """Return an eval-mode copy of ``model`` with every conv -> BN pair folded into one conv.

    GhostNetV3's training-time branches are folded first (:func:`deploy_form`). Folded BNs are
    replaced by ``nn.Identity``; BNs that do not follow a conv are kept and listed in the report.
    The input model is left untouched unless ``inplace``.
    """
    was_training = model.training
    model = model if inplace else copy.deepcopy(model)
    model.eval()
    report = FoldReport()
    if has_training_branches(model):
        report.reparameterized = reparameterize(model)
    info = conv_bn_pairs(model)
    if info.method != "fx":
        report.method = "module-structure"
        report.trace_error = info.trace_error
    parents = module_parents(model)
    with torch.no_grad():
        for conv_name, bn_name in info.bn_after.items():
            conv, bn = model.get_submodule(conv_name), model.get_submodule(bn_name)
            assert isinstance(conv, nn.modules.conv._ConvNd) and isinstance(bn, nn.modules.batchnorm._BatchNorm)
            replace_module(model, conv, fuse_conv_bn_eval(conv, bn), parents=parents)
            replace_module(model, bn, nn.Identity(), parents=parents)
            report.folded += 1
    report.unfolded = [n for n, m in model.named_modules() if isinstance(m, _BN)]
    if inplace and was_training:
        model.train()
    return model, report
