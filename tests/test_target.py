"""ghostify --target: the decision logic on fake timings (deterministic), the engine with a fake timing source."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ghostcli.artifacts import Recipe, save_artifact
from ghostcli.errors import DeviceError, UsageError
from ghostcli.fx import residual_feeders
from ghostcli.layers import GhostModule
from ghostcli.models import build_model
from ghostcli.resolve import resolve_model
from ghostcli.target import (
    BudgetUnreachable,
    Candidate,
    TargetOptions,
    check_available,
    decide,
    decide_for_budget,
    ghostify_for_target,
    parse_target,
)
from ghostcli.target.decide import charge_unfused
from ghostcli.target.spec import TARGETS

pytestmark = pytest.mark.usefixtures("one_thread")  # one core each: the suite runs on 2 shared cores


def cand(name: str, dense: float, ghost: dict[int, float], macs: int = 100) -> Candidate:
    return Candidate(name, {1: dense, **ghost}, {1: macs, **{s: macs // s for s in ghost}})


# ------------------------------------------------------------------------------------------ decide


def test_a_slower_ghost_layer_is_kept_with_the_measured_reason():
    plan = decide([cand("a", 1.0, {2: 0.6}), cand("b", 0.31, {2: 0.36})], target="openvino-int8",
                  total_ms=5.0, total_macs=1000)
    by = {d.name: d for d in plan.decisions}
    assert by["a"].ratio == 2 and by["a"].reason == "ghost s=2: 1.000 ms -> 0.600 ms on openvino-int8"
    assert by["b"].ratio == 1
    assert by["b"].reason == "kept: slower on openvino-int8 (0.310 ms -> 0.360 ms at s=2)"
    assert plan.predicted_ms == pytest.approx(4.6) and plan.predicted_macs == 1000 - 50


def test_a_tie_keeps_the_dense_conv():
    plan = decide([cand("a", 1.0, {2: 1.0})], target="cpu", total_ms=1.0, total_macs=100)
    assert plan.ratios() == {"a": 1}


def test_the_macs_floor_takes_back_the_cheapest_compression_first():
    # a at s=4 is fastest but compresses more than the floor allows; going back to s=2 on a costs
    # 0.05 ms for 25 MACs, on b 0.3 ms for 25 MACs: a goes back
    cands = [cand("a", 1.0, {2: 0.55, 4: 0.5}), cand("b", 1.0, {2: 0.5, 4: 0.2})]
    free = decide(cands, target="cpu", total_ms=2.0, total_macs=200)
    assert free.ratios() == {"a": 4, "b": 4} and free.predicted_macs == 200 - 75 - 75
    floor = decide(cands, target="cpu", total_ms=2.0, total_macs=200, macs_floor=200 - 50 - 75)
    assert floor.ratios() == {"a": 2, "b": 4} and floor.predicted_macs == 75
    assert floor.predicted_ms == pytest.approx(0.75)


def test_latency_budget_stops_as_soon_as_it_holds():
    # time saved per MAC removed: c 0.9/50, a 0.5/50, b 0.1/50 -> c first, then a, then b
    cands = [cand("a", 1.0, {2: 0.5}), cand("b", 1.0, {2: 0.9}), cand("c", 1.0, {2: 0.1})]

    def plan(ms):
        return decide_for_budget(cands, target="cpu", total_ms=3.0, total_macs=300, latency_ms=ms)

    assert plan(2.1).ratios() == {"a": 1, "b": 1, "c": 2}  # 3.0 -> 2.1 meets it at once
    assert plan(2.0).ratios() == {"a": 2, "b": 1, "c": 2} and plan(2.0).predicted_ms == pytest.approx(1.6)
    assert plan(1.5).ratios() == {"a": 2, "b": 2, "c": 2} and plan(1.5).predicted_macs == 150
    assert plan(3.0).ratios() == {"a": 1, "b": 1, "c": 1}


def test_macs_budget_picks_the_best_time_per_mac_and_may_use_larger_ratios():
    cands = [cand("a", 1.0, {2: 0.5, 4: 0.45}), cand("b", 1.0, {2: 0.95, 4: 0.9})]
    plan = decide_for_budget(cands, target="cpu", total_ms=2.0, total_macs=200, macs=130)
    # a -> 2 (0.5 ms / 50 MACs), then a 2 -> 4 (0.05 / 25) beats b -> 2 (0.05 / 50): 125 MACs meet 130
    assert plan.ratios() == {"a": 4, "b": 1} and plan.predicted_macs == 125
    assert plan.predicted_ms == pytest.approx(1.45)
    deeper = decide_for_budget(cands, target="cpu", total_ms=2.0, total_macs=200, macs=60)
    assert deeper.ratios() == {"a": 4, "b": 4} and deeper.predicted_macs == 50


def test_an_unreachable_budget_says_the_best_reachable_value():
    cands = [cand("a", 1.0, {2: 0.5}), cand("b", 1.0, {2: 1.2})]  # b never saves time
    with pytest.raises(BudgetUnreachable, match=r"best reachable is 1\.50 ms \(0\.75x of 2\.00 ms\)"):
        decide_for_budget(cands, target="cpu", total_ms=2.0, total_macs=200, latency_ms=1.0)
    with pytest.raises(BudgetUnreachable, match=r"fewest reachable are 1e-07 GMac"):
        decide_for_budget(cands, target="cpu", total_ms=2.0, total_macs=200, macs=50)


def test_unfused_add_time_is_charged_to_the_converted_feeders():
    extra = charge_unfused({"layer1.0": 0.3, "layer1.1": 0.1}, {"layer1.0": 0.1},
                           {"layer1.0": ["layer1.0.conv3", "layer1.0.downsample.0"], "layer1.1": ["layer1.1.conv3"]},
                           ["layer1.0.conv3", "layer1.0.downsample.0", "layer1.1.conv3"])
    assert extra == pytest.approx({"layer1.0.conv3": 0.1, "layer1.0.downsample.0": 0.1, "layer1.1.conv3": 0.1})


def test_residual_feeders_of_a_resnet():
    import torchvision

    feeders = residual_feeders(torchvision.models.resnet18())
    assert feeders["layer1.0"] == ["layer1.0.conv2"]
    assert feeders["layer2.0"] == ["layer2.0.conv2", "layer2.0.downsample.0"]
    assert len(feeders) == 8


# ------------------------------------------------------------------------------------------ targets


def test_target_names_and_availability():
    assert parse_target("OpenVINO-INT8") is TARGETS["openvino-int8"]
    with pytest.raises(UsageError, match=r"unknown `target` 'openvino-in8' \(did you mean openvino-int8"):
        parse_target("openvino-in8")
    with pytest.raises(DeviceError, match="AVX512-BF16 or AMX"):
        check_available(TARGETS["openvino-bf16"], isa=["AVX2", "AVX-512"])
    check_available(TARGETS["openvino-bf16"], isa=["AVX2", "AMX-BF16"])
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="needs an NVIDIA GPU"):
            check_available(TARGETS["cuda"])


@pytest.mark.parametrize("kwargs, match", [
    ({"threads": 0}, "`threads` must be a positive integer"),
    ({"latency_budget": 1.5}, r"`latency_budget` must be a fraction"),
    ({"macs_budget": 0}, "`macs_budget` must be positive"),
    ({"verify_runs": 1}, "`verify_runs` must be at least 3"),
    ({"dw_kernels": (2,)}, "`dw_kernels` must be positive odd integers"),
])
def test_impossible_target_options(kwargs, match):
    with pytest.raises(UsageError, match=match):
        TargetOptions("cpu", **kwargs)


# ------------------------------------------------------------------------------------------ engine


class FakeTiming:
    """Per-layer time: a dense conv costs 1 ms, a Ghost module ``ghost_ms(name, s)``; whole model = the sum."""

    target = TARGETS["cpu"]

    def __init__(self, ghost_ms, whole_bias=None):
        self.ghost_ms = ghost_ms
        self.whole_bias = whole_bias or {}  # id(model) -> ms added to whole-model time
        self.compared: list[list[nn.Module]] = []

    def rows(self, model):
        out = {}
        for name, m in model.named_modules():
            if isinstance(m, GhostModule):
                out[name] = self.ghost_ms(name, m.ratio)
            elif isinstance(m, nn.Conv2d) and ".primary" not in name and ".cheap" not in name:
                out[name] = 1.0
        return out

    def layer_times(self, models, progress=None):
        return [self.rows(m) for m in models]

    def compare(self, models, *, runs, warmup, progress=None):
        self.compared.append(list(models))
        return [[sum(self.rows(m).values()) + self.whole_bias.get(i, 0.0) + 0.001 * (r % 2) for r in range(runs)]
                for i, m in enumerate(models)]

    def conditions(self):
        return "fake timings"


def _ghost_layer1_slow(name: str, s: int) -> float:
    return 1.5 if name.startswith("layer1.") else 1.0 / s + 0.1


def test_engine_keeps_slow_layers_and_the_recipe_rebuilds_bit_exactly(tmp_path):
    torch.manual_seed(0)
    model = build_model("resnet20").eval()
    fake = FakeTiming(_ghost_layer1_slow)
    gm, report, tr = ghostify_for_target(model, target=TargetOptions("cpu", verify_runs=5, ratios=(2,)), input_size=(3, 32, 32),
                                         timing=fake)
    kept = {d["name"] for d in tr.decisions if d["ratio"] == 1}
    converted = {d["name"]: d["ratio"] for d in tr.decisions if d["ratio"] != 1}
    assert kept == {n for n in kept if n.startswith("layer1.")} and len(kept) == 6
    assert all(n.startswith(("layer2.", "layer3.")) for n in converted)
    assert all(d["reason"].startswith("kept: slower on cpu (1.000 ms -> 1.500 ms") for d in tr.decisions
               if d["ratio"] == 1)
    # s=2 is the floor of compression: 4 would be faster but compresses more than ratio 2 asks
    assert report.macs_after >= tr.measured[1].macs
    assert tr.chosen == "target" and tr.measured[2].median_ms < tr.measured[1].median_ms
    assert {r.name for r in report.rows if r.action == "ghost"} == set(converted)
    assert isinstance(gm.layer1[0].conv1, nn.Conv2d) and isinstance(gm.layer2[0].conv1, GhostModule)
    assert report.options["include"] == sorted(converted) or set(report.options["include"]) == set(converted)

    recipe = Recipe(source="zoo:resnet20", options={}, ghostify=report.options, input_size=[3, 32, 32])
    path = save_artifact(gm, tmp_path / "t.safetensors", recipe)
    rebuilt = resolve_model(str(path)).model
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), gm(x))
    assert [n for n, _ in rebuilt.named_modules()] == [n for n, _ in gm.named_modules()]


class FakeKernelTiming(FakeTiming):
    """As FakeTiming, and a Ghost module with cheap kernel d costs ``per_kernel[d]``."""

    def __init__(self, per_kernel):
        super().__init__(lambda name, s: 0.0)
        self.per_kernel = per_kernel

    def rows(self, model):
        out = super().rows(model)
        for name, m in model.named_modules():
            if isinstance(m, GhostModule):
                out[name] = self.per_kernel[m.dw_kernel]
        return out


@pytest.mark.parametrize("per_kernel, expected", [({3: 0.6, 1: 0.4}, 1), ({3: 0.4, 1: 0.6}, 3)])
def test_engine_keeps_the_cheap_kernel_that_runs_faster_and_the_recipe_rebuilds_it(tmp_path, per_kernel, expected):
    model = build_model("resnet20").eval()
    fake = FakeKernelTiming(per_kernel)
    gm, report, tr = ghostify_for_target(model, target=TargetOptions("cpu", verify_runs=5, ratios=(2,), dw_kernels=(1,)),
                                         input_size=(3, 32, 32), timing=fake)
    other = 4 - expected  # the kernel not kept: 1 <-> 3
    assert tr.chosen == "target" and tr.dw_kernel == expected and report.options["dw_kernel"] == expected
    assert [m.name for m in tr.measured] == ["original", "paper", "target", f"target, d={other}"]
    assert tr.measured[2].median_ms < tr.measured[3].median_ms
    ghosts = [m for m in gm.modules() if isinstance(m, GhostModule)]
    assert len(ghosts) == 18 and {m.dw_kernel for m in ghosts} == {expected}
    assert report.macs_after == tr.measured[2].macs
    assert tr.recipe_summary()["dw_kernel"] == expected
    _assert_rebuilds(gm, report, tmp_path)


def test_engine_falls_back_to_the_paper_ghostify_when_the_choice_measures_slower():
    model = build_model("resnet20").eval()
    fake = FakeTiming(_ghost_layer1_slow, whole_bias={2: 50.0})  # the chosen model is slow as a whole
    gm, report, tr = ghostify_for_target(model, target=TargetOptions("cpu", verify_runs=5, ratios=(2,)), input_size=(3, 32, 32),
                                         timing=fake)
    assert tr.chosen == "paper" and "slower than the paper" in tr.notes[0]
    assert report.replaced == 18 and all(isinstance(m, GhostModule) for m in (gm.layer1[0].conv1, gm.layer3[2].conv2))


def test_engine_returns_the_original_when_nothing_pays_back():
    model = build_model("resnet20").eval()
    fake = FakeTiming(lambda name, s: 2.0)
    gm, report, tr = ghostify_for_target(model, target=TargetOptions("cpu", verify_runs=5, ratios=(2,)), input_size=(3, 32, 32),
                                         timing=fake)
    assert report.replaced == 0 and tr.chosen in ("target", "original")
    assert report.options["exclude"] == ["*"]
    assert not any(isinstance(m, GhostModule) for m in gm.modules())


def test_engine_latency_budget_and_its_unreachable_error():
    model = build_model("resnet20").eval()
    fake = FakeTiming(_ghost_layer1_slow)
    _, report, tr = ghostify_for_target(model, target=TargetOptions("cpu", latency_budget=0.9, verify_runs=5, ratios=(2,)),
                                        input_size=(3, 32, 32), timing=fake)
    assert tr.predicted_ms <= 0.9 * tr.original_layers_ms
    assert report.replaced < 12  # stops as soon as the budget holds
    with pytest.raises(BudgetUnreachable, match="best reachable"):
        ghostify_for_target(model, target=TargetOptions("cpu", latency_budget=0.1, verify_runs=5, ratios=(2,)),
                            input_size=(3, 32, 32), timing=fake)


def test_a_macs_budget_mixes_ratios_and_the_recipe_rebuilds_them(tmp_path):
    model = build_model("resnet20").eval()
    fake = FakeTiming(lambda name, s: 0.5 if s == 4 and name.startswith("layer3.") else 0.9 - 0.05 * s)
    gm, report, tr = ghostify_for_target(model, target=TargetOptions("cpu", macs_budget=20_000_000, verify_runs=5,
                                                                     ratios=(2, 4), mode="conv"),
                                         input_size=(3, 32, 32), timing=fake)
    ratios = {d["ratio"] for d in tr.decisions}
    assert report.macs_after <= 20_000_000 and 4 in ratios and report.options["layer_ratios"]
    assert all(isinstance(gm.get_submodule(n), GhostModule) and gm.get_submodule(n).ratio == r
               for n, r in report.options["layer_ratios"].items())
    _assert_rebuilds(gm, report, tmp_path)


# ------------------------------------------------------------------------------------------ CLI


def test_cli_target_cpu_saves_the_choice_and_rebuilds(runner, tmp_path):
    import json

    from ghostcli.artifacts import read_recipe
    from ghostcli.cli.app import app

    from conftest import randomize_bn

    out = tmp_path / "t.safetensors"
    res = runner.invoke(app, ["ghostify", "resnet20", "--target", "cpu", "--threads", "1", "-o", str(out), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    tr = data["target"]
    from ghostcli.analysis.env import cpu_name

    assert tr["target"] == "cpu" and "1 threads" in tr["conditions"] and cpu_name() in tr["conditions"]
    # without --dw-kernel both cheap kernels are measured: the faster is "target", the other "target, d=K"
    assert tr["dw_kernel"] in (1, 3) and data["options"]["dw_kernel"] == tr["dw_kernel"]
    names = [m["name"] for m in tr["measured"]]
    assert names[:3] == ["original", "paper", "target"] and names[3:] in (["target, d=1"], ["target, d=3"])
    assert len(tr["decisions"]) == 18 and tr["runs"] == 30
    converted = sorted(d["name"] for d in tr["decisions"] if d["ratio"] != 1)
    assert data["replaced"] == {"target": len(converted), "paper": 18, "original": 0}[tr["chosen"]]
    recipe = read_recipe(out)
    assert recipe.extra["target"]["target"] == "cpu"
    assert set(recipe.extra["target"]["decisions"]) == {d["name"] for d in tr["decisions"]}
    assert recipe.ghostify == data["options"]
    from ghostcli.resolve import resolve_model

    model = resolve_model(str(out)).model
    randomize_bn(model)
    again = resolve_model(str(out)).model
    again.load_state_dict(model.state_dict())
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), again(x))


def test_cli_target_with_a_given_dw_kernel_measures_only_that_kernel(runner):
    import json

    from ghostcli.cli.app import app

    res = runner.invoke(app, ["ghostify", "resnet20", "--target", "cpu", "--threads", "1", "-d", "3", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert [m["name"] for m in data["target"]["measured"]] == ["original", "paper", "target"]
    assert data["target"]["dw_kernel"] == 3 and data["options"]["dw_kernel"] == 3


def test_cli_target_bad_input(tmp_path):
    from bad_input import run_bad

    run_bad(["ghostify", "resnet20", "--threads", "2"], tmp_path, code=2, match="--threads only apply with --target")
    run_bad(["ghostify", "resnet20", "--target", "openvino-in8"], tmp_path, code=2,
            match="unknown --target 'openvino-in8' (did you mean openvino-int8")
    run_bad(["ghostify", "resnet20", "--target", "cpu", "--latency-budget", "1.5x"], tmp_path, code=2,
            match="--latency-budget must be a fraction")
    run_bad(["ghostify", "resnet20", "--target", "cpu", "--latency-budget", "fast"], tmp_path, code=2,
            match="cannot read 'fast' as a factor")


class FakeStageTiming(FakeTiming):
    """As FakeTiming, and every conv inside a G-Ghost stage costs ``stage_ms``."""

    def __init__(self, ghost_ms, stage_ms):
        super().__init__(ghost_ms)
        self.stage_ms = stage_ms

    def rows(self, model):
        from ghostcli.layers import GGhostStage

        stages = tuple(n + "." for n, m in model.named_modules() if isinstance(m, GGhostStage))
        rows = super().rows(model)
        return {n: (self.stage_ms if n.startswith(stages) else v) for n, v in rows.items()}


def _assert_rebuilds(model, report, folder):
    """The artifact's recipe rebuilds the same network: same modules, bit-identical outputs."""
    from conftest import randomize_bn

    randomize_bn(model)
    recipe = Recipe(source="zoo:resnet20", options={}, ghostify=report.options, input_size=[3, 32, 32])
    rebuilt = resolve_model(str(save_artifact(model, folder / "a.safetensors", recipe, force=True))).model
    assert [n for n, _ in rebuilt.named_modules()] == [n for n, _ in model.named_modules()]
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(rebuilt.eval()(x), model.eval()(x))


