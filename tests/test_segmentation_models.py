"""torchvision's segmentation and detection models by name: they resolve (did-you-mean included), build with
random weights and nothing downloaded, ghostify with their dilations kept and their output dict intact, and
round-trip through a saved artifact bit-exactly. Small inputs and the smallest models keep it fast."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models.detection.transform import GeneralizedRCNNTransform

from ghostcli.artifacts import Recipe, save_artifact
from ghostcli.cli.app import app
from ghostcli.convert import GhostifyOptions, GhostifyReport, ghostify
from ghostcli.errors import ModelNotFoundError
from ghostcli.layers import GhostModule
from ghostcli.loaded import LoadedModel
from ghostcli.resolve import (
    canonical_source,
    default_input_size,
    load_artifact,
    resolve_model,
    torchvision_names,
    torchvision_task,
)

SEGMENTATION = torchvision.models.list_models(module=torchvision.models.segmentation)
DETECTION = torchvision.models.list_models(module=torchvision.models.detection)


def _refuse(*args: object, **kwargs: object) -> None:
    raise AssertionError(f"tried to download {args[:1]}")


@pytest.fixture
def no_download(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to fetch weights fails the test."""
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", _refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", _refuse)


@pytest.fixture(scope="module")
def fcn() -> tuple[LoadedModel, nn.Module, GhostifyReport]:
    """fcn_resnet50 with its aux head (random weights, nothing downloaded) and its ghostified copy at 3x64x64."""
    torch.manual_seed(0)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.hub, "load_state_dict_from_url", _refuse)
        loaded = resolve_model("fcn_resnet50", options={"aux_loss": True})
    g, rep = ghostify(loaded.model, GhostifyOptions(), input_size=(3, 64, 64))
    return loaded, g.eval(), rep


def test_every_segmentation_and_detection_name_resolves() -> None:
    assert {"deeplabv3_resnet50", "fcn_resnet50", "lraspp_mobilenet_v3_large"} <= set(SEGMENTATION)
    assert {"fasterrcnn_resnet50_fpn", "keypointrcnn_resnet50_fpn", "retinanet_resnet50_fpn"} <= set(DETECTION)
    for name in SEGMENTATION + DETECTION:
        assert canonical_source(name) == f"torchvision:{name}"
    assert {torchvision_task(n) for n in SEGMENTATION} == {"segmentation"}
    assert {torchvision_task(n) for n in DETECTION} == {"detection"}
    assert torchvision_task("resnet18") == "classification" and torchvision_task("nope") is None
    assert set(SEGMENTATION + DETECTION) < set(torchvision_names())
    with pytest.raises(ModelNotFoundError, match="did you mean.*deeplabv3_resnet50"):
        canonical_source("deeplabv3_resnet5")


def test_they_build_with_random_weights_and_their_input_size(no_download: None) -> None:
    seg = resolve_model("lraspp_mobilenet_v3_large")
    assert seg.recipe.source == "torchvision:lraspp_mobilenet_v3_large" and seg.input_size == (3, 520, 520)
    det = resolve_model("fasterrcnn_mobilenet_v3_large_320_fpn")
    assert det.input_size == (3, 320, 320)  # what its transform resizes every image to
    with torch.no_grad():
        out = det.model(torch.rand(1, 3, 64, 64))
    assert isinstance(out, list) and {"boxes", "labels", "scores"} <= set(out[0])
    # Keypoint R-CNN trains at several sizes (min_size 640 ... 800) and evaluates at the last
    keypoint_like = nn.Module()
    keypoint_like.transform = GeneralizedRCNNTransform((640, 672, 704, 736, 768, 800), 1333, [0.5] * 3, [0.2] * 3)
    assert default_input_size("torchvision:keypointrcnn_resnet50_fpn", keypoint_like, {}) == (3, 800, 800)


def _dilated(model: nn.Module) -> dict[str, nn.Conv2d]:
    return {n: m for n, m in model.named_modules()
            if isinstance(m, nn.Conv2d) and m.dilation != (1, 1) and m.groups == 1}


