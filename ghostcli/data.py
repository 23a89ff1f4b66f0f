"""Image data for calibration, training and evaluation.

``load_image_dataset(spec)`` understands these kinds of ``spec``:

- ``digits``: scikit-learn's real 8x8 handwritten digits (1,797 images, 10
  classes, shipped with the package), upsampled to the requested size, with a
  fixed stratified 80/20 train/val split: real data small enough for CI;
- ``fashion-mnist``: Zalando's Fashion-MNIST (60,000 + 10,000 real 28x28 grey
  images, 10 classes) from the idx files the Debian package
  ``dataset-fashion-mnist`` installs under ``/usr/share/datasets/fashion-mnist``
  (``sudo apt-get install dataset-fashion-mnist``); split train = its 60,000
  training images, val = its 10,000 test images;
- ``idx:PATH``: any MNIST-format folder (``train-images-idx3-ubyte`` and
  ``train-labels-idx1-ubyte``, ``t10k-*`` for the val split, each optionally
  ``.gz``), e.g. ``idx:~/mnist``;
- ``synthetic``: seeded Gaussian noise with label 0 (accuracy is meaningless);
- ``synthetic-bn`` (calibration only): images optimised from a model so that its BatchNorm statistics match
  (``ghostcli.calibrate.synthetic``); they are made from the model, so ``load_image_dataset`` refuses the name
  and ``ghostcli.calibrate.load_images(..., model=...)`` makes them;
- a directory: torchvision's ImageFolder layout (``class_name/image.jpg``), or a
  flat folder of images (one unnamed class). Files that are not images are
  skipped and counted.

:func:`check_source` checks a ``spec`` without loading it (for commands that fail fast).
"""

from __future__ import annotations

import gzip
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
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_INSTALL = "sudo apt-get install dataset-fashion-mnist"
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                         "Ankle boot"]
SYNTHETIC_BN = "synthetic-bn"
#: named data sources (not folders): what ``--calib-data`` takes besides a DIR and ``idx:PATH``
NAMED_SOURCES = ("digits", "fashion-mnist", "synthetic", SYNTHETIC_BN)
#: named sources that are real labelled images (what ``train`` and ``evaluate`` take besides a DIR and ``idx:PATH``)
LABELLED_SOURCES = ("digits", "fashion-mnist")
IDX_PREFIX = "idx:"
_IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
              "val": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


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


def _idx_file(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / (name + ".gz")):
        if candidate.is_file():
            return candidate
    return None


