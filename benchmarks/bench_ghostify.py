"""ResNet-50 vs Ghost-ResNet-50 (s=2): is the ghostified network faster for real, not only on paper?

Both models live in one process and are timed in interleaved rounds (base, ghost, base, ghost ...
with the order alternating each round) at batch 1, 3x224x224, on
  (a) PyTorch eager CPU (torch.inference_mode), NCHW ("eager") and channels_last ("eager-cl"),
  (b) OpenVINO CPU at f32 inference precision, and
  (c) OpenVINO CPU at its default inference precision (bf16 on CPUs that have it).
Each round gives a ghost/base latency ratio; the script prints the median ratio, the spread of the
per-round ratios (IQR) and the medians of the latencies. The MAC ratio (0.53) is the floor.

Targets: OpenVINO f32 <= 0.58, OpenVINO default <= 0.62, PyTorch eager <= 0.65.

Single-threaded by default: on a shared machine another process stealing one core from a multi-threaded
run stalls every parallel region and drags the ratio towards 1 (--threads 0 = the libraries' default).

Usage:
  python benchmarks/bench_ghostify.py [--rounds 30] [--warmup 5] [--threads 1]
                                      [--backends eager,eager-cl,ov-f32,ov-default]
                                      [--layers]   # also print the layer types OpenVINO executes for the Ghost model
                                      [--scaling 2] # also: OpenVINO f32 at 1 and 2 threads, interleaved
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from typing import Any

import numpy as np
import torch

from ghostcli.runtime.timing import Runner, openvino_runner, time_interleaved, torch_runner

TARGETS = {"eager": 0.65, "eager-cl": 0.65, "ov-f32": 0.58, "ov-default": 0.62}


def build_models(ratio: int = 2) -> tuple[torch.nn.Module, torch.nn.Module]:
    """torchvision ResNet-50 (random weights) and its ghostify(ratio) version, both in eval mode."""
    import torchvision

    from ghostcli.convert import ghostify

    torch.manual_seed(0)
    base = torchvision.models.resnet50(weights=None).eval()
    ghost, report = ghostify(base, ratio=ratio)
    print(f"MACs: {(report.macs_before or 0) / 1e9:.2f} G -> {(report.macs_after or 0) / 1e9:.2f} G "
          f"(ratio {report.macs_ratio:.3f}); params {report.params_before / 1e6:.2f} M -> "
          f"{report.params_after / 1e6:.2f} M", file=sys.stderr)
    return base, ghost.eval()


def openvino_compile(ov_model, precision: str | None, threads: int | None):
    """Compile a converted model for the OpenVINO CPU plugin (LATENCY hint) with ghostcli's own deploy helpers."""
    from ghostcli.runtime.openvino import compile_cpu

    return compile_cpu(ov_model, precision, threads=threads or None)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="torch / OpenVINO threads (0: the libraries' default)")
    ap.add_argument("--backends", default="eager,eager-cl,ov-f32,ov-default")
    ap.add_argument("--layers", action="store_true", help="print the layer types OpenVINO executes")
    ap.add_argument("--scaling", type=int, default=0, metavar="N",
                    help="also time OpenVINO f32 at 1 and N threads in one interleaved run (thread scaling)")
    args = ap.parse_args(argv)
    from ghostcli.analysis.env import describe_cpu

    print(f"CPU: {describe_cpu()}; {time.strftime('%Y-%m-%d')}")  # every number below came from it
    if args.threads:
        torch.set_num_threads(args.threads)
    base, ghost = build_models()
    x = torch.randn(1, 3, 224, 224)
    converted: list = []  # (base, ghost) as openvino.Model, converted once for every OpenVINO measurement

    def to_ov() -> tuple[Any, Any]:
        if not converted:
            from ghostcli.runtime.openvino import to_openvino

            converted.extend(to_openvino(m, tuple(x.shape)) for m in (base, ghost))
        return converted[0], converted[1]

    rows = []
    for backend in args.backends.split(","):
        if backend in ("eager", "eager-cl"):
            if backend == "eager-cl":  # channels_last: oneDNN's depthwise conv is slow on NCHW for some shapes
                cl = torch.channels_last
                xcl = x.contiguous(memory_format=cl)
                runners: tuple[Runner, Runner] = (torch_runner(copy.deepcopy(base).to(memory_format=cl), xcl),
                                                  torch_runner(copy.deepcopy(ghost).to(memory_format=cl), xcl))
            else:
                runners = (torch_runner(base, x), torch_runner(ghost, x))
            cond = f"torch {torch.__version__}, {torch.get_num_threads()} threads, f32"
        elif backend in ("ov-f32", "ov-default"):
            import openvino as ov

            from ghostcli.runtime.openvino import executed_precisions

            prec = "f32" if backend == "ov-f32" else None
            base_ov, ghost_ov = to_ov()
            cb, _ = openvino_compile(base_ov, prec, args.threads)
            cg, ran = openvino_compile(ghost_ov, prec, args.threads)
            runners = (openvino_runner(cb, x.numpy()), openvino_runner(cg, x.numpy()))
            cond = (f"openvino {ov.__version__.split('-')[0]}, precision {ran}, "
                    f"{cg.get_property('INFERENCE_NUM_THREADS')} threads")
            if args.layers:
                print(f"[{backend}] executed by OpenVINO for Ghost-ResNet-50:", file=sys.stderr)
                for layer, precs in executed_precisions(cg).items():
                    print(f"  {layer:<20} " + ", ".join(f"{p} x{n}" for p, n in precs.items()), file=sys.stderr)
        else:
            ap.error(f"unknown backend {backend!r}")
        a, b = time_interleaved(runners, warmup=args.warmup, runs=args.rounds, alternate=True)
        per_round = np.array(b) / np.array(a)
        q25, q75 = np.percentile(per_round, [25, 75])
        rows.append((backend, statistics.median(a), statistics.median(b), float(np.median(per_round)),
                     f"{q25:.3f}-{q75:.3f}", TARGETS[backend], cond))
    print(f"batch 1, 3x224x224, {args.rounds} interleaved rounds after {args.warmup} warm-up; "
          "ratio = median of per-round ghost/base latency")
    print(f"{'backend':<11} {'ResNet-50':>10} {'Ghost-R50':>10} {'ratio':>6} {'IQR':>11} {'target':>7}  conditions")
    for backend, ma, mb, r, iqr, tgt, cond in rows:
        flag = "ok" if r <= tgt else "MISSED"
        print(f"{backend:<11} {ma:8.2f}ms {mb:8.2f}ms {r:6.3f} {iqr:>11} {tgt:>5.2f} {flag:>6}  {cond}")
    print("IQR: 25th-75th percentile of the per-round ratios; the median moves by about +-0.01 between runs "
          "on a quiet machine, so a ratio within 0.01 of its target is a tie, not a verdict.")
    if args.scaling > 1:
        thread_scaling(*to_ov(), x.numpy(), args.scaling, args.rounds, args.warmup)
    return 0


def thread_scaling(base_ov, ghost_ov, x: np.ndarray, threads: int, rounds: int, warmup: int) -> None:
    """OpenVINO f32 latency of both (converted) models at 1 and ``threads`` threads, all four timed round-robin."""
    compiled = {f"{name}@{t}": openvino_compile(ov_model, "f32", t)[0]
                for name, ov_model in (("ResNet-50", base_ov), ("Ghost-R50", ghost_ov)) for t in (1, threads)}
    times = time_interleaved([openvino_runner(c, x) for c in compiled.values()], warmup=warmup, runs=rounds)
    med = {k: statistics.median(v) for k, v in zip(compiled, times)}
    print(f"OpenVINO f32 thread scaling (1 -> {threads} threads, {rounds} interleaved rounds, medians):")
    for name in ("ResNet-50", "Ghost-R50"):
        one, many = med[f"{name}@1"], med[f"{name}@{threads}"]
        print(f"  {name:<10} {one:8.2f}ms -> {many:8.2f}ms  speed-up {one / many:.2f}x")
    for t in (1, threads):
        print(f"  ratio at {t} thread(s): {med[f'Ghost-R50@{t}'] / med[f'ResNet-50@{t}']:.3f}")


if __name__ == "__main__":
    sys.exit(main())
