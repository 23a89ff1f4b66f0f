"""`ghostcli quantize`: NNCF INT8 into an OpenVINO IR, checked on the saved graph and the runtime's precisions."""

from __future__ import annotations

import json
import subprocess
from dataclasses import FrozenInstanceError
from pathlib import Path

import numpy as np
import pytest
import torch

from ghostcli.cli.app import app
from ghostcli.errors import DataError, UsageError
from ghostcli.resolve import resolve_model

FAST = ["--subset-size", "8", "--eval-size", "8", "--runs", "3", "--warmup", "1"]


@pytest.fixture(scope="module")
def digits_result(tmp_path_factory):
    """One real quantization of resnet20 calibrated on the digits set, shared by the assertions below."""
    from ghostcli.deploy import QuantizeOptions, quantize_model

    out = tmp_path_factory.mktemp("q") / "r20_int8.xml"
    options = QuantizeOptions(calib_data="digits", subset_size=32, eval_size=48, runs=5, warmup=1, output=out)
    result = quantize_model(resolve_model("resnet20"), options=options)
    return result, out


def test_saved_ir_is_int8(digits_result):
    from ghostcli.deploy.graph import openvino_op_counts
    from ghostcli.runtime.openvino import compile_cpu, core, executed_precisions, int8_coverage

    result, out = digits_result
    assert out.exists() and out.with_suffix(".bin").exists()
    assert result.output == str(out) and result.output_bin == str(out.with_suffix(".bin"))
    ov_model = core().read_model(str(out))
    fq = openvino_op_counts(ov_model).get("FakeQuantize", 0)
    assert fq == result.fake_quantize and fq >= 20  # resnet20: 19 convs + FC, each with quantized inputs
    compiled, _ = compile_cpu(ov_model)
    executed = executed_precisions(compiled)
    assert set(executed["Convolution"]) <= {"u8", "i8"}, executed
    n_int8, total = int8_coverage(executed)
    assert (n_int8, total) == (result.int8_layers, result.compute_layers) == (20, 20)
    assert "int8 (20/20" in result.int8.executed_precision


def test_report_values(digits_result):
    result, out = digits_result
    assert result.method == "ptq" and result.preset == "performance"
    assert result.calib_images == 32 and result.eval_images == 48
    assert not result.synthetic_calibration and result.labeled
    assert result.fp32.executed_precision == "f32"
    assert 0.7 <= result.top1_agreement <= 1.0  # INT8 picks FP32's class on almost every digit
    assert result.accuracy_drop == pytest.approx(result.fp32.top1_accuracy - result.int8.top1_accuracy)
    # int8 weights: about a quarter of the fp32 IR (plus scales and the xml)
    assert result.int8.size_bytes == out.stat().st_size + out.with_suffix(".bin").stat().st_size
    assert 0.2 < result.size_ratio < 0.5
    for v in (result.fp32, result.fp32_default, result.int8):
        assert 0 < v.latency_min_ms <= v.latency_ms <= v.latency_p90_ms
    assert result.speedup == pytest.approx(result.fp32.latency_ms / result.int8.latency_ms)
    assert result.measurement["batch"] == 1 and result.measurement["runs"] == 5
    assert result.warnings == []


def _nearest_centroid(size: tuple[int, int, int]) -> torch.nn.Module:
    """A linear classifier that really reads digits: logits = x . mu_c - |mu_c|^2 / 2 (class means of train)."""
    from ghostcli.deploy.calibration import load_image_set

    train = load_image_set("digits", split="train", input_size=size, limit=400)
    x = np.concatenate(train.images).reshape(len(train), -1)
    y = np.asarray(train.labels)
    mu = torch.from_numpy(np.stack([x[y == c].mean(axis=0) for c in range(10)]))
    fc = torch.nn.Linear(mu.shape[1], 10)
    with torch.no_grad():
        fc.weight.copy_(mu)
        fc.bias.copy_(-0.5 * (mu * mu).sum(dim=1))
    return torch.nn.Sequential(torch.nn.Flatten(), fc).eval()


