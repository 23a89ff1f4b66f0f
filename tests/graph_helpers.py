"""Graph checks only the tests need (the library's own are in ghostcli.deploy.graph)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def openvino_bias_adds(model_or_path: Any) -> int:
    """Adds of a constant straight after a (Group)Convolution: how OpenVINO IR spells a conv bias.

    The CPU plugin fuses them into the convolution; any other Add is a real one (residual ...).
    """
    from ghostcli.runtime.openvino import core

    model = core().read_model(str(model_or_path)) if isinstance(model_or_path, (str, Path)) else model_or_path
    count = 0
    for op in model.get_ordered_ops():
        if op.get_type_name() != "Add":
            continue
        kinds = sorted(op.input_value(i).get_node().get_type_name() for i in range(op.get_input_size()))
        count += kinds in (["Constant", "Convolution"], ["Constant", "GroupConvolution"])
    return count
