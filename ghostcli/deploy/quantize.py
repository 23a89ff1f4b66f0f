"""INT8 post-training quantization with NNCF into an OpenVINO IR, and what it cost and bought.

One call converts the model to OpenVINO, calibrates activation ranges on real
images (``digits``, an image folder) or, with a loud warning, on noise, quantizes
with ``nncf.quantize`` (or ``nncf.quantize_with_accuracy_control`` when the
evaluation images have labels and a maximum accuracy drop is given), then runs
the FP32 and INT8 models side by side on the OpenVINO CPU plugin: top-1
agreement (and accuracy with labels), interleaved batch-1 latency, IR size and
the precision each layer actually executes at.
"""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ghostcli.deploy.options import QuantizeOptions, check_normalization, check_op_types, check_preset
from ghostcli.errors import ExportError, UsageError, one_line
from ghostcli.fsutil import sigterm_raises
from ghostcli.progress import Progress, no_progress
from ghostcli.runtime.accuracy import top1, top1_accuracy
from ghostcli.runtime.timing import openvino_runner, time_interleaved, timing_stats
from ghostcli.usercode import stdout_to_stderr

if TYPE_CHECKING:
    from torch import nn

    from ghostcli.loaded import LoadedModel

SYNTHETIC_WARNING = ("calibrating on synthetic noise: activation ranges do not match real images, "
                     "so the INT8 model's accuracy is UNKNOWN; use `calib_data` DIR or digits")


@dataclass
class VariantStats:
    """One compiled variant of the model on the OpenVINO CPU plugin."""

    name: str                       # "fp32", "fp32_default" or "int8"
    precision_hint: str             # INFERENCE_PRECISION_HINT asked for ("f32", or "default")
    executed_precision: str         # what the plugin runs: "f32", "bf16", "int8 (53/54 layers)" ...
    latency_ms: float               # median batch-1 latency
    latency_min_ms: float
    latency_p90_ms: float
    size_bytes: int | None = None   # IR .xml + .bin on disk
    top1_accuracy: float | None = None  # on the evaluation images, when they have matching labels


@dataclass
class QuantizeResult:
    """Everything ``ghostcli quantize`` reports; JSON keys are these field names."""

    model: str
    input_size: list[int]
    method: str                     # "ptq" (nncf.quantize) or "accuracy_control"
    preset: str
    calib_data: str
    calib_images: int
    subset_size: int
    synthetic_calibration: bool
    eval_data: str
    eval_images: int
    labeled: bool                   # evaluation images have class labels usable for accuracy
    fp32: VariantStats
    fp32_default: VariantStats
    int8: VariantStats
    speedup: float                  # fp32 (f32) latency / int8 latency
    speedup_vs_default: float       # fp32 at the device's default precision / int8 latency
    size_ratio: float               # int8 IR size / fp32 IR size
    top1_agreement: float           # fraction of eval images where INT8 and FP32 pick the same class
    accuracy_drop: float | None     # fp32 accuracy - int8 accuracy
    max_accuracy_drop: float | None
    fake_quantize: int              # FakeQuantize ops in the quantized IR
    int8_layers: int                # conv/FC layers the CPU plugin executes in i8/u8
    compute_layers: int             # conv/FC layers in the runtime graph
    executed_precisions: dict[str, dict[str, int]]  # INT8 runtime graph: {layer type: {precision: count}}
    output: str | None              # .xml path (the .bin lies beside it)
    output_bin: str | None
    measurement: dict[str, Any]     # device, threads, batch, warmup, runs, hint, interleaved
    warnings: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------- helpers


def _source(model: LoadedModel | nn.Module, input_size: tuple[int, ...] | None) -> tuple[nn.Module, str, tuple[int, ...]]:
    """(module in eval mode, display name, C x H x W) of what is quantized (the caller resolves names)."""
    from torch import nn

    from ghostcli.loaded import LoadedModel

    if isinstance(model, LoadedModel):
        size = tuple(int(v) for v in input_size or model.input_size)
        if len(size) != 3:
            raise UsageError(f"input size must be C x H x W, got {list(size)}")
        return model.model.eval(), model.name, size
    if isinstance(model, nn.Module):
        if input_size is None:
            raise UsageError("`input_size` is needed when quantizing a bare nn.Module")
        return model.eval(), type(model).__name__, input_size
    raise UsageError(f"cannot quantize a {type(model).__name__}: expected an nn.Module or a loaded model")


def _import_nncf() -> Any:
    """``import nncf`` without torch's "No CUDA runtime is found" warning (NNCF imports torch.utils.cpp_extension)
    and with its usage telemetry off (``no_telemetry``)."""
    from ghostcli.runtime.openvino import no_cuda_home_warning, no_telemetry

    with no_cuda_home_warning():
        import nncf
    no_telemetry()
    return nncf


