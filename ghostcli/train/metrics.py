"""Running classification metrics: loss, top-1, top-5, image count and compute time."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ghostcli.errors import DataError


def check_targets(logits: torch.Tensor, target: torch.Tensor) -> None:
    """Refuse labels the model has no output for (instead of an IndexError deep in the loss)."""
    if logits.dim() != 2:
        raise DataError(f"the model returns {tuple(logits.shape)} outputs, expected (batch, classes) logits")
    if target.numel() and int(target.max()) >= logits.shape[1]:
        raise DataError(f"the model has {logits.shape[1]} outputs but the data has labels up to {int(target.max())} "
                        "(more classes than the model was built for)")


def topk_correct(logits: torch.Tensor, target: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> list[int]:
    """How many rows have the target among their ``k`` highest logits, for each ``k``."""
    kmax = min(max(ks), logits.shape[1])
    top = logits.topk(kmax, dim=1).indices
    hits = top.eq(target.view(-1, 1))
    return torch.stack([hits[:, : min(k, kmax)].any(dim=1).sum() for k in ks]).tolist()  # one device sync


@dataclass
class Meter:
    """Sums over a pass (so that ranks can be combined by adding)."""

    loss_sum: float = 0.0
    top1: int = 0
    top5: int = 0
    count: int = 0
    seconds: float = 0.0

    def update(self, loss: float, logits: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch whose mean loss is ``loss``."""
        c1, c5 = topk_correct(logits.detach(), target)  # labels are checked by the callers, once
        n = int(target.shape[0])
        self.loss_sum += float(loss) * n
        self.top1 += c1
        self.top5 += c5
        self.count += n

    def as_list(self) -> list[float]:
        """For an all-reduce."""
        return [self.loss_sum, float(self.top1), float(self.top5), float(self.count)]

    @classmethod
    def from_list(cls, values: list[float], seconds: float = 0.0) -> Meter:
        """Inverse of :meth:`as_list`."""
        return cls(values[0], int(round(values[1])), int(round(values[2])), int(round(values[3])), seconds)

    @property
    def loss(self) -> float:
        """Mean loss."""
        return self.loss_sum / self.count if self.count else float("nan")

    @property
    def acc1(self) -> float:
        """Top-1 accuracy in percent."""
        return 100.0 * self.top1 / self.count if self.count else float("nan")

    @property
    def acc5(self) -> float:
        """Top-5 accuracy in percent."""
        return 100.0 * self.top5 / self.count if self.count else float("nan")
