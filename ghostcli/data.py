"""Image data for calibration, training and evaluation.

``load_image_dataset(spec)`` understands three kinds of ``spec``:

- ``digits``: scikit-learn's real 8x8 handwritten digits (1,797 images, 10
  classes, shipped with the package), upsampled to the requested size, with a
  fixed stratified 80/20 train/val split: real data small enough for CI;
- ``synthetic``: seeded Gaussian noise with label 0 (accuracy is meaningless);
- a directory: torchvision's ImageFolder layout (``class_name/image.jpg``), or a
  flat folder of images (one unnamed class). Files that are not images are
  skipped and counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.data import Dataset

from ghostcli.errors import DataError, UsageError, one_line

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp", ".gif")
DIGITS_SEED = 0
DIGITS_VAL_FRACTION = 0.2
SPLITS = ("train", "val")


def _stats(values: Sequence[float], channels: int) -> torch.Tensor:
    v = list(values)
    if len(v) != channels:
        v = [sum(v) / len(v)] * channels  # e.g. grey images with RGB statistics
    return torch.tensor(v, dtype=torch.float32).view(channels, 1, 1)


class ImageDecodeError(DataError):
    """An image file that cannot be decoded.

    A DataLoader worker process re-raises it in the main process as ``ImageDecodeError(text)``
    where ``text`` is the worker's whole traceback; only its last line, our message, is kept.
    """

    def __init__(self, message: str) -> None:
        if message.startswith("Caught ") and "Original Traceback" in message:
            last = message.rstrip().splitlines()[-1]
            message = last.split(f"{type(self).__name__}: ", 1)[-1]
        super().__init__(message)


class DigitsDataset(Dataset):
    """scikit-learn's digits, upsampled to ``input_size`` and normalized; a fixed split."""

    def __init__(self, split: str, input_size: tuple[int, int, int], augment: bool,
                 mean: Sequence[float], std: Sequence[float]) -> None:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        bunch = load_digits()
        images = torch.tensor(bunch.images, dtype=torch.float32) / 16.0  # N x 8 x 8 in [0, 1]
        labels = torch.tensor(bunch.target, dtype=torch.long)
        idx_train, idx_val = train_test_split(
            list(range(len(labels))), test_size=DIGITS_VAL_FRACTION, random_state=DIGITS_SEED, stratify=bunch.target
        )
        idx = torch.tensor(idx_train if split == "train" else idx_val)
        c, h, w = input_size
        x = torch.nn.functional.interpolate(images[idx].unsqueeze(1), size=(h, w), mode="bilinear", align_corners=False)
        x = x.expand(-1, c, -1, -1)
        self.images = ((x - _stats(mean, c)) / _stats(std, c)).contiguous()
        self.labels = labels[idx]
        self.augment = augment
        self.pad = max(1, h // 8)
        self.classes = [str(i) for i in range(10)]
        self.skipped = 0
        self.labeled = True

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = self.images[i]
        if self.augment:  # random translation by up to 1/8 of the size (pad + crop)
            p = self.pad
            padded = torch.nn.functional.pad(x, (p, p, p, p), value=float(x.min()))
            dy, dx = (int(v) for v in torch.randint(0, 2 * p + 1, (2,)))
            x = padded[:, dy : dy + x.shape[1], dx : dx + x.shape[2]]
        return x, int(self.labels[i])


class SyntheticDataset(Dataset):
    """Seeded noise images, all labelled 0: only for calibration when no data is at hand."""

    def __init__(self, input_size: tuple[int, int, int], length: int = 256, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.images = torch.randn((length, *input_size), generator=g)
        self.classes = ["synthetic"]
        self.skipped = 0
        self.labeled = False

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.images[i], 0


class FolderDataset(Dataset):
    """ImageFolder layout (``class/img``) or a flat folder of images, decoded with PIL."""

    def __init__(self, root: Path, split: str, input_size: tuple[int, int, int], augment: bool,
                 mean: Sequence[float], std: Sequence[float], resize_ratio: float = 0.875) -> None:
        from torchvision import transforms as T

        if not root.is_dir():
            raise DataError(f"data folder {root} does not exist" if not root.exists()
                            else f"{root} is a file, not a folder of images (DIR/<class>/<image>)")
        c, h, w = input_size
        if c not in (1, 3):
            raise DataError(f"image folders give 1 or 3 channels, the model expects {c}")
        subdirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
        self.samples: list[tuple[Path, int]] = []
        self.skipped = 0
        if subdirs:
            self.classes = [d.name for d in subdirs]
            self.labeled = True
            for label, d in enumerate(subdirs):
                self._scan(d, label)
        else:
            self.classes = [""]
            self.labeled = False
            self._scan(root, 0)
        if not self.samples:
            raise DataError(f"no usable images in {root} ({self.skipped} other files skipped)")
        self.mode = "L" if c == 1 else "RGB"
        norm = T.Normalize(list(_stats(mean, c).flatten()), list(_stats(std, c).flatten()))
        if augment:
            self.transform = T.Compose([T.RandomResizedCrop((h, w)), T.RandomHorizontalFlip(), T.ToTensor(), norm])
        else:
            self.transform = T.Compose([T.Resize(round(min(h, w) / resize_ratio)), T.CenterCrop((h, w)),
                                        T.ToTensor(), norm])

    def _scan(self, folder: Path, label: int) -> None:
        for f in sorted(folder.rglob("*")):
            if f.is_file():
                if f.suffix.lower() in IMAGE_EXTENSIONS:
                    self.samples.append((f, label))
                elif not f.name.startswith("."):
                    self.skipped += 1

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from PIL import Image, UnidentifiedImageError

        path, label = self.samples[i]
        try:
            with Image.open(path) as img:
                return self.transform(img.convert(self.mode)), label
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
            raise ImageDecodeError(f"cannot decode image {path}: {one_line(exc, 160)}") from None


def load_image_dataset(
    spec: str,
    *,
    split: str = "train",
    input_size: tuple[int, int, int] = (3, 224, 224),
    augment: bool = False,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    length: int = 256,
) -> Dataset:
    """A dataset of ``(image tensor C x H x W, label)``; see the module docstring for ``spec``."""
    if split not in SPLITS:
        raise UsageError(f"split must be 'train' or 'val', got {split!r}")
    c, h, w = (int(v) for v in input_size)
    size = (c, h, w)
    if spec == "digits":
        return DigitsDataset(split, size, augment, mean, std)
    if spec == "synthetic":
        return SyntheticDataset(size, length=length)
    return FolderDataset(Path(spec), split, size, augment, mean, std)
