"""ghostify as a library: geometry, weight inheritance, BN folding, selection, the rules table, rebuilds."""

from __future__ import annotations

import copy
import io

import pytest
import torch
from torch import nn

from ghostcli.convert import (
    DEFAULT_CONVERTERS,
    SAME_PADDING_CONVERTERS,
    ConverterTable,
    GhostifyOptions,
    GhostifyReport,
    KeepLayer,
    ghostify,
)
from ghostcli.errors import ConversionError, UsageError
from ghostcli.layers import GhostModule

from conftest import randomize_bn


class Odd(nn.Module):
    """Non-square kernels, dilation, bias, padding='same', reflect padding, strides; some convs without BN."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.a = nn.Conv2d(8, 12, (3, 5), stride=(2, 1), padding=(1, 2), bias=True)
        self.bn_a = nn.BatchNorm2d(12)
        self.b = nn.Conv2d(12, 10, (1, 3), padding="same", dilation=(1, 2), padding_mode="reflect", bias=True)
        self.c = nn.Conv2d(10, 7, 3, padding=2, dilation=2, bias=False)  # odd channels: needs the slice
        self.bn_c = nn.BatchNorm2d(7)
        self.dw = nn.Conv2d(7, 14, 3, padding=1, groups=7)
        self.grouped = nn.Conv2d(14, 14, 1, groups=2)
        self.up = nn.ConvTranspose2d(14, 6, 2, stride=2)
        self.tiny = nn.Conv2d(6, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem(x))
        x = torch.relu(self.bn_a(self.a(x)))
        x = self.b(x)
        x = self.bn_c(self.c(x))
        x = self.grouped(self.dw(x))
        return self.tiny(self.up(x))


def _rows(report: GhostifyReport) -> dict:
    return {r.name: r for r in report.rows}


def test_geometry_is_kept_and_reasons_are_reported():
    model = randomize_bn(Odd()).eval()
    x = torch.randn(2, 3, 17, 22)
    g, rep = ghostify(model, input_size=(3, 17, 22))
    assert g(x).shape == model(x).shape == (2, 1, 18, 44)
    rows = _rows(rep)
    assert {n for n, r in rows.items() if r.action == "ghost"} == {"a", "b", "c"}
    assert rows["stem"].reason.startswith("stem")
    assert rows["dw"].reason.startswith("depthwise")
    assert rows["grouped"].reason == "grouped conv (groups=2)"
    assert rows["up"].reason.startswith("transposed")
    assert rows["tiny"].reason == "1 output channels < ratio 2"
    assert rows["a"].bn == "bn_a" and rows["c"].bn == "bn_c" and rows["b"].bn is None
    assert isinstance(g.bn_a, nn.Identity) and isinstance(g.bn_c, nn.Identity)
    pa = g.a.primary_conv[0]
    assert (pa.kernel_size, pa.stride, pa.padding, pa.out_channels) == ((3, 5), (2, 1), (1, 2), 6)
    pb = g.b.primary_conv[0]
    assert (pb.padding, pb.dilation, pb.padding_mode, pb.bias is not None) == ("same", (1, 2), "reflect", True)
    assert isinstance(g.b.primary_conv[1], nn.Identity)  # no BN after b: biased convs instead
    assert g.c.needs_slice and g.c.init_channels == 4
    assert rep.params_after < rep.params_before and rep.macs_after < rep.macs_before
    # per-row MACs: a = 12 out x 9x22 positions x 8 in x 15 taps before; after primary 6 ch + cheap 6 ch x 9 taps
    assert rows["a"].macs_before == 12 * 9 * 22 * 8 * 15
    assert rows["a"].macs_after == 6 * 9 * 22 * 8 * 15 + 6 * 9 * 22 * 9
    g.train()
    g(x).square().mean().backward()
    assert g.a.cheap_operation[0].weight.grad is not None


def test_no_stem_rule_and_selection_globs():
    model = Odd()
    _, rep = ghostify(model, keep_stem=False, input_size=(3, 16, 16))
    assert _rows(rep)["stem"].action == "ghost"
    _, rep = ghostify(model, include=["a", "c*"], exclude=["c"], input_size=(3, 16, 16))
    rows = _rows(rep)
    assert [n for n, r in rows.items() if r.action == "ghost"] == ["a"]
    assert rows["b"].reason == "not matched by `include`"
    assert rows["c"].reason == "excluded by `exclude` c"
    _, rep = ghostify(model, min_channels=11, input_size=(3, 16, 16))
    assert [r.name for r in rep.rows if r.action == "ghost"] == ["a"]
    assert _rows(rep)["b"].reason == "10 output channels < `min_channels` 11"
    _, rep = ghostify(model, exclude=["zzz*"], input_size=(3, 16, 16))
    assert rep.warnings == ["`exclude` zzz* matches no conv layer"]


def test_weight_inheritance_is_exact_for_primary_channels():
    torch.manual_seed(1)
    model = randomize_bn(Odd(), seed=3).eval()
    g, rep = ghostify(model, input_size=(3, 16, 16))
    x = torch.randn(2, 8, 16, 16)
    with torch.no_grad():
        want = model.bn_a(model.a(x))  # conv with bias + BN: the bias is folded into the BN
        got = g.a(x)
    m = g.a.init_channels
    torch.testing.assert_close(got[:, :m], want[:, :m], rtol=1e-5, atol=1e-5)
    cheap_bn = g.a.cheap_operation[1]
    torch.testing.assert_close(cheap_bn.weight, model.bn_a.weight[m:])
    torch.testing.assert_close(cheap_bn.running_var, model.bn_a.running_var[m:])
    # conv without BN: primary conv keeps filters and bias
    torch.testing.assert_close(g.b.primary_conv[0].weight, model.b.weight[:5])
    torch.testing.assert_close(g.b.primary_conv[0].bias, model.b.bias[:5])
    # untouched layers keep their values and the original model is not modified
    torch.testing.assert_close(g.dw.weight, model.dw.weight)
    assert isinstance(model.a, nn.Conv2d)
    names = {d["tensor"]: d["source"] for d in rep.inherited}
    assert names["a.primary_conv.0.weight"] == "a.weight[:6]"
    assert names["a.primary_conv.1.running_mean"] == "bn_a.running_mean[0:6] - a.bias"
    assert "a.cheap_operation.0.weight" not in names


def test_onnx_export_folds_every_batchnorm_exactly():
    import onnx
    import onnxruntime as ort
    import torchvision

    model = randomize_bn(torchvision.models.resnet18(num_classes=10)).eval()
    g, _ = ghostify(model, input_size=(3, 32, 32))
    randomize_bn(g, seed=5)
    x = torch.randn(1, 3, 32, 32)
    buf = io.BytesIO()
    torch.onnx.export(g, x, buf, dynamo=False, opset_version=17, input_names=["x"])
    proto = onnx.load_from_string(buf.getvalue())
    ops = [n.op_type for n in proto.graph.node]
    assert "BatchNormalization" not in ops and "Slice" not in ops
    assert ops.count("Concat") == 19
    sess = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"x": x.numpy()})[0]
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(got), g(x), rtol=1e-4, atol=1e-4)


def test_nothing_eligible_and_already_ghostified():
    dw_only = nn.Sequential(nn.Conv2d(3, 3, 3, groups=3), nn.Conv2d(3, 3, 3, groups=3))
    with pytest.raises(ConversionError, match="nothing to ghostify"):
        ghostify(dw_only, input_size=(3, 8, 8))
    _, rep = ghostify(dw_only, input_size=(3, 8, 8), allow_empty=True)
    assert rep.replaced == 0 and rep.kept == 2
    g, _ = ghostify(Odd(), input_size=(3, 8, 8))
    with pytest.raises(ConversionError, match="already ghostified"):
        ghostify(g)
    with pytest.raises(UsageError, match="^`ratio` must be an integer >= 2, got 1$"):
        ghostify(Odd(), ratio=1)
    with pytest.raises(UsageError, match="^`dw_kernel` must be"):  # the library names the field; the CLI its flag
        ghostify(Odd(), dw_kernel=2)


def test_options_round_trip_and_determinism():
    opts = GhostifyOptions(ratio=3, dw_kernel=5, include=("a",), exclude=("c",), min_channels=4, keep_stem=False,
                           min_fan_in=9)
    assert GhostifyOptions.from_dict(opts.to_dict()) == opts
    a, ra = ghostify(Odd(), input_size=(3, 12, 12), inherit_weights=False, **opts.to_dict())
    b, rb = ghostify(Odd(), input_size=(3, 20, 20), **opts.to_dict())
    assert [(k, v.shape) for k, v in a.state_dict().items()] == [(k, v.shape) for k, v in b.state_dict().items()]
    assert ra.options == opts.to_dict() and rb.inherited and not ra.inherited


def test_register_converter_extends_the_table():
    class MyConv(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(4, 8, 3, padding=1)

        def forward(self, x):
            return self.conv(x)

    class ShiftedConv(nn.Conv2d):  # overrides forward: must not be converted as a plain Conv2d
        def forward(self, x):
            return super().forward(x) + 1

    def convert(module, ctx):
        if ctx.ratio > 2:
            raise KeepLayer("MyConv only at ratio 2")
        return GhostModule(4, 8, 3, ratio=ctx.ratio, relu=False, norm=False)

    model = nn.Sequential(nn.Conv2d(3, 4, 1), MyConv(), ShiftedConv(8, 8, 1))
    g, rep = ghostify(model, input_size=(3, 8, 8), converters={MyConv: convert})
    rows = _rows(rep)
    assert isinstance(g[1], GhostModule) and rows["1"].action == "ghost" and rows["1"].type == "MyConv"
    assert "1.conv" not in rows  # traced as a leaf: its inner conv is not a separate row
    assert rows["2"].reason == "ShiftedConv overrides Conv2d.forward (register a converter for it)"
    _, rep = ghostify(model, ratio=4, input_size=(3, 8, 8), allow_empty=True, converters={MyConv: convert})
    assert _rows(rep)["1"].reason == "MyConv only at ratio 2"
    # the per-call entries never reach the default table: the next call does not know MyConv
    assert MyConv not in DEFAULT_CONVERTERS
    _, rep = ghostify(model, input_size=(3, 8, 8), allow_empty=True)
    assert _rows(rep)["1.conv"].action == "ghost" and "1" not in _rows(rep)


def test_a_converter_table_replaces_the_default_one_for_one_call():
    table = ConverterTable()

    @table.register(nn.Conv2d)
    def keep_all(conv, ctx):
        raise KeepLayer("my table keeps every conv")

    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 3))
    _, rep = ghostify(model, input_size=(3, 8, 8), converters=table, allow_empty=True, keep_stem=False)
    assert [r.reason for r in rep.rows] == ["my table keeps every conv"] * 2
    table.unregister(nn.Conv2d)  # ghostify worked on a copy: changing the table later changes nothing
    assert len(table) == 0 and set(DEFAULT_CONVERTERS) == {nn.Conv2d, *SAME_PADDING_CONVERTERS}
    _, rep = ghostify(model, input_size=(3, 8, 8), keep_stem=False)
    assert rep.replaced == 2
    with pytest.raises(TypeError, match="nn.Module subclass"):
        table.register(int, keep_all)


def test_untraceable_model_uses_registration_order():
    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
            self.bn1 = nn.BatchNorm2d(8)
            self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
            self.bn2 = nn.BatchNorm2d(8)

        def forward(self, x):
            x = self.bn1(self.conv1(x))
            if x.sum() > 0:  # data-dependent control flow: torch.fx cannot trace this
                x = x * 2
            return self.bn2(self.conv2(x))

    g, rep = ghostify(Branchy(), input_size=(3, 8, 8))
    assert rep.graph == "registration-order" and "torch.fx" in rep.warnings[0]
    rows = _rows(rep)
    assert rows["conv1"].action == "kept" and rows["conv2"].bn == "bn2"
    assert isinstance(g.bn2, nn.Identity) and isinstance(g.bn1, nn.BatchNorm2d)


class ConvBnRelu(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.conv = nn.Conv2d(8, 16, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(16)
        self.act = nn.ReLU(inplace=True)
        self.head = nn.Conv2d(16, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.act(self.bn(self.conv(self.stem(x)))))


def test_single_use_relu_moves_inside_the_module_exactly_for_primary_channels():
    model = randomize_bn(ConvBnRelu(), seed=5).eval()
    g, rep = ghostify(model, input_size=(3, 12, 12))
    assert isinstance(g.act, nn.Identity)
    assert isinstance(g.conv.primary_conv[2], nn.ReLU) and isinstance(g.conv.cheap_operation[2], nn.ReLU)
    assert "ReLU moved inside" in _rows(rep)["conv"].reason
    x = torch.randn(2, 8, 12, 12)
    with torch.no_grad():
        pre = model.bn(model.conv(x))  # the unmodified model (ghostify worked on a copy)
        want = model.act(pre.clone())
        got = g.conv(x)
        cheap = g.conv.cheap_operation
        cheap_pre = cheap[1](cheap[0](got[:, :8]))
    assert (pre[:, :8] < 0).any() and (cheap_pre < 0).any()  # so both comparisons below need the ReLUs
    torch.testing.assert_close(got[:, :8], want[:, :8])
    # the ghost channels: the cheap op reads the activated intrinsic maps and applies its own ReLU
    torch.testing.assert_close(got[:, 8:], torch.relu(cheap_pre))


def _torchvision_forward(block: nn.Module, cls: type) -> nn.Module:
    """A copy of a fused block that runs torchvision's own ``cls.forward``, with every ReLU call."""
    ref = copy.deepcopy(block)
    ref.__class__ = cls
    return ref


