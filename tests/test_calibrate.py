"""Calibration after ghostify (ghostcli.calibrate, ghostify --calib-data) and the idx data sources."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from ghostcli.calibrate import CalibrateOptions, calibrate_model, choose_channels, fixed_pairing
from ghostcli.calibrate.closed_form import FitStats, capacities, fit_all
from ghostcli.cli.app import app
from ghostcli.convert import ghostify
from ghostcli.models.cifar import BasicBlock

from bad_input import run_bad

pytestmark = pytest.mark.usefixtures("one_thread")

# -- constructed layers whose channels are depthwise transforms of others ------------------------------------------


def _exact_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d, pairs: list[tuple[int, int]], seed: int) -> None:
    """Make ``conv -> bn`` compute, for each (parent p, child c), ``Y_c = a * dw_c * Y_p + b`` exactly: the
    parents' filters are 1x1 (in the centre of the k x k kernel), their BN adds no shift (so zero padding of Y_p is
    the conv's own), and each child's filter is ``dw_c`` (outer) its parent's."""
    g = torch.Generator().manual_seed(seed)
    k = conv.kernel_size[0]
    with torch.no_grad():
        w = torch.zeros_like(conv.weight)
        parents = sorted({p for p, _ in pairs})
        centre = torch.randn(len(parents), conv.in_channels, generator=g)
        for i, p in enumerate(parents):
            w[p, :, k // 2, k // 2] = centre[i]
        bn.running_mean.copy_(torch.randn(bn.num_features, generator=g) * 0.1)
        bn.running_var.copy_(torch.rand(bn.num_features, generator=g) + 0.5)
        bn.weight.copy_(torch.rand(bn.num_features, generator=g) + 0.5)
        bn.bias.copy_(torch.randn(bn.num_features, generator=g))
        scale = bn.weight / (bn.running_var + bn.eps).sqrt()
        for p in parents:  # no shift: Y_p = scale_p * conv_p(x)
            bn.bias[p] = bn.running_mean[p] * scale[p]
        for p, c in pairs:
            dw = torch.randn(k, k, generator=g)
            w[c] = w[p, :, k // 2, k // 2][:, None, None] * dw
        conv.weight.copy_(w)


class _Net(nn.Module):
    """stem -> conv -> BN (the constructed layer, no ReLU) -> conv -> BN -> ReLU -> pool -> fc."""

    def __init__(self, n: int = 8) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6), nn.ReLU())
        self.mid = nn.Conv2d(6, n, 3, padding=1, bias=False)
        self.mid_bn = nn.BatchNorm2d(n)
        self.head = nn.Conv2d(n, 5, 3, padding=1, bias=False)
        self.head_bn = nn.BatchNorm2d(5)
        self.fc = nn.Linear(5, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.mid_bn(self.mid(self.stem(x)))
        x = torch.relu(self.head_bn(self.head(x)))
        return self.fc(x.mean((2, 3)))


def test_closed_form_recovers_depthwise_channels_exactly() -> None:
    torch.manual_seed(0)
    net = _Net(8).eval()
    # channels 5, 0, 6, 3 are depthwise transforms of 2, 7, 1, 4: the layer's own pairing (0-3 -> 4-7) cannot fit
    _exact_conv_bn(net.mid, net.mid_bn, [(2, 5), (7, 0), (1, 6), (4, 3)], seed=1)
    g, _ = ghostify(net, include=["mid"], input_size=(3, 12, 12))
    x = torch.randn(4, 3, 12, 12)
    cal = calibrate_model(net, g, options=CalibrateOptions(calib_data="synthetic", calib_images=32, held_out_images=8,
                                                           block_steps=0, network_epochs=0, ridge=1e-6), input_size=(3, 12, 12))
    (row,) = cal.rows
    assert row.pairing == "chosen" and row.fit_cost < 1e-4 and row.fit_cost_fixed > 0.1
    assert row.error_before > 0.3 and row.error_init < 1e-3 and row.error_held_out < 1e-3
    gm = g.mid
    assert sorted(gm.primary_conv[0].weight.abs().sum((1, 2, 3)).nonzero().flatten().tolist()) == [0, 1, 2, 3]
    with torch.no_grad():  # the head reads the permuted channels: the network computes what it did
        torch.testing.assert_close(g(x), net(x), rtol=1e-3, atol=1e-3)
        torch.testing.assert_close(g.head(g.mid_bn(g.mid(g.stem(x)))), net.head(net.mid_bn(net.mid(net.stem(x)))),
                                   rtol=1e-3, atol=1e-3)


def test_channel_choice_finds_a_zero_cost_pairing() -> None:
    torch.manual_seed(3)
    src = torch.randn(6, 5, 9, 9)
    der = torch.nn.functional.conv2d(src, torch.randn(5, 1, 3, 3), padding=1, groups=5) + 0.3
    y = torch.cat([src, der], 1)[:, torch.randperm(10)]
    stats = FitStats(10, 3)
    stats.add(y, y)
    choice = choose_channels(fit_all(stats, 1e-6), 2)
    assert choice.cost < 1e-4 and len(choice.primaries) == 5
    assert sorted(choice.order()) == list(range(10))
    assert capacities(11, 3) == [2, 2, 2, 1] and capacities(7, 2) == [1, 1, 1, 0]
    assert fixed_pairing(7, 3) == ([0, 1, 2], [[3, 4], [5, 6], []])
    cost = torch.rand(11, 11, dtype=torch.float64).fill_diagonal_(float("inf"))
    odd = choose_channels(cost, 3)  # s = 3 with a cut: the children fit the slots the module keeps
    assert [len(c) for c in odd.children] == [2, 2, 2, 1] and sorted(odd.order()) == list(range(11))
    fixed = sum(float(cost[p, c]) for p, cs in zip(*fixed_pairing(11, 3)) for c in cs)
    assert odd.cost <= fixed


class _BlockNet(nn.Module):
    """stem -> a CIFAR residual block (shared ReLU, identity shortcut) -> pool -> fc."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.block = BasicBlock(8, 8)
        self.fc = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.block(self.stem(x)).mean((2, 3)))


def test_channel_order_kept_across_a_residual_block() -> None:
    torch.manual_seed(0)
    net = _BlockNet().eval()
    # conv1 (read by conv2): shuffled pairs, found and permuted; conv2 (read by the residual add): the layer's own
    _exact_conv_bn(net.block.conv1, net.block.bn1, [(6, 1), (3, 0), (2, 7), (5, 4)], seed=2)
    _exact_conv_bn(net.block.conv2, net.block.bn2, [(0, 4), (1, 5), (2, 6), (3, 7)], seed=3)
    g, _ = ghostify(net, input_size=(3, 10, 10))
    cal = calibrate_model(net, g, options=CalibrateOptions(calib_data="synthetic", calib_images=32, held_out_images=8,
                                                           block_steps=0, network_epochs=0, ridge=1e-6), input_size=(3, 10, 10))
    rows = {r.name: r for r in cal.rows}
    assert rows["block.conv1"].pairing == "chosen"
    assert rows["block.conv2"].pairing == "fixed" and "residual add" in rows["block.conv2"].fixed_reason
    assert max(r.error_held_out for r in cal.rows) < 1e-3
    x = torch.randn(3, 3, 10, 10)
    with torch.no_grad():
        torch.testing.assert_close(g.block(g.stem(x)), net.block(net.stem(x)), rtol=1e-3, atol=1e-3)
        torch.testing.assert_close(g(x), net(x), rtol=1e-3, atol=1e-3)


class _HeadNet(nn.Module):
    """stem -> head conv -> BN -> ReLU -> a classifier read through ``pool`` (one of the usual head forms)."""

    def __init__(self, pool: str) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6), nn.ReLU())
        self.head = nn.Conv2d(6, 8, 3, padding=1, bias=False)
        self.head_bn = nn.BatchNorm2d(8)
        self.avgpool = nn.AdaptiveAvgPool2d(1 if pool != "map" else 2)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(8 if pool != "map" else 32, 4)
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.head_bn(self.head(self.stem(x))))
        if self.pool == "view":  # efficientnet_pytorch / torchvision style
            return self.fc(torch.dropout(self.avgpool(x).view(x.size(0), -1), 0.2, False))
        if self.pool == "mean":
            return self.fc(x.mean((2, 3)))
        return self.fc(self.flatten(self.avgpool(x)))  # "module", and "map": 2x2 pooled, flattened into the fc


@pytest.mark.parametrize("pool", ["view", "mean", "module", "map"])
def test_a_classifier_head_reads_permuted_channels(pool: str) -> None:
    torch.manual_seed(0)
    net = _HeadNet(pool).eval()
    _exact_conv_bn(net.head, net.head_bn, [(6, 1), (3, 0), (2, 7), (5, 4)], seed=4)
    g, _ = ghostify(net, include=["head"], input_size=(3, 10, 10))
    cal = calibrate_model(net, g, options=CalibrateOptions(calib_data="synthetic", calib_images=32, held_out_images=8,
                                                           block_steps=0, network_epochs=0, ridge=1e-6), input_size=(3, 10, 10))
    (row,) = cal.rows
    if pool == "map":  # a flattened feature map mixes channels and positions: the layer's own pairing
        assert row.pairing == "fixed" and "Flatten" in row.fixed_reason and row.error_held_out > 0.1
        return
    assert row.pairing == "chosen" and row.error_held_out < 1e-3
    x = torch.randn(3, 3, 10, 10)
    with torch.no_grad():
        torch.testing.assert_close(g(x), net(x), rtol=1e-3, atol=1e-3)


def test_errors_fall_on_digits_and_the_artifact_rebuilds(tmp_path: Path) -> None:
    import dataclasses

    from ghostcli.artifacts import save_artifact
    from ghostcli.resolve import load_artifact, resolve_model

    torch.manual_seed(0)
    loaded = resolve_model("resnet20")
    net = loaded.model.eval()
    with torch.no_grad():  # trained-looking BatchNorm parameters
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.2)
    g, report = ghostify(net, input_size=(3, 8, 8))
    opts = CalibrateOptions(calib_data="digits", calib_images=64, held_out_images=64, block_steps=20,
                            network_epochs=2, distill_epochs=1, distill_images=64)
    seen: list[str] = []
    cal = calibrate_model(net, g, options=opts, input_size=(3, 8, 8),
                          progress=lambda d, done, total, info="": seen.append(d))
    assert len(cal.rows) == 18 and {"calibrating", "network-wise", "distilling"} <= set(seen)
    for r in cal.rows:
        assert r.error_init < r.error_before and r.error_block <= r.error_init
        assert r.error_network is not None and r.error_distill is not None
    assert cal.network_epochs == 2 and cal.agreement_network is not None
    assert {r.pairing for r in cal.rows} == {"chosen", "fixed"}
    assert cal.agreement_calibrated >= cal.agreement_before and cal.held_out.endswith("val split of digits")
    assert cal.distill_images == 64 and cal.peak_cache_mb > 0 and cal.seconds_total > 0
    # only weights changed (the readers' permutations too): the recipe's rebuild loads them and computes the same
    recipe = dataclasses.replace(loaded.recipe, ghostify=report.options, input_size=[3, 8, 8])
    rebuilt = load_artifact(save_artifact(g, tmp_path / "g.safetensors", recipe)).model
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), g(x))


def test_g_ghost_stage_is_reconstructed_against_the_original_stage() -> None:
    from ghostcli.resolve import resolve_model

    torch.manual_seed(0)
    net = resolve_model("resnet20").model.eval()
    g, _ = ghostify(net, stages=["layer2"], exclude=["*"], input_size=(3, 8, 8))
    cal = calibrate_model(net, g, options=CalibrateOptions(calib_data="digits", calib_images=16, held_out_images=16,
                                                           block_steps=15, network_epochs=0), input_size=(3, 8, 8))
    (row,) = cal.rows
    assert (row.name, row.kind, row.error_init) == ("layer2", "stage", None)
    assert row.error_block < row.error_before


def test_prefix_captures_equal_whole_model_runs_and_skip_the_stem() -> None:
    """Captures from the cached inputs of enclosing stages and blocks give exactly what running the whole model from
    the images gives, and the stem runs once per stage, not once per unit."""
    from ghostcli.calibrate.fit import Cache, capture
    from ghostcli.calibrate.prefix import Prefix, ancestors
    from ghostcli.calibrate.units import find_units
    from ghostcli.resolve import resolve_model

    torch.manual_seed(0)
    net = resolve_model("resnet20").model.eval()
    g, _ = ghostify(net, input_size=(3, 8, 8))
    images = torch.randn(10, 3, 8, 8)
    units, _ = find_units(net, g, images[:1])
    assert ancestors("layer2.1.conv1") == ["layer2", "layer2.1"]
    stem_calls = [0]
    net.conv1.register_forward_pre_hook(lambda m, a: stem_calls.__setitem__(0, stem_calls[0] + 1))
    prefix = Prefix(net, images, 4, [u.original_output for u in units], 1024.0)
    # a stage's first block reads the stage's very input: the stage's cache serves it
    assert {"layer1", "layer1.1", "layer3.2"} <= prefix.enclosing and "layer1.0" not in prefix.enclosing
    stem_calls[0] = 0
    named = dict(net.named_modules())
    for u in units:
        got, want = Cache(1024.0), Cache(1024.0)
        prefix.capture(u.original_output, got, output=True)
        held = stem_calls[0]
        capture(net, named[u.original_output], images, 4, want, output=True)
        stem_calls[0] = held
        assert got.data is not None and want.data is not None
        torch.testing.assert_close(got.data, want.data, rtol=0, atol=0)
    assert stem_calls[0] == 3 * 3  # each of the 3 stages' inputs, in 3 batches: not 18 units x 3 batches


def test_bounded_cache_keeps_the_images_that_fit() -> None:
    from ghostcli.calibrate.fit import Cache, Pairs

    x = torch.randn(10, 4, 8, 8)  # 1 KB per image in float32, 0.5 KB in bfloat16
    small = Cache(3 / 1024, drop=True)  # 3 KB: 6 images as bfloat16
    for i in range(0, 10, 4):
        small.add(x[i:i + 4], 10)
    assert small.halved and small.filled == 6 and small.data is not None and small.data.dtype == torch.bfloat16
    torch.testing.assert_close(small.rows(slice(0, 6)), x[:6], rtol=1e-2, atol=1e-2)
    roomy = Cache(3 / 1024)  # no drop: every image, as bfloat16
    roomy.add(x, 10)
    assert roomy.filled == 10 and roomy.halved
    assert Pairs(small, roomy).count == 6


def test_default_steps_fit_the_compute_budgets() -> None:
    from ghostcli.calibrate.engine import _macs

    opts = CalibrateOptions()
    assert opts.steps_for(1024) == 384 and opts.steps_for(64) == 50 and opts.steps_for(100_000) == 500
    assert opts.steps_for(1024, 1e6) == 384  # a small layer: 12 passes, as without a budget
    assert opts.steps_for(256, 1e8) == 10 and opts.steps_for(256, 1e7) == 41  # 4e10 / (3 * 1e7 * 32) = 41
    assert CalibrateOptions(block_steps=7).steps_for(256, 1e12) == 7
    assert opts.network_epochs_for(1024) == 75 and opts.network_epochs_for(1024, 16e6, 31e6) == 75  # 1,200 steps
    assert CalibrateOptions(network_steps=160).network_epochs_for(1024) == 10
    # ResNet-50: 8e12 / (64 * 10.7e9) = 11.7 steps, fewer than network_min_steps: skipped (2 epochs when allowed)
    assert opts.network_epochs_for(256, 2.2e9, 4.1e9) == 0
    assert CalibrateOptions(network_min_steps=8).network_epochs_for(256, 2.2e9, 4.1e9) == 2
    assert CalibrateOptions(network_epochs=3).network_epochs_for(256, 2.2e9, 4.1e9) == 3
    assert opts.network_epochs_for(4096, 6e8, 6e8) == 1  # 52 steps in the budget, not one whole epoch: still one
    assert opts.network_epochs_for(100) == 90  # 2 steps an epoch: at most 90 epochs
    # the closed-form statistics: every image of a small layer, 3.2e7 output values' worth (>= 128 images) of a large one
    assert opts.fit_images(1024, 16 * 28 * 28) == 1024
    assert opts.fit_images(512, 64 * 56 * 56) == 159 and opts.fit_images(256, 256 * 56 * 56) == 128
    assert opts.fit_images(100, 2048 * 56 * 56) == 100
    net = _Net(8).eval()  # stem 6*3*9 + mid 8*6*9 + head 5*8*9 per pixel of 12x12, fc 5*4
    total, inside = _macs(net, torch.randn(1, 3, 12, 12), [net.mid, net.stem])
    assert total == (162 + 432 + 360) * 144 + 20 and inside == [432 * 144, 162 * 144]


def test_micro_batches_take_the_same_step_in_less_memory() -> None:
    """A batch split into chunks whose gradients add up trains the student to the same weights; the chunk size
    follows the activation budget (an upper bound from one image's forward)."""
    import copy

    from ghostcli.calibrate.distill import distill, micro_batch_for

    torch.manual_seed(0)
    teacher = nn.Sequential(BasicBlock(8, 8), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5)).eval()
    student, _ = ghostify(teacher, input_size=(8, 8, 8))
    images = torch.randn(24, 8, 8, 8)
    data = torch.utils.data.TensorDataset(images, torch.zeros(24))
    trained = []
    for micro in (None, 5):
        s = copy.deepcopy(student)
        distill(teacher, s, data, epochs=2, lr=1e-2, temperature=1.0, batch_size=12, limit=None, seed=0,
                micro_batch=micro)
        trained.append(s.state_dict())
    for k, v in trained[0].items():  # channels_last kernels sum chunks in another order: 5e-6 of 0.13 seen
        assert torch.allclose(v, trained[1][k], rtol=1e-4, atol=2e-5), k
    assert any(not torch.equal(v, student.state_dict()[k]) for k, v in trained[0].items())  # it did train
    full = micro_batch_for(student, images, (), budget_mb=1024, batch_size=64)
    per_image_mb = 1 / micro_batch_for(student, images, (), budget_mb=1, batch_size=10**9)
    assert full == 64 and 0 < per_image_mb < 0.1  # 8 channels at 8x8: a few kB per layer
    tight = micro_batch_for(student, images, (), budget_mb=per_image_mb * 3.5, batch_size=64)
    assert tight == 3


def test_batch_statistics_training_measures_the_running_statistics_again() -> None:
    """With ``bn_images`` the student trains with batch statistics (its BatchNorms in train mode, dropout not) and
    ends in eval mode with running statistics that are the averages over those images; weights stay NCHW."""
    from ghostcli.calibrate.distill import distill, reestimate_batchnorms

    torch.manual_seed(0)
    teacher = nn.Sequential(BasicBlock(8, 8), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.5),
                            nn.Linear(8, 5)).eval()
    student, _ = ghostify(teacher, input_size=(8, 8, 8))
    images = torch.randn(32, 8, 8, 8) * 3 + 1
    data = torch.utils.data.TensorDataset(images, torch.zeros(32))
    modes: list[tuple[bool, bool]] = []
    bn = next(m for m in student.modules() if isinstance(m, nn.BatchNorm2d))
    drop = next(m for m in student.modules() if isinstance(m, nn.Dropout))
    handle = bn.register_forward_hook(  # training steps only (the re-estimation runs without gradients)
        lambda m, a, o: modes.append((m.training, drop.training)) if torch.is_grad_enabled() else None)
    distill(teacher, student, data, epochs=1, lr=1e-2, temperature=1.0, batch_size=16, limit=None, seed=0,
            bn_images=images)
    handle.remove()
    assert modes and all(m == (True, False) for m in modes)  # batch statistics while training, dropout off
    assert not student.training and not any(m.training for m in student.modules())
    assert all(p.is_contiguous() for p in student.parameters())
    # the first BatchNorm reads the stem conv's output: its running statistics are that output's, per batch averaged
    first = student[0].bn1
    with torch.no_grad():
        out = student[0].conv1(images)
    halves = out.split(16)
    mean = torch.stack([h.mean((0, 2, 3)) for h in halves]).mean(0)
    var = torch.stack([h.var((0, 2, 3)) for h in halves]).mean(0)
    assert torch.allclose(first.running_mean, mean, atol=1e-4)
    assert torch.allclose(first.running_var, var, rtol=1e-3)
    # re-estimating on other images moves them; eval mode again afterwards
    reestimate_batchnorms(student, images * 0.5, batch_size=32)
    assert torch.allclose(first.running_mean, student[0].conv1(images * 0.5).mean((0, 2, 3)), atol=1e-4)
    assert not student.training


