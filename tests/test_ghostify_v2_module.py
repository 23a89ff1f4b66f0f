"""``ghostify(module="v2")`` / ``ghostify --module v2``: convs become GhostNetV2's GhostModuleV2 (DFC attention).

The converted module must start as the plain one does (its primary channels are the original conv's, exactly),
be counted honestly (the DFC branch costs MACs) and rebuild bit-exactly from its recipe.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ghostcli.artifacts import Recipe, save_artifact
from ghostcli.convert import ghostify
from ghostcli.convert.conv2d import V2_GATE_BIAS
from ghostcli.errors import UsageError
from ghostcli.ghostify_options import GhostifyOptions
from ghostcli.layers import GhostModule, GhostModuleV2
from ghostcli.resolve import load_artifact, resolve_model

from conftest import randomize_bn

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("with_bn", [True, False])
def test_primary_channels_equal_the_original_conv_with_the_gate_open(with_bn: bool) -> None:
    torch.manual_seed(0)
    layers: list[nn.Module] = [nn.Conv2d(3, 8, 3, padding=1),
                               nn.Conv2d(8, 16, 3, padding=2, dilation=2, bias=not with_bn)]
    if with_bn:
        layers.append(randomize_bn(nn.BatchNorm2d(16)))
    model = nn.Sequential(*layers).eval()
    ghost, report = ghostify(model, input_size=(3, 9, 11), module="v2")
    gm = ghost[1]
    assert isinstance(gm, GhostModuleV2) and report.replaced == 1
    assert gm.short_conv[5].weight.abs().max() == 0 and torch.all(gm.short_conv[5].bias == V2_GATE_BIAS)
    x = torch.randn(2, 3, 9, 11)
    m = gm.init_channels
    for mode in ("eval", "train"):  # the gate is a constant in both: its last BN has weight 0
        getattr(ghost, mode)()
        getattr(model, mode)()
        with torch.no_grad():
            got, want = ghost(x)[:, :m], model(x)[:, :m]
        assert torch.allclose(got, want, rtol=1e-5, atol=1e-6), mode
        if not with_bn:
            break  # without BN there are no batch statistics to differ


def test_resnet20_v2_counts_the_dfc_branch_and_rebuilds_from_its_recipe(tmp_path) -> None:
    loaded = resolve_model("resnet20")
    randomize_bn(loaded.model)
    v1, r1 = ghostify(loaded.model, input_size=(3, 16, 16))
    v2, r2 = ghostify(loaded.model, input_size=(3, 16, 16), module="v2")
    assert r1.replaced == r2.replaced == 18
    assert sum(isinstance(m, GhostModuleV2) for m in v2.modules()) == 18
    assert not any(isinstance(m, GhostModuleV2) for m in v1.modules())
    # the DFC branch: a conv of the primary's geometry on the 2x-pooled map, then 1x5 and 5x1 depthwise convs
    assert r2.macs_after is not None and r1.macs_after is not None and r1.macs_after < r2.macs_after < r2.macs_before
    assert r2.params_after > r1.params_after
    assert r2.options["module"] == "v2" and r1.options["module"] == "v1"
    recipe = Recipe(source="zoo:resnet20", options={}, ghostify=r2.options, input_size=[3, 16, 16])
    path = save_artifact(v2.eval(), tmp_path / "v2.safetensors", recipe)
    again = load_artifact(path).model.eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(again(x), v2(x))
    assert [type(m) for m in again.modules() if isinstance(m, GhostModule)] == [GhostModuleV2] * 18


def test_maps_smaller_than_2x2_are_not_pooled() -> None:
    """resnet20 at 4x4: layer3 runs on 1x1 maps, where the official DFC branch would fail to pool."""
    ghost, _ = ghostify(resolve_model("resnet20").model, input_size=(3, 4, 4), module="v2")
    with torch.no_grad():
        assert ghost.eval()(torch.randn(1, 3, 4, 4)).shape == (1, 10)


def test_module_option_is_checked() -> None:
    with pytest.raises(UsageError, match="`module` must be one of v1, v2, got 'v3'"):
        GhostifyOptions(module="v3")
    assert GhostifyOptions.from_dict({"ratio": 2}).module == "v1"  # recipes written before the option rebuild as v1


def test_cli_module_v2_calibrates_the_dfc_gate(runner, tmp_path) -> None:
    """``--module v2 --calib-data``: block-wise reconstruction trains the DFC branch (its gate leaves the
    constant it starts at) and the calibrated model agrees with the original on held-out digits."""
    import json

    from safetensors.torch import load_file

    from ghostcli.cli.app import app

    out = tmp_path / "v2.safetensors"
    torch.manual_seed(0)  # resnet20's random weights
    r = runner.invoke(app, ["ghostify", "resnet20", "--module", "v2", "--input-size", "3x8x8", "--calib-data",
                            "digits", "--calib-images", "32", "--json", "-o", str(out)])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["options"]["module"] == "v2" and data["replaced"] == 18
    cal = data["calibration"]
    assert cal["agreement_before"] < 50 and cal["agreement_block"] > 80
    gates = [v for k, v in load_file(out).items() if k.endswith("short_conv.5.weight")]
    assert len(gates) == 18 and all(float(g.abs().max()) > 0 for g in gates)
    assert sum(isinstance(m, GhostModuleV2) for m in load_artifact(out).model.modules()) == 18


def test_cli_unknown_module_is_one_line(runner) -> None:
    from ghostcli.cli.app import app

    r = runner.invoke(app, ["ghostify", "resnet20", "--module", "v3"])
    assert r.exit_code == 2 and r.output == "Error: --module must be one of v1, v2, got 'v3'\n"
