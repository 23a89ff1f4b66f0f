"""The OpenVINO runtime: one Core, PyTorch -> OpenVINO conversion, CPU compilation at a chosen precision."""

from __future__ import annotations

import contextlib
import functools
import logging
import re
import sys
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from ghostcli.errors import DeviceError, ExportError, UsageError, one_line

PRECISIONS = ("f32", "bf16", "f16")


@functools.lru_cache(maxsize=1)
def core() -> Any:
    """One shared ``openvino.Core`` (creating one is not free)."""
    import openvino as ov

    return ov.Core()


@contextlib.contextmanager
def no_cuda_home_warning() -> Iterator[None]:
    """Silence torch's "No CUDA runtime is found" warning for the duration.

    torch logs it when ``torch.utils.cpp_extension`` is first imported on a machine with a CUDA
    folder but no GPU; NNCF imports that module, and so does ``openvino.convert_model`` once NNCF
    is loaded. It is noise for a CPU export: stderr is for errors and ghostcli's own progress.
    """
    logger = logging.getLogger("torch.utils.cpp_extension")
    old = logger.level
    logger.setLevel(max(logging.ERROR, old))
    try:
        yield
    finally:
        logger.setLevel(old)


def no_telemetry() -> None:
    """Turn off the usage telemetry of OpenVINO's converter and of NNCF where it is already loaded.

    Unless the user ran OpenVINO's ``opt_in_out --opt_out``, ``openvino.convert_model`` and NNCF send
    usage events to Intel's analytics and write a client ID under ``~/intel``; each event forks the whole
    Python process from a helper thread, which costs about a second per conversion and can deadlock the
    child (the process then hangs at exit). ``import ghostcli`` makes the telemetry package unimportable,
    so both fall back to their no-op stubs; this installs the same stubs where the package had been
    imported before ghostcli. Idempotent.
    """
    if sys.modules.get("openvino_telemetry") is None:
        return  # never loaded: OpenVINO and NNCF already use their stubs
    try:
        from openvino.tools.ovc import convert_impl, telemetry_stub, telemetry_utils, utils
    except ImportError:  # another OpenVINO layout: nothing we know how to switch off
        pass
    else:
        for module in (convert_impl, telemetry_utils, utils):
            if hasattr(module, "tm"):
                setattr(module, "tm", telemetry_stub)
    nncf_telemetry = sys.modules.get("nncf.telemetry.wrapper")
    if nncf_telemetry is not None and hasattr(nncf_telemetry, "NNCFTelemetryStub"):
        stub = nncf_telemetry.NNCFTelemetryStub()
        for name in ("nncf.telemetry.wrapper", "nncf.telemetry.decorator", "nncf.telemetry"):
            if (module := sys.modules.get(name)) is not None and hasattr(module, "telemetry"):
                setattr(module, "telemetry", stub)


def _conversion_error(exc: Exception) -> ExportError:
    text = str(exc)
    ops: list[str] = []
    m = re.search(r"No conversion rule found for operations?:\s*([^\n]+)", text)
    if m:
        ops = sorted({o.strip() for o in m.group(1).split(",") if o.strip()})
    if not ops:
        ops = sorted(set(re.findall(r"No translation for (\S+?)[\s.,]", text + " ")))
    if "Tracing failed sanity checks" in text or "differed across invocations" in text:
        return ExportError("OpenVINO conversion failed: tracing the model twice gave different graphs "
                           "(forward depends on Python state or on the data)")
    if ops:
        return ExportError(f"OpenVINO cannot convert operator(s) {', '.join(ops)}")
    return ExportError(f"OpenVINO conversion failed: {one_line(exc, 300, first_line=True)}")


def to_openvino(model: nn.Module, input_shape: tuple[int, ...]) -> Any:
    """Convert an eval-mode PyTorch model to an ``openvino.Model`` with a static input shape.

    ``input_shape`` is the full shape including batch, e.g. ``(1, 3, 224, 224)``; a batch
    of ``-1`` makes the batch dimension dynamic. The model is traced with a random
    example input of that shape (batch 1 when dynamic).
    """
    import openvino as ov

    shape = tuple(int(v) for v in input_shape)
    if len(shape) < 2 or any(v <= 0 for v in shape[1:]) or (shape[0] <= 0 and shape[0] != -1):
        raise UsageError(f"invalid input shape {list(shape)} for OpenVINO conversion")
    no_telemetry()
    model = model.eval()
    example = torch.randn((max(shape[0], 1), *shape[1:]))
    try:
        with torch.no_grad(), warnings.catch_warnings(), no_cuda_home_warning():
            warnings.simplefilter("ignore")  # torch.jit.trace deprecation notices
            ov_model = ov.convert_model(model, example_input=example, input=[ov.PartialShape(list(shape))])
    except Exception as exc:  # OpConversionFailure, tracing errors ...
        raise _conversion_error(exc) from exc
    ov_model.outputs[0].get_tensor().set_names({"output"} | set(ov_model.outputs[0].get_names()))
    ov_model.inputs[0].get_tensor().set_names({"input"} | set(ov_model.inputs[0].get_names()))
    return ov_model


