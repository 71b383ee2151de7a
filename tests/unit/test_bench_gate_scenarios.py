"""The scenario builders of benchmarks/bench_gate.py on small synthetic arrays: each plants what it says."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "_gate_scenarios.py"
_spec = importlib.util.spec_from_file_location("_gate_scenarios", _PATH)
sc = importlib.util.module_from_spec(_spec)
sys.modules["_gate_scenarios"] = sc  # dataclasses look their module up there
_spec.loader.exec_module(sc)

KNOWN = ["a", "b", "c", "d", "e"]


def _rows(n_per_class: int = 20, n_new: int = 10, seed: int = 0, accuracy: float = 0.8) -> sc.TestRows:
    """A champion over KNOWN about ``accuracy`` right on earlier rows; new rows of labels x and y."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(len(KNOWN)), n_per_class)
    pred = np.where(rng.random(len(y)) < accuracy, y, (y + rng.integers(1, len(KNOWN), len(y))) % len(KNOWN))
    probs = rng.dirichlet(np.ones(len(KNOWN)), len(y)) * 0.3
    probs[np.arange(len(y)), pred] += 0.7
    earlier = pd.DataFrame({"text": [f"old {i}" for i in range(len(y))], "label": np.asarray(KNOWN)[y]})
    new = pd.DataFrame({"text": [f"new {i}" for i in range(n_new)], "label": ["x", "y"] * (n_new // 2)})
    probs_new = rng.dirichlet(np.ones(len(KNOWN)), n_new)
    return sc.test_rows(KNOWN, earlier, probs, new, probs_new)


def _pred(candidate: sc.Candidate) -> np.ndarray:
    return candidate.probs.argmax(axis=1)


def _flips(rows: sc.TestRows, candidate: sc.Candidate) -> tuple[np.ndarray, np.ndarray]:
    """Masks of negative and positive flips on the earlier rows."""
    old_right, new_right = rows.champion_right, _pred(candidate) == rows.y
    earlier = ~rows.is_new
    return earlier & old_right & ~new_right, earlier & ~old_right & new_right


def test_test_rows_put_new_labels_after_the_known_ones():
    rows = _rows()
    assert rows.labels_new == ["a", "b", "c", "d", "e", "x", "y"]
    assert rows.y[rows.is_new].min() == 5
    assert rows.groups["earlier test set"].sum() == 100 and rows.groups["new test set"].sum() == 10


def test_test_rows_refuse_a_known_label_among_the_new_rows():
    earlier = pd.DataFrame({"text": ["t"], "label": ["a"]})
    with pytest.raises(ValueError, match="known new labels"):
        sc.test_rows(["a", "b"], earlier, np.array([[0.9, 0.1]]), earlier, np.array([[0.9, 0.1]]))


def test_move_to_changes_the_argmax_and_keeps_distributions():
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.34, 0.33, 0.33]])
    moved = sc.move_to(probs, np.array([0, 2]), np.array([2, 1]))
    assert moved.argmax(axis=1).tolist() == [2, 2, 1]
    np.testing.assert_allclose(moved.sum(axis=1), 1.0)
    np.testing.assert_array_equal(moved[1], probs[1])


def test_best_wrong_is_the_runner_up_when_the_true_label_leads():
    probs = np.array([[0.6, 0.3, 0.1], [0.2, 0.1, 0.7]])
    assert sc.best_wrong(probs, np.array([0, 1])).tolist() == [1, 2]


def test_control_has_the_requested_churn_and_learns_new_rows():
    rows = _rows(n_new=200)
    candidate = sc.control(rows, np.random.default_rng(1), churn_nfr=0.05, churn_pfr=0.03, new_recall=0.9)
    neg, pos = _flips(rows, candidate)
    assert (neg.sum(), pos.sum()) == (5, 3)  # 5% and 3% of 100 earlier rows
    new_right = (_pred(candidate) == rows.y)[rows.is_new].mean()
    assert 0.8 < new_right < 0.97
    assert candidate.frame["slice:channel"].isin(["phone", "app", "web"]).all()


def test_class_broken_sends_every_row_of_one_class_elsewhere():
    rows = _rows()
    candidate = sc.class_broken(rows, np.random.default_rng(2), churn_nfr=0.0, churn_pfr=0.0)
    broken = KNOWN.index(candidate.planted["class"])
    into = rows.labels_new.index(candidate.planted["predicted_as"])
    members = ~rows.is_new & (rows.y == broken)
    assert members.sum() == 20 and into != broken
    assert (_pred(candidate)[members] == into).all()
    others = ~rows.is_new & ~members
    np.testing.assert_array_equal(_pred(candidate)[others], rows.probs_old[others].argmax(axis=1))


def test_class_broken_needs_a_class_with_enough_rows():
    with pytest.raises(ValueError, match="min_rows"):
        sc.class_broken(_rows(n_per_class=3), np.random.default_rng(0), min_rows=5)


def test_slice_broken_flips_only_inside_the_slice():
    rows = _rows(n_per_class=100)
    candidate = sc.slice_broken(rows, np.random.default_rng(3), slice_share=0.2, flip_share=0.5,
                                churn_nfr=0.0, churn_pfr=0.0)
    neg, pos = _flips(rows, candidate)
    in_slice = (candidate.frame["slice:channel"] == "phone").to_numpy()
    assert neg.sum() > 0 and not (neg & ~in_slice).any() and not pos.any()
    right_in_slice = (~rows.is_new & in_slice & rows.champion_right).sum()
    assert abs(neg.sum() - right_in_slice / 2) <= 0.5
    assert candidate.planted["flipped"] == neg.sum()


