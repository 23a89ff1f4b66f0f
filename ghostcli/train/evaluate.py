"""Accuracy of a model on labelled images: PyTorch (any MODEL), ONNX (onnxruntime) or OpenVINO IR."""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ghostcli.errors import DataError, DeviceError, UsageError, one_line
from ghostcli.loaded import LoadedModel
from ghostcli.runtime.device import resolve_device, usable_cpus
from ghostcli.train.distributed import DistEnv, all_reduce_sum
from ghostcli.train.metrics import Meter, check_targets
from ghostcli.units import format_input_size


@dataclass
class EvalResult:
    """What ``ghostcli evaluate`` reports. Accuracies in percent; ``loss`` is the mean cross-entropy."""

    model: str
    backend: str  # "pytorch" | "onnxruntime" | "openvino"
    device: str
    data: str
    split: str | None  # None: a plain folder, evaluated whole
    images: int
    num_classes: int
    top1: float
    top5: float
    loss: float
    images_per_s: float  # images / seconds spent in the model (data loading and one warm-up batch excluded)
    seconds: float  # wall time of the whole pass
    batch_size: int
    input_size: list[int]
    precision: str
    notes: list[str] = field(default_factory=list)


def autocast(device: torch.device, enabled: bool) -> torch.autocast:
    """Mixed precision: float16 on CUDA, bfloat16 on CPU; a no-op when disabled."""
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    return torch.autocast(device_type=device.type, dtype=dtype, enabled=enabled)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def check_outputs(num_outputs: int, classes: list[str], what: str) -> None:
    """A model must have at least one output per class of the data."""
    if num_outputs < len(classes):
        raise DataError(f"{what} has {num_outputs} outputs but the data has {len(classes)} classes")


