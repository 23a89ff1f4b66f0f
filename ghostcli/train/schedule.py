"""Optimizers and per-step learning-rate schedules (linear warm-up, then cosine or step decay)."""

from __future__ import annotations

import math

import torch
from torch import nn

from ghostcli.errors import UsageError

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "step", "constant")
DEFAULT_LR = {"sgd": 0.1, "adamw": 1e-3}
DEFAULT_WEIGHT_DECAY = {"sgd": 5e-4, "adamw": 0.05}


def check_choice(kind: str, name: str) -> None:
    """Raise ``UsageError`` unless ``name`` is a known ``kind`` ("optimizer" or "schedule")."""
    choices = OPTIMIZERS if kind == "optimizer" else SCHEDULES
    if name not in choices:
        raise UsageError(f"unknown {kind} {name!r} (choose from {', '.join(choices)})")


def build_optimizer(model: nn.Module, name: str, lr: float, weight_decay: float,
                    momentum: float = 0.9) -> torch.optim.Optimizer:
    """SGD (Nesterov momentum) or AdamW; no weight decay on biases and normalization weights."""
    check_choice("optimizer", name)
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=momentum > 0)
    return torch.optim.AdamW(groups, lr=lr)


def lr_factor(step: int, *, schedule: str, total_steps: int, warmup_steps: int) -> float:
    """Multiplier of the base learning rate after ``step`` optimizer steps."""
    check_choice("schedule", schedule)
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return 0.1 ** ((progress >= 0.5) + (progress >= 0.75))  # "step": x0.1 at 50% and again at 75%


def build_scheduler(optimizer: torch.optim.Optimizer, *, schedule: str, epochs: int, steps_per_epoch: int,
                    warmup_epochs: float) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step ``LambdaLR`` (its state dict holds only plain numbers)."""
    check_choice("schedule", schedule)
    total = epochs * steps_per_epoch
    warmup = int(round(warmup_epochs * steps_per_epoch))

    def factor(step: int) -> float:
        return lr_factor(step, schedule=schedule, total_steps=total, warmup_steps=warmup)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
