"""ghostify on real architectures: the paper's numbers and the torchvision model list.

(torchvision resnet50 is checked by the paper-number test, which also runs the training step and export.)
"""

from __future__ import annotations

import importlib.util
import io

import pytest
import torch
from torch import nn

from ghostcli.convert import fvcore_macs, ghostify, module_params
from ghostcli.layers import GhostModule

TORCHVISION = ["resnet18", "vgg16_bn", "mobilenet_v2", "mobilenet_v3_large", "efficientnet_b0",
               "densenet121", "regnet_y_400mf", "googlenet", "squeezenet1_0", "convnext_tiny"]


def test_resnet50_paper_numbers():
    import torchvision

    model = torchvision.models.resnet50()
    for ratio, paper_macs, params in ((2, 2.2e9, 13.95e6), (4, 1.2e9, 8.15e6)):
        g, rep = ghostify(model, ratio=ratio)
        assert rep.macs_counter == "fvcore"
        assert abs(rep.macs_before - 4.1e9) / 4.1e9 < 0.01
        assert abs(rep.macs_after - paper_macs) / paper_macs < 0.03, rep.macs_after
        assert abs(rep.params_after - params) / params < 0.005, rep.params_after  # classifier kept (2.05M)
        assert rep.params_before == 25_557_032 and rep.replaced == 52 and rep.kept == 1
        assert [r.name for r in rep.rows if r.action == "kept"] == ["conv1"]
        assert sum(isinstance(m, GhostModule) for m in g.modules()) == 52
        assert sum(isinstance(m, nn.BatchNorm2d) for m in g.modules()) == 1 + 2 * 52
    _check_model(g, 32, ghostified=True)  # output shape, training step, ONNX export (the s=4 model)


@pytest.mark.parametrize("name, params, macs", [("ghost_resnet56", 0.43e6, 63e6), ("ghost_vgg16", 7.7e6, 158e6)])
def test_cifar_zoo_matches_the_paper(name, params, macs):
    from ghostcli.models import build_model

    model = build_model(name)
    assert model.ghostify_options["ratio"] == 2 and model.ghostify_options["dw_kernel"] == 3
    assert abs(module_params(model) - params) / params < 0.05
    assert abs(fvcore_macs(model, (3, 32, 32)) - macs) / macs < 0.05
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def _outputs(out):
    return [out] if isinstance(out, torch.Tensor) else [o for o in out if isinstance(o, torch.Tensor)]


def _check_model(model: nn.Module, size: int, export_size: int | None = None, ghostified: bool = False) -> None:
    import onnx

    model.eval()
    x = torch.randn(2, 3, size, size)
    if ghostified:
        g = model
    else:
        g, rep = ghostify(model, input_size=(3, size, size))
        with torch.no_grad():
            assert g(x).shape == model(x).shape
        assert rep.replaced > 0 and rep.macs_counter == "fvcore"
        assert rep.macs_after < rep.macs_before and rep.params_after < rep.params_before
        assert module_params(g) == rep.params_after
    g.train()
    loss = sum(o.float().square().mean() for o in _outputs(g(x)))
    loss.backward()
    ghosts = {n: m for n, m in g.named_modules() if isinstance(m, GhostModule)}
    assert all(m.cheap_operation[0].weight.grad is not None for m in ghosts.values())
    g.eval()
    buf = io.BytesIO()
    es = export_size or size
    torch.onnx.export(g, torch.randn(1, 3, es, es), buf, dynamo=False, opset_version=17)
    nodes = onnx.load_from_string(buf.getvalue()).graph.node
    producer = {o: n for n in nodes for o in n.output}

    def scope(node) -> str:  # "/layer1/layer1.0/conv1/Concat" -> "layer1.0.conv1"
        return ".".join(part.rpartition(".")[2] for part in node.name.strip("/").split("/")[:-1])

    concats = sum(n.op_type == "Concat" and scope(n) in ghosts for n in nodes)
    exported = {scope(n).split(".primary_conv")[0] for n in nodes} & set(ghosts)  # not: GoogLeNet's aux heads
    merged = 4 if "densenet" in type(model).__name__.lower() else 0  # last layer of each dense block: its concat
    assert len(exported) > 0 and concats == len(exported) - merged  # is merged into the block's own concat
    for n in nodes:
        if n.op_type == "BatchNormalization":  # the Ghost modules' BNs are all folded into their convs
            assert not any(scope(n).startswith(g) for g in ghosts), n.name
            assert scope(producer[n.input[0]]) not in ghosts, n.name


@pytest.mark.parametrize("name", TORCHVISION)
def test_torchvision_models(name):
    import torchvision

    kw = {"init_weights": False} if name == "googlenet" else {}
    model = torchvision.models.get_model(name, weights=None, num_classes=10, **kw)
    _check_model(model, 32, export_size=224 if name == "vgg16_bn" else None)


@pytest.mark.skipif(importlib.util.find_spec("timm") is None, reason="timm is not installed")
def test_timm_resnet50():
    import timm

    _check_model(timm.create_model("resnet50", pretrained=False, num_classes=10), 32)
