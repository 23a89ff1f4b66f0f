"""Human rendering of a ProfileReport: rich tables or Markdown on stdout."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ghostcli import render
from ghostcli.analysis.env import isa_text
from ghostcli.analysis.report import (
    Conditions,
    Environment,
    LayerTime,
    ModelProfile,
    ModuleStat,
    ProfileReport,
    RuntimeInfo,
)
from ghostcli.option_names import spell_options
from ghostcli.units import format_bytes, format_count, format_input_size, format_macs, format_ms, format_ratio

MACS_NOTE = ("MACs: 1 multiply-add = 1 MAC (the GhostNet paper's FLOP). 'MACs' = fvcore total "
             "(conv, linear, norms, pooling); 'conv+linear' = the paper's convention, BN excluded.")
EXPORTED_NOTE = ("Exported models (.onnx, .xml) are counted on their graph: MACs of its convolutions, matmuls and "
                 "pooling (BatchNorm was folded into the convs at export, so the total is fvcore's without BN), "
                 "parameters and weights of its weight constants (a folded BatchNorm leaves one bias per channel "
                 "of its two parameters; INT8 weights count as parameters, 1 byte each).")
_RUNTIME_NAMES = {"pytorch": "PyTorch", "openvino": "OpenVINO", "onnxruntime": "ONNX Runtime"}


def _exported(p: ModelProfile) -> bool:
    return p.format != "pytorch"


def runtime_text(r: RuntimeInfo) -> str:
    """``OpenVINO 2026.4.1 CPU plugin, bf16 (the plugin's default), 2 threads, 20/20 conv/FC layers in i8/u8``."""
    name = f"{_RUNTIME_NAMES.get(r.name, r.name)} {r.version or ''}".strip()
    threads = (f"{r.threads} thread{'s' if r.threads != 1 else ''}" if r.threads is not None
               else "its default threads")
    if r.name == "openvino":
        prec = f"{r.precision} (the plugin's default)" if r.precision and r.precision_default else (r.precision or "?")
        text = f"{name} CPU plugin, {prec}, {threads}"
        return text + (f", {r.int8_layers}" if r.int8_layers else "")
    if r.name == "onnxruntime":
        return f"{name} {r.device}, {threads}"
    return f"{name} on {r.device}, {r.precision}" + (f", {threads}" if r.device == "cpu" else "")


def _runtime_label(p: ModelProfile, c: Conditions) -> str:
    """Short runtime name for titles: ``OpenVINO CPU``, ``PyTorch cpu``, ``ONNX Runtime cpu``."""
    name = p.runtime.name if p.runtime else ("openvino" if c.device == "openvino" else "pytorch")
    if name == "openvino":
        return "OpenVINO CPU"
    device = "cuda" if c.device == "cuda" else "cpu"
    return f"{_RUNTIME_NAMES.get(name, name)} {device}"


def _emit(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]], numeric: Sequence[int],
          markdown: bool) -> None:
    if markdown:
        if title:
            print(f"**{title}**\n")
        print(render.markdown_table(columns, rows) + "\n")
    else:
        render.stdout.print(render.table(title, columns, rows, numeric=numeric))


def _line(text: str, markdown: bool) -> None:
    if markdown:
        print(text + "\n")
    else:
        render.stdout.print(text, highlight=False, markup=False, soft_wrap=True)


def _shape(s: list[int] | None) -> str:
    return format_input_size(tuple(s)) if s else "-"


def _threads(c: Conditions) -> str:
    """``2``; with a note when fewer ran than asked, or more than the process has CPUs for."""
    if c.threads is None:
        return "default"
    if c.threads_requested is not None and c.threads_requested != c.threads:
        cpus = f"; the process may use {c.cpus} CPUs" if c.cpus is not None else ""
        return f"{c.threads} (asked for {c.threads_requested}{cpus})"
    if c.cpus is not None and c.threads > c.cpus:
        return f"{c.threads} (more than the {c.cpus} CPUs the process may use: they share them)"
    return str(c.threads)


