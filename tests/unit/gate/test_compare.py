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


def test_the_negative_flip_wording_is_one_sentence_for_every_group():
    from keepfit.gate import ALL, EARLIER, negative_flip_sentence

    assert negative_flip_sentence(18, 293, 257, EARLIER) == (
        "18 negative flips on the earlier test set: 6.1% of its 293 rows, 7.0% of the 257 rows the old model got "
        "right"
    )
    assert negative_flip_sentence(1, 50, 0, ALL) == (
        "1 negative flip on all rows: 2.0% of the 50 rows, the old model got none of them right"
    )
    assert negative_flip_sentence(0, 0, 0, "holdout") == "no negative flips on group 'holdout': it has no rows"


def test_groups_carry_paired_counts_per_class_and_slice(kit):
    y, old, frame, _ = kit.paired(n=300, seed=6)
    new = old.copy()
    right_b = np.flatnonzero((y == 1) & (old == y))
    wrong_c = np.flatnonzero((y == 2) & (old != y))
    new[right_b[:7]] = 0  # 7 of class b broken
    new[wrong_c[:3]] = 2  # 3 of class c fixed
    comp = compare_outputs(
        "single-label", LABELS, LABELS, y, kit.probs_for(old, 5), kit.probs_for(new, 5), frame=frame, config=CFG
    )
    g = comp.group()
    assert g.per_class["b"]["old_right"] == len(right_b)
    assert (g.per_class["b"]["old_right_new_wrong"], g.per_class["b"]["old_wrong_new_right"]) == (7, 0)
    assert (g.per_class["c"]["old_right_new_wrong"], g.per_class["c"]["old_wrong_new_right"]) == (0, 3)
    web = frame["slice:source"].eq("web").to_numpy()
    assert g.per_slice["source"]["web"]["old_right_new_wrong"] == int(web[right_b[:7]].sum())
    assert g.negative_flip_rate == pytest.approx(7 / 300)
    assert g.negative_flip_rate_of_right == pytest.approx(7 / int((old == y).sum()))
    assert g.mcnemar["old_right"] == int((old == y).sum())


def test_multi_label_right_uses_each_models_thresholds():
    y = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    probs = np.array([[0.4, 0.1], [0.2, 0.35], [0.6, 0.3], [0.1, 0.1]])
    plain = compare_outputs("multi-label", ["x", "y"], ["x", "y"], y, probs, probs, config=CFG)
    assert plain.group().mcnemar["old_right"] == 1  # only row 3 at 0.5
    # the new model knows its labels in another order (the union, which y_true indexes, is then y, x):
    # thresholds follow each model's own labels
    tuned = compare_outputs(
        "multi-label",
        ["x", "y"],
        ["y", "x"],
        y[:, ::-1],
        probs,
        probs[:, ::-1],
        config=CFG,
        thresholds_new=np.array([0.25, 0.3]),  # y, x
    )
    g = tuned.group()
    assert g.mcnemar["old_right"] == 1 and g.mcnemar["old_wrong_new_right"] == 3  # every row right at 0.3/0.25
    assert tuned.settings["thresholds"] == {"old": "0.5", "new": "given"}
    with pytest.raises(DataError, match="one finite threshold per label"):
        compare_outputs("multi-label", ["x", "y"], ["x", "y"], y, probs, probs, config=CFG, thresholds_old=[0.5])
    with pytest.raises(DataError, match="multi-label comparisons only"):
        compare_outputs(
            "single-label", ["x", "y"], ["x", "y"], np.array([0, 1]), np.eye(2), np.eye(2), config=CFG,
            thresholds_new=[0.5, 0.5],
        )
