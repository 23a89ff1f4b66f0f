"""ghostcli train: exact resume (also mid-epoch), Ctrl-C, checkpoints, bad input, the CLI."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from pathlib import Path

import pytest
import torch

from ghostcli.cli.app import app
from ghostcli.loaded import LoadedModel
from ghostcli.resolve import resolve_model
from ghostcli.train import EpochRecord, TrainConfig, TrainingInterrupted, evaluate_model, train_model
from ghostcli.train.checkpoint import load_checkpoint
from ghostcli.train.evaluate import EvalOptions

from conftest import StreamLines
from train_fixtures import leftovers, make_image_folder, save_ghost_resnet20

pytestmark = pytest.mark.usefixtures("one_thread")

SIZE = (3, 8, 8)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("imgs") / "data", per_class=24, size=8)


def STUDENT() -> LoadedModel:  # noqa: N802 (a constant-like loader)
    return resolve_model("resnet20")


def cfg(data: Path, out: Path, **kw: object) -> TrainConfig:
    base = dict(data=str(data), output=str(out), epochs=2, batch_size=8, input_size=SIZE,
                device="cpu", lr=0.05)
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


class Recorder:
    """A ``Progress`` that keeps every report; with ``stop_at=(epoch, step)`` it raises KeyboardInterrupt
    (as Ctrl-C would) once that optimizer step is reported."""

    def __init__(self, stop_at: tuple[int, int] | None = None) -> None:
        self.stop_at = stop_at
        self.calls: list[tuple[str, int, int, str]] = []

    def __call__(self, description: str, done: int, total: int, info: str = "") -> None:
        self.calls.append((description, done, total, info))
        if self.stop_at is not None and (description, done) == (f"epoch {self.stop_at[0]}/2", self.stop_at[1]):
            raise KeyboardInterrupt


INFO = re.compile(r"loss \d+\.\d{4}  acc \d+\.\d%  [\d,]+ img/s  lr \d\.?\d*(e-\d+)?")


def test_interrupt_then_resume_matches_uninterrupted_run_exactly(folder: Path, tmp_path: Path) -> None:
    progress, epochs = Recorder(), []
    full = train_model(cfg(folder, tmp_path / "full.safetensors"), STUDENT, progress=progress, on_epoch=epochs.append)
    assert full.steps_per_epoch == 6 and len(full.history) == 2 and full.num_classes == 2
    assert (tmp_path / "full.ckpt").is_file()
    # one report as an epoch starts, one per optimizer step; the epoch records as they finish
    assert [c[:3] for c in progress.calls] == [(f"epoch {e}/2", s, 6) for e in (1, 2) for s in range(7)]
    assert all(c[3] == "" if c[1] == 0 else INFO.fullmatch(c[3]) for c in progress.calls), progress.calls[:2]
    assert epochs == full.history and all(isinstance(r, EpochRecord) for r in epochs)

    out = tmp_path / "part.safetensors"
    with pytest.raises(TrainingInterrupted) as info:
        train_model(cfg(folder, out), STUDENT, progress=Recorder(stop_at=(1, 3)))
    msg = str(info.value)
    assert info.value.exit_code == 130 and "\n" not in msg
    assert "epoch 1/2, step 3/6" in msg and "`resume`" in msg
    assert not out.exists() and leftovers(tmp_path) == []
    ck = load_checkpoint(tmp_path / "part.ckpt")
    assert (ck["epoch"], ck["step"]) == (0, 3)
    assert set(ck) >= {"model", "optimizer", "scheduler", "scaler", "rng", "history"}
    assert isinstance(ck["rng"]["torch"], torch.Tensor)

    progress = Recorder()
    resumed = train_model(cfg(folder, out, resume=str(tmp_path / "part.ckpt")), STUDENT, progress=progress)
    assert resumed.resumed_from == str(tmp_path / "part.ckpt")
    assert progress.calls[0][:3] == ("epoch 1/2", 3, 6) and len(progress.calls) == 4 + 7  # the 3 steps left, 6
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert different == []
    for x, y in zip(full.history, resumed.history):
        assert (x.train_loss, x.train_top1, x.val_loss, x.val_top1) == (y.train_loss, y.train_top1, y.val_loss,
                                                                          y.val_top1)


def test_checkpoint_is_not_overwritten_without_resume_or_force(folder: Path, tmp_path: Path) -> None:
    (tmp_path / "m.ckpt").write_bytes(b"precious")
    from ghostcli.errors import OutputExistsError

    with pytest.raises(OutputExistsError) as info:
        train_model(cfg(folder, tmp_path / "m.safetensors", epochs=1), STUDENT)
    assert "`resume`" in str(info.value)  # the CLI shows it as --resume (tests/test_option_names.py)
    assert (tmp_path / "m.ckpt").read_bytes() == b"precious"


def test_resume_refuses_a_checkpoint_of_another_architecture(folder: Path, tmp_path: Path, runner) -> None:
    train_model(cfg(folder, tmp_path / "plain.safetensors", epochs=1), STUDENT)
    ghost = save_ghost_resnet20(tmp_path / "ghost.safetensors", SIZE)
    r = runner.invoke(app, ["train", str(ghost), "--data", str(folder), "--input-size", "3x8x8", "--epochs", "1",
                            "--batch-size", "8", "--device", "cpu", "--resume", str(tmp_path / "plain.ckpt"),
                            "-o", str(tmp_path / "g2.safetensors")])
    assert r.exit_code == 1
    assert "different architecture" in r.output and "zoo:resnet20" in r.output
    assert not (tmp_path / "g2.safetensors").exists()


def test_teacher_with_other_class_count_is_refused(folder: Path, tmp_path: Path, runner) -> None:
    teacher = save_ghost_resnet20(tmp_path / "t5.safetensors", SIZE, num_classes=5)
    r = runner.invoke(app, ["train", "resnet20", "--data", str(folder), "--input-size", "3x8x8", "--device", "cpu",
                            "--teacher", str(teacher), "-o", str(tmp_path / "s.safetensors")])
    assert r.exit_code == 2
    assert "teacher t5.safetensors has 5 classes but the student resnet20 has 10" in r.output
    assert leftovers(tmp_path) == [] and not (tmp_path / "s.ckpt").exists()


@pytest.mark.parametrize("case", ["missing", "flat", "one-class"])
def test_bad_data_folders_are_clear_errors(tmp_path: Path, runner, case: str) -> None:
    data = tmp_path / "data"
    if case == "flat":
        make_image_folder(tmp_path / "tmp", per_class=2)
        data.mkdir()
        for f in (tmp_path / "tmp" / "top").iterdir():
            f.rename(data / f.name)
    elif case == "one-class":
        make_image_folder(data, per_class=2, classes=("only",))
    r = runner.invoke(app, ["train", "resnet20", "--data", str(data), "--device", "cpu",
                            "-o", str(tmp_path / "o.safetensors")])
    assert r.exit_code == 1, r.output
    expected = {"missing": "does not exist", "flat": "no class subfolders", "one-class": "at least 2 classes"}[case]
    assert expected in r.output and "Traceback" not in r.output
    assert not (tmp_path / "o.safetensors").exists() and not (tmp_path / "o.ckpt").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error when CUDA is absent")
def test_cuda_asked_for_but_absent(folder: Path, tmp_path: Path, runner) -> None:
    r = runner.invoke(app, ["train", "resnet20", "--data", str(folder), "--device", "cuda",
                            "-o", str(tmp_path / "o.safetensors")])
    assert r.exit_code == 1
    assert "CUDA is not available" in r.output


def test_usage_errors(folder: Path, tmp_path: Path, runner) -> None:
    base = ["train", "resnet20", "--data", str(folder), "--device", "cpu"]
    cases = [
        (["--kd-alpha", "1.5", "-o", str(tmp_path / "a.safetensors")], "--kd-alpha"),
        (["--optimizer", "lamb", "-o", str(tmp_path / "a.safetensors")], "unknown optimizer"),
        (["--epochs", "0", "-o", str(tmp_path / "a.safetensors")], "--epochs"),
        (["-o", str(tmp_path / "a.pt")], ".safetensors"),
        ([], "-o/--output"),
    ]
    for extra, text in cases:
        r = runner.invoke(app, base + extra)
        assert r.exit_code == 2, (extra, r.output)
        assert text in r.output


def test_cli_trains_distils_and_reports_json(folder: Path, tmp_path: Path, runner) -> None:
    teacher = tmp_path / "teacher.safetensors"
    r = runner.invoke(app, ["train", "resnet20", "--data", str(folder), "--input-size", "3x8x8", "--epochs", "1",
                            "--batch-size", "16", "--device", "cpu", "--optimizer", "adamw", "--schedule", "step",
                            "--label-smoothing", "0.1", "-o", str(teacher)])
    assert r.exit_code == 0, r.output
    assert "val top-1" in r.output and str(teacher) in r.output
    assert "no validation data" in r.output  # a plain folder: training metrics only, said once
    out = tmp_path / "student.safetensors"
    r = runner.invoke(app, ["train", str(save_ghost_resnet20(tmp_path / "g.safetensors", SIZE)), "--data",
                            str(folder), "--val-data", str(folder), "--epochs", "2", "--batch-size", "16",
                            "--device", "cpu", "--teacher",
                            str(teacher), "--kd-alpha", "0.7", "--kd-temperature", "2", "--warmup-epochs", "1",
                            "--json", "-o", str(out)])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["teacher"] == str(teacher) and d["epochs"] == 2 and len(d["history"]) == 2
    assert d["steps_per_epoch"] == 3 and d["train_images"] == 48 and d["val_images"] == 48
    assert d["input_size"] == [3, 8, 8] and d["world_size"] == 1 and d["global_batch_size"] == 16
    assert d["final_val_top1"] == d["history"][-1]["val_top1"]
    # the saved model, evaluated on its own on the same images in the same batches, scores what train reported
    check = evaluate_model(resolve_model(str(out)), str(folder), options=EvalOptions(batch_size=16, device="cpu"))
    assert check.images == 48 and (check.top1, check.loss) == (d["final_val_top1"], d["final_val_loss"])
    assert d["history"][0]["lr"] == pytest.approx(0.1)  # end of the warm-up epoch: the peak lr
    # the artifact reloads (ghostified architecture + training info in its recipe)

    loaded = resolve_model(str(out))
    assert loaded.is_ghostified and list(loaded.input_size) == [3, 8, 8]
    assert loaded.recipe.extra["training"]["teacher"] == str(teacher)
    r = runner.invoke(app, ["train", "resnet20", "--data", str(folder), "-o", str(out)])
    assert r.exit_code == 1 and "already exists" in r.output


def test_ctrl_c_in_a_real_process_saves_a_checkpoint(folder: Path, tmp_path: Path, ghostcli_exe: str) -> None:
    out = tmp_path / "m.safetensors"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = ["train", "resnet20", "--data", str(folder), "--input-size", "3x8x8", "--epochs", "200",
            "--batch-size", "8", "--device", "cpu", "-o", str(out)]
    proc = subprocess.Popen([ghostcli_exe, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=env)
    stderr = StreamLines(proc.stderr)
    try:  # wait until a first epoch is done (the process is inside the loop), 120 s at most
        stderr.wait_for(lambda line: line.startswith("epoch 1:"), timeout=120)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=120)
    finally:
        proc.kill()
    err = stderr.text(timeout=30)
    assert proc.returncode == 130, err
    assert "Error: training interrupted at" in err and f"--resume {tmp_path / 'm.ckpt'}" in err
    assert not out.exists() and leftovers(tmp_path) == []
    ck = load_checkpoint(tmp_path / "m.ckpt")
    assert 1 <= ck["epoch"] < 200
    # continue it for a short total: the run finishes and writes the model
    r = subprocess.run([ghostcli_exe, *args[:6], "--epochs", str(ck["epoch"] + 1), *args[8:], "--resume",
                        str(tmp_path / "m.ckpt"), "--json"], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["resumed_from"] == str(tmp_path / "m.ckpt") and out.is_file()
    assert len(d["history"]) == ck["epoch"] + 1


def test_augmentation_is_the_same_with_data_loading_workers(folder: Path, tmp_path: Path) -> None:
    a = train_model(cfg(folder, tmp_path / "w0.safetensors", epochs=1, workers=0), STUDENT)
    b = train_model(cfg(folder, tmp_path / "w2.safetensors", epochs=1, workers=2), STUDENT)
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    c = train_model(cfg(folder, tmp_path / "s1.safetensors", epochs=1, seed=1), STUDENT)
    assert not torch.equal(sa["conv1.weight"], c.model.state_dict()["conv1.weight"])


def test_amp_and_channels_last_train_and_save_a_loadable_model(folder: Path, tmp_path: Path) -> None:

    out = tmp_path / "amp.safetensors"
    r = train_model(cfg(folder, out, epochs=1, amp=True, channels_last=True, val_data=str(folder)), STUDENT)
    assert r.history[0].train_loss == r.history[0].train_loss and r.history[0].train_loss > 0  # finite, not NaN
    check = evaluate_model(resolve_model(str(out)), str(folder),
                           options=EvalOptions(batch_size=8, device="cpu", amp=True, channels_last=True))
    assert r.final_val_top1 is not None and (check.top1, check.loss) == (r.final_val_top1, r.final_val_loss)
    reloaded = resolve_model(str(out)).model
    x = torch.randn(2, *SIZE)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(x), r.model.eval()(x))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")
def test_cuda_amp_training_saves_a_cpu_loadable_model(folder: Path, tmp_path: Path) -> None:

    out = tmp_path / "cuda.safetensors"
    r = train_model(cfg(folder, out, epochs=1, device="cuda", amp=True, channels_last=True, val_data=str(folder)), STUDENT)
    assert r.device.startswith("cuda") and r.history[0].train_loss > 0 and r.final_val_top1 is not None
    reloaded = resolve_model(str(out)).model
    x = torch.randn(2, *SIZE)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(x), r.model.eval()(x))


def test_learning_rate_schedules_follow_warmup_then_decay() -> None:
    from ghostcli.errors import UsageError
    from ghostcli.train.schedule import lr_factor

    def f(step: int, schedule: str) -> float:
        return lr_factor(step, schedule=schedule, total_steps=104, warmup_steps=4)

    assert [f(s, "cosine") for s in range(4)] == [0.25, 0.5, 0.75, 1.0]  # linear warm-up
    assert f(4, "cosine") == 1.0 and f(54, "cosine") == pytest.approx(0.5) and f(104, "cosine") == pytest.approx(0.0)
    assert [f(s, "step") for s in (4, 53, 54, 78, 79, 104)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
    assert f(100, "constant") == 1.0
    with pytest.raises(UsageError, match="unknown schedule 'linear'"):
        f(10, "linear")
