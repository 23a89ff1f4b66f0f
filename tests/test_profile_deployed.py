"""`profile` and `check` on exported models (issue #14, item 5): .onnx, OpenVINO .xml and INT8 IRs.

One ResNet-20 (random weights, BatchNorm statistics randomized so that folding leaves real biases) is
saved, exported to ONNX and OpenVINO IR and quantized to an INT8 IR once per module; the tests profile
those files beside the PyTorch model they came from.
"""

from __future__ import annotations

import json
import pickle
import subprocess
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from ghostcli.analysis.macs import count_macs
from ghostcli.analysis.params import total_and_trainable_params
from ghostcli.analysis.profile import ProfileOptions, profile_models
from ghostcli.artifacts import save_artifact
from ghostcli.cli.app import app
from ghostcli.errors import ArtifactError, UsageError
from ghostcli.loaded import DeployedModel
from ghostcli.resolve import load_deployed, resolve_model, resolve_model_or_deployed

from bad_input import run_bad
from conftest import randomize_bn

FAST = ["--runs", "3", "--warmup", "1"]
CONVS = {"conv1", "fc"} | {f"layer{s}.{b}.conv{c}" for s in (1, 2, 3) for b in (0, 1, 2) for c in (1, 2)}


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """r20.safetensors and its r20.onnx, r20.xml (+ .bin) and INT8 r20_int8.xml, made by ghostcli itself."""
    d = tmp_path_factory.mktemp("deployed")
    loaded = resolve_model("resnet20")
    randomize_bn(loaded.model)
    save_artifact(loaded.model, d / "r20.safetensors", loaded.recipe)
    runner = CliRunner()
    for args in (["export", str(d / "r20.safetensors"), "-o", str(d / "r20.onnx")],
                 ["export", str(d / "r20.safetensors"), "-f", "openvino", "-o", str(d / "r20.xml")],
                 ["quantize", str(d / "r20.safetensors"), "--calib-data", "synthetic", "--subset-size", "8",
                  "--eval-size", "8", "--runs", "1", "--warmup", "0", "-o", str(d / "r20_int8.xml")]):
        res = runner.invoke(app, args)
        assert res.exit_code == 0, (args, res.output)
    return {"pt": d / "r20.safetensors", "onnx": d / "r20.onnx", "xml": d / "r20.xml", "int8": d / "r20_int8.xml"}


def _json(args: list[str]) -> dict:
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


# ------------------------------------------------------------------ counting on the graph

