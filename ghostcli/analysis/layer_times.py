"""Where an inference spends its time, per PyTorch module.

Reporting units are leaf modules and whole Ghost modules (primary conv, cheap conv and
concat together), so a ghostified model lines up with the original layer by layer.

OpenVINO (:func:`openvino_model_layer_times`, any ``openvino.Model``): the model is compiled
with ``PERF_COUNT`` and run a few times; each executed node's time goes to the module that
produced it, read from the runtime graph's ``originalLayersNames``. Nodes fused into a
convolution (its BN, ReLU, a residual add) count with that conv; ops outside any unit (a
residual add that could not be fused) go to their block. Two spellings of a module path are
read: ``openvino.convert_model``'s ``__module.layer1.0.conv1/aten::...`` (ghostcli's IR export
and the INT8 IR of ``quantize`` keep them) and ``torch.onnx.export``'s scopes
``/layer1/layer1.0/conv1/Conv`` (an exported ``.onnx``). :func:`openvino_layer_times` converts
PyTorch models (BN-folded first, so that every convolution keeps its PyTorch name) and calls it.

ONNX Runtime (:func:`onnxruntime_layer_times`, an ``.onnx`` file): its profiler's per-kernel
times, attributed through the same ONNX scopes.

PyTorch (cpu/cuda): forward hooks time each unit call with ``perf_counter`` (CUDA
synchronizes around every unit); what runs in ``forward`` code outside any unit (a
residual add, ``torch.cat``, ``flatten``) is the row ``(outside layers)``.
"""

from __future__ import annotations

import re
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ghostcli.analysis.report import LayerTime

_MODULE = re.compile(r"__module(?:\.([A-Za-z0-9_.]+?))?/")
RUNTIME = "(runtime)"  # input/output reorders and other nodes that belong to no module
OUTSIDE = "(outside layers)"  # PyTorch: forward code between the timed units
_NOT_KERNELS = ("Input", "Output", "Const")  # runtime-graph layer types that execute nothing
_OV_SUFFIXES = frozenset({"WithoutBiases"})  # what OpenVINO's ONNX frontend appends to a node's name
_CALL = re.compile(r"^(.+)_\d+$")  # torch.onnx's scope of a module's second call: relu_1
_RUNTIME_OPS = ("Reorder", "Memcpy")  # ONNX Runtime's own layout and device copies


def units(model: nn.Module) -> dict[str, str]:
    """Module path -> class name for the reporting units: leaf modules and whole Ghost modules."""
    from ghostcli.layers import GhostModule

    out: dict[str, str] = {}

    def walk(mod: nn.Module, prefix: str) -> None:
        children = list(mod.named_children())
        if prefix and (isinstance(mod, GhostModule) or not children):
            out[prefix] = type(mod).__name__
            return
        for name, child in children:
            walk(child, f"{prefix}.{name}" if prefix else name)

    walk(model, "")
    return out


def onnx_scope(name: str) -> str | None:
    """The module path in a ``torch.onnx.export`` node name: ``/layer1/layer1.0/conv1/Conv`` -> ``layer1.0.conv1``.

    A Sequential's child is written with its parent's name (``layer1.0`` under ``layer1``); a name
    without scopes (``/Flatten``) is the root (""); a name that does not start with ``/`` gives None.
    """
    if not name.startswith("/"):
        return None
    parts = name[1:].split("/")
    while len(parts) > 1 and parts[-1] in _OV_SUFFIXES:
        parts.pop()
    path: list[str] = []
    prev: str | None = None
    for comp in parts[:-1]:  # the last part is the op (Conv, Relu_1 ...)
        if not comp:
            return None
        path.append(comp[len(prev) + 1:] if prev is not None and comp.startswith(prev + ".") else comp)
        prev = comp
    return ".".join(path)


def module_of(original_names: str) -> str | None:
    """The module path of the first PyTorch op in an ``originalLayersNames`` string ("" = the root).

    ``__module.layer1.0.conv1/aten::...`` names (``openvino.convert_model``) come first; else the first
    ``torch.onnx.export`` scope (:func:`onnx_scope`) among the comma-separated names; else None.
    """
    m = _MODULE.search(original_names)
    if m is not None:
        return m.group(1) or ""
    for name in original_names.split(","):
        path = onnx_scope(name.strip())
        if path is not None:
            return path
    return None


