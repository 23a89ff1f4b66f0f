"""The G-Ghost RegNet zoo family: the official structure and layer names, and the readme's params/MACs."""

from __future__ import annotations

import json

import pytest
import torch

from ghostcli.analysis.macs import count_macs
from ghostcli.cli.app import app
from ghostcli.layers import ChannelSlice, GGhostStage
from ghostcli.models import build_model, get_model_spec, list_models
from ghostcli.models.g_ghost_regnet import Bottleneck, GGhostRegNet

NAMES = [f"g_ghost_regnetx_{s}" for s in ("002", "004", "006", "008", "016", "032", "040", "064", "080", "120", "160",
                                          "320")]
# The official readme (g_ghost_pytorch/readme.md): params (M), MACs (G, its "FLOPs"), top-1.
README = {"g_ghost_regnetx_032": (10.5, 1.8, 77.8), "g_ghost_regnetx_040": (15.7, 2.2, 78.6),
          "g_ghost_regnetx_080": (24.6, 4.2, 79.0), "g_ghost_regnetx_160": (32.4, 9.0, 79.9)}
# Measured here; the official g_ghost_regnet.py builds the same parameter tensors (same names, same shapes).
PARAMS = {"g_ghost_regnetx_002": 1_825_440, "g_ghost_regnetx_004": 2_884_456, "g_ghost_regnetx_006": 4_029_776,
          "g_ghost_regnetx_008": 5_248_328, "g_ghost_regnetx_016": 7_109_660, "g_ghost_regnetx_032": 10_511_000,
          "g_ghost_regnetx_040": 15_726_268, "g_ghost_regnetx_064": 17_993_748, "g_ghost_regnetx_080": 24_586_928,
          "g_ghost_regnetx_120": 30_627_208, "g_ghost_regnetx_160": 32_381_704, "g_ghost_regnetx_320": 62_815_448}
# fvcore at 1x3x224x224: (total: conv + linear + BN + pooling, conv + linear only).
MACS = {"g_ghost_regnetx_032": (1_820_253_904, 1_801_746_240), "g_ghost_regnetx_040": (2_248_569_132, 2_228_368_516),
        "g_ghost_regnetx_080": (4_172_095_792, 4_149_668_216), "g_ghost_regnetx_160": (9_038_582_016, 8_997_384_192)}


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_the_family_is_registered_with_the_readme_numbers() -> None:
    specs = list_models("g_ghost*")
    assert [s.name for s in specs] == NAMES
    assert {s.family for s in specs} == {"g-ghost-regnet"}
    for spec in specs:
        assert spec.input_size == (3, 224, 224) and spec.num_classes == 1000
        assert spec.options() == ["num_classes", "in_chans"]
        if spec.name in README:
            params, macs, top1 = README[spec.name]
            assert spec.paper == pytest.approx({"params": params * 1e6, "macs": macs * 1e9, "top1": top1}, rel=1e-12)
        else:
            assert spec.paper == {}


def test_parameter_counts() -> None:
    with torch.device("meta"):  # shapes only: no memory, no initialisation
        counts = {name: n_params(build_model(name)) for name in NAMES}
    assert counts == PARAMS
    for name, (params, _, _) in README.items():
        assert abs(counts[name] / 1e6 - params) <= 0.05, name  # the readme's one decimal


@pytest.mark.parametrize("name", sorted(README))
def test_macs_at_224(name: str) -> None:
    """fvcore's total (BN and pooling included) rounds to the readme's number for all four. Conv + linear alone
    (the GhostNet tables' convention) is 4.1497 G for g_ghost_regnetx_080, which rounds to 4.1, not 4.2."""
    counted = count_macs(build_model(name).eval(), torch.randn(1, 3, 224, 224))
    assert (counted.total, counted.conv_linear) == MACS[name]
    published = README[name][1]
    assert round(counted.total / 1e9, 1) == published
    assert abs(counted.conv_linear / 1e9 - published) <= 0.051
    assert counted.uncounted.keys() <= {"relu_", "add"}  # nothing but ReLUs and residual sums goes uncounted


def _block(prefix: str, projection: bool) -> list[str]:
    """The official state_dict keys of one ``Bottleneck``."""
    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    keys = [f"{prefix}.conv{i}.weight" for i in (1, 2, 3)] + [f"{prefix}.bn{i}.{k}" for i in (1, 2, 3) for k in bn]
    if projection:
        keys += [f"{prefix}.downsample.0.weight"] + [f"{prefix}.downsample.1.{k}" for k in bn]
    return keys


def _official_keys_002() -> set[str]:
    """g_ghost_regnetx_002, depths (1, 1, 4, 7): plain layer1/layer2, G-Ghost layer3 (2 middle blocks) and layer4 (5)."""
    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    keys = ["conv1.weight", *(f"bn1.{k}" for k in bn), "fc.weight", "fc.bias"]
    keys += _block("layer1.0", True) + _block("layer2.0", True)
    for stage, middle in (("layer3", 2), ("layer4", 5)):
        keys += _block(f"{stage}.base", True) + _block(f"{stage}.end", False)
        for i in range(middle):
            keys += _block(f"{stage}.layers.{i}", False)  # the first one's shortcut is a parameter-free slice
        keys += [f"{stage}.merge.1.weight", f"{stage}.merge.4.weight", f"{stage}.cheap.0.weight"]
        keys += [f"{stage}.{m}.{k}" for m in ("merge.2", "merge.5", "cheap.1") for k in bn]
    return set(keys)


