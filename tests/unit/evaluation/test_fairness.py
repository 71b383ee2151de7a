"""Group fairness figures against hand-computed values and fairlearn's own functions; the report section; bad
inputs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import demographic_parity_difference, equalized_odds_difference

from keepfit.config import EvaluateConfig, load_config
from keepfit.data.fairness import fairness_groups
from keepfit.errors import ConfigError, DataError
from keepfit.evaluation import evaluate_outputs, write_evaluation_report
from keepfit.evaluation.fairness import group_fairness, outcomes, paired_gaps

LABELS = ["no", "yes"]
# group a: truth yes yes no no, predicted yes no no no -> accuracy 3/4, selection rate 1/4, FNR 1/2, TPR 1/2, FPR 0
# group b: truth yes no no no,  predicted yes yes yes no -> accuracy 2/4, selection rate 3/4, FNR 0, TPR 1, FPR 2/3
Y = np.array([1, 1, 0, 0, 1, 0, 0, 0])
PRED = np.array([1, 0, 0, 0, 1, 1, 1, 0])
GROUPS = np.array(list("aaaabbbb"), dtype=object)


def _cfg(**kw) -> EvaluateConfig:
    return EvaluateConfig(**{"fairness_columns": ["region"], "fairness_min_group_rows": 1, "bootstrap": 200,
                             "length_bins": [], **kw})


def test_per_group_figures_and_gaps_match_hand_computed_values():
    section = group_fairness("single-label", LABELS, Y, PRED, {"region": GROUPS}, _cfg(fairness_labels=["yes"]))
    report = section["columns"]["region"]
    a, b = report["groups"]["a"], report["groups"]["b"]
    assert (a["n"], a["accuracy"], b["accuracy"]) == (4, 0.75, 0.5)
    assert a["selection_rate"] == {"yes": 0.25} and b["selection_rate"] == {"yes": 0.75}
    assert a["false_negative_rate"] == {"yes": 0.5} and b["false_negative_rate"] == {"yes": 0.0}
    gaps = report["gaps"]
    assert gaps["accuracy_gap"]["value"] == pytest.approx(0.25) and gaps["accuracy_gap"]["groups"] == ["b", "a"]
    assert gaps["demographic_parity_difference"]["value"] == pytest.approx(0.5)
    assert gaps["demographic_parity_difference"]["groups"] == ["a", "b"]
    # equalised odds: max(TPR gap 1 - 1/2, FPR gap 2/3 - 0) = 2/3, from the false positive rates
    assert gaps["equalized_odds_difference"]["value"] == pytest.approx(2 / 3)
    assert gaps["equalized_odds_difference"]["label"] == "yes"
    lo, hi = gaps["accuracy_gap"]["interval"]
    assert lo <= 0.25 <= hi and hi - lo > 0
    assert section["settings"]["labels"] == ["yes"]


def test_every_label_one_vs_rest_reports_the_largest_gap():
    report = group_fairness("single-label", LABELS, Y, PRED, {"region": GROUPS}, _cfg())["columns"]["region"]
    # label "no": selection rates 3/4 and 1/4; TPR 1 and 1/3, FPR 1/2 and 0 -> parity 1/2, odds 2/3
    assert report["per_label"]["no"] == pytest.approx(
        {"demographic_parity_difference": 0.5, "equalized_odds_difference": 2 / 3})
    assert report["gaps"]["equalized_odds_difference"]["value"] == pytest.approx(2 / 3)


def test_a_label_gap_interval_is_that_of_the_label_named_and_holds_the_point():
    rng = np.random.default_rng(1)
    n, n_labels = 600, 12
    y = rng.integers(0, n_labels, n)
    pred = np.where(rng.uniform(size=n) < 0.9, y, rng.integers(0, n_labels, n))
    groups = rng.choice(["x", "y", "z"], n).astype(object)
    labels = [f"l{i}" for i in range(n_labels)]
    report = group_fairness("single-label", labels, y, pred, {"g": groups}, _cfg(bootstrap=500))["columns"]["g"]
    for gap in report["gaps"].values():
        lo, hi = gap["interval"]
        assert lo <= gap["value"] <= hi


def test_the_figures_agree_with_fairlearn_functions_on_random_rows():
    rng = np.random.default_rng(0)
    n, n_labels = 900, 4
    y = rng.integers(0, n_labels, n)
    pred = np.where(rng.uniform(size=n) < 0.7, y, rng.integers(0, n_labels, n))
    groups = rng.choice(["x", "y", "z"], n).astype(object)
    labels = [f"l{i}" for i in range(n_labels)]
    report = group_fairness("single-label", labels, y, pred, {"g": groups}, _cfg(bootstrap=0))["columns"]["g"]
    for j, name in enumerate(labels):
        assert report["per_label"][name]["demographic_parity_difference"] == pytest.approx(
            demographic_parity_difference(y == j, pred == j, sensitive_features=groups))
        assert report["per_label"][name]["equalized_odds_difference"] == pytest.approx(
            equalized_odds_difference(y == j, pred == j, sensitive_features=groups))
    accuracy = {g: (pred == y)[groups == g].mean() for g in ("x", "y", "z")}
    assert report["gaps"]["accuracy_gap"]["value"] == pytest.approx(max(accuracy.values()) - min(accuracy.values()))
    # the sums the bootstrap and the gate read give the same gaps as fairlearn
    same = outcomes("single-label", y, pred, range(n_labels))
    paired = paired_gaps(same, same, groups, labels, min_rows=1, resamples=0, seed=0)
    for metric, gap in report["gaps"].items():
        assert paired[metric]["old"] == pytest.approx(gap["value"]) == pytest.approx(paired[metric]["new"])


def test_small_groups_are_shown_but_not_compared_and_undefined_odds_are_left_out():
    y = np.array([1, 0, 1, 0, 0, 0, 0, 0, 0])
    pred = np.array([1, 0, 1, 1, 1, 0, 0, 1, 1])
    groups = np.array(["a"] * 4 + ["b"] * 4 + ["tiny"], dtype=object)
    cfg = _cfg(fairness_min_group_rows=2, fairness_labels=["yes"])
    report = group_fairness("single-label", LABELS, y, pred, {"region": groups}, cfg)["columns"]["region"]
    assert report["groups"]["tiny"]["compared"] is False and report["groups"]["a"]["compared"] is True
    assert report["gaps"]["demographic_parity_difference"]["value"] == pytest.approx(0.25)  # 3/4 vs 2/4, not 1
    # group b has no "yes" row: its true positive rate is undefined, so the label has no equalised-odds gap
    assert report["per_label"]["yes"]["equalized_odds_difference"] is None
    assert report["gaps"]["equalized_odds_difference"]["value"] is None
    assert report["groups"]["b"]["false_negative_rate"] == {"yes": None}


def test_multi_label_rows_are_judged_one_label_at_a_time():
    y = np.array([[1, 0], [1, 1], [0, 1], [0, 0]])
    pred = np.array([[1, 0], [1, 0], [0, 1], [1, 0]])
    groups = np.array(["a", "a", "b", "b"], dtype=object)
    report = group_fairness("multi-label", ["x", "z"], y, pred, {"r": groups}, _cfg())["columns"]["r"]
    assert report["groups"]["a"]["accuracy"] == 0.5 and report["groups"]["b"]["accuracy"] == 0.5
    assert report["groups"]["a"]["selection_rate"] == {"x": 1.0, "z": 0.0}
    assert report["groups"]["b"]["selection_rate"] == {"x": 0.5, "z": 0.5}


def test_evaluation_headline_json_and_report(tmp_path):
    frame = pd.DataFrame({"text": [f"t{i}" for i in range(8)], "slice:region": GROUPS})
    result = evaluate_outputs("single-label", LABELS, Y, np.eye(2)[PRED], config=_cfg(), frame=frame)
    assert result.headline["fairness.region.accuracy_gap"] == pytest.approx(0.25)
    assert "fairness.region.demographic_parity_difference" in result.intervals
    assert "region" in result.per_slice  # a fairness column is also a slice
    write_evaluation_report(result, tmp_path)
    data = json.loads((tmp_path / "evaluation.json").read_text())
    assert data["fairness"]["columns"]["region"]["groups"]["b"]["accuracy"] == 0.5
    html = (tmp_path / "report.html").read_text()
    assert "Fairness: region" in html and "demographic parity difference" in html
    plain = evaluate_outputs("single-label", LABELS, Y, np.eye(2)[PRED], config=EvaluateConfig(), frame=frame)
    assert plain.fairness is None and not any(k.startswith("fairness.") for k in plain.headline)


# ---- bad inputs ----


def test_a_missing_or_single_valued_fairness_column_is_a_data_error():
    frame = pd.DataFrame({"text": ["a", "b"], "slice:region": ["n", "n"], "slice:channel": ["x", "y"]})
    with pytest.raises(DataError, match=r"names 'country'.*do not carry it.*\['channel', 'region'\]"):
        fairness_groups(frame, ["country"], where="test rows")
    with pytest.raises(DataError, match=r"'region' holds one group only \('n' on all 2 rows\).*remove 'region'"):
        fairness_groups(frame, ["region"], where="test rows")
    with pytest.raises(DataError, match="fairness_labels names \\['maybe'\\]"):
        group_fairness("single-label", LABELS, Y, PRED, {"region": GROUPS}, _cfg(fairness_labels=["maybe"]))
    with pytest.raises(DataError, match="pass frame="):
        evaluate_outputs("single-label", LABELS, Y, np.eye(2)[PRED], config=_cfg())


@pytest.mark.parametrize(("overrides", "message"), [
    (["task=regression", "data.target_column=y", "evaluate.fairness_columns=[r]"], "classification tasks"),
    (["train.fairness_reweight=true"], "evaluate.fairness_columns is empty"),
    (["labels=[a, b]", "evaluate.fairness_columns=[r]", "evaluate.fairness_labels=[c]"], "not among labels"),
    (["evaluate.fairness_columns=[r, r]"], "must be unique"),
])
def test_config_refuses_fairness_settings_that_cannot_work(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)