def attribute(path: str | None, unit_paths: Mapping[str, str]) -> str:
    """The reporting unit that owns ``path``: the longest unit path equal to it or containing it."""
    if path is None:
        return RUNTIME
    probe = path
    while probe:
        if probe in unit_paths:
            return probe
        probe = probe.rpartition(".")[0]
    return path or "(model)"


def _unit(path: str | None, unit_paths: Mapping[str, str]) -> str:
    """:func:`attribute`, trying a torch.onnx second-call scope (``relu_1``) as its module (``relu``) too."""
    unit = attribute(path, unit_paths)
    if path and unit == path and path not in unit_paths:
        head, _, last = path.rpartition(".")
        m = _CALL.match(last)
        if m is not None:
            again = attribute(f"{head}.{m.group(1)}" if head else m.group(1), unit_paths)
            if again in unit_paths:
                return again
    return unit


STATISTICS = {"median": np.median, "min": np.min}  # over the runs, per unit


def _stat(name: str) -> Any:
    if name not in STATISTICS:
        raise ValueError(f"statistic must be one of {', '.join(STATISTICS)}, got {name!r}")
    return STATISTICS[name]


def _rows(samples: Iterable[list[tuple[str, str, float]]], runs: int,
          unit_paths: Mapping[str, str], statistic: str = "median") -> list[LayerTime]:
    """LayerTime rows from each run's (unit, node type, ms) samples: ``statistic`` per unit, in first-seen order."""
    stat = _stat(statistic)
    per_run: dict[str, np.ndarray] = {}
    nodes: dict[str, int] = defaultdict(int)
    kinds: dict[str, set[str]] = defaultdict(set)
    for i, samples_i in enumerate(samples):
        for unit, kind, ms in samples_i:
            per_run.setdefault(unit, np.zeros(runs))[i] += ms
            if i == 0:
                nodes[unit] += 1
                kinds[unit].add(kind)
    return [LayerTime(u, unit_paths.get(u) or "+".join(sorted(kinds[u])), float(stat(t)), nodes[u])
            for u, t in per_run.items()]


