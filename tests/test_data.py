"""Built-in and folder image datasets."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from ghostcli.data import load_image_dataset
from ghostcli.errors import DataError


def test_digits_fixed_split() -> None:
    train = load_image_dataset("digits", split="train", input_size=(3, 16, 16))
    val = load_image_dataset("digits", split="val", input_size=(3, 16, 16))
    assert len(train) + len(val) == 1797 and len(val) == 360
    x, y = val[0]
    assert x.shape == (3, 16, 16) and 0 <= y < 10
    again = load_image_dataset("digits", split="val", input_size=(3, 16, 16))
    assert torch.equal(again.images, val.images) and torch.equal(again.labels, val.labels)
    assert sorted(set(val.labels.tolist())) == list(range(10))
    assert load_image_dataset("digits", input_size=(1, 8, 8))[0][0].shape == (1, 8, 8)


def test_digits_augment_keeps_shape() -> None:
    ds = load_image_dataset("digits", input_size=(3, 32, 32), augment=True)
    torch.manual_seed(1)
    a = ds[5][0]
    assert a.shape == (3, 32, 32)


def _write_images(folder: Path, n: int, color: tuple[int, int, int]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.new("RGB", (40, 30), color).save(folder / f"img{i}.png")


def test_image_folder_with_classes_and_junk(tmp_path: Path) -> None:
    _write_images(tmp_path / "cat", 3, (255, 0, 0))
    _write_images(tmp_path / "dog", 2, (0, 0, 255))
    (tmp_path / "dog" / "notes.txt").write_text("not an image")
    ds = load_image_dataset(str(tmp_path), split="val", input_size=(3, 24, 24))
    assert ds.classes == ["cat", "dog"] and len(ds) == 5 and ds.skipped == 1 and ds.labeled
    x, y = ds[4]
    assert x.shape == (3, 24, 24) and y == 1
    assert x[2].mean() > x[0].mean()  # blue image: blue channel above red after normalization


def test_flat_folder_is_unlabeled(tmp_path: Path) -> None:
    _write_images(tmp_path, 2, (10, 20, 30))
    ds = load_image_dataset(str(tmp_path), input_size=(3, 16, 16))
    assert len(ds) == 2 and not ds.labeled


def test_bad_folders(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_image_dataset(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no usable images"):
        load_image_dataset(str(tmp_path / "empty"))
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.txt").write_text("x")
    with pytest.raises(DataError, match="1 other files skipped"):
        load_image_dataset(str(tmp_path / "junk"))
    bad = tmp_path / "broken"
    bad.mkdir()
    (bad / "x.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="cannot decode"):
        load_image_dataset(str(bad), input_size=(3, 8, 8))[0]


def test_which_named_sources_have_a_val_split(tmp_path: Path) -> None:
    from ghostcli.data import has_val_split, is_named_source

    assert has_val_split("digits") and has_val_split("fashion-mnist")
    assert not has_val_split("synthetic") and not has_val_split("synthetic-bn") and not has_val_split(str(tmp_path))
    assert not has_val_split(f"idx:{tmp_path}")  # no t10k files
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(b"")
    assert not has_val_split(f"idx:{tmp_path}")  # images without labels
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(b"")
    assert has_val_split(f"idx:{tmp_path}")  # both, by name (read when loaded)
    assert is_named_source("idx:x") and is_named_source("synthetic-bn") and not is_named_source(str(tmp_path))