def test_batch_statistics_need_chunks_of_16_images() -> None:
    from ghostcli.calibrate.engine import MIN_BATCH_STATS, _bn_images

    notes: list[str] = []
    calib = torch.zeros(64, 3, 8, 8)
    assert _bn_images(True, 64, calib, notes, "network-wise reconstruction") is calib and not notes
    assert _bn_images(False, 64, calib, notes, "network-wise reconstruction") is None and not notes
    assert _bn_images(True, MIN_BATCH_STATS - 1, calib, notes, "distillation") is None
    assert notes == [f"distillation: BatchNorms kept their statistics (chunks of {MIN_BATCH_STATS - 1} images, "
                     f"fewer than {MIN_BATCH_STATS}, give noisy batch statistics)"]


def test_synthetic_bn_images_come_from_the_original() -> None:
    torch.manual_seed(0)
    net = _Net(8).eval()
    g, _ = ghostify(net, include=["mid"], input_size=(3, 8, 8))
    seen: list[str] = []
    cal = calibrate_model(net, g, options=CalibrateOptions(calib_data="synthetic-bn", calib_images=8, held_out_images=4,
                                                           block_steps=5, network_epochs=0), input_size=(3, 8, 8),
                          progress=lambda d, done, total, info="": seen.append(d))
    assert any(d.startswith("synthetic-bn") for d in seen) and cal.calib_images == 8
    (row,) = cal.rows
    assert row.error_init is not None and row.error_init < row.error_before


