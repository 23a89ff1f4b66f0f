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
from ghostcli.deploy.export import export_model
from ghostcli.deploy.options import ExportOptions
from ghostcli.errors import ArtifactError
from ghostcli.layers import (
    GhostBottleneckV3,
    GhostModule,
    GhostModuleV2,
    GhostModuleV3,
    has_training_branches,
    reparameterize,
)
from ghostcli.layers.ghost_v3 import ConvBn, fold_branches
from ghostcli.models import build_model, get_model_spec, list_models
from ghostcli.resolve import resolve_model

from conftest import randomize_bn

timm = pytest.importorskip("timm")

# tiny forwards: one intra-op thread (two spinning OpenMP threads are many times slower on a busy 2-core box)
pytestmark = pytest.mark.usefixtures("one_thread")

# timm 1.0's parameter counts (/work/shared/ghostnet-facts.md), equal by construction.
V2_PARAMS = {"ghostnetv2_100": 6_156_908, "ghostnetv2_130": 8_960_404, "ghostnetv2_160": 12_392_698}
# conv + linear MACs at 224x224 (fvcore, BN excluded), the facts table's 167.0 / 269.3 / 398.6 M.
V2_MACS = {"ghostnetv2_100": 167_048_288}
# timm's ghostnetv3_* (training form) and after re-parameterization (GhostNetV2's shape, BNs folded into biases).
V3_PARAMS = {"ghostnetv3_050": (3_395_384, 2_853_176), "ghostnetv3_100": (8_129_028, 6_147_588),
             "ghostnetv3_130": (12_217_720, 8_948_296), "ghostnetv3_160": (17_275_700, 12_377_778)}
V3_MACS = {"ghostnetv3_100": 167_048_288}  # deployed (= ghostnetv2_100's); the training form counts 404.1 M


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


X64 = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))


def timm_round_trip(name: str) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """timm's ``name`` with random BN stats, its state dict loaded strictly into ghostcli's: (ours, timm's
    output, ours) on ``X64``."""
    torch.manual_seed(0)
    ref = randomize_bn(timm.create_model(name, pretrained=False)).eval()
    ours = build_model(name).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    with torch.no_grad():
        return ours, ref(X64), ours(X64)


# ------------------------------------------------------------------------------------------------ GhostNet


def test_v1_timm_weights_file_loads_through_resolve(tmp_path) -> None:
    """GhostNet (V1) already has timm's layout: ``ghostnet_100 --weights timm.pth`` gives timm's outputs bit for bit."""
    torch.manual_seed(0)
    ref = randomize_bn(timm.create_model("ghostnet_100", pretrained=False)).eval()
    torch.save(ref.state_dict(), tmp_path / "timm.pth")
    loaded = resolve_model("ghostnet_100", weights=tmp_path / "timm.pth")
    with torch.no_grad():
        assert torch.equal(ref(X64), loaded.model(X64))


@pytest.mark.parametrize("name", [*V2_PARAMS, *V3_PARAMS])
def test_timm_state_dict_round_trip_is_bit_exact(name: str) -> None:
    _, ref, ours = timm_round_trip(name)
    assert ours.shape == (2, 1000)
    assert torch.equal(ref, ours)


def official_v3_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """timm's GhostNetV3 state dict as the official code saves it: ``_conv_bn`` branches name their BN ``bn``,
    DataParallel's ``module.`` prefix, thop's counters on every module."""
    out = {"module." + k.replace("_rpr_scale.bn1.", "_rpr_scale.bn.").replace(".bn1.", ".bn.")
           if "_rpr_" in k else "module." + k: v for k, v in state.items()}
    out["module.conv_stem.total_ops"] = torch.zeros(1, dtype=torch.float64)
    out["module.blocks.0.0.ghost1.total_params"] = torch.zeros(1, dtype=torch.float64)
    return out


