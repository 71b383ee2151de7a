"""evaluate_outputs end to end on arrays, and the offline HTML/JSON report."""

import json

import numpy as np
import pandas as pd
import pytest
from scipy.special import softmax
from sklearn import metrics as skm

from keepfit.config import EvaluateConfig
from keepfit.errors import DataError
from keepfit.evaluation import evaluate_outputs, write_evaluation_report
from keepfit.evaluation import metrics as m
from keepfit.evaluation.bootstrap import resample_indices

LABELS = ["a", "b", "c", "d"]
CFG = EvaluateConfig(bootstrap=200, top_k=2, length_bins=[10, 20])


def _single(n=240, seed=0):
    """Truth drawn from softmax(z); the 'model' says softmax(3 z): right often, but overconfident."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 4)) * 1.5
    y = np.array([rng.choice(4, p=q) for q in softmax(z, axis=1)])
    return y, softmax(3 * z, axis=1)


def _frame(n, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "text": ["w" * int(k) for k in rng.integers(1, 40, n)],
            "slice:source": rng.choice(["web", "app", None], n),
        }
    )


def test_single_label_result():
    y, p = _single()
    frame = _frame(len(y))
    r = evaluate_outputs(
        "single-label", LABELS, y, p, config=CFG, frame=frame, validation=_single(200, 1), seed=3
    )
    pred = p.argmax(axis=1)
    assert r.headline["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert r.headline["macro_f1"] == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert r.confusion == skm.confusion_matrix(y, pred).tolist()
    assert r.predicted[:3] == [LABELS[i] for i in pred[:3]]
    for name in ("accuracy", "macro_f1"):
        lo, hi = r.intervals[name]
        assert lo < r.headline[name] < hi
    assert set(r.per_slice) == {"source", "length_chars"}
    assert set(r.per_slice["source"]) == {"web", "app", "(missing)"}
    assert set(r.per_slice["length_chars"]) == {"<=10", "11-20", ">20"}
    web = frame["slice:source"].eq("web").to_numpy()
    assert r.per_slice["source"]["web"]["n"] == web.sum()
    assert r.per_slice["source"]["web"]["accuracy"] == pytest.approx((pred[web] == y[web]).mean())
    c = r.calibration
    assert c["temperature"] > 1 and c["ece_after"] < c["ece"]  # the synthetic model is overconfident
    json.dumps(r.to_dict(), allow_nan=False)


def test_bootstrap_macro_f1_matches_a_naive_sklearn_loop():
    y, p = _single(120)
    pred = p.argmax(axis=1)
    r = evaluate_outputs("single-label", LABELS, y, p, config=CFG, seed=11)
    idx = resample_indices(len(y), CFG.bootstrap, seed=11)
    naive = [skm.f1_score(y[i], pred[i], average="macro", zero_division=0) for i in idx]
    tail = (1 - CFG.confidence) / 2 * 100
    assert r.intervals["macro_f1"] == pytest.approx(tuple(np.percentile(naive, [tail, 100 - tail])))


def test_multi_label_uses_thresholds_tuned_on_validation():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, (300, 3))
    p = np.where(y == 1, 0.35, 0.05) + rng.uniform(0, 0.1, y.shape)
    y_val = rng.integers(0, 2, (300, 3))
    p_val = np.where(y_val == 1, 0.35, 0.05) + rng.uniform(0, 0.1, y.shape)
    plain = evaluate_outputs("multi-label", ["x", "y", "z"], y, p, config=CFG)
    tuned = evaluate_outputs("multi-label", ["x", "y", "z"], y, p, config=CFG, validation=(y_val, p_val))
    assert plain.thresholds == {"x": 0.5, "y": 0.5, "z": 0.5}
    assert all(0.15 <= t <= 0.35 for t in tuned.thresholds.values())
    assert tuned.headline["subset_accuracy"] == pytest.approx(1.0)
    assert plain.headline["micro_f1"] == 0.0
    assert tuned.per_class["x"]["threshold"] == tuned.thresholds["x"]
    assert set(tuned.intervals) == {"subset_accuracy", "hamming_loss", "micro_f1", "macro_f1"}


def test_regression_result():
    rng = np.random.default_rng(0)
    y = rng.normal(size=200)
    pred = y + rng.normal(scale=0.3, size=200)
    r = evaluate_outputs("regression", [], y, pred, config=CFG, frame=_frame(200))
    assert r.headline["mae"] == pytest.approx(np.abs(pred - y).mean())
    assert r.headline["rmse"] == pytest.approx(np.sqrt(((pred - y) ** 2).mean()))
    assert r.intervals["mae"][0] < r.headline["mae"] < r.intervals["mae"][1]
    assert r.calibration is None and r.per_slice["source"]["web"]["mae"] > 0


def test_edge_cases_are_clear_errors():
    with pytest.raises(DataError, match="0 examples"):
        evaluate_outputs("single-label", LABELS, np.array([], dtype=int), np.zeros((0, 4)), config=CFG)
    y, p = _single(10)
    p[2, 1] = np.nan
    with pytest.raises(DataError, match="NaN"):
        evaluate_outputs("single-label", LABELS, y, p, config=CFG)
    with pytest.raises(DataError, match="frame has 3 rows"):
        evaluate_outputs("single-label", LABELS, *_single(10), config=CFG, frame=_frame(3))


def test_single_class_and_absent_class_evaluate():
    y = np.zeros(30, dtype=int)
    r = evaluate_outputs("single-label", ["only"], y, np.ones((30, 1)), config=CFG)
    assert r.headline["accuracy"] == 1.0 and r.intervals["accuracy"] == (1.0, 1.0)
    y2, p2 = _single(40)
    y2[y2 == 3] = 0
    r2 = evaluate_outputs("single-label", LABELS, y2, p2, config=CFG)
    assert r2.per_class["d"]["support"] == 0


def _img_count(text: str) -> int:
    return text.count('<img src="data:image/png;base64,')


def test_report_is_self_contained_with_figures(tmp_path):
    y, p = _single()
    r = evaluate_outputs(
        "single-label", LABELS, y, p, config=CFG, frame=_frame(len(y)), validation=_single(200, 1)
    )
    history = [
        {"epoch": 1, "train_loss": 1.2, "val_accuracy": 0.6},
        {"epoch": 2, "train_loss": 0.7, "val_accuracy": 0.8},
    ]
    path = write_evaluation_report(r, tmp_path / "out", history=history, title="Test <report>")
    text = path.read_text()
    assert path.name == "report.html"
    assert _img_count(text) == 4  # learning curves, confusion, reliability, per-class F1
    assert "http://" not in text and "https://" not in text
    assert "Test &lt;report&gt;" in text and "length_chars" in text
    data = json.loads((tmp_path / "out" / "evaluation.json").read_text())
    assert data["headline"]["accuracy"] == pytest.approx(r.headline["accuracy"])
    assert data["history"][1]["train_loss"] == 0.7
    assert not list((tmp_path / "out").glob(".*tmp"))  # atomic writes leave nothing behind


def test_report_for_many_classes_and_for_regression(tmp_path):
    rng = np.random.default_rng(0)
    labels = [f"intent_{i}" for i in range(40)]
    y = rng.integers(0, 40, 400)
    p = rng.dirichlet(np.ones(40), 400)
    r = evaluate_outputs("single-label", labels, y, p, config=CFG)
    text = write_evaluation_report(r, tmp_path / "many").read_text()
    assert _img_count(text) == 3  # no history: confusion, reliability, per-class F1
    yr = rng.normal(size=50)
    rr = evaluate_outputs("regression", [], yr, yr + 0.1, config=CFG)
    text = write_evaluation_report(rr, tmp_path / "reg").read_text()
    assert _img_count(text) == 1 and "mae" in text


def test_sums_and_sklearn_agree_per_slice():
    y, p = _single(300, 5)
    frame = _frame(300, 5)
    r = evaluate_outputs(
        "single-label", LABELS, y, p, config=CFG.model_copy(update={"bootstrap": 0}), frame=frame
    )
    pred = m.predict_single(p)
    app = frame["slice:source"].eq("app").to_numpy()
    want = skm.f1_score(y[app], pred[app], average="macro", zero_division=0)
    assert r.per_slice["source"]["app"]["macro_f1"] == pytest.approx(want)
    assert "interval" not in r.per_slice["source"]["app"] and r.intervals == {}


def test_rows_with_a_label_the_model_does_not_know_count_as_wrong():
    y = np.array([0, 1, -1, -1])  # -1: the truth is a label outside the model's label set
    p = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    r = evaluate_outputs("single-label", ["a", "b"], y, p, config=CFG)
    assert r.headline["accuracy"] == 0.5
    assert r.per_class["a"] == {"precision": 0.5, "recall": 1.0, "f1": pytest.approx(2 / 3), "support": 1}
    assert r.confusion == [[1, 0], [0, 1]]
    assert r.errors[0]["true"] is None


def test_learning_curves_from_the_trainer_history(tmp_path):
    from keepfit.evaluation.figures import learning_curves

    history = [
        {
            "epoch": e,
            "step": 10 * e,
            "train_loss": 1 / e,
            "samples_seen": 320 * e,
            "train_seconds": 3.0 * e,
            "validation_accuracy": 0.5 + e / 10,
            "validation_loss": 1.1 / e,
        }
        for e in (1, 2, 3)
    ]
    fig = learning_curves(history)
    left, right = fig.axes
    assert [line.get_label() for line in left.get_lines()] == ["train_loss", "validation_loss"]
    assert [line.get_label() for line in right.get_lines()] == ["validation_accuracy"]
    assert list(left.get_lines()[0].get_xdata()) == [1, 2, 3]
    assert learning_curves([{"epoch": 1, "samples_seen": 3}]) is None


def test_multi_label_report(tmp_path):
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, (60, 3))
    p = np.clip(y * 0.7 + rng.uniform(0, 0.3, y.shape), 0, 1)
    r = evaluate_outputs("multi-label", ["x", "y", "z"], y, p, config=CFG, frame=_frame(60))
    text = write_evaluation_report(r, tmp_path).read_text()
    assert _img_count(text) == 2  # reliability (per label decision) and per-label F1
    assert r.calibration["unit"].startswith("label decision")
    assert len(r.confusion) == 3 and len(r.confusion[0]) == 2
