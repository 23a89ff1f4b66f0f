"""ghostcli export: BN folding, deployment-clean Ghost graphs, verification, atomic outputs, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from ghostcli.cli.app import app
from ghostcli.deploy import graph
from ghostcli.deploy.export import export_model
from ghostcli.deploy.onnx_export import needs_external_data
from ghostcli.deploy.openvino_export import save_ir
from ghostcli.deploy.options import ExportOptions
from ghostcli.deploy.verify import compare_outputs, merge_results
from ghostcli.errors import ExportError, OutputExistsError, UsageError
from ghostcli.fold import fold_batchnorm
from ghostcli.layers import GhostBottleneck, GhostModule, SqueezeExcite
from ghostcli.runtime.onnx import onnx_runner
from ghostcli.runtime.openvino import compile_cpu, core, executed_precisions, run_compiled, to_openvino

from conftest import randomize_bn
from graph_helpers import openvino_bias_adds


class TinyGhostNet(nn.Module):
    """Stem + two Ghost bottlenecks (one with SE, one strided) + 1x1 head: no Linear, so Adds are residuals only."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.b1 = GhostBottleneck(16, 32, 16, 3, 1, se_ratio=0.25)
        self.b2 = GhostBottleneck(16, 48, 24, 3, 2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Conv2d(24, 10, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.b2(self.b1(self.stem(x))))).flatten(1)


def tiny() -> nn.Module:
    torch.manual_seed(0)
    return randomize_bn(TinyGhostNet()).eval()


def files_in(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir())


# --------------------------------------------------------------------------- folding