def _read_idx(path: Path, ndim: int) -> torch.Tensor:
    """An idx file (MNIST's format: magic 0x0000 08 NDIM, NDIM big-endian sizes, unsigned bytes) as a uint8 tensor."""
    import numpy as np

    try:
        raw = gzip.open(path).read() if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError) as exc:
        raise DataError(f"cannot read {path}: {one_line(exc, 160)}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08 or raw[3] != ndim:
        raise DataError(f"{path} is not an idx file of unsigned bytes with {ndim} dimension(s)")
    head = 4 + 4 * ndim
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    count = 1
    for d in dims:
        count *= d
    if len(raw) != head + count:
        raise DataError(f"{path} holds {len(raw) - head} bytes of data, its header says {count} ({'x'.join(map(str, dims))})")
    return torch.from_numpy(np.frombuffer(raw, dtype=np.uint8, offset=head).copy()).view(*dims)


def fashion_mnist_missing() -> str | None:
    """Why the ``fashion-mnist`` source cannot be read here (with the install command), or None when it can."""
    if all(_idx_file(FASHION_MNIST_DIR, f) for files in _IDX_FILES.values() for f in files):
        return None
    return (f"fashion-mnist needs the Debian package dataset-fashion-mnist (its idx files in {FASHION_MNIST_DIR}): "
            f"{FASHION_MNIST_INSTALL}")


class IdxDataset(Dataset):
    """MNIST-format idx files (uint8 images N x H x W, labels N), resized to ``input_size`` and normalized per item.

    The images stay uint8 in memory (60,000 x 28 x 28 = 47 MB); each item is scaled to [0, 1], resized
    (bilinear) when ``input_size`` differs, repeated over the channels and normalized with ``mean``/``std``.
    ``augment`` translates by up to 1/8 of the size, as for ``digits``.
    """

    def __init__(self, folder: Path, split: str, input_size: tuple[int, int, int], augment: bool,
                 mean: Sequence[float], std: Sequence[float], classes: list[str] | None = None) -> None:
        if not folder.is_dir():
            raise DataError(f"idx folder {folder} does not exist" if not folder.exists()
                            else f"{folder} is a file, not a folder of idx files")
        names = _IDX_FILES[split]
        files = [_idx_file(folder, n) for n in names]
        if files[0] is None or files[1] is None:
            missing = ", ".join(n for n, f in zip(names, files) if f is None)
            raise DataError(f"{folder} has no {missing} (MNIST-format idx files, optionally .gz)")
        self.images = _read_idx(files[0], 3)
        self.labels = _read_idx(files[1], 1).long()
        if len(self.images) != len(self.labels):
            raise DataError(f"{folder}: {len(self.images)} images but {len(self.labels)} labels ({split} split)")
        c, h, w = input_size
        self.channels, self.size = c, (h, w)
        self.mean, self.std = _stats(mean, c), _stats(std, c)
        self.augment = augment
        self.pad = max(1, h // 8)
        n_classes = int(self.labels.max()) + 1 if len(self.labels) else 0
        self.classes = list(classes) if classes is not None else [str(i) for i in range(n_classes)]
        self.skipped = 0
        self.labeled = True

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = self.images[i].to(torch.float32).div_(255.0).unsqueeze(0)  # 1 x H x W in [0, 1]
        if tuple(x.shape[1:]) != self.size:
            x = torch.nn.functional.interpolate(x.unsqueeze(0), size=self.size, mode="bilinear",
                                                align_corners=False).squeeze(0)
        x = (x.expand(self.channels, -1, -1) - self.mean) / self.std
        if self.augment:  # random translation by up to 1/8 of the size (pad + crop)
            p = self.pad
            padded = torch.nn.functional.pad(x, (p, p, p, p), value=float(x.min()))
            dy, dx = (int(v) for v in torch.randint(0, 2 * p + 1, (2,)))
            x = padded[:, dy: dy + x.shape[1], dx: dx + x.shape[2]]
        return x.contiguous(), int(self.labels[i])


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
    if spec == SYNTHETIC_BN:
        raise UsageError("synthetic-bn images are optimised from a model's BatchNorm statistics, not read from a "
                         "data set: ghostcli.calibrate.load_images(..., model=...) makes them")
    if spec == "fashion-mnist":
        missing = fashion_mnist_missing()
        if missing:
            raise DataError(missing)
        return IdxDataset(FASHION_MNIST_DIR, split, size, augment, mean, std, classes=FASHION_MNIST_CLASSES)
    if spec.startswith(IDX_PREFIX):
        return IdxDataset(_idx_path(spec), split, size, augment, mean, std)
    return FolderDataset(Path(spec), split, size, augment, mean, std)


def _idx_path(spec: str) -> Path:
    path = spec[len(IDX_PREFIX):]
    if not path:
        raise UsageError("idx:PATH needs the folder of the idx files after 'idx:' (e.g. idx:~/mnist)")
    return Path(path).expanduser()


def is_named_source(spec: str) -> bool:
    """True for a data source that is not a folder path: ``digits``, ``fashion-mnist``, ``synthetic``,
    ``synthetic-bn``, ``idx:PATH``."""
    return spec in NAMED_SOURCES or spec.startswith(IDX_PREFIX)


def has_val_split(spec: str) -> bool:
    """True for a named source with its own val split: ``digits``, ``fashion-mnist``, and ``idx:PATH`` whose
    folder holds the ``t10k-*`` image and label files (checked by name; nothing is read)."""
    if spec in LABELLED_SOURCES:
        return True
    if spec.startswith(IDX_PREFIX):
        folder = Path(spec[len(IDX_PREFIX):]).expanduser()
        return folder.is_dir() and all(_idx_file(folder, f) for f in _IDX_FILES["val"])
    return False


def check_source(spec: str) -> None:
    """Fail fast, with one line, on a data source that cannot be read: a missing folder, a file where a folder
    should be, ``fashion-mnist`` not installed (the message gives the install command), ``idx:`` without a PATH
    or without its idx files. Nothing is loaded."""
    if spec in ("digits", "synthetic", SYNTHETIC_BN):
        return
    if spec == "fashion-mnist":
        missing = fashion_mnist_missing()
        if missing:
            raise DataError(missing)
        return
    if spec.startswith(IDX_PREFIX):
        folder = _idx_path(spec)
        if not folder.is_dir():
            raise DataError(f"idx folder {folder} does not exist" if not folder.exists()
                            else f"{folder} is a file, not a folder of idx files")
        if not any(_idx_file(folder, f) for files in _IDX_FILES.values() for f in files[:1]):
            raise DataError(f"{folder} has no idx files (train-images-idx3-ubyte or t10k-images-idx3-ubyte, "
                            "optionally .gz)")
        return
    path = Path(spec)
    if not path.exists():
        raise DataError(f"data folder {spec} does not exist (or use a named source: {', '.join(NAMED_SOURCES)}, "
                        "idx:PATH)")
    if not path.is_dir():
        raise DataError(f"{spec} is a file, not a folder of images (DIR/<class>/<image>), a named source "
                        f"({', '.join(NAMED_SOURCES)}) or idx:PATH")
