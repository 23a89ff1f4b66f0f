"""``--calib-data synthetic-bn``: images optimised so that BatchNorm batch statistics match the running ones."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ghostcli.calibrate import load_images
from ghostcli.calibrate.synthetic import (
    SyntheticBNOptions,
    batchnorm_layers,
    bn_mismatch,
    model_macs,
    synthesize_bn_images,
)
from ghostcli.data import check_source, is_named_source, load_image_dataset
from ghostcli.errors import UsageError
from ghostcli.models import build_model

pytestmark = pytest.mark.usefixtures("one_thread")

SIZE = (3, 16, 16)
FAST = SyntheticBNOptions(steps=40, batch_size=16)


@pytest.fixture(scope="module")
def model() -> nn.Module:
    """zoo resnet20 (random weights) whose running statistics are those of real digits: non-trivial values that
    real images reach (momentum None: the exact average over the batches)."""
    torch.manual_seed(0)
    m = build_model("resnet20")
    for _, bn in batchnorm_layers(m):
        bn.reset_running_stats()
        bn.momentum = None
    real = load_image_dataset("digits", split="train", input_size=SIZE).images[:256]  # type: ignore[attr-defined]
    m.train()
    with torch.no_grad():
        for i in range(0, 256, 64):
            m(real[i:i + 64])
    return m.eval()


def test_statistics_approach_the_running_ones(model: nn.Module) -> None:
    noise = torch.randn(16, *SIZE, generator=torch.Generator().manual_seed(0))  # the start of seed 0
    x = synthesize_bn_images(model, 16, SIZE, seed=0, options=FAST)
    before, after = bn_mismatch(model, noise), bn_mismatch(model, x)
    assert x.shape == (16, *SIZE) and x.dtype == torch.float32 and torch.isfinite(x).all()
    assert after < before / 10, (before, after)  # measured: 233 -> 11.2 (21x) in 40 steps; real digits 3.3
    real = load_image_dataset("digits", split="val", input_size=SIZE).images[:16]  # type: ignore[attr-defined]
    assert bn_mismatch(model, real) < after  # real images match best: the running statistics are theirs
    assert not model.training and all(p.requires_grad for p in model.parameters())  # left as found


def test_deterministic_for_a_seed(model: nn.Module) -> None:
    opts = SyntheticBNOptions(steps=3, batch_size=4)
    a = synthesize_bn_images(model, 6, SIZE, seed=1, options=opts)
    assert torch.equal(a, synthesize_bn_images(model, 6, SIZE, seed=1, options=opts))
    assert not torch.equal(a, synthesize_bn_images(model, 6, SIZE, seed=2, options=opts))


def test_progress_and_step_budget(model: nn.Module) -> None:
    seen: list[tuple[str, int, int]] = []
    synthesize_bn_images(model, 5, SIZE, options=SyntheticBNOptions(steps=2, batch_size=4),
                         progress=lambda d, done, total, info="": seen.append((d, done, total)))
    assert seen[0][1:] == (0, 4) and seen[-1][1:] == (4, 4) and len(seen) == 5  # 2 batches (3 + 2) x 2 steps
    assert model_macs(nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Flatten(), nn.Linear(4 * 64, 2)),
                      (3, 8, 8)) == 4 * 64 * 27 + 2 * 256
    o = SyntheticBNOptions()
    assert o.steps_for(31e6) == 200 and o.steps_for(4.1e9) == 10 and o.steps_for(1e8) == 66
    assert SyntheticBNOptions(steps=7).steps_for(4.1e9) == 7


def test_a_model_without_batchnorm_is_refused() -> None:
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(2))
    with pytest.raises(UsageError, match="has no BatchNorm layer"):
        synthesize_bn_images(net, 4, (3, 8, 8))
    with pytest.raises(UsageError, match="has no BatchNorm layer"):
        load_images("synthetic-bn", 4, 4, (3, 8, 8), 0, model=net)


def test_bad_options_are_usage_errors(model: nn.Module) -> None:
    for bad in ({"steps": 0}, {"batch_size": 0}, {"lr": -1.0}, {"tv_weight": float("nan")}):
        with pytest.raises(UsageError, match="`"):
            synthesize_bn_images(model, 2, SIZE, options=SyntheticBNOptions(**bad))  # type: ignore[arg-type]


def test_load_images_makes_calibration_and_held_out_sets(model: nn.Module) -> None:
    opts = SyntheticBNOptions(steps=2, batch_size=8)
    data = load_images("synthetic-bn", 12, 512, SIZE, 3, model=model, synthetic=opts)
    assert data.calib.shape == (12, *SIZE) and data.held_out.shape == (3, *SIZE)  # a quarter of 12
    assert torch.equal(data.calib, synthesize_bn_images(model, 12, SIZE, seed=3, options=opts))
    assert not torch.equal(data.held_out, data.calib[:3])  # another seed
    assert len(data.train_set) == 12 and "synthetic-bn" in data.held_out_source  # type: ignore[arg-type]
    x, _ = data.train_set[0]
    assert torch.equal(x, data.calib[0])
    with pytest.raises(UsageError, match="pass `model`"):
        load_images("synthetic-bn", 4, 4, SIZE, 0)


def test_synthetic_bn_is_a_named_source() -> None:
    assert is_named_source("synthetic-bn")
    check_source("synthetic-bn")  # accepted where --calib-data is checked
    with pytest.raises(UsageError, match="made from a model|optimised from a model"):
        load_image_dataset("synthetic-bn")