def test_ghostify_keeps_the_output_dict_and_the_dilations(fcn: tuple[LoadedModel, nn.Module, GhostifyReport]) -> None:
    loaded, g, rep = fcn
    model = loaded.model
    assert rep.replaced == 56 and rep.macs_after < 0.55 * rep.macs_before
    x = torch.randn(1, 3, 64, 48)
    with torch.no_grad():
        before, after = model(x), g(x)
    assert list(after) == list(before) == ["out", "aux"]
    assert {k: v.shape for k, v in after.items()} == {k: v.shape for k, v in before.items()}
    assert after["out"].shape == (1, 21, 64, 48)
    dilated = _dilated(model)
    assert len(dilated) == 8 and {c.dilation for c in dilated.values()} == {(2, 2), (4, 4)}
    named = dict(g.named_modules())
    for name, conv in dilated.items():
        gm = named[name]
        assert isinstance(gm, GhostModule)
        primary, cheap = gm.primary_conv[0], gm.cheap_operation[0]
        assert (primary.dilation, primary.padding, primary.stride) == (conv.dilation, conv.padding, conv.stride)
        assert (cheap.padding, cheap.stride, cheap.dilation) == ((1, 1), (1, 1), (1, 1))  # keeps the map's size
        probe = torch.randn(1, conv.in_channels, 9, 7)
        with torch.no_grad():  # the inherited filters on the same dilated taps: the original's first channels
            torch.testing.assert_close(primary(probe), conv(probe)[:, :gm.init_channels], rtol=0, atol=1e-5)


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_segmentation_model_round_trips_through_an_artifact(
        tmp_path: Path, fcn: tuple[LoadedModel, nn.Module, GhostifyReport]) -> None:
    loaded, g, rep = fcn
    recipe = Recipe(source=loaded.recipe.source, options=dict(loaded.recipe.options), ghostify=rep.options,
                    input_size=[3, 64, 64])
    path = save_artifact(g, tmp_path / "fcn.safetensors", recipe)
    back = load_artifact(path)
    assert back.recipe.options == {"aux_loss": True} and back.input_size == (3, 64, 64)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert _same(back.model(x), g(x))


def test_cli_ghostify_by_name_then_load(tmp_path: Path, runner, no_download: None) -> None:
    out = tmp_path / "lraspp.safetensors"
    res = runner.invoke(app, ["ghostify", "lraspp_mobilenet_v3_large", "--input-size", "3x64x64", "-o", str(out)])
    assert res.exit_code == 0, res.output
    back = load_artifact(out)
    assert back.recipe.source == "torchvision:lraspp_mobilenet_v3_large"
    assert sum(isinstance(m, GhostModule) for m in back.model.modules()) == 50
    with torch.no_grad():
        y = back.model(torch.randn(1, 3, 64, 64))
    assert list(y) == ["out"] and y["out"].shape == (1, 21, 64, 64)


def test_a_detector_ghostifies_and_keeps_its_output_structure(no_download: None) -> None:
    """Faster R-CNN (MobileNetV3 FPN) at a small size: backbone and FPN convs converted, one dict per image.

    (With random weights it detects nothing before and after; detectors whose detection count changes are
    refused by ghostify's output-shape check: docs/models.md.)"""
    torch.manual_seed(0)
    loaded = resolve_model("fasterrcnn_mobilenet_v3_large_320_fpn", options={"min_size": 64, "max_size": 64})
    assert loaded.input_size == (3, 64, 64)
    g, rep = ghostify(loaded.model, input_size=(3, 64, 64))
    names = {r.name for r in rep.rows if r.action == "ghost"}
    assert {"backbone.fpn.inner_blocks.0.0", "rpn.head.conv.0.0"} <= names and rep.replaced == 53
    with torch.no_grad():
        out = g(torch.rand(2, 3, 64, 64))
    assert len(out) == 2 and all(set(d) == {"boxes", "labels", "scores"} for d in out)
