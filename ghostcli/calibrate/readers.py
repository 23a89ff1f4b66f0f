"""Who reads a Ghost module's output, and permuting their channels so the network computes the same function.

Choosing which original channels a Ghost module's primary conv computes reorders its output channels. The rest of
the network must still read every channel with its original meaning; instead of a gather after the module (a copy
of the whole tensor at run time) ghostify permutes the *readers*' weights, which costs nothing at run time and keeps
the architecture, so saved artifacts rebuild and load as before.

That is possible when, following the output through the traced graph (``torch.fx``), every path ends in a reader
whose input channels can be permuted: a dense ``nn.Conv2d`` (``groups=1``), a Ghost module (its primary conv), or
an ``nn.Linear`` after a global pool to 1x1 and a flatten (a classifier head), and passes only through channel-wise
layers: activations, ``nn.Identity``, dropout, pooling, a ``BatchNorm2d`` or a depthwise conv (both permuted along).
Anything else (a residual add, a concat, the model's output, a flatten of a feature map, a module called twice)
keeps the module's channel order fixed, and the calibration uses the layer's own pairing there.
"""

from __future__ import annotations

import operator
from collections import Counter
from dataclasses import dataclass, field

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from ghostcli.errors import one_line
from ghostcli.layers import GGhostStage, GhostModule

_ELEMENTWISE_MODULES: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.GELU, nn.SiLU, nn.Hardswish, nn.Hardsigmoid,
    nn.Sigmoid, nn.Tanh, nn.Mish, nn.Hardtanh, nn.Identity, nn.Dropout, nn.Dropout2d, nn.MaxPool2d, nn.AvgPool2d,
    nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d,
)
_ELEMENTWISE_FUNCTIONS = {F.relu, F.relu6, F.leaky_relu, F.gelu, F.silu, F.hardswish, F.hardsigmoid, F.dropout,
                          F.max_pool2d, F.avg_pool2d, F.adaptive_avg_pool2d, F.adaptive_max_pool2d, torch.relu,
                          torch.relu_, torch.sigmoid, torch.tanh, F.hardtanh, F.mish, F.elu, torch.dropout}
_ELEMENTWISE_METHODS = {"relu", "relu_", "sigmoid", "tanh", "contiguous", "clone"}


def _keeps_batch_and_channels(node: fx.Node) -> bool:
    """Whether ``node`` flattens a pooled (N, C, 1, 1) to (N, C): ``flatten(x, 1)``, ``x.view(n, -1)``,
    ``x.reshape(n, c)``, ``x.squeeze(...)``."""
    if node.target is torch.flatten or node.target == "flatten":
        start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
        return isinstance(start, int) and start == 1
    if node.target in ("view", "reshape"):
        shape = node.args[1:]
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return len(shape) == 2
    return node.target == "squeeze"


def _pools_to_one(node: fx.Node, module: nn.Module | None) -> bool:
    """Whether ``node`` pools every channel over its whole map: adaptive pooling to 1x1 or a mean over H and W."""
    if isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        return module.output_size in (1, (1, 1))
    if node.op == "call_function" and node.target in (F.adaptive_avg_pool2d, F.adaptive_max_pool2d):
        size = node.args[1] if len(node.args) > 1 else node.kwargs.get("output_size")
        return size in (1, (1, 1), [1, 1])
    if (node.op == "call_method" and node.target == "mean") or (node.op == "call_function" and node.target is torch.mean):
        dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
        return isinstance(dims, (tuple, list)) and sorted(int(d) % 4 for d in dims) == [2, 3]
    return False


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualified_name: str) -> bool:
        return isinstance(m, (GhostModule, GGhostStage, nn.modules.conv._ConvNd, nn.modules.batchnorm._BatchNorm)) \
            or super().is_leaf_module(m, qualified_name)


@dataclass
class Readers:
    """Where a module's output goes: permutable (``reason`` empty) with its readers, or why not."""

    reason: str = ""
    terminals: list[str] = field(default_factory=list)  # convs / Ghost modules whose input channels get permuted
    channelwise: list[str] = field(default_factory=list)  # BatchNorms / depthwise convs permuted along the way


