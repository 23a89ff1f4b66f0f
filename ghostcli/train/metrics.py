"""Running classification metrics: loss, top-1, top-5, agreement with a teacher, image count and compute time."""

from __future__ import annotations

import math
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


def agreement(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> int:
    """How many rows have the same top-1 class in ``student_logits`` and ``teacher_logits``."""
    return int(student_logits.argmax(dim=1).eq(teacher_logits.argmax(dim=1)).sum())


@dataclass
class Meter:
    """Sums over a pass (so that ranks can be combined by adding).

    ``top1``/``top5`` count against labels over the ``labelled`` images; ``agree`` counts images whose top-1
    class is the teacher's, over the ``compared`` images (those seen with teacher logits).
    """

    loss_sum: float = 0.0
    top1: int = 0
    top5: int = 0
    count: int = 0
    seconds: float = 0.0
    agree: int = 0
    labelled: int = 0
    compared: int = 0

    def update(self, loss: float, logits: torch.Tensor, target: torch.Tensor | None,
               teacher_logits: torch.Tensor | None = None) -> None:
        """Add a batch whose mean loss is ``loss``; ``target`` None: no labels; ``teacher_logits``: count
        agreement with the teacher."""
        n = int(logits.shape[0])
        if target is not None:
            c1, c5 = topk_correct(logits.detach(), target)  # labels are checked by the callers, once
            self.top1 += c1
            self.top5 += c5
            self.labelled += n
        if teacher_logits is not None:
            self.agree += agreement(logits.detach(), teacher_logits)
            self.compared += n
        self.loss_sum += float(loss) * n
        self.count += n

    def as_list(self) -> list[float]:
        """For an all-reduce."""
        return [self.loss_sum, float(self.top1), float(self.top5), float(self.count), float(self.agree),
                float(self.labelled), float(self.compared)]

    @classmethod
    def from_list(cls, values: list[float], seconds: float = 0.0) -> Meter:
        """Inverse of :meth:`as_list` (also of the 4 sums checkpoints held before agreement was counted)."""
        v = [int(round(x)) for x in values[1:]]
        if len(v) == 3:  # loss, top1, top5, count: every image labelled, no teacher counted
            v += [0, v[2], 0]
        return cls(values[0], v[0], v[1], v[2], seconds, v[3], v[4], v[5])

    @property
    def loss(self) -> float:
        """Mean loss."""
        return self.loss_sum / self.count if self.count else float("nan")

    @property
    def acc1(self) -> float:
        """Top-1 accuracy in percent (NaN without labelled images)."""
        return 100.0 * self.top1 / self.labelled if self.labelled else float("nan")

    @property
    def acc5(self) -> float:
        """Top-5 accuracy in percent (NaN without labelled images)."""
        return 100.0 * self.top5 / self.labelled if self.labelled else float("nan")

    @property
    def agreement(self) -> float:
        """Top-1 agreement with the teacher in percent (NaN without teacher logits)."""
        return 100.0 * self.agree / self.compared if self.compared else float("nan")


def or_none(value: float) -> float | None:
    """``value``, or None for NaN (a metric that was not measured)."""
    return None if math.isnan(value) else value