class AttrConvBn(nn.Module):
    """Conv/BN held as attributes (found by fx), a BN that follows no conv, a conv used twice."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.seq = nn.Sequential(nn.Conv2d(8, 8, 1), nn.BatchNorm2d(8), nn.ReLU())
        self.pre_bn = nn.BatchNorm2d(8)  # after a ReLU: cannot be folded
        self.side = nn.Conv2d(8, 8, 1)
        self.side_bn = nn.BatchNorm2d(8)  # its conv output is also used elsewhere: must not be folded

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.seq(self.bn(self.conv(x)))
        y = self.pre_bn(torch.relu(y))
        s = self.side(y)
        return self.side_bn(s) + s


def test_fold_batchnorm_is_exact_and_keeps_unfoldable_bns() -> None:
    torch.manual_seed(0)
    model = randomize_bn(AttrConvBn()).eval()
    x = torch.randn(2, 3, 16, 16)
    folded, report = fold_batchnorm(model)
    assert report.method == "fx"
    assert report.folded == 2
    assert sorted(report.unfolded) == ["pre_bn", "side_bn"]
    assert isinstance(folded.bn, nn.Identity) and isinstance(folded.seq[1], nn.Identity)
    assert isinstance(model.bn, nn.BatchNorm2d)  # the input model is untouched
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), atol=1e-5, rtol=1e-5)


class Untraceable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return y if float(y.sum()) > -1e9 else -y  # data-dependent branch: fx cannot trace it


def test_fold_falls_back_to_module_structure() -> None:
    model = randomize_bn(Untraceable()).eval()
    folded, report = fold_batchnorm(model)
    assert report.method == "module-structure" and report.trace_error
    assert report.folded == 1 and report.unfolded == []
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), atol=1e-5, rtol=1e-5)


# --------------------------------------------------------------------------- clean Ghost graphs


@pytest.mark.parametrize("simplify", [True, False])
def test_ghostnet_onnx_has_no_bn_and_no_slice(tmp_path: Path, simplify: bool) -> None:
    from ghostcli.models import build_model

    torch.manual_seed(0)
    model = randomize_bn(build_model("ghostnet_100")).eval()
    n_ghost = sum(isinstance(m, GhostModule) for m in model.modules())
    n_se = sum(isinstance(m, SqueezeExcite) for m in model.modules())
    n_blocks = sum(isinstance(m, GhostBottleneck) for m in model.modules())
    assert (n_ghost, n_se, n_blocks) == (32, 7, 16)
    out = tmp_path / "g.onnx"
    r = export_model(model,
                     options=ExportOptions(output=out, format="onnx", input_size=(3, 64, 64), simplify=simplify))
    counts = graph.onnx_op_counts(out)
    assert counts == r.op_counts
    assert r.bn_folded == 80 and r.bn_left == 0
    assert counts.get("BatchNormalization", 0) == 0
    assert counts.get("Slice", 0) == 0 and r.ghost_modules == 32 and r.ghost_modules_sliced == 0
    # no Mul/Add standing in for a BN: Mul only in SE gates, Add only for residuals
    assert counts["Mul"] == n_se and counts["Add"] == n_blocks
    assert counts["Concat"] == n_ghost and counts["Conv"] == 95
    assert r.simplify_status == ("ok" if simplify else "off")
    assert r.verification is not None and r.verification.passed and r.verification.backend == "onnxruntime"
    # independent check of the written file against the unfolded PyTorch model
    x = np.random.default_rng(1).standard_normal((1, 3, 64, 64)).astype(np.float32)
    got, _ = onnx_runner(out)(x)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, ref, atol=1e-5, rtol=1e-3)


def test_slice_only_where_ghost_channels_do_not_divide(tmp_path: Path) -> None:
    even = nn.Sequential(GhostModule(8, 12, ratio=2), GhostModule(12, 12, ratio=3))  # 6*2, 4*3: no slice
    odd = nn.Sequential(GhostModule(8, 10, ratio=3), GhostModule(10, 7, ratio=2))    # 4*3=12>10, 4*2=8>7
    r_even = export_model(randomize_bn(even).eval(),
                          options=ExportOptions(output=tmp_path / "e.onnx", format="onnx", input_size=(8, 16, 16)))
    r_odd = export_model(randomize_bn(odd).eval(),
                         options=ExportOptions(output=tmp_path / "o.onnx", format="onnx", input_size=(8, 16, 16)))
    assert r_even.op_counts.get("Slice", 0) == 0 and r_even.ghost_modules_sliced == r_even.ghost_slices == 0
    assert r_odd.op_counts.get("Slice", 0) == 2 and r_odd.ghost_modules_sliced == r_odd.ghost_slices == 2
    ov_odd = to_openvino(randomize_bn(odd).eval(), (1, 8, 16, 16))
    assert graph.openvino_slices_after_concat(ov_odd) == 2
    for r in (r_even, r_odd):
        assert r.op_counts.get("BatchNormalization", 0) == 0 and r.op_counts["Conv"] == 4
        assert r.verification.passed


def test_ghostified_resnet_exports_clean(tmp_path: Path) -> None:
    from ghostcli.convert import ghostify
    from ghostcli.models import build_model

    torch.manual_seed(0)
    ghost, _ = ghostify(randomize_bn(build_model("resnet20")).eval(), input_size=(3, 32, 32))
    ghost = randomize_bn(ghost).eval()
    n_ghost = sum(isinstance(m, GhostModule) for m in ghost.modules())
    assert n_ghost > 10
    r = export_model(ghost, options=ExportOptions(output=tmp_path / "gr.onnx", format="onnx", input_size=(3, 32, 32)))
    assert r.bn_left == 0 and r.op_counts.get("BatchNormalization", 0) == 0
    # resnet20's "option A" shortcuts slice (x[:, :, ::2, ::2]); none of the Ghost modules does
    assert r.ghost_slices == r.ghost_modules_sliced == 0 and r.op_counts.get("Slice", 0) == 2
    assert r.op_counts["Concat"] == n_ghost
    assert r.verification.passed


def test_openvino_ir_is_clean_verified_and_dynamic(tmp_path: Path) -> None:
    model = tiny()
    xml = tmp_path / "t.xml"
    r = export_model(model,
                     options=ExportOptions(output=xml, format="openvino", input_size=(3, 32, 32), dynamic_batch=True))
    assert files_in(tmp_path) == ["t.bin", "t.xml"]
    assert r.files == [str(tmp_path / "t.bin"), str(xml)]
    counts = graph.openvino_op_counts(xml)
    assert graph.bn_leftovers(counts) == 0
    assert counts.get("Multiply", 0) == 1  # the SE gate only
    n_conv = counts["Convolution"] + counts["GroupConvolution"]
    assert n_conv == 15 and openvino_bias_adds(xml) == n_conv  # IR spells a conv bias as Conv + Add(const)
    assert counts["Add"] - n_conv == 2  # the other Adds are the two residuals
    assert counts.get("Slice", 0) + counts.get("StridedSlice", 0) == 0 and r.ghost_slices == 0
    v = r.verification
    assert v.passed and v.backend == "openvino-cpu-f32" and len(v.checks) == 3
    # the saved IR runs at batch 1 and 8 with the same per-image results
    compiled, prec = compile_cpu(core().read_model(str(xml)), precision="f32")
    assert prec == "f32"
    x = np.random.default_rng(2).standard_normal((8, 3, 32, 32)).astype(np.float32)
    y8 = run_compiled(compiled, x)
    y1 = np.concatenate([run_compiled(compiled, x[i:i + 1]) for i in range(8)])
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    assert y8.shape == (8, 10)
    np.testing.assert_allclose(y8, y1, atol=1e-5, rtol=1e-4)
    np.testing.assert_allclose(y8, ref, atol=1e-4, rtol=1e-3)
    precisions = executed_precisions(compiled)
    assert precisions and all(set(p) <= {"f32", "i32", "i64", "u8", "?"} for p in precisions.values())


def test_openvino_fp16_compresses_weights_only_when_asked(tmp_path: Path) -> None:
    model = tiny()
    ov_model = to_openvino(model, (1, 3, 32, 32))
    a = save_ir(ov_model, tmp_path / "f32.xml")
    b = save_ir(ov_model, tmp_path / "f16.xml", fp16=True)
    size32, size16 = a.with_suffix(".bin").stat().st_size, b.with_suffix(".bin").stat().st_size
    assert 0.4 < size16 / size32 < 0.6
    with pytest.raises(OutputExistsError):
        save_ir(ov_model, a)
    assert save_ir(ov_model, a, force=True) == a
    assert files_in(tmp_path) == ["f16.bin", "f16.xml", "f32.bin", "f32.xml"]


def test_onnx_dynamic_batch_runs_at_1_and_8(tmp_path: Path) -> None:
    model = tiny()
    out = tmp_path / "d.onnx"
    r = export_model(model,
                     options=ExportOptions(output=out, format="onnx", input_size=(3, 32, 32), dynamic_batch=True))
    assert r.input_shape == ["batch", 3, 32, 32] and r.verification.passed
    x = np.random.default_rng(3).standard_normal((8, 3, 32, 32)).astype(np.float32)
    run = onnx_runner(out)
    y8, _ = run(x)
    y1 = np.concatenate([run(x[i:i + 1])[0] for i in range(8)])
    np.testing.assert_allclose(y8, y1, atol=1e-5, rtol=1e-4)


# --------------------------------------------------------------------------- failures leave nothing


class TraceTimeState(nn.Module):
    """Adds a Python counter that the tracer freezes: PyTorch and the export disagree by >= 1."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.conv(x) + float(self.calls)


