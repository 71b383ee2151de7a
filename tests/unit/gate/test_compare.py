"""Paired comparison: McNemar, paired bootstrap, flips, label alignment by name."""

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm
from statsmodels.stats.contingency_tables import mcnemar

from keepfit.config import EvaluateConfig
from keepfit.errors import DataError
from keepfit.evaluation.bootstrap import resample_indices
from keepfit.gate import compare_outputs, mcnemar_exact

LABELS = ["a", "b", "c", "d", "e"]
CFG = EvaluateConfig(bootstrap=200, length_bins=[])


@pytest.mark.parametrize("b,c", [(0, 0), (3, 3), (0, 5), (10, 2), (40, 25), (1, 0), (7, 30), (200, 170)])
def test_mcnemar_agrees_with_statsmodels(b, c):
    table = [[50, b], [c, 20]]
    assert mcnemar_exact(b, c) == pytest.approx(mcnemar(table, exact=True).pvalue, rel=1e-9, abs=1e-12)


def test_comparison_counts_flips_and_matches_statsmodels(kit):
    y, old, frame, rng = kit.paired(n=300, seed=1)
    new = old.copy()
    right = np.flatnonzero(old == y)
    wrong = np.flatnonzero(old != y)
    new[right[:4]] = (y[right[:4]] + 1) % 5  # 4 broken
    new[wrong[:9]] = y[wrong[:9]]  # 9 fixed
    comp = compare_outputs(
        "single-label",
        LABELS,
        LABELS,
        y,
        kit.probs_for(old, 5),
        kit.probs_for(new, 5),
        frame=frame,
        config=CFG,
        seed=0,
    )
    g = comp.group()
    assert g.mcnemar["old_right_new_wrong"] == 4 and g.mcnemar["old_wrong_new_right"] == 9
    assert g.negative_flip_rate == pytest.approx(4 / 300) and g.positive_flip_rate == pytest.approx(9 / 300)
    table = [[g.mcnemar["both_right"], 4], [9, g.mcnemar["both_wrong"]]]
    assert g.mcnemar["p_value"] == pytest.approx(mcnemar(table, exact=True).pvalue)
    flip = g.negative_flips[0]
    i = right[0]
    assert flip == {
        "index": int(i),
        "true": LABELS[y[i]],
        "old": LABELS[y[i]],
        "new": LABELS[(y[i] + 1) % 5],
        "text": f"example {i}",
    }
    assert sorted(f["index"] for f in g.positive_flips) == sorted(wrong[:9].tolist())
    assert g.deltas["accuracy"]["delta"] == pytest.approx(5 / 300)


def test_paired_bootstrap_matches_a_naive_loop(kit):
    y, old, frame, rng = kit.paired(n=150, seed=2)
    new = np.where(rng.uniform(size=150) < 0.8, y, old)
    comp = compare_outputs(
        "single-label", LABELS, LABELS, y, kit.probs_for(old, 5), kit.probs_for(new, 5), config=CFG, seed=5
    )
    idx = resample_indices(150, CFG.bootstrap, seed=5)
    tail = (1 - CFG.confidence) / 2 * 100
    acc = [(new[i] == y[i]).mean() - (old[i] == y[i]).mean() for i in idx]
    f1 = [
        skm.f1_score(y[i], new[i], average="macro", zero_division=0)
        - skm.f1_score(y[i], old[i], average="macro", zero_division=0)
        for i in idx
    ]
    d = comp.group().deltas
    assert d["accuracy"]["interval"] == pytest.approx(tuple(np.percentile(acc, [tail, 100 - tail])))
    assert d["macro_f1"]["interval"] == pytest.approx(tuple(np.percentile(f1, [tail, 100 - tail])))
    assert d["macro_f1"]["delta"] == pytest.approx(
        skm.f1_score(y, new, average="macro") - skm.f1_score(y, old, average="macro")
    )
    # per class (recall) uses the same resamples
    cls = comp.group().per_class["c"]
    want = [
        ((new[i] == y[i]) & (y[i] == 2)).sum() / (y[i] == 2).sum()
        - ((old[i] == y[i]) & (y[i] == 2)).sum() / (y[i] == 2).sum()
        for i in idx
    ]
    assert cls["interval"] == pytest.approx(tuple(np.percentile(want, [tail, 100 - tail])))
    assert cls["n"] == (y == 2).sum()