def openvino_model_layer_times(ov_model: Any, example_shape: Sequence[int], *, precision: str | None = None,
                               threads: int | None = None, runs: int = 10, warmup: int = 3,
                               unit_paths: Mapping[str, str] | None = None,
                               aliases: Mapping[str, str] | None = None,
                               statistic: str = "median") -> list[LayerTime]:
    """Per-unit time of one OpenVINO CPU inference of ``ov_model`` (median over ``runs``), in execution order.

    ``ov_model``: an ``openvino.Model`` with one input, as built in memory (``openvino.convert_model``,
    :func:`ghostcli.runtime.openvino.to_openvino`, an NNCF-quantized model) or read from an ``.xml`` /
    ``.onnx`` file; it is not changed (a model whose input shape differs is compiled from a reshaped copy).
    ``example_shape``: the full input shape, batch included, e.g. ``(1, 3, 224, 224)``; the input is random
    float32 data. ``precision``: ``INFERENCE_PRECISION_HINT`` (f32, bf16, f16; None: the plugin's
    default). ``threads``: ``INFERENCE_NUM_THREADS`` (None: the plugin's). The model is compiled for the
    CPU with ``PERF_COUNT`` and the LATENCY hint, warmed up ``warmup`` times and run ``runs`` times,
    then released.

    ``unit_paths``: module path -> label of the reporting units, e.g. :func:`units` of the PyTorch model
    the graph came from (label its class name), or ``{path: ""}`` to label rows with the node types.
    Each node's time goes to the unit that contains the module named in its ``originalLayersNames``
    (:func:`module_of`), so the rows line up with that PyTorch model's; a module outside every unit is
    its own row. Without ``unit_paths`` every module path found is its own row. Nodes that carry no
    module path are ``(runtime)`` (input/output reorders, an INT8 model's input quantization); a graph
    whose names carry no module path at all (made by another tool) gets one row per original layer name.
    ``aliases`` maps an original layer name to the name to read its module from: OpenVINO names the last
    node of an ONNX graph after its output tensor (``output``), which :func:`onnx_aliases` maps back to the
    node that made it (``/fc/Gemm``). ``statistic``: ``median`` (the report) or ``min`` over the runs (what
    another process on a shared machine cannot inflate: ``ghostify --target`` decides on it).
    """
    from ghostcli.runtime.deployed import compile_graph
    from ghostcli.runtime.openvino import profiled_runs

    shape = tuple(int(v) for v in example_shape)
    compiled, _ = compile_graph(ov_model, shape, precision=precision, threads=threads, perf_count=True)
    paths = unit_paths or {}
    owner: dict[str, str] = {}  # runtime node -> the original ops it executes
    kernels: set[str] = set()  # runtime nodes that run a kernel (not the graph's inputs, outputs, constants)
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        owner[op.get_friendly_name()] = info["originalLayersNames"].astype(str) if "originalLayersNames" in info else ""
        if info["layerType"].astype(str) not in _NOT_KERNELS:
            kernels.add(op.get_friendly_name())
    named = any(module_of(owner[k] or k) is not None for k in kernels) or bool(aliases)

    alias = aliases or {}

    def unit_of(node: str) -> str:
        names = owner.get(node, "")
        path = module_of(",".join(alias.get(n, n) for n in (names or node).split(",")))
        if path is None and not named and names:
            return names.split(",")[0].strip()  # a graph without module names: its original layer names
        return _unit(path, paths)

    data = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
    # a node fused into another reads NOT_RUN; a kernel that took < 1 us also does, but counts
    samples = [[(unit_of(p.node_name), str(p.node_type), p.real_time.total_seconds() * 1e3) for p in infos
                if p.status.name == "EXECUTED" or p.node_name in kernels]
               for infos in profiled_runs(compiled, data, runs=runs, warmup=warmup)]
    del compiled  # released before the caller compiles the next model
    return _rows(samples, runs, paths, statistic)


