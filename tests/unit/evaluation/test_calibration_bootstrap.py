"""ECE by hand, temperature scaling, and the seeded vectorised bootstrap."""

import numpy as np
import pytest
from scipy.special import softmax

from keepfit.evaluation import bootstrap as bs
from keepfit.evaluation import calibration as cal


def test_ece_hand_computed():
    conf = np.array([0.9, 0.9, 0.6, 0.6, 0.7])
    correct = np.array([1, 0, 1, 1, 1])
    # bins of width .1: (.8,.9]: acc .5 conf .9; (.5,.6]: acc 1 conf .6; (.6,.7]: acc 1 conf .7 (0.7 stays)
    want = (2 * 0.4 + 2 * 0.4 + 1 * 0.3) / 5
    assert cal.expected_calibration_error(conf, correct, 10) == pytest.approx(want)
    bins = cal.reliability_bins(conf, correct, 10)
    assert [b["count"] for b in bins] == [0, 0, 0, 0, 0, 2, 1, 0, 2, 0]
    assert bins[8]["accuracy"] == 0.5 and bins[8]["confidence"] == pytest.approx(0.9)


def test_perfectly_calibrated_has_small_ece():
    rng = np.random.default_rng(0)
    conf = rng.uniform(0.5, 1, 20000)
    correct = (rng.uniform(size=conf.size) < conf).astype(float)
    assert cal.expected_calibration_error(conf, correct, 15) < 0.02


def _overconfident(n: int, seed: int):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, 5)) * 1.5
    y = np.array([rng.choice(5, p=p) for p in softmax(logits, axis=1)])
    return y, softmax(logits * 3.0, axis=1)  # the model is 3x too sharp


def test_temperature_scaling_reduces_nll_and_ece_on_overconfident_outputs():
    y_val, p_val = _overconfident(2000, 1)
    y, p = _overconfident(2000, 2)
    t = cal.fit_temperature("single-label", y_val, p_val)
    assert 2.4 < t < 3.6  # recovers the sharpening factor
    assert (
        cal.negative_log_likelihood("single-label", y, p, t)
        < cal.negative_log_likelihood("single-label", y, p) - 0.3
    )
    before = cal.expected_calibration_error(*cal.confidence_and_correct("single-label", y, p), 15)
    after = cal.expected_calibration_error(
        *cal.confidence_and_correct("single-label", y, cal.apply_temperature("single-label", p, t)), 15
    )
    assert after < before / 2


def test_temperature_for_multi_label_sigmoids():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(3000, 3)) * 2
    y = (rng.uniform(size=z.shape) < 1 / (1 + np.exp(-z))).astype(int)
    p = 1 / (1 + np.exp(-z * 2.5))
    t = cal.fit_temperature("multi-label", y, p)
    assert 2.0 < t < 3.0
    assert cal.negative_log_likelihood("multi-label", y, p, t) < cal.negative_log_likelihood(
        "multi-label", y, p
    )


def test_bootstrap_sums_equal_a_naive_loop_and_chunking_changes_nothing(monkeypatch):
    rng = np.random.default_rng(0)
    stats = rng.normal(size=(37, 3))
    idx = bs.resample_indices(37, 50, seed=7)
    naive = np.array([stats[i].sum(axis=0) for i in idx])
    np.testing.assert_allclose(bs.bootstrap_sums(stats, 50, seed=7), naive)
    monkeypatch.setattr(bs, "MAX_CELLS", 37 * 3)  # chunks of 3 resamples
    np.testing.assert_allclose(bs.bootstrap_sums(stats, 50, seed=7), naive)


def test_bootstrap_is_seeded():
    x = (np.random.default_rng(0).uniform(size=200) < 0.7).astype(float)
    a = bs.percentile_interval(bs.bootstrap_sums(x, 300, seed=1)[:, 0] / 200, 0.95)
    b = bs.percentile_interval(bs.bootstrap_sums(x, 300, seed=1)[:, 0] / 200, 0.95)
    c = bs.percentile_interval(bs.bootstrap_sums(x, 300, seed=2)[:, 0] / 200, 0.95)
    assert a == b and a != c


def test_bootstrap_interval_covers_the_true_value():
    covered = 0
    trials = 60
    for seed in range(trials):
        x = (np.random.default_rng(1000 + seed).uniform(size=300) < 0.7).astype(float)
        lo, hi = bs.percentile_interval(bs.bootstrap_sums(x, 400, seed=seed)[:, 0] / 300, 0.95)
        covered += lo <= 0.7 <= hi
    assert covered / trials >= 0.85  # nominal 0.95; a broken interval covers far less


def test_percentile_interval_ignores_nan_and_handles_all_nan():
    assert bs.percentile_interval(np.array([np.nan, 1.0, 1.0]), 0.9) == (1.0, 1.0)
    assert bs.percentile_interval(np.array([np.nan]), 0.9) is None