def test_auto_mode_takes_a_g_ghost_stage_where_it_measures_fastest(tmp_path):
    from ghostcli.layers import GGhostStage

    model = build_model("resnet20").eval()
    # C-Ghost: layer1 slower, others 0.6 ms; G-Ghost stage convs 0.1 ms each: every stage goes G-Ghost
    fake = FakeStageTiming(_ghost_layer1_slow, stage_ms=0.1)
    gm, report, tr = ghostify_for_target(model, target=TargetOptions("cpu", verify_runs=5, ratios=(2,)),
                                         input_size=(3, 32, 32), timing=fake)
    assert [s["choice"] for s in tr.stages] == ["g-ghost"] * 3
    assert report.options["stages"] == ["layer1", "layer2", "layer3"] and report.replaced == 0
    assert all(isinstance(getattr(gm, n), GGhostStage) for n in ("layer1", "layer2", "layer3"))
    assert all(d["reason"].startswith("in G-Ghost stage") for d in tr.decisions)
    _assert_rebuilds(gm, report, tmp_path)
    # G-Ghost convs cost 5 ms each: C-Ghost where it pays (layer2, layer3), layer1 dense
    slow = FakeStageTiming(_ghost_layer1_slow, stage_ms=5.0)
    gm, report, tr = ghostify_for_target(model, target=TargetOptions("cpu", verify_runs=5, ratios=(2,)),
                                         input_size=(3, 32, 32), timing=slow)
    assert [s["choice"] for s in tr.stages] == ["dense", "c-ghost", "c-ghost"]
    assert report.options["stages"] == [] and report.replaced == 12
    assert not any(isinstance(m, GGhostStage) for m in gm.modules())


def test_cli_mode_stage_and_its_errors(runner, tmp_path):
    import json

    from ghostcli.cli.app import app

    from bad_input import run_bad

    res = runner.invoke(app, ["ghostify", "resnet20", "--mode", "stage", "--exclude", "layer1", "--cheap-ratio",
                              "0.25", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert [s["name"] for s in data["stages"]] == ["layer2", "layer3"] and data["replaced"] == 0
    assert data["options"]["cheap_ratio"] == 0.25 and data["macs_after"] < data["macs_before"]
    run_bad(["ghostify", "resnet20", "--mode", "auto"], tmp_path, code=2, match="--mode auto")
    run_bad(["ghostify", "resnet20", "--mode", "stages"], tmp_path, code=2, match="--mode must be conv, stage or auto")
    run_bad(["ghostify", "resnet20", "--mode", "stage", "--module", "v2"], tmp_path, code=2,
            match=["--module v2", "--mode stage", "not both"])
    run_bad(["ghostify", "vgg16", "--mode", "stage"], tmp_path, code=1, match="no stage of 3 or more residual blocks")