def format_conditions(c: Conditions, e: Environment) -> str:
    """``Conditions: device ...; threads ...; ...`` for a profile or a check that timed models."""
    isa = f"; {isa_text(e.cpu_isa)}" if c.device != "cuda" and e.cpu_isa else ""
    parts = [f"device: {c.device} ({c.device_name}{isa})", f"threads: {_threads(c)}", f"dtype: {c.dtype}",
             f"batch: {','.join(str(b) for b in c.batch_sizes)}"]
    if c.device != "openvino":
        parts.append("memory format: " + ("channels_last (NHWC)" if c.memory_format == "channels_last" else "NCHW"))
    if c.inference_precision:
        parts.append(f"OpenVINO precision: {c.inference_precision} (hint {c.performance_hint})")
    if c.runs:
        parts.append(f"warm-up {c.warmup}, runs {c.runs}")
    vers = f"torch {e.torch}"
    if c.device == "openvino":
        vers += f", openvino {e.openvino}"
    if e.gpu:
        vers += f", CUDA {e.cuda}"
    parts.append(vers)
    return "Conditions: " + "; ".join(parts)


def _summary_rows(p: ModelProfile) -> list[list[str]]:
    if _exported(p):
        rows = [
            ["MACs (graph: conv, matmul, pooling)", format_macs(p.macs)],
            ["MACs conv+matmul (paper)", format_macs(p.macs_conv_linear)],
            ["FLOPs (2 x MACs)", format_count(p.flops)],
            ["Parameters (weight constants)", f"{format_count(p.params)} ({p.params:,})"],
            ["Weights (as stored)", format_bytes(p.weight_bytes)],
            ["Activations (conv/matmul outputs)", format_count(p.activations)],
        ]
        return rows
    rows = [
        ["MACs (fvcore total)", format_macs(p.macs)],
        ["MACs conv+linear (paper)", format_macs(p.macs_conv_linear)],
        ["FLOPs (2 x MACs)", format_count(p.flops)],
        ["Parameters", f"{format_count(p.params)} ({p.params:,})"],
        ["Trainable parameters", f"{format_count(p.trainable_params)}"],
        ["Weights", format_bytes(p.weight_bytes)],
        ["Activations (conv/linear outputs)", format_count(p.activations)],
    ]
    for m in p.memory:
        if m.peak_bytes is not None:
            rows.append([f"Peak memory, batch {m.batch_size}",
                         f"{format_bytes(m.peak_bytes)} (activations {format_bytes(m.activations_peak_bytes or 0)})"])
    return rows


def _latency_rows(p: ModelProfile) -> list[list[str]]:
    return [[str(s.batch_size), format_ms(s.median_ms), format_ms(s.p90_ms), format_ms(s.p99_ms),
             format_ms(s.mean_ms), format_ms(s.std_ms), f"{s.throughput_ips:,.1f}", str(s.runs)] for s in p.latency]


def _module_rows(rows: list[ModuleStat], tree: bool) -> list[list[str]]:
    out = []
    for r in rows:
        name = ("  " * r.depth + (r.name.rsplit(".", 1)[-1] if r.name else "(model)")) if tree else r.name
        out.append([name, r.type, _shape(r.output_shape), format_macs(r.macs) if r.macs else "0",
                    format_count(r.params)])
    return out


def _print_single(p: ModelProfile, report: ProfileReport, markdown: bool) -> None:
    title = f"{p.name}  ({p.source}, input {format_input_size(tuple(p.input_size))})"
    _emit(title, ["Metric", "Value"], _summary_rows(p), (1,), markdown)
    total = p.macs or 1
    op_rows = [[k, format_macs(v), f"{100 * v / total:.1f}%"] for k, v in p.macs_by_operator.items()]
    _emit("MACs by operator", ["Operator", "MACs", "Share"], op_rows, (1, 2), markdown)
    if p.uncounted_ops:
        who = "no MAC formula" if _exported(p) else "fvcore has no MAC formula"
        _line(f"Not counted ({who}; counted as 0): "
              + ", ".join(f"{k} x{v}" for k, v in p.uncounted_ops.items()), markdown)
    if p.modules:
        _emit("Modules", ["Module", "Type", "Output", "MACs", "Params"], _module_rows(p.modules, True),
              (3, 4), markdown)
    if p.layers:
        _emit("Layers", ["Layer", "Type", "Output", "MACs", "Params"], _module_rows(p.layers, False),
              (3, 4), markdown)
    if p.latency:
        _emit("Latency", ["Batch", "Median", "p90", "p99", "Mean", "Std", "Images/s", "Runs"],
              _latency_rows(p), tuple(range(8)), markdown)


