"""Analysis: MACs (fvcore), parameters, activations, memory and latency, as dataclasses.

>>> from ghostcli.analysis import profile_model
>>> p = profile_model("resnet50", latency=False)   # doctest: +SKIP
>>> p.macs, p.params                                # doctest: +SKIP
(4111512576, 25557032)
"""

from ghostcli.analysis.memory import ForwardError
from ghostcli.analysis.profile import DEFAULT_RUNS, DEFAULT_WARMUP, compare, profile_model, profile_models
from ghostcli.analysis.report import (
    SCHEMA_VERSION,
    Comparison,
    Conditions,
    Environment,
    LatencyStats,
    MemoryStats,
    ModelProfile,
    ModuleStat,
    ProfileReport,
)

__all__ = [
    "DEFAULT_RUNS", "DEFAULT_WARMUP", "SCHEMA_VERSION", "Comparison", "Conditions", "Environment", "ForwardError",
    "LatencyStats", "MemoryStats", "ModelProfile", "ModuleStat", "ProfileReport", "compare", "profile_model",
    "profile_models",
]
