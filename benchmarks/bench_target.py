"""Hardware-aware ghostify on ResNet-50: does `ghostify --target T` turn the cut in MACs into speed on T?

For every backend (PyTorch eager NCHW / channels_last, OpenVINO f32 / bf16 / INT8) and thread count,
in one process:

1. `ghostify_for_target(resnet50, target=T)` decides on this machine, measuring the cheap kernels d=3 and d=1
   unless `--dw-kernel` names one (its decision time is printed);
2. ResNet-50, the paper ghostify (every eligible conv at s=2), the `--target` result and, with
   `--stage`, the G-Ghost rebuild of every eligible stage (`--mode stage`, cheap ratio 0.5) are timed
   round-robin (A, B, C, D, A, B ...) on T at batch 1, 3x224x224; OpenVINO INT8 times the NNCF-quantized
   IR of each (random calibration images: speed does not depend on the scales).

Printed per row: the median latency of ResNet-50, then each contender's median per-round latency
ratio to it with the IQR of those ratios, the target's MAC ratio (>= 0.50 by construction: no more
compression than the paper's s=2) and the issue's speed target for this kind of CPU. Weights are
random; latency does not depend on their values.

Usage:
  python benchmarks/bench_target.py                       # all backends, 1 thread and all cores
  python benchmarks/bench_target.py --backends ov-int8 --threads 1 --rounds 40 --stage
  python benchmarks/bench_target.py --backends ov-bf16,ov-int8 --threads 1 --dw-kernel 3   # d=3 only, as before
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch

BACKENDS = {"eager": "cpu", "eager-cl": "cpu-channels-last", "ov-f32": "openvino-f32", "ov-bf16": "openvino-bf16",
            "ov-int8": "openvino-int8"}
# the targets (ratio to ResNet-50 on the same runtime and precision)
TARGETS_AMX = {"ov-f32": 0.60, "ov-bf16": 0.75, "ov-int8": 0.80, "eager-cl": 0.70}
TARGETS_AVX512 = {"ov-f32": 0.58, "ov-bf16": 0.62, "ov-int8": 0.65, "eager-cl": 0.65}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backends", default="eager-cl,ov-f32,ov-bf16,ov-int8",
                    help=f"comma-separated, from {', '.join(BACKENDS)}")
    ap.add_argument("--threads", default="1,all", help="comma-separated thread counts; 'all' = every usable core")
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--stage", action="store_true", help="also time the G-Ghost rebuild of every eligible stage")
    ap.add_argument("--dw-kernel", type=int, default=None,
                    help="the cheap depthwise kernel d of the paper ghostify and of --target (ghostify --dw-kernel); "
                         "default: the paper's d=3, and --target measures d=3 and d=1, as ghostify --target does")
    args = ap.parse_args(argv)

    import torchvision

    from ghostcli.analysis.env import cpu_isa, describe_cpu
    from ghostcli.convert import ghostify
    from ghostcli.ghostify_options import DEFAULT_DW_KERNEL, TARGET_EXTRA_DW_KERNELS, GhostifyOptions
    from ghostcli.target import TARGETS, RuntimeTiming, TargetOptions, check_available, ghostify_for_target

    isa = cpu_isa()
    goals = TARGETS_AMX if "AMX" in isa else TARGETS_AVX512
    print(f"CPU: {describe_cpu()}; {time.strftime('%Y-%m-%d')}; torch {torch.__version__}")
    print(f"targets for {'an AMX' if 'AMX' in isa else 'an AVX-512 (no AMX)'} CPU: "
          + ", ".join(f"{k} <= {v}" for k, v in goals.items()))
    torch.manual_seed(0)
    base = torchvision.models.resnet50().eval()
    options = GhostifyOptions(dw_kernel=args.dw_kernel or DEFAULT_DW_KERNEL)
    extra_kernels = TARGET_EXTRA_DW_KERNELS if args.dw_kernel is None else ()
    paper, paper_report = ghostify(base, options)
    stage = None
    if args.stage:
        from ghostcli.convert.stage import eligible_stages

        stage, stage_report = ghostify(base, GhostifyOptions(stages=tuple(eligible_stages(base))), allow_empty=True)
        print(f"G-Ghost stages: MACs ratio {stage_report.macs_ratio:.3f}")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    thread_counts = [cores if t == "all" else int(t) for t in args.threads.split(",")]
    print(f"paper ghostify (d={options.dw_kernel}): MACs ratio {paper_report.macs_ratio:.3f}; {args.rounds} interleaved rounds after "
          f"{args.warmup} warm-up; ratio = median of per-round latency / ResNet-50's (IQR in brackets)")
    head = f"{'backend':<9} {'thr':>3} {'ResNet-50':>10} {'paper':>17} {'--target':>17}"
    head += f" {'stage':>17}" if stage is not None else ""
    print(head + f" {'MACs':>5} {'decide':>7} {'goal':>5}")
    for threads in thread_counts:
        for backend in args.backends.split(","):
            spec = TARGETS[BACKENDS[backend]]
            try:
                check_available(spec)
            except Exception as exc:  # noqa: BLE001 - say why a row is missing, go on
                print(f"{backend:<9} {threads:>3} skipped: {exc}")
                continue
            t0 = time.perf_counter()
            chosen, report, tr = ghostify_for_target(base, options, target=TargetOptions(spec.name, threads=threads,
                                                                                 dw_kernels=extra_kernels))
            decided = time.perf_counter() - t0
            models = [base, paper, chosen] + ([stage] if stage is not None else [])
            timing = RuntimeTiming(spec, (3, 224, 224), threads=threads)
            times = [np.asarray(t) for t in timing.compare(models, runs=args.rounds, warmup=args.warmup)]
            cells = []
            for t in times[1:]:
                r = t / times[0]
                q25, q75 = np.percentile(r, [25, 75])
                cells.append(f"{np.median(r):.3f} [{q25:.2f}-{q75:.2f}]")
            goal = goals.get(backend)
            ok = "" if goal is None else ("ok" if np.median(times[2] / times[0]) <= goal else "MISSED")
            print(f"{backend:<9} {threads:>3} {np.median(times[0]):8.2f}ms " + " ".join(f"{c:>17}" for c in cells)
                  + f" {report.macs_ratio:5.3f} {decided:6.0f}s {goal if goal else '-':>5} {ok}  "
                  f"({tr.chosen}, d={tr.dw_kernel}; {timing.conditions()})")
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
