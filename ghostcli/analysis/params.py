"""Parameter counts and weight sizes.

Two counts, two names: :func:`total_and_trainable_params` is the pair a profile reports,
:func:`module_params` the plain number of parameters inside one module (and its children).
"""

from __future__ import annotations

import torch
from torch import nn


def total_and_trainable_params(model: nn.Module) -> tuple[int, int]:
    """(total, trainable) parameters; tensors shared between modules are counted once."""
    total = trainable = 0
    for p in model.parameters():  # parameters() already de-duplicates shared tensors
        total += p.numel()
        if p.requires_grad:
            trainable += p.numel()
    return total, trainable


def weight_bytes(model: nn.Module, dtype: torch.dtype | None = None) -> int:
    """Bytes of parameters and buffers (BN running stats) stored at ``dtype`` (default: as they are).

    Floating tensors take ``dtype``'s element size when given; integer buffers
    (``num_batches_tracked``) keep theirs.
    """
    total = 0
    tensors = list(model.parameters()) + list(model.buffers())
    seen: set[int] = set()
    for t in tensors:
        if id(t) in seen:
            continue
        seen.add(id(t))
        size = t.element_size()
        if dtype is not None and t.is_floating_point():
            size = torch.empty((), dtype=dtype).element_size()
        total += t.numel() * size
    return total


def module_params(module: nn.Module) -> int:
    """Parameters of ``module`` and its children."""
    return sum(p.numel() for p in module.parameters())
