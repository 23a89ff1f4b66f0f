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


def sole_reader(node: fx.Node, calls: Counter) -> fx.Node | None:
    """The module call that alone reads ``node``'s output as its only argument, else None.

    Both modules must be called exactly once in the trace (a shared module cannot be rewired).
    ``calls`` counts ``call_module`` nodes per target.
    """
    if node.op != "call_module" or calls[node.target] != 1 or len(node.users) != 1:
        return None
    user = next(iter(node.users))
    if user.op == "call_module" and calls[user.target] == 1 and user.args == (node,) and not user.kwargs:
        return user
    return None


def call_counts(graph: fx.Graph) -> Counter:
    """How often each module is called in ``graph``."""
    return Counter(n.target for n in graph.nodes if n.op == "call_module")


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
    calls = call_counts(graph)

    def mod(node: fx.Node | None) -> nn.Module | None:
        return modules.get(node.target) if node is not None and node.op == "call_module" else None

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
        bn_node = sole_reader(node, calls)
        bn = mod(bn_node)
        if bn is None or not _pairable(m, bn):
            continue
        info.bn_after[node.target] = bn_node.target
        relu_node = sole_reader(bn_node, calls)
        if type(mod(relu_node)) is nn.ReLU:
            info.relu_after[bn_node.target] = relu_node.target
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
