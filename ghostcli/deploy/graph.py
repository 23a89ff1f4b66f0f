"""Inspecting exported graphs: op counts for ONNX and OpenVINO, executed precisions at run time.

Used by ``ghostcli export`` (the op table), by the tests (a Ghost graph must hold no
Slice and no BatchNormalization) and when studying a quantized model.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

# Ops that stand for a BatchNorm that was not folded into a conv.
BN_OPS = ("BatchNormalization", "BatchNormInference")


def _onnx_nodes(graph: Any) -> list[Any]:
    nodes = []
    for node in graph.node:
        nodes.append(node)
        for attr in node.attribute:  # If / Loop / Scan bodies
            if attr.HasField("g"):
                nodes += _onnx_nodes(attr.g)
            for g in attr.graphs:
                nodes += _onnx_nodes(g)
    return nodes


def load_onnx(model_or_path: Any) -> Any:
    """A ``ModelProto`` from a proto or a path (external data is not loaded: not needed to count)."""
    if isinstance(model_or_path, (str, Path)):
        import onnx

        return onnx.load(str(model_or_path), load_external_data=False)
    return model_or_path


def onnx_op_counts(model_or_path: Any) -> dict[str, int]:
    """``{op_type: count}`` over an ONNX model's nodes, sub-graphs included, most frequent first."""
    proto = load_onnx(model_or_path)
    return dict(Counter(n.op_type for n in _onnx_nodes(proto.graph)).most_common())


def onnx_slices_after_concat(model_or_path: Any) -> int:
    """Slice nodes fed directly by a Concat: the channel cut of a Ghost module whose channels don't divide."""
    proto = load_onnx(model_or_path)
    nodes = _onnx_nodes(proto.graph)
    concat_out = {o for n in nodes if n.op_type == "Concat" for o in n.output}
    return sum(1 for n in nodes if n.op_type == "Slice" and n.input and n.input[0] in concat_out)


def _ov_model(model_or_path: Any) -> Any:
    if isinstance(model_or_path, (str, Path)):
        from ghostcli.runtime.openvino import core

        return core().read_model(str(model_or_path))
    return model_or_path


def openvino_op_counts(model_or_path: Any, *, skip_io: bool = True) -> dict[str, int]:
    """``{type name: count}`` over an ``openvino.Model`` (or an IR/ONNX path).

    With ``skip_io``, Parameter, Result and Constant nodes are left out.
    """
    skip = {"Parameter", "Result", "Constant"} if skip_io else set()
    ops = _ov_model(model_or_path).get_ordered_ops()
    counts = Counter(op.get_type_name() for op in ops if op.get_type_name() not in skip)
    return dict(counts.most_common())


def openvino_slices_after_concat(model_or_path: Any) -> int:
    """(Strided)Slice ops fed directly by a Concat in an OpenVINO model (Ghost channel cuts)."""
    count = 0
    for op in _ov_model(model_or_path).get_ordered_ops():
        if op.get_type_name() in ("Slice", "StridedSlice", "Split", "VariadicSplit"):
            src = op.input_value(0).get_node()
            count += src.get_type_name() == "Concat"
    return count


def bn_leftovers(counts: dict[str, int]) -> int:
    """How many BatchNorm ops a count table still holds."""
    return sum(counts.get(op, 0) for op in BN_OPS)