def test_official_state_dict_keys_and_stage_attributes() -> None:
    model = build_model("g_ghost_regnetx_002")
    assert isinstance(model, GGhostRegNet)
    state = model.state_dict()
    assert set(state) == _official_keys_002()
    assert isinstance(model.layer1, torch.nn.Sequential) and isinstance(model.layer2, torch.nn.Sequential)
    assert isinstance(model.layer1[0], Bottleneck)
    for name in ("layer3", "layer4"):
        stage = getattr(model, name)
        assert isinstance(stage, GGhostStage)
        for attr in ("base", "end", "merge", "cheap", "cheap_relu", "layers"):
            assert hasattr(stage, attr), (name, attr)
        first = stage.layers[0]
        assert isinstance(first.downsample, torch.nn.Sequential) and isinstance(first.downsample[0], ChannelSlice)
    # layer3: 152 channels, group width 8; the middle blocks use int(8 * 0.75) = 6: raw int(76 / 6) * 6 = 72
    assert isinstance(model.layer3, GGhostStage) and (model.layer3.raw_planes, model.layer3.cheap_planes) == (72, 80)
    assert state["layer3.base.conv2.weight"].shape == (152, 8, 3, 3)  # 19 groups of 8
    assert state["layer3.layers.0.conv2.weight"].shape == (72, 6, 3, 3)  # 12 groups of 6
    assert state["layer3.merge.1.weight"].shape == (80, 152 + 2 * 72, 1, 1)
    assert state["layer3.cheap.0.weight"].shape == (80, 80, 1, 1)
    assert state["layer4.merge.1.weight"].shape == (188, 368 + 5 * 180, 1, 1)
    assert state["conv1.weight"].shape == (32, 3, 3, 3) and state["fc.weight"].shape == (1000, 368)
    assert isinstance(model.dropout, torch.nn.Dropout) and model.dropout.p == 0.2


def test_long_second_and_fourth_stages_are_g_ghost_stages() -> None:
    with torch.device("meta"):
        m004, m016 = build_model("g_ghost_regnetx_004"), build_model("g_ghost_regnetx_016")
    # 004: depths (1, 2, 7, 12) -> layer2 plain (2 blocks), layer4 G-Ghost; 016: (2, 4, 10, 2) -> the reverse
    assert isinstance(m004.layer2, torch.nn.Sequential) and isinstance(m004.layer4, GGhostStage)
    assert isinstance(m016.layer2, GGhostStage) and isinstance(m016.layer4, torch.nn.Sequential)
    assert len(m004.layer4.layers) == 10 and len(m016.layer2.layers) == 2


def test_official_checkpoint_loads_strictly_and_the_forward_is_deterministic() -> None:
    torch.manual_seed(0)
    model = build_model("g_ghost_regnetx_002", num_classes=7).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        y = model(x)
    assert y.shape == (2, 7) and torch.isfinite(y).all()
    other = build_model("g_ghost_regnetx_002", num_classes=7).eval()
    other.load_state_dict(model.state_dict(), strict=True)
    with torch.inference_mode():
        assert torch.equal(other(x), y)


def test_options_and_bad_shapes() -> None:
    model = build_model("g_ghost_regnetx_004", num_classes=10, in_chans=1).eval()
    with torch.inference_mode():
        assert model(torch.randn(1, 1, 64, 64)).shape == (1, 10)
    with pytest.raises(ValueError, match="third stage is a G-Ghost stage"):
        GGhostRegNet((1, 1, 2, 1), (8, 16, 32, 64), group_width=8)
    with pytest.raises(ValueError, match="no group width"):
        GGhostRegNet((1, 1, 3, 1), (8, 16, 32, 64), group_width=1)


def test_list_shows_the_family_with_the_readme_numbers(runner) -> None:
    result = runner.invoke(app, ["list", "g_ghost"])
    assert result.exit_code == 0, result.output
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:-1]]
            for line in result.stdout.splitlines() if line.startswith("│")}
    assert sorted(rows) == NAMES
    assert rows["g_ghost_regnetx_032"][2:5] == ["10.50M", "1.8G", "77.8"]
    assert rows["g_ghost_regnetx_040"][2:5] == ["15.70M", "2.2G", "78.6"]
    assert rows["g_ghost_regnetx_080"][2:5] == ["24.60M", "4.2G", "79.0"]
    assert rows["g_ghost_regnetx_160"][2:5] == ["32.40M", "9.0G", "79.9"]
    assert rows["g_ghost_regnetx_002"][2:5] == ["-", "-", "-"]
    data = json.loads(runner.invoke(app, ["list", "g_ghost_regnetx_16*", "--json"]).stdout)
    assert [m["name"] for m in data["zoo"]] == ["g_ghost_regnetx_160"]
    assert data["zoo"][0]["family"] == "g-ghost-regnet"
    assert data["zoo"][0]["paper"] == {"params": 32.4e6, "macs": 9.0e9, "top1": 79.9}


def test_spec_lookup() -> None:
    assert get_model_spec("g_ghost_regnetx_032").description == "G-Ghost RegNetX-3.2GF for ImageNet (Han et al., IJCV 2022)"
