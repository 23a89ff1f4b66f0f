"""Knowledge distillation (Hinton et al., 2015): soft teacher targets mixed with the label loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def kd_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``T^2 * KL(softmax(teacher / T) || softmax(student / T))``, averaged over the batch.

    The ``T^2`` factor keeps the soft-target gradients on the scale of the label loss.
    """
    t = float(temperature)
    log_p_student = F.log_softmax(student_logits.float() / t, dim=1)
    log_p_teacher = F.log_softmax(teacher_logits.float() / t, dim=1)
    return F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True) * (t * t)


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, target: torch.Tensor | None, *,
                      alpha: float, temperature: float, label_smoothing: float = 0.0) -> torch.Tensor:
    """``(1 - alpha) * CE(student, labels) + alpha * T^2 * KL`` (alpha = weight of the teacher).

    ``alpha`` 1 is pure distillation: the labels are not read (``target`` may be None, for unlabelled images).
    """
    if alpha >= 1:
        return kd_kl(student_logits, teacher_logits, temperature)
    if target is None:
        raise ValueError("distillation with alpha < 1 needs labels")
    label = F.cross_entropy(student_logits.float(), target, label_smoothing=label_smoothing)
    if alpha <= 0:
        return label
    return (1.0 - alpha) * label + alpha * kd_kl(student_logits, teacher_logits, temperature)
