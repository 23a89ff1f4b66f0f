"""GhostNetV2/V3 through the deployment paths beside ONNX export (tested in test_ghostnet_v2_v3.py): INT8 quantization
of GhostNetV2 (DFC attention: pooling, sigmoid, up-sampling) and GhostNetV3's OpenVINO IR without training branches.

Fast by design: 10 classes at 64x64, 8 calibration and 8 evaluation images, one timing run, one thread.
"""

from __future__ import annotations

import pytest
import torch

from ghostcli.deploy.export import export_model
from ghostcli.deploy.options import ExportOptions
from ghostcli.layers import has_training_branches
from ghostcli.models import build_model

from conftest import randomize_bn

pytestmark = pytest.mark.usefixtures("one_thread")

SIZE = (3, 64, 64)  # the smallest input at which every DFC branch still pools a 2x2 map


def test_quantize_ghostnetv2(tmp_path) -> None:
    pytest.importorskip("nncf")
    from ghostcli.deploy import QuantizeOptions, quantize_model
    from ghostcli.deploy.graph import openvino_op_counts
    from ghostcli.runtime.openvino import core

    torch.manual_seed(0)
    model = build_model("ghostnetv2_100", num_classes=10).eval()
    out = tmp_path / "v2_int8.xml"
    options = QuantizeOptions(calib_data="digits", subset_size=8, eval_size=8, runs=1, warmup=0, threads=1,
                              input_size=SIZE, output=out)
    result = quantize_model(model, options=options)
    assert result.calib_images == 8 and result.eval_images == 8 and result.labeled
    assert result.fake_quantize > 0 and result.int8_layers > 0
    assert 0 <= result.top1_agreement <= 1 and result.accuracy_drop is not None
    ops = openvino_op_counts(core().read_model(str(out)))
    # the DFC branch survives quantization: 14 attention gates (pool, sigmoid, up-sampling)
    assert ops["AvgPool"] == ops["Sigmoid"] == ops["Interpolate"] == 14
    assert ops["Convolution"] + ops["GroupConvolution"] == 137


def test_openvino_ir_of_ghostnetv3_has_no_training_branch(tmp_path) -> None:
    from ghostcli.runtime.openvino import core

    v3 = randomize_bn(build_model("ghostnetv3_050")).eval()
    assert has_training_branches(v3)
    out = tmp_path / "v3.xml"
    ops = export_model(v3, options=ExportOptions(output=out, format="openvino", input_size=SIZE, verify=False)).op_counts
    assert ops["Convolution"] + ops["GroupConvolution"] == 137  # GhostNetV2's at width 0.5 (training form: 309)
    assert "BatchNormInference" not in ops
    # every Add left is a bias or one of the 16 residual sums; the training form sums its branches in 220 more
    graph = core().read_model(str(out))
    sums = [op for op in graph.get_ordered_ops() if op.get_type_name() == "Add"
            and all(op.input_value(i).get_node().get_type_name() != "Constant" for i in range(2))]
    assert len(sums) == 16
    assert has_training_branches(v3)  # folded on a copy


def test_quantize_and_openvino_latency_run_the_deployed_v3_network() -> None:
    """The runtime gets GhostNetV3's folded network, not its training form (quantize, profile, --target)."""
    from ghostcli.fold import deploy_form, fold_batchnorm
    from ghostcli.layers.ghost_v3 import has_training_branches
    from ghostcli.models import build_model

    model = build_model("ghostnetv3_050", num_classes=10).eval()
    folded, report = fold_batchnorm(model)
    assert report.reparameterized > 0 and not has_training_branches(folded)
    assert has_training_branches(model)  # the caller's model is untouched
    deployed = deploy_form(model)
    assert deployed is not model and not has_training_branches(deployed)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = model(x)
        assert torch.allclose(folded(x), ref, rtol=1e-4, atol=1e-5 * float(ref.abs().max()))
    plain = build_model("ghostnetv2_100", num_classes=10).eval()
    assert deploy_form(plain) is plain


def test_training_updates_every_v3_branch_and_the_saved_model_folds(tmp_path) -> None:
    """``train ghostnetv3_050``: the re-parameterisable branches are what trains (each of them moves), the
    artifact keeps the training form, and its deployed form answers the same within float rounding."""
    from ghostcli.fold import deploy_form
    from ghostcli.layers.ghost_v3 import has_training_branches
    from ghostcli.resolve import load_artifact, resolve_model
    from ghostcli.train import TrainConfig, train_model

    from train_fixtures import make_image_folder

    data = make_image_folder(tmp_path / "data", per_class=8, size=64)
    start = resolve_model("ghostnetv3_050", options={"num_classes": 2}).model
    before = {k: v.clone() for k, v in start.state_dict().items()}
    cfg = TrainConfig(data=str(data), output=str(tmp_path / "v3.safetensors"), epochs=1, batch_size=8,
                      input_size=SIZE, device="cpu", lr=0.05, augment=False)
    train_model(cfg, lambda: resolve_model("ghostnetv3_050", options={"num_classes": 2}))
    trained = load_artifact(tmp_path / "v3.safetensors").model.eval()
    assert has_training_branches(trained)
    after = trained.state_dict()
    branches = [k for k in before if "_rpr_" in k and k.endswith("weight")]
    assert len(branches) > 100
    assert all(not torch.equal(before[k], after[k]) for k in branches)  # every branch received gradients
    x = torch.randn(2, *SIZE, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = trained(x)
        got = deploy_form(trained)(x)
    assert not has_training_branches(deploy_form(trained))
    assert torch.allclose(got, ref, rtol=1e-4, atol=1e-5 * float(ref.abs().max()))
