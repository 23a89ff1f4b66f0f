"""Numerical verification of an exported model against PyTorch.

An output passes when every element satisfies ``|got - ref| <= atol + rtol * |ref|``
(numpy's ``allclose`` rule). The reported ``max_rel`` is ``max(|got - ref| / max(|ref|, 1e-12))``
and is informative only: near-zero reference values make it large without failing the check.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

DEFAULT_ATOL = 1e-4
DEFAULT_RTOL = 1e-3
FP16_ATOL = 1e-2
FP16_RTOL = 1e-2


@dataclass
class VerifyResult:
    """Worst-case difference between a reference and an exported model's outputs."""

    max_abs: float
    max_rel: float
    passed: bool
    atol: float = DEFAULT_ATOL
    rtol: float = DEFAULT_RTOL
    backend: str = ""                                   # "onnxruntime", "openvino-cpu-f32", ...
    checks: list[str] = field(default_factory=list)     # what was compared ("batch 1", "batch 8 vs 1 per image")
    ref_max_abs: float = 0.0                            # largest |reference output|: the scale atol is judged against

    def describe(self) -> str:
        """One line: ``max abs 1.2e-06, max rel 3.4e-05 (atol 1e-04, rtol 1e-03): passed``."""
        verdict = "passed" if self.passed else "FAILED"
        return (f"max abs {self.max_abs:.3g}, max rel {self.max_rel:.3g} "
                f"(atol {self.atol:g}, rtol {self.rtol:g}): {verdict}")


def compare_outputs(ref: np.ndarray, got: np.ndarray, atol: float = DEFAULT_ATOL,
                    rtol: float = DEFAULT_RTOL) -> VerifyResult:
    """Compare ``got`` with ``ref`` elementwise; shapes must match (a mismatch fails)."""
    ref = np.asarray(ref, dtype=np.float64)
    got = np.asarray(got, dtype=np.float64)
    if ref.shape != got.shape:
        return VerifyResult(float("inf"), float("inf"), False, atol, rtol,
                            checks=[f"shape mismatch: expected {list(ref.shape)}, got {list(got.shape)}"])
    if ref.size == 0:
        return VerifyResult(0.0, 0.0, True, atol, rtol)
    diff = np.abs(got - ref)
    if not np.all(np.isfinite(got)):
        return VerifyResult(float("inf"), float("inf"), False, atol, rtol, checks=["non-finite outputs"])
    max_abs = float(diff.max())
    max_rel = float((diff / np.maximum(np.abs(ref), 1e-12)).max())
    passed = bool(np.all(diff <= atol + rtol * np.abs(ref)))
    return VerifyResult(max_abs, max_rel, passed, atol, rtol, ref_max_abs=float(np.abs(ref).max()))


def merge_results(results: Iterable[VerifyResult], backend: str = "") -> VerifyResult:
    """The worst of several comparisons (passes only when all pass)."""
    results = list(results)
    if not results:
        raise ValueError("merge_results needs at least one result")
    return VerifyResult(
        max_abs=max(r.max_abs for r in results),
        max_rel=max(r.max_rel for r in results),
        passed=all(r.passed for r in results),
        atol=results[0].atol,
        rtol=results[0].rtol,
        backend=backend or results[0].backend,
        checks=[c for r in results for c in r.checks],
        ref_max_abs=max(r.ref_max_abs for r in results),
    )


def default_tolerances(fp16: bool, atol: float | None, rtol: float | None) -> tuple[float, float]:
    """``(atol, rtol)``: the user's values, else 1e-4/1e-3 (FP32) or 1e-2/1e-2 (FP16 weights)."""
    da, dr = (FP16_ATOL, FP16_RTOL) if fp16 else (DEFAULT_ATOL, DEFAULT_RTOL)
    return (da if atol is None else float(atol), dr if rtol is None else float(rtol))