@contextlib.contextmanager
def _quiet_nncf() -> Iterator[None]:
    """Keep NNCF off stdout (it is for the report / JSON): its log goes to stderr, errors only, and its
    progress bars to stderr when that is a terminal, nowhere otherwise (like ghostcli's own)."""
    _import_nncf()
    nncf_logger = logging.getLogger("nncf")
    level = nncf_logger.level
    nncf_logger.setLevel(max(logging.ERROR, level))
    # NNCF's handler holds the sys.stdout of import time, so redirect_stdout alone would miss it. The stream
    # is swapped by assignment: setStream would flush the old one, which may be closed by now.
    moved = [h for h in nncf_logger.handlers
             if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)]
    streams = [h.stream for h in moved]
    for h in moved:
        h.stream = sys.stderr
    try:
        with contextlib.redirect_stdout(sys.stderr if sys.stderr.isatty() else io.StringIO()):
            yield
    finally:
        nncf_logger.setLevel(level)
        for h, stream in zip(moved, streams, strict=True):
            h.stream = stream


def _ir_size(xml: Path) -> int:
    return xml.stat().st_size + xml.with_suffix(".bin").stat().st_size


def _measure_size(ov_model: Any) -> int:
    """Bytes of ``ov_model`` serialized as IR (weights uncompressed), via a temporary folder."""
    import openvino as ov

    tmp = Path(tempfile.mkdtemp(prefix="ghostcli-ir-"))
    try:
        xml = tmp / "model.xml"
        ov.save_model(ov_model, str(xml), compress_to_fp16=False)
        return _ir_size(xml)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _stats(name: str, hint: str, executed: str, times_ms: list[float]) -> VariantStats:
    s = timing_stats(times_ms)
    return VariantStats(name=name, precision_hint=hint, executed_precision=executed,
                        latency_ms=s.median_ms, latency_min_ms=s.min_ms, latency_p90_ms=s.p90_ms)


def _calibration_dataset(images: list[np.ndarray], progress: Progress) -> Any:
    nncf = _import_nncf()
    done = 0

    def transform(x: np.ndarray) -> np.ndarray:
        nonlocal done
        done += 1
        progress("calibrating", done, len(images))
        return x

    progress("calibrating", 0, len(images))
    return nncf.Dataset(images, transform)


def _accuracy_fn(compiled: Any, items: Any) -> float:
    """NNCF's ``validation_fn``: top-1 accuracy of a compiled model on ``(image, label)`` items."""
    from ghostcli.runtime.openvino import infer_fn

    return top1_accuracy(infer_fn(compiled), items)


def quantize_ov_model(ov_model: Any, calib_images: list[np.ndarray], *, preset: str = "performance",
                      ignored_types: tuple[str, ...] = (), progress: Progress = no_progress,
                      **nncf_options: Any) -> Any:
    """``nncf.quantize`` an ``openvino.Model`` on numpy calibration batches (plain PTQ).

    ``nncf_options`` go to ``nncf.quantize`` as they are (e.g. ``fast_bias_correction``,
    ``advanced_parameters``); NNCF's own logging stays off stdout.
    """
    check_preset(preset)
    check_op_types(ignored_types)
    nncf = _import_nncf()
    kwargs: dict[str, Any] = {"preset": nncf.QuantizationPreset(preset), "subset_size": len(calib_images)}
    if ignored_types:
        kwargs["ignored_scope"] = nncf.IgnoredScope(types=list(ignored_types), validate=False)
    kwargs.update(nncf_options)
    try:
        with _quiet_nncf():
            return nncf.quantize(ov_model, _calibration_dataset(calib_images, progress), **kwargs)
    except Exception as exc:
        raise ExportError(f"NNCF quantization failed: {one_line(exc, 300)}") from exc


# --------------------------------------------------------------------------------------------- main