def test_torchvision_resnet_blocks_drop_the_shared_relu_calls():
    import torchvision
    from torchvision.models.resnet import BasicBlock

    model = randomize_bn(torchvision.models.resnet18(num_classes=10), seed=2).eval()
    g, rep = ghostify(model, input_size=(3, 32, 32))
    block = g.layer1[0]
    assert type(block).__name__ == "GhostReluBasicBlock" and isinstance(block, BasicBlock)
    assert isinstance(block.conv1.primary_conv[2], nn.ReLU) and isinstance(block.conv2.primary_conv[2], nn.Identity)
    assert sum("ReLU moved inside" in r.reason for r in rep.rows) == 8
    x = torch.randn(1, 64, 8, 8)
    orig = model.layer1[0]  # unmodified: ghostify worked on a copy
    m = block.conv1.init_channels
    with torch.no_grad():
        # the fused block computes what torchvision's BasicBlock.forward (ReLU after bn1 too) computes
        assert torch.equal(block(x), _torchvision_forward(block, BasicBlock)(x))
        # and conv1's intrinsic maps are the original conv1 -> bn1 -> ReLU channels
        pre = orig.bn1(orig.conv1(x))
        assert (pre[:, :m] < 0).any()
        torch.testing.assert_close(block.conv1(x)[:, :m], torch.relu(pre)[:, :m])
    g2, _ = ghostify(torchvision.models.resnet18(num_classes=10), input_size=(3, 32, 32), inherit_weights=False)
    assert list(g2.state_dict()) == list(g.state_dict())


