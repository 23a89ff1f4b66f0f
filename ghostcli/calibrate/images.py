"""The images calibration reads: ``calib_images`` for fitting, held-out ones for measuring, all of a source for
distillation. Labels are never used."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from ghostcli.calibrate.synthetic import SyntheticBNOptions, synthesize_bn_images
from ghostcli.data import SYNTHETIC_BN, has_val_split, is_named_source, load_image_dataset
from ghostcli.errors import UsageError
from ghostcli.progress import Progress, no_progress

#: seed offset of the held-out synthetic-bn images (another noise draw than the calibration images')
HELD_OUT_SEED_OFFSET = 1_000_003


@dataclass
class CalibrationImages:
    """Fitting images, held-out images (and where they come from), and the data set distillation walks."""

    calib: torch.Tensor
    held_out: torch.Tensor
    held_out_source: str  # "the val split of DATA" | "N other images of DATA" | "the calibration images"
    train_set: Dataset
    notes: list[str] = field(default_factory=list)


def _stack(ds: Dataset, indices: list[int]) -> torch.Tensor:
    return torch.stack([ds[i][0] for i in indices]) if indices else torch.empty(0)


def load_images(spec: str, count: int, held_out: int, input_size: tuple[int, int, int], seed: int, *,
                model: nn.Module | None = None, synthetic: SyntheticBNOptions | None = None,
                progress: Progress = no_progress) -> CalibrationImages:
    """``count`` images of ``spec`` (its train split) in a seeded random order, and up to ``held_out`` others:
    the source's val split when it has one (digits, fashion-mnist, idx: with t10k files), else images of the
    same source not used for fitting, else (a source with no other image) the fitting images themselves.

    ``synthetic-bn`` makes the images from ``model`` (the original; required), optimised as ``synthetic`` says
    (:func:`~ghostcli.calibrate.synthetic.synthesize_bn_images`, reporting to ``progress``): ``count`` from
    ``seed`` and, from another seed, up to ``held_out`` but at most a quarter of ``count`` held-out ones (each
    costs as much to make as a calibration image). Distillation walks the calibration images.
    """
    if spec == SYNTHETIC_BN:
        return _synthetic_bn(model, count, held_out, input_size, seed, synthetic, progress)
    notes: list[str] = []
    g = torch.Generator().manual_seed(seed)
    if spec == "synthetic":
        ds = load_image_dataset(spec, input_size=input_size, length=count + held_out)
    else:
        ds = load_image_dataset(spec, split="train", input_size=input_size)
    total = len(ds)  # type: ignore[arg-type]
    order = torch.randperm(total, generator=g).tolist()
    if count > total:
        notes.append(f"{spec} has {total} images, fewer than `calib_images` {count}: calibrating on all of them")
        count = total
    calib = _stack(ds, order[:count])
    if is_named_source(spec) and has_val_split(spec):
        val = load_image_dataset(spec, split="val", input_size=input_size)
        vorder = torch.randperm(len(val), generator=g).tolist()[:held_out]  # type: ignore[arg-type]
        return CalibrationImages(calib, _stack(val, vorder), f"{len(vorder)} images of the val split of {spec}", ds,
                                 notes)
    rest = order[count:count + held_out]
    if rest:
        return CalibrationImages(calib, _stack(ds, rest), f"{len(rest)} other images of {spec}", ds, notes)
    notes.append(f"{spec} has no image besides the {count} calibration images: errors and agreement are measured "
                 "on them (not held out)")
    return CalibrationImages(calib, calib[:held_out], "the calibration images", ds, notes)


def _synthetic_bn(model: nn.Module | None, count: int, held_out: int, input_size: tuple[int, int, int], seed: int,
                  options: SyntheticBNOptions | None, progress: Progress) -> CalibrationImages:
    if model is None:
        raise UsageError("synthetic-bn images are made from the original model's BatchNorm statistics: pass `model`")
    n_held = max(1, min(held_out, count // 4))
    calib = synthesize_bn_images(model, count, input_size, seed=seed, options=options, progress=progress,
                                 task="synthetic-bn: calibration images")
    held = synthesize_bn_images(model, n_held, input_size, seed=seed + HELD_OUT_SEED_OFFSET, options=options,
                                progress=progress, task="synthetic-bn: held-out images")
    source = f"{n_held} other synthetic-bn images (seed {seed + HELD_OUT_SEED_OFFSET})"
    notes = [f"synthetic-bn: {count} images made from the original's BatchNorm statistics; errors and agreement "
             f"are measured on {n_held} more from another seed, not on real images"]
    return CalibrationImages(calib, held, source, TensorDataset(calib, torch.zeros(len(calib), dtype=torch.long)),
                             notes)


def batches(images: torch.Tensor, batch_size: int) -> Iterator[torch.Tensor]:
    """``images`` in consecutive batches."""
    for i in range(0, len(images), batch_size):
        yield images[i:i + batch_size]