def test_accuracy_matches_an_independent_count(tmp_path):
    """FP32/INT8 top-1, their drop and the agreement equal counts made here on the same 48 images."""
    from ghostcli.deploy import QuantizeOptions, quantize_model
    from ghostcli.deploy.calibration import load_image_set
    from ghostcli.runtime.openvino import compile_cpu, core, run_compiled

    size = (3, 16, 16)
    model = _nearest_centroid(size)
    out = tmp_path / "centroid_int8.xml"
    options = QuantizeOptions(input_size=size, calib_data="digits", subset_size=32, eval_size=48, runs=2, warmup=0,
                              output=out)
    result = quantize_model(model, options=options)
    evalset = load_image_set("digits", split="val", input_size=size, limit=48)
    x = np.concatenate(evalset.images)
    labels = np.asarray(evalset.labels)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).argmax(dim=1).numpy()
    compiled, _ = compile_cpu(core().read_model(str(out)))
    got = np.array([int(np.argmax(run_compiled(compiled, img))) for img in evalset.images])
    assert result.eval_images == 48 and result.labeled
    assert float(np.mean(ref == labels)) > 0.6  # the model classifies, so a wrong count shows
    one = 1 / 48 + 1e-9  # PyTorch vs OpenVINO f32: at most one image flips on float noise
    assert abs(result.fp32.top1_accuracy - float(np.mean(ref == labels))) <= one
    assert result.int8.top1_accuracy == pytest.approx(float(np.mean(got == labels)))
    assert abs(result.top1_agreement - float(np.mean(ref == got))) <= one
    assert result.accuracy_drop == pytest.approx(result.fp32.top1_accuracy - result.int8.top1_accuracy)


def test_cli_json_synthetic_warns(runner):
    res = runner.invoke(app, ["quantize", "resnet20", "--calib-data", "synthetic", "--json", *FAST])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["synthetic_calibration"] is True and data["labeled"] is False
    assert data["fp32"]["top1_accuracy"] is None and data["accuracy_drop"] is None
    assert data["calib_images"] == 8 and data["eval_images"] == 8
    assert data["int8_layers"] == data["compute_layers"] == 20
    assert set(data) >= {"fp32", "fp32_default", "int8", "speedup", "size_ratio", "top1_agreement", "fake_quantize"}
    assert "UNKNOWN" in res.stderr
    assert data["output"] is None
    from ghostcli.deploy.quantize import SYNTHETIC_WARNING

    assert SYNTHETIC_WARNING.endswith("use `calib_data` DIR or digits")  # the library names the setting...
    assert data["warnings"][0].endswith("use --calib-data DIR or digits")  # ...the command its flag


def test_cli_synthetic_bn_calibrates_without_data(runner):
    res = runner.invoke(app, ["quantize", "resnet20", "--input-size", "3x8x8", "--calib-data", "synthetic-bn",
                              "--eval-data", "digits", "--json", *FAST])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["calib_data"] == "synthetic-bn" and data["calib_images"] == 8
    assert data["synthetic_calibration"] is False  # not noise: no UNKNOWN warning
    assert data["labeled"] is True and data["fp32"]["top1_accuracy"] is not None  # measured on real digits
    assert data["int8_layers"] == data["compute_layers"] == 20
    assert any("8 synthetic-bn images" in w for w in data["warnings"]) and "UNKNOWN" not in res.stderr
    # without evaluation data: agreement with FP32 on the synthetic images, and the warning says accuracy is unmeasured
    res = runner.invoke(app, ["quantize", "resnet20", "--input-size", "3x8x8", "--calib-data", "synthetic-bn",
                              "--json", *FAST])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["labeled"] is False and data["eval_images"] == 8
    assert any("pass --eval-data to measure it" in w for w in data["warnings"])


def _image_folder(root: Path, classes: int = 10, per_class: int = 2) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in range(classes):
        d = root / str(c)
        d.mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(d / f"{i}.png")
    (root / "0" / "README.txt").write_text("not an image")
    return root