def test_min_fan_in_keeps_low_fan_in_convs_and_the_block_keeps_its_own_relu():
    import torchvision

    model = randomize_bn(torchvision.models.resnet50(num_classes=10), seed=3).eval()
    g, rep = ghostify(model, input_size=(3, 32, 32), min_fan_in=128)
    kept = sorted(r.name for r in rep.rows if r.reason == "fan-in 64 (k*k*in) < `min_fan_in` 128")
    assert kept == ["layer1.0.conv1", "layer1.0.conv3", "layer1.0.downsample.0", "layer1.1.conv3", "layer1.2.conv3"]
    assert rep.options["min_fan_in"] == 128
    block = g.layer1[0]  # conv1 kept dense, conv2 a Ghost module with the ReLU inside
    assert isinstance(block.conv1, nn.Conv2d) and isinstance(block.conv2.primary_conv[2], nn.ReLU)
    assert block.relu_inside == frozenset({"2"}) and g.layer1[1].relu_inside == frozenset({"1", "2"})
    from torchvision.models.resnet import Bottleneck

    x = torch.randn(2, 64, 8, 8)
    with torch.no_grad():  # torchvision's Bottleneck.forward: a ReLU after bn1 (conv1 kept) and after bn2
        assert torch.equal(block(x), _torchvision_forward(block, Bottleneck)(x))
        assert (block.bn1(block.conv1(x)) < 0).any()  # the ReLU after the kept conv1 matters
    with pytest.raises(UsageError, match="^`min_fan_in` must be"):
        ghostify(model, min_fan_in=-1)


