"""ghostcli evaluate: PyTorch models, exported ONNX and OpenVINO IR give the same accuracy; bad input."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from ghostcli.cli.app import app
from ghostcli.resolve import resolve_model
from ghostcli.train import TrainConfig, evaluate_model, train_model
from ghostcli.train.evaluate import EvalOptions
from ghostcli.train.metrics import Meter, topk_correct

from train_fixtures import make_image_folder

pytestmark = pytest.mark.usefixtures("one_thread")


def test_topk_counts() -> None:
    logits = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.3], [0.2, 0.3, 0.5]])
    target = torch.tensor([1, 2, 0])
    assert topk_correct(logits, target, (1, 2, 5)) == [1, 2, 3]
    m = Meter()
    m.update(0.5, logits, target)
    assert (m.count, m.top1, m.acc1, m.loss) == (3, 1, pytest.approx(100 / 3), pytest.approx(0.5))


def test_run_batch_chunks_and_pads_a_fixed_batch() -> None:
    from ghostcli.runtime.accuracy import run_batch, top1

    calls: list[int] = []

    def infer(x: np.ndarray) -> np.ndarray:
        calls.append(len(x))
        return x.reshape(len(x), -1) * 2.0

    x = np.arange(15, dtype=np.float32).reshape(5, 3, 1, 1)
    out = run_batch(infer, x, fixed_batch=2)
    assert calls == [2, 2, 2] and np.array_equal(out, 2.0 * x.reshape(5, 3))  # the padding's output is dropped
    assert top1(lambda b: b.reshape(len(b), -1)[:, ::-1], [x[:2], x[2:]]).tolist() == [0, 0, 0, 0, 0]
    assert top1(lambda b: b.reshape(len(b), -1), [x[i:i + 1] for i in range(5)]).tolist() == [2] * 5


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, float]:
    """A resnet20 trained for 2 epochs on a tiny real folder; returns (data, artifact, val top-1 at the end)."""
    root = tmp_path_factory.mktemp("eval")
    data = make_image_folder(root / "data", per_class=24, size=8, classes=("a", "b", "c", "d", "e", "f"))
    out = root / "m.safetensors"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        r = train_model(TrainConfig(data=str(data), val_data=str(data), output=str(out), epochs=2,
                                    batch_size=16, lr=0.05, input_size=(3, 8, 8), device="cpu"),
                        lambda: resolve_model("resnet20"))
    finally:
        torch.set_num_threads(threads)
    assert r.final_val_top1 is not None
    return data, out, r.final_val_top1


def test_evaluate_reproduces_the_training_validation(trained: tuple[Path, Path, float]) -> None:
    data, model, top1 = trained
    r = evaluate_model(resolve_model(str(model)), str(data), options=EvalOptions(batch_size=10, device="cpu"))
    assert r.backend == "pytorch" and r.images == 144 and r.num_classes == 6 and r.input_size == [3, 8, 8]
    assert r.top1 == pytest.approx(top1)  # the artifact reloads to the very model that was validated
    assert r.top1 <= r.top5 <= 100.0 and r.loss > 0 and r.images_per_s > 0


@pytest.mark.parametrize("fmt,suffix", [("onnx", ".onnx"), ("openvino", ".xml")])
def test_exported_models_score_like_pytorch(trained: tuple[Path, Path, float], tmp_path: Path, fmt: str,
                                            suffix: str) -> None:
    from ghostcli.deploy.export import export_model
    from ghostcli.deploy.options import ExportOptions
    from ghostcli.resolve import resolve_model

    data, model, top1 = trained
    exported = tmp_path / f"m{suffix}"
    export_model(resolve_model(str(model)), options=ExportOptions(output=exported, format=fmt, input_size=(3, 8, 8),
                                                                  dynamic_batch=(fmt == "onnx")))
    ref = evaluate_model(resolve_model(str(model)), str(data), options=EvalOptions(batch_size=32, device="cpu"))
    r = evaluate_model(Path(exported), str(data), options=EvalOptions(batch_size=32, device="cpu"))
    assert r.backend == ("onnxruntime" if fmt == "onnx" else "openvino") and r.precision == "f32"
    assert r.images == 144 and r.input_size == [3, 8, 8]
    assert abs(r.top1 - ref.top1) <= 100 / 144 + 1e-9  # at most one image flips on float noise
    assert r.loss == pytest.approx(ref.loss, rel=1e-3)


def test_cli_json_and_table(trained: tuple[Path, Path, float], runner, ghostcli_exe: str) -> None:
    data, model, top1 = trained
    r = subprocess.run([ghostcli_exe, "evaluate", str(model), "--data", str(data), "--device", "cpu", "--json"],
                       capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert set(d) >= {"model", "backend", "top1", "top5", "loss", "images", "images_per_s", "device", "precision"}
    assert d["top1"] == pytest.approx(top1) and d["images"] == 144
    t = runner.invoke(app, ["evaluate", str(model), "--data", str(data), "--device", "cpu"])
    assert t.exit_code == 0 and "top-1" in t.stdout and f"{top1:.2f}%" in t.stdout


def test_evaluate_bad_input(tmp_path: Path, runner) -> None:
    r = runner.invoke(app, ["evaluate", str(tmp_path / "none.onnx"), "--data", "digits"])
    assert r.exit_code == 1 and "no such model file" in r.output
    r = runner.invoke(app, ["evaluate", "resnet20", "--data", str(tmp_path / "nowhere")])
    assert r.exit_code == 1 and "does not exist" in r.output
    (tmp_path / "bad.onnx").write_bytes(b"not onnx")
    r = runner.invoke(app, ["evaluate", str(tmp_path / "bad.onnx"), "--data", "digits"])
    assert r.exit_code == 1 and "not a loadable ONNX model" in r.output
    many = make_image_folder(tmp_path / "many", per_class=1, classes=tuple(f"c{i:02d}" for i in range(12)))
    r = runner.invoke(app, ["evaluate", "resnet20", "--data", str(many), "--input-size", "3x8x8"])
    assert r.exit_code == 1 and "10 outputs" in r.output
    if not torch.cuda.is_available():
        r = runner.invoke(app, ["evaluate", "resnet20", "--data", "digits", "--device", "cuda"])
        assert r.exit_code == 1 and "CUDA is not available" in r.output