def test_failed_onnx_verification_leaves_no_file(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="verification failed.*max abs.*loosen `atol`/`rtol`, or `no_verify`"):
        export_model(TraceTimeState().eval(),
                     options=ExportOptions(output=tmp_path / "bad.onnx", format="onnx", input_size=(3, 8, 8)))
    assert files_in(tmp_path) == []
    # the same export goes through without verification
    r = export_model(TraceTimeState().eval(),
                     options=ExportOptions(output=tmp_path / "bad.onnx", format="onnx", input_size=(3, 8, 8),
                                           verify=False))
    assert r.verification is None and files_in(tmp_path) == ["bad.onnx"]


def test_failed_openvino_verification_leaves_no_file(tmp_path: Path) -> None:
    model = tiny()
    # FP16 weights cannot match FP32 PyTorch to 1e-9: verification must fail, and nothing be written
    with pytest.raises(ExportError, match="verification failed.*max abs"):
        export_model(model,
                     options=ExportOptions(output=tmp_path / "h.xml", format="openvino",
                                           input_size=(3, 16, 16), fp16=True, atol=1e-9, rtol=0))
    assert files_in(tmp_path) == []
    # OpenVINO's tracer notices the Python state that ONNX's did not
    with pytest.raises(ExportError, match="different graphs"):
        export_model(TraceTimeState().eval(),
                     options=ExportOptions(output=tmp_path / "bad.xml", format="openvino", input_size=(3, 8, 8)))
    assert files_in(tmp_path) == []


