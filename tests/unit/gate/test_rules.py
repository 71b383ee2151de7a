"""The gate: each rule on constructed predictions, planted regressions always rejected, improvements pass."""

import json

import numpy as np
import pandas as pd
import pytest

from keepfit.config import EvaluateConfig, GateConfig
from keepfit.errors import ConfigError
from keepfit.gate import (
    DEFAULT_RULES,
    GateRule,
    MaxNegativeFlipRate,
    MaxSliceDrop,
    MinDelta,
    RuleResult,
    Significance,
    apply_gate,
    compare_outputs,
    write_comparison_report,
)

LABELS = ["a", "b", "c", "d", "e"]
CFG = EvaluateConfig(bootstrap=300, length_bins=[])


def _compare(kit, y, old, new, frame=None, n_labels=5, cfg=CFG):
    labels = LABELS[:n_labels]
    return compare_outputs(
        "single-label",
        labels,
        labels,
        y,
        kit.probs_for(old, n_labels),
        kit.probs_for(new, n_labels),
        frame=frame,
        config=cfg,
        seed=0,
    )


def _rule(decision, name):
    return next(r for r in decision.rules if r.name == name)


def _flips(y, old, broken: int, fixed: int, n_labels=5):
    new = old.copy()
    right, wrong = np.flatnonzero(old == y), np.flatnonzero(old != y)
    new[right[:broken]] = (y[right[:broken]] + 1) % n_labels
    new[wrong[:fixed]] = y[wrong[:fixed]]
    return new


@pytest.mark.parametrize("broken,passes", [(3, False), (2, True)])
def test_negative_flip_budget_on_exactly_known_flips(kit, broken, passes):
    y, old, _, _ = kit.paired(n=100, seed=0)
    new = _flips(y, old, broken=broken, fixed=5)
    comp = _compare(kit, y, old, new)
    result = MaxNegativeFlipRate().evaluate(comp, GateConfig(max_negative_flip_rate=0.02))
    assert result.value == pytest.approx(broken / 100) and result.threshold == 0.02
    assert result.passed is passes
    if not passes:
        assert (
            "fails by 0.0100" in result.detail
            and "at most 2 negative flips of 100 would pass" in result.detail
        )


def test_min_delta_point_and_with_significance(kit):
    y, old, _, _ = kit.paired(n=400, seed=1)
    small = _compare(kit, y, old, _flips(y, old, broken=0, fixed=2))  # +0.005, not significant
    assert MinDelta().evaluate(small, GateConfig(min_delta=0.0)).passed
    fail = MinDelta().evaluate(small, GateConfig(min_delta=0.01))
    assert not fail.passed and "short by 0.0050" in fail.detail and "would pass" in fail.detail
    strict = GateConfig(min_delta=0.0, require_significance=True)
    assert not MinDelta().evaluate(small, strict).passed  # interval reaches 0
    big = _compare(kit, y, old, _flips(y, old, broken=1, fixed=25))
    assert MinDelta().evaluate(big, strict).passed
    assert Significance().evaluate(big, strict).passed
    sig_small = Significance().evaluate(small, strict)
    assert not sig_small.passed and sig_small.value == pytest.approx(0.5)
    skipped = Significance().evaluate(small, GateConfig())
    assert skipped.passed and skipped.skipped


def test_significance_requires_the_new_model_ahead(kit):
    y, old, _, _ = kit.paired(n=400, seed=2)
    worse = _compare(kit, y, old, _flips(y, old, broken=30, fixed=0))
    r = Significance().evaluate(worse, GateConfig(require_significance=True))
    assert not r.passed and r.value < 0.05 and "does not fix more" in r.detail


def test_significance_needs_intervals_when_required(kit):
    y, old, _, _ = kit.paired(n=100, seed=2)
    comp = _compare(kit, y, old, _flips(y, old, 0, 9), cfg=CFG.model_copy(update={"bootstrap": 0}))
    r = MinDelta().evaluate(comp, GateConfig(require_significance=True))
    assert not r.passed and "evaluate.bootstrap" in r.detail


