"""Open-set evaluation: out-of-scope recall, in-scope accuracy and the answered share, on a small example
worked out by hand, in the result, the JSON metrics and the HTML report."""

import json

import numpy as np
import pytest

from keepfit.config import EvaluateConfig
from keepfit.errors import DataError
from keepfit.evaluation import evaluate_outputs, write_evaluation_report
from keepfit.evaluation.open_set import open_set_metrics

LABELS = ["a", "b", "oos"]
CFG = EvaluateConfig(bootstrap=0)
THRESHOLD = 0.6
# row: probabilities [a, b, oos], true label; what happens at threshold 0.6 with "oos" out of scope
ROWS = [
    ([0.90, 0.05, 0.05], "a"),  # answered, right
    ([0.70, 0.20, 0.10], "b"),  # answered, wrong
    ([0.50, 0.40, 0.10], "a"),  # abstains (0.5 < 0.6): an in-scope row not answered
    ([0.10, 0.80, 0.10], "b"),  # answered, right
    ([0.20, 0.10, 0.70], "oos"),  # predicts oos: rejected
    ([0.40, 0.35, 0.25], "oos"),  # abstains: rejected
    ([0.80, 0.10, 0.10], "oos"),  # answered "a": an out-of-scope row let through, a wrong answer
    ([0.30, 0.10, 0.60], "a"),  # predicts oos: an in-scope row rejected
    ([0.65, 0.30, 0.05], "a"),  # answered, right
]
PROBS = np.array([p for p, _ in ROWS])
Y = np.array([LABELS.index(label) for _, label in ROWS])


def test_out_of_scope_recall_and_in_scope_accuracy_of_a_worked_example():
    o = open_set_metrics(Y, PROBS, LABELS, abstain_threshold=THRESHOLD, out_of_scope_label="oos")
    assert (o["n_in_scope"], o["n_out_of_scope"], o["n_abstained"]) == (6, 3, 4)
    assert o["oos_recall"] == pytest.approx(2 / 3)  # rows 4 and 5 of the three oos rows
    assert o["in_scope_accuracy"] == pytest.approx(3 / 6)  # rows 0, 3, 8 of six in-scope rows
    assert o["oos_precision"] == pytest.approx(2 / 4)  # rows 4, 5 among the rejected 2, 4, 5, 7
    assert o["answered_share"] == pytest.approx(4 / 6)  # in-scope rows 0, 1, 3, 8 answered
    assert o["answered_accuracy"] == pytest.approx(3 / 5)  # answered 0, 1, 3, 6, 8; right 0, 3, 8


def test_without_an_out_of_scope_label_every_row_is_in_scope():
    o = open_set_metrics(Y, PROBS, LABELS, abstain_threshold=THRESHOLD)
    # only rows 2 (0.5) and 5 (0.4) abstain; row 7's 0.6 is at the threshold, so it is answered ("oos", wrong)
    assert o["n_abstained"] == 2 and o["answered_share"] == pytest.approx(7 / 9)
    assert o["answered_accuracy"] == pytest.approx(4 / 7)  # rows 0, 3, 4, 8 right
    assert "oos_recall" not in o and "note" not in o
    unknown = open_set_metrics(Y, PROBS, LABELS, abstain_threshold=THRESHOLD, out_of_scope_label="none")
    assert "oos_recall" not in unknown and "'none' is not one of the model's labels" in unknown["note"]


def test_a_row_of_an_unknown_label_is_in_scope_and_never_right():
    y = np.array([-1, 0])
    probs = np.array([[0.9, 0.05, 0.05], [0.9, 0.05, 0.05]])
    o = open_set_metrics(y, probs, LABELS, abstain_threshold=0.5, out_of_scope_label="oos")
    assert o["n_in_scope"] == 2 and o["in_scope_accuracy"] == 0.5 and o["answered_accuracy"] == 0.5
    assert np.isnan(o["oos_recall"]) and np.isnan(o["oos_precision"])  # no oos rows, nothing rejected


def test_evaluation_reports_open_set_metrics_in_json_and_html(tmp_path):
    r = evaluate_outputs(
        "single-label", LABELS, Y, PROBS, config=CFG, abstain_threshold=THRESHOLD, out_of_scope_label="oos"
    )
    assert r.headline["open_set.oos_recall"] == pytest.approx(2 / 3)
    assert r.headline["open_set.in_scope_accuracy"] == pytest.approx(0.5)
    assert r.headline["open_set.answered_share"] == pytest.approx(2 / 3)
    assert r.headline["accuracy"] == pytest.approx(5 / 9), "plain accuracy stays the best guess on every row"
    html = write_evaluation_report(r, tmp_path).read_text()
    data = json.loads((tmp_path / "evaluation.json").read_text())
    assert data["headline"]["open_set.oos_precision"] == pytest.approx(0.5)
    assert data["open_set"]["abstain_threshold"] == THRESHOLD and data["open_set"]["out_of_scope_label"] == "oos"
    assert "<h2>Open-set</h2>" in html and "below 0.6000" in html and "out-of-scope recall" in html
    assert "open_set." not in html, "shown in their own section, not again under Headline metrics"


def test_no_open_set_section_unless_asked_and_bad_thresholds_refused(tmp_path):
    plain = evaluate_outputs("single-label", LABELS, Y, PROBS, config=CFG)
    assert plain.open_set is None and not any(k.startswith("open_set.") for k in plain.headline)
    assert "Open-set" not in write_evaluation_report(plain, tmp_path).read_text()
    for bad in (0.0, 1.0, float("nan")):
        with pytest.raises(DataError, match="strictly between 0 and 1"):
            evaluate_outputs("single-label", LABELS, Y, PROBS, config=CFG, abstain_threshold=bad)
    y_multi = (PROBS > 0.3).astype(int)
    with pytest.raises(DataError, match="single-label outputs only"):
        evaluate_outputs("multi-label", LABELS, y_multi, PROBS, config=CFG, abstain_threshold=0.5)
    multi = evaluate_outputs("multi-label", LABELS, y_multi, PROBS, config=CFG, out_of_scope_label="oos")
    assert multi.open_set is None