def test_bad_options_fail_cleanly() -> None:
    net = _Net().eval()
    g, _ = ghostify(net, include=["mid"], input_size=(3, 8, 8))
    from ghostcli.errors import UsageError

    for bad in ({"calib_images": 0}, {"inputs": "both"}, {"block_lr": -1.0}, {"distill_epochs": -1},
                {"kl_images": 0}, {"train_mb": 0.0}):
        with pytest.raises(UsageError, match=f"`{next(iter(bad))}`"):
            calibrate_model(net, g, options=CalibrateOptions(calib_data="synthetic", **bad), input_size=(3, 8, 8))
    with pytest.raises(UsageError, match="nothing to calibrate"):
        calibrate_model(net, net, options=CalibrateOptions(calib_data="synthetic", calib_images=4),
                        input_size=(3, 8, 8))


# -- the command line -------------------------------------------------------------------------------------------------


def test_cli_calibrates_and_saves(runner, tmp_path: Path) -> None:
    from ghostcli.artifacts import read_recipe

    out = tmp_path / "g.safetensors"
    res = runner.invoke(app, ["ghostify", "resnet20", "--input-size", "3x8x8", "--calib-data", "digits",
                              "--calib-images", "16", "--distill-epochs", "1", "-o", str(out), "--json"])
    assert res.exit_code == 0, res.output
    cal = json.loads(res.stdout)["calibration"]
    assert cal["calib_images"] == 16 and cal["distill_epochs"] == 1 and len(cal["rows"]) == 18
    assert set(cal["rows"][0]) >= {"name", "pairing", "error_before", "error_init", "error_block", "error_held_out",
                                   "error_network", "error_distill"}
    assert cal["agreement_network"] is not None and cal["agreement_distilled"] is not None
    assert read_recipe(out).extra["calibration"]["images"] == 16  # the table: the --help example (test_doc_examples)


