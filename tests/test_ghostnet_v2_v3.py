"""GhostNetV2 (DFC attention) and GhostNetV3 (re-parameterisable branches) in the zoo.

timm is the reference: parameter counts equal its models', its state dicts load strictly and give
bit-identical outputs (eval mode, random BN statistics). Fast by design: parameter counts on the meta
device, forwards at 64x64, MACs (fvcore) only for the 1.0x models at 224x224.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ghostcli.analysis.macs import count_macs
from ghostcli.layers import GhostModule, GhostModuleV2
from ghostcli.models import build_model, get_model_spec, list_models

timm = pytest.importorskip("timm")

# timm 1.0's parameter counts (/work/shared/ghostnet-facts.md), equal by construction.
V2_PARAMS = {"ghostnetv2_100": 6_156_908, "ghostnetv2_130": 8_960_404, "ghostnetv2_160": 12_392_698}
# conv + linear MACs at 224x224 (fvcore, BN excluded), the facts table's 167.0 / 269.3 / 398.6 M.
V2_MACS = {"ghostnetv2_100": 167_048_288}


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def random_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random BN statistics and affine parameters, so that a wrong pairing of BNs shows in the outputs."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert m.running_mean is not None and m.running_var is not None
            c = m.num_features
            m.running_mean.copy_(torch.rand(c, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(c, generator=g) * 1.5 + 0.5)
            m.weight.data.copy_(torch.rand(c, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(c, generator=g) * 0.4 - 0.2)
    return model.eval()


def timm_round_trip(name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """timm's ``name`` with random BN stats, its state dict loaded strictly into ghostcli's: both outputs."""
    torch.manual_seed(0)
    ref = random_bn(timm.create_model(name, pretrained=False))
    ours = build_model(name).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        return ref(x), ours(x)


# ---------------------------------------------------------------------------------------------- GhostNetV2


def test_v2_family_is_registered() -> None:
    assert [s.name for s in list_models("ghostnetv2_*")] == list(V2_PARAMS)
    spec = get_model_spec("ghostnetv2_100")
    assert spec.family == "ghostnetv2" and spec.options() == ["num_classes", "in_chans", "width"]
    assert spec.paper == {"params": 6.1e6, "macs": 167e6, "top1": 75.3}
    assert spec.display_name({"width": 1.3}) == "ghostnetv2_130"


@pytest.mark.parametrize("name", list(V2_PARAMS))
def test_v2_params_equal_timm(name: str) -> None:
    with torch.device("meta"):
        assert n_params(build_model(name)) == V2_PARAMS[name]


def test_v2_structure() -> None:
    with torch.device("meta"):
        model = build_model("ghostnetv2_100")
    blocks = [b for stage in model.blocks[:-1] for b in stage]
    assert len(blocks) == 16
    # DFC attention on the first module of every bottleneck but the first two, never on the second module
    assert [type(b.ghost1) for b in blocks] == [GhostModule] * 2 + [GhostModuleV2] * 14
    assert all(type(b.ghost2) is GhostModule for b in blocks)
    dfc = blocks[2].ghost1.short_conv
    assert [tuple(m.kernel_size) for m in dfc if isinstance(m, nn.Conv2d)] == [(1, 1), (1, 5), (5, 1)]
    assert dfc[2].groups == dfc[2].in_channels == dfc[4].groups


def test_v2_timm_state_dict_round_trip_is_bit_exact() -> None:
    ref, ours = timm_round_trip("ghostnetv2_100")
    assert ours.shape == (2, 1000)
    assert torch.equal(ref, ours)


def test_v2_macs_at_224() -> None:
    macs = count_macs(build_model("ghostnetv2_100").eval(), torch.randn(1, 3, 224, 224))
    assert macs.conv_linear == V2_MACS["ghostnetv2_100"]
    assert macs.conv_linear == pytest.approx(get_model_spec("ghostnetv2_100").paper["macs"], rel=0.02)


def test_ghost_module_v2_gates_the_ghost_output() -> None:
    torch.manual_seed(0)
    gm = random_bn(GhostModuleV2(8, 12))
    x = torch.randn(1, 8, 9, 7)  # odd sizes: the pooled map (4x3) is up-sampled back to 9x7
    with torch.no_grad():
        out = gm(x)
        plain = GhostModule.forward(gm, x)
        gate = torch.sigmoid(gm.short_conv(nn.functional.avg_pool2d(x, 2, 2)))
    assert out.shape == plain.shape == (1, 12, 9, 7) and gate.shape == (1, 12, 4, 3)
    assert torch.equal(out[..., 0, 0], plain[..., 0, 0] * gate[..., 0, 0])
    assert torch.equal(out[..., 8, 6], plain[..., 8, 6] * gate[..., 3, 2])  # nearest: 8 * 4 // 9 = 3, 6 * 3 // 7 = 2
    assert (out.abs() <= plain.abs()).all()
