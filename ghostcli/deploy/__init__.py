"""Deployment: ONNX / OpenVINO export with numerical verification, graph inspection, INT8 quantization.

Names are imported on first use so that ``import ghostcli.deploy`` stays cheap:

- :func:`export_model` / :class:`ExportResult` (``ghostcli.deploy.export``), :class:`ExportOptions`
  (``ghostcli.deploy.options``)
- :func:`fold_batchnorm` (``ghostcli.fold``)
- :func:`compare_outputs` / :class:`VerifyResult` (``ghostcli.deploy.verify``)
- :func:`to_openvino`, :func:`compile_cpu` (``ghostcli.runtime.openvino``), :func:`save_ir` (``ghostcli.deploy.openvino_export``)
- :func:`quantize_model` / :class:`QuantizeResult` (``ghostcli.deploy.quantize``), :class:`QuantizeOptions`
  (``ghostcli.deploy.options``)
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "export_model": "ghostcli.deploy.export",
    "ExportResult": "ghostcli.deploy.export",
    "ExportOptions": "ghostcli.deploy.options",
    "fold_batchnorm": "ghostcli.fold",
    "compare_outputs": "ghostcli.deploy.verify",
    "VerifyResult": "ghostcli.deploy.verify",
    "to_openvino": "ghostcli.runtime.openvino",
    "compile_cpu": "ghostcli.runtime.openvino",
    "save_ir": "ghostcli.deploy.openvino_export",
    "onnx_op_counts": "ghostcli.deploy.graph",
    "openvino_op_counts": "ghostcli.deploy.graph",
    "quantize_model": "ghostcli.deploy.quantize",
    "QuantizeResult": "ghostcli.deploy.quantize",
    "QuantizeOptions": "ghostcli.deploy.options",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ghostcli.deploy' has no attribute {name!r}")
