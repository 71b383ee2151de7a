"""Seeded, vectorised percentile bootstrap over per-example statistics.

Every metric keepfit bootstraps is a function of *sums* of per-example statistics (counts of correct
answers, true/predicted/true-positive indicators per class, absolute and squared errors). A resample is then
a row of multiplicities ``W[b, i]`` (how often example ``i`` was drawn in resample ``b``) and its sums are
one matrix product ``W @ S``. The multiplicities come from a numpy index matrix
``rng.integers(0, n, (B, n))``, so a paired comparison uses the *same* resamples for both models simply by
stacking their statistics.
"""

from __future__ import annotations

import numpy as np

__all__ = ["resample_indices", "bootstrap_sums", "percentile_interval", "MAX_CELLS"]

# Resamples are drawn in chunks so that one chunk's index matrix stays below this many cells (~160 MB int64).
MAX_CELLS = 20_000_000


def resample_indices(n: int, resamples: int, seed: int) -> np.ndarray:
    """The bootstrap index matrix [resamples, n] that :func:`bootstrap_sums` draws (there chunk by chunk)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, n, size=(resamples, n))


def _chunk_rows(n: int, resamples: int) -> int:
    return max(1, min(resamples, MAX_CELLS // max(n, 1)))


def bootstrap_sums(stats: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """Column sums of ``stats`` [n, k] over bootstrap resamples of its rows: shape [resamples, k].

    Deterministic for a given seed: resample ``b`` uses row ``b`` of
    :func:`resample_indices` ``(n, resamples, seed)``.
    """
    stats = np.asarray(stats, dtype=float)
    if stats.ndim == 1:
        stats = stats[:, None]
    n, k = stats.shape
    out = np.empty((resamples, k), dtype=float)
    if resamples == 0 or n == 0:
        return out
    rng = np.random.default_rng(seed)
    step = _chunk_rows(n, resamples)
    for start in range(0, resamples, step):
        b = min(step, resamples - start)
        idx = rng.integers(0, n, size=(b, n))
        flat = (idx + (np.arange(b) * n)[:, None]).ravel()
        weights = np.bincount(flat, minlength=b * n).reshape(b, n).astype(float)
        out[start : start + b] = weights @ stats
    return out


def percentile_interval(samples: np.ndarray, confidence: float) -> tuple[float, float] | None:
    """Two-sided percentile interval of bootstrap ``samples`` [B] (NaNs ignored); None if none is finite."""
    values = np.asarray(samples, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None
    tail = (1.0 - confidence) / 2.0 * 100.0
    lo, hi = np.percentile(values, [tail, 100.0 - tail])
    return float(lo), float(hi)
