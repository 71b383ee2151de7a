"""Metrics against hand-computed values, and the sums form against scikit-learn."""

import numpy as np
import pytest
from sklearn import metrics as skm

from keepfit.errors import DataError, KeepfitError
from keepfit.evaluation import metrics as m


def _probs_for(pred: list[int], n_labels: int, confidence: float = 0.7) -> np.ndarray:
    probs = np.full((len(pred), n_labels), (1 - confidence) / max(n_labels - 1, 1))
    probs[np.arange(len(pred)), pred] = confidence
    return probs


def test_single_label_hand_computed():
    y = np.array([0, 0, 1, 2])
    probs = _probs_for([0, 1, 1, 0], 3)
    h = m.single_label_headline(y, probs, top_k=2)
    assert h["accuracy"] == pytest.approx(0.5)
    # class 0: tp 1 fp 1 fn 1 -> F1 .5; class 1: tp 1 fp 1 fn 0 -> F1 2/3; class 2: never predicted -> 0
    assert h["macro_f1"] == pytest.approx((0.5 + 2 / 3 + 0) / 3)
    assert h["macro_precision"] == pytest.approx((0.5 + 0.5 + 0) / 3)
    assert h["macro_recall"] == pytest.approx((0.5 + 1 + 0) / 3)
    assert h["micro_f1"] == pytest.approx(0.5)
    assert h["weighted_f1"] == pytest.approx((2 * 0.5 + 1 * 2 / 3 + 0) / 4)
    per = m.per_class_single(y, probs, ["a", "b", "c"])
    assert per["b"] == {"precision": 0.5, "recall": 1.0, "f1": pytest.approx(2 / 3), "support": 1}


def test_top_k_accuracy_hand_computed_and_matches_sklearn():
    y = np.array([0, 1, 2, 2])
    probs = np.array([[0.5, 0.3, 0.2], [0.5, 0.3, 0.2], [0.5, 0.3, 0.2], [0.2, 0.3, 0.5]])
    assert m.top_k_hits(y, probs, 1).tolist() == [1, 0, 0, 1]
    assert m.top_k_hits(y, probs, 2).tolist() == [1, 1, 0, 1]
    assert m.top_k_hits(y, probs, 5).tolist() == [1, 1, 1, 1]  # k above C means every label
    assert m.top_k_hits(y, probs, 2).mean() == pytest.approx(skm.top_k_accuracy_score(y, probs, k=2))


def test_absent_class_has_zero_support_and_no_error():
    y = np.array([0, 0, 1, 1])
    probs = _probs_for([0, 1, 1, 1], 3)
    per = m.per_class_single(y, probs, ["a", "b", "never"])
    assert per["never"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    # macro over labels seen in truth or predictions, so the absent label does not drag it down
    assert m.single_label_headline(y, probs, 1)["macro_f1"] == pytest.approx((2 / 3 + 0.8) / 2)


def test_single_class():
    y = np.zeros(5, dtype=int)
    probs = np.ones((5, 1))
    h = m.single_label_headline(y, probs, top_k=5)
    assert h["accuracy"] == 1.0 and h["macro_f1"] == 1.0 and h["top_k_accuracy"] == 1.0


def test_sums_form_matches_sklearn_on_random_data():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 6, 200)
    probs = rng.dirichlet(np.ones(6), 200)
    pred = m.predict_single(probs)
    sums = m.single_stats(y, pred, 6, m.top_k_hits(y, probs, 3)).sum(axis=0)
    got = m.single_from_sums(sums, 6)
    want = m.single_label_headline(y, probs, 3)
    for key in (
        "accuracy",
        "top_k_accuracy",
        "macro_f1",
        "micro_f1",
        "weighted_f1",
        "macro_precision",
        "macro_recall",
    ):
        assert float(got[key]) == pytest.approx(want[key]), key


def test_multi_label_hand_computed():
    y = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0]])
    pred = np.array([[1, 0, 1], [0, 0, 0], [1, 1, 1]])
    h = m.multi_label_headline(y, pred)
    assert h["subset_accuracy"] == pytest.approx(1 / 3)
    assert h["hamming_loss"] == pytest.approx(2 / 9)
    # per label: F1 a = 1, b = 2/3 (tp 1, fn 1), c = 2/3 (tp 1, fp 1)
    assert h["macro_f1"] == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)
    assert h["micro_f1"] == pytest.approx(2 * 4 / (5 + 5))
    got = m.multi_from_sums(m.multi_stats(y, pred).sum(axis=0), 3)
    for key in ("subset_accuracy", "hamming_loss", "macro_f1", "micro_f1"):
        assert float(got[key]) == pytest.approx(h[key]), key


def test_thresholds_tuned_per_label_on_validation():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, (400, 2))
    probs = np.where(y == 1, 0.3, 0.1) + rng.uniform(0, 0.05, y.shape)  # label scores are low but separable
    probs[:, 1] = np.where(y[:, 1] == 1, 0.9, 0.6)
    t = m.tune_thresholds(y, probs)
    assert 0.1 < t[0] <= 0.3 and 0.6 < t[1] <= 0.9
    f1_tuned = skm.f1_score(y, m.predict_multi(probs, t), average="macro")
    f1_default = skm.f1_score(y, m.predict_multi(probs, 0.5), average="macro")
    assert f1_tuned == pytest.approx(1.0) and f1_default < 0.8
    assert (
        m.tune_thresholds(np.zeros((3, 1), dtype=int), np.full((3, 1), 0.9))[0] == 0.5
    )  # nothing to tune on


def test_regression_hand_computed():
    y = np.array([1.0, 2.0, 3.0])
    pred = np.array([1.0, 3.0, 5.0])
    h = m.regression_headline(y, pred)
    assert h["mae"] == pytest.approx(1.0)
    assert h["rmse"] == pytest.approx(np.sqrt(5 / 3))
    assert h["r2"] == pytest.approx(1 - 5 / 2)
    assert h["spearman"] == pytest.approx(1.0)
    got = m.regression_from_sums(m.regression_stats(y, pred, tolerance=1.0).sum(axis=0))
    assert float(got["r2"]) == pytest.approx(-1.5) and float(got["within_tolerance"]) == pytest.approx(2 / 3)


def test_empty_input_is_a_clear_error():
    with pytest.raises(DataError, match="0 examples"):
        m.check_outputs("single-label", ["a", "b"], np.array([], dtype=int), np.zeros((0, 2)))


def test_nan_outputs_are_a_clear_error():
    probs = np.array([[0.5, 0.5], [np.nan, 0.5]])
    with pytest.raises(KeepfitError, match=r"NaN.*rows \[1\]"):
        m.check_outputs("single-label", ["a", "b"], np.array([0, 1]), probs)


def test_shape_mismatch_says_what_was_expected():
    with pytest.raises(DataError, match=r"shape \[n, 3\]"):
        m.check_outputs("single-label", ["a", "b", "c"], np.array([0, 1]), np.zeros((2, 2)))
    with pytest.raises(DataError, match="label indices"):
        m.check_outputs("single-label", ["a", "b"], np.array([0, 5]), np.zeros((2, 2)))
