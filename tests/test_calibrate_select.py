"""Layer selection by measured redundancy (ghostcli.calibrate.select; ghostify --calib-data with --macs-budget or
--max-agreement-drop)."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from torch import nn

from ghostcli.calibrate import CalibrateOptions
from ghostcli.calibrate.select import SelectionUnreachable, SelectOptions, rank_layers, select_layers
from ghostcli.cli.app import app
from ghostcli.errors import UsageError
from ghostcli.ghostify_options import GhostifyOptions

from bad_input import run_bad

pytestmark = pytest.mark.usefixtures("one_thread")

SIZE = (3, 8, 8)
FAST = CalibrateOptions(calib_data="synthetic", calib_images=32, held_out_images=96, block_steps=0, network_epochs=0,
                        ridge=1e-6)


def _exact_half(conv: nn.Conv2d, bn: nn.BatchNorm2d, seed: int) -> None:
    """Make ``conv -> bn`` compute its second half of channels as depthwise transforms of the first half:
    ``Y[m + j] = a_j * (dw_j * Y[j]) + b_j``. The first half's filters are 1x1 (the kernel's centre) and their BN adds
    no shift, so the zero padding of ``Y[j]`` is the conv's own; channel ``m + j``'s filter is ``dw_j`` (outer) the
    centre of channel ``j``'s."""
    g = torch.Generator().manual_seed(seed)
    n, k = conv.out_channels, conv.kernel_size[0]
    m = n // 2
    with torch.no_grad():
        w = torch.zeros_like(conv.weight)
        w[:m, :, k // 2, k // 2] = torch.randn(m, conv.in_channels, generator=g)
        for j in range(m):
            w[m + j] = w[j, :, k // 2, k // 2][:, None, None] * torch.randn(k, k, generator=g)
        conv.weight.copy_(w)
        bn.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
        bn.running_var.copy_(torch.rand(n, generator=g) + 0.5)
        bn.weight.copy_(torch.rand(n, generator=g) + 0.5)
        bn.bias.copy_(torch.randn(n, generator=g))
        scale = bn.weight / (bn.running_var + bn.eps).sqrt()
        bn.bias[:m] = bn.running_mean[:m] * scale[:m]


class _Net(nn.Module):
    """stem -> b (random, ReLU) -> a (constructed, no ReLU) -> c (random, ReLU) -> pool -> fc."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.b = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.b_bn = nn.BatchNorm2d(8)
        self.a = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.a_bn = nn.BatchNorm2d(8)
        self.c = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.c_bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.b_bn(self.b(self.stem(x))))
        x = self.a_bn(self.a(x))
        x = torch.relu(self.c_bn(self.c(x)))
        return self.fc(x.mean((2, 3)))


def _net() -> _Net:
    torch.manual_seed(0)
    net = _Net().eval()
    _exact_half(net.a, net.a_bn, seed=1)
    return net


def _images(n: int = 32) -> torch.Tensor:
    return torch.randn(n, *SIZE, generator=torch.Generator().manual_seed(5))


def test_exactly_reconstructible_layer_ranks_first_and_the_macs_budget_stops_there() -> None:
    net = _net()
    ranking = rank_layers(net, GhostifyOptions(), input_size=SIZE, images=_images(), ridge=1e-6)
    names = [r.name for r in ranking.layers]
    assert names[0] == "a" and sorted(names) == ["a", "b", "c"]  # the stem is kept
    first, *rest = ranking.layers
    assert first.fit_error is not None and first.fit_error < 1e-4
    assert all(r.fit_error is not None and r.fit_error > 0.05 for r in rest)
    assert [r.rank for r in ranking.layers] == [1, 2, 3]
    assert ranking.macs_with(0) == ranking.macs_before and ranking.macs_with(1) == ranking.macs_before - first.macs_saved
    # the budget exactly at one conversion stops after the most redundant layer; one MAC less needs a second one
    assert ranking.prefix_for(ranking.macs_with(1)) == 1 and ranking.prefix_for(ranking.macs_with(1) - 1) == 2
    assert ranking.prefix_for(ranking.macs_with(3) - 1) is None

    sel = select_layers(net, select=SelectOptions(macs_budget=ranking.macs_with(1)), calibration=FAST,
                        input_size=SIZE, ranking=ranking)
    assert sel.selection.chosen == 1 and sel.options.include == ("a",)
    assert [r.action for r in sel.report.rows if r.name in "abc"] == ["ghost" if n == "a" else "kept" for n in "bac"]
    assert sel.report.macs_after == ranking.macs_with(1)  # the per-conv MACs add up to the measured total
    (point,) = sel.selection.points
    assert point.layers == 1 and point.passed is None and point.agreement == 100.0  # the closed form is exact
    assert [r.chosen for r in sel.selection.layers] == [True, False, False]
    kept = next(r for r in sel.report.rows if r.name == "c")
    assert kept.reason.startswith("kept: rank") and "budget held without it" in kept.reason

    sel2 = select_layers(net, select=SelectOptions(macs_fraction=(ranking.macs_with(1) - 1) / ranking.macs_before),
                         calibration=FAST, input_size=SIZE, ranking=ranking)
    assert sel2.selection.chosen == 2 and set(sel2.options.include) == {"a", ranking.layers[1].name}
    with pytest.raises(SelectionUnreachable, match="out of reach"):
        select_layers(net, select=SelectOptions(macs_budget=ranking.macs_with(3) - 1), calibration=FAST,
                      input_size=SIZE, ranking=ranking)
    with pytest.raises(SelectionUnreachable, match="nothing to convert"):
        select_layers(net, select=SelectOptions(macs_budget=ranking.macs_before), calibration=FAST, input_size=SIZE,
                      ranking=ranking)


def test_agreement_drop_bisects_to_the_most_layers_within_it() -> None:
    net = _net()
    ranking = rank_layers(net, GhostifyOptions(), input_size=SIZE, images=_images(), ridge=1e-6)
    sel = select_layers(net, select=SelectOptions(max_agreement_drop=0.0), calibration=FAST, input_size=SIZE,
                        ranking=ranking)
    points = sel.selection.points
    # N = 3 ranked layers: bisection tries 2 (the random layer b after a spoils some argmaxes), then 1
    assert [p.layers for p in points] == [2, 1]
    assert [p.passed for p in points] == [False, True]
    assert points[0].agreement is not None and points[0].agreement < 100.0 and points[1].agreement == 100.0
    assert sel.selection.chosen == 1 and sel.options.include == ("a",) and sel.selection.agreement == 100.0
    assert sel.calibration.agreement_final == 100.0  # the returned model is the measured one
    with pytest.raises(UsageError, match="exactly one budget"):
        SelectOptions().check()


def test_selection_makes_synthetic_bn_images_from_the_original() -> None:
    """``synthetic-bn`` images need the original model: selection hands it to the loader as calibration does."""
    net = _net()
    cal = dataclasses.replace(FAST, calib_data="synthetic-bn", calib_images=8, held_out_images=2)
    sel = select_layers(net, select=SelectOptions(macs_fraction=0.99), calibration=cal, input_size=SIZE)
    assert sel.calibration.calib_data == "synthetic-bn" and sel.calibration.calib_images == 8
    assert sel.selection.chosen == 1 and sel.options.include == ("a",)  # the exact layer still ranks first


def test_selection_artifact_rebuilds_bit_exactly(tmp_path) -> None:
    from ghostcli.artifacts import save_artifact
    from ghostcli.resolve import load_artifact, resolve_model

    loaded = resolve_model("resnet20")
    cal = dataclasses.replace(FAST, calib_data="digits", calib_images=16, held_out_images=16, block_steps=2)
    sel = select_layers(loaded.model, select=SelectOptions(macs_fraction=0.8, rank_images=16), calibration=cal,
                        input_size=SIZE)
    assert 0 < sel.selection.chosen < len(sel.selection.layers) and sel.selection.macs_after <= 0.8 * sel.selection.macs_before
    recipe = dataclasses.replace(loaded.recipe, ghostify=sel.options.to_dict(), input_size=list(SIZE))
    path = save_artifact(sel.model, tmp_path / "sel.safetensors", recipe)
    again = load_artifact(path)
    x = torch.randn(4, *SIZE)
    with torch.no_grad():
        assert torch.equal(again.model(x), sel.model.eval()(x))
    assert sorted(again.recipe.ghostify["include"]) == sorted(r.name for r in sel.selection.layers if r.chosen)


def test_cli_macs_budget_selects_and_saves(runner, tmp_path, monkeypatch) -> None:
    from ghostcli.artifacts import read_recipe
    from ghostcli.cli import ghostify as cli

    real = cli._calibrate_options
    monkeypatch.setattr(cli, "_calibrate_options", lambda *a: dataclasses.replace(
        real(*a), held_out_images=32, block_steps=2, network_epochs=0))
    out = tmp_path / "g.safetensors"
    res = runner.invoke(app, ["ghostify", "resnet20", "--input-size", "3x8x8", "--calib-data", "digits",
                              "--calib-images", "16", "--macs-budget", "0.8x", "-o", str(out), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    sel = doc["selection"]
    assert sel["chosen"] == len(doc["options"]["include"]) > 0 and sel["macs_after"] <= 0.8 * sel["macs_before"]
    assert [r["rank"] for r in sel["layers"]] == list(range(1, 19)) and len(sel["points"]) == 1
    errors = [r["fit_error"] for r in sel["layers"]]
    assert errors == sorted(errors)
    recipe = read_recipe(out)
    assert recipe.ghostify["include"] == doc["options"]["include"] and recipe.extra["selection"]["converted"] == sel["chosen"]
    res = runner.invoke(app, ["ghostify", "resnet20", "--input-size", "3x8x8", "--calib-data", "digits",
                              "--calib-images", "16", "--macs-budget", "0.8x"])
    assert res.exit_code == 0 and "agreement vs MACs" in res.stdout and "layer selection on 16" in res.stdout


@pytest.mark.parametrize(("args", "match"), [
    (["--max-agreement-drop", "2%"], "needs --calib-data"),
    (["--calib-data", "digits", "--max-agreement-drop", "2%", "--target", "cpu"], "not with --target"),
    (["--calib-data", "digits", "--max-agreement-drop", "2%", "--macs-budget", "1M"], "not both"),
    (["--macs-budget", "1M"], "--macs-budget needs --target"),
    (["--calib-data", "digits", "--max-agreement-drop", "150%"], "--max-agreement-drop must be a percentage"),
    (["--calib-data", "digits", "--max-agreement-drop", "lots"], "cannot read 'lots'"),
    (["--calib-data", "digits", "--macs-budget", "1.5x"], "must be below 1x"),
    (["--calib-data", "digits", "--macs-budget", "0.75x", "--mode", "stage"], "not with --mode stage"),
])
def test_cli_selection_errors(tmp_path, args, match) -> None:
    run_bad(["ghostify", "resnet20", *args], tmp_path, code=2, match=match)


def test_cli_unreachable_budget_is_one_line(tmp_path) -> None:
    run_bad(["ghostify", "resnet20", "--input-size", "3x8x8", "--calib-data", "digits", "--calib-images", "8",
             "--macs-budget", "10k"], tmp_path, code=2, match=["out of reach", "converting all 18 ranked convs"])
