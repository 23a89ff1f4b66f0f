"""Reproducible random weights: models and layers ghostcli builds draw them from one fixed seed."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

#: seed of every random weight ghostcli draws itself (a model built without weights, new Ghost layers)
INIT_SEED = 0


@contextmanager
def seeded_init(seed: int = INIT_SEED) -> Iterator[None]:
    """Draw CPU random numbers from ``seed`` inside the block (or decorated function), then restore the
    caller's global RNG state: the same model and options give the same weights on every run."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