def _precision_name(value: Any) -> str:
    text = str(getattr(value, "get_type_name", lambda: value)()).lower()
    aliases = {"f32": "f32", "fp32": "f32", "float32": "f32", "bf16": "bf16", "bfloat16": "bf16",
               "f16": "f16", "fp16": "f16", "float16": "f16"}
    return aliases.get(text, text)


def compile_cpu(ov_model: Any, precision: str | None = None, threads: int | None = None,
                hint: str = "LATENCY", perf_count: bool = False) -> tuple[Any, str]:
    """Compile for the OpenVINO CPU plugin; returns ``(compiled_model, executed_precision)``.

    ``precision`` sets ``INFERENCE_PRECISION_HINT`` (``None`` keeps the device default,
    which is bf16 on CPUs with AMX/AVX512-BF16); the returned precision is what the
    plugin reports it will run at. ``perf_count`` turns on the per-node counters (``PERF_COUNT``),
    which cost a little time on every node: don't time latency with it.
    """
    if precision is not None and precision not in PRECISIONS:
        raise UsageError(f"unknown inference precision {precision!r} (choose from {', '.join(PRECISIONS)})")
    if hint.upper() not in ("LATENCY", "THROUGHPUT", "CUMULATIVE_THROUGHPUT"):
        raise UsageError(f"unknown performance hint {hint!r} (LATENCY or THROUGHPUT)")
    if threads is not None and threads < 1:
        raise UsageError(f"threads must be positive, got {threads}")
    config: dict[str, Any] = {"PERFORMANCE_HINT": hint.upper()}
    if precision is not None:
        config["INFERENCE_PRECISION_HINT"] = precision
    if threads is not None:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    if perf_count:
        config["PERF_COUNT"] = True
    ie = core()
    if "CPU" not in ie.available_devices:
        raise DeviceError("the OpenVINO CPU device is not available")
    try:
        compiled = ie.compile_model(ov_model, "CPU", config)
    except Exception as exc:
        raise ExportError(f"OpenVINO could not compile the model for CPU: {one_line(exc, 300)}") from exc
    executed = _precision_name(compiled.get_property("INFERENCE_PRECISION_HINT"))
    if precision is not None and executed != precision:
        raise DeviceError(f"the CPU runs {executed} instead of the requested {precision} "
                          f"(this CPU may lack {precision} support)")
    return compiled, executed


def infer_fn(compiled: Any) -> Callable[[np.ndarray], np.ndarray]:
    """``infer(x) -> first output`` (numpy, a copy) of a compiled model; one infer request, reused by every call."""
    request = compiled.create_infer_request()
    output = compiled.outputs[0]
    return lambda x: np.asarray(request.infer({0: x})[output])


def run_compiled(compiled: Any, x: Any) -> Any:
    """Run a compiled model once on one numpy input; returns the first output as numpy."""
    return infer_fn(compiled)(x)


def profiled_runs(compiled: Any, x: np.ndarray, *, runs: int, warmup: int) -> Iterator[list[Any]]:
    """Infer ``warmup`` times, then ``runs`` times, yielding each timed run's per-node ``profiling_info``.

    ``compiled`` must have been compiled with ``perf_count=True`` (:func:`compile_cpu`).
    """
    request = compiled.create_infer_request()
    for _ in range(warmup):
        request.infer({0: x})
    for _ in range(runs):
        request.infer({0: x})
        yield list(request.profiling_info)


#: the CPU plugin's layer types that do the multiply-adds (what INT8 coverage counts)
COMPUTE_LAYERS = ("Convolution", "Deconvolution", "FullyConnected", "MatMul")


def rt_str(value: Any) -> str:
    """An OpenVINO rt_info entry (an ``OVAny``) as text."""
    if hasattr(value, "astype"):
        with contextlib.suppress(Exception):  # OVAny raises several types
            return str(value.astype(str))
    return str(getattr(value, "value", value))


def executed_precisions(compiled_model: Any) -> dict[str, dict[str, int]]:
    """What the OpenVINO CPU plugin actually runs: ``{layer type: {precision: count}}``.

    Read from the compiled model's runtime graph (``layerType`` / ``runtimePrecision``);
    an INT8 model whose convolutions show ``f32``/``bf16`` here is not running INT8 kernels.
    """
    out: dict[str, Counter[str]] = {}
    for op in compiled_model.get_runtime_model().get_ordered_ops():
        rt = op.get_rt_info()
        layer = rt_str(rt["layerType"]) if "layerType" in rt else op.get_type_name()
        prec = rt_str(rt["runtimePrecision"]) if "runtimePrecision" in rt else "?"
        if layer in ("Input", "Output", "Parameter", "Result", "Const"):
            continue
        out.setdefault(layer, Counter())[prec.lower()] += 1
    return {k: dict(v.most_common()) for k, v in sorted(out.items())}


def int8_coverage(executed: dict[str, dict[str, int]]) -> tuple[int, int]:
    """(conv/FC layers executed in i8/u8, all conv/FC layers) from :func:`executed_precisions`."""
    n_int8 = total = 0
    for layer, precs in executed.items():
        if any(key in layer for key in COMPUTE_LAYERS):
            total += sum(precs.values())
            n_int8 += sum(c for p, c in precs.items() if p in ("i8", "u8"))
    return n_int8, total
