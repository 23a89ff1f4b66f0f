"""Accuracy of a model on labelled images: PyTorch (any MODEL), ONNX (onnxruntime) or OpenVINO IR."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ghostcli.errors import DataError, DeviceError, UsageError, one_line
from ghostcli.train.distributed import DistEnv, all_reduce_sum
from ghostcli.train.metrics import Meter, check_targets


@dataclass
class EvalResult:
    """What ``ghostcli evaluate`` reports. Accuracies in percent; ``loss`` is the mean cross-entropy."""

    model: str
    backend: str  # "pytorch" | "onnxruntime" | "openvino"
    device: str
    data: str
    split: str
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


def resolve_device(name: str, env: DistEnv | None = None) -> torch.device:
    """``cpu`` | ``cuda`` | ``cuda:N`` | ``auto`` -> a torch device; CUDA asked for but absent is an error."""
    name = (name or "auto").strip().lower()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise DeviceError(f"--device {name} was asked for but CUDA is not available "
                              "(no NVIDIA GPU visible, or a CPU-only PyTorch build)")
        if env is not None and env.enabled:
            return torch.device("cuda", env.local_rank)
        dev = torch.device(name)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) visible")
        return dev
    raise UsageError(f"unknown device {name!r} (use cpu, cuda, cuda:N or auto)")


def autocast(device: torch.device, enabled: bool):  # type: ignore[no-untyped-def]
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
             warmup: bool = False) -> Meter:
    """Loss/top-1/top-5 of a PyTorch model over ``loader`` (summed over ranks when distributed).

    ``warmup`` runs the first batch once untimed, so that ``seconds`` measures steady-state compute.
    """
    model.eval()
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
        check_targets(logits, y)
        meter.update(float(F.cross_entropy(logits, y)), logits, y)
    if env is not None and env.enabled:
        meter = Meter.from_list(all_reduce_sum(meter.as_list(), env, device), compute)
    meter.seconds = compute
    return meter


class _ExportedRunner:
    """Runs an ``.onnx`` (onnxruntime) or OpenVINO ``.xml`` on numpy batches."""

    def __init__(self, path: Path, device: torch.device, precision: str) -> None:
        self.path = path
        if path.suffix.lower() == ".onnx":
            self._init_onnx(path, device)
        else:
            self._init_openvino(path, device, precision)

    def _init_onnx(self, path: Path, device: torch.device) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise UsageError("evaluating .onnx files needs onnxruntime: pip install onnxruntime") from None
        providers = ["CPUExecutionProvider"]
        if device.type == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise DeviceError("--device cuda: this onnxruntime has no CUDA execution provider")
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self.session = ort.InferenceSession(str(path), providers=providers)
        except Exception as exc:
            raise DataError(f"{path} is not a loadable ONNX model: {one_line(exc, 160)}") from None
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.shape = [d if isinstance(d, int) else None for d in inp.shape]
        self.backend, self.precision = "onnxruntime", "f32"

    def _init_openvino(self, path: Path, device: torch.device, precision: str) -> None:
        from ghostcli.deploy.openvino_export import compile_cpu, core

        if device.type != "cpu":
            raise DeviceError("OpenVINO IR is evaluated on the CPU; use --device cpu")
        try:
            model = core().read_model(str(path))
        except Exception as exc:
            raise DataError(f"{path} is not a readable OpenVINO IR: {one_line(exc, 160)}") from None
        ps = model.inputs[0].get_partial_shape()
        self.shape = [d.get_length() if d.is_static else None for d in ps]
        self.compiled, self.precision = compile_cpu(model, precision)
        self.request = self.compiled.create_infer_request()
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

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.backend == "onnxruntime":
            return np.asarray(self.session.run(None, {self.input_name: x})[0])
        return np.asarray(self.request.infer({0: x})[self.compiled.outputs[0]])


def _run_exported(runner: _ExportedRunner, loader: torch.utils.data.DataLoader) -> Meter:
    meter = Meter()
    compute = 0.0
    fixed = runner.fixed_batch
    warm = False
    for x, y in loader:
        xs = x.numpy().astype(np.float32)
        chunks = [xs] if not fixed else [xs[i:i + fixed] for i in range(0, len(xs), fixed)]
        outs = []
        for chunk in chunks:
            n = len(chunk)
            if fixed and n < fixed:  # pad a short last chunk to the model's batch, then drop the padding
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], fixed - n, axis=0)])
            chunk = np.ascontiguousarray(chunk)
            if not warm:  # one untimed call: first-inference set-up is not throughput
                runner(chunk)
                warm = True
            t0 = time.perf_counter()
            out = runner(chunk)
            compute += time.perf_counter() - t0
            outs.append(out[:n])
        logits = torch.from_numpy(np.concatenate(outs).reshape(len(xs), -1)).float()
        check_targets(logits, y)
        meter.update(float(F.cross_entropy(logits, y)), logits, y)
    meter.seconds = compute
    return meter


def evaluate_model(model: str, data: str = "digits", *, split: str = "val", batch_size: int = 64,
                   device: str = "auto", input_size: tuple[int, int, int] | None = None, weights: str | None = None,
                   precision: str = "f32", workers: int = 0, amp: bool = False, channels_last: bool = False,
                   allow_pickle: bool = False) -> EvalResult:
    """Top-1, top-5, mean loss and images/s of ``model`` on ``data``.

    ``model`` is any MODEL argument, or an exported ``.onnx`` / OpenVINO ``.xml``
    file (OpenVINO runs on the CPU at ``precision``, f32 unless asked).
    """
    from ghostcli.train.data import _load, eval_loader

    if batch_size < 1:
        raise UsageError("--batch-size must be at least 1")
    if workers < 0:
        raise UsageError("--workers must be >= 0")
    suffix = Path(model).suffix.lower()
    if suffix in (".onnx", ".xml") and (device or "auto").strip().lower() == "auto":
        device = "cpu"  # exported models run on the CPU unless CUDA is asked for (ONNX only)
    dev = resolve_device(device)
    notes: list[str] = []
    t_start = time.perf_counter()
    if suffix in (".onnx", ".xml"):
        path = Path(model)
        if not path.is_file():
            raise DataError(f"no such model file: {path}")
        runner = _ExportedRunner(path, dev, precision)
        size = input_size or runner.input_size() or (3, 224, 224)
        if runner.input_size() and input_size and tuple(input_size) != runner.input_size():
            raise UsageError(f"{path.name} takes {runner.input_size()} inputs, not {tuple(input_size)}")
        ds = _load(data, split, tuple(size), False)  # type: ignore[arg-type]
        loader = eval_loader(ds, batch_size=batch_size, workers=workers)
        meter = _run_exported(runner, loader)
        backend, prec, name, dev_name = runner.backend, runner.precision, path.name, "cpu" if runner.backend == "openvino" else str(dev)
        if runner.fixed_batch:
            notes.append(f"the model's batch is fixed at {runner.fixed_batch}")
    else:
        from ghostcli.resolve import resolve_model

        loaded = resolve_model(model, weights=weights, allow_pickle=allow_pickle)
        size = tuple(input_size or loaded.input_size)  # type: ignore[assignment]
        ds = _load(data, split, size, False)  # type: ignore[arg-type]
        net = loaded.model.to(dev)
        if channels_last:
            net = net.to(memory_format=torch.channels_last)
        loader = eval_loader(ds, batch_size=batch_size, workers=workers, pin_memory=dev.type == "cuda")
        meter = run_eval(net, loader, dev, amp=amp, channels_last=channels_last, warmup=True)
        backend, name, dev_name = "pytorch", loaded.name, str(dev)
        prec = ("f16" if dev.type == "cuda" else "bf16") if amp else "f32"
    classes = list(getattr(ds, "classes", []))
    if meter.count == 0:
        raise DataError(f"{data} has no images in its {split} split")
    return EvalResult(
        model=name, backend=backend, device=dev_name, data=data, split=split, images=meter.count,
        num_classes=len(classes), top1=meter.acc1, top5=meter.acc5, loss=meter.loss,
        images_per_s=meter.count / meter.seconds if meter.seconds > 0 else float("nan"),
        seconds=time.perf_counter() - t_start, batch_size=batch_size, input_size=list(size), precision=prec,
        notes=notes,
    )