def test_new_labels_align_by_name_and_count_as_wrong_for_the_old_model(kit):
    old_labels = ["a", "b"]
    new_labels = ["b", "a", "c"]  # reordered, plus a new label
    truth_names = ["a", "b", "c", "c", "a", "b"]
    union = new_labels  # the union puts the new model's labels first
    y = np.array([union.index(t) for t in truth_names])
    old_pred_names = ["a", "b", "a", "b", "a", "b"]  # right on every a/b example; cannot say c
    new_pred_names = ["a", "b", "c", "c", "b", "b"]
    out_old = kit.probs_for([old_labels.index(x) for x in old_pred_names], 2)
    out_new = kit.probs_for([new_labels.index(x) for x in new_pred_names], 3)
    comp = compare_outputs("single-label", old_labels, new_labels, y, out_old, out_new, config=CFG)
    g = comp.group()
    assert comp.labels == ["b", "a", "c"]
    assert g.deltas["accuracy"]["old"] == pytest.approx(4 / 6) and g.deltas["accuracy"][
        "new"
    ] == pytest.approx(5 / 6)
    assert g.per_class["c"]["old"] == 0.0 and g.per_class["c"]["new"] == 1.0
    assert [(f["true"], f["old"], f["new"]) for f in g.negative_flips] == [("a", "a", "b")]


def test_groups_and_slices(kit):
    y, old, frame, rng = kit.paired(n=200, seed=3)
    new = old.copy()
    groups = {"earlier": np.arange(200) < 120, "new": np.arange(200) >= 120}
    comp = compare_outputs(
        "single-label",
        LABELS,
        LABELS,
        y,
        kit.probs_for(old, 5),
        kit.probs_for(new, 5),
        frame=frame,
        config=CFG,
        groups=groups,
    )
    assert list(comp.groups) == ["all", "earlier", "new"]
    assert comp.groups["earlier"].n == 120 and comp.groups["new"].n == 80
    assert set(comp.group().per_slice) == {"source", "group"}  # other groups show up as slices of "all"
    assert (
        comp.groups["earlier"].per_slice["source"]["web"]["n"] == (frame["slice:source"][:120] == "web").sum()
    )
    assert comp.group().deltas["accuracy"]["interval"] == (0.0, 0.0)
    with pytest.raises(DataError, match="mask of shape"):
        compare_outputs(
            "single-label",
            LABELS,
            LABELS,
            y,
            kit.probs_for(old, 5),
            kit.probs_for(new, 5),
            config=CFG,
            groups={"bad": np.ones(3, bool)},
        )


def test_multi_label_flips_are_whole_examples():
    y = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    old = np.array([[0.9, 0.1], [0.2, 0.8], [0.9, 0.2], [0.1, 0.1]])  # rows 0, 1, 3 exactly right
    new = np.array([[0.9, 0.7], [0.2, 0.8], [0.9, 0.9], [0.1, 0.1]])  # row 0 broken, row 2 fixed
    comp = compare_outputs("multi-label", ["x", "y"], ["x", "y"], y, old, new, config=CFG)
    g = comp.group()
    assert [f["index"] for f in g.negative_flips] == [0] and [f["index"] for f in g.positive_flips] == [2]
    assert g.negative_flips[0]["new"] == ["x", "y"]
    assert g.deltas["subset_accuracy"]["delta"] == 0.0


def test_regression_flips_use_the_tolerance():
    y = np.zeros(10)
    old = np.full(10, 0.1)
    new = old.copy()
    new[[2, 5]] = 2.0  # error grows beyond the tolerance
    new[7] = 0.3  # grows, but stays within it
    cfg = CFG.model_copy(update={"regression_tolerance": 0.5})
    comp = compare_outputs(
        "regression", [], [], y, old, new, config=cfg, frame=pd.DataFrame({"text": list("abcdefghij")})
    )
    g = comp.group()
    assert [f["index"] for f in g.negative_flips] == [2, 5]
    assert g.negative_flips[0]["text"] == "c" and g.negative_flips[0]["new"] == 2.0
    assert g.deltas["mae"]["delta"] == pytest.approx((2 * 1.9 + 0.2) / 10)
    assert comp.settings["regression_tolerance"] == 0.5 and g.calibration is None


def test_comparison_to_dict_is_strict_json(kit):
    import json

    y, old, frame, rng = kit.paired(n=100, seed=4)
    comp = compare_outputs(
        "single-label",
        LABELS + ["unused"],
        LABELS + ["unused"],
        y,
        kit.probs_for(old, 6),
        kit.probs_for(old, 6),
        frame=frame,
        config=CFG,
    )
    data = json.loads(json.dumps(comp.to_dict(), allow_nan=False))
    assert data["groups"]["all"]["per_class"]["unused"]["delta"] is None  # no examples: NaN -> null
