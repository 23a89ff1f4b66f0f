"""Training/validation data sets and the loaders that feed one process or every rank of a DDP job."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, Sampler
from torch.utils.data.distributed import DistributedSampler

from ghostcli.errors import DataError, UsageError

BUILTIN = ("digits",)


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
    """The train set (augmented, seeded) and the validation set (or ``None``)."""

    train: SeededAugment
    val: Dataset | None
    classes: list[str]
    val_source: str | None


def check_data_path(spec: str) -> None:
    """Fail fast (before any model is built) on a data path that is missing or not a folder."""
    path = Path(spec)
    if spec in BUILTIN:
        return
    if not path.exists():
        raise DataError(f"data folder {spec} does not exist (or use the built-in data set 'digits')")
    if not path.is_dir():
        raise DataError(f"{spec} is a file, not a folder of images (DIR/<class>/<image>) or 'digits'")


def split_dir(data: str, split: str) -> Path | None:
    """``DIR/<split>`` when ``DIR`` holds both ``train/`` and ``val/`` (a data set with its own split), else None."""
    root = Path(data)
    if data in BUILTIN or not ((root / "train").is_dir() and (root / "val").is_dir()):
        return None
    return root / split


def eval_source(data: str, split: str | None) -> tuple[str, str | None]:
    """What to evaluate on for ``--data DATA --split SPLIT``: ``(dataset spec, split name or None)``.

    The split (default val) picks the built-in set's split or ``DIR/<split>`` of a folder holding
    ``train/`` and ``val/``; any other folder is evaluated whole (split None), so asking for a split
    there is a usage error.
    """
    from ghostcli.data import SPLITS

    if split is not None and split not in SPLITS:
        raise UsageError(f"--split must be one of {', '.join(SPLITS)}, got {split!r}")
    check_data_path(data)
    if data in BUILTIN:
        return data, split or "val"
    sub = split_dir(data, split or "val")
    if sub is not None:
        return str(sub), split or "val"
    if split is not None:
        raise UsageError(f"--split {split}: {data} has no train/ and val/ folders; it is evaluated whole "
                         "(drop --split, or point --data at the split's folder)")
    return data, None


def _load(spec: str, split: str, input_size: tuple[int, int, int], augment: bool) -> Dataset:
    from ghostcli.data import load_image_dataset

    check_data_path(spec)
    ds = load_image_dataset(spec, split=split, input_size=input_size, augment=augment)
    classes = list(getattr(ds, "classes", []))
    if not getattr(ds, "labeled", True):
        raise DataError(f"{spec} has no class subfolders (need DIR/<class>/<image>, at least 2 classes)")
    if len(classes) < 2:
        raise DataError(f"{spec} has only {len(classes)} class folder ({_short(classes)}); classification needs "
                        "at least 2 classes (DIR/<class>/<image>)")
    return ds


def load_datasets(data: str, val_data: str | None, input_size: tuple[int, int, int], *, augment: bool,
                  seed: int) -> DataSets:
    """Train and validation sets for ``data``.

    Validation comes from ``val_data`` when given; from the built-in split for
    ``digits``; from ``DIR/val`` when ``DIR`` holds ``train/`` and ``val/``; else none.
    """
    val_source: str | None = val_data
    train_dir = split_dir(data, "train")
    if train_dir is not None:
        val_source = val_source or str(Path(data) / "val")
        data = str(train_dir)
    elif data in BUILTIN and val_source is None:
        val_source = data
    train = _load(data, "train", input_size, augment)
    val = _load(val_source, "val", input_size, False) if val_source is not None else None
    classes = list(train.classes)  # type: ignore[attr-defined]
    if val is not None and list(val.classes) != classes:  # type: ignore[attr-defined]
        raise DataError(f"validation data {val_source} has classes {_short(val.classes)} but the training data "  # type: ignore[attr-defined]
                        f"has {_short(classes)}")
    return DataSets(SeededAugment(train, seed), val, classes, val_source)


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