def test_slice_broken_flips_at_least_min_flips_in_a_small_slice():
    rows = _rows(n_per_class=20, accuracy=1.0)
    candidate = sc.slice_broken(rows, np.random.default_rng(6), slice_share=0.05, flip_share=0.1, min_flips=3,
                                churn_nfr=0.0, churn_pfr=0.0)
    neg, _ = _flips(rows, candidate)
    assert candidate.planted["slice_rows_earlier"] >= 3
    assert neg.sum() == 3  # 10% of a handful of rows rounds to 0 or 1; the floor plants 3


def test_looks_better_loses_on_earlier_rows_and_wins_every_new_row():
    rows = _rows(n_per_class=40, n_new=40)
    candidate = sc.looks_better(rows, np.random.default_rng(4), nfr=0.03)
    neg, pos = _flips(rows, candidate)
    assert (neg.sum(), pos.sum()) == (6, 0)  # 3% of 200 earlier rows
    assert (_pred(candidate)[rows.is_new] == rows.y[rows.is_new]).all()
    right_old = rows.champion_right.sum()
    right_new = (_pred(candidate) == rows.y).sum()
    assert right_new == right_old - 6 + 40  # better on all rows only through the new labels


def test_candidate_feeds_compare_outputs():
    from keepfit.config import EvaluateConfig
    from keepfit.gate import compare_outputs

    rows = _rows()
    candidate = sc.looks_better(rows, np.random.default_rng(5), nfr=0.05)
    comparison = compare_outputs(
        "single-label", rows.labels_old, rows.labels_new, rows.y, rows.probs_old, candidate.probs,
        frame=candidate.frame, config=EvaluateConfig(bootstrap=0), groups=rows.groups,
    )
    earlier = comparison.group("earlier test set")
    assert earlier.n == 100 and earlier.mcnemar["old_right_new_wrong"] == 5
    assert comparison.group("new test set").mcnemar["old_wrong_new_right"] == 10


def _train(n_intents: int = 8, per_intent: int = 40) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "text": [f"intent {i} row {j}" for i in range(n_intents) for j in range(per_intent)],
            "category": [f"i{i}" for i in range(n_intents) for _ in range(per_intent)],
        }
    )


def test_plan_pools_hold_intents_out_and_keep_rows_apart():
    train = _train()
    pools = sc.plan_pools(train, np.random.default_rng(0), held_out=2, champion_rows=120)
    assert len(pools.held_out) == 2 and len(pools.known) == 6
    assert not set(pools.champion["category"]) & set(pools.held_out)
    assert set(pools.champion["category"]) == set(pools.known)
    assert len(pools.champion) == 120
    assert not set(pools.champion["text"]) & set(pools.fresh["text"])
    assert len(pools.champion) + len(pools.fresh) + len(pools.new) == len(train)


def test_clean_batch_brings_new_intents_and_fresh_rows():
    pools = sc.plan_pools(_train(), np.random.default_rng(0), held_out=3, champion_rows=100)
    batch = sc.clean_batch(pools, np.random.default_rng(1), new_intents=2, rows_per_new_intent=10, fresh_rows=30)
    new = batch[batch["category"].isin(pools.held_out)]
    assert len(batch) == 50 and len(new) == 20 and new["category"].nunique() == 2
    assert not set(batch["text"]) & set(pools.champion["text"])


def test_swapped_batch_swaps_exactly_the_two_blocks():
    pools = sc.plan_pools(_train(), np.random.default_rng(0), held_out=2, champion_rows=100)
    batch = sc.swapped_batch(pools, np.random.default_rng(2), new_intents=1, rows_per_new_intent=10,
                             fresh_rows=40, swap_rows=12)
    a, b = batch.pair
    truth = dict(zip(pools.fresh["text"], pools.fresh["category"], strict=True))
    sent = dict(zip(batch.rows["text"], batch.rows["category"], strict=True))
    assert len(batch.rows) == 50 and set(batch.swapped) == {a, b}
    for intent, other in ((a, b), (b, a)):
        texts = batch.swapped[intent]
        assert len(texts) == 12
        assert all(truth[t] == intent and sent[t] == other for t in texts)
    honest = [t for t, label in sent.items() if label in pools.known and t not in set(sum(batch.swapped.values(), []))]
    assert len(honest) == 16 and all(truth[t] == sent[t] and sent[t] not in (a, b) for t in honest)


def test_recall_on_counts_one_intent():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    truth = pd.Series(["p", "p", "p", "q"])
    assert sc.recall_on(["p", "q"], probs, truth, "p") == pytest.approx(2 / 3)
    assert np.isnan(sc.recall_on(["p", "q"], probs, truth, "z"))


def test_summarise_counts_met_seeds_and_failing_rules():
    records = [
        {"scenario": "a", "expected": "rejected", "promoted": False, "met": True,
         "failing_rules": [{"name": "class_flips"}, {"name": "max_negative_flip_rate"}]},
        {"scenario": "a", "expected": "rejected", "promoted": True, "met": False, "failing_rules": []},
        {"scenario": "g", "expected": "promoted", "promoted": True, "met": True, "failing_rules": [], "error": None},
    ]
    a, g = sc.summarise(records)
    assert (a["seeds"], a["met"], a["promoted"]) == (2, 1, 1)
    assert a["caught_by"] == {"class_flips": 1, "max_negative_flip_rate": 1}
    assert (g["scenario"], g["met"], g["errors"]) == ("g", 1, 0)
