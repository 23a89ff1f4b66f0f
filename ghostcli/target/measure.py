"""Timing on the target: per-layer times of whole models, and an interleaved comparison of whole models.

A :class:`TimingSource` is what the decision pass asks; :class:`RuntimeTiming` answers on this
machine (OpenVINO's per-node counters or PyTorch forward hooks, then ``runtime.timing``'s
interleaved timer), tests answer with a fake one. Per-layer rows are named by module path
(``layer1.0.conv1``; a Ghost module sits at the path of the conv it replaced), and nodes that
belong to no conv (an unfused residual add) are rows of their block (``layer1.0``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from ghostcli.progress import Progress, no_progress
from ghostcli.target.spec import Target

INT8_CALIBRATION_IMAGES = 4  # timing does not depend on the scales NNCF picks; a few random images make the IR


class TimingSource(Protocol):
    """What the decision pass needs to know about time on the target."""

    target: Target

    def layer_times(self, models: Sequence[nn.Module], progress: Progress = no_progress) -> list[dict[str, float]]:
        """For each model, module path -> ms of one inference (per-layer medians)."""
        ...

    def compare(self, models: Sequence[nn.Module], *, runs: int, warmup: int,
                progress: Progress = no_progress) -> list[list[float]]:
        """Whole-model latencies (ms) of every model, timed round-robin in one process."""
        ...

    def conditions(self) -> str:
        """Runtime, precision that ran, threads, batch: printed beside every number."""
        ...


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run with ``threads`` intra-op threads (None: unchanged), restoring the setting after."""
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class RuntimeTiming:
    """Times models on ``target`` on this machine at batch 1 and ``input_size`` (C, H, W)."""

    def __init__(self, target: Target, input_size: tuple[int, ...], *, threads: int | None = None,
                 layer_runs: int = 10, warmup: int = 3) -> None:
        self.target = target
        self.input_size = tuple(int(v) for v in input_size)
        self.threads = threads
        self.layer_runs = layer_runs
        self.warmup = warmup
        self._ir: dict[int, tuple[nn.Module, Any]] = {}  # id(model) -> (model, OpenVINO model), made once
        self._ran: str | None = None  # the precision the runtime reported

    # ----------------------------------------------------------------------------------- helpers

    def _example(self) -> torch.Tensor:
        x = torch.randn(1, *self.input_size, generator=torch.Generator().manual_seed(0))
        if self.target.device == "cuda":
            x = x.cuda()
        return x.contiguous(memory_format=torch.channels_last) if self.target.channels_last else x

    def _torch_model(self, model: nn.Module) -> nn.Module:
        if self.target.device == "cuda":
            import copy

            model = copy.deepcopy(model).cuda()
        return model.to(memory_format=torch.channels_last) if self.target.channels_last else model

    def _openvino(self, model: nn.Module) -> Any:
        """The ``openvino.Model`` to time: BN folded (names kept), and for INT8 quantized by NNCF."""
        hit = self._ir.get(id(model))
        if hit is not None and hit[0] is model:
            return hit[1]
        from ghostcli.fold import fold_batchnorm
        from ghostcli.runtime.openvino import to_openvino

        folded, _ = fold_batchnorm(model)
        ov_model = to_openvino(folded, (1, *self.input_size))
        if self.target.precision == "int8":
            from ghostcli.deploy.quantize import quantize_ov_model

            rng = np.random.default_rng(0)
            calib = [rng.standard_normal((1, *self.input_size)).astype(np.float32)
                     for _ in range(INT8_CALIBRATION_IMAGES)]
            ov_model = quantize_ov_model(ov_model, calib, fast_bias_correction=True)
        self._ir[id(model)] = (model, ov_model)
        return ov_model

    def _hint(self) -> str | None:
        """INFERENCE_PRECISION_HINT: f32/bf16 as named; INT8 IRs run their float parts at the default."""
        return None if self.target.precision == "int8" else self.target.precision

    # ----------------------------------------------------------------------------------- protocol

    def layer_times(self, models: Sequence[nn.Module], progress: Progress = no_progress) -> list[dict[str, float]]:
        """Per-layer minimum over the runs: on a shared machine another process only ever adds time."""
        from ghostcli.analysis.layer_times import openvino_model_layer_times, torch_layer_times, units

        out: list[dict[str, float]] = []
        for i, model in enumerate(models):
            progress("timing layers", i, len(models))
            if self.target.runtime == "openvino":
                rows = openvino_model_layer_times(self._openvino(model), (1, *self.input_size),
                                                  precision=self._hint(), threads=self.threads,
                                                  runs=self.layer_runs, warmup=self.warmup,
                                                  unit_paths=units(model), statistic="min")
            else:
                with torch_threads(self.threads):
                    rows = torch_layer_times([self._torch_model(model)], [self._example()], runs=self.layer_runs,
                                             warmup=self.warmup, statistic="min")[0]
            out.append({r.name: r.ms for r in rows})
        progress("timing layers", len(models), len(models))
        return out

    def compare(self, models: Sequence[nn.Module], *, runs: int, warmup: int,
                progress: Progress = no_progress) -> list[list[float]]:
        from ghostcli.runtime.timing import Runner, openvino_runner, time_interleaved, torch_runner

        runners: list[Runner] = []
        if self.target.runtime == "openvino":
            from ghostcli.runtime.openvino import compile_cpu

            data = self._example().numpy()
            for model in models:
                compiled, ran = compile_cpu(self._openvino(model), self._hint(), threads=self.threads)
                self._ran = "int8" if self.target.precision == "int8" else ran
                runners.append(openvino_runner(compiled, data))
            return time_interleaved(runners, warmup=warmup, runs=runs, progress=progress)
        with torch_threads(self.threads):
            x = self._example()
            runners = [torch_runner(self._torch_model(m).eval(), x) for m in models]
            return time_interleaved(runners, warmup=warmup, runs=runs, progress=progress)

    def conditions(self) -> str:
        from ghostcli.analysis.env import describe_cpu

        size = "x".join(str(v) for v in self.input_size)
        if self.target.runtime == "openvino":
            import openvino as ov

            ran = self._ran or self.target.precision
            runtime = f"OpenVINO {ov.__version__.split('-')[0]} CPU, {ran}"
        else:
            layout = "channels_last" if self.target.channels_last else "NCHW"
            runtime = f"torch {torch.__version__} {self.target.device}, f32, {layout}"
        threads = self.threads or (torch.get_num_threads() if self.target.runtime == "torch" else "default")
        where = describe_cpu() if self.target.device == "cpu" else torch.cuda.get_device_name()
        return f"{runtime}, {threads} threads, batch 1, {size}; {where}"


__all__ = ["INT8_CALIBRATION_IMAGES", "RuntimeTiming", "TimingSource", "torch_threads"]
