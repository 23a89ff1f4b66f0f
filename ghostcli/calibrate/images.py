"""The images calibration reads: ``calib_images`` for fitting, held-out ones for measuring, all of a source for
distillation. Labels are never used."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch.utils.data import Dataset

from ghostcli.data import is_named_source, load_image_dataset

_SPLIT_SOURCES = ("digits", "fashion-mnist")  # named sources with their own held-out split


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


def _has_val(spec: str) -> bool:
    if spec in _SPLIT_SOURCES:
        return True
    if spec.startswith("idx:"):
        try:
            load_image_dataset(spec, split="val", input_size=(1, 1, 1))
        except Exception:  # noqa: BLE001 - no t10k files: held out from the training files instead
            return False
        return True
    return False


def load_images(spec: str, count: int, held_out: int, input_size: tuple[int, int, int], seed: int) -> CalibrationImages:
    """``count`` images of ``spec`` (its train split) in a seeded random order, and up to ``held_out`` others:
    the source's val split when it has one (digits, fashion-mnist, idx: with t10k files), else images of the
    same source not used for fitting, else (a source with no other image) the fitting images themselves."""
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
    if is_named_source(spec) and _has_val(spec):
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


def batches(images: torch.Tensor, batch_size: int) -> Iterator[torch.Tensor]:
    """``images`` in consecutive batches."""
    for i in range(0, len(images), batch_size):
        yield images[i:i + batch_size]