def onnx_aliases(path: Path) -> dict[str, str]:
    """Tensor name -> the node that outputs it, for the ``.onnx`` file ``path`` (``aliases`` of
    :func:`openvino_model_layer_times`)."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return {out: n.name for n in proto.graph.node if n.name for out in n.output if out != n.name}


def onnxruntime_layer_times(path: Path, example_shape: Sequence[int], *, device: str = "cpu",
                            threads: int | None = None, runs: int = 10, warmup: int = 3,
                            unit_paths: Mapping[str, str] | None = None) -> list[LayerTime]:
    """Per-unit time of one ONNX Runtime inference of the ``.onnx`` file ``path`` (median over ``runs``).

    The times are ONNX Runtime's profiler's per-kernel times. Each kernel goes to the module of its
    ONNX node's ``torch.onnx.export`` scope (:func:`onnx_scope`); a node that ONNX Runtime fused and
    renamed after its output (a Conv with its Relu becomes ``/relu/Relu_output_0_nchwc``) goes to the
    node of its own op type it started from (the Conv). Its layout reorders, and nodes without a scope
    in a graph that has scopes, are ``(runtime)``; in a graph without any scope every node is its own
    row. ``unit_paths`` as in :func:`openvino_model_layer_times`.
    """
    import onnx

    from ghostcli.runtime.deployed import onnxruntime_profiled_runs

    proto = onnx.load(str(path), load_external_data=False)
    by_name = {n.name: n for n in proto.graph.node if n.name}
    producer = {out: n for n in proto.graph.node for out in n.output}
    paths = unit_paths or {}

    def origin(node: str, op: str) -> str:
        start = by_name.get(node) or producer.get(node.removesuffix("_nchwc"))
        if start is None:
            return node
        want, seen = op.removeprefix("Fused"), start
        for _ in range(8):  # back through the activations ONNX Runtime fused into the op
            if seen.op_type == want or not seen.input or seen.input[0] not in producer:
                break
            seen = producer[seen.input[0]]
        return (seen if seen.op_type == want else start).name or node

    named = any(onnx_scope(n) is not None for n in by_name)

    def unit_of(node: str, op: str) -> str:
        if op.startswith(_RUNTIME_OPS) or node.startswith(_RUNTIME_OPS):
            return RUNTIME
        name = origin(node, op)
        scope = onnx_scope(name)
        if scope is None:
            return RUNTIME if named else name  # as in openvino_model_layer_times
        return _unit(scope, paths)

    shape = tuple(int(v) for v in example_shape)
    data = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
    runs_seen = [[(unit_of(node, op), op, ms) for node, op, ms in kernels] for kernels in
                 onnxruntime_profiled_runs(path, data, device=device, threads=threads, runs=runs, warmup=warmup)]
    return _rows(runs_seen, len(runs_seen) or 1, paths)


def openvino_layer_times(models: Sequence[nn.Module], examples: Sequence[torch.Tensor], *, precision: str | None,
                         threads: int | None, runs: int = 10, warmup: int = 3) -> list[list[LayerTime]]:
    """Per-module time of one OpenVINO CPU inference (median over ``runs``) for each model, in execution order.

    Each model is BN-folded, converted and timed by :func:`openvino_model_layer_times`, one at a time
    (compiled, warmed up, run, released). Interleaved runs (A, B, A, B) or other compiled models kept
    alive made the stage-1 rows of Ghost-ResNet-50 up to 2x slower than measured alone, so the models
    do not share the machine here as they do in latency timing.
    """
    from ghostcli.fold import fold_batchnorm
    from ghostcli.runtime.openvino import to_openvino

    out = []
    for model, example in zip(models, examples):
        folded, _ = fold_batchnorm(model)
        shape = tuple(example.shape)
        out.append(openvino_model_layer_times(to_openvino(folded, shape), shape, precision=precision,
                                              threads=threads, runs=runs, warmup=warmup, unit_paths=units(model)))
    return out


def torch_layer_times(models: Sequence[nn.Module], examples: Sequence[torch.Tensor], *, runs: int = 10,
                      warmup: int = 3, statistic: str = "median") -> list[list[LayerTime]]:
    """Per-unit time of one PyTorch forward (``statistic`` over ``runs``: median or min) for each model,
    in call order."""
    stat = _stat(statistic)
    out = []
    for model, example in zip(models, examples):
        cuda = example.device.type == "cuda"
        sync = torch.cuda.synchronize if cuda else (lambda: None)
        unit_paths = units(model)
        named = dict(model.named_modules())
        per_run: dict[str, np.ndarray] = {}
        calls: dict[str, int] = defaultdict(int)
        run = [-1]  # index of the current timed forward; < 0 while warming up
        started: dict[str, float] = {}

        def pre(name: str):
            def hook(mod: nn.Module, args: object) -> None:
                sync()
                started[name] = time.perf_counter()
            return hook

        def post(name: str):
            def hook(mod: nn.Module, args: object, result: object) -> None:
                sync()
                if run[0] >= 0:
                    per_run.setdefault(name, np.zeros(runs))[run[0]] += (time.perf_counter() - started[name]) * 1e3
                    if run[0] == 0:
                        calls[name] += 1
            return hook

        handles = []
        for name in unit_paths:
            handles.append(named[name].register_forward_pre_hook(pre(name)))
            handles.append(named[name].register_forward_hook(post(name)))
        whole = np.zeros(runs)
        try:
            with torch.inference_mode():
                for i in range(-warmup, runs):
                    run[0] = i
                    sync()
                    t0 = time.perf_counter()
                    model(example)
                    sync()
                    if i >= 0:
                        whole[i] = (time.perf_counter() - t0) * 1e3
        finally:
            for h in handles:
                h.remove()
        rows = [LayerTime(u, unit_paths[u], float(stat(t)), calls[u]) for u, t in per_run.items()]
        outside = whole - sum(per_run.values(), np.zeros(runs))
        rows.append(LayerTime(OUTSIDE, "forward code", float(max(0.0, np.median(outside))), 0))
        out.append(rows)
    return out


__all__ = ["LayerTime", "OUTSIDE", "RUNTIME", "attribute", "module_of", "onnx_aliases", "onnx_scope",
           "onnxruntime_layer_times", "openvino_layer_times", "openvino_model_layer_times", "torch_layer_times",
           "units"]
