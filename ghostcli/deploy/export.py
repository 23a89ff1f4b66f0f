"""``export_model``: PyTorch -> verified ONNX or OpenVINO IR, with BN folded and nothing half-written."""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ghostcli.deploy import graph, onnx_export, openvino_export
from ghostcli.deploy.options import ExportOptions
from ghostcli.deploy.verify import VerifyResult, compare_outputs, default_tolerances, merge_results
from ghostcli.errors import ExportError, UsageError
from ghostcli.fold import deploy_form, fold_batchnorm
from ghostcli.fsutil import atomic_dir, check_output, sigterm_raises
from ghostcli.loaded import LoadedModel
from ghostcli.runtime import onnx as onnx_runtime
from ghostcli.runtime import openvino as ov_runtime
from ghostcli.runtime.probe import run_once
from ghostcli.usercode import call_user_code, stdout_to_stderr

DYNAMIC_CHECK_BATCH = 8

Run = Callable[[np.ndarray], tuple[np.ndarray, str]]  # the written model on an input -> (output, backend)


@dataclass
class ExportResult:
    """What ``export_model`` wrote and how it checked it (JSON keys of ``ghostcli export --json``)."""

    format: str                        # "onnx" | "openvino"
    path: str                          # the main file (.onnx or .xml)
    files: list[str]                   # every file written (.onnx [+ .onnx.data] | .xml + .bin)
    model: str                         # display name of the source model
    exporter: str                      # which converter produced the graph
    input_shape: list[Any]             # e.g. [1, 3, 224, 224] or ["batch", 3, 224, 224]
    dynamic_batch: bool
    opset: int | None                  # ONNX opset (None for OpenVINO)
    simplify_status: str               # "ok" | "off" | "failed: <why>" | "n/a"
    fp16: bool                         # OpenVINO weights compressed to FP16
    external_data: bool                # ONNX weights in <name>.onnx.data
    size_bytes: int                    # all files together
    bn_folded: int                     # conv -> BN pairs folded before export
    bn_left: int                       # BatchNorm ops still in the exported graph
    ghost_modules: int                 # Ghost modules in the model
    ghost_modules_sliced: int          # of those, how many need a channel slice (m * s != out)
    ghost_slices: int                  # Slice ops right after a Concat in the written graph (should equal the above)
    op_counts: dict[str, int]          # ops in the written graph
    verification: VerifyResult | None  # None with verify=False
    warnings: list[str] = field(default_factory=list)

    @property
    def simplified(self) -> bool:
        """True when onnxsim ran and its result was kept."""
        return self.simplify_status == "ok"


@dataclass
class _Job:
    """One export under way: the graph to write, what it is checked against, and what the result reports."""

    net: nn.Module                 # the (BN-folded) copy that is exported
    name: str                      # the source model's display name
    shape: tuple[int, ...]         # the input shape traced (batch 1 with a dynamic batch)
    shown_shape: list[Any]         # the input shape reported ("batch" for a dynamic one)
    x: np.ndarray | None           # verification input (None without verification)
    ref: np.ndarray | None         # PyTorch's output on ``x``
    atol: float
    rtol: float
    bn_folded: int
    ghosts: int
    sliced: int
    warnings: list[str]

    def verify(self, run: Run, dynamic: bool, backend_hint: str) -> VerifyResult:
        """Run the written model on ``x`` and compare; with ``dynamic`` also image by image at batch 1."""
        assert self.x is not None and self.ref is not None
        x, ref = self.x, self.ref
        out, backend = run(x)
        r = compare_outputs(ref, out, self.atol, self.rtol)
        r.checks.append(f"batch {x.shape[0]} vs PyTorch")
        results = [r]
        if dynamic:
            singles = np.concatenate([run(x[i:i + 1])[0] for i in range(x.shape[0])], axis=0)
            r1 = compare_outputs(ref, singles, self.atol, self.rtol)
            r1.checks.append(f"batch 1 (x{x.shape[0]}) vs PyTorch")
            r2 = compare_outputs(out, singles, self.atol, self.rtol)
            r2.checks.append(f"batch 1 vs batch {x.shape[0]}, per image")
            results += [r1, r2]
        verdict = merge_results(results, backend=backend or backend_hint)
        if not verdict.passed:
            raise ExportError(f"verification failed, exported outputs differ from PyTorch: {verdict.describe()}; "
                              "nothing was written (loosen `atol`/`rtol`, or `no_verify` to keep it anyway)")
        return verdict


