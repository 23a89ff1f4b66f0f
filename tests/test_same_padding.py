"""The shipped converters of the Conv2d subclasses that pad in ``forward`` (TensorFlow "SAME" padding):
timm's ``Conv2dSame``, efficientnet_pytorch's and efficientnet_lite_pytorch's ``Conv2d{Static,Dynamic}SamePadding``.

The Ghost module's primary conv must compute exactly the original conv's channels it keeps, at every input size
the original accepts (odd and even: the dynamic kind pads one more pixel at the bottom/right when the total is
odd), and the table matches those classes without importing their packages.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import efficientnet_lite_pytorch.utils as lite
import pytest
import timm
import torch
import torch.fx
from efficientnet_pytorch import EfficientNet
from efficientnet_pytorch.utils import Conv2dDynamicSamePadding, Conv2dStaticSamePadding
from timm.layers.conv2d_same import Conv2dSame
from torch import nn

from ghostcli.artifacts import Recipe, save_artifact
from ghostcli.convert import DEFAULT_CONVERTERS, GhostifyOptions, KeepLayer, ghostify
from ghostcli.convert.padded_ghost import PaddedGhostModule, SamePad2d, same_padding
from ghostcli.convert.rules import ConverterTable, class_path
from ghostcli.layers import GhostModule
from ghostcli.resolve import load_artifact


def _exact(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def _ghostify_layer(layer: nn.Module, size: int) -> tuple[nn.Module, GhostModule, str]:
    """``layer`` alone, ghostified: (model, its Ghost module, the report's reason)."""
    model = nn.Sequential(layer).eval()
    g, rep = ghostify(model, input_size=(8, size, size), keep_stem=False, count_macs=False)
    assert rep.replaced == 1 and rep.rows[0].action == "ghost"
    assert isinstance(g[0], GhostModule)
    return g, g[0], rep.rows[0].reason


# (layer, Ghost module class, input sizes it runs at)
LAYERS = {
    "timm Conv2dSame 3x3 s2": (lambda: Conv2dSame(8, 12, 3, stride=2), PaddedGhostModule, [(16, 16), (15, 17)]),
    "timm Conv2dSame 2x2 s1 (odd total)": (lambda: Conv2dSame(8, 12, 2), PaddedGhostModule, [(16, 16), (15, 17)]),
    "timm Conv2dSame 3x3 dilation 2": (lambda: Conv2dSame(8, 12, 3, dilation=2), GhostModule, [(16, 16), (15, 17)]),
    "timm Conv2dSame 1x1 s2": (lambda: Conv2dSame(8, 12, 1, stride=2), GhostModule, [(16, 16), (15, 17)]),
    "Conv2dDynamicSamePadding 5x5 s2": (lambda: Conv2dDynamicSamePadding(8, 12, 5, stride=2, bias=False),
                                        PaddedGhostModule, [(16, 16), (15, 17), (9, 10)]),
    "Conv2dDynamicSamePadding 3x3 s1": (lambda: Conv2dDynamicSamePadding(8, 12, 3), GhostModule, [(16, 16), (15, 17)]),
    "lite Conv2dDynamicSamePadding 3x3 s2": (lambda: lite.Conv2dDynamicSamePadding(8, 12, 3, stride=2),
                                             PaddedGhostModule, [(16, 16), (15, 17)]),
    # static: the padding is computed for image_size, which is then the only size it is meant for
    "Conv2dStaticSamePadding 3x3 s2 at 16": (lambda: Conv2dStaticSamePadding(8, 12, 3, stride=2, image_size=16),
                                             PaddedGhostModule, [(16, 16)]),
    "Conv2dStaticSamePadding 5x5 s2 at 15": (lambda: Conv2dStaticSamePadding(8, 12, 5, stride=2, image_size=15),
                                             GhostModule, [(15, 15)]),
    "Conv2dStaticSamePadding 3x3 s1, padding 1": (
        lambda: Conv2dStaticSamePadding(8, 12, 3, image_size=16, padding=1), GhostModule, [(16, 16)]),
    "lite Conv2dStaticSamePadding 3x3 s2 at 16": (lambda: lite.Conv2dStaticSamePadding(8, 12, 3, stride=2, image_size=16),
                                                  PaddedGhostModule, [(16, 16)]),
    "lite Conv2dStaticSamePadding 1x1 (its Identity)": (
        lambda: lite.Conv2dStaticSamePadding(8, 12, 1, image_size=16), GhostModule, [(16, 16)]),
}


@pytest.mark.parametrize("case", list(LAYERS))
def test_the_primary_conv_computes_the_original_channels_exactly(case: str) -> None:
    make, ghost_type, sizes = LAYERS[case]
    torch.manual_seed(0)
    layer = make().eval()
    g, gm, reason = _ghostify_layer(layer, sizes[0][0])
    assert type(gm) is ghost_type
    assert "overrides" not in reason
    m = gm.init_channels
    for h, w in sizes:
        x = torch.randn(2, 8, h, w)
        with torch.no_grad():
            y, z = layer(x), g(x)
        assert z.shape == y.shape, (h, w)
        _exact(z[:, :m], y[:, :m])  # inherited filters on exactly the original's padded input
        assert not torch.allclose(z[:, m:], y[:, m:])  # the cheap half is new


def test_a_wrong_padding_would_be_seen() -> None:
    """The check above can fail: one pixel of padding moved from the bottom to the top changes the channels."""
    torch.manual_seed(0)
    layer = Conv2dSame(8, 12, 3, stride=2).eval()
    x = torch.randn(1, 8, 16, 16)
    shifted = nn.functional.conv2d(nn.functional.pad(x, [1, 0, 1, 0]), layer.weight, layer.bias, 2)
    assert not torch.allclose(layer(x), shifted, atol=1e-3)
    assert [same_padding(16, 3, 2, 1), same_padding(15, 3, 2, 1), same_padding(15, 5, 2, 2)] == [1, 2, 8]


def test_weights_are_inherited_as_for_a_plain_conv() -> None:
    torch.manual_seed(0)
    layer = Conv2dDynamicSamePadding(8, 12, 3, stride=2)
    model = nn.Sequential(layer).eval()
    g, rep = ghostify(model, input_size=(8, 16, 16), keep_stem=False, count_macs=False)
    gm = g[0]
    primary, cheap = gm.primary_conv[0], gm.cheap_operation[0]
    assert torch.equal(primary.weight, layer.weight[:6]) and torch.equal(primary.bias, layer.bias[:6])
    assert torch.equal(cheap.bias, layer.bias[6:])
    assert (primary.stride, primary.padding, primary.dilation) == ((2, 2), (0, 0), (1, 1))
    assert isinstance(gm.pad, SamePad2d) and gm.pad.stride == (2, 2)
    assert {"tensor": "0.primary_conv.0.weight", "source": "0.weight[:6]"} in rep.inherited


def test_efficientnet_b0_ghostifies_with_no_layer_refused() -> None:
    """efficientnet_pytorch's B0, random weights: dynamic padding (image_size=None), its stem converted too."""
    torch.manual_seed(0)
    model = EfficientNet.from_name("efficientnet-b0", image_size=None).eval()
    assert sum(type(m) is Conv2dDynamicSamePadding for m in model.modules()) == 49
    g, rep = ghostify(model, input_size=(3, 32, 32), keep_stem=False)
    kept = Counter(r.reason for r in rep.rows if r.action == "kept")
    assert kept == {"depthwise conv (already cheap)": 16}
    assert rep.replaced == 65 and rep.macs_after < 0.7 * rep.macs_before
    assert type(g._conv_stem) is PaddedGhostModule  # 3x3 stride 2: "SAME" depends on the size
    m = g._conv_stem.init_channels
    for size in (32, 33, 30):
        x = torch.randn(1, 3, size, size + 1)
        with torch.no_grad():
            assert g(x).shape == model(x).shape == (1, 1000)
            _exact(g._conv_stem(x)[:, :m], model._conv_stem(x)[:, :m])


def test_efficientnet_lite_with_static_padding() -> None:
    """efficientnet_lite_pytorch builds every conv as Conv2dStaticSamePadding for its image_size."""
    from efficientnet_lite_pytorch import EfficientNet as Lite

    torch.manual_seed(0)
    model = Lite.from_name("efficientnet-lite0", image_size=32).eval()
    assert sum(type(m).__name__ == "Conv2dStaticSamePadding" for m in model.modules()) == 49
    g, rep = ghostify(model, input_size=(3, 32, 32), keep_stem=False)
    assert not [r for r in rep.rows if r.action == "kept" and r.reason != "depthwise conv (already cheap)"]
    x = torch.randn(2, 3, 32, 32)
    m = g._conv_stem.init_channels
    with torch.no_grad():
        assert g(x).shape == model(x).shape
        _exact(g._conv_stem(x)[:, :m], model._conv_stem(x)[:, :m])


def test_timm_model_round_trips_through_an_artifact(tmp_path: Path) -> None:
    """A timm model with Conv2dSame layers: ghostify, save, load: the recipe rebuilds the same modules, bit-exact."""
    torch.manual_seed(0)
    model = timm.create_model("tf_mobilenetv3_small_minimal_100", pretrained=False).eval()
    assert sum(type(m) is Conv2dSame for m in model.modules()) == 5
    opts = GhostifyOptions(keep_stem=False)
    g, rep = ghostify(model, opts, input_size=(3, 32, 32), count_macs=False)
    assert sum(type(m) is PaddedGhostModule for m in g.modules()) == 1
    recipe = Recipe(source="timm:tf_mobilenetv3_small_minimal_100", ghostify=opts.to_dict(), input_size=[3, 32, 32])
    path = save_artifact(g.eval(), tmp_path / "m.safetensors", recipe)
    loaded = load_artifact(path).model
    assert [type(m) for m in loaded.modules()] == [type(m) for m in g.modules()]
    x = torch.randn(1, 3, 35, 34)  # another size: the dynamic padding follows it
    with torch.no_grad():
        assert torch.equal(loaded(x), g(x))


def test_the_dynamic_pad_is_one_call_in_fx_traces() -> None:
    gm = PaddedGhostModule(8, 12, 3, stride=2, pad=SamePad2d((3, 3), (2, 2), (1, 1)), padding=0)
    graph = torch.fx.symbolic_trace(gm).graph
    calls = [n.target.__name__ for n in graph.nodes if n.op == "call_function" and hasattr(n.target, "__name__")]
    assert calls.count("pad_same") == 1


class _PathConv(nn.Conv2d):
    """A conv subclass the table knows only by its path."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) * 2


class _PathConvChild(_PathConv):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) + 1


def test_a_table_matches_classes_by_path_without_importing() -> None:
    seen = []

    def convert(module: nn.Module, ctx: object) -> nn.Module:
        seen.append(type(module))
        raise KeepLayer("matched by path")

    table = ConverterTable({nn.Conv2d: lambda m, c: nn.Identity()})
    table.register(class_path(_PathConv), convert)
    table.register("not_a_loaded_package.layers.Conv", convert)
    assert class_path(_PathConv) in table and len(table) == 3
    assert _PathConv in table.types() and "not_a_loaded_package" not in sys.modules
    model = nn.Sequential(_PathConv(3, 8, 3), _PathConvChild(8, 8, 3))
    _, rep = ghostify(model, input_size=(3, 8, 8), converters=table, allow_empty=True, keep_stem=False)
    assert [r.reason for r in rep.rows] == ["matched by path",
                                            "_PathConvChild overrides _PathConv.forward (register a converter for it)"]
    assert seen == [_PathConv]
    with pytest.raises(TypeError, match="package.module.Class"):
        table.register("Conv2dSame", convert)
    assert class_path(Conv2dSame) in DEFAULT_CONVERTERS and Conv2dSame in DEFAULT_CONVERTERS.types()


def test_ghostcli_imports_none_of_those_packages() -> None:
    code = ("import sys, ghostcli.convert; from ghostcli.convert.rules import DEFAULT_CONVERTERS; "
            "assert len(DEFAULT_CONVERTERS) > 1; "
            "print(sorted(p for p in ('timm', 'efficientnet_pytorch', 'efficientnet_lite_pytorch') if p in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_calibration_fits_padded_ghost_modules() -> None:
    """ghostify --calib-data works on them: the closed-form fit sees the same padded input as the primary conv."""
    from ghostcli.calibrate.engine import CalibrateOptions, calibrate_model

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), Conv2dSame(8, 16, 3, stride=2), nn.ReLU(),
                          Conv2dSame(16, 16, 2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(16, 10)).eval()
    g, _ = ghostify(model, input_size=(1, 8, 8), count_macs=False)
    assert [type(g[i]) for i in (2, 4)] == [PaddedGhostModule, PaddedGhostModule]
    opts = CalibrateOptions(calib_data="synthetic", calib_images=64, held_out_images=64, block_steps=20,
                            network_epochs=1)
    report = calibrate_model(model, g, options=opts, input_size=(1, 8, 8))
    assert [r.name for r in report.rows] == ["2", "4"]
    for row in report.rows:
        assert row.error_init < 0.75 * row.error_before, row
