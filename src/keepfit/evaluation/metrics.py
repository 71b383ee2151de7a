"""Metrics for single-label, multi-label and regression outputs.

Point estimates come from scikit-learn and scipy. For intervals, per-slice values and paired deltas the same
metrics are also written as functions of summed per-example statistics
(see :mod:`keepfit.evaluation.bootstrap`); tests pin both forms to each other.

Array conventions (shared with the training stage), ``n`` examples and ``C`` labels:

- single-label: ``y_true`` int [n] indices into ``labels`` (``-1`` = a label the model does not know, always
  wrong); ``outputs`` softmax probabilities [n, C].
- multi-label: ``y_true`` 0/1 int [n, C]; ``outputs`` sigmoid probabilities [n, C].
- regression: ``y_true`` float [n]; ``outputs`` float predictions [n] (or [n, 1]).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy import stats as sps
from sklearn import metrics as skm

from keepfit.errors import DataError
from keepfit.types import answer_kind, is_single_label

__all__ = [
    "Task",
    "HIGHER_IS_BETTER",
    "check_outputs",
    "predict_single",
    "predict_multi",
    "top_k_hits",
    "tune_thresholds",
    "single_label_headline",
    "multi_label_headline",
    "regression_headline",
    "per_class_single",
    "per_label_multi",
    "single_stats",
    "single_from_sums",
    "multi_stats",
    "multi_from_sums",
    "regression_stats",
    "regression_from_sums",
]

Task = Literal["single-label", "multi-label", "regression"]
TASKS = ("single-label", "multi-label", "regression")

# Direction of every metric keepfit reports; deltas are always new - old, this says which sign is good.
HIGHER_IS_BETTER: dict[str, bool] = {
    "accuracy": True,
    "top_k_accuracy": True,
    "macro_f1": True,
    "micro_f1": True,
    "weighted_f1": True,
    "macro_precision": True,
    "macro_recall": True,
    "weighted_precision": True,
    "weighted_recall": True,
    "subset_accuracy": True,
    "hamming_loss": False,
    "mae": False,
    "rmse": False,
    "r2": True,
    "spearman": True,
    "within_tolerance": True,
    "ece": False,
    "nll": False,
    "recall": True,
    "f1": True,
    # text-generation (keepfit.evaluation.generation): shares of examples, all higher-is-better
    "exact_match": True,
    "token_f1": True,
    "field_match": True,
    "json_valid": True,
    "rouge_l": True,
    "eos_rate": True,
    "field_accuracy": True,
}


def check_outputs(
    task: str, labels: list[str], y_true: np.ndarray, outputs: np.ndarray, what: str = "outputs"
) -> tuple[np.ndarray, np.ndarray]:
    """Validate and normalise ``y_true``/``outputs`` for ``task``; raise DataError saying what is wrong."""
    if answer_kind(task) not in TASKS:
        raise DataError(f"task must be one of {', '.join(TASKS)}, got {task!r}.")
    y = np.asarray(y_true)
    out = np.asarray(outputs, dtype=float)
    if task == "regression" and out.ndim == 2 and out.shape[1] == 1:
        out = out[:, 0]
    n = len(y)
    if n == 0:
        raise DataError(
            f"Nothing to evaluate: {what} has 0 examples. Evaluate on a split with at least one row."
        )
    if len(out) != n:
        raise DataError(
            f"{what}: y_true has {n} rows but outputs has {len(out)}; they must be aligned row by row."
        )
    bad = ~np.isfinite(out)
    if bad.any():
        rows = np.flatnonzero(bad.reshape(n, -1).any(axis=1))
        raise DataError(
            f"{what} contain {int(bad.sum())} NaN or infinite values (rows {rows[:10].tolist()}"
            f"{' ...' if len(rows) > 10 else ''}). The model probably diverged: retrain with a lower "
            "learning "
            "rate or check the checkpoint."
        )
    if task == "regression":
        if out.ndim != 1:
            raise DataError(f"{what}: regression expects predictions of shape [n], got {list(out.shape)}.")
        y = y.astype(float)
        if not np.isfinite(y).all():
            raise DataError(
                f"{what}: regression targets contain NaN or infinite values; clean the data first."
            )
        return y, out
    c = len(labels)
    if out.ndim != 2 or out.shape[1] != c:
        raise DataError(
            f"{what}: {task} expects probabilities of shape [n, {c}] (one column per label), "
            f"got {list(out.shape)}."
        )
    if is_single_label(task):
        y = y.astype(int)
        if y.ndim != 1 or (y >= c).any() or (y < -1).any():
            raise DataError(
                f"{what}: single-label y_true must be label indices in [0, {c}) (or -1 for a label "
                f"the model does not know), got values from {y.min()} to {y.max()}."
            )
    else:
        y = y.astype(int)
        if y.shape != out.shape or not np.isin(y, (0, 1)).all():
            raise DataError(
                f"{what}: multi-label y_true must be a 0/1 matrix of shape {list(out.shape)}, "
                f"got shape {list(y.shape)}."
            )
    return y, out


def predict_single(probs: np.ndarray) -> np.ndarray:
    """Predicted label index per row: argmax of probabilities [n, C] -> [n]."""
    return np.argmax(probs, axis=1)


def predict_multi(probs: np.ndarray, thresholds: np.ndarray | float = 0.5) -> np.ndarray:
    """0/1 predictions [n, C]: probability >= the label's threshold."""
    return (probs >= np.asarray(thresholds, dtype=float)).astype(int)


