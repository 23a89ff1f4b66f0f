"""Every torchvision classification model round-trips through an artifact bit-exactly, ghostified or not.

Round-tripping all 80 at full size takes minutes, so they are covered by module class: the smallest
models that together use every module class of every torchvision classification model are saved and
loaded, and a second test proves the cover (module classes decide whether a state dict loads back:
MNASNet's versioned ``_load_from_state_dict`` failed before).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from unittest import mock

import pytest
import torch
import torchvision

from ghostcli.artifacts import save_artifact
from ghostcli.convert import ghostify
from ghostcli.resolve import load_artifact, resolve_model

ALL = sorted(torchvision.models.list_models(module=torchvision.models))


_INIT = ("normal_", "uniform_", "trunc_normal_", "kaiming_normal_", "kaiming_uniform_", "xavier_normal_",
         "xavier_uniform_", "constant_", "zeros_", "ones_", "orthogonal_")


def _cheap_init(t: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
    with torch.no_grad():
        return t.uniform_(-0.1, 0.1)


@contextlib.contextmanager
def no_init() -> Iterator[None]:
    """Fill new weights uniformly at random: the real inits of 80 models take minutes; the values do not matter."""
    with contextlib.ExitStack() as stack:
        for fn in _INIT:
            stack.enter_context(mock.patch.object(torch.nn.init, fn, _cheap_init))
        yield


@cache
def _scan() -> dict[str, tuple[int, frozenset[type]]]:
    """name -> (parameters, module classes) of every model."""
    out = {}
    with no_init():
        for name in ALL:
            model = torchvision.models.get_model(name, weights=None)
            out[name] = (sum(p.numel() for p in model.parameters()), frozenset(type(m) for m in model.modules()))
    return out


def _cover() -> list[str]:
    """The smallest models that together use every module class (smallest first, each adding a class)."""
    chosen: list[str] = []
    seen: set[type] = set()
    for name, (_, classes) in sorted(_scan().items(), key=lambda kv: kv[1][0]):
        if classes - seen:
            chosen.append(name)
            seen |= classes
    return chosen


COVER = _cover()


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_the_tested_models_use_every_module_class_of_every_model() -> None:
    covered = set().union(*(_scan()[n][1] for n in COVER))
    missing = {n: sorted(c.__name__ for c in classes - covered) for n, (_, classes) in _scan().items()}
    assert {n: m for n, m in missing.items() if m} == {}
    assert len(ALL) >= 80 and {"mnasnet0_5", "resnet18", "vgg11"} <= set(COVER)


@pytest.mark.slow
@pytest.mark.parametrize("name", COVER)
def test_torchvision_model_round_trips(name: str, tmp_path: Path) -> None:
    with no_init():
        _round_trip(name, tmp_path)


def _round_trip(name: str, tmp_path: Path) -> None:
    loaded = resolve_model(name)
    path = save_artifact(loaded.model, tmp_path / "m.safetensors", loaded.recipe)
    assert _same(loaded.model.state_dict(), load_artifact(path).model.state_dict())
    if name.startswith(("vit_", "swin", "maxvit")) or _scan()[name][0] > 30_000_000:
        return  # attention models (fixed input size, one patch conv) and the largest: the plain round trip only
    size = (3, 75, 75) if name == "inception_v3" else (3, 32, 32)
    ghost, report = ghostify(loaded.model, input_size=size, count_macs=False, allow_empty=True)
    loaded.recipe.ghostify = report.options
    loaded.recipe.input_size = list(size)
    gpath = save_artifact(ghost, tmp_path / "g.safetensors", loaded.recipe)
    assert _same(ghost.state_dict(), load_artifact(gpath).model.state_dict())
