"""The zoo: every model builds and runs; GhostNet and the CIFAR baselines match the paper."""

from __future__ import annotations

import pytest
import torch
from fvcore.nn import FlopCountAnalysis

from ghostcli.errors import ModelNotFoundError, UsageError
from ghostcli.models import build_model, get_model_spec, list_models, name_matches


def conv_linear_macs(model: torch.nn.Module, size: tuple[int, int, int]) -> int:
    """MACs of conv and linear layers, BN excluded: the paper's convention."""
    fca = FlopCountAnalysis(model.eval(), torch.randn(1, *size))
    fca.unsupported_ops_warnings(False)
    fca.uncalled_modules_warnings(False)
    by_op = fca.by_operator()
    return by_op.get("conv", 0) + by_op.get("linear", 0) + by_op.get("addmm", 0)


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.usefixtures("one_thread")  # one core per forward: a loaded 2-core machine stalls parallel regions
@pytest.mark.parametrize("spec", list_models(), ids=lambda s: s.name)
def test_every_zoo_model_builds_and_runs(spec) -> None:
    model = spec.builder().eval()
    small = (spec.input_size[0], min(spec.input_size[1], 64), min(spec.input_size[2], 64))
    with torch.inference_mode():
        y = model(torch.randn(2, *small))
    assert y.shape == (2, spec.num_classes)
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", ["ghostnet_050", "ghostnet_100", "ghostnet_130", "resnet56", "vgg16"])
def test_paper_numbers_within_two_percent(name: str) -> None:
    spec = get_model_spec(name)
    model = build_model(name)
    assert n_params(model) == pytest.approx(spec.paper["params"], rel=0.02)
    assert conv_linear_macs(model, spec.input_size) == pytest.approx(spec.paper["macs"], rel=0.02)


def test_ghostnet_100_exact_counts() -> None:
    model = build_model("ghostnet_100")
    assert n_params(model) == 5_182_508
    blocks = [b for stage in model.blocks[:-1] for b in stage]
    assert len(blocks) == 16
    assert [b.ghost2.out_ch for b in blocks][:4] == [16, 24, 24, 40]
    assert model.conv_stem.out_channels == 16 and model.conv_head.out_channels == 1280
    assert model.conv_head.bias is not None and model.dropout.p == 0.2


def test_official_state_dict_names() -> None:
    keys = set(build_model("ghostnet_100").state_dict())
    for key in ("conv_stem.weight", "bn1.running_mean", "blocks.0.0.ghost1.primary_conv.0.weight",
                "blocks.0.0.ghost1.cheap_operation.1.weight", "blocks.3.0.se.conv_reduce.weight",
                "blocks.1.0.conv_dw.weight", "blocks.1.0.shortcut.2.weight", "blocks.9.0.conv.weight",
                "conv_head.bias", "classifier.weight"):
        assert key in keys, key


def test_options() -> None:
    model = build_model("ghostnet_050", num_classes=10, in_chans=1, width=0.5)
    assert model(torch.randn(1, 1, 64, 64)).shape == (1, 10)
    assert build_model("ghostnet_100", width=0.75).width == 0.75
    with pytest.raises(UsageError, match=r"^model 'resnet56' has no option `width` \(it takes: `num_classes`, `in_chans`\)$"):
        build_model("resnet56", width=2.0)
    with pytest.raises(UsageError):
        build_model("ghostnet_100", width=-1.0)


def test_unknown_zoo_name_suggests() -> None:
    with pytest.raises(ModelNotFoundError, match="did you mean ghostnet_100"):
        get_model_spec("ghostnet100")


def test_list_filters() -> None:
    names = [s.name for s in list_models("ghostnet_")]
    assert names == ["ghostnet_050", "ghostnet_100", "ghostnet_130"]
    assert [s.name for s in list_models("ghostnet_1*")] == ["ghostnet_100", "ghostnet_130"]
    assert name_matches("resnet50", "net5") and name_matches("resnet50", "res*") and not name_matches("vgg16", "res*")
    assert name_matches("vgg16", None) and name_matches("vgg16", "")