@torch.no_grad()
def run_eval(model: nn.Module, loader: torch.utils.data.DataLoader, device: torch.device, *,
             env: DistEnv | None = None, amp: bool = False, channels_last: bool = False,
             warmup: bool = False, teacher: nn.Module | None = None, labelled: bool = True) -> Meter:
    """Loss/top-1/top-5 of a PyTorch model over ``loader`` (summed over ranks when distributed).

    ``warmup`` runs the first batch once untimed, so that ``seconds`` measures steady-state compute.
    ``teacher`` also counts top-1 agreement with it (its time is not in ``seconds``); ``labelled`` False:
    the loader's labels mean nothing, only agreement is counted (loss 0).
    """
    model.eval()
    if teacher is not None:
        teacher.eval()
    meter = Meter()
    compute = 0.0
    warm = not warmup
    for x, y in loader:
        x = x.to(device, non_blocking=True)
        y = y.to(device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if not warm:  # one untimed pass: first-call set-up (kernels, allocations) is not throughput
            with autocast(device, amp):
                model(x)
            warm = True
        _sync(device)
        t0 = time.perf_counter()
        with autocast(device, amp):
            logits = model(x)
        _sync(device)
        compute += time.perf_counter() - t0
        logits = logits.float()
        t_logits = None
        if teacher is not None:
            with autocast(device, amp):
                t_logits = teacher(x).float()
        if labelled:
            check_targets(logits, y)
            meter.update(float(F.cross_entropy(logits, y)), logits, y, t_logits)
        else:
            meter.update(0.0, logits, None, t_logits)
    if env is not None and env.enabled:
        meter = Meter.from_list(all_reduce_sum(meter.as_list(), env, device), compute)
    meter.seconds = compute
    return meter


class _ExportedRunner:
    """An ``.onnx`` (onnxruntime) or OpenVINO ``.xml`` loaded with ghostcli.runtime, run on numpy batches."""

    def __init__(self, path: Path, device: torch.device, precision: str) -> None:
        self.path = path
        if path.suffix.lower() == ".onnx":
            self._init_onnx(path, device)
        else:
            self._init_openvino(path, device, precision)

    def _init_onnx(self, path: Path, device: torch.device) -> None:
        from ghostcli.runtime.onnx import onnx_session, session_infer

        try:
            import onnxruntime as ort
        except ImportError:
            raise UsageError("evaluating .onnx files needs onnxruntime: pip install onnxruntime") from None
        providers = ["CPUExecutionProvider"]
        if device.type == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise DeviceError("`device` cuda: this onnxruntime has no CUDA execution provider")
            providers.insert(0, "CUDAExecutionProvider")
        try:
            session = onnx_session(path, providers)
        except Exception as exc:  # noqa: BLE001 (any failure to load is reported as one line)
            raise DataError(f"{path} is not a loadable ONNX model: {one_line(exc, 160)}") from None
        self.shape = [d if isinstance(d, int) else None for d in session.get_inputs()[0].shape]
        self.infer = session_infer(session)
        self.backend, self.precision = "onnxruntime", "f32"

    def _init_openvino(self, path: Path, device: torch.device, precision: str) -> None:
        from ghostcli.runtime.onnx import captured_fd2
        from ghostcli.runtime.openvino import compile_cpu, core, infer_fn

        if device.type != "cpu":
            raise DeviceError("OpenVINO IR is evaluated on the CPU; use `device` cpu")
        try:
            with captured_fd2():  # frontends that fail to read it log to fd 2 (absl, TensorFlow)
                model = core().read_model(str(path))
        except Exception as exc:  # noqa: BLE001 (any failure to read is reported as one line)
            raise DataError(f"{path} is not a readable OpenVINO IR: {one_line(exc, 160)}") from None
        ps = model.inputs[0].get_partial_shape()
        self.shape = [d.get_length() if d.is_static else None for d in ps]
        compiled, self.precision = compile_cpu(model, precision)
        self.infer = infer_fn(compiled)
        self.backend = "openvino"

    @property
    def fixed_batch(self) -> int | None:
        """The batch size baked into the model, if any."""
        return self.shape[0] if self.shape else None

    def input_size(self) -> tuple[int, int, int] | None:
        """(C, H, W) when the model's input is static."""
        if len(self.shape) == 4 and all(isinstance(d, int) for d in self.shape[1:]):
            return (self.shape[1], self.shape[2], self.shape[3])  # type: ignore[return-value]
        return None


def _run_exported(runner: _ExportedRunner, loader: torch.utils.data.DataLoader) -> Meter:
    """Loss/top-1/top-5 of an exported model over ``loader``; ``seconds`` counts the model calls only."""
    from ghostcli.runtime.accuracy import run_batch

    meter = Meter()
    compute = 0.0
    warm = False

    def timed(chunk: np.ndarray) -> np.ndarray:
        nonlocal compute, warm
        if not warm:  # one untimed call: first-inference set-up is not throughput
            runner.infer(chunk)
            warm = True
        t0 = time.perf_counter()
        out = runner.infer(chunk)
        compute += time.perf_counter() - t0
        return out

    for x, y in loader:
        xs = x.numpy().astype(np.float32)
        logits = torch.from_numpy(run_batch(timed, xs, runner.fixed_batch).reshape(len(xs), -1)).float()
        check_targets(logits, y)
        meter.update(float(F.cross_entropy(logits, y)), logits, y)
    meter.seconds = compute
    return meter


EXPORTED_SUFFIXES = (".onnx", ".xml")
# Libraries whose warnings are advice to their own users, not to ghostcli's (stderr: errors and our notes).
_QUIET_MODULES = r"(torch|torchvision|PIL|sklearn|numpy|onnxruntime|openvino)(\.|$)"


@contextlib.contextmanager
def quiet_library_warnings() -> Iterator[None]:
    """Hide the Python warnings third-party libraries raise for the duration."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=_QUIET_MODULES)
        yield


@dataclass(frozen=True)
class EvalOptions:
    """How :func:`evaluate_model` evaluates; impossible values are refused when it is made (UsageError).

    ``split`` (val unless given) picks the split of ``digits`` or of a folder holding ``train/`` and
    ``val/``; any other folder is evaluated whole. ``precision`` is OpenVINO's inference precision
    (``.xml`` models only); ``amp`` is PyTorch mixed precision.
    """

    split: str | None = None
    batch_size: int = 64
    device: str = "auto"
    input_size: tuple[int, int, int] | None = None
    precision: str = "f32"
    workers: int = 0
    amp: bool = False
    channels_last: bool = False

    def __post_init__(self) -> None:
        from ghostcli.runtime.openvino import PRECISIONS

        if self.batch_size < 1:
            raise UsageError(f"`batch_size` must be at least 1, got {self.batch_size}")
        if self.workers < 0:
            raise UsageError(f"`workers` must be 0 (load in this process) or more, got {self.workers}")
        if self.precision not in PRECISIONS:
            raise UsageError(f"`precision` {self.precision!r} is not one of {', '.join(PRECISIONS)}")

    def check_model_kind(self, suffix: str) -> None:
        """Refuse options that do not apply to a model file with ``suffix`` (``.xml``, ``.onnx``, or anything)."""
        suffix = suffix.lower()
        if self.precision != "f32" and suffix != ".xml":
            raise UsageError(f"`precision` {self.precision} applies to OpenVINO .xml models only "
                             "(PyTorch models: `amp` for mixed precision)")
        if suffix in EXPORTED_SUFFIXES and self.amp:
            raise UsageError(f"`amp` applies to PyTorch models, not to an exported {suffix} file")


def evaluate_model(model: LoadedModel | Path, data: str = "digits", *, options: EvalOptions | None = None) -> EvalResult:
    """Top-1, top-5, mean loss and images/s of ``model`` on ``data``.

    ``model`` is a resolved model (:func:`ghostcli.resolve.resolve_model`) or the path of an exported
    ``.onnx`` / OpenVINO ``.xml`` file (OpenVINO runs on the CPU at ``options.precision``, f32 unless
    asked). The model's forward runs with stdout sent to stderr. Errors and notes name settings in
    backquotes (```batch_size```); the CLI shows them as its options.
    """
    o = options or EvalOptions()
    if isinstance(model, str):
        raise TypeError("evaluate_model takes a resolved model (ghostcli.resolve_model) or an exported file's Path")
    if not isinstance(model, (LoadedModel, Path)):
        raise TypeError(f"cannot evaluate a {type(model).__name__}: expected a LoadedModel or a Path")
    suffix = model.suffix.lower() if isinstance(model, Path) else ""
    if isinstance(model, Path) and suffix not in EXPORTED_SUFFIXES:
        raise UsageError(f"{model.name} is not an exported model (.onnx or .xml)")
    o.check_model_kind(suffix)
    from ghostcli.runtime.probe import run_once
    from ghostcli.train.data import _load, eval_loader, eval_source
    from ghostcli.usercode import call_user_code, stdout_to_stderr

    source, split_name = eval_source(data, o.split)
    exported_on_cpu = isinstance(model, Path) and o.device.strip().lower() == "auto"
    dev = resolve_device("cpu" if exported_on_cpu else o.device)  # exported models: CPU unless CUDA is asked for
    notes: list[str] = []
    if o.workers > usable_cpus():
        notes.append(f"`workers` {o.workers} is more than the {usable_cpus()} CPUs this process may use")
    t_start = time.perf_counter()
    if isinstance(model, Path):
        path = model
        if not path.is_file():
            raise DataError(f"no such model file: {path}")
        runner = _ExportedRunner(path, dev, o.precision)
        size = o.input_size or runner.input_size() or (3, 224, 224)
        fixed_size = runner.input_size()
        if fixed_size and o.input_size and tuple(o.input_size) != fixed_size:
            raise UsageError(f"{path.name} takes {format_input_size(fixed_size)} inputs, "
                             f"not {format_input_size(o.input_size)}")
        ds = _load(source, split_name or "val", tuple(size), False)  # type: ignore[arg-type]
        loader = eval_loader(ds, batch_size=o.batch_size, workers=o.workers)
        with quiet_library_warnings():
            meter = call_user_code(f"running {path.name}", lambda: _run_exported(runner, loader))
        backend, prec, name = runner.backend, runner.precision, path.name
        dev_name = "cpu" if runner.backend == "openvino" else str(dev)
        if runner.fixed_batch:
            notes.append(f"the model's batch is fixed at {runner.fixed_batch}")
    else:
        loaded = model
        size = tuple(o.input_size or loaded.input_size)  # type: ignore[assignment]
        net = loaded.model.to(dev)
        if o.channels_last:
            net = net.to(memory_format=torch.channels_last)
        with stdout_to_stderr():  # one image first: a wrong input size is named at the failing layer
            out = run_once(net, torch.zeros(1, *size, device=dev), loaded.name)
        ds = _load(source, split_name or "val", size, False)
        if isinstance(out, torch.Tensor) and out.dim() == 2:
            check_outputs(out.shape[1], list(getattr(ds, "classes", [])), f"model {loaded.name}")
        loader = eval_loader(ds, batch_size=o.batch_size, workers=o.workers, pin_memory=dev.type == "cuda")
        with quiet_library_warnings():
            meter = call_user_code(
                f"evaluating {loaded.name}",
                lambda: run_eval(net, loader, dev, amp=o.amp, channels_last=o.channels_last, warmup=True),
            )
        backend, name, dev_name = "pytorch", loaded.name, str(dev)
        prec = ("f16" if dev.type == "cuda" else "bf16") if o.amp else "f32"
    classes = list(getattr(ds, "classes", []))
    if meter.count == 0:
        raise DataError(f"{data} has no images" + (f" in its {split_name} split" if split_name else ""))
    return EvalResult(
        model=name, backend=backend, device=dev_name, data=data, split=split_name, images=meter.count,
        num_classes=len(classes), top1=meter.acc1, top5=meter.acc5, loss=meter.loss,
        images_per_s=meter.count / meter.seconds if meter.seconds > 0 else float("nan"),
        seconds=time.perf_counter() - t_start, batch_size=o.batch_size, input_size=list(size), precision=prec,
        notes=notes,
    )