def test_v3_official_checkpoint_layout_loads_through_resolve(tmp_path) -> None:
    """``ghostnetv3_050 --weights`` reads the official code's checkpoints (``{"state_dict": ...}``, ``bn`` for
    ``bn1``, ``module.``, thop counters) into timm's layout, bit-exact; a wrong file lists the keys it lacks."""
    torch.manual_seed(0)
    ref = randomize_bn(timm.create_model("ghostnetv3_050", pretrained=False)).eval()
    official = official_v3_layout(ref.state_dict())
    assert any("_rpr_conv.0.bn.weight" in k for k in official) and any("_rpr_scale.bn.weight" in k for k in official)
    torch.save({"state_dict": official, "epoch": 3}, tmp_path / "ghostnetv3-0.5.pth.tar")
    loaded = resolve_model("ghostnetv3_050", weights=tmp_path / "ghostnetv3-0.5.pth.tar")
    with torch.no_grad():
        assert torch.equal(ref(X64), loaded.model(X64))
    # a V2 checkpoint is not a V3 one: the error names the first keys on each side and how many more
    torch.save(build_model("ghostnetv2_100", width=0.5).state_dict(), tmp_path / "v2.pth")
    with pytest.raises(ArtifactError, match=r"does not match the model: \d+ missing keys \(blocks\.0\.0\.ghost1\.[^)]*, "
                                            r"\.\.\. \d+ more\); \d+ unexpected keys \(blocks\.0\.0\.ghost1\.primary_conv"):
        resolve_model("ghostnetv3_050", weights=tmp_path / "v2.pth")


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




def test_v2_macs_at_224() -> None:
    macs = count_macs(build_model("ghostnetv2_100").eval(), torch.randn(1, 3, 224, 224))
    assert macs.conv_linear == V2_MACS["ghostnetv2_100"]
    assert macs.conv_linear == pytest.approx(get_model_spec("ghostnetv2_100").paper["macs"], rel=0.02)


def test_ghost_module_v2_gates_the_ghost_output() -> None:
    torch.manual_seed(0)
    gm = randomize_bn(GhostModuleV2(8, 12)).eval()
    x = torch.randn(1, 8, 9, 7)  # odd sizes: the pooled map (4x3) is up-sampled back to 9x7
    with torch.no_grad():
        out = gm(x)
        plain = GhostModule.forward(gm, x)
        gate = torch.sigmoid(gm.short_conv(nn.functional.avg_pool2d(x, 2, 2)))
    assert out.shape == plain.shape == (1, 12, 9, 7) and gate.shape == (1, 12, 4, 3)
    assert torch.equal(out[..., 0, 0], plain[..., 0, 0] * gate[..., 0, 0])
    assert torch.equal(out[..., 8, 6], plain[..., 8, 6] * gate[..., 3, 2])  # nearest: 8 * 4 // 9 = 3, 6 * 3 // 7 = 2
    assert (out.abs() <= plain.abs()).all()


# ---------------------------------------------------------------------------------------------- GhostNetV3


def test_v3_family_is_registered() -> None:
    assert [s.name for s in list_models("ghostnetv3_*")] == list(V3_PARAMS)
    assert get_model_spec("ghostnetv3_130").paper == {"params": 8.9e6, "macs": 269e6, "top1": 79.1}
    assert get_model_spec("ghostnetv3_050").paper == {}  # nothing published for 0.5x that we could check
    assert get_model_spec("ghostnetv3_100").display_name({"width": 1.6}) == "ghostnetv3_160"


@pytest.mark.parametrize("name", list(V3_PARAMS))
def test_v3_params_equal_timm_before_and_after_reparameterization(name: str) -> None:
    with torch.device("meta"):
        model = build_model(name)
        assert n_params(model) == V3_PARAMS[name][0]
        assert has_training_branches(model)
        assert reparameterize(model) == 32 + 16  # every Ghost module and every bottleneck
        assert n_params(model) == V3_PARAMS[name][1]
        assert not has_training_branches(model) and reparameterize(model) == 0  # idempotent


def test_v3_timm_round_trip_bit_exact_and_reparameterized_within_1e_5() -> None:
    name = "ghostnetv3_050"
    ours, ref, out = timm_round_trip(name)
    assert torch.equal(ref, out)
    assert reparameterize(ours) == 48
    with torch.no_grad():
        folded = ours(X64)
    assert (folded - out).abs().max() <= 1e-5 * out.abs().max()
    # nothing of the training form is left: no branch modules, and the layout is timm's deployed one
    assert not any(isinstance(m, ConvBn) for m in ours.modules())
    assert not any(".dw_rpr_" in k or "_rpr_" in k for k in ours.state_dict())
    deployed = timm.create_model(name, pretrained=False)
    deployed.convert_to_deploy()
    assert set(deployed.state_dict()) == set(ours.state_dict())


