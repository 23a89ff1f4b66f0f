"""`ghostcli profile` and ghostcli.analysis: known MAC/param values, memory, latency stats, errors."""

from __future__ import annotations

import json
import math
import statistics
import subprocess
from collections.abc import Callable

import pytest
import torch
from torch import nn

from ghostcli.analysis import ForwardError, profile_model, profile_models
from ghostcli.analysis.latency import latency_stats
from ghostcli.analysis.macs import count_macs
from ghostcli.analysis.params import total_and_trainable_params, weight_bytes
from ghostcli.analysis.profile import ProfileOptions
from ghostcli.cli.app import app
from ghostcli.errors import DeviceError, UsageError
from ghostcli.resolve import resolve_model
from ghostcli.runtime.probe import probe_forward
from ghostcli.runtime.timing import percentile, time_interleaved
from ghostcli.units import format_macs

FAST = ["--runs", "3", "--warmup", "1"]


# ------------------------------------------------------------------ known values

def test_resnet50_known_values() -> None:
    p = profile_model(resolve_model("resnet50"), options=ProfileOptions(latency=False, memory=False))
    # fvcore's default total counts conv + linear + batch_norm + adaptive_avg_pool2d
    assert p.macs == 4_111_512_576 and format_macs(p.macs) == "4.11 GMac"
    assert p.macs_by_operator == {"conv": 4_087_136_256, "batch_norm": 22_227_968, "linear": 2_048_000,
                                  "adaptive_avg_pool2d": 100_352}
    assert p.macs_conv_linear == 4_089_184_256  # the paper's convention (BN excluded): 4.1B
    assert p.flops == 2 * p.macs
    assert p.params == p.trainable_params == 25_557_032
    assert p.uncounted_ops == {"relu_": 49, "add_": 16, "max_pool2d": 1}
    assert p.weight_bytes == 4 * 25_557_032 + 4 * 2 * 26_560 + 8 * 53  # fp32 params + BN stats + counters


def test_mobilenet_v2_and_ghostnet_known_values() -> None:
    mb = profile_model(resolve_model("mobilenet_v2"), options=ProfileOptions(latency=False, memory=False))
    assert 0.30e9 <= mb.macs_conv_linear <= mb.macs <= 0.32e9
    assert mb.params == 3_504_872
    assert "hardtanh_" in mb.uncounted_ops  # ReLU6 is listed, not silently zero
    g = profile_model(resolve_model("ghostnet_100"), options=ProfileOptions(latency=False, memory=False))
    assert g.params == 5_182_508
    assert abs(g.macs_conv_linear - 141e6) < 0.5e6  # paper: 141M MACs (conv + linear)
    assert {"hardsigmoid", "mul"} <= set(g.uncounted_ops)


def test_macs_match_hand_count() -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.Flatten(),
                          nn.Linear(8 * 10 * 10, 5)).eval()
    mc = count_macs(model, torch.randn(1, 3, 10, 10))
    conv = 8 * 10 * 10 * 3 * 3 * 3
    assert mc.by_operator["conv"] == conv and mc.by_operator["linear"] == 800 * 5
    assert mc.conv_linear == conv + 4000 and mc.total == conv + 4000 + mc.by_operator["batch_norm"]
    assert total_and_trainable_params(model) == (8 * 27 + 16 + 4005, 8 * 27 + 16 + 4005)


def test_weight_bytes_follow_dtype() -> None:
    model = nn.Linear(10, 10)
    assert weight_bytes(model) == 440 and weight_bytes(model, torch.bfloat16) == 220


# ------------------------------------------------------------------ memory and failures

def test_cpu_peak_memory_counts_live_tensors() -> None:
    m = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU()).eval()
    # conv output and ReLU output are alive together: 2 x 16x32x32 floats
    assert probe_forward(m, torch.randn(1, 3, 32, 32)).activations_peak_bytes == 2 * 16 * 32 * 32 * 4
    m = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(16, 8, 1)).eval()
    assert probe_forward(m, torch.randn(2, 3, 32, 32)).activations_peak_bytes == 2 * (16 + 8) * 32 * 32 * 4