class ReaderGraph:
    """The traced graph of a ghostified model, asked per Ghost module (trace once, ask many times)."""

    def __init__(self, model: nn.Module) -> None:
        self.modules = dict(model.named_modules())
        self.error: str | None = None
        try:
            self.graph: fx.Graph | None = _Tracer().trace(model)
        except Exception as exc:  # noqa: BLE001 - untraceable: every module keeps its channel order
            self.graph = None
            self.error = f"{type(exc).__name__}: {one_line(exc, 200, first_line=True)}"
            return
        self.calls = Counter(n.target for n in self.graph.nodes if n.op == "call_module")
        self.nodes = {str(n.target): n for n in self.graph.nodes if n.op == "call_module"}

    def readers(self, name: str) -> Readers:
        """The readers of module ``name``'s output (see the module docstring)."""
        if self.graph is None:
            return Readers(f"the model does not trace with torch.fx ({self.error})")
        node = self.nodes.get(name)
        if node is None or self.calls[name] != 1:
            return Readers("not a single call in the traced graph")
        out = Readers()
        todo = [node]
        self._pooled: set[fx.Node] = set()  # nodes whose output is the channels pooled to 1x1 (or flattened)
        seen: set[fx.Node] = set()
        while todo:
            cur = todo.pop()
            for user in cur.users:
                if user in seen:
                    continue
                seen.add(user)
                why = self._visit(cur, user, out, todo)
                if why:
                    return Readers(why)
        if not out.terminals:
            return Readers("no conv reads it")
        return out

    def _pass(self, cur: fx.Node, user: fx.Node, todo: list[fx.Node], module: nn.Module | None = None) -> str:
        """``user`` keeps the channels' order: follow it (pooled stays pooled, or becomes so)."""
        if cur in self._pooled or _pools_to_one(user, module):
            self._pooled.add(user)
        todo.append(user)
        return ""

    def _visit(self, cur: fx.Node, user: fx.Node, out: Readers, todo: list[fx.Node]) -> str:
        first_only = len(user.args) >= 1 and user.args[0] is cur and cur not in user.args[1:] \
            and cur not in user.kwargs.values()
        pooled = cur in self._pooled
        if (user.op == "call_method" and user.target in ("size", "dim")) or \
                (user.op == "call_function" and user.target is getattr and user.args[1:] == ("shape",)):
            return ""  # reads the shape, not the values
        if user.op == "output":
            return "the model's output"
        if user.op == "call_module":
            target = str(user.target)
            m = self.modules.get(target)
            if not first_only or m is None:
                return f"{target} reads it with other tensors"
            if pooled and isinstance(m, (nn.Linear, nn.Flatten)):
                if self.calls[target] != 1:
                    return f"{target} is called more than once"
                if isinstance(m, nn.Flatten):
                    return self._pass(cur, user, todo) if m.start_dim == 1 else f"Flatten {target} reads it"
                out.terminals.append(target)
                return ""
            if isinstance(m, GhostModule) or (isinstance(m, nn.Conv2d) and m.groups == 1):
                if self.calls[target] != 1:
                    return f"{target} is called more than once"
                out.terminals.append(target)
                return ""
            if isinstance(m, nn.Conv2d) and m.groups == m.in_channels == m.out_channels:
                if self.calls[target] != 1:
                    return f"{target} is called more than once"
                out.channelwise.append(target)
                todo.append(user)
                return ""
            if isinstance(m, nn.BatchNorm2d):
                if self.calls[target] != 1:
                    return f"{target} is called more than once"
                out.channelwise.append(target)
                todo.append(user)
                return ""
            if type(m) in _ELEMENTWISE_MODULES and not (isinstance(m, nn.PReLU) and m.num_parameters != 1):
                return self._pass(cur, user, todo, m)
            return f"{type(m).__name__} {target} reads it"
        if user.op == "call_function" and user.target in _ELEMENTWISE_FUNCTIONS and first_only:
            return self._pass(cur, user, todo)
        if user.op == "call_method" and user.target in _ELEMENTWISE_METHODS and first_only:
            return self._pass(cur, user, todo)
        if first_only and _pools_to_one(user, None):
            return self._pass(cur, user, todo)
        if pooled and first_only and _keeps_batch_and_channels(user):
            return self._pass(cur, user, todo)
        what = getattr(user.target, "__name__", str(user.target))
        if user.target in (operator.add, operator.iadd, torch.add) or what in ("add", "add_", "iadd"):
            return "a residual add reads it"
        if what == "cat":
            return "a concat reads it"
        return f"{what} reads it"


def permute_readers(modules: dict[str, nn.Module], readers: Readers, perm: torch.Tensor) -> None:
    """Make the readers expect a tensor whose channel ``q`` holds the original channel ``perm[q]``."""
    with torch.no_grad():
        for name in readers.channelwise:
            m = modules[name]
            if isinstance(m, nn.BatchNorm2d):
                for t in (m.weight, m.bias, m.running_mean, m.running_var):
                    if t is not None:
                        t.copy_(t[perm])
            elif isinstance(m, nn.Conv2d):
                m.weight.copy_(m.weight[perm])
                if m.bias is not None:
                    m.bias.copy_(m.bias[perm])
        for name in readers.terminals:
            conv = terminal_conv(modules[name])
            conv.weight.copy_(conv.weight[:, perm])


def terminal_conv(m: nn.Module) -> nn.Conv2d | nn.Linear:
    """The layer that reads a terminal's input: itself (a conv or a linear head), or a Ghost module's primary conv."""
    conv = m.primary_conv[0] if isinstance(m, GhostModule) else m
    if not isinstance(conv, (nn.Conv2d, nn.Linear)):
        raise TypeError(f"expected a conv or a linear layer, got {type(conv).__name__}")
    return conv
