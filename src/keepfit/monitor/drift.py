"""The monitor's statistics: pure functions on texts and arrays, each returning a small frozen result.

Every test answers "does the window differ from the reference by more than chance makes?" at a level the caller
gives (``alpha``: config ``monitor.false_alarm_rate``), so a window drawn from the reference's own distribution
alerts at most that often:

- :func:`domain_classifier_test`: input drift. A classifier two-sample test (Lopez-Paz & Oquab, ICLR 2017): a
  logistic regression on TF-IDF features learns to tell window texts from reference texts on one half, and its
  AUC on the other half is compared with the permutation null of that AUC (shuffling the held-out domain labels
  is valid without refitting, because the classifier never saw the held-out half).
- :func:`label_shift`: prediction drift. PSI of the predicted-label shares and a chi-square test of homogeneity
  of the two count vectors (its permutation version where expected counts are small).
- :func:`confidence_drop`: a one-sided Welch t-test that the window's mean top probability is lower.
- :func:`proportion`: a share with its Wilson interval (abstention rate, realised accuracy).
- :func:`estimated_accuracy`: CBPE-style accuracy from calibrated confidences, without labels.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.stats import chi2_contingency, norm, rankdata, ttest_ind
from statsmodels.stats.proportion import proportion_confint

from keepfit.errors import DataError

__all__ = [
    "DriftTerm",
    "DomainClassifierTest",
    "LabelShift",
    "ConfidenceDrop",
    "Proportion",
    "AccuracyEstimate",
    "MIN_TEXTS",
    "domain_classifier_test",
    "label_shift",
    "confidence_drop",
    "proportion",
    "estimated_accuracy",
]

MIN_TEXTS = 20  # per side: below this a held-out half has too few texts for an AUC worth testing
_PSI_SMOOTHING = 0.5  # added to every count before shares are taken, so a label absent on one side stays finite
_COCHRAN_MIN_EXPECTED = 5.0  # the chi-square approximation holds when every expected count is at least this
_CHI2_RESAMPLES = 1999


@dataclass(frozen=True)
class DriftTerm:
    """A word n-gram that tells window texts from reference texts: its logistic-regression ``weight`` and the
    share of window and reference texts (in the compared samples) that contain it."""

    term: str
    weight: float
    window_share: float
    reference_share: float


@dataclass(frozen=True)
class DomainClassifierTest:
    """Input drift. ``auc``: held-out AUC of the window-vs-reference classifier (0.5 = cannot tell them apart);
    ``null_p95``: the 95th percentile of its permutation null; ``p_value`` = (1 + #null >= auc) / (1 +
    permutations); ``n_per_side`` texts of each side were compared (half fitted, half held out);
    ``terms``: the word n-grams most typical of the window (largest positive weights)."""

    auc: float
    null_p95: float
    p_value: float
    permutations: int
    n_per_side: int
    terms: tuple[DriftTerm, ...]


@dataclass(frozen=True)
class LabelShift:
    """Prediction drift over ``labels``: ``psi`` of the smoothed shares (window vs reference), the chi-square
    statistic of the 2 x K table and its ``p_value`` (``method`` "asymptotic" or "permutation", the latter where
    an expected count is below 5)."""

    labels: tuple[str, ...]
    reference_counts: tuple[int, ...]
    window_counts: tuple[int, ...]
    psi: float
    chi2: float
    p_value: float
    method: str

    def shares(self) -> tuple[np.ndarray, np.ndarray]:
        """Raw (unsmoothed) shares [K] of the reference and of the window."""
        ref, win = np.asarray(self.reference_counts, float), np.asarray(self.window_counts, float)
        return ref / max(ref.sum(), 1.0), win / max(win.sum(), 1.0)


@dataclass(frozen=True)
class ConfidenceDrop:
    """Mean top probability of the reference and the window, ``drop`` = reference - window, and the one-sided
    Welch t-test's ``p_value`` (small: the window's mean is lower)."""

    reference_mean: float
    window_mean: float
    drop: float
    t: float
    p_value: float
    n_reference: int
    n_window: int


@dataclass(frozen=True)
class Proportion:
    """``count`` of ``n`` (``rate``) with its Wilson interval at ``level``."""

    count: int
    n: int
    rate: float
    interval: tuple[float, float]
    level: float


@dataclass(frozen=True)
class AccuracyEstimate:
    """CBPE: ``value`` = mean calibrated top probability of ``n`` answered rows, the expected share right;
    ``interval`` at ``level`` for the realised accuracy of these rows, from the variance of a sum of independent
    Bernoulli(p_i): sum p_i (1 - p_i) / n^2."""

    value: float
    interval: tuple[float, float]
    n: int
    level: float


# --------------------------------------------------------------------------------------------- input drift


def domain_classifier_test(
    reference: Sequence[str],
    window: Sequence[str],
    *,
    permutations: int = 200,
    max_rows: int = 20_000,
    seed: int = 0,
    top_terms: int = 10,
) -> DomainClassifierTest:
    """Can a classifier tell ``window`` texts from ``reference`` texts better than chance?

    Both sides are sampled to the same size n = min(len(reference), len(window), max_rows), so the AUC does not
    depend on the imbalance. Features: TF-IDF of word 1-2 grams and character 3-5 grams, fitted on the training
    half only. Raises DataError with fewer than :data:`MIN_TEXTS` texts on a side."""
    rng = np.random.default_rng(seed)
    n = min(len(reference), len(window), max_rows)
    if n < MIN_TEXTS:
        raise DataError(
            f"Input drift needs at least {MIN_TEXTS} texts on each side, got {len(reference)} reference and "
            f"{len(window)} window texts. Widen the window (--since) or wait for more traffic."
        )
    texts = _sample(reference, n, rng) + _sample(window, n, rng)
    domain = np.repeat([0, 1], n)
    fit = np.concatenate([rng.permutation(n)[: n // 2], n + rng.permutation(n)[: n // 2]])
    held = np.setdiff1d(np.arange(2 * n), fit)
    words, chars = _vectorizers()
    fit_texts, held_texts = [texts[i] for i in fit], [texts[i] for i in held]
    word_features = _features(words, fit_texts, held_texts)
    parts = [f for f in (word_features, _features(chars, fit_texts, held_texts)) if f is not None]
    if not parts:
        raise DataError(
            f"Input drift cannot compare these texts: no word or character 3-gram occurs in two of the {len(fit)} "
            "fitted texts (are they ids or hashes?). Log the request texts (serve.redact: false)."
        )
    x_fit = sp.hstack([f[0] for f in parts]).tocsr()
    x_held = sp.hstack([f[1] for f in parts]).tocsr()
    ranks = rankdata(_logistic(x_fit, domain[fit]).decision_function(x_held))
    auc = _auc_from_ranks(ranks, domain[held])
    null = _permuted_aucs(ranks, domain[held], permutations, rng)
    terms = () if word_features is None else _drift_terms(
        sp.vstack(word_features).tocsr(), domain[np.concatenate([fit, held])], words.get_feature_names_out(),
        top_terms,
    )
    return DomainClassifierTest(
        auc=float(auc),
        null_p95=float(np.quantile(null, 0.95)),
        p_value=float((1 + np.sum(null >= auc - 1e-12)) / (1 + permutations)),
        permutations=int(permutations),
        n_per_side=int(n),
        terms=terms,
    )


def _sample(texts: Sequence[str], n: int, rng: np.random.Generator) -> list[str]:
    chosen = rng.choice(len(texts), size=n, replace=False) if len(texts) > n else np.arange(len(texts))
    return [str(texts[i]) for i in chosen]


def _vectorizers():
    from sklearn.feature_extraction.text import TfidfVectorizer

    # min_df=2: a term seen once in the fitted half cannot generalise to the held-out half, it only adds noise
    words = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, max_features=50_000)
    chars = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), min_df=2, sublinear_tf=True, max_features=50_000)
    return words, chars


def _features(vectorizer: Any, fit_texts: list[str], held_texts: list[str]) -> tuple[Any, Any] | None:
    """TF-IDF of the fitted and held-out texts, or None when no term occurs in two fitted texts."""
    try:
        return vectorizer.fit_transform(fit_texts), vectorizer.transform(held_texts)
    except ValueError:  # sklearn's "empty vocabulary" / "no terms remain" after min_df pruning
        return None


def _auc_from_ranks(ranks: np.ndarray, positive: np.ndarray) -> float:
    """Mann-Whitney AUC: P(score of a positive > score of a negative), ties counted half."""
    n1 = int(positive.sum())
    n0 = len(positive) - n1
    return float((ranks[positive == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def _permuted_aucs(ranks: np.ndarray, positive: np.ndarray, permutations: int, rng: np.random.Generator) -> np.ndarray:
    """The AUC under ``permutations`` shuffles of the held-out labels: one matrix product over the fixed ranks."""
    n1 = int(positive.sum())
    n0 = len(positive) - n1
    shuffled = rng.permuted(np.tile(positive, (permutations, 1)), axis=1)
    return (shuffled @ ranks - n1 * (n1 + 1) / 2) / (n1 * n0)


def _logistic(x: sp.csr_matrix, y: np.ndarray):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=1.0, max_iter=1000).fit(x, y)


def _drift_terms(x_words: sp.csr_matrix, domain: np.ndarray, names: np.ndarray, top: int) -> tuple[DriftTerm, ...]:
    """The word n-grams with the largest positive weights of a word-only classifier on every compared text.

    A separate fit: in the test's classifier the weight of a new word is shared with its character n-grams, and
    the explanation does not need the held-out half kept apart (the test's p-value is already computed). Terms
    not more common in the window than in the reference are left out: their weight only corrects for others."""
    weights = _logistic(x_words, domain).coef_[0]
    present = (x_words > 0).astype(np.int64)
    window_share = np.asarray(present[domain == 1].sum(axis=0)).ravel() / max(int((domain == 1).sum()), 1)
    reference_share = np.asarray(present[domain == 0].sum(axis=0)).ravel() / max(int((domain == 0).sum()), 1)
    ranked = [i for i in np.argsort(-weights, kind="stable") if weights[i] > 0 and window_share[i] > reference_share[i]]
    return tuple(
        DriftTerm(str(names[i]), float(weights[i]), float(window_share[i]), float(reference_share[i]))
        for i in ranked[:top]
    )


# -------------------------------------------------------------------------------------------- label shift


def label_shift(
    reference_counts: Sequence[int],
    window_counts: Sequence[int],
    labels: Sequence[str],
    *,
    seed: int = 0,
) -> LabelShift:
    """PSI and chi-square test of predicted-label counts [K] (both in the order of ``labels``).

    PSI = sum (w - r) ln(w / r) over shares smoothed by adding 0.5 to every count (0.1: small shift, > 0.2:
    large, by the usual reading). The chi-square test treats both sides as samples (the reference is a finite
    validation split, not the truth); where an expected count is below 5 its p-value comes from the exact
    permutation distribution of the table (window counts are multivariate hypergeometric given the margins)."""
    ref = np.asarray(reference_counts, dtype=np.int64)
    win = np.asarray(window_counts, dtype=np.int64)
    if ref.shape != win.shape or ref.shape != (len(labels),):
        raise DataError(
            f"label_shift needs one count per label on both sides: {len(labels)} labels, got {ref.shape[0]} "
            f"reference and {win.shape[0]} window counts."
        )
    k = len(labels)
    r = (ref + _PSI_SMOOTHING) / (ref.sum() + _PSI_SMOOTHING * k)
    w = (win + _PSI_SMOOTHING) / (win.sum() + _PSI_SMOOTHING * k)
    psi = float(np.sum((w - r) * np.log(w / r)))
    chi2, p_value, method = _homogeneity(ref, win, np.random.default_rng(seed))
    return LabelShift(tuple(labels), tuple(map(int, ref)), tuple(map(int, win)), psi, chi2, p_value, method)


def _homogeneity(ref: np.ndarray, win: np.ndarray, rng: np.random.Generator) -> tuple[float, float, str]:
    seen = (ref + win) > 0
    if seen.sum() < 2 or ref.sum() == 0 or win.sum() == 0:
        return 0.0, 1.0, "asymptotic"
    table = np.vstack([ref[seen], win[seen]])
    result = chi2_contingency(table, correction=False)
    if result.expected_freq.min() >= _COCHRAN_MIN_EXPECTED:
        return float(result.statistic), float(result.pvalue), "asymptotic"
    totals = table.sum(axis=0)
    null_window = rng.multivariate_hypergeometric(totals, int(win.sum()), size=_CHI2_RESAMPLES)
    null = _chi2_of(totals - null_window, null_window)
    observed = _chi2_of(table[0][None, :], table[1][None, :])[0]
    p_value = (1 + np.sum(null >= observed - 1e-9)) / (1 + _CHI2_RESAMPLES)
    return float(observed), float(p_value), "permutation"


def _chi2_of(ref: np.ndarray, win: np.ndarray) -> np.ndarray:
    """Pearson's statistic of each 2 x K table given as rows [B, K] of reference and window counts."""
    totals = ref + win
    n_ref, n_win = ref.sum(axis=1, keepdims=True), win.sum(axis=1, keepdims=True)
    n = n_ref + n_win
    expected_ref, expected_win = totals * n_ref / n, totals * n_win / n
    return np.sum((ref - expected_ref) ** 2 / expected_ref + (win - expected_win) ** 2 / expected_win, axis=1)


# -------------------------------------------------------------------------------------- confidence, shares


def confidence_drop(reference_scores: Sequence[float], window_scores: Sequence[float]) -> ConfidenceDrop:
    """Mean top probability, reference vs window, with a one-sided Welch t-test (window lower)."""
    ref = np.asarray(reference_scores, dtype=float)
    win = np.asarray(window_scores, dtype=float)
    if len(ref) < 2 or len(win) < 2:
        raise DataError(
            f"A confidence comparison needs at least 2 scores on each side, got {len(ref)} reference and "
            f"{len(win)} window scores."
        )
    with warnings.catch_warnings():
        # a constant side (a stuck model answering one score) is a real window; its t is still right
        warnings.filterwarnings("ignore", message="Precision loss occurred", category=RuntimeWarning)
        test = ttest_ind(win, ref, equal_var=False, alternative="less")
    t, p = float(test.statistic), float(test.pvalue)
    if not math.isfinite(t):  # both sides constant: no evidence of any difference unless the means differ
        t, p = 0.0, 0.0 if win.mean() < ref.mean() else 1.0
    drop = float(ref.mean() - win.mean())
    return ConfidenceDrop(float(ref.mean()), float(win.mean()), drop, t, p, len(ref), len(win))


def proportion(count: int, n: int, level: float = 0.95) -> Proportion:
    """``count`` of ``n`` with its Wilson score interval at ``level`` (good at small n and near 0 or 1)."""
    if n < 1 or not 0 <= count <= n:
        raise DataError(f"A proportion needs 0 <= count <= n and n >= 1, got {count} of {n}.")
    lo, hi = proportion_confint(int(count), int(n), alpha=1 - level, method="wilson")
    return Proportion(int(count), int(n), count / n, (float(lo), float(hi)), level)


def estimated_accuracy(scores: Sequence[float], level: float = 0.95) -> AccuracyEstimate:
    """CBPE (confidence-based performance estimation): with calibrated top probabilities p_i, each answer is
    right with probability p_i, so the expected accuracy is mean(p) and the realised accuracy of these rows has
    variance sum p_i (1 - p_i) / n^2 (a normal interval at ``level``). Valid only as far as the calibration
    still holds on the window: under input drift calibration usually degrades, which the other checks catch."""
    p = np.asarray(scores, dtype=float)
    if len(p) == 0:
        raise DataError("An accuracy estimate needs the confidence of at least one answered row, got none.")
    value = float(p.mean())
    half = float(norm.ppf(0.5 + level / 2) * math.sqrt(np.sum(p * (1 - p))) / len(p))
    return AccuracyEstimate(value, (max(0.0, value - half), min(1.0, value + half)), len(p), level)