@stdout_to_stderr()  # model code (forward, tracing) must not print into the report / JSON
@sigterm_raises()  # SIGTERM runs the clean-up of temporary files and folders
def quantize_model(model: LoadedModel | nn.Module, *, options: QuantizeOptions | None = None,
                   progress: Progress = no_progress) -> QuantizeResult:
    """Quantize a model to INT8 with NNCF and compare it with FP32 on the OpenVINO CPU plugin.

    ``model``: a :class:`ghostcli.loaded.LoadedModel` or an ``nn.Module`` (then ``options.input_size``
    is required); the caller resolves MODEL names. ``options`` (:class:`QuantizeOptions`, checked when
    made) say where the calibration and evaluation images come from, how many, the NNCF preset, the
    allowed accuracy drop, the output and the timing. With labelled evaluation images and
    ``max_accuracy_drop``, NNCF's accuracy-controlled quantization keeps sensitive layers in floating
    point until the drop is within bounds. The INT8 IR is written to ``options.output`` (``.xml`` +
    ``.bin``, atomically) when given. A model whose forward fails on its input size is reported naming
    the layer. ``progress`` hears of image loading, calibration, the top-1 passes and the timing.
    """
    import torch

    from ghostcli.data import SYNTHETIC_BN
    from ghostcli.deploy.calibration import load_image_set, synthetic_bn_set
    from ghostcli.deploy.graph import openvino_op_counts
    from ghostcli.deploy.openvino_export import save_ir
    from ghostcli.runtime.openvino import compile_cpu, executed_precisions, infer_fn, int8_coverage, to_openvino
    from ghostcli.runtime.probe import run_once

    o = options or QuantizeOptions()
    out_xml = o.path
    nncf = _import_nncf()
    module, name, size = _source(model, o.input_size)
    check_normalization(o.mean, o.std, size[0])
    run_once(module, torch.randn(1, *size), name)
    calib_data, eval_data, subset_size, eval_size = o.calib_data, o.eval_data, o.subset_size, o.eval_size
    warnings: list[str] = []
    made = calib_data == SYNTHETIC_BN  # made from the model itself: no real image at all
    if made:
        calib = synthetic_bn_set(module, subset_size, size, progress)
        warnings.append(f"calibrated on {len(calib)} synthetic-bn images (made from the model's BatchNorm "
                        "statistics, no real data)" + ("" if eval_data is not None else
                                                       ": accuracy is not measured; pass `eval_data` to measure it"))
    else:
        calib = load_image_set(calib_data, split="train", input_size=size, limit=subset_size, mean=o.mean,
                               std=o.std, progress=progress, description="loading calibration images")
    if calib.synthetic:
        warnings.append(SYNTHETIC_WARNING)
    if calib.skipped:
        warnings.append(f"skipped {calib.skipped} non-image file(s) in {calib_data}")
    if len(calib) < subset_size and not calib.synthetic:
        warnings.append(f"only {len(calib)} calibration images available (asked for {subset_size})")
    eval_spec = eval_data or calib_data
    if eval_data is None and calib_data != "digits":  # a folder or noise has no separate split: don't decode the
        # same images again, and say that accuracy is measured on the calibration images
        evalset = replace(calib, split="val", images=calib.images[:eval_size], labels=calib.labels[:eval_size])
        eval_label = f"{calib_data} (the calibration images)"
        if not (calib.synthetic or made):
            warnings.append("evaluated on the calibration images (an image folder has no separate split); "
                            "pass `eval_data` DIR for held-out images")
    else:
        evalset = load_image_set(eval_spec, split="val", input_size=size, limit=eval_size, mean=o.mean, std=o.std,
                                 progress=progress, description="loading evaluation images")
        eval_label = eval_spec if eval_data is not None else f"{calib_data} (val split)"
        if eval_data is not None and evalset.skipped:
            warnings.append(f"skipped {evalset.skipped} non-image file(s) in {eval_data}")

    from ghostcli.fold import fold_batchnorm

    with contextlib.suppress(Exception):  # folding is an optimisation; OpenVINO folds conv+BN itself too
        module, _ = fold_batchnorm(module)
    ov_model = to_openvino(module, (1, *size))
    op_types = openvino_op_counts(ov_model)
    for t in o.ignored_types:
        if t not in op_types:
            warnings.append(f"the converted model has no {t} operation: `ignored_types` {t} leaves nothing out")
    n_out = int(np.prod([d.get_length() for d in ov_model.outputs[0].get_partial_shape()][1:]))
    has_accuracy = evalset.labeled and n_out == len(evalset.classes)
    if evalset.labeled and not has_accuracy:
        warnings.append(f"the model has {n_out} outputs but {eval_spec} has {len(evalset.classes)} classes: "
                        "reporting agreement with FP32 only, not accuracy")

    preset, ignored_types, max_accuracy_drop = o.preset, o.ignored_types, o.max_accuracy_drop
    if max_accuracy_drop is not None and not has_accuracy:
        raise UsageError("`max_accuracy_drop` needs labelled evaluation images whose classes match the model's "
                         "outputs (an image folder with class sub-folders, or digits for a 10-class model)")
    method = "ptq"
    if max_accuracy_drop is None:
        q_model = quantize_ov_model(ov_model, calib.images, preset=preset, ignored_types=ignored_types,
                                    progress=progress)
    else:
        method = "accuracy_control"
        common: dict[str, Any] = {"preset": nncf.QuantizationPreset(preset), "subset_size": len(calib)}
        if ignored_types:
            common["ignored_scope"] = nncf.IgnoredScope(types=list(ignored_types), validate=False)
        val_ds = nncf.Dataset(list(zip(evalset.images, evalset.labels, strict=True)), lambda item: item[0])
        try:
            with _quiet_nncf():
                q_model = nncf.quantize_with_accuracy_control(
                    ov_model, _calibration_dataset(calib.images, progress), val_ds,
                    validation_fn=_accuracy_fn, max_drop=float(max_accuracy_drop),
                    drop_type=nncf.DropType.ABSOLUTE, **common)
        except Exception as exc:
            raise ExportError(f"NNCF accuracy-controlled quantization failed: "
                              f"{one_line(exc, 300)}") from exc

    threads = o.threads
    fp32_c, _ = compile_cpu(ov_model, "f32", threads=threads)
    default_c, default_prec = compile_cpu(ov_model, None, threads=threads)
    int8_c, _ = compile_cpu(q_model, None, threads=threads)
    executed = executed_precisions(int8_c)
    n_int8, n_compute = int8_coverage(executed)
    if n_int8 == 0:
        warnings.append("the CPU plugin runs no convolution in INT8 (this CPU may lack INT8 support): "
                        "expect no speed-up")

    ref = top1(infer_fn(fp32_c), evalset.images, progress=progress, description="evaluating FP32")
    got = top1(infer_fn(int8_c), evalset.images, progress=progress, description="evaluating INT8")
    agreement = float(np.mean(ref == got))
    labels = np.asarray(evalset.labels)
    acc_fp32 = float(np.mean(ref == labels)) if has_accuracy else None
    acc_int8 = float(np.mean(got == labels)) if has_accuracy else None

    x = calib.images[0]
    t_fp32, t_default, t_int8 = time_interleaved([openvino_runner(c, x) for c in (fp32_c, default_c, int8_c)],
                                                 warmup=o.warmup, runs=o.runs, progress=progress)
    fp32 = _stats("fp32", "f32", "f32", t_fp32)
    fp32_default = _stats("fp32_default", "default", default_prec, t_default)
    int8 = _stats("int8", "default", f"int8 ({n_int8}/{n_compute} conv/FC layers in i8/u8)", t_int8)
    fp32.top1_accuracy, fp32_default.top1_accuracy, int8.top1_accuracy = acc_fp32, None, acc_int8
    fp32.size_bytes = fp32_default.size_bytes = _measure_size(ov_model)

    out_bin: Path | None = None
    if out_xml is not None:
        save_ir(q_model, out_xml, fp16=False, force=o.force)
        out_bin = out_xml.with_suffix(".bin")
        int8.size_bytes = _ir_size(out_xml)
    else:
        int8.size_bytes = _measure_size(q_model)

    try:
        n_threads = int(int8_c.get_property("INFERENCE_NUM_THREADS"))
    except Exception:  # noqa: BLE001 - OVAny raises several types
        n_threads = threads or 0
    from ghostcli.runtime.openvino import core

    try:
        device = str(core().get_property("CPU", "FULL_DEVICE_NAME"))
    except Exception:  # noqa: BLE001 - OVAny raises several types
        device = "CPU"
    return QuantizeResult(
        model=name, input_size=list(size), method=method, preset=preset, calib_data=calib_data,
        calib_images=len(calib), subset_size=subset_size, synthetic_calibration=calib.synthetic,
        eval_data=eval_label,
        eval_images=len(evalset), labeled=has_accuracy,
        fp32=fp32, fp32_default=fp32_default, int8=int8,
        speedup=fp32.latency_ms / int8.latency_ms,
        speedup_vs_default=fp32_default.latency_ms / int8.latency_ms,
        size_ratio=int8.size_bytes / fp32.size_bytes if fp32.size_bytes else float("nan"),
        top1_agreement=agreement,
        accuracy_drop=(acc_fp32 - acc_int8) if has_accuracy else None,  # type: ignore[operator]
        max_accuracy_drop=max_accuracy_drop,
        fake_quantize=int(openvino_op_counts(q_model).get("FakeQuantize", 0)),
        int8_layers=n_int8, compute_layers=n_compute, executed_precisions=executed,
        output=str(out_xml) if out_xml is not None else None,
        output_bin=str(out_bin) if out_bin is not None else None,
        measurement={"device": f"OpenVINO CPU ({device})", "threads": n_threads, "batch": 1,
                     "hint": "LATENCY", "warmup": o.warmup, "runs": o.runs, "interleaved": True,
                     "statistic": "median"},
        warnings=warnings,
    )
