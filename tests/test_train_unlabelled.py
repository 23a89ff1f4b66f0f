"""``train --teacher T --data DIR --kd-alpha 1`` on unlabelled images (issue #15, item 2), and the named sources
(fashion-mnist, idx:PATH) as training data."""

from __future__ import annotations

import gzip
import json
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch

from ghostcli.cli.app import app
from ghostcli.train.data import check_data_path, hold_out_split, load_datasets
from ghostcli.train.distill import distillation_loss, kd_kl
from ghostcli.train.metrics import Meter

from bad_input import run_bad
from train_fixtures import make_image_folder, save_ghost_resnet20, save_ghostified

pytestmark = pytest.mark.usefixtures("one_thread")

SIZE = (3, 8, 8)


def _digit_pngs(folder: Path, n: int, offset: int = 0) -> Path:
    """``n`` of scikit-learn's real 8x8 digits as grey PNGs in one flat folder (no class subfolders)."""
    from PIL import Image
    from sklearn.datasets import load_digits

    folder.mkdir(parents=True, exist_ok=True)
    images = load_digits().images[offset:offset + n]
    for i, img in enumerate(images):
        Image.fromarray((img * 255 / 16).astype(np.uint8), mode="L").save(folder / f"d{i:03d}.png")
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A teacher trained one epoch on digits (its predictions vary from image to image) and its ghostified copy."""
    from ghostcli.resolve import resolve_model
    from ghostcli.train import TrainConfig, train_model

    d = tmp_path_factory.mktemp("models")
    torch.set_num_threads(1)
    teacher = d / "teacher.safetensors"
    train_model(TrainConfig(data="digits", input_size=SIZE, epochs=1, augment=False, output=str(teacher),
                            force=True, device="cpu"), lambda: resolve_model("resnet20"))
    return {"teacher": teacher, "student": save_ghostified(teacher, d / "student.safetensors", SIZE)}


def _predictions(path: Path, images: torch.Tensor) -> torch.Tensor:
    from ghostcli.resolve import resolve_model

    with torch.no_grad():
        return resolve_model(str(path)).model.eval()(images).argmax(dim=1)


def test_hold_out_split_is_fixed_and_disjoint() -> None:
    keep, held = hold_out_split(32)
    assert len(held) == 3 and len(keep) == 29 and sorted(keep + held) == list(range(32))
    assert hold_out_split(32) == (keep, held)  # not drawn from the run's seed
    assert hold_out_split(5)[1] and len(hold_out_split(5)[1]) == 1  # at least one image
    assert hold_out_split(1) == ([0], []) and len(hold_out_split(2)[0]) == 1  # never all of them


def test_distil_from_an_unlabelled_folder(tmp_path: Path, runner, models: dict[str, Path]) -> None:
    data = _digit_pngs(tmp_path / "unlabelled", 32)
    out = tmp_path / "s.safetensors"
    res = runner.invoke(app, ["train", str(models["student"]), "--data", str(data), "--teacher", str(models["teacher"]),
                              "--kd-alpha", "1", "--input-size", "3x8x8", "--epochs", "1", "--batch-size", "8",
                              "--no-augment", "--device", "cpu", "-o", str(out), "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert d["labelled"] is False and d["num_classes"] == 0 and d["train_images"] == 29 and d["val_images"] == 3
    assert d["val_data"] == f"{data} (3 held-out images)" and d["steps_per_epoch"] == 3
    assert d["final_val_top1"] is None and d["final_val_loss"] is None and d["best_val_top1"] is None
    h = d["history"][0]
    assert h["train_top1"] is None and h["val_top1"] is None and h["train_agreement"] is not None
    assert any("3 of its 32 images" in n and "agreement with the teacher" in n for n in d["notes"])
    # independently: the saved student and the teacher on the held-out images, decoded as evaluation decodes them
    from ghostcli.data import load_image_dataset

    ds = load_image_dataset(str(data), split="val", input_size=SIZE)
    held = torch.stack([ds[i][0] for i in hold_out_split(32)[1]])
    agree = (_predictions(out, held) == _predictions(models["teacher"], held)).float().mean().item() * 100
    assert d["final_val_agreement"] == pytest.approx(agree) and h["val_agreement"] == d["final_val_agreement"]
    from ghostcli.artifacts import read_recipe

    training = read_recipe(out).extra["training"]
    assert training["labelled"] is False and training["classes"] is None and training["kd_alpha"] == 1.0


def test_unlabelled_training_with_labelled_validation(tmp_path: Path, models: dict[str, Path]) -> None:
    """A labelled --val-data gives top-1 (as `evaluate` measures it) and agreement, both checked independently."""
    from ghostcli.resolve import resolve_model
    from ghostcli.train import EvalOptions, TrainConfig, evaluate_model, train_model

    data = _digit_pngs(tmp_path / "unlabelled", 16, offset=100)
    r = train_model(TrainConfig(data=str(data), val_data="digits", kd_alpha=1.0, input_size=SIZE, epochs=1,
                                batch_size=8, augment=False, device="cpu", output=str(tmp_path / "s.safetensors")),
                    lambda: resolve_model(str(models["student"])), teacher=lambda: resolve_model(str(models["teacher"])))
    assert not r.labelled and r.train_images == 16 and r.val_images == 360 and r.history[0].train_top1 is None
    check = evaluate_model(resolve_model(str(tmp_path / "s.safetensors")), "digits", options=EvalOptions(device="cpu"))
    assert r.final_val_top1 == pytest.approx(check.top1) and r.final_val_loss == pytest.approx(check.loss, rel=1e-5)
    from ghostcli.data import load_image_dataset

    val = load_image_dataset("digits", split="val", input_size=SIZE)
    agree = (_predictions(tmp_path / "s.safetensors", val.images) == _predictions(models["teacher"], val.images))
    assert r.final_val_agreement == pytest.approx(agree.float().mean().item() * 100)
    assert 0 < r.final_val_agreement < 100  # the teacher's classes vary: agreement is not top-1 against label 0


def test_labels_needed_but_absent_is_one_clean_line(tmp_path: Path, models: dict[str, Path]) -> None:
    data = _digit_pngs(tmp_path / "unlabelled", 8)
    base = ["train", str(models["student"]), "--data", str(data), "--input-size", "3x8x8", "--device", "cpu",
            "-o", str(tmp_path / "s.safetensors")]
    run_bad([*base, "--teacher", str(models["teacher"])], tmp_path, code=2,
            match=["has no labels", "--kd-alpha 1"])  # the default --kd-alpha 0.5 mixes in the label loss
    run_bad([*base, "--teacher", str(models["teacher"]), "--kd-alpha", "0.9", "--json"], tmp_path, code=2,
            match="--kd-alpha < 1 mixes in the label loss")
    run_bad(base, tmp_path, code=1, match=["no class subfolders", "--kd-alpha 1 with a --teacher"])
    labelled = make_image_folder(tmp_path / "labelled", per_class=4)
    run_bad([*base[:3], str(labelled), *base[4:], "--val-data", str(data)], tmp_path, code=1,
            match=["no class subfolders", "without a --teacher there is nothing to measure"])
    run_bad([*base[:3], "synthetic", *base[4:]], tmp_path, code=1, match="synthetic is calibration data")


def test_help_example_runs_as_written(tmp_path: Path, runner, monkeypatch: pytest.MonkeyPatch) -> None:
    """The unlabelled example of `train --help`, in a folder holding the files it names (images/ as in the doc
    tests: a tiny ImageFolder whose class folder images/top is a flat folder of 6 images)."""
    from ghostcli.artifacts import Recipe, save_artifact
    from ghostcli.cli.train import HELP
    from ghostcli.models import build_model

    line = next(x.strip() for x in HELP.splitlines() if x.strip().startswith("ghostcli train") and "--kd-alpha 1" in x)
    monkeypatch.chdir(tmp_path)
    make_image_folder(tmp_path / "images", per_class=6)
    save_ghost_resnet20(tmp_path / "ghost_resnet20.safetensors", (3, 16, 16))
    save_artifact(build_model("resnet20"), tmp_path / "resnet20_digits.safetensors",
                  Recipe(source="zoo:resnet20", input_size=[3, 16, 16]))
    res = runner.invoke(app, [*shlex.split(line)[1:], "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert (d["train_images"], d["val_images"], d["labelled"]) == (5, 1, False)
    assert Path(d["output"]).is_file()


def _write_idx(folder: Path, prefix: str, images: np.ndarray, labels: np.ndarray) -> None:
    n, h, w = images.shape
    head = bytes([0, 0, 8, 3]) + b"".join(v.to_bytes(4, "big") for v in (n, h, w))
    (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(head + images.astype(np.uint8).tobytes()))
    (folder / f"{prefix}-labels-idx1-ubyte").write_bytes(bytes([0, 0, 8, 1]) + n.to_bytes(4, "big")
                                                        + labels.astype(np.uint8).tobytes())


def test_train_reads_idx_folders(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 24), ("t10k", 12)):
        _write_idx(tmp_path, prefix, rng.integers(0, 256, (n, 8, 8)), np.arange(n) % 3)
    sets = load_datasets(f"idx:{tmp_path}", None, SIZE, augment=False, seed=0)
    assert len(sets.train) == 24 and sets.val is not None and len(sets.val) == 12  # type: ignore[arg-type]
    assert sets.classes == ["0", "1", "2"] and sets.val_source == f"idx:{tmp_path}" and sets.labelled
    for f in tmp_path.glob("t10k-*"):
        f.unlink()
    sets = load_datasets(f"idx:{tmp_path}", None, SIZE, augment=False, seed=0)
    assert sets.val is None  # no t10k files: no val split (a note says so), not an error
    from ghostcli.errors import DataError

    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="has no idx files"):
        check_data_path(f"idx:{tmp_path / 'empty'}")


def test_fashion_mnist_is_training_data() -> None:
    from ghostcli.data import fashion_mnist_missing
    from ghostcli.errors import DataError

    if fashion_mnist_missing():
        with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
            check_data_path("fashion-mnist")
    else:
        check_data_path("fashion-mnist")
        from ghostcli.train.data import eval_source

        assert eval_source("fashion-mnist", None) == ("fashion-mnist", "val")


def test_pure_distillation_reads_no_labels() -> None:
    s, t = torch.randn(4, 10), torch.randn(4, 10)
    assert torch.equal(distillation_loss(s, t, None, alpha=1.0, temperature=4.0), kd_kl(s, t, 4.0))
    with pytest.raises(ValueError, match="needs labels"):
        distillation_loss(s, t, None, alpha=0.5, temperature=4.0)


def test_meter_counts_agreement_and_reads_old_checkpoints() -> None:
    m = Meter()
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0]])
    m.update(0.5, logits, None, torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]]))
    assert (m.agree, m.compared, m.labelled, m.count) == (2, 3, 0, 3)
    assert m.agreement == pytest.approx(200 / 3) and m.acc1 != m.acc1  # NaN: no labels
    assert Meter.from_list(m.as_list()) == m
    old = Meter.from_list([2.0, 3.0, 4.0, 4.0])  # a checkpoint written before agreement was counted
    assert (old.top1, old.labelled, old.compared, old.acc1) == (3, 4, 0, 75.0)
