"""Reproducible random weights: models and layers ghostcli builds draw them from one seed, fixed by default."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

#: seed of every random weight ghostcli draws itself (a model built without weights, new Ghost layers)
INIT_SEED = 0
_seed = [INIT_SEED]


@contextmanager
def init_seed(seed: int) -> Iterator[None]:
    """Inside the block, :func:`seeded_init` draws from ``seed`` instead of :data:`INIT_SEED` (``train --seed``)."""
    before = _seed[0]
    _seed[0] = int(seed)
    try:
        yield
    finally:
        _seed[0] = before


@contextmanager
def seeded_init(seed: int | None = None) -> Iterator[None]:
    """Draw CPU random numbers from ``seed`` (default: :data:`INIT_SEED`, or the one :func:`init_seed` set) inside
    the block or decorated function, then restore the caller's global RNG state: the same model and options give
    the same weights on every run."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_seed[0] if seed is None else seed)
        yield
