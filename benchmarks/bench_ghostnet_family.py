"""GhostNetV2 / V3 on the OpenVINO CPU plugin: ghostcli's zoo models against timm's, interleaved.

For each variant, ghostcli's model (V3 re-parameterised as `ghostcli export` does) and timm's model of
the same name (V3: timm's own `reparameterize`d deploy form) are converted with the same converter
(`ghostcli.runtime.openvino.to_openvino`), compiled for the CPU at each precision and timed round-robin
in one process at batch 1, 3x224x224. Printed: the median latency of each, the per-round ratio
ghostcli / timm (<= 1.0 means no slower) and its IQR. Weights are random; timm's state dict is
copied into ghostcli's model, so both compute the same function.

Usage:
  python benchmarks/bench_ghostnet_family.py [--models ghostnetv2_100,ghostnetv3_100] [--precisions f32,bf16]
                                             [--rounds 40] [--threads 1]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch


def _pair(name: str) -> tuple[torch.nn.Module, torch.nn.Module]:
    """ghostcli's and timm's model of ``name`` with the same weights, both in their deployed form, eval mode."""
    import timm

    from ghostcli.layers import reparameterize
    from ghostcli.models import build_model

    torch.manual_seed(0)
    theirs = timm.create_model(name, pretrained=False).eval()
    ours = build_model(name).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    if name.startswith("ghostnetv3"):
        reparameterize(ours)
        for m in theirs.modules():  # timm's own fold of its training-time branches
            fold = getattr(m, "reparameterize", None)
            if callable(fold) and m is not theirs:
                fold()
    return ours, theirs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="ghostnetv2_100,ghostnetv3_100")
    ap.add_argument("--precisions", default="f32,bf16")
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)

    from ghostcli.analysis.env import cpu_isa, describe_cpu
    from ghostcli.runtime.openvino import compile_cpu, to_openvino
    from ghostcli.runtime.timing import openvino_runner, time_interleaved

    print(f"CPU: {describe_cpu()}; {time.strftime('%Y-%m-%d')}; {args.threads} thread(s), batch 1, 3x224x224, "
          f"{args.rounds} interleaved rounds; ratio = median per-round ghostcli / timm latency")
    has_bf16 = any(n in cpu_isa() for n in ("AVX512-BF16", "AMX-BF16"))
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    print(f"{'model':<16} {'precision':<9} {'ghostcli':>9} {'timm':>9} {'ratio':>6} {'IQR':>11}")
    for name in args.models.split(","):
        ours, theirs = _pair(name)
        with torch.no_grad():
            xt = torch.from_numpy(x)
            diff = float((ours(xt) - theirs(xt)).abs().max())
        graphs = [to_openvino(m, (1, 3, 224, 224)) for m in (ours, theirs)]
        for precision in args.precisions.split(","):
            if precision == "bf16" and not has_bf16:
                print(f"{name:<16} {precision:<9} skipped: this CPU has no bf16")
                continue
            runners = [openvino_runner(compile_cpu(g, precision, threads=args.threads)[0], x) for g in graphs]
            a, b = (np.asarray(t) for t in time_interleaved(runners, warmup=args.warmup, runs=args.rounds))
            r = a / b
            q25, q75 = np.percentile(r, [25, 75])
            print(f"{name:<16} {precision:<9} {np.median(a):7.2f}ms {np.median(b):7.2f}ms {np.median(r):6.3f} "
                  f"{q25:.3f}-{q75:.3f}  (max |output difference| {diff:.1e})")
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
