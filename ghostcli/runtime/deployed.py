"""Exported models on their own runtime: read an ``.onnx`` or OpenVINO ``.xml`` file, compile and time it.

Reading picks OpenVINO's frontend by the file's suffix (``ir`` for ``.xml``, ``onnx`` for ``.onnx``)
instead of ``Core.read_model``, which would also try the TensorFlow, PaddlePaddle, JAX and PyTorch
frontends on the file. Nothing a file names is imported or called: an IR's custom layers would
need an extension library, and ONNX Runtime custom operators a registered library, and ghostcli
loads neither. Every failure to read is one :class:`~ghostcli.errors.ArtifactError` line.

ONNX Runtime is optional (``pip install onnxruntime``); OpenVINO is a dependency.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ghostcli.errors import ArtifactError, DeviceError, UsageError, one_line
from ghostcli.runtime.timing import Runner

DEPLOYED_SUFFIXES = {".onnx": "onnx", ".xml": "openvino"}
FORMAT_NAMES = {"onnx": "ONNX model", "openvino": "OpenVINO IR"}
_NOISE = ("Check '", "Exception from ", "FrontEnd API failed")


def _reason(exc: BaseException) -> str:
    """The useful line of an OpenVINO error (its messages open with source locations of the check that failed)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip() and not ln.strip().startswith(_NOISE)]
    return one_line(ValueError(lines[-1]), 160) if lines else one_line(exc, 160)


def read_graph(path: Path) -> Any:
    """The ``openvino.Model`` in ``path`` (``.xml`` with its ``.bin`` beside it, or ``.onnx``); one-line errors."""
    fmt = DEPLOYED_SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise UsageError(f"{path} is not an exported model (.onnx, or an OpenVINO .xml with its .bin)")
    if path.is_dir():
        raise ArtifactError(f"{path} is a directory, not a model file")
    if not path.is_file():
        raise ArtifactError(f"no such file: {path}")
    if fmt == "openvino" and not path.with_suffix(".bin").is_file():
        raise ArtifactError(f"{path} has no weights file beside it: an OpenVINO IR is the .xml and its "
                            f"{path.with_suffix('.bin').name}, in the same folder")
    from openvino.frontend import FrontEndManager

    from ghostcli.runtime.onnx import captured_fd2

    try:
        with captured_fd2():  # the frontends log parse errors to fd 2 as well as raising them
            frontend = FrontEndManager().load_by_framework("ir" if fmt == "openvino" else "onnx")
            graph = frontend.convert(frontend.load(str(path)))
    except Exception as exc:  # RuntimeError, GeneralFailure ... from the frontend
        raise ArtifactError(f"{path} is not a readable {FORMAT_NAMES[fmt]}: {_reason(exc)}") from None
    if len(graph.inputs) != 1:
        raise ArtifactError(f"{path} has {len(graph.inputs)} inputs: profile and check take models with one "
                            "image input")
    return graph


def input_shape(graph: Any) -> tuple[int | None, ...]:
    """The graph's input shape, ``None`` for a dynamic dimension (a dynamic rank raises)."""
    ps = graph.inputs[0].get_partial_shape()
    if ps.rank.is_dynamic:
        raise ArtifactError("the model's input has a dynamic rank: export it with a fixed input shape")
    return tuple(d.get_length() if d.is_static else None for d in ps)


def static_graph(graph: Any, shape: tuple[int, ...]) -> Any:
    """``graph`` itself when its input shape is ``shape``, else a reshaped copy (the caller's model is never changed)."""
    if input_shape(graph) == tuple(shape):
        return graph
    copy = graph.clone()
    try:
        copy.reshape([int(v) for v in shape])
    except Exception as exc:
        raise UsageError(f"the model cannot take input shape {list(shape)}: {_reason(exc)}") from None
    return copy


