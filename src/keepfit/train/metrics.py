"""Validation metrics for early stopping and learning curves (full evaluation lives in keepfit.evaluation)."""

from __future__ import annotations

import logging

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error, r2_score

from keepfit.types import answer_kind, is_single_label

__all__ = ["eval_metrics", "best_metric_name", "LOWER_IS_BETTER", "TASK_DEFAULT_METRIC"]

LOWER_IS_BETTER = {"loss", "mae", "rmse"}
TASK_DEFAULT_METRIC = {
    "single-label": "accuracy", "multi-label": "micro_f1", "regression": "r2", "text-generation": "loss"
}
_METRICS = {
    "single-label": {"accuracy", "macro_f1", "loss"},
    "multi-label": {"accuracy", "micro_f1", "macro_f1", "loss"},
    "regression": {"mae", "rmse", "r2", "loss"},
    "text-generation": {"loss", "token_accuracy"},  # on the validation answers' tokens (keepfit.train.sft)
}
log = logging.getLogger("keepfit.train")


def best_metric_name(task: str, configured: str) -> str:
    """``configured`` when the task reports it, else the task's default (logged)."""
    name = configured.removeprefix("validation_")
    if name in _METRICS[answer_kind(task)]:
        return name
    log.warning(
        "metric_for_best %r does not apply to %s; using %s", configured, task, TASK_DEFAULT_METRIC[answer_kind(task)]
    )
    return TASK_DEFAULT_METRIC[answer_kind(task)]


def eval_metrics(
    task: str, logits: torch.Tensor, targets: torch.Tensor, mean: float = 0.0, std: float = 1.0
) -> dict[str, float]:
    """Metrics of ``logits`` [n, C] (regression [n, 1], standardised) against the loop's ``targets``."""
    logits = logits.float()
    if is_single_label(task):
        pred = logits.argmax(-1).numpy()
        y = targets.numpy()
        return {
            "loss": float(F.cross_entropy(logits, targets)),
            "accuracy": float(accuracy_score(y, pred)),
            "macro_f1": float(f1_score(y, pred, average="macro", zero_division=0)),
        }
    if task == "multi-label":
        pred = (logits >= 0).int().numpy()
        y = targets.int().numpy()
        return {
            "loss": float(F.binary_cross_entropy_with_logits(logits, targets.float())),
            "accuracy": float(accuracy_score(y, pred)),
            "micro_f1": float(f1_score(y, pred, average="micro", zero_division=0)),
            "macro_f1": float(f1_score(y, pred, average="macro", zero_division=0)),
        }
    pred = logits.reshape(-1).numpy() * std + mean
    y = targets.numpy() * std + mean
    return {
        "loss": float(F.mse_loss(logits.reshape(-1), targets)),
        "mae": float(mean_absolute_error(y, pred)),
        "rmse": float(np.sqrt(np.mean((y - pred) ** 2))),
        "r2": float(r2_score(y, pred)) if len(y) > 1 else float("nan"),
    }
