"""Evidence on real data (scikit-learn digits, CPU, 8x8 inputs): ResNet-20 and its Ghost (s=2) version.

1. From scratch, same seed, data order and epochs (5 epochs, SGD 0.1 cosine): each reaches >= 95% validation
   accuracy and the ghost ends within 1.5 points of the original.
2. Recovery, the use `ghostcli train` exists for: ghostify the *trained* original (weights inherited, the cheap
   half random: chance accuracy), then fine-tune 2 epochs (lr 0.02) alone or distilled from the original with
   the default alpha 0.5, T 4: the distilled student ends at least as high (measured: +1.4 points on seeds 0-2).

Figures measured on the development machine are in docs/training.md.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ghostcli.resolve import resolve_model
from ghostcli.train import TrainConfig, TrainResult, evaluate_model, train_model
from ghostcli.train.evaluate import EvalOptions

from train_fixtures import save_ghost_resnet20, save_ghostified

pytestmark = pytest.mark.usefixtures("one_thread")

SIZE = (3, 8, 8)


def run(model: str, teacher: str | None = None, **kw: object) -> TrainResult:
    cfg = dict(data="digits", epochs=5, batch_size=64, lr=0.1, input_size=SIZE, augment=False,
               device="cpu", seed=0, warmup_epochs=0)  # the recipe docs/training.md reports, fixed
    cfg.update(kw)
    return train_model(TrainConfig(**cfg), lambda: resolve_model(model),  # type: ignore[arg-type]
                       teacher=(lambda: resolve_model(teacher)) if teacher else None)


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, TrainResult | Path]:
    d = tmp_path_factory.mktemp("evidence")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the figures depend on rounding, which depends on the thread count: pin it
    try:
        return _train_all(d)
    finally:
        torch.set_num_threads(threads)


def _train_all(d: Path) -> dict[str, TrainResult | Path]:
    original = run("resnet20", output=str(d / "resnet20.safetensors"))
    scratch = run(str(save_ghost_resnet20(d / "ghost_init.safetensors", SIZE, seed=0)))
    inherited = save_ghostified(d / "resnet20.safetensors", d / "ghost_inherited.safetensors", SIZE)
    alone = run(str(inherited), epochs=2, lr=0.02)
    distilled = run(str(inherited), epochs=2, lr=0.02, teacher=str(d / "resnet20.safetensors"),
                    output=str(d / "ghost_kd.safetensors"))
    return {"original": original, "scratch": scratch, "alone": alone, "distilled": distilled, "dir": d}


@pytest.mark.slow
def test_resnet20_and_ghost_reach_95_percent_on_digits(results: dict) -> None:
    orig, ghost = results["original"], results["scratch"]
    print(f"\nresnet20 {orig.final_val_top1:.2f}%  ghost s=2 {ghost.final_val_top1:.2f}%  recovered alone "
          f"{results['alone'].final_val_top1:.2f}%  recovered with KD {results['distilled'].final_val_top1:.2f}%")
    assert orig.val_images == 360 and orig.train_images == 1437
    assert orig.final_val_top1 >= 95.0
    assert ghost.final_val_top1 >= 95.0
    assert ghost.final_val_top1 >= orig.final_val_top1 - 1.5


@pytest.mark.slow
def test_distilled_ghost_is_at_least_as_good_as_ghost_alone(results: dict) -> None:
    alone, distilled = results["alone"], results["distilled"]
    before = evaluate_model(resolve_model(str(results["dir"] / "ghost_inherited.safetensors")), "digits",
                            options=EvalOptions(device="cpu")).top1
    assert before < 50.0  # ghostify cost real accuracy: there is something to recover
    assert distilled.teacher is not None and alone.teacher is None
    assert distilled.final_val_top1 >= alone.final_val_top1


@pytest.mark.slow
def test_ghost_artifact_is_smaller_and_evaluates_to_the_same_accuracy(results: dict) -> None:
    from ghostcli.convert import module_params
    from ghostcli.resolve import resolve_model

    d = results["dir"]
    orig = resolve_model(str(d / "resnet20.safetensors"))
    ghost = resolve_model(str(d / "ghost_kd.safetensors"))
    assert ghost.is_ghostified and module_params(ghost.model) < 0.6 * module_params(orig.model)
    r = evaluate_model(resolve_model(str(d / "ghost_kd.safetensors")), "digits", options=EvalOptions(device="cpu"))
    assert r.images == 360 and r.top1 == pytest.approx(results["distilled"].final_val_top1)