def test_accuracy_control_on_labelled_folder(tmp_path, runner):
    data = _image_folder(tmp_path / "imgs")
    out = tmp_path / "m.xml"
    res = runner.invoke(app, ["quantize", "resnet20", "--calib-data", str(data), "--max-accuracy-drop", "50%",
                              "-o", str(out), "--json", *FAST])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["method"] == "accuracy_control" and report["max_accuracy_drop"] == 0.5
    assert report["labeled"] is True and report["calib_images"] == 8
    assert report["accuracy_drop"] <= 0.5
    assert any("skipped 1 non-image" in w for w in report["warnings"])
    assert any(w.endswith("pass --eval-data DIR for held-out images") for w in report["warnings"])
    assert out.exists() and out.with_suffix(".bin").exists()


def test_bad_input(tmp_path, runner):
    res = runner.invoke(app, ["quantize", "resnet20", "--preset", "fast"])
    assert res.exit_code == 2 and "unknown preset" in res.stderr
    res = runner.invoke(app, ["quantize", "resnet20", "-o", str(tmp_path / "m.onnx")])
    assert res.exit_code == 2 and ".xml" in res.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("x")
    res = runner.invoke(app, ["quantize", "resnet20", "--calib-data", str(empty), *FAST])
    assert res.exit_code == 1 and "no usable images" in res.stderr and "1 other files skipped" in res.stderr
    res = runner.invoke(app, ["quantize", "resnet20", "--calib-data", "synthetic", "--max-accuracy-drop", "1%", *FAST])
    assert res.exit_code == 2 and "Error: --max-accuracy-drop needs labelled evaluation images" in res.stderr
    assert list(tmp_path.glob("*.xml")) == []


