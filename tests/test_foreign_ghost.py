"""Ghost networks of other code bases (timm, the official code) are Ghost networks; the GhostNet family's extra ops
are counted.

ghostify recognises timm's Ghost module / bottleneck classes (and the official code's, by class name) as it does
its own: the CLI refuses the model as already ghostified, the library keeps the convs inside each Ghost module
with the module named in the reason. Fast by design: small inputs, one intra-op thread, no MAC counting in ghostify.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ghostcli.artifacts import Recipe
from ghostcli.cli.app import app
from ghostcli.convert import ghostify
from ghostcli.convert.select import enclosing_ghost, selection_reason
from ghostcli.loaded import LoadedModel, foreign_ghost_class

timm = pytest.importorskip("timm")

pytestmark = pytest.mark.usefixtures("one_thread")


def _loaded(model: nn.Module, name: str = "m") -> LoadedModel:
    return LoadedModel(model=model, recipe=Recipe(source=f"timm:{name}"), input_size=(3, 32, 32), name=name)


@pytest.mark.parametrize(("name", "label"), [
    ("ghostnet_100", "timm GhostModule"),
    ("ghostnetv2_100", "timm GhostModuleV2"),
    ("ghostnetv3_050", "timm GhostModuleV3"),
    ("repghostnet_050", "timm RepGhostModule"),
])
def test_timm_ghost_networks_are_ghostified(name: str, label: str) -> None:
    model = timm.create_model(name, num_classes=10)
    labels = {foreign_ghost_class(m) for m in model.modules()} - {None}
    assert label in labels
    assert any(foreign_ghost_class(m, blocks=True) for m in model.modules() if "Bottleneck" in type(m).__name__)
    loaded = _loaded(model, name)
    assert loaded.is_ghostified and label in loaded.ghost_classes
    assert any("Bottleneck" in c for c in loaded.ghost_classes)


def test_plain_models_are_not() -> None:
    model = timm.create_model("resnet10t", num_classes=10)
    assert not _loaded(model).is_ghostified
    assert all(foreign_ghost_class(m, blocks=True) is None for m in model.modules())


def test_ghostcli_classes_are_not_foreign() -> None:
    from ghostcli.layers import GhostBottleneck, GhostModule, GhostModuleV2

    for m in (GhostModule(8, 8), GhostModuleV2(8, 8), GhostBottleneck(8, 16, 8)):
        assert foreign_ghost_class(m, blocks=True) is None
    assert _loaded(nn.Sequential(GhostModuleV2(8, 8))).ghost_classes == ["GhostModuleV2"]


class GhostModuleV2(nn.Module):
    """Stands for the official ``ghostnetv2_torch.GhostModuleV2`` (recognised by its class name)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.primary_conv = nn.Sequential(nn.Conv2d(c, c // 2, 1, bias=False), nn.BatchNorm2d(c // 2), nn.ReLU())
        self.cheap_operation = nn.Sequential(nn.Conv2d(c // 2, c // 2, 3, 1, 1, groups=c // 2, bias=False),
                                             nn.BatchNorm2d(c // 2), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.primary_conv(x)
        return torch.cat([y, self.cheap_operation(y)], dim=1)


class MyGhostModule(GhostModuleV2):
    """A subclass keeps being a Ghost module."""


def test_official_class_names_and_subclasses_are_recognised() -> None:
    label = foreign_ghost_class(GhostModuleV2(8))
    assert label is not None and label.endswith("test_foreign_ghost.GhostModuleV2")
    assert foreign_ghost_class(MyGhostModule(8)) == label


def test_library_keeps_the_convs_inside_a_foreign_ghost_module() -> None:
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), GhostModuleV2(16),
                          nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU()).eval()
    _, report = ghostify(model, input_size=(3, 16, 16), count_macs=False)
    rows = {r.name: r for r in report.rows}
    assert rows["3.primary_conv.0"].action == "kept"
    assert rows["3.primary_conv.0"].reason.startswith("part of a Ghost module (")
    assert rows["3.primary_conv.0"].reason.endswith("test_foreign_ghost.GhostModuleV2)")
    assert rows["4"].action == "ghost"


def test_library_ghostify_of_timm_ghostnet_leaves_its_ghost_modules_alone() -> None:
    """Before, ghostify replaced the convs inside timm's Ghost modules (53 of ghostnet_100's 95 convs)."""
    model = timm.create_model("ghostnet_050", num_classes=10).eval()
    gmodel, report = ghostify(model, input_size=(3, 32, 32), count_macs=False)
    inside = [r for r in report.rows if r.reason == "part of a Ghost module (timm GhostModule)"]
    assert len(inside) == 64 and all(r.action == "kept" for r in inside)  # 32 modules x (primary, cheap)
    ghost_names = {n for n, m in model.named_modules() if foreign_ghost_class(m)}
    assert all(not r.name.startswith(tuple(g + "." for g in ghost_names)) for r in report.rows if r.action == "ghost")
    primary = dict(gmodel.named_modules())["blocks.1.0.ghost1.primary_conv.0"]
    assert type(primary) is nn.Conv2d  # still the dense conv, not a GhostModule


def test_selection_reason_names_the_class() -> None:
    assert enclosing_ghost("a.b.conv", {"a": "", "x": "timm GhostModule"}) == ""
    assert enclosing_ghost("x.conv", {"a": "", "x": "timm GhostModule"}) == "timm GhostModule"
    assert enclosing_ghost("ab.conv", {"a": ""}) is None
    kw = {"include": (), "exclude": (), "is_stem": False, "keep_stem": True}
    assert selection_reason("x.conv", in_ghost=True, **kw) == "part of a Ghost module"
    assert selection_reason("x.conv", in_ghost=True, ghost_class="timm GhostModule", **kw) == \
        "part of a Ghost module (timm GhostModule)"


def test_cli_refuses_timm_ghostnet_as_already_ghostified(runner) -> None:
    res = runner.invoke(app, ["ghostify", "timm:ghostnet_050", "--input-size", "3x32x32"])
    assert res.exit_code == 1 and "already ghostified" in res.output, res.output


def test_recognition_does_not_import_timm(monkeypatch) -> None:
    """timm is optional: recognising its classes must not import it (a model can only hold them once it is loaded)."""
    import builtins

    real_import = builtins.__import__

    def no_timm(name: str, *args: object, **kwargs: object) -> object:
        assert not name.startswith("timm"), f"imported {name}"
        return real_import(name, *args, **kwargs)  # type: ignore[arg-type]

    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1))
    monkeypatch.setattr(builtins, "__import__", no_timm)
    assert not _loaded(model).is_ghostified
    _, report = ghostify(model, input_size=(3, 8, 8), count_macs=False)
    assert report.replaced == 1


# --- profile: GhostNetV2's DFC branch counts in full (pooling and up-sampling), nothing silently zero ---------------

def test_dfc_pooling_and_upsampling_are_counted() -> None:
    from ghostcli.analysis.macs import count_macs
    from ghostcli.layers import GhostModuleV2

    gm = GhostModuleV2(16, 32).eval()
    macs = count_macs(gm, torch.randn(1, 16, 16, 16))
    assert macs.by_operator["avg_pool2d"] == 16 * 16 * 16  # 2x2 windows, stride 2: each input element once
    assert macs.by_operator["upsample_nearest2d"] == 32 * 16 * 16  # one per output element
    assert not {"avg_pool2d", "upsample_nearest2d"} & set(macs.uncounted)
    assert set(macs.uncounted) <= {"relu_", "sigmoid", "mul"}  # no multiply-add: listed, not hidden
    assert macs.conv_linear == macs.by_operator["conv"]  # the paper's number leaves pooling out


def test_ghostnetv2_lists_no_pooling_or_upsampling_as_uncounted() -> None:
    from ghostcli.analysis.macs import count_macs
    from ghostcli.models import build_model

    macs = count_macs(build_model("ghostnetv2_100", num_classes=10).eval(), torch.randn(1, 3, 64, 64))
    assert set(macs.uncounted) <= {"relu_", "mul", "add", "sigmoid", "hardsigmoid"}, macs.uncounted
    assert macs.by_operator["avg_pool2d"] > 0 and macs.by_operator["upsample_nearest2d"] > 0
    assert macs.total == sum(macs.by_operator.values())


class _Pools(nn.Module):
    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        flat = x.flatten(2)
        return [nn.functional.avg_pool2d(x, 3, 1, 1),  # 2x8x8 out x 9 = 1152
                nn.AvgPool2d((2, 4))(x),  # 2x4x2 out x 8 = 128
                nn.functional.avg_pool1d(flat, 4),  # 2x16 out x 4 = 128
                nn.functional.adaptive_avg_pool1d(flat, 1),  # 128 in
                nn.functional.interpolate(x, scale_factor=2, mode="bicubic"),  # 2x16x16 out x 16 = 8192
                nn.functional.interpolate(flat, scale_factor=2, mode="linear"),  # 2x128 out x 2 = 512
                nn.functional.interpolate(x, scale_factor=2, mode="nearest-exact")]  # 512


def test_pooling_and_upsampling_formulas() -> None:
    from ghostcli.analysis.macs import count_macs

    macs = count_macs(_Pools(), torch.randn(1, 2, 8, 8))
    assert macs.by_operator == {"avg_pool2d": 1152 + 128, "avg_pool1d": 128, "adaptive_avg_pool1d": 128,
                                "upsample_bicubic2d": 8192, "upsample_linear1d": 512,
                                "_upsample_nearest_exact2d": 512}
    assert macs.uncounted == {} and macs.conv_linear == 0