class ForwardBN(nn.BatchNorm2d):  # computes something else than a BatchNorm: never folded or absorbed
    def forward(self, x):
        return super().forward(x) * 2


class PlainSubBN(nn.BatchNorm2d):  # a subclass that keeps BatchNorm2d.forward: pairs like BatchNorm2d
    pass


class ShiftConv(nn.Conv2d):  # overrides forward: folding it into a plain conv would lose the shift
    def forward(self, x):
        return super().forward(x) + 1


class RuleCases(nn.Module):
    """Where the two old rules (fx._pairable for ghostify, fold._compatible for export) disagreed. The old
    tracers could not trace the BatchNorm subclasses: old ghostify paired only ``c`` (registration order),
    old export folding nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn_a = nn.BatchNorm2d(8, affine=False)  # old: folded for export, not absorbed by ghostify
        self.b = nn.Conv2d(8, 8, 3, padding=1)
        self.bn_b = ForwardBN(8)  # old: folded for export (isinstance), not absorbed by ghostify (exact type)
        self.c = ShiftConv(8, 8, 1)
        self.bn_c = nn.BatchNorm2d(8)  # old: folded for export (the shift was lost), paired by ghostify
        self.d = nn.Conv2d(8, 8, 1)
        self.bn_d = PlainSubBN(8)  # old: folded for export, not absorbed by ghostify (exact type)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn_a(self.a(x)))
        x = torch.relu(self.bn_b(self.b(x)))
        x = self.bn_c(self.c(x))
        return self.bn_d(self.d(x))


class TraceableCases(nn.Module):
    """Traceable by the old tracers too: old export folding folded ``a -> bn_a`` (no affine parameters),
    old ghostify paired nothing (it needed affine BNs)."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn_a = nn.BatchNorm2d(8, affine=False)
        self.c = ShiftConv(8, 8, 1)
        self.bn_c = nn.BatchNorm2d(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn_c(self.c(torch.relu(self.bn_a(self.a(x)))))


class UntraceablePairs(nn.Module):
    """Conv/BN held as attributes, untraceable: old export folding (nn.Sequential neighbours only) folded
    nothing, old ghostify (registration order) paired both."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn1(self.conv1(x))
        if float(x.sum()) > -1e9:  # data-dependent: torch.fx cannot trace this
            x = torch.relu(x)
        return self.bn2(self.conv2(x))


@pytest.mark.parametrize("make, method, pairs", [
    (RuleCases, "fx", {"a": "bn_a", "d": "bn_d"}),
    (TraceableCases, "fx", {"a": "bn_a"}),
    (UntraceablePairs, "registration-order", {"conv1": "bn1", "conv2": "bn2"}),
])
def test_ghostify_and_export_folding_use_one_conv_bn_rule(make, method, pairs):
    from ghostcli.fold import fold_batchnorm
    from ghostcli.fx import conv_bn_pairs

    model = randomize_bn(make(), seed=4).eval()
    info = conv_bn_pairs(model)
    assert (info.method, info.bn_after) == (method, pairs)
    # export folding folds exactly these pairs, and the folded model computes the same function
    folded, fold = fold_batchnorm(model)
    bns = {n for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)}
    assert bns - set(fold.unfolded) == set(pairs.values()) and fold.folded == len(pairs)
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), atol=1e-5, rtol=1e-5)
    # ghostify absorbs exactly these BatchNorms (every dense conv is eligible here)
    g, rep = ghostify(model, keep_stem=False, input_size=(3, 8, 8))
    assert {r.name: r.bn for r in rep.rows if r.bn} == pairs
    for conv, bn in pairs.items():  # the absorbed BN's first channels are reproduced exactly
        m = getattr(g, conv).init_channels
        inp = torch.randn(2, getattr(model, conv).in_channels, 8, 8)
        with torch.no_grad():
            want = getattr(model, bn)(getattr(model, conv)(inp))[:, :m]
            got = getattr(g, conv)(inp)[:, :m]
        relu_inside = isinstance(getattr(g, conv).primary_conv[2], nn.ReLU)
        torch.testing.assert_close(got, torch.relu(want) if relu_inside else want, rtol=1e-5, atol=1e-5)


def test_output_shapes_of_a_detector_leave_out_the_detection_count() -> None:
    """ghostify's output-shape check: a detector's per-image dicts hold as many rows as it detected, which depends on
    the weights (a ghostified RetinaNet detects other things), so only the per-detection shape must stay."""
    from ghostcli.convert.report import _shapes

    before = [{"boxes": torch.zeros(3, 4), "scores": torch.zeros(3)}, {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0)}]
    after = [{"boxes": torch.zeros(7, 4), "scores": torch.zeros(7)}, {"boxes": torch.zeros(1, 4), "scores": torch.zeros(1)}]
    assert _shapes(before) == _shapes(after) == [(4,), (), (4,), ()]
    assert _shapes({"out": torch.zeros(1, 21, 8, 8)}) == [(1, 21, 8, 8)]  # a segmentation dict keeps every dimension
    assert _shapes((torch.zeros(2, 3), [torch.zeros(5)])) == [(2, 3), (5,)]


def test_random_weights_are_the_same_on_every_run_and_leave_the_global_rng_alone():
    from ghostcli.resolve import resolve_model

    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    first, second = resolve_model("resnet20").model, resolve_model("resnet20").model
    assert torch.equal(torch.rand(3), expected_next)  # the caller's RNG stream is untouched
    for (name, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    assert first.conv1.weight.std() > 0  # random, not zeros
    g1, _ = ghostify(first, input_size=(3, 8, 8), inherit_weights=False, count_macs=False)
    torch.rand(5)  # moving the global RNG does not change what ghostify draws
    g2, _ = ghostify(first, input_size=(3, 8, 8), inherit_weights=False, count_macs=False)
    for (name, a), (_, b) in zip(g1.state_dict().items(), g2.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    from ghostcli.layers.seed import init_seed

    with init_seed(1):  # `train --seed 1`: another draw, and the same one every time
        other, again = resolve_model("resnet20").model, resolve_model("resnet20").model
    assert not torch.equal(other.conv1.weight, first.conv1.weight)
    assert torch.equal(other.conv1.weight, again.conv1.weight)
    assert torch.equal(resolve_model("resnet20").model.conv1.weight, first.conv1.weight)  # the default seed again
