"""Module-graph helpers ghostify and BatchNorm folding share: the one conv -> BN pairing rule, and
replacing a module everywhere it is registered.

:func:`conv_bn_pairs` traces the model with ``torch.fx`` (its training graph, which has every
branch). A conv and a BatchNorm form a pair when the BatchNorm alone reads the conv's output,
both modules are called once, and :func:`bn_pairable` accepts the two modules. When the model
does not trace, a registration-order fallback pairs a conv with the leaf module registered right
after it in the same parent (same rule on the modules). The stem convs (those with no conv
before them) and the single-use ``nn.ReLU`` after each pair's BatchNorm come from the same pass.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import torch.fx as fx
from torch import nn

from ghostcli.errors import one_line

#: conv type -> the BatchNorm type that can follow it (a pair folds into one conv of the same type)
_CONV_BN: dict[type[nn.Module], type[nn.Module]] = {
    nn.Conv1d: nn.BatchNorm1d, nn.Conv2d: nn.BatchNorm2d, nn.Conv3d: nn.BatchNorm3d,
}

#: Parents of each module of a model: id(module) -> [(parent, attribute name), ...]
Parents = dict[int, list[tuple[nn.Module, str]]]


@dataclass
class GraphInfo:
    """What ghostify and folding need to know about the model's dataflow."""

    method: str  # "fx" or "registration-order"
    bn_after: dict[str, str] = field(default_factory=dict)  # conv name -> the BatchNorm it alone feeds
    relu_after: dict[str, str] = field(default_factory=dict)  # BatchNorm name -> single-use nn.ReLU it alone feeds
    stems: set[str] = field(default_factory=set)  # convs that read the input image
    trace_error: str | None = None  # why torch.fx could not trace the model ("TypeError: ...")
    note: str = ""  # a warning for the user when the fallback was used


def is_conv(module: nn.Module, extra: tuple[type, ...] = ()) -> bool:
    """True for every conv-like layer that appears as a row of the ghostify report."""
    return isinstance(module, (nn.modules.conv._ConvNd, *extra))


def _plain(module: nn.Module, base: type[nn.Module], methods: tuple[str, ...]) -> bool:
    """``module`` is a ``base`` whose class does not override ``methods``."""
    return isinstance(module, base) and all(getattr(type(module), m) is getattr(base, m) for m in methods)


def bn_pairable(conv: nn.Module, bn: nn.Module) -> bool:
    """The one rule on the modules: a plain ``ConvNd`` and a plain ``BatchNormNd`` of the same N over the
    conv's output channels, with running statistics (what folding and the Ghost module's BNs need).

    "Plain" means the class does not override ``forward`` (a subclass that does computes something else).
    """
    for conv_type, bn_type in _CONV_BN.items():
        if _plain(conv, conv_type, ("forward", "_conv_forward")):
            return (_plain(bn, bn_type, ("forward",)) and bn.num_features == conv.out_channels
                    and bool(bn.track_running_stats) and bn.running_mean is not None and bn.running_var is not None)
    return False


class _Tracer(fx.Tracer):
    """Convs and BatchNorms (subclasses too) are single calls, like ``leaf_types``."""

    def __init__(self, leaf_types: tuple[type, ...]) -> None:
        super().__init__()
        self.leaf_types = (nn.modules.conv._ConvNd, nn.modules.batchnorm._BatchNorm, *leaf_types)

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, self.leaf_types) or super().is_leaf_module(m, module_qualified_name)


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


def conv_bn_pairs(model: nn.Module, leaf_types: tuple[type, ...] = ()) -> GraphInfo:
    """Conv -> BN pairs of ``model`` (``.bn_after``), found by the one rule; the model is not modified.

    ``leaf_types`` are traced as single calls (ghostify's converter types that are not convs).
    """
    try:
        return _analyze_fx(model, leaf_types)
    except Exception as exc:  # noqa: BLE001 - any tracing failure means: use the fallback
        info = _analyze_registration(model, leaf_types)
        info.trace_error = f"{type(exc).__name__}: {one_line(exc, 300, first_line=True)}"
        info.note = f"torch.fx could not trace the model ({type(exc).__name__}); conv->BatchNorm pairs " \
                    "were found by registration order"
        return info