def compile_graph(graph: Any, shape: tuple[int, ...], *, precision: str | None, threads: int | None,
                  perf_count: bool = False) -> tuple[Any, str]:
    """Compile ``graph`` at input ``shape`` for the OpenVINO CPU plugin (LATENCY hint); ``(compiled, precision run)``."""
    from ghostcli.runtime.openvino import compile_cpu

    return compile_cpu(static_graph(graph, shape), precision, threads=threads, perf_count=perf_count)


def openvino_threads(compiled: Any, asked: int | None) -> int | None:
    """The threads a compiled model runs on (``INFERENCE_NUM_THREADS``; 0 means the plugin's choice: ``asked``)."""
    with contextlib.suppress(Exception):
        return int(compiled.get_property("INFERENCE_NUM_THREADS") or 0) or asked
    return asked


def onnxruntime_version() -> str | None:
    """The installed onnxruntime's version, or None (without importing it)."""
    from importlib import metadata

    for dist in ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            return metadata.version(dist)
    return None


def onnxruntime_session(path: Path, *, device: str, threads: int | None, profile_prefix: str | None = None) -> Any:
    """An ONNX Runtime session for ``path`` on ``device`` (cpu: CPUExecutionProvider; cuda: CUDAExecutionProvider).

    ``threads`` sets ``intra_op_num_threads`` (None: ONNX Runtime's default, one per physical core);
    ``profile_prefix`` turns on its profiler, writing ``PREFIX_<date>.json``.
    """
    try:
        import onnxruntime as ort
    except ImportError:
        raise DeviceError(f"{path.name} runs on ONNX Runtime with `device` {device}, which is not installed: "
                          "pip install onnxruntime, or pass `device` openvino") from None
    from ghostcli.runtime.onnx import captured_fd2

    providers = ["CPUExecutionProvider"]
    if device == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise DeviceError("`device` cuda: this onnxruntime has no CUDA execution provider "
                              "(pip install onnxruntime-gpu)")
        providers = ["CUDAExecutionProvider"]
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads is not None:
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
    if profile_prefix is not None:
        opts.enable_profiling = True
        opts.profile_file_prefix = profile_prefix
    try:
        with captured_fd2():
            return ort.InferenceSession(str(path), opts, providers=providers)
    except Exception as exc:
        raise ArtifactError(f"ONNX Runtime cannot load {path}: {one_line(exc, 160, first_line=True)}") from None


def onnxruntime_runner(session: Any, example: np.ndarray) -> Runner:
    """Time one ``session.run`` on ``example`` (its first input), in milliseconds."""
    name = session.get_inputs()[0].name
    feed = {name: np.ascontiguousarray(example, dtype=np.float32)}

    def run_ort() -> float:
        t0 = time.perf_counter()
        session.run(None, feed)
        return (time.perf_counter() - t0) * 1000.0

    return run_ort


def onnxruntime_profiled_runs(path: Path, example: np.ndarray, *, device: str, threads: int | None, runs: int,
                              warmup: int) -> Iterator[list[tuple[str, str, float]]]:
    """Run ``path`` on ONNX Runtime with its profiler; yield each timed run's ``(node, op type, ms)`` kernels.

    The profile file goes to a temporary folder that is removed afterwards.
    """
    import json
    import tempfile

    with tempfile.TemporaryDirectory(prefix="ghostcli-ort-") as tmp:
        session = onnxruntime_session(path, device=device, threads=threads, profile_prefix=str(Path(tmp) / "p"))
        name = session.get_inputs()[0].name
        feed = {name: np.ascontiguousarray(example, dtype=np.float32)}
        for _ in range(warmup + runs):
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
    windows = sorted((e["ts"], e["ts"] + e["dur"]) for e in events
                     if e.get("cat") == "Session" and e.get("name") == "model_run")[warmup:]
    kernels = [e for e in events if e.get("cat") == "Node" and str(e.get("name", "")).endswith("_kernel_time")]
    for start, end in windows:
        yield [(e["name"].removesuffix("_kernel_time"), str(e.get("args", {}).get("op_name", "")), e["dur"] / 1000.0)
               for e in kernels if start <= e["ts"] <= end]