def _print_comparison(report: ProfileReport, markdown: bool) -> None:
    ref = report.models[0]
    cmp = {c.name: c for c in report.comparisons}
    show_input = len({tuple(p.input_size) for p in report.models}) > 1
    rows = []
    for i, p in enumerate(report.models):
        c = cmp.get(p.name) if i else None
        lat = p.latency[0] if p.latency else None
        mem = p.memory[0] if p.memory else None
        row = [p.name] + ([format_input_size(tuple(p.input_size))] if show_input else []) + [
            format_macs(p.macs),
            format_ratio(c.macs_ratio) if c and c.macs_ratio is not None else "1.00x",
            format_count(p.params), format_ratio(c.params_ratio) if c and c.params_ratio is not None else "1.00x",
            format_bytes(p.weight_bytes),
            format_bytes(mem.peak_bytes) if mem and mem.peak_bytes is not None else "-",
            format_ms(lat.median_ms) if lat else "-",
            format_ms(lat.p90_ms) if lat else "-",
            format_ratio(c.speedup) if c and c.speedup is not None else ("1.00x" if lat else "-"),
        ]
        rows.append(row)
    b = report.conditions.batch_sizes[0]
    cols = ["Model"] + (["Input"] if show_input else []) + [
        "MACs", "MACs x", "Params", "Params x", "Weights", "Peak mem", "Median", "p90", "Speed-up"]
    where = "" if show_input else f", input {format_input_size(tuple(ref.input_size))}"
    _emit(f"Comparison (ratios against {ref.name}{where}; latency at batch {b})", cols, rows,
          tuple(range(1 + show_input, len(cols))), markdown)
    for p in report.models:
        if p.uncounted_ops:
            who = "not counted (no MAC formula)" if _exported(p) else "not counted by fvcore"
            _line(f"{p.name}: {who}: " + ", ".join(f"{k} x{v}" for k, v in p.uncounted_ops.items()), markdown)
    if len(report.conditions.batch_sizes) > 1:
        for p in report.models:
            _emit(f"Latency: {p.name}", ["Batch", "Median", "p90", "p99", "Mean", "Std", "Images/s", "Runs"],
                  _latency_rows(p), tuple(range(8)), markdown)
    for p in report.models:
        if p.modules:
            _emit(f"Modules: {p.name}", ["Module", "Type", "Output", "MACs", "Params"],
                  _module_rows(p.modules, True), (3, 4), markdown)
        if p.layers:
            _emit(f"Layers: {p.name}", ["Layer", "Type", "Output", "MACs", "Params"],
                  _module_rows(p.layers, False), (3, 4), markdown)


def layer_time_rows(report: ProfileReport) -> tuple[list[ModelProfile], list[str], list[dict[str, LayerTime]]]:
    """The models with layer times, the layer names in merged execution order, and each model's times by name.

    A layer new in a later model goes right after its predecessor there. The table and ``--plot`` both use this.
    """
    models = [p for p in report.models if p.layer_times]
    times = [{t.name: t for t in p.layer_times} for p in models]
    names: list[str] = []
    for p in models:
        at = 0
        for t in p.layer_times:
            if t.name in names:
                at = names.index(t.name) + 1
            else:
                names.insert(at, t.name)
                at += 1
    return models, names, times