def top_k_hits(y_true: np.ndarray, probs: np.ndarray, k: int) -> np.ndarray:
    """1.0 where the true label is among the ``k`` most probable labels, else 0.0 (shape [n])."""
    k = min(k, probs.shape[1])
    top = (
        np.argpartition(-probs, k - 1, axis=1)[:, :k]
        if k < probs.shape[1]
        else np.tile(np.arange(probs.shape[1]), (len(probs), 1))
    )
    return (top == y_true[:, None]).any(axis=1).astype(float)


def tune_thresholds(y_true: np.ndarray, probs: np.ndarray, grid: np.ndarray | None = None) -> np.ndarray:
    """Per-label thresholds [C] maximising that label's F1 on validation data.

    Candidates are 0.05, 0.10, ..., 0.95; ties go to the threshold closest to 0.5. A label without a positive
    example in ``y_true`` keeps 0.5 (there is nothing to tune on).
    """
    grid = np.round(np.arange(0.05, 0.951, 0.05), 2) if grid is None else np.asarray(grid, dtype=float)
    pred = probs[None, :, :] >= grid[:, None, None]  # [G, n, C]
    truth = y_true.astype(bool)[None]
    tp = (pred & truth).sum(axis=1)
    denom = pred.sum(axis=1) + truth.sum(axis=1)
    f1 = np.divide(2 * tp, denom, out=np.zeros(tp.shape, dtype=float), where=denom > 0)  # [G, C]
    order = np.argsort(np.abs(grid - 0.5), kind="stable")
    best = order[np.argmax(f1[order], axis=0)]
    thresholds = grid[best]
    thresholds[y_true.sum(axis=0) == 0] = 0.5
    return thresholds


def single_label_headline(y_true: np.ndarray, probs: np.ndarray, top_k: int) -> dict[str, float]:
    """accuracy, top_k_accuracy, P/R/F1 macro, micro, weighted (over labels in truth or predictions)."""
    pred = predict_single(probs)
    out = {
        "accuracy": float(np.mean(pred == y_true)),
        "top_k_accuracy": float(top_k_hits(y_true, probs, top_k).mean()),
    }
    known = y_true >= 0
    for average in ("macro", "micro", "weighted"):
        p, r, f, _ = skm.precision_recall_fscore_support(
            y_true, pred, average=average, zero_division=0, labels=np.union1d(y_true[known], pred)
        )
        out[f"{average}_precision"], out[f"{average}_recall"], out[f"{average}_f1"] = (
            float(p),
            float(r),
            float(f),
        )
    return out


