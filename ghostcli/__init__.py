"""ghostcli: make CNNs cheaper with GhostNet's Ghost module, and measure what it bought.

The package namespace stays light (``ghostcli --help`` must not import torch);
the library functions below are imported on first use.
"""

from __future__ import annotations

import sys
from typing import Any

__version__ = "0.1.0"

# OpenVINO's converter and NNCF send usage events to Intel's analytics (forking the process for each one)
# unless the user opted out; ghostcli sends nothing anywhere (docs/security.md). With their telemetry package
# unimportable both use the no-op stubs they ship for that case. ghostcli.runtime.openvino.no_telemetry
# switches it off where the package was imported before ghostcli.
sys.modules.setdefault("openvino_telemetry", None)  # type: ignore[arg-type]

_LAZY = {
    "GhostModule": "ghostcli.layers",
    "GhostBottleneck": "ghostcli.layers",
    "SqueezeExcite": "ghostcli.layers",
    "build_model": "ghostcli.models",
    "list_models": "ghostcli.models",
    "resolve_model": "ghostcli.resolve",
    "save_artifact": "ghostcli.artifacts",
    "load_artifact": "ghostcli.resolve",
    "ghostify": "ghostcli.convert",
    "register_converter": "ghostcli.convert",
    "profile_model": "ghostcli.analysis",
    "export_model": "ghostcli.deploy",
    "quantize_model": "ghostcli.deploy",
    "train_model": "ghostcli.train",
    "evaluate_model": "ghostcli.train",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ghostcli' has no attribute {name!r}")