def test_constructors_raise_value_errors_and_the_zoo_a_usage_error() -> None:
    from ghostcli.models.cifar import CifarResNet
    from ghostcli.models.ghostnet import GhostNet

    with pytest.raises(ValueError, match="`depth` must be 6n\\+2") as info:
        CifarResNet(depth=21)
    assert not isinstance(info.value, UsageError)  # a plain nn.Module knows nothing of the CLI
    with pytest.raises(ValueError, match="^`width` must be positive"):
        GhostNet(width=0)
    with pytest.raises(UsageError, match="^`width` must be positive, got -1.0$"):  # same message, CLI exit code
        build_model("ghostnet_100", width=-1.0)


def test_ghost_resnet50_lives_with_the_imagenet_models() -> None:
    spec = get_model_spec("ghost_resnet50")
    assert spec.builder.__module__ == "ghostcli.models.ghost_resnet" and spec.input_size == (3, 224, 224)
    assert all(get_model_spec(n).builder.__module__ == "ghostcli.models.ghost_cifar"
               for n in ("ghost_resnet56", "ghost_vgg16"))


@pytest.mark.parametrize("name, width, shown", [
    ("ghostnet_050", 1.3, "ghostnet_130"), ("ghostnet_100", 0.75, "ghostnet_075"),
    ("ghostnet_100", 1.0, "ghostnet_100"), ("ghostnet_130", None, "ghostnet_130"), ("ghostnet_100", 1.25, "ghostnet_125"),
    ("ghostnet_100", 0.333, "ghostnet_0.333x"),
])
def test_the_name_says_the_width(name: str, width: float | None, shown: str) -> None:
    assert get_model_spec(name).display_name({"width": width}) == shown


def test_build_with_another_width_names_the_model_by_its_width(runner, tmp_path) -> None:
    import json

    from ghostcli.cli.app import app
    from ghostcli.resolve import load_artifact

    out = tmp_path / "g.safetensors"
    res = runner.invoke(app, ["build", "ghostnet_050", "--width", "1.3", "--json", "-o", str(out)])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["name"] == "ghostnet_130" and data["source"] == "zoo:ghostnet_050"
    assert data["options"] == {"width": 1.3} and data["params"] == 7_358_820  # GhostNet 1.3x (timm's count)
    loaded = load_artifact(out)  # the recipe still rebuilds it
    assert sum(p.numel() for p in loaded.model.parameters()) == 7_358_820 and loaded.model.width == 1.3
    res = runner.invoke(app, ["build", "ghostnet_050", "--width", "1.3"])
    assert res.exit_code == 0 and "ghostnet_130" in res.stdout
    res = runner.invoke(app, ["build", "ghostnet_050", "--json"])
    assert json.loads(res.stdout)["name"] == "ghostnet_050"


def test_build_names_builder_options_as_its_flags(runner, tmp_path) -> None:
    from ghostcli.cli.app import app
    from ghostcli.resolve import resolve_model

    res = runner.invoke(app, ["build", "resnet56", "--width", "2"])
    assert res.exit_code == 2
    assert res.stderr.strip() == "Error: model 'resnet56' has no option --width (it takes: --num-classes, --in-chans)"
    res = runner.invoke(app, ["build", "ghost_resnet56", "--width", "2"])  # build cannot set ratio: it stays a name
    assert "(it takes: --num-classes, --in-chans, `ratio`, `dw_kernel`)" in res.stderr
    # a resolve hint: the library names the setting, build shows its flag
    out = tmp_path / "r20.safetensors"
    assert runner.invoke(app, ["build", "resnet20", "-o", str(out)]).exit_code == 0
    with pytest.raises(UsageError, match=r"^builder options \(e\.g\. `num_classes`\) do not apply to a saved artifact$"):
        resolve_model(str(out), options={"num_classes": 3})
    res = runner.invoke(app, ["build", str(out), "--num-classes", "3"])
    assert res.exit_code == 2
    assert res.stderr.strip() == "Error: builder options (e.g. --num-classes) do not apply to a saved artifact"
