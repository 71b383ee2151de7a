"""The gate's fairness_gap rule on constructed predictions: a candidate that widens a gap between groups is refused
with the column and groups named; one that does not passes; without fairness columns it passes with a note."""

from __future__ import annotations

import numpy as np
import pandas as pd

from keepfit.config import EvaluateConfig, GateConfig
from keepfit.gate import EARLIER, apply_gate, compare_outputs
from keepfit.gate.rules import FairnessGap

LABELS = ["a", "b", "c", "d"]
FAIR = EvaluateConfig(bootstrap=300, length_bins=[], fairness_columns=["region"])


def _rows(n: int = 800, seed: int = 0):
    """Truth, a champion right on ~90% of rows in both regions, and the frame with the region column."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, len(LABELS), n)
    old = np.where(rng.uniform(size=n) < 0.9, y, (y + 1) % len(LABELS))
    frame = pd.DataFrame({"text": [f"t{i}" for i in range(n)], "slice:region": rng.choice(["north", "south"], n)})
    return y, old, frame, rng


def _compare(y, old, new, frame, cfg=FAIR, groups=None):
    probs = np.eye(len(LABELS))
    return compare_outputs("single-label", LABELS, LABELS, y, probs[old], probs[new], frame=frame, config=cfg,
                           seed=0, groups=groups)


def test_a_candidate_that_widens_the_gap_is_refused_naming_column_and_groups():
    y, old, frame, rng = _rows()
    south = (frame["slice:region"] == "south").to_numpy()
    new = old.copy()
    hurt = south & (old == y) & (rng.uniform(size=len(y)) < 0.25)  # a quarter of the south's right rows break
    new[hurt] = (y[hurt] + 1) % len(LABELS)
    result = FairnessGap().evaluate(_compare(y, old, new, frame), GateConfig())
    assert not result.passed and "fails" in result.detail
    assert "'region' accuracy_gap between 'south' and 'north'" in result.detail
    assert any(f.startswith("region accuracy_gap between 'south' and 'north'") for f in result.failed)
    comparison = _compare(y, old, new, frame)
    change = comparison.group("all").fairness["region"]["accuracy_gap"]
    assert change["new"] - change["old"] == change["delta"] > 0.15
    assert change["one_sided"][0] > 0.1  # paired: the interval is of the change, and it is narrow


def test_a_candidate_that_keeps_the_gap_passes():
    y, old, frame, rng = _rows(seed=1)
    new = old.copy()
    flip = rng.uniform(size=len(y)) < 0.02  # seed noise, spread over both regions
    new[flip] = np.where(old[flip] == y[flip], (y[flip] + 1) % len(LABELS), y[flip])
    result = FairnessGap().evaluate(_compare(y, old, new, frame), GateConfig())
    assert result.passed and "passes" in result.detail and "the closest" in result.detail
    same = _compare(y, old, old, frame).group("all").fairness["region"]["demographic_parity_difference"]
    assert same["delta"] == 0 and same["interval"] == (0.0, 0.0)  # the same resamples for both models


def test_the_budget_is_what_a_widening_is_held_to():
    y, old, frame, _ = _rows(seed=2)
    south = (frame["slice:region"] == "south").to_numpy()
    new = old.copy()
    hurt = np.flatnonzero(south & (old == y))[:80]
    new[hurt] = (y[hurt] + 1) % len(LABELS)
    comparison = _compare(y, old, new, frame)
    assert not FairnessGap().evaluate(comparison, GateConfig()).passed
    assert FairnessGap().evaluate(comparison, GateConfig(max_fairness_gap_increase=0.5)).passed


def test_without_fairness_columns_it_passes_with_a_note_and_judges_the_earlier_test_set():
    y, old, frame, _ = _rows()
    plain = FairnessGap().evaluate(_compare(y, old, old, frame, cfg=EvaluateConfig(bootstrap=100)), GateConfig())
    assert plain.passed and plain.skipped and "evaluate.fairness_columns is empty" in plain.detail
    earlier = np.arange(len(y)) < 600
    comparison = _compare(y, old, old, frame, groups={EARLIER: earlier, "new test set": ~earlier})
    decision = apply_gate(comparison, GateConfig())
    assert decision.groups["fairness_gap"] == EARLIER
    assert next(r for r in decision.rules if r.name == "fairness_gap").passed


def test_groups_too_small_to_compare_leave_no_gap_and_the_rule_passes_with_a_note():
    y, old, frame, _ = _rows(n=60)
    cfg = EvaluateConfig(bootstrap=100, length_bins=[], fairness_columns=["region"], fairness_min_group_rows=50)
    comparison = _compare(y, old, (old + 1) % len(LABELS), frame, cfg=cfg)
    assert comparison.group("all").fairness["region"]["accuracy_gap"]["delta"] is None
    result = FairnessGap().evaluate(comparison, GateConfig())
    assert result.passed and result.skipped and "no gap is defined for both models" in result.detail


def test_the_comparison_report_shows_both_models_gaps(tmp_path):
    from keepfit.gate import write_comparison_report

    y, old, frame, _ = _rows()
    comparison = _compare(y, old, old, frame)
    write_comparison_report(comparison, apply_gate(comparison, GateConfig()), tmp_path)
    html = next(tmp_path.glob("*.html")).read_text()
    assert "Gaps between groups (fairness columns)" in html and "demographic parity difference" in html