def _print_layer_times(report: ProfileReport, markdown: bool) -> None:
    """One row per module, one time column per model (and its ratio to the first), in execution order."""
    models, names, times = layer_time_rows(report)
    if not models:
        return

    def cells(values: list[float | None]) -> list[str]:  # each time, and after the first its ratio to the first
        out = []
        for i, v in enumerate(values):
            out.append(format_ms(v) if v is not None else "-")
            if i:
                out.append(format_ratio(v / values[0]) if v is not None and values[0] else "-")
        return out

    rows = [[name, " -> ".join(dict.fromkeys(tt[name].kind for tt in times if name in tt))]
            + cells([tt[name].ms if name in tt else None for tt in times]) for name in names]
    rows.append(["sum of the rows", ""] + cells([sum(t.ms for t in p.layer_times) for p in models]))
    cols = ["Layer", "Kind"]
    for i, p in enumerate(models):
        cols.append(p.name if len(models) > 1 else "Time")
        if i:
            cols.append("x")
    c = report.conditions
    labels = [_runtime_label(p, c) for p in models]
    title = labels[0] if len(set(labels)) == 1 else "; ".join(f"{p.name}: {lab}" for p, lab in zip(models, labels))
    _emit(f"Time per layer ({title})", cols, rows, tuple(range(2, len(cols))), markdown)
    lat = [f"{p.name} {format_ms(p.latency[0].median_ms)}" for p in models if p.latency]
    hows = []
    if any(lab.startswith("OpenVINO") for lab in labels):
        copy = ("a BN-folded copy" if not any(_exported(p) for p in models) else
                "a BN-folded copy (PyTorch models) or the exported graph itself,")
        hows.append(f"OpenVINO: the plugin's per-node counters (PERF_COUNT), median of 10 inferences of {copy} "
                    "compiled like the timed model, one model at a time; ops fused into a conv count with it, ops "
                    "outside any layer (e.g. a residual add that could not fuse) show under their block. The "
                    "counters add their own overhead to every node")
    if any(lab.startswith("ONNX Runtime") for lab in labels):
        hows.append("ONNX Runtime: its profiler's per-kernel times, median of 10 inferences; a conv it fused with "
                    "its activation counts with the conv, its layout reorders are '(runtime)'")
    if any(lab.startswith("PyTorch") for lab in labels):
        hows.append("PyTorch: forward hooks around each layer (perf_counter; CUDA synchronized), median of 10 "
                    "forwards; '(outside layers)' is the rest of forward (residual adds, torch.cat, flatten ...). "
                    "The hooks add a few microseconds per layer")
    how = "; ".join(hows) if len(hows) > 1 else hows[0].split(": ", 1)[1]
    if any(_exported(p) for p in models):
        how += ("; an exported model's nodes go to the layer their names record (its rows line up with the PyTorch "
                "models' layers)")
    _line(f"Layer times: {how}; a Ghost module is one row (primary conv + cheap conv + concat). Compare rows and "
          "models with each other rather than the sum with the whole-inference median"
          + (f" ({', '.join(lat)})." if lat else "."), markdown)


def print_report(report: ProfileReport, *, markdown: bool = False) -> None:
    """Print ``report`` as tables (one model: details; several: a comparison table)."""
    if len(report.models) == 1:
        _print_single(report.models[0], report, markdown)
    else:
        _print_comparison(report, markdown)
    _print_layer_times(report, markdown)
    _line(MACS_NOTE, markdown)
    exported = [p for p in report.models if _exported(p)]
    if exported:
        _line(EXPORTED_NOTE, markdown)
    _line(format_conditions(report.conditions, report.environment), markdown)
    if exported:
        timed = [p for p in report.models if p.runtime is not None]
        if timed:
            _line("Runtimes: " + "; ".join(f"{p.name}: {runtime_text(p.runtime)}" for p in timed
                                           if p.runtime is not None) + ".", markdown)
        for p in exported:
            for note in p.notes:
                _line(f"{p.name}: {spell_options(note)}.", markdown)
    mem = report.models[0].memory
    if mem:
        _line(f"Memory: {mem[0].method}.", markdown)
