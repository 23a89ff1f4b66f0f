"""ONNX Runtime: one session per model file, its inference function, and quiet exporter logs."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ghostcli.runtime.openvino import compile_cpu, core, infer_fn


@contextlib.contextmanager
def captured_fd2() -> Iterator[None]:
    """Send file descriptor 2 to a temporary file while the exporter runs.

    torch 2.14's TorchScript exporter switches its C++ log on unconditionally and dumps the
    whole Torch IR graph to stdout when an export fails (which would corrupt ``--json``);
    the log is sent to stderr and captured, the error itself is raised and reported in one
    line. ``GHOSTCLI_DEBUG=1`` replays the captured text.
    """
    with contextlib.suppress(Exception):  # private hook; harmless if it goes away
        torch._C._jit_set_onnx_log_output_stream("stderr")
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real fd 2 (embedded interpreters)
        yield
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            if os.environ.get("GHOSTCLI_DEBUG", "") not in ("", "0", "false", "no"):
                tmp.seek(0)
                sys.stderr.write(tmp.read().decode(errors="replace"))


def onnx_session(path: str | Path, providers: Sequence[str] = ("CPUExecutionProvider",)) -> Any:
    """An ``onnxruntime.InferenceSession`` for ``path`` that logs errors only; its native log to fd 2 is captured.

    ``providers`` in order of preference. Raises ``ImportError`` without onnxruntime and what
    onnxruntime raises for a file it cannot load.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # errors only: its warnings are not the user's business
    with captured_fd2():
        return ort.InferenceSession(str(path), opts, providers=list(providers))


def session_infer(session: Any) -> Callable[[np.ndarray], np.ndarray]:
    """``infer(x) -> first output`` of an onnxruntime session (its first input fed with ``x``)."""
    name = session.get_inputs()[0].name
    return lambda x: np.asarray(session.run(None, {name: x})[0])


def onnx_runner(path: str | Path) -> Callable[[np.ndarray], tuple[np.ndarray, str]]:
    """Load the ONNX model at ``path`` once for CPU inference: onnxruntime, else OpenVINO (f32).

    Returns ``run(x) -> (first output, backend name)``; every call reuses the same session.
    """
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        compiled, _ = compile_cpu(core().read_model(str(path)), precision="f32")
        infer = infer_fn(compiled)
        return lambda x: (infer(x), "openvino-cpu-f32")
    infer = session_infer(onnx_session(path))
    return lambda x: (infer(x), "onnxruntime")
