"""PyTorch -> ONNX with the TorchScript-based exporter, ``onnx.checker``, onnxsim, external data.

Why the TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``): torch 2.14
defaults to the dynamo exporter, which needs the ``onnxscript`` package (not a ghostcli
dependency) and emits opset-18+ graphs built from ``torch.export`` decompositions. The
TorchScript exporter traces the eval-mode module directly, runs constant folding, keeps
``Conv``/``Concat`` as single ops and produces graphs that onnxsim, onnxruntime and
OpenVINO all read; it is deprecated upstream but still shipped and tested in torch 2.14.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ghostcli.deploy.options import EXTERNAL_DATA_THRESHOLD
from ghostcli.errors import ExportError, one_line
from ghostcli.runtime.onnx import captured_fd2

# A single protobuf cannot exceed 2 GiB; EXTERNAL_DATA_THRESHOLD keeps a margin for the graph itself.
PROTOBUF_LIMIT = 2**31
EXPORTER = "torchscript"

_ONNX_ITEMSIZE = {1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8, 16: 2}


def _unsupported_op(exc: BaseException) -> str | None:
    text = str(exc)
    m = re.search(r"operator '([^']+)'", text) or re.search(r"(aten::\w+|prim::\w+)", text)
    return m.group(1) if m else None


def torch_to_onnx(model: nn.Module, path: str | Path, input_shape: tuple[int, ...], *,
                  dynamic_batch: bool = False, opset: int | None = None) -> None:
    """Export an eval-mode ``model`` to ``path`` (TorchScript exporter, constant folding on).

    The graph has one input ``input`` and one output ``output``; with ``dynamic_batch``
    their first dimension is the symbolic ``batch``. Tensors larger than protobuf's
    limit are written by torch as external data beside ``path``.
    """
    model = model.eval()
    x = torch.randn(*input_shape)
    dyn = {"input": {0: "batch"}, "output": {0: "batch"}} if dynamic_batch else None
    try:
        with torch.no_grad(), warnings.catch_warnings(), captured_fd2():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model, (x,), str(path), dynamo=False, verbose=False, export_params=True, opset_version=opset,
                do_constant_folding=True, input_names=["input"], output_names=["output"],
                dynamic_axes=dyn, training=torch.onnx.TrainingMode.EVAL,
            )
    except Exception as exc:  # UnsupportedOperatorError, SymbolicValueError, tracing errors
        op = _unsupported_op(exc)
        where = f" at opset {opset}" if opset else ""
        if op and ("not supported" in str(exc) or "Unsupported" in type(exc).__name__):
            raise ExportError(f"the ONNX exporter cannot handle operator {op}{where} "
                              "(try another `opset`, or `format` openvino)") from exc
        first = one_line(exc, 300, first_line=True).split("[Caused by")[0].strip()
        raise ExportError(f"ONNX export failed{where}: {first}") from exc


def tensor_bytes(proto: Any) -> int:
    """Bytes held by the graph's initializers (and Constant nodes), without serializing."""
    total = 0
    tensors = list(proto.graph.initializer)
    for node in proto.graph.node:
        tensors += [a.t for a in node.attribute if a.HasField("t")]
    for t in tensors:
        if t.raw_data:
            total += len(t.raw_data)
        else:
            n = int(np.prod(t.dims)) if len(t.dims) else 1
            total += n * _ONNX_ITEMSIZE.get(t.data_type, 4)
    return total


def needs_external_data(proto: Any, threshold: int = EXTERNAL_DATA_THRESHOLD) -> bool:
    """True when the weights are too large for one self-contained ``.onnx`` file."""
    return tensor_bytes(proto) > threshold


def check_model(proto: Any) -> None:
    """Run ``onnx.checker`` (full check, with shape inference); raise ExportError on failure."""
    import onnx

    try:
        if tensor_bytes(proto) < EXTERNAL_DATA_THRESHOLD:
            onnx.checker.check_model(proto, full_check=True)
        else:  # too large to serialize for the checker; check the structure only
            onnx.checker.check_graph(proto.graph)
    except Exception as exc:
        raise ExportError(f"onnx.checker rejected the exported model: {one_line(exc, 300)}") from exc


def simplify(proto: Any) -> tuple[Any, str]:
    """Run onnxsim; returns ``(model, status)`` where status is ``ok`` or ``failed: <why>``.

    On failure the unsimplified model is returned unchanged.
    """
    try:
        import onnxsim
    except ImportError:
        return proto, "failed: onnxsim is not installed"
    if tensor_bytes(proto) >= EXTERNAL_DATA_THRESHOLD:
        return proto, "failed: model over 2 GiB, onnxsim needs a single protobuf"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            simplified, ok = onnxsim.simplify(proto)
    except Exception as exc:  # noqa: BLE001 - onnxsim raises anything; the unsimplified model is kept
        return proto, f"failed: {one_line(exc, first_line=True)}"
    if not ok:
        return proto, "failed: onnxsim's own check of the simplified model did not pass"
    return simplified, "ok"


def save(proto: Any, path: str | Path, *, external_data: bool) -> list[Path]:
    """Write ``proto`` to ``path``; with ``external_data`` all weights go to ``<name>.data``.

    Returns the files written.
    """
    import onnx

    path = Path(path)
    if external_data:
        location = path.name + ".data"
        onnx.save_model(proto, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=location, size_threshold=0)
        return [path, path.with_name(location)]
    onnx.save_model(proto, str(path))
    return [path]
