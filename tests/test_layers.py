"""GhostModule, GhostBottleneck and SqueezeExcite against the paper's definitions."""

from __future__ import annotations

import io
import math

import onnx
import pytest
import torch
from fvcore.nn import FlopCountAnalysis
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from ghostcli.layers import GhostBottleneck, GhostModule, SqueezeExcite, make_divisible


def expected_params(cin: int, cout: int, k: int, s: int, d: int) -> int:
    m = math.ceil(cout / s)
    new = m * (s - 1)
    return cin * m * k * k + 2 * m + new * d * d + 2 * new


@pytest.mark.parametrize("ratio", [2, 3, 4, 5])
@pytest.mark.parametrize("cout", [16, 13, 7])
@pytest.mark.parametrize("k,stride", [(1, 1), (3, 2)])
def test_ghost_module_shape_and_params(ratio: int, cout: int, k: int, stride: int) -> None:
    if cout < ratio:
        pytest.skip("out_ch < ratio is rejected, tested separately")
    mod = GhostModule(5, cout, kernel_size=k, ratio=ratio, dw_kernel=3, stride=stride).eval()
    y = mod(torch.randn(2, 5, 9, 11))
    assert y.shape == (2, cout, math.ceil(9 / stride), math.ceil(11 / stride))
    assert sum(p.numel() for p in mod.parameters()) == expected_params(5, cout, k, ratio, 3)
    assert mod.init_channels == math.ceil(cout / ratio)
    assert mod.needs_slice == (math.ceil(cout / ratio) * ratio != cout)


@given(
    cin=st.integers(1, 24), cout=st.integers(2, 40), ratio=st.integers(2, 6),
    k=st.sampled_from([1, 3, 5]), d=st.sampled_from([1, 3, 5, 7]), stride=st.integers(1, 2),
)
@settings(max_examples=40, deadline=None)
def test_ghost_module_property(cin: int, cout: int, ratio: int, k: int, d: int, stride: int) -> None:
    if cout < ratio:
        with pytest.raises(ValueError):  # a plain nn.Module: ValueError, no CLI error type
            GhostModule(cin, cout, k, ratio, d, stride)
        return
    mod = GhostModule(cin, cout, k, ratio, d, stride).eval()
    y = mod(torch.randn(1, cin, 8, 8))
    assert y.shape == (1, cout, math.ceil(8 / stride), math.ceil(8 / stride))
    assert sum(p.numel() for p in mod.parameters()) == expected_params(cin, cout, k, ratio, d)


def test_ghost_module_output_is_concat_of_primary_and_cheap() -> None:
    mod = GhostModule(4, 10, ratio=3, relu=True).eval()
    x = torch.randn(1, 4, 6, 6)
    x1 = mod.primary_conv(x)
    x2 = mod.cheap_operation(x1)
    assert torch.equal(mod(x), torch.cat([x1, x2], 1)[:, :10])
    assert isinstance(mod.primary_conv[2], nn.ReLU) and isinstance(mod.cheap_operation[2], nn.ReLU)
    cheap = mod.cheap_operation[0]
    assert cheap.groups == mod.init_channels == 4 and cheap.out_channels == 8 and cheap.kernel_size == (3, 3)


