"""G-Ghost stages inside ghostify: eligibility, exact first/last blocks, narrowed middle blocks, per-layer
ratios, MACs, and bit-exact rebuilds from a saved recipe. Random weights, small inputs, eval mode."""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import math

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models import resnet

from ghostcli.convert import GhostifyOptions, eligible_stages, ghostify, stage_candidates, to_g_ghost_stage
from ghostcli.errors import ConversionError, UsageError
from ghostcli.layers import GGhostStage, GhostModule

from conftest import randomize_bn

pytestmark = pytest.mark.usefixtures("one_thread")  # one core each: the suite runs on 2 shared cores


@functools.cache
def tv(name: str) -> nn.Module:
    """A torchvision model with random weights and BN statistics (built once: tests only read it)."""
    if name == "basic_resnet":  # resnet18's stages have 2 blocks, too few for G-Ghost
        return randomize_bn(resnet.ResNet(resnet.BasicBlock, [1, 3, 1, 1], num_classes=10)).eval()
    return randomize_bn(torchvision.models.get_model(name, weights=None, num_classes=10)).eval()


@pytest.fixture
def resnext() -> nn.Module:
    return tv("resnext50_32x4d")


@pytest.fixture
def regnet_y() -> nn.Module:
    return tv("regnet_y_400mf")


def test_candidates_say_which_stages_can_be_rebuilt_and_why_not() -> None:
    assert stage_candidates(tv("resnet18")) == {f"layer{i}": "2 blocks; a G-Ghost stage needs at least 3"
                                                for i in range(1, 5)}
    regnet = stage_candidates(tv("regnet_x_400mf"))
    assert regnet == {"trunk_output.block1": "1 block; a G-Ghost stage needs at least 3",
                      "trunk_output.block2": "2 blocks; a G-Ghost stage needs at least 3",
                      "trunk_output.block3": None, "trunk_output.block4": None}
    assert eligible_stages(tv("basic_resnet")) == ["layer2"]


@pytest.mark.parametrize("name, stage, planes, raw, widths, kept", [
    ("basic_resnet", "layer2", 128, 64, [128, 128, 128], [64, 64, 64]),  # dense: units of 8 channels
    ("resnext50_32x4d", "layer1", 256, 128, [256, 128, 128, 256], [128, 64, 64, 128]),  # 16 of 32 groups
    ("regnet_x_400mf", "trunk_output.block4", 400, 192, [400] * 4, [192] * 4),  # 12 of 25 groups of 16
    ("regnet_y_400mf", "trunk_output.block2", 104, 48, [104] * 4, [48] * 4),  # with squeeze-excitation
])
def test_every_family_keeps_the_output_shape(name, stage, planes, raw, widths, kept) -> None:
    model = tv(name)
    x = torch.randn(2, 3, 32, 32)
    g, rep = ghostify(model, stages=[stage], exclude=["*"], input_size=(3, 32, 32), count_macs=False)
    with torch.inference_mode():
        assert g(x).shape == model(x).shape == (2, 10)
    new = g.get_submodule(stage)
    assert isinstance(new, GGhostStage) and (new.raw_planes, new.cheap_planes) == (raw, planes - raw)
    (row,) = rep.stages
    assert (row.name, row.planes, row.raw_planes, row.cheap_planes) == (stage, planes, raw, planes - raw)
    assert (row.widths, row.middle_widths) == (widths, kept)
    assert row.blocks == len(list(model.get_submodule(stage).children())) == len(new.layers) + 2
    assert not any(r.name.startswith(stage + ".") for r in rep.rows)  # the stage is a stage row, not conv rows


def test_first_and_last_blocks_are_the_original_ones(resnext) -> None:
    """Same input before the stage -> same base output; same input to the last block -> same output."""
    g, _ = ghostify(resnext, stages=["layer2"], exclude=["*"], input_size=(3, 32, 32), count_macs=False)
    new, old = g.layer2, resnext.layer2
    assert new.base.state_dict().keys() == old[0].state_dict().keys()
    assert all(torch.equal(t, old[0].state_dict()[k]) for k, t in new.base.state_dict().items())
    assert all(torch.equal(t, old[-1].state_dict()[k]) for k, t in new.end.state_dict().items())
    with torch.inference_mode():
        x = torch.randn(2, 3, 32, 32)
        stem = nn.Sequential(resnext.conv1, resnext.bn1, resnext.relu, resnext.maxpool, resnext.layer1)
        before_stage = stem(x)
        assert torch.equal(g.layer1(g.maxpool(g.relu(g.bn1(g.conv1(x))))), before_stage)
        assert torch.equal(new.base(before_stage), old[0](before_stage))
        y = torch.randn(2, 512, 4, 4)
        assert torch.equal(new.end(y), old[-1](y))