def test_graph_counts_agree_with_the_pytorch_model(files: dict[str, Path]) -> None:
    loaded = resolve_model(str(files["pt"]))
    x = torch.randn(1, 3, 32, 32)
    fv = count_macs(loaded.model, x)
    params, _ = total_and_trainable_params(loaded.model)
    bn_channels = sum(m.num_features for m in loaded.model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    report = profile_models([loaded] + [load_deployed(files[k]) for k in ("onnx", "xml", "int8")],
                            options=ProfileOptions(latency=False, memory=False))
    torch_p, *exported = report.models
    for p in exported:
        # the rule: every folded BatchNorm's weight and bias (2 per channel) became one conv bias per channel
        assert p.params == params - bn_channels == 269_034, p.name
        assert p.macs_conv_linear == fv.conv_linear == torch_p.macs_conv_linear, p.name  # exact
        assert 0.98 < p.macs / fv.total < 1.0, p.name  # fvcore's total less the BN it counts (0.9% here)
        assert p.macs_by_operator["Convolution"] == fv.by_operator["conv"] and p.macs_by_operator["MatMul"] == 640
        assert p.activations == torch_p.activations and p.flops == 2 * p.macs and p.trainable_params == 0
    onnx_p, xml_p, int8_p = exported
    assert (onnx_p.format, xml_p.format, int8_p.format) == ("onnx", "openvino", "openvino")
    assert xml_p.weight_bytes == 4 * xml_p.params and int8_p.weight_bytes < xml_p.weight_bytes / 3  # int8: 1 byte


def test_options_that_cannot_apply_to_an_exported_model(files: dict[str, Path]) -> None:
    xml = load_deployed(files["xml"])
    with pytest.raises(UsageError, match="has a fixed batch of 1: profile it at `batch_size` 1"):
        profile_models([xml], options=ProfileOptions(batch_sizes=[1, 4], latency=False))
    with pytest.raises(UsageError, match=r"takes input 3x32x32 \(fixed in the graph\), not `input_size` 3x64x64"):
        profile_models([xml], options=ProfileOptions(input_size=(3, 64, 64), latency=False))
    with pytest.raises(UsageError, match="`channels_last` applies to PyTorch models: r20.xml is an exported model"):
        profile_models([xml], options=ProfileOptions(channels_last=True, latency=False))
    with pytest.raises(UsageError, match="--weights applies to PyTorch models"):
        resolve_model_or_deployed(str(files["xml"]), weights="w.safetensors")
    assert isinstance(resolve_model_or_deployed(str(files["onnx"])), DeployedModel)
    with pytest.raises(ArtifactError, match="is an OpenVINO IR .* this command needs a PyTorch model"):
        resolve_model(str(files["xml"]))  # never read as a pickle or a checkpoint


# ------------------------------------------------------------------ latency and layer times on the runtime

def test_profile_times_each_file_on_its_runtime(files: dict[str, Path]) -> None:
    pytest.importorskip("onnxruntime")
    data = _json(["profile", str(files["pt"]), str(files["onnx"]), str(files["xml"]), str(files["int8"]),
                  "--threads", "1", *FAST, "--json"])
    pt, onnx, xml, int8 = data["models"]
    assert all(m["latency"][0]["median_ms"] > 0 and m["latency"][0]["runs"] == 3 for m in data["models"])
    assert (pt["runtime"]["name"], onnx["runtime"]["name"], xml["runtime"]["name"]) == \
        ("pytorch", "onnxruntime", "openvino")
    assert onnx["runtime"]["device"] == "CPUExecutionProvider" and onnx["runtime"]["threads"] == 1
    assert xml["runtime"]["precision"] in ("f32", "bf16", "f16") and xml["runtime"]["precision_default"] is True
    assert xml["runtime"]["int8_layers"] is None and int8["runtime"]["int8_layers"].endswith("conv/FC layers in i8/u8")
    assert int8["params"] == xml["params"] and int8["source"] == "openvino:r20_int8.xml"
    assert data["comparisons"][0]["params_ratio"] == pytest.approx(269_034 / 269_722)
    assert xml["memory"][0]["peak_bytes"] is None and xml["memory"][0]["weights_bytes"] == xml["weight_bytes"]


def test_onnx_on_openvino_and_the_printed_runtimes(files: dict[str, Path]) -> None:
    res = CliRunner().invoke(app, ["profile", str(files["onnx"]), str(files["xml"]), "--device", "openvino",
                                   "--ov-precision", "f32", *FAST])
    assert res.exit_code == 0, res.output
    out = " ".join(res.stdout.split())
    assert "Runtimes: r20.onnx: OpenVINO" in out and "CPU plugin, f32," in out
    assert "Exported models (.onnx, .xml) are counted on their graph" in out
    assert "not counted (no MAC formula)" in out


def test_layer_times_line_up_with_the_pytorch_model(files: dict[str, Path]) -> None:
    pytest.importorskip("onnxruntime")
    data = _json(["profile", str(files["pt"]), str(files["xml"]), str(files["int8"]), str(files["onnx"]),
                  "--layer-times", "--threads", "1", "--no-latency", "--json"])
    pt, xml, int8, onnx = ({t["name"]: t for t in m["layer_times"]} for m in data["models"])
    assert CONVS <= set(pt) and pt["layer1.0.conv1"]["kind"] == "Conv2d"
    for rows in (xml, int8, onnx):  # the same row names as the PyTorch model's, for every conv and the FC
        assert CONVS <= set(rows), sorted(set(rows))
        assert set(rows) - set(pt) <= {"(runtime)", "(model)", "layer2.0", "layer3.0"} | {
            f"layer{s}.{b}" for s in (1, 2, 3) for b in (0, 1, 2)}  # blocks: residual adds, shortcuts
        assert all(rows[c]["ms"] >= 0 and rows[c]["nodes"] >= 1 for c in CONVS)
    assert xml["layer1.0.conv1"]["kind"] == "Convolution" and onnx["layer1.0.conv1"]["kind"] == "Conv"
    assert sum(xml[c]["ms"] for c in CONVS) > 0 and sum(onnx[c]["ms"] for c in CONVS) > 0


def test_openvino_model_layer_times_takes_an_in_memory_model() -> None:
    """The library entry point another engine calls on its own ov.Model (e.g. NNCF's quantized one)."""
    from ghostcli.analysis.layer_times import openvino_model_layer_times, units
    from ghostcli.fold import fold_batchnorm
    from ghostcli.runtime.openvino import to_openvino

    model = resolve_model("resnet20").model
    folded, _ = fold_batchnorm(model)
    ov_model = to_openvino(folded, (-1, 3, 32, 32))  # a dynamic batch: compiled from a reshaped copy
    rows = openvino_model_layer_times(ov_model, (2, 3, 32, 32), precision="f32", threads=1, runs=2, warmup=1,
                                      unit_paths=units(model))
    kinds = {r.name: r.kind for r in rows}
    assert CONVS <= set(kinds) and kinds["layer1.0.conv1"] == "Conv2d" and kinds["fc"] == "Linear"
    assert ov_model.inputs[0].get_partial_shape().is_dynamic  # the caller's model is left as it was
    plain = {r.name for r in openvino_model_layer_times(ov_model, (1, 3, 32, 32), runs=1, warmup=0)}
    assert CONVS <= plain  # without unit_paths: the module paths the names record


def test_module_paths_from_onnx_and_openvino_names() -> None:
    from ghostcli.analysis.layer_times import module_of, onnx_scope

    assert onnx_scope("/layer1/layer1.0/conv1/Conv") == "layer1.0.conv1"
    assert onnx_scope("/layer1/layer1.0/conv1/primary_conv/primary_conv.0/Conv/WithoutBiases") == \
        "layer1.0.conv1.primary_conv.0"
    assert onnx_scope("/Flatten") == "" and onnx_scope("Slice_0") is None and onnx_scope("output") is None
    assert module_of("/fc/Gemm/WithoutBiases,/fc/Gemm") == "fc"
    assert module_of("__module.layer1.0.conv1/aten::_convolution/Convolution,Multiply_13107") == "layer1.0.conv1"


# ------------------------------------------------------------------ check

def test_check_limits_on_an_exported_model(files: dict[str, Path], tmp_path: Path) -> None:
    runner = CliRunner()
    xml = str(files["xml"])
    ok = runner.invoke(app, ["check", xml, "--max-params", "270k", "--max-macs", "41M", "--max-latency-ms", "10000",
                             *FAST, "--no-config", "--json"])
    assert ok.exit_code == 0, ok.output
    report = json.loads(ok.stdout)
    assert report["passed"] and report["format"] == "openvino" and report["runtime"]["name"] == "openvino"
    assert {r["name"] for r in report["results"]} == {"params", "macs", "latency_ms"}
    over = runner.invoke(app, ["check", xml, "--max-params", "200k", "--no-config"])
    assert over.exit_code == 3 and "params 269.03 k > 200.00 k" in over.stderr
    slow = runner.invoke(app, ["check", xml, "--max-latency-ms", "0.000001", *FAST, "--no-config"])
    assert slow.exit_code == 3 and "latency_ms" in slow.stderr
    base = tmp_path / "base.json"
    assert runner.invoke(app, ["check", xml, "--baseline", str(base), "--update-baseline", "--no-config"]).exit_code == 0
    again = runner.invoke(app, ["check", str(files["int8"]), "--baseline", str(base), "--no-config"])
    assert again.exit_code == 0, again.output  # the INT8 IR keeps the float IR's MACs and parameters
    assert "counted on the exported graph" in " ".join(again.stdout.split())


# ------------------------------------------------------------------ bad input: one line, exit != 0

def test_bad_exported_files(files: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "alone.xml").write_bytes(files["xml"].read_bytes())  # no alone.bin beside it
    (tmp_path / "junk.xml").write_text("garbage <<< not xml")
    (tmp_path / "junk.bin").write_bytes(b"\0" * 16)
    (tmp_path / "junk.onnx").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "pickled.xml").write_bytes(pickle.dumps({"a": 1}))
    (tmp_path / "pickled.bin").write_bytes(b"")
    torch.jit.save(torch.jit.script(torch.nn.ReLU()), str(tmp_path / "script.onnx"))  # a TorchScript zip
    cases = [
        (["profile", "alone.xml"], 1, ["alone.xml has no weights file beside it", "alone.bin"]),
        (["profile", "junk.xml"], 1, "junk.xml is not a readable OpenVINO IR"),
        (["profile", "junk.onnx"], 1, "junk.onnx is not a readable ONNX model"),
        (["profile", "pickled.xml"], 1, "pickled.xml is not a readable OpenVINO IR"),
        (["profile", "script.onnx"], 1, "script.onnx is not a readable ONNX model"),  # never the PyTorch frontend
        (["profile", "missing.onnx"], 1, "no such file: missing.onnx"),
        (["check", "junk.onnx", "--max-params", "1M", "--no-config"], 1, "junk.onnx is not a readable ONNX model"),
        (["check", "alone.xml", "--max-params", "1M", "--no-config", "--json"], 1, "has no weights file"),
        (["check", str(files["xml"]), "--max-params", "1M", "--channels-last", "--no-config"], 2,
         "--channels-last applies to PyTorch models"),
        (["profile", str(files["xml"]), "--batch-size", "1,2"], 2, "fixed batch of 1: profile it at --batch-size 1"),
        (["profile", str(files["xml"]), "--weights", "w.pt"], 2, "--weights applies to PyTorch models"),
        (["export", str(files["xml"]), "-o", "m.onnx"], 1, "this command needs a PyTorch model"),
        (["profile", str(files["xml"].with_suffix(".bin"))], 1, "pass the .xml file"),
    ]
    for args, code, match in cases:
        run_bad(args, tmp_path, code=code, match=match)


