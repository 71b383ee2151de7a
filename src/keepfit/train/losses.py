"""Task losses, and focal distillation from an earlier model (Yan et al., CVPR 2021)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from keepfit.types import is_single_label

__all__ = ["task_loss", "focal_distillation_loss"]


def task_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    task: str,
    *,
    class_weights: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
    row_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean loss of a batch.

    single-label: cross-entropy, ``logits`` [B, C], ``target`` [B] class ids; ``row_weights`` [B] makes it the
    weighted mean over rows (train.fairness_reweight), each row's weight times its class weight;
    multi-label: BCE-with-logits, ``target`` [B, C] in {0, 1} (``class_weights`` act as pos_weight);
    regression: MSE on the standardised target, ``logits`` [B, 1], ``target`` [B].
    """
    logits = logits.float()
    if is_single_label(task) and row_weights is not None:
        per_row = F.cross_entropy(
            logits, target, weight=class_weights, label_smoothing=label_smoothing, reduction="none"
        )
        scale = row_weights if class_weights is None else row_weights * class_weights[target]
        return (row_weights * per_row).sum() / scale.sum().clamp_min(1e-12)
    if is_single_label(task):
        return F.cross_entropy(logits, target, weight=class_weights, label_smoothing=label_smoothing)
    if task == "multi-label":
        soft = target * (1 - label_smoothing) + 0.5 * label_smoothing if label_smoothing else target
        return F.binary_cross_entropy_with_logits(logits, soft, pos_weight=class_weights)
    return F.mse_loss(logits.squeeze(-1), target)


def focal_distillation_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    teacher_correct: torch.Tensor,
    task: str,
    *,
    temperature: float = 2.0,
    alpha: float = 1.0,
    beta: float = 5.0,
) -> torch.Tensor:
    """Distillation towards the teacher, weighted ``alpha + beta * teacher_correct`` per example.

    ``teacher`` [B, C_old] covers the old labels only and ``student`` [B, C_old] are the student's outputs for
    those same labels (the caller picks the columns), so new labels stay free to be learnt.
    single-label: T² · KL(softmax(t/T) || softmax(s/T)); multi-label: BCE
    towards sigmoid(t/T); regression: squared difference.
    """
    student = student.float()
    weight = alpha + beta * teacher_correct.float()
    if is_single_label(task):
        log_p = F.log_softmax(student / temperature, dim=-1)
        q = F.softmax(teacher / temperature, dim=-1)
        per_row = (q * (torch.log(q.clamp_min(1e-12)) - log_p)).sum(-1) * temperature**2
    elif task == "multi-label":
        per_row = (
            F.binary_cross_entropy_with_logits(
                student / temperature, torch.sigmoid(teacher / temperature), reduction="none"
            ).mean(-1)
            * temperature**2
        )
    else:
        per_row = (student - teacher).pow(2).squeeze(-1)
    return (weight * per_row).sum() / weight.sum().clamp_min(1e-12)
