"""``check``: measure a model and compare it against limits and a committed baseline (the CI gate).

Sizes and counts are deterministic and are compared exactly (with an optional tolerance
against the baseline). Latency is opt-in; the robust form times a *reference* model
interleaved in the same run and limits the ratio, because absolute milliseconds on shared CI
runners vary with the neighbours.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ghostcli.analysis.baseline import BaselineEntry, BaselineError, read_baseline, write_baseline
from ghostcli.analysis.check_keys import CHECK_KEYS, LIMIT_KEYS, CheckSettings, format_value
from ghostcli.analysis.report import CHECK_KIND, SCHEMA_VERSION, Conditions, Environment, RuntimeInfo
from ghostcli.errors import UsageError
from ghostcli.units import format_input_size

if TYPE_CHECKING:
    from ghostcli.loaded import DeployedModel, LoadedModel


@dataclass
class LimitResult:
    """One row of the verdict table."""

    name: str  # macs | params | weights | latency_ms | latency_ratio
    measured: float
    limit: float
    unit: str  # MAC | params | bytes | ms | x
    passed: bool
    source: str  # e.g. "`max_macs`" (a given setting), "ghostcli.toml", "baseline ci/base.json +2%"
    detail: str = ""


@dataclass
class CheckReport:
    """The result of :func:`run_check`."""

    model: str
    input_size: list[int]
    batch_size: int
    passed: bool
    results: list[LimitResult]
    measured: dict[str, float | None]
    environment: Environment
    baseline: str | None = None
    baseline_updated: bool = False
    config: str | None = None
    conditions: Conditions | None = None  # how latency was measured; None when nothing was timed
    format: str = "pytorch"  # pytorch | onnx | openvino: an exported model is counted on its graph
    runtime: RuntimeInfo | None = None  # what timed an exported model (PyTorch ones: `conditions`); None: untimed
    schema_version: str = SCHEMA_VERSION
    kind: str = CHECK_KIND

    @property
    def failures(self) -> list[LimitResult]:
        """Rows whose limit was exceeded."""
        return [r for r in self.results if not r.passed]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict."""
        from ghostcli.render import to_jsonable

        d = to_jsonable(self)
        return {"schema_version": d.pop("schema_version"), "kind": d.pop("kind"), **d}


def _refuse_impossible(settings: CheckSettings, update_baseline: bool) -> None:
    """Usage errors that need the whole settings (before anything is loaded), beyond a missing MODEL."""
    if all(getattr(settings, k.field) is None for k in LIMIT_KEYS) and settings.baseline is None:
        raise UsageError("nothing to check: give `max_macs`, `max_params`, `max_latency_ms` or `baseline` "
                         "(or set them in ghostcli.toml / [tool.ghostcli])")
    if update_baseline and settings.baseline is None:
        raise UsageError("`update_baseline` needs `baseline` FILE")
    if "tolerance" in settings.sources and settings.baseline is None:
        raise UsageError("`tolerance` is the growth allowed over a baseline: give `baseline` FILE "
                         "(limits such as `max_macs` are exact)")


def _same_input_size(settings: CheckSettings, base: BaselineEntry, model: LoadedModel | DeployedModel) -> None:
    """Refuse a baseline recorded at another input size: its counts would not be comparable."""
    given = settings.input_size or model.input_size
    if any(d is None for d in given):  # an exported model's dynamic input: profile asks for `input_size`
        return
    size = [int(d) for d in given if d is not None]
    if base.input_size is not None and size != base.input_size:
        was, now = format_input_size(tuple(base.input_size)), format_input_size(tuple(size))
        raise BaselineError(f"baseline {settings.baseline} was recorded at input size {was}, this check measures "
                            f"{now}: pass `input_size` {was} or re-create the baseline with `update_baseline`")


