"""Training/validation data sets and the loaders that feed one process or every rank of a DDP job."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, Sampler, Subset
from torch.utils.data.distributed import DistributedSampler

from ghostcli.errors import DataError, UsageError


class SeededAugment(Dataset):
    """Draws each sample's augmentation from a seed made of (seed, epoch, index).

    The random crop of image ``i`` in epoch ``e`` is then the same whatever the
    number of ranks, data-loading workers, or a resume in the middle of an epoch.
    """

    def __init__(self, base: Dataset, seed: int) -> None:
        self.base = base
        self.seed = int(seed)
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> Any:
        gen = torch.random.default_generator
        state = gen.get_state()
        gen.manual_seed((self.seed * 0x9E3779B1 + self.epoch * 0x85EBCA77 + int(i) * 0xC2B2AE3D) % (1 << 62))
        try:
            return self.base[i]
        finally:
            gen.set_state(state)


class SkipBatches(Sampler[list[int]]):
    """A batch sampler that leaves out its first ``skip`` batches (resume in the middle of an epoch)."""

    def __init__(self, batches: BatchSampler, skip: int = 0) -> None:
        self.batches = batches
        self.skip = skip

    def __iter__(self) -> Iterator[list[int]]:
        for i, batch in enumerate(self.batches):
            if i >= self.skip:
                yield batch

    def __len__(self) -> int:
        return max(0, len(self.batches) - self.skip)


class ShardSampler(Sampler[int]):
    """Every ``world``-th index from ``rank``, no padding: each image evaluated exactly once overall."""

    def __init__(self, n: int, rank: int, world: int) -> None:
        self.indices = list(range(rank, n, world))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


@dataclass
class DataSets:
    """The train set (augmented, seeded) and the validation set (or ``None``).

    ``labelled``: the training images have class labels (``classes``; empty when not). ``val_labelled``: so do
    the validation images. ``held_out``: the validation images were held out of an unlabelled training folder
    (:func:`hold_out_split`).
    """

    train: SeededAugment
    val: Dataset | None
    classes: list[str]
    val_source: str | None
    labelled: bool = True
    val_labelled: bool = True
    held_out: int = 0


#: the share of an unlabelled training folder held out to measure agreement with the teacher when no
#: validation data is given (at least one image, and never all of them)
HOLD_OUT_FRACTION = 0.1
HOLD_OUT_SEED = 0  # fixed: the same images are held out whatever ``seed``, so runs compare on the same images
NOT_TRAINING_DATA = ("synthetic", "synthetic-bn")
_SOURCES = "a folder of images, digits, fashion-mnist or idx:PATH"


def hold_out_split(n: int) -> tuple[list[int], list[int]]:
    """``(train indices, held-out indices)`` of an unlabelled folder of ``n`` images: a fixed random
    ``HOLD_OUT_FRACTION`` (at least 1 image; none when ``n`` < 2), each list in ascending order."""
    k = min(max(1, round(n * HOLD_OUT_FRACTION)), n - 1) if n >= 2 else 0
    order = torch.randperm(n, generator=torch.Generator().manual_seed(HOLD_OUT_SEED)).tolist()
    return sorted(order[k:]), sorted(order[:k])


def check_data_path(spec: str) -> None:
    """Fail fast (before any model is built) on data that cannot be trained or evaluated on: a missing folder, a
    file, an unreadable named source (``ghostcli.data.check_source``), or calibration-only noise."""
    from ghostcli.data import check_source, is_named_source

    if spec in NOT_TRAINING_DATA:
        raise DataError(f"{spec} is calibration data (images with no content of their own), not images to train "
                        f"or evaluate on: give {_SOURCES}")
    if not is_named_source(spec):
        path = Path(spec)
        if not path.exists():
            raise DataError(f"data folder {spec} does not exist (or use digits, fashion-mnist or idx:PATH)")
        if not path.is_dir():
            raise DataError(f"{spec} is a file, not a folder of images (DIR/<class>/<image>), digits, fashion-mnist "
                            "or idx:PATH")
    check_source(spec)


def split_dir(data: str, split: str) -> Path | None:
    """``DIR/<split>`` when ``DIR`` holds both ``train/`` and ``val/`` (a data set with its own split), else None."""
    from ghostcli.data import is_named_source

    root = Path(data)
    if is_named_source(data) or not ((root / "train").is_dir() and (root / "val").is_dir()):
        return None
    return root / split


def eval_source(data: str, split: str | None) -> tuple[str, str | None]:
    """What to evaluate on for ``--data DATA --split SPLIT``: ``(dataset spec, split name or None)``.

    The split (default val) picks a named source's split (digits, fashion-mnist, idx:PATH) or ``DIR/<split>``
    of a folder holding ``train/`` and ``val/``; any other folder is evaluated whole (split None), so asking for a
    split there is a usage error.
    """
    from ghostcli.data import SPLITS, is_named_source

    if split is not None and split not in SPLITS:
        raise UsageError(f"--split must be one of {', '.join(SPLITS)}, got {split!r}")
    check_data_path(data)
    if is_named_source(data):
        return data, split or "val"
    sub = split_dir(data, split or "val")
    if sub is not None:
        return str(sub), split or "val"
    if split is not None:
        raise UsageError(f"--split {split}: {data} has no train/ and val/ folders; it is evaluated whole "
                         "(drop --split, or point --data at the split's folder)")
    return data, None


def _read(spec: str, split: str, input_size: tuple[int, int, int], augment: bool) -> tuple[Dataset, bool]:
    """The data set and whether it has labels (class subfolders, at least two of them)."""
    from ghostcli.data import load_image_dataset

    check_data_path(spec)
    ds = load_image_dataset(spec, split=split, input_size=input_size, augment=augment)
    return ds, bool(getattr(ds, "labeled", True)) and len(getattr(ds, "classes", [])) >= 2


def _load(spec: str, split: str, input_size: tuple[int, int, int], augment: bool) -> Dataset:
    """A labelled data set (evaluation against labels, training with a label loss)."""
    ds, labelled = _read(spec, split, input_size, augment)
    if not labelled:
        _refuse_unlabelled(spec, ds)
    return ds


def _refuse_unlabelled(spec: str, ds: Dataset, hint: str = "") -> None:
    classes = list(getattr(ds, "classes", []))
    if not getattr(ds, "labeled", True):
        raise DataError(f"{spec} has no class subfolders (need DIR/<class>/<image>, at least 2 classes){hint}")
    raise DataError(f"{spec} has only {len(classes)} class folder ({_short(classes)}); classification needs "
                    f"at least 2 classes (DIR/<class>/<image>){hint}")


def load_datasets(data: str, val_data: str | None, input_size: tuple[int, int, int], *, augment: bool,
                  seed: int, teacher: bool = False, labels: bool = True) -> DataSets:
    """Train and validation sets for ``data``.

    Validation comes from ``val_data`` when given; from the source's own split for ``digits``, ``fashion-mnist``
    and ``idx:PATH`` with t10k files; from ``DIR/val`` when ``DIR`` holds ``train/`` and ``val/``; from a
    held-out part of an unlabelled training folder (:func:`hold_out_split`); else none.

    ``labels``: the training loss needs labels (False only for pure distillation, ``kd_alpha`` 1 with a
    teacher); then a folder without class subfolders (or with one) is taken as unlabelled images. ``teacher``:
    there is a teacher to measure agreement with, so unlabelled validation data can be used.
    """
    from ghostcli.data import has_val_split, is_named_source, load_image_dataset

    val_source: str | None = val_data
    train_dir = split_dir(data, "train")
    if train_dir is not None:
        val_source = val_source or str(Path(data) / "val")
        data = str(train_dir)
    elif is_named_source(data) and val_source is None and has_val_split(data):
        val_source = data
    train, labelled = _read(data, "train", input_size, augment)
    if not labelled and labels:
        if teacher:
            raise UsageError(f"{data} has no labels (no class subfolders) but `kd_alpha` < 1 mixes in the label "
                             "loss: use `kd_alpha` 1 to distil from the teacher alone")
        _refuse_unlabelled(data, train, "; unlabelled images train only by pure distillation: `kd_alpha` 1 with "
                                        "a `teacher`")
    classes = list(train.classes) if labelled else []  # type: ignore[attr-defined]
    held_out = 0
    val: Dataset | None = None
    val_labelled = True
    if val_source is None and not labelled and teacher:
        keep, rest = hold_out_split(len(train))  # type: ignore[arg-type]
        if rest:
            held_out = len(rest)
            val = Subset(load_image_dataset(data, split="val", input_size=input_size, augment=False), rest)
            train = Subset(train, keep)
            val_source = f"{data} ({held_out} held-out image{'s' if held_out != 1 else ''})"
            val_labelled = False
    elif val_source is not None:
        val, val_labelled = _read(val_source, "val", input_size, False)
        if not val_labelled:
            if not teacher:
                _refuse_unlabelled(val_source, val, "; without a `teacher` there is nothing to measure on "
                                                    "unlabelled validation images")
        elif labelled and list(val.classes) != classes:  # type: ignore[attr-defined]
            raise DataError(f"validation data {val_source} has classes {_short(val.classes)} but the training "  # type: ignore[attr-defined]
                            f"data has {_short(classes)}")
    return DataSets(SeededAugment(train, seed), val, classes, val_source, labelled=labelled,
                    val_labelled=val_labelled, held_out=held_out)


def _short(names: list[str]) -> str:
    return ", ".join(names[:5]) + (f" ... ({len(names)})" if len(names) > 5 else "")


def train_loader(ds: SeededAugment, *, per_rank_batch: int, rank: int, world: int, seed: int, epoch: int,
                 skip: int, workers: int, pin_memory: bool) -> DataLoader:
    """A loader for one epoch: DistributedSampler (one replica when alone) so every world size sees
    the same global permutation; full batches only."""
    ds.epoch = epoch
    sampler: DistributedSampler[int] = DistributedSampler(ds, num_replicas=world, rank=rank, shuffle=True, seed=seed, drop_last=True)
    sampler.set_epoch(epoch)
    batches = SkipBatches(BatchSampler(sampler, per_rank_batch, drop_last=True), skip)
    return DataLoader(ds, batch_sampler=batches, num_workers=workers, pin_memory=pin_memory)


def steps_per_epoch(ds: Dataset, global_batch: int, world: int) -> int:
    """Optimizer steps in one epoch (the same for every world size that divides the batch)."""
    sampler: DistributedSampler[int] = DistributedSampler(ds, num_replicas=world, rank=0, shuffle=False, drop_last=True)
    return len(sampler) // (global_batch // world)


def eval_loader(ds: Dataset, *, batch_size: int, rank: int = 0, world: int = 1, workers: int = 0,
                pin_memory: bool = False) -> DataLoader:
    """A loader that visits every image once across all ranks."""
    if batch_size < 1:
        raise UsageError("`batch_size` must be at least 1")
    sampler = ShardSampler(len(ds), rank, world)  # type: ignore[arg-type]
    return DataLoader(ds, batch_size=batch_size, sampler=sampler, num_workers=workers, pin_memory=pin_memory)