def _source(model: LoadedModel | nn.Module, input_size: tuple[int, ...] | None) -> tuple[nn.Module, tuple[int, ...], str]:
    """(module, C x H x W, display name) of what is exported."""
    if isinstance(model, LoadedModel):
        return model.model, input_size or tuple(int(v) for v in model.input_size), model.name
    if isinstance(model, nn.Module):
        if not input_size:
            raise UsageError("`input_size` is required for a bare nn.Module (e.g. (3, 224, 224))")
        return model, input_size, type(model).__name__
    raise UsageError(f"cannot export a {type(model).__name__}: expected an nn.Module or a loaded model")


def _ghost_counts(model: nn.Module) -> tuple[int, int]:
    mods = [m for m in model.modules() if hasattr(m, "needs_slice") and hasattr(m, "primary_conv")]
    return len(mods), sum(bool(m.needs_slice) for m in mods)


def _inputs(batch: int, chw: tuple[int, ...]) -> np.ndarray:
    g = torch.Generator().manual_seed(0)
    return torch.randn((batch, *chw), generator=g).numpy()


def _reference(model: nn.Module, x: np.ndarray, name: str) -> np.ndarray:
    def forward() -> Any:
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                return model(torch.from_numpy(x))
        finally:
            model.train(was_training)

    out = call_user_code(f"{name}'s forward at batch {x.shape[0]}", forward, error=ExportError)
    if isinstance(out, (tuple, list)):
        out = out[0]
    if not isinstance(out, torch.Tensor):
        raise ExportError(f"the model returns {type(out).__name__}, export needs a tensor output")
    return out.detach().float().numpy()


@stdout_to_stderr()  # model code (forward, tracing) must not print into the report / JSON
@sigterm_raises()  # SIGTERM runs the clean-up of temporary files and folders
def export_model(model: LoadedModel | nn.Module, *, options: ExportOptions) -> ExportResult:
    """Export a ``LoadedModel`` (or an ``nn.Module`` with ``options.input_size``) as ``options`` say.

    Every conv -> BN pair is folded in PyTorch first; the written model is checked against
    the PyTorch model on the same random inputs (onnxruntime for ONNX, OpenVINO CPU at f32 for
    IR) *before* it is moved into place, so a failed check leaves no file. A model whose forward
    fails on the input is reported naming the layer, before anything is exported.
    """
    o = options
    net, chw, name = _source(model, o.input_size)
    batch_size = o.batch_size or 1
    shape = (1 if o.dynamic_batch else batch_size, *chw)
    run_once(net, torch.randn(shape), name)  # a failing forward is reported naming the layer

    warnings_: list[str] = []
    deployed = deploy_form(net)  # GhostNetV3's branches folded on a copy; the check still runs against `net`
    ghosts, sliced = _ghost_counts(deployed)
    if o.fold_bn:
        export_net, fold = call_user_code(f"folding BatchNorm of {name}", lambda: fold_batchnorm(deployed),
                                          error=ExportError)
        if fold.trace_error:
            warnings_.append(f"torch.fx could not trace the model ({fold.trace_error}); "
                             "BN folding used the module structure only")
        if fold.unfolded:
            warnings_.append(f"{len(fold.unfolded)} BatchNorm layer(s) do not follow a conv and stay in the graph "
                             f"(first: {fold.unfolded[0]})")
        bn_folded = fold.folded
    else:
        export_net, bn_folded = copy.deepcopy(deployed).eval(), 0

    x = ref = None
    if o.verify:
        x = _inputs(DYNAMIC_CHECK_BATCH if o.dynamic_batch else batch_size, chw)
        ref = _reference(net, x, name)
    atol, rtol = default_tolerances(o.fp16, o.atol, o.rtol)
    job = _Job(export_net, name, shape, ["batch" if o.dynamic_batch else batch_size, *chw], x, ref, atol, rtol,
               bn_folded, ghosts, sliced, warnings_)
    return _export_onnx(job, o) if o.format == "onnx" else _export_openvino(job, o)


