"""Image sets for INT8 calibration and evaluation, as numpy batches for OpenVINO / NNCF."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ghostcli.errors import DataError, UsageError
from ghostcli.progress import Progress, no_progress

SYNTHETIC = "synthetic"


@dataclass
class ImageSet:
    """Images (each ``1 x C x H x W`` float32) with labels, ready for OpenVINO."""

    spec: str
    split: str
    images: list[np.ndarray]
    labels: list[int]
    classes: list[str]
    labeled: bool
    skipped: int = 0
    available: int = 0          # images in the data set before taking a subset
    notes: list[str] = field(default_factory=list)

    @property
    def synthetic(self) -> bool:
        """True for seeded noise (accuracy is unknown then)."""
        return self.spec == SYNTHETIC

    def __len__(self) -> int:
        return len(self.images)


def synthetic_bn_set(model: Any, count: int, input_size: tuple[int, ...], progress: Progress = no_progress
                     ) -> ImageSet:
    """``count`` images optimised from seeded noise until every BatchNorm layer of ``model`` sees its running
    statistics (:func:`~ghostcli.calibrate.synthetic.synthesize_bn_images`); unlabelled."""
    from ghostcli.calibrate.synthetic import synthesize_bn_images
    from ghostcli.data import SYNTHETIC_BN

    c, h, w = (int(v) for v in input_size)
    images = synthesize_bn_images(model, count, (c, h, w), seed=0, progress=progress,
                                  task="synthetic-bn calibration images")
    arrays = [np.ascontiguousarray(x.numpy()[None], dtype=np.float32) for x in images]
    return ImageSet(spec=SYNTHETIC_BN, split="train", images=arrays, labels=[0] * len(arrays), classes=[],
                    labeled=False, available=len(arrays))


def _subset_indices(n: int, limit: int | None, seed: int = 0) -> list[int]:
    """A fixed random subset (seeded) so classes are mixed; all indices when ``limit`` covers ``n``."""
    if limit is None or limit >= n:
        return list(range(n))
    rng = np.random.default_rng(seed)
    return sorted(int(i) for i in rng.choice(n, size=limit, replace=False))


def load_image_set(
    spec: str,
    *,
    split: str,
    input_size: tuple[int, ...],
    limit: int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    progress: Progress = no_progress,
    description: str = "loading images",
) -> ImageSet:
    """Load up to ``limit`` images of ``spec`` (``digits`` | ``synthetic`` | a folder) as numpy batches.

    ``progress`` hears of every decoded image, as ``description``.
    """
    from ghostcli.data import IMAGENET_MEAN, IMAGENET_STD, load_image_dataset

    if limit is not None and limit < 1:
        raise UsageError(f"the number of images must be at least 1, got {limit}")
    kwargs: dict[str, Any] = {"split": split, "input_size": tuple(input_size),
                              "mean": tuple(mean) if mean else IMAGENET_MEAN,
                              "std": tuple(std) if std else IMAGENET_STD}
    if spec == SYNTHETIC:
        kwargs["length"] = max(int(limit or 256), 1)
    dataset = load_image_dataset(spec, **kwargs)
    n = len(dataset)  # type: ignore[arg-type]
    if n == 0:
        raise DataError(f"no usable images in {spec}")
    idx = _subset_indices(n, limit)
    images: list[np.ndarray] = []
    labels: list[int] = []
    progress(description, 0, len(idx))
    for done, i in enumerate(idx, 1):
        x, y = dataset[i]
        images.append(np.ascontiguousarray(x.numpy()[None], dtype=np.float32))
        labels.append(int(y))
        progress(description, done, len(idx))
    classes = list(getattr(dataset, "classes", []))
    labeled = bool(getattr(dataset, "labeled", len(classes) > 1)) and spec != SYNTHETIC and len(classes) > 1
    return ImageSet(spec=spec, split=split, images=images, labels=labels, classes=classes, labeled=labeled,
                    skipped=int(getattr(dataset, "skipped", 0)), available=n)