def _planted_class(kit, seed, fraction=1.0):
    """A candidate close to the champion (a few random changes) with one class broken (all or half of it)."""
    y, old, frame, rng = kit.paired(n=600, seed=seed)
    new = old.copy()
    noise = rng.uniform(size=len(y)) < 0.03
    new[noise] = np.where(rng.uniform(size=noise.sum()) < 0.5, y[noise], kit.wrong_label(y[noise], 5, rng))
    victim = int(rng.integers(0, 5))
    rows = np.flatnonzero(y == victim)
    rows = rows[: int(round(fraction * len(rows)))]
    new[rows] = (victim + 1) % 5
    return y, old, new, frame, LABELS[victim]


@pytest.mark.parametrize("fraction", [1.0, 0.5])
def test_a_broken_class_is_always_rejected(kit, fraction):
    lenient = GateConfig(max_negative_flip_rate=1.0, min_delta=-1.0)  # only the slice rule can catch it
    for seed in range(20):
        y, old, new, frame, victim = _planted_class(kit, seed, fraction)
        decision = apply_gate(_compare(kit, y, old, new, frame), lenient)
        assert not decision.passed, seed
        rule = _rule(decision, "max_slice_drop")
        assert not rule.passed and f"class '{victim}'" in rule.detail, (seed, rule.detail)
        if fraction == 1.0:
            assert "broken completely" in rule.detail
        assert apply_gate(_compare(kit, y, old, new, frame), GateConfig()).passed is False  # defaults too


def test_a_broken_slice_is_always_rejected(kit):
    lenient = GateConfig(max_negative_flip_rate=1.0, min_delta=-1.0)
    for seed in range(20):
        y, old, _, rng = kit.paired(n=600, seed=seed)
        frame = pd.DataFrame(
            {
                "text": [f"t{i}" for i in range(600)],
                "slice:channel": np.where(np.arange(600) % 20 == 0, "fax", "web"),
            }
        )  # 30 fax rows
        fax = frame["slice:channel"].eq("fax").to_numpy()
        new = old.copy()
        new[fax] = kit.wrong_label(y[fax], 5, rng)  # everything from fax is wrong now
        decision = apply_gate(_compare(kit, y, old, new, frame), lenient)
        rule = _rule(decision, "max_slice_drop")
        assert not decision.passed and not rule.passed and "slice 'channel=fax'" in rule.detail, seed


