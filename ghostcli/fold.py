"""Fold every BatchNorm that directly follows a convolution into that convolution.

Done explicitly in PyTorch before export, so that the exported ONNX / OpenVINO
graph is free of BatchNormalization (and of the Mul/Add pairs a runtime would
otherwise put in its place) whatever the exporter or simplifier does.

Conv -> BN pairs are found by tracing the model with ``torch.fx`` (a conv whose
only consumer is a BN, each module called exactly once). When the model cannot
be traced, the pairs are found from the module structure: a conv immediately
followed by a BN inside an ``nn.Sequential``.
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


@dataclass
class FoldReport:
    """What :func:`fold_batchnorm` did."""

    folded: int = 0                 # conv -> BN pairs folded
    unfolded: list[str] = field(default_factory=list)  # BN modules left as they are (names)
    method: str = "fx"              # "fx" or "module-structure"
    trace_error: str | None = None  # why fx tracing failed, when it did


def _pairs_by_fx(model: nn.Module) -> list[tuple[str, str]]:
    """(conv name, bn name) pairs where the BN alone reads the conv's output (fx trace)."""
    import torch.fx

    from ghostcli.fx import call_counts, sole_reader

    graph = torch.fx.Tracer().trace(model)
    modules = dict(model.named_modules())
    calls = call_counts(graph)
    pairs: list[tuple[str, str]] = []
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(modules.get(node.target), _CONV):
            continue
        bn = sole_reader(node, calls)
        if bn is not None and isinstance(modules.get(bn.target), _BN):
            pairs.append((str(node.target), str(bn.target)))
    return pairs


def _pairs_by_structure(model: nn.Module) -> list[tuple[str, str]]:
    """(conv name, bn name) pairs that sit next to each other in an ``nn.Sequential``."""
    pairs: list[tuple[str, str]] = []
    for name, mod in model.named_modules():
        if not isinstance(mod, nn.Sequential):
            continue
        children = list(mod.named_children())
        for (n1, m1), (n2, m2) in itertools.pairwise(children):
            if isinstance(m1, _CONV) and isinstance(m2, _BN):
                prefix = f"{name}." if name else ""
                pairs.append((prefix + n1, prefix + n2))
    return pairs


def _set_module(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, attr = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, attr, new)


def _compatible(conv: nn.Module, bn: nn.Module) -> bool:
    return (
        type(conv).__name__[-2:] == type(bn).__name__[-2:]  # Conv2d with BatchNorm2d, etc.
        and bn.num_features == conv.out_channels
        and bn.track_running_stats
        and bn.running_mean is not None
    )


def fold_batchnorm(model: nn.Module, *, inplace: bool = False) -> tuple[nn.Module, FoldReport]:
    """Return an eval-mode copy of ``model`` with every conv -> BN pair folded into one conv.

    Folded BNs are replaced by ``nn.Identity``; BNs that do not follow a conv are kept
    and listed in the report. The input model is left untouched unless ``inplace``.
    """
    was_training = model.training
    model = model if inplace else copy.deepcopy(model)
    model.eval()
    report = FoldReport()
    try:
        pairs = _pairs_by_fx(model)
    except Exception as exc:  # noqa: BLE001 - untraceable forward (data-dependent control flow ...)
        report.method = "module-structure"
        report.trace_error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        pairs = _pairs_by_structure(model)
    with torch.no_grad():
        for conv_name, bn_name in pairs:
            conv, bn = model.get_submodule(conv_name), model.get_submodule(bn_name)
            if not _compatible(conv, bn):
                continue
            _set_module(model, conv_name, fuse_conv_bn_eval(conv, bn))
            _set_module(model, bn_name, nn.Identity())
            report.folded += 1
    report.unfolded = [n for n, m in model.named_modules() if isinstance(m, _BN)]
    if inplace and was_training:
        model.train()
    return model, report
