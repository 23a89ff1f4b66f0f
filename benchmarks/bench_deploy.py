"""INT8 speed on the OpenVINO CPU plugin: ResNet-50 vs Ghost-ResNet-50 (s=2), FP32 (f32) and INT8.

One process, batch 1, 224x224, every compiled variant timed round-robin (interleaved) so that
load on a shared machine hits all alike; medians and ratios are printed with the targets:

- INT8 >= 2x faster than FP32 (f32 inference precision) for both models;
- INT8 Ghost-ResNet-50 <= 0.65x the latency of INT8 ResNet-50.

Weights are random (latency does not depend on their values); calibration uses the built-in
digits images upsampled to 224x224. ``--profile`` adds the plugin's per-layer-type time split
(PERF_COUNT) and the executed precisions, which is how the Ghost slowdowns were found
(docs/deploy.md, "Why INT8 Ghost models were slow").

    python benchmarks/bench_deploy.py --runs 200 --profile
    python benchmarks/bench_deploy.py --ghost-variant ghost-naive --ghost-variant ghost --json
    python benchmarks/bench_deploy.py --threads 1 --ghost-variant ghost --ghost-variant ghost-int8
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from typing import Any

import numpy as np
import torch
from torch import nn

TARGET_INT8_SPEEDUP = 2.0
TARGET_GHOST_VS_RESNET = 0.65
# ghost-int8 keeps dense the convs with fan-in < 128: in ResNet-50 the five stage-1 1x1 convs reading 64
# channels, whose Ghost modules are no faster than the dense i8 conv (docs/deploy.md, "Which layers pay back").
INT8_MIN_FAN_IN = 128


# ----------------------------------------------------------------------------------------- models


def _randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            assert m.running_mean is not None and m.running_var is not None
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.1)
    return model


def _naive_ghost_resnet50() -> nn.Module:
    """The structure the issue measured: each conv -> a Ghost module, the ResNet's BN kept *after* the concat."""
    import torchvision
    from torch.nn.modules.utils import _pair

    from ghostcli.layers import GhostModule

    model = torchvision.models.resnet50()

    def swap(parent: nn.Module) -> None:
        for name, child in parent.named_children():
            if isinstance(child, nn.Conv2d) and child.in_channels != 3:
                setattr(parent, name, GhostModule(child.in_channels, child.out_channels, _pair(child.kernel_size), ratio=2,
                                                  stride=_pair(child.stride), relu=False,
                                                  padding=_pair(child.padding)))
            else:
                swap(child)

    swap(model)
    return model


def build(name: str) -> nn.Module:
    """resnet50 | ghost-naive | ghost (ghostify, the zoo's ghost_resnet50: ReLUs inside the Ghost modules)
    | ghost-int8 (ghostify with min_fan_in=128: the stage-1 1x1 convs reading 64 channels stay dense)."""
    from ghostcli.resolve import resolve_model

    if name == "resnet50":
        model = resolve_model("resnet50").model
    elif name == "ghost-naive":
        model = _naive_ghost_resnet50()
    elif name == "ghost":
        model = resolve_model("ghost_resnet50").model
    elif name == "ghost-int8":
        import torchvision

        from ghostcli.convert import ghostify

        model, _ = ghostify(torchvision.models.resnet50(), ratio=2, min_fan_in=INT8_MIN_FAN_IN)
    else:
        raise SystemExit(f"unknown model variant {name!r}")
    return _randomize_bn(model).eval()


# ----------------------------------------------------------------------------------------- measuring