def test_unsupported_operator_is_named(tmp_path: Path) -> None:
    class CumMax(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.cummax(x, 1)[0]

    with pytest.raises(ExportError, match="aten::cummax"):
        export_model(CumMax(), options=ExportOptions(output=tmp_path / "c.onnx", format="onnx", input_size=(3, 4, 4)))
    with pytest.raises(ExportError, match="aten::cummax"):
        export_model(CumMax(),
                     options=ExportOptions(output=tmp_path / "c.xml", format="openvino", input_size=(3, 4, 4)))
    assert files_in(tmp_path) == []


def test_external_data_decision_and_output(tmp_path: Path) -> None:
    model = tiny()
    out = tmp_path / "x.onnx"
    r = export_model(model,
                     options=ExportOptions(output=out, format="onnx", input_size=(3, 32, 32),
                                           external_data_threshold=1000))
    assert r.external_data and files_in(tmp_path) == ["x.onnx", "x.onnx.data"]
    assert any("external data" in w for w in r.warnings)
    assert r.verification.passed  # onnxruntime read the weights from x.onnx.data
    assert out.stat().st_size < (tmp_path / "x.onnx.data").stat().st_size
    import onnx

    proto = onnx.load(str(out))
    assert not needs_external_data(proto) and needs_external_data(proto, threshold=1000)


def test_onnxsim_failure_falls_back_with_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import onnxsim

    def broken(*a: object, **k: object) -> None:
        raise RuntimeError("simulated onnxsim crash")

    monkeypatch.setattr(onnxsim, "simplify", broken)
    r = export_model(tiny(), options=ExportOptions(output=tmp_path / "s.onnx", format="onnx", input_size=(3, 32, 32)))
    assert r.simplify_status.startswith("failed: simulated onnxsim crash")
    assert any("keeping the unsimplified model" in w for w in r.warnings)
    assert r.verification.passed and r.op_counts.get("BatchNormalization", 0) == 0


def test_onnx_verification_falls_back_to_openvino(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import raises ImportError
    r = export_model(tiny(), options=ExportOptions(output=tmp_path / "v.onnx", format="onnx", input_size=(3, 32, 32)))
    assert r.verification.backend == "openvino-cpu-f32" and r.verification.passed


def test_usage_errors(tmp_path: Path) -> None:
    m = tiny()
    with pytest.raises(UsageError, match="unknown export format"):
        export_model(m, options=ExportOptions(output=tmp_path / "a.tflite", format="tflite", input_size=(3, 8, 8)))
    with pytest.raises(UsageError, match="must end in .onnx"):
        export_model(m, options=ExportOptions(output=tmp_path / "a.xml", format="onnx", input_size=(3, 8, 8)))
    with pytest.raises(UsageError, match="openvino only"):
        export_model(m,
                     options=ExportOptions(output=tmp_path / "a.onnx", format="onnx", input_size=(3, 8, 8), fp16=True))
    with pytest.raises(UsageError, match="`input_size` is required"):
        export_model(m, options=ExportOptions(output=tmp_path / "a.onnx", format="onnx"))
    with pytest.raises(UsageError, match="`no_simplify` applies to `format` onnx only"):
        export_model(m,
                     options=ExportOptions(output=tmp_path / "a.xml", format="ov", input_size=(3, 8, 8),
                                           simplify=False))
    with pytest.raises(UsageError, match="exclude each other"):
        export_model(m,
                     options=ExportOptions(output=tmp_path / "a.onnx", format="onnx",
                                           input_size=(3, 8, 8), batch_size=1, dynamic_batch=True))
    with pytest.raises(UsageError, match="opset must be between 7 and"):
        export_model(m,
                     options=ExportOptions(output=tmp_path / "a.onnx", format="onnx", input_size=(3, 8, 8), opset=99))
    (tmp_path / "e.onnx").write_text("x")
    with pytest.raises(OutputExistsError):
        export_model(m, options=ExportOptions(output=tmp_path / "e.onnx", format="onnx", input_size=(3, 8, 8)))
    assert (tmp_path / "e.onnx").read_text() == "x"
    # options checked before the file appeared still refuse to replace it when the export writes
    later = ExportOptions(output=tmp_path / "later.onnx", format="onnx", input_size=(3, 8, 8))
    (tmp_path / "later.onnx").write_text("x")
    with pytest.raises(OutputExistsError):
        export_model(m, options=later)
    assert (tmp_path / "later.onnx").read_text() == "x"


@pytest.mark.parametrize(("options", "library", "cli_args", "cli"), [
    ({"batch_size": 2, "dynamic_batch": True}, "`batch_size` and `dynamic_batch` exclude each other",
     ["-b", "2", "--dynamic-batch"], "--batch-size and --dynamic-batch exclude each other"),
    ({"format": "ov", "simplify": False}, "`no_simplify` applies to `format` onnx only",
     ["-f", "ov", "--no-simplify"], "--no-simplify applies to --format onnx only"),
    ({"atol": -1.0}, "`atol` must be a finite number >= 0, got -1.0", ["--atol", "-1"],
     "--atol must be a finite number >= 0, got -1.0"),
], ids=["batch-dynamic", "no-simplify", "atol"])
def test_option_errors_name_fields_in_backquotes_and_the_cli_its_flags(runner, tmp_path: Path, options, library,
                                                                        cli_args, cli) -> None:
    out = tmp_path / ("m.xml" if options.get("format") == "ov" else "m.onnx")
    with pytest.raises(UsageError) as err:
        ExportOptions(output=out, **options)
    assert str(err.value) == library
    res = runner.invoke(app, ["export", "resnet20", *cli_args, "-o", str(out)])
    assert res.exit_code == 2 and res.stderr.strip() == f"Error: {cli}", res.output


def test_quantize_option_errors_name_settings_in_backquotes_and_the_cli_its_flags(runner) -> None:
    from ghostcli.deploy.options import QuantizeOptions

    with pytest.raises(UsageError) as err:
        QuantizeOptions(max_accuracy_drop=1.5)
    assert str(err.value) == "`max_accuracy_drop` is a fraction in [0, 1), got 1.5"
    with pytest.raises(UsageError) as err:
        QuantizeOptions(mean=(0.5, 0.5), input_size=(3, 8, 8))
    assert str(err.value) == "`mean` needs 1 or 3 values (one per input channel) for a 3-channel input, got 2"
    res = runner.invoke(app, ["quantize", "resnet20", "--max-accuracy-drop", "150%"])
    assert res.exit_code == 2 and res.stderr.strip() == "Error: --max-accuracy-drop is a fraction in [0, 1), got 1.5"
    res = runner.invoke(app, ["quantize", "resnet20", "--input-size", "3x8x8", "--mean", "0.5,0.5"])
    assert res.exit_code == 2 and res.stderr.strip() == \
        "Error: --mean needs 1 or 3 values (one per input channel) for a 3-channel input, got 2"


def test_compare_outputs_values() -> None:
    ref = np.array([1.0, -2.0, 0.0])
    r = compare_outputs(ref, np.array([1.001, -2.0, 1e-5]), atol=1e-4, rtol=1e-2)
    assert r.passed and r.max_abs == pytest.approx(1e-3) and r.max_rel == pytest.approx(1e7, rel=1e-6)
    assert r.ref_max_abs == 2.0
    bad = compare_outputs(ref, np.array([1.0, -2.1, 0.0]), atol=1e-4, rtol=1e-2)
    assert not bad.passed and bad.max_abs == pytest.approx(0.1) and bad.max_rel == pytest.approx(0.05)
    assert not compare_outputs(ref, ref[:2], 1, 1).passed
    assert not compare_outputs(ref, np.array([1.0, np.nan, 0.0]), 1, 1).passed
    merged = merge_results([r, bad])
    assert not merged.passed and merged.max_abs == pytest.approx(0.1)


# --------------------------------------------------------------------------- CLI


def test_cli_json_and_errors(runner, tmp_path: Path) -> None:
    out = tmp_path / "r.onnx"
    res = runner.invoke(app, ["export", "resnet20", "-o", str(out), "--json", "--opset", "17"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["format"] == "onnx" and data["opset"] == 17 and data["input_shape"] == [1, 3, 32, 32]
    assert data["files"] == [str(out)] and data["bn_left"] == 0 and data["bn_folded"] == 19
    assert data["verification"]["passed"] is True and data["verification"]["max_abs"] < 1e-4
    assert data["op_counts"]["Conv"] == 19  # stem + 18 block convs ("option A" shortcuts have none)
    again = runner.invoke(app, ["export", "resnet20", "-o", str(out)])
    assert again.exit_code == 1 and "already exists" in again.stderr
    bad = runner.invoke(app, ["export", "resnet20", "--format", "tflite", "-o", str(tmp_path / "a.onnx")])
    assert bad.exit_code == 2 and "unknown export format" in bad.stderr
    both = runner.invoke(app, ["export", "resnet20", "--batch-size", "2", "--dynamic-batch",
                               "-o", str(tmp_path / "b.onnx")])
    assert both.exit_code == 2 and "exclude each other" in both.stderr
    nomodel = runner.invoke(app, ["export", "no_such_model", "-o", str(tmp_path / "n.onnx")])
    assert nomodel.exit_code == 1 and "Error:" in nomodel.stderr and "Traceback" not in nomodel.output
    assert files_in(tmp_path) == ["r.onnx"]


def test_cli_subprocess_openvino(ghostcli_exe: str, tmp_path: Path) -> None:
    proc = subprocess.run(
        [ghostcli_exe, "export", "resnet20", "--format", "openvino", "--batch-size", "2", "-o", "r20.xml"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "max abs error" in proc.stdout and "passed" in proc.stdout and "2x3x32x32" in proc.stdout
    assert files_in(tmp_path) == ["r20.bin", "r20.xml"]
    ov_model = core().read_model(str(tmp_path / "r20.xml"))
    assert list(ov_model.inputs[0].get_partial_shape().to_shape()) == [2, 3, 32, 32]
    # a failing ONNX export: one error line, and no exporter log dumped on stdout (it would corrupt --json):
    # stdout holds the JSON error object alone
    bad = subprocess.run([ghostcli_exe, "export", "resnet20", "--opset", "9", "--json", "-o", "r9.onnx"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 1 and json.loads(bad.stdout)["kind"] == "ghostcli.error"
    assert json.loads(bad.stdout)["message"] == "ONNX export failed at opset 9: step!=1 is currently not supported"
    assert bad.stderr.strip().splitlines() == [
        "Error: ONNX export failed at opset 9: step!=1 is currently not supported"]
    assert files_in(tmp_path) == ["r20.bin", "r20.xml"]