def test_an_improvement_passes(kit):
    for seed in range(20):
        y, old, frame, rng = kit.paired(n=600, seed=seed)
        wrong = np.flatnonzero(old != y)
        right = np.flatnonzero(old == y)
        fixed = rng.choice(wrong, len(wrong) // 2, replace=False)
        new = old.copy()
        new[fixed] = y[fixed]
        broken = rng.choice(right, 5, replace=False)  # 5 / 600 < 2% budget
        new[broken] = (y[broken] + 1) % 5
        decision = apply_gate(_compare(kit, y, old, new, frame), GateConfig())
        assert decision.passed, (seed, decision.reasons)
        assert decision.reasons == []


def test_an_identical_candidate_passes_the_defaults_but_not_required_significance(kit):
    y, old, frame, _ = kit.paired(n=300, seed=0)
    comp = _compare(kit, y, old, old.copy(), frame)
    assert apply_gate(comp, GateConfig()).passed
    decision = apply_gate(comp, GateConfig(require_significance=True))
    assert not decision.passed and {r.name for r in decision.rules if not r.passed} == {
        "min_delta",
        "significance",
    }


def test_small_classes_are_reported_not_gated(kit):
    y, old, _, _ = kit.paired(n=600, seed=0)
    new = old.copy()
    new[(y == 0)] = 1  # class a has 120 examples
    r = MaxSliceDrop().evaluate(_compare(kit, y, old, new), GateConfig(min_slice_size=500))
    assert r.passed and "0 classes/slices" in r.detail


# ---- contract: every rule follows the protocol, explains itself, and can fail ----


def _failing_cases(kit):
    y, old, frame, _ = kit.paired(n=600, seed=9)
    broken_class = old.copy()
    broken_class[y == 2] = 3
    return {
        "min_delta": (_compare(kit, y, old, _flips(y, old, 10, 0)), GateConfig(min_delta=0.0)),
        "max_negative_flip_rate": (_compare(kit, y, old, _flips(y, old, 30, 30)), GateConfig()),
        "max_slice_drop": (_compare(kit, y, old, broken_class, frame), GateConfig()),
        "significance": (_compare(kit, y, old, _flips(y, old, 0, 2)), GateConfig(require_significance=True)),
    }


@pytest.mark.parametrize("rule", DEFAULT_RULES, ids=lambda r: r.name)
def test_rule_contract(kit, rule):
    assert isinstance(rule, GateRule)
    y, old, frame, _ = kit.paired(n=300, seed=4)
    good = _compare(kit, y, old, _flips(y, old, 0, 20), frame)
    comp, policy = _failing_cases(kit)[rule.name]
    for case, pol, want in ((good, GateConfig(), True), (comp, policy, False)):
        result = rule.evaluate(case, pol)
        assert isinstance(result, RuleResult) and result.name == rule.name
        assert result.passed is want, result.detail
        assert isinstance(result.detail, str) and result.detail.endswith(".") and len(result.detail) > 30
        assert any(ch.isdigit() for ch in result.detail)
        json.dumps(result.to_dict(), allow_nan=False)
        if not want:
            assert "fail" in result.detail


def test_apply_gate_collects_reasons_and_is_json(kit):
    comp, _ = _failing_cases(kit)["max_negative_flip_rate"]
    decision = apply_gate(comp, GateConfig())
    assert not decision.passed and len(decision.rules) == 4
    assert decision.reasons and decision.reasons[0].startswith("max_negative_flip_rate: ")
    data = json.loads(json.dumps(decision.to_dict(), allow_nan=False))
    assert data["passed"] is False and data["policy"]["max_negative_flip_rate"] == 0.02
    with pytest.raises(ConfigError, match="no group named 'nope'"):
        apply_gate(comp, GateConfig(), group="nope")
    with pytest.raises(ConfigError, match="use one of"):
        apply_gate(comp, GateConfig(metric="bleu"))


def test_gate_metric_aliases_for_regression_and_multi_label():
    y = np.linspace(0, 1, 50)
    comp = compare_outputs("regression", [], [], y, y + 0.05, y + 0.01, config=CFG)
    r = MinDelta().evaluate(comp, GateConfig())
    assert r.passed and "'mae'" in r.detail and r.value == pytest.approx(0.04)
    ym = np.array([[1, 0], [0, 1]] * 10)
    comp = compare_outputs("multi-label", ["x", "y"], ["x", "y"], ym, ym * 0.9, ym * 0.9, config=CFG)
    assert "'subset_accuracy'" in MinDelta().evaluate(comp, GateConfig()).detail


def test_comparison_report_is_self_contained(kit, tmp_path):
    y, old, frame, _ = kit.paired(n=300, seed=5)
    groups = {"earlier": np.arange(300) < 200, "new": np.arange(300) >= 200}
    new = _flips(y, old, 4, 12)
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
    decision = apply_gate(comp, GateConfig())
    path = write_comparison_report(comp, decision, tmp_path / "cmp")
    text = path.read_text()
    assert path.name == "compare.html"
    assert text.count('<img src="data:image/png;base64,') == 4  # metric deltas, flips, per class, per slice
    assert "http://" not in text and "https://" not in text
    assert "Negative flips (old right, new wrong)" in text and "example " in text
    data = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert data["decision"]["passed"] == decision.passed
    assert data["comparison"]["groups"]["all"]["mcnemar"]["old_right_new_wrong"] == 4


def test_a_class_the_old_model_barely_got_is_not_newly_broken(kit):
    y, old, _, _ = kit.paired(n=600, seed=3)
    rows = np.flatnonzero(y == 1)
    old[rows] = 2
    old[rows[:2]] = 1  # old recall 2/120 = 0.017, within the 0.05 allowance
    new = old.copy()
    new[rows[:2]] = 2  # new recall 0
    r = MaxSliceDrop().evaluate(_compare(kit, y, old, new), GateConfig())
    assert r.passed, r.detail
    r = MaxSliceDrop().evaluate(_compare(kit, y, old, new), GateConfig(max_slice_drop=0.01))
    assert not r.passed and "broken completely" in r.detail