def test_v3_structure() -> None:
    with torch.device("meta"):
        model = build_model("ghostnetv3_100")
    blocks = [b for stage in model.blocks[:-1] for b in stage]
    assert all(isinstance(b, GhostBottleneckV3) for b in blocks) and len(blocks) == 16
    assert [b.ghost1.short_conv is not None for b in blocks] == [False] * 2 + [True] * 14
    assert all(isinstance(b.ghost2, GhostModuleV3) and b.ghost2.short_conv is None for b in blocks)
    strided = [b for b in blocks if b.stride == 2]
    assert len(strided) == 4 and all(len(b.dw_rpr_conv) == 3 and b.dw_rpr_scale is not None for b in strided)
    gm = blocks[0].ghost1
    assert isinstance(gm, GhostModule)  # ghostify and the profiles treat it as a Ghost module
    assert len(gm.primary_rpr_conv) == len(gm.cheap_rpr_conv) == 3 and gm.cheap_rpr_skip is not None


def test_v3_macs_at_224_after_reparameterization_are_v2s() -> None:
    model = build_model("ghostnetv3_100").eval()
    reparameterize(model)
    macs = count_macs(model, torch.randn(1, 3, 224, 224)).conv_linear
    assert macs == V3_MACS["ghostnetv3_100"] == V2_MACS["ghostnetv2_100"]
    assert macs == pytest.approx(get_model_spec("ghostnetv3_100").paper["macs"], rel=0.02)


def test_fold_branches_is_exact_for_every_branch_kind() -> None:
    """3x3 depthwise branches, a 1x1 scale branch and a BN identity branch, stride 1 and 2."""
    torch.manual_seed(0)
    for stride in (1, 2):
        convs = [randomize_bn(ConvBn(6, 6, 3, stride, groups=6), seed=i).eval() for i in range(3)]
        scale = randomize_bn(ConvBn(6, 6, 1, stride, groups=6), seed=5).eval()
        skip = randomize_bn(nn.BatchNorm2d(6), seed=6).eval() if stride == 1 else None
        x = torch.randn(2, 6, 9, 9)
        with torch.no_grad():
            want = sum(c(x) for c in convs) + scale(x) + (skip(x) if skip is not None else 0)
            got = fold_branches(convs, scale, skip)(x)
        assert got.shape == want.shape and torch.allclose(got, want, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="at least one conv branch"):
        fold_branches([])


@pytest.mark.parametrize("name", list(V3_PARAMS))
def test_every_v3_deploys_to_the_conv_count_of_its_v2(name: str) -> None:
    """After folding, each width has its GhostNetV2's 137 convs (one ONNX Conv each: the export test below)."""
    with torch.device("meta"):
        v3 = build_model(name)
        reparameterize(v3)
        v2 = build_model("ghostnetv2_100", width=v3.width)
    convs = [sum(isinstance(m, nn.Conv2d) for m in net.modules()) for net in (v3, v2)]
    assert convs == [137, 137]


def test_export_of_v3_has_the_v2_graph(tmp_path) -> None:
    """``export`` folds the branches first: ghostnetv3_050's ONNX graph has the ops of GhostNetV2 at width 0.5."""
    torch.manual_seed(0)
    v3 = randomize_bn(build_model("ghostnetv3_050")).eval()
    # batch 2 at 64x64, the shapes of the forwards above (and of the zoo's build test): oneDNN's kernels are reused
    result = export_model(v3, options=ExportOptions(output=tmp_path / "v3.onnx", input_size=(3, 64, 64), batch_size=2))
    assert result.verification is not None and result.verification.passed  # against the unfolded model
    assert result.bn_left == 0 and result.ghost_modules == 32
    assert has_training_branches(v3)  # the caller's model keeps its branches
    v2 = build_model("ghostnetv2_100", width=0.5).eval()
    v2_counts = export_model(v2, options=ExportOptions(output=tmp_path / "v2.onnx", input_size=(3, 64, 64),
                                                       batch_size=2, verify=False)).op_counts
    assert result.op_counts["Conv"] == v2_counts["Conv"] == 137
    assert result.op_counts == v2_counts