def per_class_single(y_true: np.ndarray, probs: np.ndarray, labels: list[str]) -> dict[str, dict[str, float]]:
    """Precision, recall, F1 and support per label (a label absent from the data has support 0 and zeros)."""
    pred = predict_single(probs)
    p, r, f, s = skm.precision_recall_fscore_support(
        y_true, pred, labels=np.arange(len(labels)), average=None, zero_division=0
    )
    return {
        name: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
        for i, name in enumerate(labels)
    }


def multi_label_headline(y_true: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """subset_accuracy, hamming_loss and F1 (micro, macro over every label, weighted) of 0/1 predictions."""
    out = {
        "subset_accuracy": float(skm.accuracy_score(y_true, pred)),
        "hamming_loss": float(skm.hamming_loss(y_true, pred)),
    }
    for average in ("micro", "macro", "weighted"):
        p, r, f, _ = skm.precision_recall_fscore_support(y_true, pred, average=average, zero_division=0)
        out[f"{average}_precision"], out[f"{average}_recall"], out[f"{average}_f1"] = (
            float(p),
            float(r),
            float(f),
        )
    return out


def per_label_multi(
    y_true: np.ndarray, pred: np.ndarray, labels: list[str], thresholds: np.ndarray
) -> dict[str, dict[str, float]]:
    """Precision, recall, F1, support and the decision threshold per label."""
    p, r, f, s = skm.precision_recall_fscore_support(y_true, pred, average=None, zero_division=0)
    return {
        name: {
            "precision": float(p[i]),
            "recall": float(r[i]),
            "f1": float(f[i]),
            "support": int(s[i]),
            "threshold": float(thresholds[i]),
        }
        for i, name in enumerate(labels)
    }


def regression_headline(y_true: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """MAE, RMSE, R² and Spearman's rank correlation (NaN where undefined, e.g. constant targets)."""
    out = {
        "mae": float(skm.mean_absolute_error(y_true, pred)),
        "rmse": float(np.sqrt(skm.mean_squared_error(y_true, pred))),
        "r2": float(skm.r2_score(y_true, pred)) if len(y_true) > 1 and np.ptp(y_true) > 0 else float("nan"),
    }
    if len(y_true) > 1 and np.ptp(y_true) > 0 and np.ptp(pred) > 0:
        out["spearman"] = float(sps.spearmanr(y_true, pred).statistic)
    else:
        out["spearman"] = float("nan")
    return out


# ---- the same metrics from summed per-example statistics (for bootstrap, slices, paired deltas) ----


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num, den = np.broadcast_arrays(np.asarray(num, dtype=float), np.asarray(den, dtype=float))
    return np.divide(num, den, out=np.zeros(num.shape, dtype=float), where=den > 0)


def _nan_ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num, den = np.broadcast_arrays(np.asarray(num, dtype=float), np.asarray(den, dtype=float))
    return np.divide(num, den, out=np.full(num.shape, np.nan), where=den > 0)


def single_stats(
    y_true: np.ndarray, pred: np.ndarray, n_labels: int, topk: np.ndarray | None = None
) -> np.ndarray:
    """Per-example statistics [n, 3 + 3C]: one, correct, top-k hit, one-hot truth, prediction, TP."""
    n = len(y_true)
    eye = np.eye(n_labels, dtype=float)
    truth = (
        np.zeros((n, n_labels))
        if n_labels == 0
        else np.where((y_true >= 0)[:, None], eye[np.maximum(y_true, 0)], 0)
    )
    predicted = eye[pred]
    correct = (pred == y_true).astype(float)
    hits = correct if topk is None else topk
    return np.column_stack([np.ones(n), correct, hits, truth, predicted, truth * correct[:, None]])


def single_from_sums(sums: np.ndarray, n_labels: int) -> dict[str, np.ndarray]:
    """Metrics from summed :func:`single_stats` columns (any leading shape): accuracy, top-k, F1s, recalls.

    Macro averages run over the labels that occur in the truth or the predictions of that sum (as scikit-learn
    does with ``labels=None``); ``recall_per_class`` is NaN for a label without examples.
    """
    c = n_labels
    one, correct, hits = sums[..., 0], sums[..., 1], sums[..., 2]
    true, pred, tp = sums[..., 3 : 3 + c], sums[..., 3 + c : 3 + 2 * c], sums[..., 3 + 2 * c : 3 + 3 * c]
    present = (true + pred) > 0
    n_present = present.sum(axis=-1)
    f1 = _ratio(2 * tp, true + pred)
    precision, recall = _ratio(tp, pred), _ratio(tp, true)
    support = true.sum(axis=-1)
    return {
        "accuracy": _nan_ratio(correct, one),
        "top_k_accuracy": _nan_ratio(hits, one),
        "macro_f1": _nan_ratio((f1 * present).sum(axis=-1), n_present),
        "macro_precision": _nan_ratio((precision * present).sum(axis=-1), n_present),
        "macro_recall": _nan_ratio((recall * present).sum(axis=-1), n_present),
        "weighted_f1": _nan_ratio((f1 * true).sum(axis=-1), support),
        "micro_f1": _nan_ratio(2 * tp.sum(axis=-1), (true + pred).sum(axis=-1)),
        "recall_per_class": _nan_ratio(tp, true),
        "f1_per_class": f1,
        "support_per_class": true,
    }


def multi_stats(y_true: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Per-example statistics [n, 3 + 3C]: one, exact match, label errors, truth, prediction, TP."""
    n = len(y_true)
    exact = (pred == y_true).all(axis=1).astype(float)
    errors = (pred != y_true).sum(axis=1).astype(float)
    return np.column_stack([np.ones(n), exact, errors, y_true, pred, y_true * pred]).astype(float)


def multi_from_sums(sums: np.ndarray, n_labels: int) -> dict[str, np.ndarray]:
    """Metrics from summed :func:`multi_stats` columns: subset accuracy, Hamming loss, F1s.

    Macro F1 averages over every label (as scikit-learn does for indicator matrices).
    """
    c = n_labels
    one, exact, errors = sums[..., 0], sums[..., 1], sums[..., 2]
    true, pred, tp = sums[..., 3 : 3 + c], sums[..., 3 + c : 3 + 2 * c], sums[..., 3 + 2 * c : 3 + 3 * c]
    f1 = _ratio(2 * tp, true + pred)
    return {
        "subset_accuracy": _nan_ratio(exact, one),
        "hamming_loss": _nan_ratio(errors, one * c),
        "micro_f1": _nan_ratio(2 * tp.sum(axis=-1), (true + pred).sum(axis=-1)),
        "macro_f1": f1.mean(axis=-1) if c else np.full(one.shape, np.nan),
        "f1_per_class": f1,
        "recall_per_class": _nan_ratio(tp, true),
        "support_per_class": true,
    }


def regression_stats(y_true: np.ndarray, pred: np.ndarray, tolerance: float | None = None) -> np.ndarray:
    """Per-example statistics [n, 6]: one, |error|, error², y, y², |error| <= tolerance."""
    err = pred - y_true
    within = np.abs(err) <= tolerance if tolerance is not None else np.zeros(len(err), dtype=bool)
    return np.column_stack([np.ones(len(err)), np.abs(err), err**2, y_true, y_true**2, within.astype(float)])


def regression_from_sums(sums: np.ndarray) -> dict[str, np.ndarray]:
    """mae, rmse, r2 and within_tolerance from summed :func:`regression_stats` columns."""
    one, ae, se, y, y2, within = (sums[..., i] for i in range(6))
    total = y2 - _nan_ratio(y * y, one)
    return {
        "mae": _nan_ratio(ae, one),
        "rmse": np.sqrt(_nan_ratio(se, one)),
        "r2": 1.0 - _nan_ratio(se, np.where(total > 1e-12 * np.maximum(y2, 1), total, 0)),
        "within_tolerance": _nan_ratio(within, one),
    }
