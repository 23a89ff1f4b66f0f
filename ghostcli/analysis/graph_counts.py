"""MACs, parameters, weight bytes and activations counted on a deployed graph (an ``openvino.Model``).

What ``profile`` and ``check`` report for an exported ``.onnx`` or OpenVINO ``.xml`` file, read from
the graph OpenVINO builds from it, per image (a graph with a fixed batch of N is counted at N and
divided by N).

Parameters are the elements of the graph's weight constants: every constant tensor that holds
floating-point data or integers of at most 8 bits (an INT8 IR's int8 weights count like float
ones), except

- single-element constants (a pad value, a clamp bound, a scalar range: settings, not weights);
- the ranges of a FakeQuantize (its inputs 1-4), the scales and zero points that turn compressed
  weights back into floats (a Multiply or Subtract applied to a Convert), and an Interpolate's
  scales;
- integers wider than 8 bits (shapes, axes, indices).

A constant the converter shares between consumers counts once. BatchNorm folded into the convs
at export leaves one bias per channel where PyTorch counts two BatchNorm parameters (weight and
bias), and a bias that folded to zero may be dropped: an export of a model with BatchNorm counts
fewer parameters than its PyTorch model. ``weight_bytes`` is the bytes of the same constants as
stored (int8: 1 byte, f16: 2).

MACs follow fvcore's convention (1 MAC = 1 multiply-add): Convolution and GroupConvolution
(output elements x input channels per group x kernel size), their transposed forms, MatMul
(output elements x the contracted dimension), BatchNormInference (2 per element), global/adaptive
average pooling (AdaptiveAvgPool, ReduceMean: 1 per input element), average pooling (AvgPool: the
kernel's size per output element) and Interpolate (per output element the taps of each spatial axis
multiplied: nearest 1, linear 2, cubic 4, so bilinear 4 and bicubic 16), as ``analysis/macs.py`` counts
them in PyTorch. A graph's BatchNorm was folded into the convs at export, so its total is
fvcore's total without BatchNorm (ResNet-50: 0.5% below fvcore's, ResNet-20: 0.9% below); the
conv + matmul part equals fvcore's conv + linear. Activations are the elements convolutions and
matmuls output (fvcore's definition).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

CONV_LINEAR = ("Convolution", "GroupConvolution", "ConvolutionBackpropData", "GroupConvolutionBackpropData",
               "MatMul")
_FLOAT = ("f64", "f32", "f16", "bf16", "f8e4m3", "f8e5m2", "nf4", "f4e2m1", "f8e8m0")
_SMALL_INT = ("i8", "u8", "i4", "u4", "u2", "u3", "u6", "u1", "boolean")
_MOVES = frozenset({"Parameter", "Result", "Constant", "Convert", "Reshape", "Squeeze", "Unsqueeze", "Transpose",
                    "Concat", "Split", "VariadicSplit", "Slice", "StridedSlice", "Gather", "Broadcast", "ShapeOf",
                    "Pad", "FakeQuantize", "Range", "Tile"})
_SETTING_PORTS = {"FakeQuantize": (1, 2, 3, 4), "Interpolate": (1, 2, 3)}


@dataclass
class GraphCount:
    """What :func:`count_graph` found, per image."""

    params: int
    weight_bytes: int
    macs: int
    macs_conv_linear: int
    by_operator: dict[str, int]
    uncounted: dict[str, int]  # compute op type -> occurrences without a MAC formula (counted as 0)
    activations: int


def _prod(shape: Any) -> int:
    return math.prod(int(v) for v in shape)


def _consumers(output: Any) -> list[tuple[Any, int]]:
    """(node, input port) of everything ``output`` feeds, looking through Convert nodes."""
    out = []
    for target in output.get_target_inputs():
        node = target.get_node()
        if node.get_type_name() == "Convert":
            out.extend(_consumers(node.output(0)))
        else:
            out.append((node, target.get_index()))
    return out


def _decompression(node: Any, port: int) -> bool:
    """True when ``node`` (a Multiply or Subtract) rescales a compressed weight and ``port`` is its scale/zero point."""
    if node.get_type_name() not in ("Multiply", "Subtract") or port == 0:
        return False
    source = node.input_value(0).get_node()
    return source.get_type_name() in ("Convert", "Subtract")


def _is_weight(const: Any) -> bool:
    etype = const.get_output_element_type(0).get_type_name()
    if etype not in _FLOAT and etype not in _SMALL_INT:
        return False
    if _prod(const.get_output_shape(0)) < 2:
        return False
    uses = _consumers(const.output(0))
    return bool(uses) and not all(port in _SETTING_PORTS.get(node.get_type_name(), ()) or _decompression(node, port)
                                  for node, port in uses)


def _storage(const: Any) -> tuple[int, int] | None:
    """Where a constant's bytes live (address, size), to count a tensor shared by two nodes once."""
    try:
        data = const.get_data()
        return int(data.ctypes.data), int(data.nbytes)
    except Exception:  # types numpy cannot view (u4, nf4 ...): count the node
        return None


