"""``profile_model`` / ``profile_models``: MACs, parameters, memory and latency of one or more models."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Union

import torch
from torch import nn

from ghostcli.analysis.env import collect_environment, cpu_name
from ghostcli.analysis.latency import measure, openvino_compile, openvino_runner, summarize, torch_runner
from ghostcli.analysis.macs import count_macs
from ghostcli.analysis.params import count_params, module_params, weight_bytes
from ghostcli.analysis.report import (
    Comparison,
    Conditions,
    LatencyStats,
    MemoryStats,
    ModelProfile,
    ModuleStat,
    ProfileReport,
)
from ghostcli.errors import DeviceError, UsageError
from ghostcli.runtime.probe import CPU_METHOD, CUDA_METHOD, cuda_forward_peak, probe_forward
from ghostcli.units import check_timing

DEFAULT_WARMUP = 5
DEFAULT_RUNS = 50
DEFAULT_TIME_BUDGET_S = 5.0  # with default runs: stop timing a batch size after this long (at least 10 runs)
DEVICES = ("cpu", "cuda", "openvino")
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
_DTYPE_ALIASES = {"fp32": "float32", "f32": "float32", "fp16": "float16", "half": "float16", "f16": "float16",
                  "bf16": "bfloat16"}
_ACTIVATION_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d,
                      nn.ConvTranspose3d, nn.Linear)

ProgressFn = Callable[[str, int, int], None]
if TYPE_CHECKING:
    from ghostcli.loaded import LoadedModel

ModelLike = Union["LoadedModel", nn.Module]  # the caller resolves MODEL names (resolve.resolve_model)


def normalize_dtype(dtype: str) -> str:
    """``fp16``/``half`` -> ``float16`` ...; unknown names raise UsageError."""
    name = _DTYPE_ALIASES.get(dtype.lower(), dtype.lower())
    if name not in DTYPES:
        raise UsageError(f"unknown dtype {dtype!r} (choose float32, float16 or bfloat16)")
    return name


def validate_options(*, device: str, dtype: str, batch_sizes: Sequence[int], warmup: int, runs: int,
                     threads: int | None, ov_precision: str | None, depth: int,
                     channels_last: bool = False) -> None:
    """Raise UsageError/DeviceError for impossible settings, before any model is built."""
    if device not in DEVICES:
        raise UsageError(f"unknown device {device!r} (choose cpu, cuda or openvino)")
    if not batch_sizes:
        raise UsageError("at least one batch size is needed")
    for b in batch_sizes:
        if int(b) < 1:
            raise UsageError(f"batch size must be at least 1, got {b}")
    check_timing(runs, warmup, threads, runs_hint=" (use --no-latency to skip timing)")
    if depth < 0:
        raise UsageError(f"--depth must be 0 or more, got {depth}")
    if ov_precision is not None:
        if device != "openvino":
            raise UsageError("--ov-precision applies only with --device openvino")
        if ov_precision not in ("f32", "bf16", "f16"):
            raise UsageError(f"unknown --ov-precision {ov_precision!r} (choose f32, bf16 or f16)")
    if device == "openvino" and dtype != "float32":
        raise UsageError("--dtype applies to cpu and cuda; with --device openvino use --ov-precision")
    if device == "openvino" and channels_last:
        raise UsageError("--channels-last applies to cpu and cuda; OpenVINO chooses its own memory layouts")
    if device == "cuda" and not torch.cuda.is_available():
        built = torch.version.cuda
        why = "no NVIDIA GPU is visible" if built else "this torch build has no CUDA support"
        raise DeviceError(f"--device cuda: CUDA is not available ({why}; torch {torch.__version__})")


def _unpack(item: ModelLike) -> tuple[nn.Module, str, str, tuple[int, ...] | None, bool]:
    """(model, display name, source, default input size, owned) for a LoadedModel or nn.Module."""
    if isinstance(item, nn.Module):
        return item.eval(), type(item).__name__, f"module:{type(item).__name__}", None, False
    if isinstance(item, str):
        raise UsageError(f"profile takes loaded models: resolve {item!r} with ghostcli.resolve_model first")
    return item.model.eval(), item.name, item.recipe.source, tuple(item.input_size), True


def _tree(model: nn.Module, by_module: dict[str, int], layers: dict[str, Any], depth: int) -> list[ModuleStat]:
    rows = []
    for name, mod in model.named_modules():
        d = 0 if name == "" else name.count(".") + 1
        if d > depth:
            continue
        rec = layers.get(name)
        rows.append(ModuleStat(name=name, type=type(mod).__name__, depth=d, macs=int(by_module.get(name, 0)),
                               params=module_params(mod), output_shape=rec.output_shape if rec else None,
                               activations=rec.output_numel if rec else None))
    return rows


def _leaves(model: nn.Module, by_module: dict[str, int], layers: dict[str, Any]) -> list[ModuleStat]:
    rows = []
    for name, mod in model.named_modules():
        if name == "" or any(True for _ in mod.children()) or name not in layers:
            continue
        rec = layers[name]
        rows.append(ModuleStat(name=name, type=type(mod).__name__, depth=name.count(".") + 1,
                               macs=int(by_module.get(name, 0)), params=module_params(mod),
                               output_shape=rec.output_shape, activations=rec.output_numel))
    return rows


def _static_profile(model: nn.Module, name: str, source: str, size: tuple[int, ...], *, depth: int,
                    per_layer: bool) -> ModelProfile:
    """MACs, params, activations and layer shapes at batch 1, float32, on CPU."""
    x = torch.randn(1, *size)
    probe = probe_forward(model, x, model_name=name, track_memory=False)
    mc = count_macs(model, x)
    total, trainable = count_params(model)
    named = dict(model.named_modules())
    acts = sum(rec.output_numel for n, rec in probe.layers.items() if isinstance(named.get(n), _ACTIVATION_LAYERS))
    prof = ModelProfile(
        name=name, source=source, input_size=list(size), macs=mc.total, macs_conv_linear=mc.conv_linear,
        flops=2 * mc.total, macs_by_operator=mc.by_operator, uncounted_ops=mc.uncounted,
        params=total, trainable_params=trainable, weight_bytes=weight_bytes(model), activations=int(acts),
    )
    if depth > 0:
        prof.modules = _tree(model, mc.by_module, probe.layers, depth)
    if per_layer:
        prof.layers = _leaves(model, mc.by_module, probe.layers)
    if mc.uncounted:
        prof.notes.append("not counted (no MAC formula in fvcore): "
                          + ", ".join(f"{k} x{v}" for k, v in mc.uncounted.items()))
    return prof


def _example(batch: int, size: tuple[int, ...], device: str, dtype: torch.dtype,
             fmt: torch.memory_format) -> torch.Tensor:
    x = torch.randn(batch, *size, dtype=dtype, device="cuda" if device == "cuda" else "cpu")
    return x.contiguous(memory_format=fmt) if x.dim() == 4 else x


def _memory(model: nn.Module, size: tuple[int, ...], batch: int, device: str, dtype: torch.dtype,
            name: str, fmt: torch.memory_format = torch.contiguous_format) -> MemoryStats:
    x = _example(batch, size, device, dtype, fmt)
    w = weight_bytes(model)
    inp = x.numel() * x.element_size()
    if device == "cuda":
        peak, extra = cuda_forward_peak(model, x)
        return MemoryStats(batch, w, inp, activations_peak_bytes=extra, peak_bytes=peak, method=CUDA_METHOD)
    if device == "openvino":
        return MemoryStats(batch, w, inp, None, None, method="not measured for OpenVINO (runtime-internal buffers)")
    probe = probe_forward(model, x, model_name=name, track_memory=True)
    act = probe.activations_peak_bytes or 0
    return MemoryStats(batch, w, inp, activations_peak_bytes=act, peak_bytes=w + inp + act, method=CPU_METHOD)


def profile_models(
    models: Sequence[ModelLike],
    *,
    input_size: tuple[int, int, int] | None = None,
    batch_sizes: Sequence[int] = (1,),
    device: str = "cpu",
    dtype: str = "float32",
    ov_precision: str | None = None,
    threads: int | None = None,
    warmup: int = DEFAULT_WARMUP,
    runs: int = DEFAULT_RUNS,
    time_budget_s: float | None = None,
    latency: bool = True,
    memory: bool = True,
    depth: int = 0,
    per_layer: bool = False,
    channels_last: bool = False,
    layer_times: bool = False,
    progress: ProgressFn | None = None,
) -> ProfileReport:
    """Profile each model (``LoadedModel`` or ``nn.Module``) under the same conditions.

    MACs, parameters and activations are counted at batch 1 in float32; memory and
    latency at each of ``batch_sizes`` on ``device`` in ``dtype``. Latency runs of
    several models are interleaved. The first model is the reference for ratios.
    ``time_budget_s`` ends timing of a batch size early (after at least 10 runs) once that
    many seconds were spent; the CLI sets it only when ``--runs`` was not given.
    ``channels_last`` runs models and inputs in NHWC memory format on cpu/cuda (Ghost-ResNet-50
    runs 0.64x of ResNet-50 that way on one CPU thread, 0.69x in NCHW: docs/ghostify.md).
    ``layer_times`` adds the time per module at the first batch size: OpenVINO's per-node
    counters, or forward hooks in PyTorch (:mod:`ghostcli.analysis.layer_times`).
    """
    dtype = normalize_dtype(dtype)
    batch_sizes = [int(b) for b in batch_sizes]
    validate_options(device=device, dtype=dtype, batch_sizes=batch_sizes, warmup=warmup, runs=runs,
                     threads=threads, ov_precision=ov_precision, depth=depth, channels_last=channels_last)
    if not models:
        raise UsageError("no MODEL given")
    old_threads = torch.get_num_threads()
    if threads is not None and device != "openvino":
        torch.set_num_threads(threads)
    try:
        return _profile(models, input_size=input_size, batch_sizes=batch_sizes, device=device, dtype=dtype,
                        ov_precision=ov_precision, threads=threads, warmup=warmup, runs=runs, time_budget_s=time_budget_s,
                        latency=latency, memory=memory, depth=depth, per_layer=per_layer,
                        channels_last=channels_last, layer_times=layer_times,
                        progress=progress)
    finally:
        torch.set_num_threads(old_threads)


def _profile(models: Sequence[ModelLike], *, input_size: tuple[int, int, int] | None, batch_sizes: list[int],
             device: str, dtype: str, ov_precision: str | None, threads: int | None, warmup: int, runs: int,
             time_budget_s: float | None, latency: bool, memory: bool, depth: int, per_layer: bool,
             channels_last: bool, layer_times: bool, progress: ProgressFn | None) -> ProfileReport:
    tdtype = DTYPES[dtype]
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    profiles: list[ModelProfile] = []
    modules: list[nn.Module] = []
    n = len(models)
    for i, item in enumerate(models):
        if progress:
            progress(f"loading/counting {item if isinstance(item, str) else type(item).__name__}", i, n)
        model, name, source, default_size, owned = _unpack(item)
        size = tuple(input_size or default_size or (3, 224, 224))
        prof = _static_profile(model, name, source, size, depth=depth, per_layer=per_layer)
        if device != "openvino" and (device != "cpu" or tdtype != torch.float32 or channels_last):
            if not owned:
                model = copy.deepcopy(model)
            try:
                layout = {"memory_format": fmt} if channels_last else {}  # else keep the model's own
                model = model.to(device="cuda" if device == "cuda" else "cpu", dtype=tdtype, **layout)
            except Exception as exc:
                raise DeviceError(f"cannot move {name} to {device}/{dtype}: {exc}") from None
            prof.weight_bytes = weight_bytes(model)
        profiles.append(prof)
        modules.append(model)

    precision = None
    device_name = cpu_name()
    if device == "cuda":
        device_name = torch.cuda.get_device_name(0)
    if memory:
        for prof, model in zip(profiles, modules):
            for b in batch_sizes:
                try:
                    prof.memory.append(_memory(model, tuple(prof.input_size), b, device, tdtype, prof.name, fmt))
                except RuntimeError as exc:  # e.g. an op without a float16 CPU kernel
                    raise DeviceError(f"{prof.name} cannot run on {device} in {dtype}: "
                                      f"{(str(exc).splitlines() or [''])[0][:200]}") from None

    if layer_times:  # before the latency models are compiled: with those alive, the PERF_COUNT copies'
        # stage-1 layers of Ghost-ResNet-50 came out up to 2x slower than alone (measured, cause unknown)
        from ghostcli.analysis.layer_times import openvino_layer_times, torch_layer_times

        if progress:
            progress("layer times", 0, 1)
        if device == "openvino":
            per_model = openvino_layer_times(modules, [torch.randn(batch_sizes[0], *p.input_size) for p in profiles],
                                             precision=ov_precision, threads=threads)
        else:
            per_model = torch_layer_times(
                modules, [_example(batch_sizes[0], tuple(p.input_size), device, tdtype, fmt) for p in profiles])
        for prof, times in zip(profiles, per_model):
            prof.layer_times = times
    ov_threads = threads
    if latency:
        for b in batch_sizes:
            runners = []
            for prof, model in zip(profiles, modules):
                size = tuple(prof.input_size)
                if device == "openvino":
                    compiled, precision = openvino_compile(model, torch.randn(b, *size), precision=ov_precision,
                                                           threads=threads)
                    ov_threads = int(compiled.get_property("INFERENCE_NUM_THREADS") or 0) or threads
                    runners.append(openvino_runner(compiled, torch.randn(b, *size)))
                else:
                    runners.append(torch_runner(model, _example(b, size, device, tdtype, fmt)))
            step = (lambda d, t, b=b: progress(f"timing batch {b}", d, t)) if progress else None
            try:
                times = measure(runners, warmup=warmup, runs=runs, max_seconds=time_budget_s, on_step=step)
            except RuntimeError as exc:
                raise DeviceError(f"forward failed on {device} in {dtype}: "
                                  f"{(str(exc).splitlines() or [''])[0][:200]}") from None
            for prof, t in zip(profiles, times):
                prof.latency.append(summarize(t, batch_size=b, warmup=warmup))
    if device == "openvino":
        import openvino as ov

        device_name = "OpenVINO CPU: " + str(ov.Core().get_property("CPU", "FULL_DEVICE_NAME"))

    conditions = Conditions(
        device=device, device_name=device_name, dtype=dtype,
        threads=ov_threads if device == "openvino" else torch.get_num_threads(),
        batch_sizes=batch_sizes, warmup=warmup if latency else 0,
        runs=(min(p.latency[0].runs for p in profiles) if profiles[0].latency else runs) if latency else 0,
        inference_precision=precision, performance_hint="LATENCY" if device == "openvino" else None,
        timer={"cuda": "CUDA events + synchronize", "openvino": "time.perf_counter around infer()"}.get(
            device, "time.perf_counter around forward()"),
        memory_format="channels_last" if channels_last else "contiguous",
    )
    report = ProfileReport(models=profiles, conditions=conditions,
                           environment=collect_environment(with_cuda=device == "cuda"))
    report.comparisons = [compare(p, profiles[0]) for p in profiles[1:]]
    return report


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0 or (isinstance(b, float) and math.isnan(b)):
        return None
    return a / b


def compare(this: ModelProfile, ref: ModelProfile) -> Comparison:
    """Ratios of ``this`` against ``ref`` (this / ref; speedup = ref latency / this latency)."""
    lat_this = this.latency[0].median_ms if this.latency else None
    lat_ref = ref.latency[0].median_ms if ref.latency else None
    return Comparison(
        name=this.name, reference=ref.name,
        macs_ratio=_ratio(this.macs, ref.macs), params_ratio=_ratio(this.params, ref.params),
        weight_bytes_ratio=_ratio(this.weight_bytes, ref.weight_bytes),
        latency_ratio=_ratio(lat_this, lat_ref), speedup=_ratio(lat_ref, lat_this),
    )


def profile_model(model: ModelLike, **options: Any) -> ModelProfile:
    """Profile one model; ``options`` as for :func:`profile_models`. Returns its :class:`ModelProfile`."""
    return profile_models([model], **options).models[0]


__all__ = ["DEFAULT_RUNS", "DEFAULT_TIME_BUDGET_S", "DEFAULT_WARMUP", "LatencyStats", "compare", "normalize_dtype", "profile_model",
           "profile_models", "validate_options"]