def test_cli_bad_calibration_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = ["ghostify", "resnet20", "--input-size", "3x8x8"]
    run_bad([*base, "--calib-data", str(tmp_path / "nope")], tmp_path, code=1, match="does not exist")
    run_bad([*base, "--calib-data", "digits", "--calib-images", "0"], tmp_path, code=2, match="--calib-images")
    run_bad([*base, "--calib-images", "5"], tmp_path, code=2, match="only apply with --calib-data")
    run_bad([*base, "--calib-data", "idx:" + str(tmp_path / "none")], tmp_path, code=1, match="idx folder")
    run_bad([*base, "--calib-data", "digits", "--distill-epochs", "-1", "--json"], tmp_path, code=2,
            match="--distill-epochs")
    import ghostcli.data

    monkeypatch.setattr(ghostcli.data, "FASHION_MNIST_DIR", tmp_path / "fashion")
    run_bad([*base, "--calib-data", "fashion-mnist", "-o", str(tmp_path / "g.safetensors")], tmp_path, code=1,
            match="apt-get install dataset-fashion-mnist")


# -- idx data sources -------------------------------------------------------------------------------------------------


def _write_idx(path: Path, data: torch.Tensor, compress: bool) -> None:
    header = bytes([0, 0, 8, data.dim()]) + b"".join(int(d).to_bytes(4, "big") for d in data.shape)
    raw = header + data.to(torch.uint8).numpy().tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(raw))
    else:
        path.write_bytes(raw)