def weight_counts(graph: Any) -> tuple[int, int]:
    """(parameters, weight bytes) of ``graph``: its weight constants (module docstring)."""
    params = nbytes = 0
    seen: set[tuple[int, int]] = set()
    for op in graph.get_ordered_ops():
        if op.get_type_name() != "Constant" or not _is_weight(op):
            continue
        where = _storage(op)
        if where is not None:
            if where in seen:
                continue
            seen.add(where)
        params += _prod(op.get_output_shape(0))
        nbytes += int(op.get_byte_size())
    return params, nbytes


def _const_derived(node: Any, memo: dict[str, bool]) -> bool:
    """True when ``node`` computes only from constants (a weight's decompression, a folded shape)."""
    name = node.get_name()  # unique within the graph (friendly names need not be)
    if name not in memo:
        t = node.get_type_name()
        if t == "Constant":
            memo[name] = True
        elif t == "Parameter" or node.get_input_size() == 0:
            memo[name] = False
        else:
            memo[name] = False  # cycles cannot happen; set before recursing all the same
            memo[name] = all(_const_derived(node.input_value(i).get_node(), memo) for i in range(node.get_input_size()))
    return memo[name]


def _macs(op: Any) -> int | None:
    """MACs of one op at the graph's static shapes, or None when it has no formula."""
    t = op.get_type_name()
    out = op.get_output_shape(0)
    if t == "Convolution":
        return _prod(out) * _prod(op.get_input_shape(1)[1:])
    if t == "GroupConvolution":
        return _prod(out) * _prod(op.get_input_shape(1)[2:])
    if t == "ConvolutionBackpropData":
        return _prod(op.get_input_shape(0)) * _prod(op.get_input_shape(1)[1:])
    if t == "GroupConvolutionBackpropData":
        return _prod(op.get_input_shape(0)) * _prod(op.get_input_shape(1)[2:])
    if t == "MatMul":
        a = op.get_input_shape(0)
        transpose_a = bool(op.get_attributes().get("transpose_a", False))
        k = int(a[-2] if transpose_a and len(a) > 1 else a[-1])
        return _prod(out) * k
    if t == "BatchNormInference":
        return 2 * _prod(op.get_input_shape(0))
    if t in ("AdaptiveAvgPool", "ReduceMean"):
        return _prod(op.get_input_shape(0))
    if t == "AvgPool":
        return _prod(out) * _prod(op.get_attributes().get("kernel", []))
    if t == "Interpolate":
        mode = str(op.get_attributes().get("mode", "nearest"))
        taps = 4 if "cubic" in mode else 2 if "linear" in mode else 1
        return _prod(out) * taps ** max(len(out) - 2, 0)  # per spatial axis, as PyTorch's kernels compute
    return None


def count_graph(graph: Any, input_size: tuple[int, ...]) -> GraphCount:
    """Count ``graph`` (an ``openvino.Model``; not changed) at input ``input_size`` (C, H, W ...), per image."""
    from ghostcli.runtime.deployed import input_shape, static_graph

    batch = input_shape(graph)[0] or 1
    g = static_graph(graph, (batch, *input_size))
    params, nbytes = weight_counts(g)
    by_op: Counter[str] = Counter()
    uncounted: Counter[str] = Counter()
    activations = 0
    memo: dict[str, bool] = {}
    for op in g.get_ordered_ops():
        t = op.get_type_name()
        if t in _MOVES or op.get_output_size() == 0:
            continue
        if op.get_output_element_type(0).get_type_name() not in _FLOAT or _const_derived(op, memo):
            continue
        macs = _macs(op)
        if macs is None:
            uncounted[t] += 1
            continue
        by_op[t] += macs
        if t in CONV_LINEAR:
            activations += _prod(op.get_output_shape(0))
    per_image = {k: v // batch for k, v in by_op.most_common()}
    total = sum(per_image.values())
    return GraphCount(params=params, weight_bytes=nbytes, macs=total,
                      macs_conv_linear=sum(v for k, v in per_image.items() if k in CONV_LINEAR),
                      by_operator=per_image, uncounted=dict(uncounted.most_common()),
                      activations=activations // batch)