@pytest.mark.parametrize("ratio,cout", [(2, 16), (2, 13), (3, 18), (4, 13)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_pointwise_cheap_op_runs_as_multiply_add_with_the_conv_result(ratio: int, cout: int,
                                                                       channels_last: bool) -> None:
    torch.manual_seed(0)
    mod = GhostModule(6, cout, kernel_size=3, ratio=ratio, dw_kernel=1, norm=False).train()
    x = torch.randn(2, 6, 9, 9, requires_grad=True)
    if channels_last:
        mod, x = mod.to(memory_format=torch.channels_last), x.detach().to(memory_format=torch.channels_last)
    x1 = mod.primary_conv(x)
    expected = torch.cat([x1, mod.cheap_operation(x1)], 1)[:, :cout]
    calls: list[int] = []
    mod.cheap_operation[0].register_forward_hook(lambda m, a, o: calls.append(1))
    hooked = mod(x)  # hooked: the conv itself runs, so its hook sees it
    assert calls == [1] and torch.allclose(hooked, expected, atol=1e-6)
    fast = GhostModule(6, cout, kernel_size=3, ratio=ratio, dw_kernel=1, norm=False)
    fast.load_state_dict(mod.state_dict())
    fast = fast.to(memory_format=torch.channels_last) if channels_last else fast

    def not_called(*args: object) -> None:
        raise AssertionError("the 1x1 depthwise conv ran as a conv")

    conv_forward = fast.cheap_operation[0].forward
    fast.cheap_operation[0].forward = not_called  # type: ignore[method-assign]
    y = fast(x)
    fast.cheap_operation[0].forward = conv_forward  # type: ignore[method-assign]
    assert torch.allclose(y, expected, atol=1e-6)
    y.square().sum().backward()  # gradients reach the cheap op's weights and bias through the multiply-add
    assert fast.cheap_operation[0].weight.grad is not None and fast.cheap_operation[0].bias.grad is not None
    ops = _onnx_ops(fast, torch.randn(1, 6, 9, 9))
    # exported as the multiply-add at ratio 2; above, as the conv (a channel repeat would be a Gather/Tile subgraph)
    assert (ops.count("Conv"), "Mul" in ops) == ((1, True) if ratio == 2 else (2, False))
    from ghostcli.analysis.macs import count_macs

    count = count_macs(fast.eval(), torch.randn(1, 6, 9, 9))  # MAC counting sees the conv's multiply-adds
    m = fast.init_channels
    assert count.conv_linear == 81 * (6 * 9 * m + (ratio - 1) * m)


def test_relu_is_optional() -> None:
    mod = GhostModule(4, 8, relu=False)
    assert isinstance(mod.primary_conv[2], nn.Identity) and isinstance(mod.cheap_operation[2], nn.Identity)


def _onnx_ops(model: nn.Module, x: torch.Tensor) -> list[str]:
    buf = io.BytesIO()
    torch.onnx.export(model.eval(), (x,), buf, opset_version=17, dynamo=False)
    return [n.op_type for n in onnx.load_from_string(buf.getvalue()).graph.node]


def test_no_slice_when_channels_divide_evenly() -> None:
    x = torch.randn(1, 8, 8, 8)
    assert "Slice" not in _onnx_ops(GhostModule(8, 16, ratio=2), x)
    assert "Slice" not in _onnx_ops(GhostModule(8, 18, ratio=3), x)
    assert "Slice" in _onnx_ops(GhostModule(8, 15, ratio=2), x)


@pytest.mark.parametrize("ratio", [2, 3, 4])
def test_macs_about_one_over_ratio(ratio: int) -> None:
    x = torch.randn(1, 64, 16, 16)
    plain = FlopCountAnalysis(nn.Conv2d(64, 128, 3, padding=1, bias=False), x).by_operator()["conv"]
    ghost = FlopCountAnalysis(GhostModule(64, 128, kernel_size=3, ratio=ratio).eval(), x).by_operator()["conv"]
    m = math.ceil(128 / ratio)
    assert ghost == (64 * 9 * m + 9 * m * (ratio - 1)) * 256
    assert ghost / plain == pytest.approx(1 / ratio, rel=0.05)


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"ratio": 1}, ValueError, "^`ratio` \\(the Ghost ratio\\) must be an integer >= 2, got 1$"),
        ({"ratio": 2.5}, TypeError, "^`ratio`"),
        ({"dw_kernel": 2}, ValueError, "^`dw_kernel` .* odd"),
        ({"dw_kernel": 0}, ValueError, "odd"),
        ({"dw_kernel": -3}, ValueError, "odd"),
        ({"dw_kernel": 3.0}, TypeError, "odd"),
        ({"padding_mode": "mirror"}, ValueError, "^`padding_mode` must be one of"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        GhostModule(8, 16, **kwargs)


def test_out_channels_below_ratio_rejected() -> None:
    with pytest.raises(ValueError, match="^`out_ch` \\(3\\) must be at least the ratio \\(4\\)$"):
        GhostModule(8, 3, ratio=4)


def test_geometry_options_reach_primary_conv() -> None:
    mod = GhostModule(3, 8, kernel_size=(3, 5), stride=(2, 1), padding=(2, 4), dilation=(2, 2),
                      padding_mode="reflect", bias=True, norm=False)
    conv = mod.primary_conv[0]
    assert conv.kernel_size == (3, 5) and conv.stride == (2, 1) and conv.padding == (2, 4)
    assert conv.dilation == (2, 2) and conv.padding_mode == "reflect" and conv.bias is not None
    assert isinstance(mod.primary_conv[1], nn.Identity) and mod.cheap_operation[0].bias is not None
    ref = nn.Conv2d(3, 8, (3, 5), (2, 1), (2, 4), (2, 2), padding_mode="reflect")
    x = torch.randn(1, 3, 17, 19)
    assert mod(x).shape == ref(x).shape


def test_make_divisible_matches_official_rule() -> None:
    assert make_divisible(16 * 0.5, 4) == 8
    assert make_divisible(10, 4) == 12  # rounds to nearest (int(10 + 2) // 4 * 4 = 12)
    assert make_divisible(1, 4) == 4  # at least the divisor
    assert make_divisible(18, 8) == 24  # 16 would lose >10%: add a divisor
    assert make_divisible(72 * 0.25, 4) == 20


def test_squeeze_excite() -> None:
    se = SqueezeExcite(72)
    assert se.conv_reduce.out_channels == make_divisible(72 * 0.25, 4) == 20
    assert se.conv_reduce.bias is not None and se.conv_expand.bias is not None
    x = torch.randn(2, 72, 5, 5)
    s = se.conv_expand(torch.relu(se.conv_reduce(x.mean((2, 3), keepdim=True))))
    assert torch.allclose(se(x), x * torch.nn.functional.relu6(s + 3) / 6, atol=1e-6)


def test_bottleneck_identity_and_projection() -> None:
    same = GhostBottleneck(16, 48, 16).eval()
    assert len(same.shortcut) == 0 and not hasattr(same, "conv_dw") and same.se is None
    x = torch.randn(1, 16, 8, 8)
    assert same(x).shape == x.shape
    down = GhostBottleneck(16, 72, 24, dw_kernel_size=5, stride=2, se_ratio=0.25).eval()
    assert down.conv_dw.stride == (2, 2) and down.conv_dw.groups == 72 and down.se is not None
    assert [type(m) for m in down.shortcut] == [nn.Conv2d, nn.BatchNorm2d, nn.Conv2d, nn.BatchNorm2d]
    assert down.shortcut[0].groups == 16 and down.shortcut[2].kernel_size == (1, 1)
    assert isinstance(down.ghost1.primary_conv[2], nn.ReLU) and isinstance(down.ghost2.primary_conv[2], nn.Identity)
    assert down(x).shape == (1, 24, 4, 4)
    with pytest.raises(ValueError, match="`stride` must be 1 or 2"):
        GhostBottleneck(16, 48, 16, stride=3)