def _analyze_fx(model: nn.Module, leaf_types: tuple[type, ...]) -> GraphInfo:
    was_training = {sub: sub.training for sub in model.modules()}
    model.train()  # trace the training graph: it has every branch (e.g. auxiliary heads)
    try:
        graph = _Tracer(leaf_types).trace(model)
    finally:
        for sub, t in was_training.items():
            sub.training = t
    modules = dict(model.named_modules())
    calls = call_counts(graph)

    def mod(node: fx.Node | None) -> nn.Module | None:
        return modules.get(str(node.target)) if node is not None and node.op == "call_module" else None

    def conv_node(node: fx.Node) -> bool:
        m = mod(node)
        if m is not None:
            return is_conv(m, leaf_types)
        return node.op == "call_function" and "conv" in getattr(node.target, "__name__", "")

    info = GraphInfo(method="fx")
    after_conv: dict[fx.Node, bool] = {}
    for node in graph.nodes:
        after_conv[node] = any(after_conv[a] or conv_node(a) for a in node.all_input_nodes)
        m = mod(node)
        if m is None or not is_conv(m, leaf_types):
            continue
        name = str(node.target)
        if not after_conv[node]:
            info.stems.add(name)
        bn_node = sole_reader(node, calls)
        bn = mod(bn_node)
        if bn_node is None or bn is None or not bn_pairable(m, bn):
            continue
        info.bn_after[name] = str(bn_node.target)
        relu_node = sole_reader(bn_node, calls)
        if relu_node is not None and type(mod(relu_node)) is nn.ReLU:
            info.relu_after[str(bn_node.target)] = str(relu_node.target)
    return info


def _analyze_registration(model: nn.Module, leaf_types: tuple[type, ...]) -> GraphInfo:
    info = GraphInfo(method="registration-order")
    leaves = [(n, m) for n, m in model.named_modules() if n and not any(True for _ in m.children())]
    first = True
    for i, (name, m) in enumerate(leaves):
        if not is_conv(m, leaf_types):
            continue
        if first:
            info.stems.add(name)
            first = False
        if i + 1 < len(leaves):
            bn_name, bn = leaves[i + 1]
            if bn_name.rpartition(".")[0] == name.rpartition(".")[0] and bn_pairable(m, bn):
                info.bn_after[name] = bn_name
    return info


def module_parents(root: nn.Module) -> Parents:
    """Where each submodule of ``root`` is registered: id(module) -> [(parent, attribute name), ...]."""
    parents: Parents = {}
    for _, parent in root.named_modules(remove_duplicate=False):
        for name, child in parent._modules.items():
            if child is not None:
                places = parents.setdefault(id(child), [])
                if not any(p is parent and n == name for p, n in places):
                    places.append((parent, name))
    return parents


def replace_module(root: nn.Module, target: str | nn.Module, new: nn.Module, *,
                   parents: Parents | None = None) -> None:
    """Put ``new`` everywhere ``target`` (a submodule of ``root`` or its dotted name) is registered.

    A module registered under several names (an alias) is replaced under all of them. ``parents``
    (from :func:`module_parents`) saves recomputing the map when many modules are replaced.
    """
    old = root.get_submodule(target) if isinstance(target, str) else target
    places = (parents if parents is not None else module_parents(root)).get(id(old))
    if not places:
        raise ValueError(f"{target if isinstance(target, str) else type(old).__name__} is not a submodule of the model")
    for parent, name in places:
        parent._modules[name] = new


_ADDS = {"add", "add_", "iadd", "__add__", "__iadd__"}
_PASS_THROUGH = (nn.modules.batchnorm._BatchNorm, nn.Identity)


def residual_feeders(model: nn.Module, leaf_types: tuple[type, ...] = ()) -> dict[str, list[str]]:
    """The convs whose output (through a BatchNorm or Identity at most) a residual add reads.

    Returns ``{block: [conv names]}``, ``block`` being the longest dotted prefix the feeders share
    (``layer1.0`` for ``layer1.0.conv3`` and ``layer1.0.downsample.0``; a lone feeder's parent).
    An add is a ``+`` / ``add`` of two tensors that traced to a conv on at least one side. Empty when
    the model does not trace with ``torch.fx``.
    """
    try:
        graph = _Tracer(leaf_types).trace(model)
    except Exception:  # noqa: BLE001 - untraceable: no residual information
        return {}
    modules = dict(model.named_modules())

    def conv_behind(node: object) -> str | None:
        while isinstance(node, fx.Node) and node.op == "call_module":
            m = modules.get(str(node.target))
            if m is not None and is_conv(m, leaf_types):
                return str(node.target)
            if not isinstance(m, _PASS_THROUGH) or not node.args:
                return None
            node = node.args[0]
        return None

    out: dict[str, list[str]] = {}
    for node in graph.nodes:
        name = getattr(node.target, "__name__", str(node.target))
        if node.op not in ("call_function", "call_method") or name not in _ADDS or len(node.args) < 2:
            continue
        feeders = [c for c in (conv_behind(a) for a in node.args[:2]) if c is not None]
        if not feeders:
            continue
        parts = [f.split(".") for f in feeders]
        common: list[str] = []
        for level in zip(*parts):
            if len(set(level)) != 1:
                break
            common.append(level[0])
        if len(feeders) == 1 or len(common) == len(parts[0]):
            common = parts[0][:-1]
        out.setdefault(".".join(common), []).extend(f for f in feeders if f not in out.get(".".join(common), []))
    return out