def test_installed_entry_point_reads_no_other_frontend(ghostcli_exe: str, tmp_path: Path) -> None:
    """A bad .xml is one line on stderr: no TensorFlow/absl parse noise from frontends it is not for."""
    (tmp_path / "bad.xml").write_text("hello")
    (tmp_path / "bad.bin").write_bytes(b"")
    proc = subprocess.run([ghostcli_exe, "profile", "bad.xml"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and "not a readable OpenVINO IR" in proc.stderr


def test_pooling_and_resizing_count_as_in_pytorch() -> None:
    """AvgPool (GhostNetV2's DFC branch), adaptive pooling and nearest / bilinear / bicubic Interpolate count the
    same MACs on the OpenVINO graph as fvcore (with ghostcli's extra handles) counts in PyTorch."""
    from torch import nn
    from torch.nn import functional as F

    from ghostcli.analysis.graph_counts import count_graph
    from ghostcli.runtime.openvino import to_openvino

    class Pools(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            a = F.avg_pool2d(x, kernel_size=2, stride=2)  # 3x4x6 out x 4 = 288
            b = F.interpolate(a, size=x.shape[-2:], mode="nearest")  # 3x8x12 x 1 = 288
            c = F.interpolate(a, scale_factor=2.0, mode="bilinear", align_corners=False)  # 288 x 4
            d = F.interpolate(a, scale_factor=(1.0, 2.0), mode="bicubic", align_corners=False)  # 3x4x12 x 16
            return b + c + F.adaptive_avg_pool2d(x, 1), d  # adaptive pooling: 1 per input, 288

    x = torch.randn(1, 3, 8, 12)
    fv = count_macs(Pools(), x)
    graph = count_graph(to_openvino(Pools(), (1, 3, 8, 12)), (3, 8, 12))
    assert fv.by_operator["avg_pool2d"] == graph.by_operator["AvgPool"] == 288
    assert graph.by_operator["Interpolate"] == 288 + 288 * 4 + 144 * 16
    assert not graph.uncounted.get("AvgPool") and not graph.uncounted.get("Interpolate")
    assert graph.macs == fv.total, (graph.by_operator, fv.by_operator)