def profile_split(ov_model: Any, x: np.ndarray, threads: int | None, runs: int = 20) -> dict[str, float]:
    """Mean ms per (layer type, kernel) from the plugin's performance counters (PERF_COUNT)."""
    from ghostcli.runtime.openvino import compile_cpu, profiled_runs

    compiled = compile_cpu(ov_model, None, threads=threads or None, perf_count=True)[0]
    acc: dict[str, float] = defaultdict(float)
    for infos in profiled_runs(compiled, x, runs=runs, warmup=3):
        for p in infos:
            if p.status.name == "EXECUTED":
                acc[f"{p.node_type} [{p.exec_type}]"] += p.real_time.total_seconds() * 1e3 / runs
    return dict(sorted(acc.items(), key=lambda kv: -kv[1]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=100, help="timed runs per variant (interleaved)")
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--threads", type=int, default=None, help="INFERENCE_NUM_THREADS (default: OpenVINO's)")
    ap.add_argument("--subset-size", type=int, default=32, help="calibration images (digits, 224x224)")
    ap.add_argument("--preset", default="performance", choices=("performance", "mixed"))
    ap.add_argument("--ghost-variant", action="append", default=None,
                    choices=("ghost", "ghost-naive", "ghost-int8"),
                    help="Ghost-ResNet-50 structure(s) to time (default: ghost, the zoo's ghost_resnet50)")
    ap.add_argument("--ignore-type", action="append", default=[], help="op type NNCF must not quantize")
    ap.add_argument("--bf16", action="store_true", help="also time FP32 models at the CPU's default precision")
    ap.add_argument("--profile", action="store_true", help="print the per-layer-type time split of INT8 models")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    from ghostcli.analysis.env import describe_cpu

    print(f"CPU: {describe_cpu()}; {time.strftime('%Y-%m-%d')}")  # every number below came from it

    from ghostcli.analysis.macs import count_macs
    from ghostcli.deploy.calibration import load_image_set
    from ghostcli.deploy.quantize import quantize_ov_model
    from ghostcli.fold import fold_batchnorm
    from ghostcli.runtime.openvino import compile_cpu, core, executed_precisions, int8_coverage, to_openvino
    from ghostcli.runtime.timing import openvino_runner, time_interleaved, timing_stats

    torch.manual_seed(0)
    size = (3, 224, 224)
    calib = load_image_set("digits", split="train", input_size=size, limit=args.subset_size).images
    x = calib[0]
    names = ["resnet50", *(args.ghost_variant or ["ghost"])]
    compiled: dict[str, Any] = {}
    int8_models: dict[str, Any] = {}
    info: dict[str, dict[str, Any]] = {}
    for name in names:
        t0 = time.perf_counter()
        model, _ = fold_batchnorm(build(name))
        macs = count_macs(model, torch.randn(1, *size)).conv_linear  # conv + linear, the paper's convention
        ov_model = to_openvino(model, (1, *size))
        q_model = quantize_ov_model(ov_model, calib, preset=args.preset, ignored_types=tuple(args.ignore_type))
        compiled[f"{name}/fp32"], _ = compile_cpu(ov_model, "f32", threads=args.threads)
        if args.bf16:
            compiled[f"{name}/fp32-default"], _ = compile_cpu(ov_model, None, threads=args.threads)
        compiled[f"{name}/int8"], _ = compile_cpu(q_model, None, threads=args.threads)
        int8_models[f"{name}/int8"] = q_model
        n8, ntot = int8_coverage(executed_precisions(compiled[f"{name}/int8"]))
        info[name] = {"macs": macs, "int8_layers": f"{n8}/{ntot}", "prepare_s": round(time.perf_counter() - t0, 1)}
        print(f"prepared {name}: {macs / 1e9:.2f} GMac, {n8}/{ntot} conv/FC layers in INT8 "
              f"({info[name]['prepare_s']} s)", file=sys.stderr)

    timed = time_interleaved([openvino_runner(c, x) for c in compiled.values()], warmup=args.warmup, runs=args.runs)
    stats = {k: timing_stats(t) for k, t in zip(compiled, timed)}
    med = {k: s.median_ms for k, s in stats.items()}
    threads = int(next(iter(compiled.values())).get_property("INFERENCE_NUM_THREADS"))
    ratios: dict[str, float] = {}
    for name in names:
        ratios[f"{name}: int8 speed-up vs fp32 (f32)"] = med[f"{name}/fp32"] / med[f"{name}/int8"]
        if args.bf16:
            ratios[f"{name}: int8 speed-up vs fp32 (default)"] = med[f"{name}/fp32-default"] / med[f"{name}/int8"]
    for name in names[1:]:
        ratios[f"{name} int8 / resnet50 int8 latency"] = med[f"{name}/int8"] / med["resnet50/int8"]
        ratios[f"{name} / resnet50 MACs"] = info[name]["macs"] / info["resnet50"]["macs"]
    verdicts = {}
    for name in names:
        verdicts[f"{name}: int8 >= {TARGET_INT8_SPEEDUP}x fp32"] = ratios[f"{name}: int8 speed-up vs fp32 (f32)"] >= TARGET_INT8_SPEEDUP
    for name in names[1:]:
        verdicts[f"{name} int8 <= {TARGET_GHOST_VS_RESNET}x resnet50 int8"] = (
            ratios[f"{name} int8 / resnet50 int8 latency"] <= TARGET_GHOST_VS_RESNET)
    profiles = {k: profile_split(m, x, args.threads) for k, m in int8_models.items()} if args.profile else {}
    conditions = {"device": f"OpenVINO CPU ({core().get_property('CPU', 'FULL_DEVICE_NAME')})", "threads": threads,
                  "batch": 1, "input": "3x224x224", "hint": "LATENCY", "warmup": args.warmup, "runs": args.runs,
                  "interleaved": True, "statistic": "median", "preset": args.preset, "calibration": "digits",
                  "subset_size": len(calib), "ignored_types": args.ignore_type}
    if args.json:
        print(json.dumps({"conditions": conditions, "models": info, "median_ms": med,
                          "min_ms": {k: s.min_ms for k, s in stats.items()},
                          "ratios": ratios, "targets_met": verdicts, "profile_ms": profiles}, indent=2))
    else:
        print("conditions: " + ", ".join(f"{k}={v}" for k, v in conditions.items()))
        for k in compiled:
            print(f"  {k:32s} median {med[k]:8.2f} ms   min {stats[k].min_ms:8.2f} ms")
        for k, v in ratios.items():
            print(f"  {k:48s} {v:6.2f}x")
        for k, ok in verdicts.items():
            print(f"  target {k:44s} {'MET' if ok else 'NOT MET'}")
        for k, split in profiles.items():
            print(f"per-layer-type time, {k} (PERF_COUNT, total {sum(split.values()):.2f} ms):")
            for layer, ms in list(split.items())[:10]:
                print(f"    {layer:50s} {ms:7.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