def _export_onnx(job: _Job, o: ExportOptions) -> ExportResult:
    import onnx

    out = o.path
    with tempfile.TemporaryDirectory(prefix="ghostcli-onnx-") as work:
        raw_path = Path(work) / "raw.onnx"
        onnx_export.torch_to_onnx(job.net, raw_path, job.shape, dynamic_batch=o.dynamic_batch, opset=o.opset)
        proto = onnx.load(str(raw_path))  # loads external data torch may have written
    onnx_export.check_model(proto)
    status = "off"
    if o.simplify:
        proto, status = onnx_export.simplify(proto)
        if status != "ok":
            job.warnings.append(f"onnxsim {status}; keeping the unsimplified model")
    external = onnx_export.needs_external_data(proto, o.external_data_threshold)
    data_path = out.with_name(out.name + ".data")
    check_output(out, o.force)  # again at write time: the options may be older than a file made since
    if external:
        check_output(data_path, o.force)
        job.warnings.append(f"weights exceed the single-file limit: written as external data to {data_path.name} "
                            "(keep it next to the .onnx)")
    verification: VerifyResult | None = None
    with atomic_dir(out) as tmp:
        written = onnx_export.save(proto, tmp / out.name, external_data=external)
        if o.verify:
            verification = job.verify(onnx_runtime.onnx_runner(tmp / out.name), o.dynamic_batch, "onnxruntime")
        size = sum(p.stat().st_size for p in written)
    counts = graph.onnx_op_counts(proto)
    return ExportResult(
        format="onnx", path=str(out), files=[str(out.parent / p.name) for p in written], model=job.name,
        exporter="torch.onnx.export (TorchScript-based, dynamo=False)", input_shape=job.shown_shape,
        dynamic_batch=o.dynamic_batch,
        opset=next((op.version for op in proto.opset_import if op.domain in ("", "ai.onnx")), None),
        simplify_status=status, fp16=False, external_data=external, size_bytes=size, bn_folded=job.bn_folded,
        bn_left=graph.bn_leftovers(counts), ghost_modules=job.ghosts, ghost_modules_sliced=job.sliced,
        ghost_slices=graph.onnx_slices_after_concat(proto), op_counts=counts, verification=verification,
        warnings=job.warnings)


def _export_openvino(job: _Job, o: ExportOptions) -> ExportResult:
    ov_shape = (-1, *job.shape[1:]) if o.dynamic_batch else job.shape
    ov_model = ov_runtime.to_openvino(job.net, ov_shape)
    verification: list[VerifyResult] = []

    def check(tmp_xml: Path) -> None:
        if not o.verify:
            return
        compiled, _ = ov_runtime.compile_cpu(ov_runtime.core().read_model(str(tmp_xml)), precision="f32")
        verification.append(job.verify(lambda a: (ov_runtime.run_compiled(compiled, a), "openvino-cpu-f32"),
                                       o.dynamic_batch, "openvino-cpu-f32"))

    xml = openvino_export.save_ir(ov_model, o.path, fp16=o.fp16, force=o.force, verify=check)
    files = [str(xml.with_suffix(".bin")), str(xml)]
    counts = graph.openvino_op_counts(ov_model)
    return ExportResult(
        format="openvino", path=str(xml), files=files, model=job.name, exporter="openvino.convert_model",
        input_shape=job.shown_shape, dynamic_batch=o.dynamic_batch, opset=None, simplify_status="n/a", fp16=o.fp16,
        external_data=False, size_bytes=sum(Path(f).stat().st_size for f in files), bn_folded=job.bn_folded,
        bn_left=graph.bn_leftovers(counts), ghost_modules=job.ghosts, ghost_modules_sliced=job.sliced,
        ghost_slices=graph.openvino_slices_after_concat(ov_model), op_counts=counts,
        verification=verification[0] if verification else None, warnings=job.warnings)