def test_subprocess_refuses_to_overwrite(tmp_path, ghostcli_exe):
    out = tmp_path / "m.xml"
    out.write_text("keep me")
    proc = subprocess.run([ghostcli_exe, "quantize", "resnet20", "-o", str(out)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 1
    assert "already exists" in proc.stderr and "--force" in proc.stderr and "Traceback" not in proc.stderr
    assert out.read_text() == "keep me"


# ------------------------------------------------------------------ QuantizeOptions, checked when made


@pytest.mark.parametrize(("fields", "error", "message"), [
    ({"preset": "fast"}, UsageError, "unknown preset 'fast' (choose from performance, mixed)"),
    ({"subset_size": 0}, UsageError, "`subset_size` (calibration images) must be at least 1, got 0"),
    ({"eval_size": -1}, UsageError, "`eval_size` must be at least 1, got -1"),
    ({"max_accuracy_drop": 1.5}, UsageError, "`max_accuracy_drop` is a fraction in [0, 1), got 1.5"),
    ({"runs": 0}, UsageError, "`runs` must be at least 1, got 0"),
    ({"input_size": (3, 0, 8)}, UsageError, "`input_size` must be C x H x W of positive sizes, got [3, 0, 8]"),
    ({"input_size": (8, 8)}, UsageError, "`input_size` must be C x H x W of positive sizes, got [8, 8]"),
    ({"mean": (0.5, 0.5), "input_size": (3, 8, 8)}, UsageError,
     "`mean` needs 1 or 3 values (one per input channel) for a 3-channel input, got 2"),
    ({"std": (0.2, 0.0, 0.2)}, UsageError, "`std` values must be positive, got 0.2,0,0.2"),
    ({"output": "m.onnx"}, UsageError, "the INT8 model is an OpenVINO IR: the output must end in .xml, got m.onnx"),
    ({"calib_data": "no/such/folder"}, DataError, "calibration data folder no/such/folder does not exist"),
    ({"ignored_types": ("Bogus",)}, UsageError, "unknown OpenVINO operation type 'Bogus' in `ignored_types` (types are "
     "case-sensitive, e.g. Convolution, GroupConvolution, MatMul, Add, Multiply, Interpolate)"),
    ({"ignored_types": ("groupconvolution",)}, UsageError, "did you mean GroupConvolution?"),
    ({"ignored_types": ("Convolusion",)}, UsageError, "did you mean Convolution?"),
], ids=["preset", "subset-size", "eval-size", "max-drop", "runs", "size-zero", "size-2d", "mean", "std", "suffix",
        "calib-missing", "op-type", "op-type-case", "op-type-typo"])
def test_options_refuse_impossible_values_when_made(fields, error, message) -> None:
    from ghostcli.deploy import QuantizeOptions

    with pytest.raises(error) as err:
        QuantizeOptions(**fields)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert type(err.value) is error


def test_options_normalize() -> None:
    from ghostcli.deploy import QuantizeOptions

    o = QuantizeOptions(output="m.xml", input_size=[3, 8, 8], mean=[0.5], ignored_types="GroupConvolution")
    assert o.output == o.path == Path("m.xml") and o.input_size == (3, 8, 8) and o.mean == (0.5,)
    assert o.ignored_types == ("GroupConvolution",)
    assert QuantizeOptions().path is None
    with pytest.raises(FrozenInstanceError):
        o.runs = 3  # type: ignore[misc]


def test_common_op_types_are_openvino_types() -> None:
    """The names a message offers are real, and real ones outside that list (or only in an older opset) pass."""
    from ghostcli.deploy.options import COMMON_OP_TYPES, is_op_type

    assert all(is_op_type(t) for t in COMMON_OP_TYPES)
    assert is_op_type("ShuffleChannels") and is_op_type("Constant") and is_op_type("FakeQuantize")
    assert not is_op_type("Bogus") and not is_op_type("convolution") and not is_op_type("FullyConnected")


def test_quantize_model_takes_a_model_and_options() -> None:
    from ghostcli.deploy import QuantizeOptions, quantize_model

    with pytest.raises(UsageError, match="`input_size` is needed when quantizing a bare nn.Module"):
        quantize_model(torch.nn.Flatten(), options=QuantizeOptions())
    with pytest.raises(UsageError, match="cannot quantize a str: expected an nn.Module or a loaded model"):
        quantize_model("resnet20", options=QuantizeOptions())  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        quantize_model(resolve_model("resnet20"), subset_size=8)  # type: ignore[call-arg]


def test_message_names_the_field_and_the_cli_the_flag(runner) -> None:
    from ghostcli.deploy import QuantizeOptions

    with pytest.raises(UsageError, match="^`subset_size` \\(calibration images\\) must be at least 1, got 0$"):
        QuantizeOptions(subset_size=0)
    res = runner.invoke(app, ["quantize", "resnet20", "--subset-size", "0"])
    assert res.exit_code == 2
    assert res.stderr.strip() == "Error: --subset-size (calibration images) must be at least 1, got 0", res.output


def test_cli_refuses_an_unknown_op_type(runner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("ghostcli.resolve.resolve_model", lambda *a, **k: pytest.fail("the model was loaded"))
    res = runner.invoke(app, ["quantize", "resnet20", "--ignore-type", "Convolution", "--ignore-type", "Bogus"])
    assert res.exit_code == 2, res.output
    assert res.stderr.strip() == ("Error: unknown OpenVINO operation type 'Bogus' in --ignore-type (types are "
                                  "case-sensitive, e.g. Convolution, GroupConvolution, MatMul, Add, Multiply, "
                                  "Interpolate)")
    assert res.stdout == ""


def test_cli_ignores_a_real_op_type(runner) -> None:
    """`Convolution` left in floating point: no convolution runs in INT8 and fewer FakeQuantize ops than without."""
    base = json.loads(runner.invoke(app, ["quantize", "resnet20", "--calib-data", "synthetic", "--json", *FAST]).stdout)
    res = runner.invoke(app, ["quantize", "resnet20", "--calib-data", "synthetic", "--json", *FAST,
                              "--ignore-type", "Convolution", "--ignore-type", "GroupConvolution"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["fake_quantize"] < base["fake_quantize"]
    assert "i8" not in data["executed_precisions"].get("Convolution", {}) and \
        "u8" not in data["executed_precisions"].get("Convolution", {})
    # resnet20 has no depthwise convolution: that type ignores nothing, and the report says so
    assert any(w.startswith("the converted model has no GroupConvolution operation: --ignore-type GroupConvolution")
               for w in data["warnings"]), data["warnings"]
