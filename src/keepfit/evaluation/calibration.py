"""Calibration: expected calibration error, reliability-diagram data, and temperature scaling.

Single-label: the confidence of a row is its largest probability; it is right when the argmax is the truth.
Multi-label: every (row, label) decision counts on its own: confidence ``max(p, 1 - p)``, right when
``(p >= 0.5) == truth``; temperature scaling then divides the logits of the sigmoids.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import expit, log_softmax, logit

from keepfit.types import is_single_label

__all__ = [
    "confidence_and_correct",
    "bin_index",
    "expected_calibration_error",
    "reliability_bins",
    "fit_temperature",
    "apply_temperature",
    "negative_log_likelihood",
    "TEMPERATURE_BOUNDS",
]

TEMPERATURE_BOUNDS = (0.05, 20.0)
_EPS = 1e-12


def confidence_and_correct(task: str, y_true: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flat confidence in [0, 1] and 0/1 correctness of each decision (see the module docstring)."""
    if is_single_label(task):
        return probs.max(axis=1), (probs.argmax(axis=1) == y_true).astype(float)
    flat_p, flat_y = probs.ravel(), y_true.ravel()
    return np.maximum(flat_p, 1.0 - flat_p), ((flat_p >= 0.5) == (flat_y == 1)).astype(float)


def bin_index(confidence: np.ndarray, n_bins: int) -> np.ndarray:
    """Equal-width bin of each confidence: bin ``b`` holds ``(b/B, (b+1)/B]``; 0 goes to the first bin."""
    # the small slack keeps exact edges such as 0.7 (0.7 * 10 = 7.000000000000001) in their lower bin
    return np.clip(np.ceil(confidence * n_bins - 1e-9).astype(int) - 1, 0, n_bins - 1)


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, n_bins: int = 15) -> float:
    """ECE = sum over equal-width bins of (bin count / N) * |accuracy in bin - mean confidence in bin|."""
    if len(confidence) == 0:
        return float("nan")
    idx = bin_index(confidence, n_bins)
    conf_sum = np.bincount(idx, weights=confidence, minlength=n_bins)
    acc_sum = np.bincount(idx, weights=correct, minlength=n_bins)
    return float(np.abs(acc_sum - conf_sum).sum() / len(confidence))


def reliability_bins(confidence: np.ndarray, correct: np.ndarray, n_bins: int = 15) -> list[dict[str, float]]:
    """Reliability-diagram data: per bin its edges, count, accuracy and mean confidence (NaN when empty)."""
    idx = bin_index(confidence, n_bins)
    count = np.bincount(idx, minlength=n_bins)
    conf_sum = np.bincount(idx, weights=confidence, minlength=n_bins)
    acc_sum = np.bincount(idx, weights=correct, minlength=n_bins)
    bins = []
    for b in range(n_bins):
        has = count[b] > 0
        bins.append(
            {
                "lo": b / n_bins,
                "hi": (b + 1) / n_bins,
                "count": int(count[b]),
                "accuracy": float(acc_sum[b] / count[b]) if has else float("nan"),
                "confidence": float(conf_sum[b] / count[b]) if has else float("nan"),
            }
        )
    return bins


def _logits(task: str, probs: np.ndarray) -> np.ndarray:
    clipped = np.clip(probs, _EPS, 1 - _EPS) if task == "multi-label" else np.clip(probs, _EPS, 1.0)
    return logit(clipped) if task == "multi-label" else np.log(clipped)


def apply_temperature(task: str, probs: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities with logits divided by ``temperature`` (softmax: single-label, sigmoid: multi-label).

    Log-probabilities are logits up to a per-row constant, which softmax ignores, so probabilities suffice.
    """
    z = _logits(task, probs) / temperature
    return expit(z) if task == "multi-label" else np.exp(log_softmax(z, axis=1))


def negative_log_likelihood(
    task: str, y_true: np.ndarray, probs: np.ndarray, temperature: float = 1.0
) -> float:
    """Mean NLL (nats) of the truth under ``probs`` scaled by ``temperature`` (per row, or per decision)."""
    z = _logits(task, probs) / temperature
    if task == "multi-label":
        # binary cross-entropy from logits, stable: log(1 + e^-|z|) + max(z, 0) - y z
        return float(np.mean(np.logaddexp(0, z) - y_true * z))
    logp = log_softmax(z, axis=1)
    known = y_true >= 0
    return float(-np.mean(logp[np.flatnonzero(known), y_true[known]])) if known.any() else float("nan")


def fit_temperature(task: str, y_true: np.ndarray, probs: np.ndarray) -> float:
    """The temperature T minimising validation NLL, searched on log T within :data:`TEMPERATURE_BOUNDS`."""
    lo, hi = np.log(TEMPERATURE_BOUNDS[0]), np.log(TEMPERATURE_BOUNDS[1])
    result = minimize_scalar(
        lambda log_t: negative_log_likelihood(task, y_true, probs, float(np.exp(log_t))),
        bounds=(lo, hi),
        method="bounded",
        options={"xatol": 1e-4},
    )
    return float(np.exp(result.x))