def test_memory_scales_with_batch_and_includes_weights() -> None:
    p = profile_model(resolve_model("resnet20"), options=ProfileOptions(latency=False, batch_sizes=[1, 4]))
    m1, m4 = p.memory
    assert m1.weights_bytes == m4.weights_bytes == p.weight_bytes
    assert m4.input_bytes == 4 * m1.input_bytes == 4 * 3 * 32 * 32 * 4
    assert m4.activations_peak_bytes == 4 * m1.activations_peak_bytes > 0
    assert m1.peak_bytes == m1.weights_bytes + m1.input_bytes + m1.activations_peak_bytes


def test_failing_layer_is_named() -> None:
    with pytest.raises(ForwardError, match=r"at layer 'classifier' \(Linear, input 1x2048\)"):
        profile_models([resolve_model("vgg16")], options=ProfileOptions(input_size=(3, 64, 64), latency=False))


def test_tree_and_layers() -> None:
    p = profile_model(resolve_model("resnet20"),
                      options=ProfileOptions(latency=False, memory=False, depth=1, per_layer=True))
    top = [m for m in p.modules if m.depth == 1]
    assert p.modules[0].name == "" and p.modules[0].macs == p.macs
    assert sum(m.macs for m in top) == p.macs and {m.name for m in top} >= {"conv1", "layer1", "fc"}
    fc = next(m for m in p.layers if m.name == "fc")
    assert fc.type == "Linear" and fc.output_shape == [1, 10] and fc.macs == 64 * 10 and fc.params == 650
    assert sum(m.params for m in p.layers) == p.params


def test_library_rejects_bad_options() -> None:
    with pytest.raises(UsageError):
        profile_models([resolve_model("resnet20")], options=ProfileOptions(runs=0))
    with pytest.raises(UsageError):
        profile_models([resolve_model("resnet20")], options=ProfileOptions(batch_sizes=[0]))
    with pytest.raises(UsageError):
        profile_models([resolve_model("resnet20")], options=ProfileOptions(device="tpu"))


@pytest.mark.parametrize(("options", "library", "cli_args", "cli"), [
    ({"depth": -1}, "`depth` must be 0 or more, got -1", ["--depth", "-1"], "--depth must be 0 or more, got -1"),
    ({"runs": 0}, "`runs` must be at least 1, got 0 (use `no_latency` to skip timing)", ["--runs", "0"],
     "--runs must be at least 1, got 0 (use --no-latency to skip timing)"),
    ({"ov_precision": "f16"}, "`ov_precision` applies only with `device` openvino", ["--ov-precision", "f16"],
     "--ov-precision applies only with --device openvino"),
    ({"device": "openvino", "dtype": "fp16"}, "`dtype` applies to cpu and cuda; with `device` openvino use "
     "`ov_precision`", ["--device", "openvino", "--dtype", "fp16"],
     "--dtype applies to cpu and cuda; with --device openvino use --ov-precision"),
], ids=["depth", "runs", "ov-precision", "dtype"])
def test_option_errors_name_fields_in_backquotes_and_the_cli_its_flags(runner, options, library, cli_args,
                                                                        cli) -> None:
    with pytest.raises(UsageError) as err:
        ProfileOptions(**options)
    assert str(err.value) == library
    res = runner.invoke(app, ["profile", "resnet20", *cli_args])
    assert res.exit_code == 2 and res.stderr.strip() == f"Error: {cli}", res.output


# ------------------------------------------------------------------ latency statistics

def test_summarize_statistics() -> None:
    s = latency_stats([float(v) for v in range(100, 0, -1)], batch_size=4, warmup=2)
    assert (s.median_ms, s.min_ms, s.max_ms, s.runs) == (50.5, 1.0, 100.0, 100)
    assert s.p90_ms == pytest.approx(90.1) and s.p99_ms == pytest.approx(99.01)
    assert s.mean_ms == 50.5 and s.std_ms == pytest.approx(29.011491975882016)
    assert s.throughput_ips == pytest.approx(4 * 1000 / 50.5)
    assert percentile([5.0], 99) == 5.0