def test_idx_folder(tmp_path: Path) -> None:
    from ghostcli.data import check_source, load_image_dataset
    from ghostcli.errors import DataError

    images = torch.randint(0, 256, (7, 28, 28))
    labels = torch.tensor([0, 1, 2, 1, 0, 2, 1])
    _write_idx(tmp_path / "train-images-idx3-ubyte", images, compress=True)
    _write_idx(tmp_path / "train-labels-idx1-ubyte", labels, compress=False)
    check_source(f"idx:{tmp_path}")
    ds = load_image_dataset(f"idx:{tmp_path}", input_size=(3, 16, 16))
    x, y = ds[3]
    assert len(ds) == 7 and ds.classes == ["0", "1", "2"] and x.shape == (3, 16, 16) and y == 1
    same = load_image_dataset(f"idx:{tmp_path}", input_size=(1, 28, 28), mean=(0.0,), std=(1.0,))
    torch.testing.assert_close(same[2][0][0], images[2].float() / 255)
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte"):
        load_image_dataset(f"idx:{tmp_path}", split="val", input_size=(1, 28, 28))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03junk")
    (tmp_path / "bad" / "train-labels-idx1-ubyte").write_bytes(b"")
    with pytest.raises(DataError, match="not an idx file|holds"):
        load_image_dataset(f"idx:{tmp_path / 'bad'}", input_size=(1, 28, 28))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="has no idx files"):
        check_source(f"idx:{tmp_path / 'empty'}")
