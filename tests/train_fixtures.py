"""Helpers for the train/evaluate tests: a tiny real ImageFolder, ghost artifacts, free ports."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest


def make_image_folder(root: Path, per_class: int = 24, size: int = 8, classes: tuple[str, ...] = ("top", "bottom"),
                      seed: int = 0) -> Path:
    """PNG images in ImageFolder layout: class 'top' is bright in the upper half, 'bottom' in the lower half
    (a horizontal flip keeps the class). Returns ``root``."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for ci, name in enumerate(classes):
        d = root / name
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            img = rng.integers(0, 80, (size, size, 3), dtype=np.uint8)
            half = slice(0, size // 2) if ci % 2 == 0 else slice(size // 2, size)
            img[half] = np.clip(img[half].astype(int) + 150 + 20 * (ci // 2), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(d / f"{i:03d}.png")
    return root


def save_ghost_resnet20(path: Path, input_size: tuple[int, int, int], seed: int = 0, num_classes: int = 10) -> Path:
    """A ghostified (s=2) resnet20 with random weights, saved as an artifact that resolve_model reloads."""
    import torch

    from ghostcli.artifacts import Recipe, save_artifact
    from ghostcli.convert import GhostifyOptions, ghostify
    from ghostcli.models import build_model

    torch.manual_seed(seed)
    ghost, _ = ghostify(build_model("resnet20", num_classes=num_classes), ratio=2, input_size=input_size)
    recipe = Recipe(source="zoo:resnet20", options={"num_classes": num_classes} if num_classes != 10 else {},
                    input_size=list(input_size), ghostify=GhostifyOptions(ratio=2).to_dict())
    save_artifact(ghost, path, recipe, force=True)
    return path


def save_ghostified(source: Path, path: Path, input_size: tuple[int, int, int], seed: int = 0) -> Path:
    """Ghostify (s=2) a saved resnet20 artifact, inheriting its weights (the new cheap convs drawn from
    ``seed``), and save the result."""
    import torch

    from ghostcli.artifacts import Recipe, save_artifact
    from ghostcli.convert import GhostifyOptions, ghostify
    from ghostcli.resolve import resolve_model

    model = resolve_model(str(source)).model
    torch.manual_seed(seed)
    ghost, _ = ghostify(model, ratio=2, input_size=input_size)
    recipe = Recipe(source="zoo:resnet20", input_size=list(input_size), ghostify=GhostifyOptions(ratio=2).to_dict())
    save_artifact(ghost, path, recipe, force=True)
    return path


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def leftovers(folder: Path) -> list[str]:
    """Temporary files an atomic write would have left behind."""
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Run a test on one intra-op thread: tiny models on a busy 2-core box are many times slower with
    two spinning OpenMP threads, and training figures depend on the thread count (rounding)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)