def test_middle_blocks_keep_the_original_weights_of_their_channels(resnext, regnet_y) -> None:
    g = to_g_ghost_stage(resnext.layer1, 0.5)
    for new, old in zip(g.layers, list(resnext.layer1)[1:-1]):
        assert new.downsample is None and new.conv2.groups == 16 and old.conv2.groups == 32
        assert torch.equal(new.conv1.weight, old.conv1.weight[:64, :128])
        assert torch.equal(new.conv2.weight, old.conv2.weight[:64])  # the first 16 groups' filters
        assert torch.equal(new.conv3.weight, old.conv3.weight[:128, :64])
        for bn, obn, k in ((new.bn1, old.bn1, 64), (new.bn2, old.bn2, 64), (new.bn3, old.bn3, 128)):
            for t in ("weight", "bias", "running_mean", "running_var"):
                assert torch.equal(getattr(bn, t), getattr(obn, t)[:k])
        with torch.inference_mode():  # an identity shortcut on the raw channels
            assert new(torch.randn(1, 128, 8, 8)).shape == (1, 128, 8, 8)
    # RegNetY: the narrowed squeeze-excitation keeps its squeeze units and reads/gates the kept channels
    stage = regnet_y.trunk_output.block2
    g = to_g_ghost_stage(stage, 0.5)
    new, old = g.layers[0].f, list(stage)[1].f
    assert torch.equal(new.se.fc1.weight, old.se.fc1.weight[:, :48]) and torch.equal(new.se.fc1.bias, old.se.fc1.bias)
    assert torch.equal(new.se.fc2.weight, old.se.fc2.weight[:48]) and torch.equal(new.se.fc2.bias, old.se.fc2.bias[:48])
    assert torch.equal(new.b[0].weight, old.b[0].weight[:48]) and new.b[0].groups == 6 and old.b[0].groups == 13


def test_without_inherit_weights_the_structure_is_the_same(resnext) -> None:
    a = to_g_ghost_stage(resnext.layer1, 0.5).state_dict()
    b = to_g_ghost_stage(resnext.layer1, 0.5, inherit_weights=False).state_dict()
    assert {k: v.shape for k, v in a.items()} == {k: v.shape for k, v in b.items()}
    assert not torch.equal(a["layers.0.conv2.weight"], b["layers.0.conv2.weight"])
    assert torch.equal(a["base.conv1.weight"], b["base.conv1.weight"])  # first and last blocks are copies either way


def test_cheap_ratio_rounds_down_to_whole_units(resnext) -> None:
    assert to_g_ghost_stage(resnext.layer1, 0.25).raw_planes == 192  # 24 of 32 groups
    assert to_g_ghost_stage(resnext.layer1, 0.99).raw_planes == 8  # at least one group
    assert to_g_ghost_stage(resnext.layer1, 0.01).raw_planes == 248  # at most all but one


def test_layer_ratios_give_each_named_conv_its_ratio() -> None:
    model = tv("basic_resnet")
    g, rep = ghostify(model, ratio=2, layer_ratios={"layer1.0.conv1": 4, "layer3.0.conv2": 3, "layer2.1.conv1": 4,
                                                    "nothing.here": 3, "conv1": 4},
                      stages=["layer2"], input_size=(3, 32, 32), count_macs=False)
    gm = {n: m for n, m in g.named_modules() if isinstance(m, GhostModule)}
    assert (gm["layer1.0.conv1"].ratio, gm["layer1.0.conv1"].init_channels) == (4, 16)
    assert (gm["layer3.0.conv2"].ratio, gm["layer3.0.conv2"].init_channels) == (3, math.ceil(256 / 3))
    assert (gm["layer4.0.conv1"].ratio, gm["layer4.0.conv1"].init_channels) == (2, 256)
    assert rep.warnings == [
        "`layer_ratios` conv1: the layer is kept (stem (reads the input image))",
        "`layer_ratios` layer2.1.conv1 is inside the G-Ghost stage layer2 (its convs stay dense)",
        "`layer_ratios` nothing.here matches no conv layer",
    ]
    with torch.inference_mode():
        x = torch.randn(1, 3, 32, 32)
        assert g(x).shape == model(x).shape


def test_recipe_rebuilds_bit_exactly(tmp_path) -> None:
    from ghostcli.artifacts import save_artifact
    from ghostcli.resolve import load_artifact, resolve_model

    loaded = resolve_model("regnet_y_400mf", options={"num_classes": 10})
    opts = GhostifyOptions(stages=("trunk_output.block2", "trunk_output.block4"), cheap_ratio=0.5,
                           layer_ratios=(("trunk_output.block1.block1-0.f.a.0", 4),))
    g, rep = ghostify(randomize_bn(loaded.model), opts, input_size=(3, 32, 32), count_macs=False)
    assert [s.name for s in rep.stages] == list(opts.stages)
    randomize_bn(g, seed=1)  # the new merge / cheap BNs too
    recipe = dataclasses.replace(loaded.recipe, ghostify=opts.to_dict(), input_size=[3, 32, 32])
    again = load_artifact(save_artifact(g, tmp_path / "gg.safetensors", recipe))
    assert {k: v.shape for k, v in again.model.state_dict().items()} == {k: v.shape for k, v in g.state_dict().items()}
    assert again.recipe.ghostify["stages"] == list(opts.stages)
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        assert torch.equal(g.eval()(x), again.model(x))


