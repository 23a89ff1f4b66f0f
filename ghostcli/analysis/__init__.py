"""Analysis: MACs (fvcore), parameters, activations, memory and latency, as dataclasses.

>>> from ghostcli.analysis import ProfileOptions, profile_model
>>> from ghostcli import resolve_model
>>> p = profile_model(resolve_model("resnet50"), options=ProfileOptions(latency=False))   # doctest: +SKIP
>>> p.macs, p.params                                # doctest: +SKIP
(4111512576, 25557032)

``check`` (the CI gate) lives in ``check_keys`` (the table of settings), ``check_config``
(config files), ``baseline`` (the baseline file) and ``check`` (``run_check``).

Names are imported on first use, so that ``check_keys``, ``check_config``, ``baseline`` and
``report`` (no torch) stay cheap to import.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "ForwardError": "ghostcli.runtime.probe",
    **{n: "ghostcli.analysis.check_keys" for n in ("CHECK_KEYS", "CheckKey", "CheckSettings")},
    **{n: "ghostcli.analysis.check_config" for n in ("build_settings", "find_config", "read_config")},
    **{n: "ghostcli.analysis.baseline" for n in ("BaselineEntry", "BaselineError", "read_baseline")},
    **{n: "ghostcli.analysis.check" for n in ("CheckReport", "LimitResult", "run_check")},
    **{n: "ghostcli.analysis.profile" for n in ("DEFAULT_RUNS", "DEFAULT_WARMUP", "ProfileOptions", "compare",
                                                 "profile_model", "profile_models")},
    **{n: "ghostcli.analysis.report" for n in ("SCHEMA_VERSION", "Comparison", "Conditions", "Environment",
                                                "LatencyStats", "MemoryStats", "ModelProfile", "ModuleStat",
                                                "ProfileReport")},
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ghostcli.analysis' has no attribute {name!r}")
