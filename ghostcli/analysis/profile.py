"""``profile_model`` / ``profile_models``: MACs, parameters, memory and latency of one or more models.

A model is a PyTorch model (a :class:`LoadedModel` or an ``nn.Module``: counted with fvcore, run in
PyTorch on cpu/cuda or converted to OpenVINO) or an exported file (a :class:`DeployedModel`: counted
on its graph by :mod:`ghostcli.analysis.graph_counts`, run on its own runtime; see :func:`runtime_of`).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ghostcli.analysis.env import collect_environment, cpu_name
from ghostcli.analysis.latency import latency_stats, openvino_compile
from ghostcli.analysis.macs import count_macs
from ghostcli.analysis.params import module_params, total_and_trainable_params, weight_bytes
from ghostcli.analysis.report import (
    Comparison,
    Conditions,
    LatencyStats,
    MemoryStats,
    ModelProfile,
    ModuleStat,
    ProfileReport,
    RuntimeInfo,
)
from ghostcli.errors import DeviceError, UsageError, one_line
from ghostcli.loaded import DeployedModel, LoadedModel
from ghostcli.progress import Progress, no_progress
from ghostcli.runtime.device import usable_cpus
from ghostcli.runtime.probe import CPU_METHOD, CUDA_METHOD, LayerRecord, cuda_forward_peak, probe_forward
from ghostcli.runtime.timing import Runner, openvino_runner, time_interleaved, torch_runner
from ghostcli.units import check_timing, format_input_size

DEFAULT_WARMUP = 5
DEFAULT_RUNS = 50
DEFAULT_TIME_BUDGET_S = 5.0  # with default runs: stop timing a batch size after this long (at least 10 runs)
DEFAULT_INPUT_SIZE = (3, 224, 224)  # a bare nn.Module profiled without ProfileOptions.input_size
DEVICES = ("cpu", "cuda", "openvino")
OV_PRECISIONS = ("f32", "bf16", "f16")
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
_DTYPE_ALIASES = {"fp32": "float32", "f32": "float32", "fp16": "float16", "half": "float16", "f16": "float16",
                  "bf16": "bfloat16"}
_ACTIVATION_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d,
                      nn.ConvTranspose3d, nn.Linear)


def normalize_dtype(dtype: str) -> str:
    """``fp16``/``half`` -> ``float16`` ...; unknown names raise UsageError."""
    name = _DTYPE_ALIASES.get(dtype.lower(), dtype.lower())
    if name not in DTYPES:
        raise UsageError(f"unknown dtype {dtype!r} (choose float32, float16 or bfloat16)")
    return name


@dataclass(frozen=True)
class ProfileOptions:
    """How :func:`profile_models` measures; checked when made, before any model is built or timed.

    MACs, parameters and activations are counted at batch 1 in float32 at ``input_size`` (C, H, W;
    default: each model's own, 3x224x224 for a bare ``nn.Module``); memory and latency at each of
    ``batch_sizes`` on ``device`` (cpu, cuda or openvino) in ``dtype`` (aliases such as ``fp16`` are
    normalized), with ``warmup`` untimed and ``runs`` timed forwards on ``threads`` CPU threads.
    ``time_budget_s`` ends the timing of a batch size early (after at least 10 runs) once that many
    seconds were spent. ``ov_precision`` is OpenVINO's inference precision hint (f32, bf16, f16).
    Exported models (:class:`DeployedModel`) run on their own runtime whatever ``device`` says for the
    PyTorch models (:func:`runtime_of`); ``dtype`` and ``channels_last`` apply to PyTorch models only.
    ``channels_last`` runs cpu/cuda models and inputs in NHWC memory format (Ghost-ResNet-50 runs 0.64x
    of ResNet-50 that way on one CPU thread, 0.69x in NCHW: docs/ghostify.md). ``depth`` > 0 adds the
    module tree, ``per_layer`` every leaf layer, ``layer_times`` the time per module at the first batch
    size (OpenVINO's per-node counters, or forward hooks in PyTorch: :mod:`ghostcli.analysis.layer_times`).

    Impossible values raise :class:`~ghostcli.errors.UsageError`, CUDA asked for but missing
    :class:`~ghostcli.errors.DeviceError`; their messages name fields in backquotes (`` `depth` ``), which
    the command line shows as its options (:mod:`ghostcli.option_names`).
    """

    input_size: tuple[int, ...] | None = None
    batch_sizes: Sequence[int] = (1,)
    device: str = "cpu"
    dtype: str = "float32"
    ov_precision: str | None = None
    threads: int | None = None
    warmup: int = DEFAULT_WARMUP
    runs: int = DEFAULT_RUNS
    time_budget_s: float | None = None
    latency: bool = True
    memory: bool = True
    depth: int = 0
    per_layer: bool = False
    channels_last: bool = False
    layer_times: bool = False

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalize once, here
        set_(self, "device", str(self.device).strip().lower())
        set_(self, "dtype", normalize_dtype(self.dtype))
        set_(self, "batch_sizes", tuple(int(b) for b in self.batch_sizes))
        if self.input_size is not None:
            set_(self, "input_size", tuple(int(v) for v in self.input_size))
        self._check()

    def _check(self) -> None:
        device, dtype, depth, ov = self.device, self.dtype, self.depth, self.ov_precision
        if device not in DEVICES:
            raise UsageError(f"unknown device {device!r} (choose cpu, cuda or openvino)")
        if not self.batch_sizes:
            raise UsageError("at least one batch size is needed")
        for b in self.batch_sizes:
            if b < 1:
                raise UsageError(f"batch size must be at least 1, got {b}")
        check_timing(self.runs, self.warmup, self.threads, runs_hint=" (use `no_latency` to skip timing)")
        if depth < 0:
            raise UsageError(f"`depth` must be 0 or more, got {depth}")
        if ov is not None:
            if device != "openvino":
                raise UsageError("`ov_precision` applies only with `device` openvino")
            if ov not in OV_PRECISIONS:
                raise UsageError(f"unknown `ov_precision` {ov!r} (choose f32, bf16 or f16)")
        if device == "openvino" and dtype != "float32":
            raise UsageError("`dtype` applies to cpu and cuda; with `device` openvino use `ov_precision`")
        if device == "openvino" and self.channels_last:
            raise UsageError("`channels_last` applies to cpu and cuda; OpenVINO chooses its own memory layouts")
        if device == "cuda" and not torch.cuda.is_available():
            why = "no NVIDIA GPU is visible" if torch.version.cuda else "this torch build has no CUDA support"
            raise DeviceError(f"`device` cuda: CUDA is not available ({why}; torch {torch.__version__})")


@dataclass
class _Subject:
    """One model as profiled: the module that runs (or the exported file), its name, source and input size."""

    model: nn.Module | None  # None for an exported file
    name: str
    source: str
    input_size: tuple[int, ...]
    owned: bool  # False for a caller's bare module: changed only on a copy
    deployed: DeployedModel | None = None
    runtime: str = "pytorch"  # what times it: pytorch | openvino | onnxruntime


def runtime_of(model: DeployedModel, device: str) -> str:
    """The runtime an exported model runs on under ``device``: ``openvino`` or ``onnxruntime``.

    An OpenVINO IR (``.xml``) always runs on the OpenVINO CPU plugin (cuda is refused). An ``.onnx``
    file runs on ONNX Runtime for ``device`` cpu (CPUExecutionProvider) and cuda (CUDAExecutionProvider),
    ONNX Runtime being the reference runtime of the format and what ``export`` verifies with, and on
    OpenVINO for ``device`` openvino (OpenVINO reads ONNX itself).
    """
    if model.format == "openvino":
        if device == "cuda":
            raise UsageError(f"`device` cuda: {model.name} is an OpenVINO IR, which runs on the OpenVINO CPU "
                             "plugin: profile it with `device` cpu or openvino")
        return "openvino"
    return "openvino" if device == "openvino" else "onnxruntime"


def _deployed_size(item: DeployedModel, o: ProfileOptions) -> tuple[int, ...]:
    """The input size (C, H, W) an exported model is profiled at: its graph's, or ``input_size`` where dynamic."""
    graph_size = item.input_size
    given = o.input_size
    shown = "x".join(str(d) if d is not None else "?" for d in graph_size)
    if given is not None:
        if len(given) != len(graph_size) or any(d is not None and d != g for d, g in zip(graph_size, given)):
            raise UsageError(f"{item.name} takes input {shown} (fixed in the graph), not `input_size` "
                             f"{format_input_size(given)}")
        size = tuple(given)
    elif any(d is None for d in graph_size):
        raise UsageError(f"{item.name} has a dynamic input size ({shown}): pass `input_size`")
    else:
        size = tuple(int(d) for d in graph_size if d is not None)
    fixed = item.fixed_batch
    if fixed is not None and any(b != fixed for b in o.batch_sizes):
        raise UsageError(f"{item.name} has a fixed batch of {fixed}: profile it at `batch_size` {fixed}, or export "
                         "it with a dynamic batch")
    return size


def _subject(item: LoadedModel | DeployedModel | nn.Module, o: ProfileOptions) -> _Subject:
    input_size = o.input_size
    if isinstance(item, DeployedModel):
        return _Subject(None, item.name, item.source, _deployed_size(item, o), True, deployed=item,
                        runtime=runtime_of(item, o.device))
    runtime = "openvino" if o.device == "openvino" else "pytorch"
    if isinstance(item, LoadedModel):
        return _Subject(item.model.eval(), item.name, item.recipe.source, input_size or tuple(item.input_size), True,
                        runtime=runtime)
    if isinstance(item, nn.Module):
        kind = type(item).__name__
        return _Subject(item.eval(), kind, f"module:{kind}", input_size or DEFAULT_INPUT_SIZE, False, runtime=runtime)
    if isinstance(item, str):
        raise UsageError(f"profile takes loaded models: resolve {item!r} with ghostcli.resolve_model first")
    raise UsageError(f"cannot profile a {type(item).__name__}: expected a LoadedModel, a DeployedModel or an "
                     "nn.Module")


def _refuse_pytorch_only(subjects: list[_Subject], o: ProfileOptions) -> None:
    """Settings that apply to PyTorch models only, given when every model is an exported one."""
    if any(s.deployed is None for s in subjects):
        return
    names = ", ".join(s.name for s in subjects)
    if o.channels_last:
        raise UsageError(f"`channels_last` applies to PyTorch models: {names} "
                         f"{'is an exported model' if len(subjects) == 1 else 'are exported models'} "
                         "(the runtime chooses its memory layouts)")
    if o.dtype != "float32":
        verb = "runs at its" if len(subjects) == 1 else "run at their"
        raise UsageError(f"`dtype` applies to PyTorch models: {names} {verb} runtime's precision"
                         + (" (`ov_precision` with `device` openvino)" if o.device != "openvino" else ""))


def _tree(model: nn.Module, by_module: dict[str, int], layers: dict[str, LayerRecord],
          depth: int) -> list[ModuleStat]:
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


def _leaves(model: nn.Module, by_module: dict[str, int], layers: dict[str, LayerRecord]) -> list[ModuleStat]:
    rows = []
    for name, mod in model.named_modules():
        if name == "" or any(True for _ in mod.children()) or name not in layers:
            continue
        rec = layers[name]
        rows.append(ModuleStat(name=name, type=type(mod).__name__, depth=name.count(".") + 1,
                               macs=int(by_module.get(name, 0)), params=module_params(mod),
                               output_shape=rec.output_shape, activations=rec.output_numel))
    return rows


def _static_profile(s: _Subject, *, depth: int, per_layer: bool) -> ModelProfile:
    """MACs, params, activations and layer shapes at batch 1, float32, on CPU."""
    model = s.model
    assert model is not None, "exported models are counted by _deployed_profile"
    x = torch.randn(1, *s.input_size)
    probe = probe_forward(model, x, model_name=s.name, track_memory=False)
    mc = count_macs(model, x)
    total, trainable = total_and_trainable_params(model)
    named = dict(model.named_modules())
    acts = sum(rec.output_numel for n, rec in probe.layers.items() if isinstance(named.get(n), _ACTIVATION_LAYERS))
    prof = ModelProfile(
        name=s.name, source=s.source, input_size=list(s.input_size), macs=mc.total, macs_conv_linear=mc.conv_linear,
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


def _layout(o: ProfileOptions) -> torch.memory_format:
    return torch.channels_last if o.channels_last else torch.contiguous_format


def _example(batch: int, size: tuple[int, ...], o: ProfileOptions) -> torch.Tensor:
    """A random input batch on ``o``'s device, in its dtype and memory format."""
    x = torch.randn(batch, *size, dtype=DTYPES[o.dtype], device="cuda" if o.device == "cuda" else "cpu")
    return x.contiguous(memory_format=_layout(o)) if x.dim() == 4 else x


def _memory(model: nn.Module, size: tuple[int, ...], batch: int, name: str, o: ProfileOptions) -> MemoryStats:
    x = _example(batch, size, o)
    w = weight_bytes(model)
    inp = x.numel() * x.element_size()
    if o.device == "cuda":
        peak, extra = cuda_forward_peak(model, x)
        return MemoryStats(batch, w, inp, activations_peak_bytes=extra, peak_bytes=peak, method=CUDA_METHOD)
    if o.device == "openvino":
        return MemoryStats(batch, w, inp, None, None, method="not measured for OpenVINO (runtime-internal buffers)")
    probe = probe_forward(model, x, model_name=name, track_memory=True)
    act = probe.activations_peak_bytes or 0
    return MemoryStats(batch, w, inp, activations_peak_bytes=act, peak_bytes=w + inp + act, method=CPU_METHOD)


def profile_models(models: Sequence[LoadedModel | DeployedModel | nn.Module], *,
                   options: ProfileOptions | None = None, progress: Progress = no_progress) -> ProfileReport:
    """Profile each model (a ``LoadedModel``, an exported ``DeployedModel`` or an ``nn.Module``) under ``options``.

    Latency runs of several models are interleaved, exported ones on their own runtime included;
    the first model is the reference for ratios. ``progress`` hears of the counting, the layer timing
    and the timing of each batch size.
    """
    opts = ProfileOptions() if options is None else options
    if not models:
        raise UsageError("no model to profile")
    old_threads = torch.get_num_threads()
    if opts.threads is not None and opts.device != "openvino":
        torch.set_num_threads(opts.threads)
    try:
        subjects = [_subject(item, opts) for item in models]
        _refuse_pytorch_only(subjects, opts)
        return _profile(subjects, opts, progress)
    finally:
        torch.set_num_threads(old_threads)


def _profile(subjects: list[_Subject], o: ProfileOptions, progress: Progress) -> ProfileReport:
    profiles, modules = _count(subjects, o, progress)
    if o.memory:
        _measure_memory(subjects, profiles, modules, o)
    if o.layer_times:  # before the latency models are compiled: with those alive, the PERF_COUNT copies'
        # stage-1 layers of Ghost-ResNet-50 came out up to 2x slower than alone (measured, cause unknown)
        _time_layers(subjects, profiles, modules, o, progress)
    precision, ov_threads = _time(subjects, profiles, modules, o, progress) if o.latency else (None, o.threads)
    report = ProfileReport(models=profiles, conditions=_conditions(profiles, o, precision, ov_threads),
                           environment=collect_environment(with_cuda=o.device == "cuda"))
    report.comparisons = [compare(p, profiles[0]) for p in profiles[1:]]
    return report


def _deployed_profile(s: _Subject) -> ModelProfile:
    """MACs, parameters, weight bytes and activations of an exported model, counted on its graph (per image)."""
    from ghostcli.analysis.graph_counts import count_graph

    assert s.deployed is not None
    gc = count_graph(s.deployed.graph, s.input_size)
    prof = ModelProfile(
        name=s.name, source=s.source, input_size=list(s.input_size), macs=gc.macs,
        macs_conv_linear=gc.macs_conv_linear, flops=2 * gc.macs, macs_by_operator=gc.by_operator,
        uncounted_ops=gc.uncounted, params=gc.params, trainable_params=0, weight_bytes=gc.weight_bytes,
        activations=gc.activations, format=s.deployed.format, notes=list(s.deployed.notes),
    )
    return prof  # no module tree: `depth` and `per_layer` show PyTorch models only (docs/commands.md)


def _count(subjects: list[_Subject], o: ProfileOptions,
           progress: Progress) -> tuple[list[ModelProfile], list[nn.Module | None]]:
    """Each model's static profile, and the module that runs (moved to ``o``'s device, dtype and layout)."""
    tdtype = DTYPES[o.dtype]
    profiles: list[ModelProfile] = []
    modules: list[nn.Module | None] = []
    for i, s in enumerate(subjects):
        progress("counting MACs and parameters", i, len(subjects), s.name)
        if s.model is None:  # an exported file
            profiles.append(_deployed_profile(s))
            modules.append(None)
            continue
        prof = _static_profile(s, depth=o.depth, per_layer=o.per_layer)
        model = s.model
        if o.device != "openvino" and (o.device != "cpu" or tdtype != torch.float32 or o.channels_last):
            if not s.owned:
                model = copy.deepcopy(model)
            try:
                model = model.to(device="cuda" if o.device == "cuda" else "cpu", dtype=tdtype)
                if o.channels_last:  # else keep the model's own layout
                    model = model.to(memory_format=torch.channels_last)
            except Exception as exc:
                raise DeviceError(f"cannot move {s.name} to {o.device}/{o.dtype}: {exc}") from None
            prof.weight_bytes = weight_bytes(model)
        profiles.append(prof)
        modules.append(model)
    progress("counting MACs and parameters", len(subjects), len(subjects))
    return profiles, modules


def _measure_memory(subjects: list[_Subject], profiles: list[ModelProfile], modules: list[nn.Module | None],
                    o: ProfileOptions) -> None:
    for s, prof, model in zip(subjects, profiles, modules):
        for b in o.batch_sizes:
            if model is None:
                inp = b * math.prod(prof.input_size) * 4
                prof.memory.append(MemoryStats(b, prof.weight_bytes, inp, None, None,
                                               method=f"not measured for exported models ({s.runtime}-internal "
                                                      "buffers)"))
                continue
            try:
                prof.memory.append(_memory(model, tuple(prof.input_size), b, prof.name, o))
            except RuntimeError as exc:  # e.g. an op without a float16 CPU kernel
                raise DeviceError(f"{prof.name} cannot run on {o.device} in {o.dtype}: "
                                  f"{one_line(exc, first_line=True)}") from None


def _time_layers(subjects: list[_Subject], profiles: list[ModelProfile], modules: list[nn.Module | None],
                 o: ProfileOptions, progress: Progress) -> None:
    """Layer times of every model at the first batch size; exported models' rows take the PyTorch models' units."""
    from ghostcli.analysis import layer_times as lt

    progress("layer times", 0, 1)
    batch = o.batch_sizes[0]
    hints: dict[str, str] = {}  # the PyTorch models' units: exported models' rows line up with them
    for s in subjects:
        if s.model is not None:
            hints.update({path: "" for path in lt.units(s.model)})
    for s, prof, model in zip(subjects, profiles, modules):
        size = tuple(prof.input_size)
        shape = (batch, *size)
        if model is not None and o.device == "openvino":
            prof.layer_times = lt.openvino_layer_times([model], [torch.randn(*shape)], precision=o.ov_precision,
                                                       threads=o.threads)[0]
        elif model is not None:
            prof.layer_times = lt.torch_layer_times([model], [_example(batch, size, o)])[0]
        elif s.deployed is not None and s.runtime == "openvino":
            aliases = lt.onnx_aliases(s.deployed.path) if s.deployed.format == "onnx" else None
            prof.layer_times = lt.openvino_model_layer_times(s.deployed.graph, shape, precision=o.ov_precision,
                                                             threads=o.threads, unit_paths=hints or None,
                                                             aliases=aliases)
        elif s.deployed is not None:
            prof.layer_times = lt.onnxruntime_layer_times(s.deployed.path, shape, device=o.device, threads=o.threads,
                                                          unit_paths=hints or None)
        if prof.runtime is None:
            prof.runtime = _runtime_info(s, o)
    progress("layer times", 1, 1)


def _runtime_info(s: _Subject, o: ProfileOptions, *, precision: str | None = None,
                  threads: int | None = None, int8: str | None = None) -> RuntimeInfo:
    """What runs ``s`` (precision and threads as the runtime reported them, where known)."""
    from ghostcli.analysis.env import package_version

    if s.runtime == "pytorch":
        return RuntimeInfo("pytorch", torch.__version__, o.device, o.dtype,
                           torch.get_num_threads() if o.device == "cpu" else None)
    if s.runtime == "openvino":
        return RuntimeInfo("openvino", package_version("openvino"), "CPU", precision, threads or o.threads,
                           precision_default=o.ov_precision is None, int8_layers=int8)
    from ghostcli.runtime.deployed import onnxruntime_version

    provider = "CUDAExecutionProvider" if o.device == "cuda" else "CPUExecutionProvider"
    return RuntimeInfo("onnxruntime", onnxruntime_version(), provider, None, o.threads)


def _deployed_runner(s: _Subject, prof: ModelProfile, batch: int, o: ProfileOptions,
                     sessions: dict[int, object]) -> Runner:
    """A runner timing the exported model ``s`` at ``batch`` on its runtime; fills ``prof.runtime``."""
    from ghostcli.runtime import deployed as rt
    from ghostcli.runtime.openvino import executed_precisions, int8_coverage

    assert s.deployed is not None
    shape = (batch, *s.input_size)
    data = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
    if s.runtime == "openvino":
        compiled, executed = rt.compile_graph(s.deployed.graph, shape, precision=o.ov_precision, threads=o.threads)
        n8, total = int8_coverage(executed_precisions(compiled))
        prof.runtime = _runtime_info(s, o, precision=executed, threads=rt.openvino_threads(compiled, o.threads),
                                     int8=f"{n8}/{total} conv/FC layers in i8/u8" if n8 else None)
        return openvino_runner(compiled, data)
    key = id(s)
    if key not in sessions:
        sessions[key] = rt.onnxruntime_session(s.deployed.path, device=o.device, threads=o.threads)
    prof.runtime = _runtime_info(s, o)
    return rt.onnxruntime_runner(sessions[key], data)


def _time(subjects: list[_Subject], profiles: list[ModelProfile], modules: list[nn.Module | None],
          o: ProfileOptions, progress: Progress) -> tuple[str | None, int | None]:
    """Latency of every model at every batch size, interleaved; returns (OpenVINO precision, OpenVINO threads)."""
    precision: str | None = None
    ov_threads = o.threads
    sessions: dict[int, object] = {}  # ONNX Runtime sessions, one per model, for every batch size
    for b in o.batch_sizes:
        runners = []
        for s, prof, model in zip(subjects, profiles, modules):
            size = tuple(prof.input_size)
            if model is None:
                runners.append(_deployed_runner(s, prof, b, o, sessions))
            elif o.device == "openvino":
                compiled, precision = openvino_compile(model, torch.randn(b, *size), precision=o.ov_precision,
                                                       threads=o.threads)
                ov_threads = int(compiled.get_property("INFERENCE_NUM_THREADS") or 0) or o.threads
                prof.runtime = _runtime_info(s, o, precision=precision, threads=ov_threads)
                runners.append(openvino_runner(compiled, torch.randn(b, *size)))
            else:
                prof.runtime = _runtime_info(s, o)
                runners.append(torch_runner(model, _example(b, size, o)))
        try:
            times = time_interleaved(runners, warmup=o.warmup, runs=o.runs, max_seconds=o.time_budget_s,
                                     progress=progress, description=f"timing batch {b}")
        except RuntimeError as exc:
            raise DeviceError(f"forward failed on {o.device} in {o.dtype}: "
                              f"{one_line(exc, first_line=True)}") from None
        for prof, t in zip(profiles, times):
            prof.latency.append(latency_stats(t, batch_size=b, warmup=o.warmup))
    if o.device == "openvino" and precision is None:  # only exported models: the conditions show what they ran at
        ran = next((p.runtime for p in profiles if p.runtime is not None and p.runtime.name == "openvino"), None)
        if ran is not None:
            precision, ov_threads = ran.precision, ran.threads
    return precision, ov_threads


def _conditions(profiles: list[ModelProfile], o: ProfileOptions, precision: str | None,
                ov_threads: int | None) -> Conditions:
    device_name = cpu_name()
    if o.device == "cuda":
        device_name = torch.cuda.get_device_name(0)
    elif o.device == "openvino":
        import openvino as ov

        device_name = "OpenVINO CPU: " + str(ov.Core().get_property("CPU", "FULL_DEVICE_NAME"))
    runs = (min(p.latency[0].runs for p in profiles) if profiles[0].latency else o.runs) if o.latency else 0
    return Conditions(
        device=o.device, device_name=device_name, dtype=o.dtype,
        threads=ov_threads if o.device == "openvino" else torch.get_num_threads(),
        batch_sizes=list(o.batch_sizes), warmup=o.warmup if o.latency else 0, runs=runs,
        inference_precision=precision, performance_hint="LATENCY" if o.device == "openvino" else None,
        timer={"cuda": "CUDA events + synchronize", "openvino": "time.perf_counter around infer()"}.get(
            o.device, "time.perf_counter around forward()"),
        memory_format="channels_last" if o.channels_last else "contiguous",
        threads_requested=o.threads, cpus=usable_cpus(),
    )


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


def profile_model(model: LoadedModel | DeployedModel | nn.Module, *, options: ProfileOptions | None = None,
                  progress: Progress = no_progress) -> ModelProfile:
    """Profile one model (see :func:`profile_models`); returns its :class:`ModelProfile`."""
    return profile_models([model], options=options, progress=progress).models[0]


__all__ = ["DEFAULT_RUNS", "DEFAULT_TIME_BUDGET_S", "DEFAULT_WARMUP", "LatencyStats", "ProfileOptions", "compare",
           "normalize_dtype", "profile_model", "profile_models", "runtime_of"]
