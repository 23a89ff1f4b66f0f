"""``export_model``: PyTorch -> verified ONNX or OpenVINO IR, with BN folded and nothing half-written."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ghostcli.deploy import graph, onnx_export, openvino_export
from ghostcli.deploy.options import check_export_options
from ghostcli.deploy.verify import VerifyResult, compare_outputs, default_tolerances, merge_results
from ghostcli.errors import ExportError, UsageError
from ghostcli.fold import fold_batchnorm
from ghostcli.fsutil import atomic_dir, check_output, sigterm_raises
from ghostcli.runtime import onnx as onnx_runtime
from ghostcli.runtime import openvino as ov_runtime
from ghostcli.usercode import call_user_code, stdout_to_stderr

DYNAMIC_CHECK_BATCH = 8


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


def _unwrap(model_or_loaded: Any) -> tuple[nn.Module, tuple[int, ...] | None, str]:
    model = getattr(model_or_loaded, "model", model_or_loaded)
    if not isinstance(model, nn.Module):
        raise UsageError(f"cannot export a {type(model_or_loaded).__name__}: expected an nn.Module or a loaded model")
    size = getattr(model_or_loaded, "input_size", None)
    name = getattr(model_or_loaded, "name", None) or type(model).__name__
    return model, (tuple(size) if size else None), str(name)


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


def _verify(run: Any, x: np.ndarray, ref: np.ndarray, dynamic: bool, atol: float, rtol: float,
            backend_hint: str) -> VerifyResult:
    """Run ``run(x) -> (out, backend)`` and compare; with ``dynamic`` also image by image at batch 1."""
    out, backend = run(x)
    r = compare_outputs(ref, out, atol, rtol)
    r.checks.append(f"batch {x.shape[0]} vs PyTorch")
    results = [r]
    if dynamic:
        singles = np.concatenate([run(x[i:i + 1])[0] for i in range(x.shape[0])], axis=0)
        r1 = compare_outputs(ref, singles, atol, rtol)
        r1.checks.append(f"batch 1 (x{x.shape[0]}) vs PyTorch")
        r2 = compare_outputs(out, singles, atol, rtol)
        r2.checks.append(f"batch 1 vs batch {x.shape[0]}, per image")
        results += [r1, r2]
    return merge_results(results, backend=backend or backend_hint)


def _fail_message(r: VerifyResult) -> str:
    return (f"verification failed, exported outputs differ from PyTorch: {r.describe()}; "
            "nothing was written (loosen --atol/--rtol, or --no-verify to keep it anyway)")


@stdout_to_stderr()  # model code (forward, tracing) must not print into the report / JSON
@sigterm_raises()  # SIGTERM runs the clean-up of temporary files and folders
def export_model(
    model_or_loaded: Any,
    fmt: str,
    output: str | Path,
    *,
    input_size: tuple[int, int, int] | None = None,
    batch_size: int | None = None,
    dynamic_batch: bool = False,
    opset: int | None = None,
    simplify: bool = True,
    fp16: bool = False,
    verify: bool = True,
    atol: float | None = None,
    rtol: float | None = None,
    force: bool = False,
    fold_bn: bool = True,
    external_data_threshold: int = onnx_export.EXTERNAL_DATA_THRESHOLD,
) -> ExportResult:
    """Export a model (an ``nn.Module`` or a ``LoadedModel``) to ONNX or OpenVINO IR.

    Every conv -> BN pair is folded in PyTorch first; the written model is checked against
    the PyTorch model on the same random inputs (onnxruntime for ONNX, OpenVINO CPU at f32
    for IR) *before* it is moved into place, so a failed check leaves no file. ``atol`` /
    ``rtol`` default to 1e-4 / 1e-3 (1e-2 / 1e-2 with ``fp16``). A model whose forward fails on
    the input is reported naming the layer, before anything is exported.
    """
    from ghostcli.runtime.probe import probe_forward

    fmt_key, out = check_export_options(fmt, output, batch_size=batch_size, dynamic_batch=dynamic_batch,
                                        opset=opset, simplify=simplify, fp16=fp16, force=force, atol=atol, rtol=rtol)
    model, default_size, name = _unwrap(model_or_loaded)
    chw = tuple(int(v) for v in (input_size or default_size or ()))
    if not chw:
        raise UsageError("input_size is required for a bare nn.Module (e.g. (3, 224, 224))")
    if any(v <= 0 for v in chw):
        raise UsageError(f"invalid input size {list(chw)}")
    atol_v, rtol_v = default_tolerances(fp16, atol, rtol)
    batch_size = batch_size or 1
    shape = (1 if dynamic_batch else batch_size, *chw)
    was_training = model.training
    try:
        probe_forward(model.eval(), torch.randn(shape), model_name=name, track_memory=False)
    finally:
        model.train(was_training)

    warnings_: list[str] = []
    ghosts, sliced = _ghost_counts(model)
    if fold_bn:
        export_net, fold = call_user_code(f"folding BatchNorm of {name}", lambda: fold_batchnorm(model),
                                          error=ExportError)
        if fold.trace_error:
            warnings_.append(f"torch.fx could not trace the model ({fold.trace_error}); "
                             "BN folding used the module structure only")
        if fold.unfolded:
            warnings_.append(f"{len(fold.unfolded)} BatchNorm layer(s) do not follow a conv and stay in the graph "
                             f"(first: {fold.unfolded[0]})")
        bn_folded = fold.folded
    else:
        import copy

        export_net, bn_folded = copy.deepcopy(model).eval(), 0

    check_batch = DYNAMIC_CHECK_BATCH if dynamic_batch else batch_size
    x = ref = None
    if verify:
        x = _inputs(check_batch, chw)
        ref = _reference(model, x, name)
    shown_shape: list[Any] = ["batch" if dynamic_batch else batch_size, *chw]

    if fmt_key == "onnx":
        return _export_onnx(export_net, out, name, shape, shown_shape, dynamic_batch, opset, simplify, verify,
                            x, ref, atol_v, rtol_v, force, external_data_threshold, bn_folded, ghosts, sliced,
                            warnings_)
    return _export_openvino(export_net, out, name, shape, shown_shape, dynamic_batch, fp16, verify, x, ref,
                            atol_v, rtol_v, force, bn_folded, ghosts, sliced, warnings_)


def _export_onnx(net: nn.Module, out: Path, name: str, shape: tuple[int, ...], shown: list[Any], dynamic: bool,
                 opset: int | None, simplify: bool, verify: bool, x: Any, ref: Any, atol: float, rtol: float,
                 force: bool, threshold: int, bn_folded: int, ghosts: int, sliced: int,
                 warnings_: list[str]) -> ExportResult:
    import onnx

    with tempfile.TemporaryDirectory(prefix="ghostcli-onnx-") as work:
        raw_path = Path(work) / "raw.onnx"
        onnx_export.torch_to_onnx(net, raw_path, shape, dynamic_batch=dynamic, opset=opset)
        proto = onnx.load(str(raw_path))  # loads external data torch may have written
    onnx_export.check_model(proto)
    status = "off"
    if simplify:
        proto, status = onnx_export.simplify(proto)
        if status != "ok":
            warnings_.append(f"onnxsim {status}; keeping the unsimplified model")
    external = onnx_export.needs_external_data(proto, threshold)
    data_path = out.with_name(out.name + ".data")
    if external:
        check_output(data_path, force)
        warnings_.append(f"weights exceed the single-file limit: written as external data to {data_path.name} "
                         "(keep it next to the .onnx)")
    verification: VerifyResult | None = None
    with atomic_dir(out) as tmp:
        written = onnx_export.save(proto, tmp / out.name, external_data=external)
        if verify:
            verification = _verify(onnx_runtime.onnx_runner(tmp / out.name), x, ref, dynamic, atol, rtol,
                                   "onnxruntime")
            if not verification.passed:
                raise ExportError(_fail_message(verification))
        size = sum(p.stat().st_size for p in written)
    files = [str(out.parent / p.name) for p in written]
    counts = graph.onnx_op_counts(proto)
    opset_used = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    return ExportResult(
        format="onnx", path=str(out), files=files, model=name,
        exporter="torch.onnx.export (TorchScript-based, dynamo=False)", input_shape=shown, dynamic_batch=dynamic,
        opset=opset_used, simplify_status=status, fp16=False, external_data=external, size_bytes=size,
        bn_folded=bn_folded, bn_left=graph.bn_leftovers(counts), ghost_modules=ghosts, ghost_modules_sliced=sliced,
        ghost_slices=graph.onnx_slices_after_concat(proto), op_counts=counts, verification=verification,
        warnings=warnings_)


def _export_openvino(net: nn.Module, out: Path, name: str, shape: tuple[int, ...], shown: list[Any],
                     dynamic: bool, fp16: bool, verify: bool, x: Any, ref: Any, atol: float, rtol: float,
                     force: bool, bn_folded: int, ghosts: int, sliced: int,
                     warnings_: list[str]) -> ExportResult:
    ov_shape = (-1, *shape[1:]) if dynamic else shape
    ov_model = ov_runtime.to_openvino(net, ov_shape)
    verification: list[VerifyResult] = []

    def check(tmp_xml: Path) -> None:
        if not verify:
            return
        compiled, _ = ov_runtime.compile_cpu(ov_runtime.core().read_model(str(tmp_xml)), precision="f32")
        r = _verify(lambda a: (ov_runtime.run_compiled(compiled, a), "openvino-cpu-f32"), x, ref, dynamic,
                    atol, rtol, "openvino-cpu-f32")
        verification.append(r)
        if not r.passed:
            raise ExportError(_fail_message(r))

    xml = openvino_export.save_ir(ov_model, out, fp16=fp16, force=force, verify=check)
    files = [str(xml.with_suffix(".bin")), str(xml)]
    size = sum(Path(f).stat().st_size for f in files)
    counts = graph.openvino_op_counts(ov_model)
    return ExportResult(
        format="openvino", path=str(xml), files=files, model=name, exporter="openvino.convert_model",
        input_shape=shown, dynamic_batch=dynamic, opset=None, simplify_status="n/a", fp16=fp16, external_data=False,
        size_bytes=size, bn_folded=bn_folded, bn_left=graph.bn_leftovers(counts), ghost_modules=ghosts,
        ghost_modules_sliced=sliced, ghost_slices=graph.openvino_slices_after_concat(ov_model), op_counts=counts,
        verification=verification[0] if verification else None, warnings=warnings_)