def test_ineligible_stage_names_are_clear_errors() -> None:
    model = tv("basic_resnet")
    with pytest.raises(ConversionError, match=r"`stages` layer1 cannot be a G-Ghost stage: 1 block; a G-Ghost "
                                              r"stage needs at least 3 \(eligible stages: layer2\)"):
        ghostify(model, stages=["layer1"], input_size=(3, 32, 32))
    with pytest.raises(ConversionError, match=r"`stages` layer9 is not a module of the model \(eligible stages: "
                                              r"layer2\)"):
        ghostify(model, stages=["layer9"], input_size=(3, 32, 32))
    with pytest.raises(ConversionError, match=r"`stages` layer2.0 is not a stage of residual blocks ghostify knows"):
        ghostify(model, stages=["layer2.0"], input_size=(3, 32, 32))
    with pytest.raises(UsageError, match="`stages` names layer2 twice"):
        ghostify(model, stages=["layer2", "layer2"], input_size=(3, 32, 32))
    with pytest.raises(UsageError, match="`cheap_ratio` must be a number between 0 and 1"):
        ghostify(model, stages=["layer2"], cheap_ratio=1.0)
    with pytest.raises(ConversionError, match="cannot be a G-Ghost stage: 1 block"):
        to_g_ghost_stage(model.layer1, 0.5)
    with pytest.raises(ConversionError, match="not a stage of residual blocks"):
        to_g_ghost_stage(nn.Sequential(nn.Conv2d(3, 3, 1)), 0.5)


def test_stage_with_a_block_that_changes_shape_is_refused() -> None:
    blocks = [resnet.BasicBlock(64, 64) for _ in range(3)]
    blocks[1] = resnet.BasicBlock(64, 64, stride=2, downsample=nn.Sequential(nn.Conv2d(64, 64, 1, stride=2),
                                                                             nn.BatchNorm2d(64)))
    assert stage_candidates(nn.Sequential(nn.Sequential(*blocks))) == {
        "0": "block 1 has a projection shortcut (it changes the shape)"}


def test_resnet50_stages_cut_macs_and_the_json_has_the_stage_rows() -> None:
    model = tv("resnet50")
    stages = eligible_stages(model)
    assert stages == ["layer1", "layer2", "layer3", "layer4"]
    g, rep = ghostify(model, stages=stages, exclude=["*"], input_size=(3, 64, 64))  # layer4 at 2x2
    assert rep.macs_before is not None and rep.macs_after is not None and rep.macs_after < rep.macs_before
    assert all(s.macs_after is not None and s.macs_before is not None and s.macs_after < s.macs_before
               for s in rep.stages)
    assert rep.replaced == 0 and [r.name for r in rep.rows] == ["conv1"]  # stage convs are stage rows, not conv rows
    assert rep.graph == "fx" and not rep.warnings  # the rebuilt model traces (conv -> BN pairs outside the stages)
    d = rep.to_dict()
    assert [s["name"] for s in d["stages"]] == stages and d["stages"][0]["raw_planes"] == 128
    assert {"tensor": "layer1.base.*", "source": "layer1.0.*"} in d["inherited"]
    assert {"tensor": "layer1.layers.0.conv1.weight", "source": "layer1.1.conv1.weight[:32, :128]"} in d["inherited"]


@pytest.mark.skipif(importlib.util.find_spec("timm") is None, reason="timm is not installed")
def test_timm_blocks_with_squeeze_excitation() -> None:
    from timm.models.resnet import Bottleneck, ResNet

    model = randomize_bn(ResNet(Bottleneck, [1, 3, 1, 1], num_classes=10, block_args={"attn_layer": "se"})).eval()
    assert eligible_stages(model) == ["layer2"]
    g, rep = ghostify(model, stages=["layer2"], input_size=(3, 32, 32), count_macs=False)
    x = torch.randn(1, 3, 32, 32)
    with torch.inference_mode():
        assert g(x).shape == model(x).shape
    new, old = g.layer2.layers[0], model.layer2[1]
    assert torch.equal(new.se.fc1.weight, old.se.fc1.weight[:, :256])
    assert torch.equal(new.conv3.weight, old.conv3.weight[:256, :64])
