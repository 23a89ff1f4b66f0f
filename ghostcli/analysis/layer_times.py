"""Where an inference spends its time, per PyTorch module.

Reporting units are leaf modules and whole Ghost modules (primary conv, cheap conv and
concat together), so a ghostified model lines up with the original layer by layer.

OpenVINO: the model is BN-folded (so that every convolution keeps its PyTorch name
through conversion), compiled with ``PERF_COUNT`` and run a few times; each executed
node's time goes to the module that produced it, read from the runtime graph's
``originalLayersNames``. Nodes fused into a convolution (its BN, ReLU, a residual add)
count with that conv; ops outside any unit (a residual add that could not be fused) go
to their block.

PyTorch (cpu/cuda): forward hooks time each unit call with ``perf_counter`` (CUDA
synchronizes around every unit); what runs in ``forward`` code outside any unit (a
residual add, ``torch.cat``, ``flatten``) is the row ``(outside layers)``.
"""

from __future__ import annotations

import re
import time
from collections import defaultdict
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ghostcli.analysis.report import LayerTime

_MODULE = re.compile(r"__module(?:\.([A-Za-z0-9_.]+?))?/")
RUNTIME = "(runtime)"  # input/output reorders and other nodes that belong to no module
OUTSIDE = "(outside layers)"  # PyTorch: forward code between the timed units
_NOT_KERNELS = ("Input", "Output", "Const")  # runtime-graph layer types that execute nothing


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


def module_of(original_names: str) -> str | None:
    """The module path of the first PyTorch op in an ``originalLayersNames`` string ("" = the root)."""
    m = _MODULE.search(original_names)
    if m is None:
        return None
    return m.group(1) or ""


def attribute(path: str | None, unit_paths: dict[str, str]) -> str:
    """The reporting unit that owns ``path``: the longest unit path equal to it or containing it."""
    if path is None:
        return RUNTIME
    probe = path
    while probe:
        if probe in unit_paths:
            return probe
        probe = probe.rpartition(".")[0]
    return path or "(model)"


def openvino_layer_times(models: Sequence[nn.Module], examples: Sequence[torch.Tensor], *, precision: str | None,
                         threads: int | None, runs: int = 10, warmup: int = 3) -> list[list[LayerTime]]:
    """Per-module time of one OpenVINO CPU inference (median over ``runs``) for each model, in execution order.

    One model at a time is compiled, warmed up and run, then released. Interleaved runs (A, B, A, B)
    or other compiled models kept alive made the stage-1 rows of Ghost-ResNet-50 up to 2x slower
    than measured alone, so the models do not share the machine here as they do in latency timing.
    """
    from ghostcli.fold import fold_batchnorm
    from ghostcli.runtime.openvino import compile_cpu, profiled_runs, to_openvino

    out = []
    for model, example in zip(models, examples):
        folded, _ = fold_batchnorm(model)
        compiled, _ = compile_cpu(to_openvino(folded, tuple(example.shape)), precision, threads=threads,
                                  perf_count=True)
        owner: dict[str, str] = {}  # runtime node -> the PyTorch ops it executes
        kernels: set[str] = set()  # runtime nodes that run a kernel (not the graph's inputs, outputs, constants)
        for op in compiled.get_runtime_model().get_ordered_ops():
            info = op.get_rt_info()
            owner[op.get_friendly_name()] = info["originalLayersNames"].astype(str) if "originalLayersNames" in info else ""
            if info["layerType"].astype(str) not in _NOT_KERNELS:
                kernels.add(op.get_friendly_name())
        unit_paths = units(model)
        data = example.detach().cpu().numpy().astype(np.float32)
        per_run: dict[str, np.ndarray] = {}  # unit -> ms in each run, in first-seen (execution) order
        nodes: dict[str, int] = defaultdict(int)
        kinds: dict[str, set[str]] = defaultdict(set)
        for i, infos in enumerate(profiled_runs(compiled, data, runs=runs, warmup=warmup)):
            for p in infos:
                if p.status.name != "EXECUTED" and p.node_name not in kernels:
                    continue  # fused into another node; a kernel that took < 1 us also reads NOT_RUN, but counts
                unit = attribute(module_of(owner.get(p.node_name, "") or p.node_name), unit_paths)
                per_run.setdefault(unit, np.zeros(runs))[i] += p.real_time.total_seconds() * 1e3
                if i == 0:
                    nodes[unit] += 1
                    kinds[unit].add(str(p.node_type))
        out.append([LayerTime(u, unit_paths.get(u) or "+".join(sorted(kinds[u])), float(np.median(t)), nodes[u])
                    for u, t in per_run.items()])
        del compiled
    return out


def torch_layer_times(models: Sequence[nn.Module], examples: Sequence[torch.Tensor], *, runs: int = 10,
                      warmup: int = 3) -> list[list[LayerTime]]:
    """Per-unit time of one PyTorch forward (median over ``runs``) for each model, in call order."""
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
        rows = [LayerTime(u, unit_paths[u], float(np.median(t)), calls[u]) for u, t in per_run.items()]
        outside = whole - sum(per_run.values(), np.zeros(runs))
        rows.append(LayerTime(OUTSIDE, "forward code", float(max(0.0, np.median(outside))), 0))
        out.append(rows)
    return out


__all__ = ["LayerTime", "OUTSIDE", "RUNTIME", "attribute", "module_of", "openvino_layer_times", "torch_layer_times",
           "units"]
