"""The statistics on their own: hand-computed values, the permutation nulls, CBPE coverage, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binom

from keepfit.errors import DataError
from keepfit.monitor.drift import (
    confidence_drop,
    domain_classifier_test,
    estimated_accuracy,
    label_shift,
    proportion,
)
from keepfit.train.testing import sentiment_frame


def test_psi_and_chi_square_match_the_hand_computed_values():
    shift = label_shift([50, 50], [20, 80], ["a", "b"])
    # shares after adding 0.5 to each count: reference 0.5 / 0.5, window 20.5/101 and 80.5/101
    w = np.array([20.5, 80.5]) / 101
    assert shift.psi == pytest.approx(float(np.sum((w - 0.5) * np.log(w / 0.5))))
    # 2 x 2 table [[50, 50], [20, 80]]: expected 35 / 65 in each row, chi2 = 2 (15^2/35 + 15^2/65)
    assert shift.chi2 == pytest.approx(2 * (225 / 35 + 225 / 65))
    assert shift.method == "asymptotic" and shift.p_value < 1e-4


def test_a_label_one_side_never_predicts_keeps_psi_finite_and_uses_the_exact_test():
    shift = label_shift([50, 50, 0], [20, 78, 2], ["a", "b", "new"])
    assert math.isfinite(shift.psi) and shift.psi > 0.2
    assert shift.method == "permutation", "expected counts of 'new' are below 5"
    assert 0 < shift.p_value < 0.01


def test_identical_shares_give_no_shift():
    shift = label_shift([100, 300], [25, 75], ["a", "b"])
    assert shift.psi == pytest.approx(0.0, abs=1e-3) and shift.p_value > 0.9


def test_label_shift_rejects_counts_that_do_not_fit_the_labels():
    with pytest.raises(DataError, match="one count per label"):
        label_shift([1, 2, 3], [1, 2], ["a", "b", "c"])


def test_wilson_interval_of_8_in_10_is_the_textbook_one():
    share = proportion(8, 10, level=0.95)
    assert share.rate == 0.8
    assert share.interval == pytest.approx((0.4902, 0.9433), abs=1e-4)
    with pytest.raises(DataError):
        proportion(1, 0)


def test_confidence_drop_is_one_sided():
    rng = np.random.default_rng(0)
    reference = rng.uniform(0.8, 1.0, 500)
    lower = confidence_drop(reference, rng.uniform(0.6, 0.8, 100))
    higher = confidence_drop(reference, rng.uniform(0.95, 1.0, 100))
    assert lower.drop == pytest.approx(0.2, abs=0.03) and lower.p_value < 1e-6
    assert higher.drop < 0 and higher.p_value > 0.99, "a rise in confidence is no drop"


def test_cbpe_interval_covers_the_realised_accuracy_of_calibrated_scores_at_its_level():
    rng = np.random.default_rng(1)
    level, repeats, covered = 0.9, 300, 0
    for _ in range(repeats):
        p = 0.4 + 0.6 * rng.beta(2.0, 1.0, 250)
        realised = float(np.mean(rng.uniform(size=len(p)) < p))
        estimate = estimated_accuracy(p, level)
        covered += estimate.interval[0] <= realised <= estimate.interval[1]
    # a correct 90% interval covers Binomial(300, 0.9) times; outside these bounds happens with chance < 0.2%
    assert binom.ppf(0.001, repeats, level) <= covered <= binom.isf(0.001, repeats, level)


def test_cbpe_estimate_is_the_mean_confidence():
    estimate = estimated_accuracy([0.5, 1.0, 0.9, 0.6])
    assert estimate.value == pytest.approx(0.75) and estimate.n == 4
    assert estimate.interval[0] < 0.75 < estimate.interval[1]


def test_domain_classifier_finds_new_vocabulary_and_names_it():
    reference = sentiment_frame(300, seed=1)["text"].tolist()
    window = [t + " refund for my card" for t in sentiment_frame(150, seed=2)["text"]]
    result = domain_classifier_test(reference, window, permutations=200)
    assert result.auc > 0.99 and result.p_value == pytest.approx(1 / 201)
    assert result.null_p95 < 0.7
    assert result.n_per_side == 150
    top = {t.term: t for t in result.terms}
    assert "refund" in top and top["refund"].window_share == 1.0 and top["refund"].reference_share == 0.0


def test_domain_classifier_p_values_are_uniform_without_drift():
    reference = sentiment_frame(300, seed=1)["text"].tolist()
    p = np.array([
        domain_classifier_test(reference, sentiment_frame(120, seed=500 + k)["text"].tolist(), seed=k).p_value
        for k in range(40)
    ])
    # under no drift P(p <= 0.25) <= 0.25; more than binom.isf(0.001, 40, 0.25) = 19 such windows has chance < 0.1%
    assert np.sum(p <= 0.25) <= binom.isf(0.001, 40, 0.25)
    assert np.sum(p > 0.5) >= binom.ppf(0.001, 40, 0.5), "a test that never rejects would pass the line above"


def test_domain_classifier_needs_enough_texts():
    with pytest.raises(DataError, match="at least 20 texts"):
        domain_classifier_test(["a b"] * 100, ["a b"] * 5)


def test_domain_classifier_on_texts_without_shared_words_still_tests_on_characters():
    rng = np.random.default_rng(0)
    reference = [f"{rng.integers(10**9)}" for _ in range(60)]
    window = [f"x{rng.integers(10**9)}z" for _ in range(60)]
    result = domain_classifier_test(reference, window)
    assert result.terms == () and result.p_value < 0.01, "the 'x'/'z' character n-grams tell them apart"
