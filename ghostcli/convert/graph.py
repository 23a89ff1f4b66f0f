"""Structure analysis: which conv feeds which BatchNorm, and which convs read the input image.

With ``torch.fx`` (when the model traces) a conv and a BatchNorm form a pair when
the conv's output goes only to that BatchNorm and both modules are called once.
The stem convs are the convs with no conv before them in the graph. When the
model does not trace, a registration-order fallback pairs a conv with the
BatchNorm registered right after it in the same parent (matching channel count)
and takes the first registered conv as the stem.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import torch.fx as fx
from torch import nn

from ghostcli.layers import GhostModule

_BN_TYPES = (nn.BatchNorm2d,)


@dataclass
class GraphInfo:
    """What ghostify needs to know about the model's dataflow."""

    method: str  # "fx" or "registration-order"
    bn_after: dict[str, str] = field(default_factory=dict)  # conv name -> BatchNorm name it alone feeds
    relu_after: dict[str, str] = field(default_factory=dict)  # BatchNorm name -> single-use nn.ReLU it alone feeds
    stems: set[str] = field(default_factory=set)  # convs that read the input image
    note: str = ""


def is_conv(module: nn.Module, extra: tuple[type, ...] = ()) -> bool:
    """True for every conv-like layer that appears as a row of the report."""
    return isinstance(module, (nn.modules.conv._ConvNd, *extra))


class _Tracer(fx.Tracer):
    def __init__(self, leaf_types: tuple[type, ...]) -> None:
        super().__init__()
        self.leaf_types = leaf_types

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, self.leaf_types) or super().is_leaf_module(m, qualname)


def _pairable(conv: nn.Module, bn: nn.Module) -> bool:
    return (type(bn) in _BN_TYPES and isinstance(conv, nn.Conv2d) and bn.num_features == conv.out_channels
            and bn.affine and bn.track_running_stats)


def analyze(model: nn.Module, conv_types: tuple[type, ...] = ()) -> GraphInfo:
    """Pairs and stems of ``model`` (the model is not modified)."""
    try:
        return _analyze_fx(model, conv_types)
    except Exception as exc:  # noqa: BLE001 - any tracing failure means: use the fallback
        info = _analyze_registration(model, conv_types)
        info.note = f"torch.fx could not trace the model ({type(exc).__name__}); conv->BatchNorm pairs " \
                    "were found by registration order"
        return info


def _analyze_fx(model: nn.Module, conv_types: tuple[type, ...]) -> GraphInfo:
    was_training = {m: m.training for m in model.modules()}
    model.train()  # trace the training graph: it has every branch (e.g. auxiliary heads)
    try:
        graph = _Tracer((GhostModule, *conv_types)).trace(model)
    finally:
        for m, t in was_training.items():
            m.training = t
    modules = dict(model.named_modules())
    calls = Counter(n.target for n in graph.nodes if n.op == "call_module")

    def mod(node: fx.Node) -> nn.Module | None:
        return modules.get(node.target) if node.op == "call_module" else None

    def conv_node(node: fx.Node) -> bool:
        m = mod(node)
        if m is not None:
            return is_conv(m, conv_types)
        return node.op == "call_function" and "conv" in getattr(node.target, "__name__", "")

    info = GraphInfo(method="fx")
    after_conv: dict[fx.Node, bool] = {}
    for node in graph.nodes:
        inputs = node.all_input_nodes
        after_conv[node] = any(after_conv[a] or conv_node(a) for a in inputs)
        m = mod(node)
        if m is None or not is_conv(m, conv_types):
            continue
        if not after_conv[node]:
            info.stems.add(node.target)
        users = list(node.users)
        if calls[node.target] == 1 and len(users) == 1:
            u = users[0]
            bn = mod(u)
            if (bn is not None and calls[u.target] == 1 and len(u.args) == 1 and u.args[0] is node
                    and not u.kwargs and _pairable(m, bn)):
                info.bn_after[node.target] = u.target
                relu_users = list(u.users)
                if len(relu_users) == 1:
                    r = relu_users[0]
                    if (type(mod(r)) is nn.ReLU and calls[r.target] == 1 and len(r.args) == 1
                            and r.args[0] is u and not r.kwargs):
                        info.relu_after[u.target] = r.target
    return info


def _analyze_registration(model: nn.Module, conv_types: tuple[type, ...]) -> GraphInfo:
    info = GraphInfo(method="registration-order")
    leaves = [(n, m) for n, m in model.named_modules() if n and not any(True for _ in m.children())]
    first = True
    for i, (name, m) in enumerate(leaves):
        if not is_conv(m, conv_types):
            continue
        if first:
            info.stems.add(name)
            first = False
        if i + 1 < len(leaves):
            bn_name, bn = leaves[i + 1]
            if bn_name.rpartition(".")[0] == name.rpartition(".")[0] and _pairable(m, bn):
                info.bn_after[name] = bn_name
    return info