def test_measure_interleaves_and_respects_budget() -> None:
    calls: list[str] = []

    def make(tag: str, ms: float):
        def run() -> float:
            calls.append(tag)
            return ms
        return run

    times = time_interleaved([make("a", 1.0), make("b", 2.0)], warmup=2, runs=3)
    assert calls == ["a", "a", "b", "b", "a", "b", "a", "b", "a", "b"]
    assert times == [[1.0] * 3, [2.0] * 3]
    calls.clear()
    times = time_interleaved([make("a", 1.0)], warmup=0, runs=1000, max_seconds=0.0, min_runs=4)
    assert len(times[0]) == 4


# ------------------------------------------------------------------ CLI

def test_cli_json_schema(runner) -> None:
    res = runner.invoke(app, ["profile", "resnet20", *FAST, "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["schema_version"] == "1.0" and data["kind"] == "ghostcli.profile"
    assert data["environment"]["torch"] == torch.__version__ and data["environment"]["fvcore"]
    c = data["conditions"]
    assert c["device"] == "cpu" and c["batch_sizes"] == [1] and c["threads"] == torch.get_num_threads()
    (m,) = data["models"]
    assert m["macs"] == 40_931_968 and m["flops"] == 2 * m["macs"] and m["params"] == 269_722
    lat = m["latency"][0]
    assert lat["runs"] == 3 and lat["warmup"] == 1 and 0 < lat["min_ms"] <= lat["median_ms"] <= lat["max_ms"]
    assert lat["throughput_ips"] == pytest.approx(1000 / lat["median_ms"])


def test_cli_comparison_table(runner) -> None:
    res = runner.invoke(app, ["profile", "resnet20", "resnet56", "--no-latency", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    (cmp,) = data["comparisons"]
    assert cmp["name"] == "resnet56" and cmp["reference"] == "resnet20"
    assert cmp["macs_ratio"] == pytest.approx(126_554_752 / 40_931_968) and cmp["latency_ratio"] is None
    res = runner.invoke(app, ["profile", "resnet20", "resnet56", "--no-latency"])
    assert "Comparison (ratios against resnet20" in res.stdout and "3.09x" in res.stdout
    assert "Conditions: device: cpu" in res.stdout


def test_cli_human_and_markdown(runner) -> None:
    res = runner.invoke(app, ["profile", "resnet20", *FAST, "--depth", "1", "--batch-size", "1,2"])
    assert res.exit_code == 0, res.output
    out = res.stdout
    for text in ("40.93 MMac", "269.72 k (269,722)", "MACs by operator", "Not counted", "pad x2", "Latency",
                 "Modules", "batch: 1,2", "warm-up 1, runs 3", "torch " + torch.__version__):
        assert text in out, text
    md = runner.invoke(app, ["profile", "resnet20", "--no-latency", "--markdown"]).stdout
    assert "| Metric | Value |" in md and "| MACs (fvcore total) | 40.93 MMac |" in md


@pytest.mark.parametrize(("args", "code", "text"), [
    (["--input-size", "3xax9"], 2, "input size"),
    (["--batch-size", "0"], 2, "batch size must be at least 1"),
    (["--batch-size", "1,x"], 2, "cannot read batch size"),
    (["--runs", "0"], 2, "--runs must be at least 1"),
    (["--device", "tpu"], 2, "unknown device 'tpu'"),
    (["--dtype", "int8"], 2, "unknown dtype"),
    (["--ov-precision", "f16"], 2, "only with --device openvino"),
    (["--input-size", "3x64x64"], 1, "at layer 'classifier' (Linear, input 1x2048)"),
])
def test_cli_bad_input_one_line(runner, args: list[str], code: int, text: str) -> None:
    model = "vgg16" if "3x64x64" in args else "resnet20"
    res = runner.invoke(app, ["profile", model, "--no-latency", *args])
    assert res.exit_code == code, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and text in lines[0]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_gpu_is_one_line_error(runner) -> None:
    res = runner.invoke(app, ["profile", "resnet20", "--device", "cuda"])
    assert res.exit_code == 1
    assert res.stderr.strip().splitlines() == [res.stderr.strip()] and "CUDA is not available" in res.stderr
    with pytest.raises(DeviceError):
        profile_models([resolve_model("resnet20")], options=ProfileOptions(device="cuda"))


class _LayoutProbe(nn.Module):
    """A conv whose forward tells ``record`` whether its input was NHWC.

    ``record`` (e.g. a test's ``seen.append``) is shared by the copies profile makes: deepcopy keeps functions.
    """

    def __init__(self, record: Callable[[bool], None]) -> None:
        super().__init__()
        self.record = record
        self.conv = nn.Conv2d(3, 8, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.record(x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous())
        return self.conv(x)


def test_channels_last_runs_models_and_inputs_nhwc(runner) -> None:
    seen: list[bool] = []
    probe = _LayoutProbe(seen.append)
    opts = ProfileOptions(input_size=(3, 16, 16), runs=3, warmup=1, memory=False, channels_last=True)
    report = profile_models([probe], options=opts)
    assert report.conditions.memory_format == "channels_last" and report.models[0].latency[0].runs == 3
    assert seen[-4:] == [True] * 4  # warm-up + timed runs, all in NHWC
    assert probe.conv.weight.is_contiguous()  # the caller's module is left as it was
    seen.clear()
    plain = profile_models([probe], options=ProfileOptions(input_size=(3, 16, 16), runs=3, warmup=1, memory=False))
    assert plain.conditions.memory_format == "contiguous" and seen[-4:] == [False] * 4
    res = runner.invoke(app, ["profile", "resnet20", *FAST, "--channels-last"])
    assert res.exit_code == 0, res.output
    assert "memory format: channels_last (NHWC)" in res.output
    res = runner.invoke(app, ["profile", "resnet20", "--device", "openvino", "--channels-last"])
    assert res.exit_code == 2 and "--channels-last applies to cpu and cuda" in res.output


def test_bfloat16_cpu(runner) -> None:
    res = runner.invoke(app, ["profile", "resnet20", *FAST, "--dtype", "bf16", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["conditions"]["dtype"] == "bfloat16"
    m = data["models"][0]
    assert m["macs"] == 40_931_968  # counted in float32, independent of dtype
    assert m["weight_bytes"] < 0.51 * 4 * m["params"] + 4096 and m["latency"][0]["runs"] == 3


def test_openvino_latency_reports_precision(runner) -> None:
    res = runner.invoke(app, ["profile", "resnet20", *FAST, "--device", "openvino", "--ov-precision", "f32",
                              "--threads", "1", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    c = data["conditions"]
    assert c["inference_precision"] == "f32" and c["performance_hint"] == "LATENCY" and c["threads"] == 1
    assert c["device_name"].startswith("OpenVINO CPU") and data["environment"]["openvino"]
    assert data["models"][0]["latency"][0]["median_ms"] > 0


def test_subprocess_entry_point(ghostcli_exe: str) -> None:
    proc = subprocess.run([ghostcli_exe, "profile", "resnet20", "--no-latency", "--json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["models"][0]["params"] == 269_722 and data["models"][0]["memory"][0]["peak_bytes"] > 0
    assert "Warning" not in proc.stderr and "TracerWarning" not in proc.stderr
    bad = subprocess.run([ghostcli_exe, "profile", "resnet20", "--runs", "0"], capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode == 2 and bad.stderr.startswith("Error: ") and bad.stderr.count("\n") == 1


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")
def test_cuda_profile(runner) -> None:
    res = runner.invoke(app, ["profile", "resnet20", "--device", "cuda", "--runs", "20", "--batch-size", "1,8",
                              "--dtype", "float16", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    c = data["conditions"]
    assert c["device"] == "cuda" and c["device_name"] == torch.cuda.get_device_name(0)
    m = data["models"][0]
    assert m["memory"][0]["method"].startswith("torch.cuda.max_memory_allocated")
    assert m["memory"][1]["peak_bytes"] > m["memory"][0]["peak_bytes"] >= m["weight_bytes"]
    assert all(s["median_ms"] > 0 for s in m["latency"]) and data["environment"]["gpu"]


def test_layer_times_attribute_nodes_to_modules() -> None:
    from ghostcli.analysis.layer_times import RUNTIME, attribute, module_of, units
    from ghostcli.convert import ghostify

    assert module_of("__module.layer1.0.conv3.primary_conv.0/aten::_convolution/Convolution,Multiply_1") == \
        "layer1.0.conv3.primary_conv.0"
    assert module_of("__module/aten::flatten/Reshape") == "" and module_of("Subtract_14095") is None
    g, _ = ghostify(_StemBodyNet(), input_size=(3, 8, 8))
    u = units(g)
    assert u == {"stem": "Conv2d", "body": "GhostModule", "act": "ReLU"}  # a Ghost module is one unit
    assert attribute("body.cheap_operation.0", u) == "body" and attribute("body", u) == "body"
    assert attribute("", u) == "(model)" and attribute(None, u) == RUNTIME and attribute("x.y", u) == "x.y"


class _StemBodyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.body = nn.Conv2d(8, 16, 3, padding=1)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(self.stem(x)))


def test_cli_layer_times_line_up_ghostified_layers(runner, tmp_path) -> None:
    ghost = tmp_path / "g.safetensors"
    assert runner.invoke(app, ["ghostify", "resnet20", "-o", str(ghost)]).exit_code == 0
    res = runner.invoke(app, ["profile", "resnet20", str(ghost), "--device", "openvino", "--ov-precision", "f32",
                              "--threads", "1", "--layer-times", *FAST, "--json"])
    assert res.exit_code == 0, res.output
    models = json.loads(res.stdout)["models"]
    base, g = (m["layer_times"] for m in models)
    kinds = {t["name"]: t["kind"] for t in g}
    assert {t["name"]: t["kind"] for t in base}["layer1.0.conv1"] == "Conv2d" and kinds["layer1.0.conv1"] == "GhostModule"
    assert not any("primary_conv" in t["name"] or "cheap_operation" in t["name"] for t in g)
    assert kinds["conv1"] == "Conv2d" and kinds["fc"] == "Linear"  # the stem and the head stay
    assert all(t["nodes"] >= 1 and math.isfinite(t["ms"]) and t["ms"] >= 0 for t in base + g)  # eltwise: 0 us
    assert all(t["ms"] > 0 for t in base + g if t["kind"] in ("Conv2d", "GhostModule"))
    by_name = {t["name"]: t for t in base}
    # a whole conv (BN and ReLU fused in) outlasts the shortcut's < 1 us pad and slice
    assert max(t["ms"] for t in base if t["kind"] == "Conv2d") > by_name["layer3.0"]["ms"]
    # the rows are milliseconds of one inference: together the order of its measured latency (a PERF_COUNT
    # copy run alone vs 3 interleaved timed runs on a busy machine: a wide bound, still 10x short of a unit slip)
    for m in models:
        rows, median = sum(t["ms"] for t in m["layer_times"]), m["latency"][0]["median_ms"]
        assert median / 100 < rows < 100 * median, (m["name"], rows, median)
    assert {t["name"] for t in base} <= {t["name"] for t in g} | {"(runtime)"}
    # the shortcut's slice and pad take < 1 us, which OpenVINO's counters often report as NOT_RUN: still counted
    assert {t["name"]: t["kind"] for t in base}["layer3.0"] == "Pad+Slice"
    ghost_nodes = {t["name"]: t["nodes"] for t in g}
    assert ghost_nodes["layer1.0.conv1"] >= 3  # primary conv, cheap conv, concat
    text = runner.invoke(app, ["profile", "resnet20", "--device", "openvino", "--layer-times", *FAST])
    assert text.exit_code == 0 and "Time per layer (OpenVINO CPU)" in text.output and "sum of the rows" in text.output


def test_cli_layer_times_in_pytorch_time_units_and_the_code_between_them(runner, tmp_path) -> None:
    ghost = tmp_path / "g.safetensors"
    assert runner.invoke(app, ["ghostify", "resnet20", "-o", str(ghost)]).exit_code == 0
    res = runner.invoke(app, ["profile", "resnet20", str(ghost), "--layer-times", "--channels-last", *FAST, "--json"])
    assert res.exit_code == 0, res.output
    models = json.loads(res.stdout)["models"]
    base, g = (m["layer_times"] for m in models)
    kinds = {t["name"]: t["kind"] for t in g}
    assert kinds["layer1.0.conv1"] == "GhostModule" and {t["name"]: t["kind"] for t in base}["layer1.0.conv1"] == "Conv2d"
    assert not any("primary_conv" in t["name"] for t in g)
    # residual adds, flatten and the hooks themselves run between the timed units: whole forward - units > 0
    assert base[-1]["name"] == g[-1]["name"] == "(outside layers)" and base[-1]["ms"] > 0 and g[-1]["ms"] > 0
    assert all(t["nodes"] >= 1 and t["ms"] > 0 for t in g[:-1] if t["kind"] == "GhostModule")  # nodes = calls
    for rows, unit in ((base, "Conv2d"), (g, "GhostModule")):  # a 3x3 conv at 32x32 outlasts a ReLU, typically 10x
        assert statistics.median(t["ms"] for t in rows if t["kind"] == unit) > \
            statistics.median(t["ms"] for t in rows if t["kind"] == "ReLU")
    text = runner.invoke(app, ["profile", "resnet20", "--layer-times", *FAST])
    assert text.exit_code == 0 and "Time per layer (PyTorch cpu)" in text.output and "forward hooks" in text.output


def test_conditions_say_when_threads_differ_from_what_was_asked_or_exceed_the_cpus() -> None:
    from ghostcli.analysis.report import Conditions, Environment
    from ghostcli.cli.profile_view import format_conditions

    env = Environment(ghostcli="0", python="3", platform="linux", cpu="cpu", cpu_count=2, torch="2",
                      torchvision="0", fvcore="0", openvino=None)

    def line(**kw: object) -> str:
        base: dict = dict(device="cpu", device_name="x", dtype="float32", threads=2, batch_sizes=[1], warmup=1, runs=3)
        return format_conditions(Conditions(**{**base, **kw}), env)

    assert "threads: 2;" in line(threads_requested=2, cpus=2)
    assert "threads: 2 (asked for 4; the process may use 2 CPUs);" in line(threads_requested=4, cpus=2)
    assert "threads: 4 (more than the 2 CPUs the process may use: they share them);" in line(threads=4, cpus=2)


def test_comparison_table_shows_median_and_p90_from_the_same_report(capsys) -> None:
    from ghostcli.cli.profile_view import print_report
    from ghostcli.units import format_ms

    report = profile_models([resolve_model("resnet20"), resolve_model("resnet56")],
                            options=ProfileOptions(runs=3, warmup=1))
    capsys.readouterr()
    print_report(report, markdown=True)
    lines = capsys.readouterr().out.splitlines()
    header = next(line for line in lines if line.startswith("| Model"))
    cols = [c.strip() for c in header.split("|")[1:-1]]
    assert cols[-3:] == ["Median", "p90", "Speed-up"]
    for p in report.models:
        row = next(line for line in lines if line.startswith(f"| {p.name} "))
        cells = dict(zip(cols, (c.strip() for c in row.split("|")[1:-1])))
        assert (cells["Median"], cells["p90"]) == (format_ms(p.latency[0].median_ms), format_ms(p.latency[0].p90_ms))