def run_check(settings: CheckSettings, *, load: Callable[[str], LoadedModel | DeployedModel],
              update_baseline: bool = False) -> CheckReport:
    """Measure the model, compare against every limit, and (optionally) rewrite the baseline.

    ``load`` turns the settings' MODEL names into loaded models (the CLI passes
    ``resolve_model_or_deployed``): a PyTorch model, or an exported ``.onnx`` / ``.xml`` file, which
    is counted on its graph and timed on its own runtime (:mod:`ghostcli.analysis.profile`); a
    setting that applies to PyTorch models only (`channels_last`) is refused for an exported one.

    Returns the report; the caller decides the exit code (3 when ``report.passed`` is False).
    Impossible settings raise :class:`~ghostcli.errors.UsageError` (timing ones those of
    ``ProfileOptions``) before any model is loaded, a bad baseline :class:`BaselineError`; messages
    name settings in backquotes (`` `baseline` ``), as :mod:`ghostcli.option_names` describes.
    """
    from ghostcli.analysis.profile import ProfileOptions, profile_models
    from ghostcli.fsutil import check_output
    from ghostcli.usercode import stdout_to_stderr

    if not settings.model:
        raise UsageError("no `model` given (pass it, or set 'model' in ghostcli.toml / [tool.ghostcli])")
    _refuse_impossible(settings, update_baseline)
    base = None
    if settings.baseline is not None:
        if update_baseline:  # refuse an unwritable path before minutes of measuring, not after
            check_output(settings.baseline, force=True)
        else:
            base = read_baseline(settings.baseline, settings.model)

    timed = settings.needs_latency or (update_baseline and settings.latency_reference is not None)
    options = ProfileOptions(input_size=settings.input_size, batch_sizes=(settings.batch_size,),
                             device=settings.device, threads=settings.threads, warmup=settings.warmup,
                             runs=settings.runs, latency=timed, memory=False, channels_last=settings.channels_last)
    specs = [settings.model] + ([settings.latency_reference] if timed and settings.latency_reference else [])
    with stdout_to_stderr():  # the models' own prints must not corrupt --json
        models = [load(spec) for spec in specs]
        if base is not None:
            _same_input_size(settings, base, models[0])
        report = profile_models(models, options=options)
    prof = report.models[0]
    median = prof.latency[0].median_ms if prof.latency else None
    ratio = report.comparisons[0].latency_ratio if report.comparisons else None
    ratio = 1.0 / ratio if ratio else None  # comparisons are against the first model: invert to model / reference
    measured: dict[str, float | None] = {"macs": prof.macs, "params": prof.params, "weight_bytes": prof.weight_bytes,
                                         "latency_median_ms": median, "latency_ratio": ratio}

    results: list[LimitResult] = []

    def add(name: str, value: float | None, limit: float | None, unit: str, source: str, detail: str = "") -> None:
        if limit is None or value is None:
            return
        results.append(LimitResult(name, float(value), float(limit), unit, value <= limit + 1e-9, source, detail))

    for key in CHECK_KEYS.values():
        if key.limit is not None:
            add(key.limit.name, measured[key.limit.measured], getattr(settings, key.field), key.unit,
                settings.sources.get(key.key, ""), key.limit.detail.format(reference=settings.latency_reference))
    if base is not None:
        _compare_baseline(settings, base, measured, add)

    updated = False
    if update_baseline and settings.baseline is not None:
        entry = BaselineEntry(name=prof.name, macs=prof.macs, params=prof.params, weight_bytes=prof.weight_bytes,
                              latency_median_ms=median, latency_reference=settings.latency_reference if ratio else None,
                              latency_ratio=ratio, batch_size=settings.batch_size, input_size=prof.input_size)
        write_baseline(settings.baseline, entry, environment=report.environment)
        updated = True

    return CheckReport(
        model=prof.name, input_size=prof.input_size, batch_size=settings.batch_size,
        passed=all(r.passed for r in results), results=results, measured=measured,
        environment=report.environment, baseline=str(settings.baseline) if settings.baseline else None,
        baseline_updated=updated, config=str(settings.config_path) if settings.config_path else None,
        conditions=report.conditions if timed else None, format=prof.format,
        runtime=prof.runtime if timed and prof.format != "pytorch" else None,
    )



def _compare_baseline(settings: CheckSettings, base: BaselineEntry, measured: dict[str, float | None],
                      add: Callable[..., None]) -> None:
    """Rows for MACs and params (``tolerance``) and, when asked, latency (``latency-tolerance``) vs the baseline."""
    tol = settings.tolerance
    label = f"baseline {settings.baseline} +{tol * 100:g}%"
    add("macs", measured["macs"], base.macs * (1 + tol), "MAC", label, f"baseline {format_value(base.macs, 'MAC')}")
    add("params", measured["params"], base.params * (1 + tol), "params", label,
        f"baseline {format_value(base.params, 'params')}")
    if settings.latency_tolerance is None:
        return
    lt = settings.latency_tolerance
    llabel = f"baseline {settings.baseline} +{lt * 100:g}%"
    ratio, median = measured["latency_ratio"], measured["latency_median_ms"]
    if base.latency_ratio is not None and ratio is not None and base.latency_reference == settings.latency_reference:
        add("latency_ratio", ratio, base.latency_ratio * (1 + lt), "x", llabel,
            f"vs {settings.latency_reference} in the same run; baseline ratio {base.latency_ratio:.3f}")
    elif base.latency_median_ms is not None and median is not None:
        add("latency_ms", median, base.latency_median_ms * (1 + lt), "ms", llabel,
            f"absolute, baseline {format_value(base.latency_median_ms, 'ms')} from another run: "
            "flaky on shared runners")
    else:
        raise BaselineError(f"baseline {settings.baseline} records no latency to compare against "
                            "(re-create it with `update_baseline` and a latency option)")
