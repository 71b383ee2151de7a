"""The gate: each rule on constructed predictions, planted regressions always rejected, improvements pass."""

import json

import numpy as np
import pandas as pd
import pytest

from keepfit.config import EvaluateConfig, GateConfig
from keepfit.errors import ConfigError
from keepfit.gate import (
    ALL,
    DEFAULT_RULES,
    EARLIER,
    NEW,
    ClassRegression,
    GateRule,
    Improvement,
    MaxNegativeFlipRate,
    NewLabelRecall,
    NonInferiority,
    RuleResult,
    Significance,
    apply_gate,
    compare_outputs,
    write_comparison_report,
)

LABELS = ["a", "b", "c", "d", "e"]
CFG = EvaluateConfig(bootstrap=300, length_bins=[])
FAST = EvaluateConfig(bootstrap=100, length_bins=[])  # for loops over seeds
# every rule but the one under test switched off
ONLY_CLASSES = GateConfig(margin=1.0, max_negative_flip_rate=1.0, min_delta=-1.0, new_label_min_recall=0.0)


def _compare(kit, y, old, new, frame=None, n_labels=5, cfg=CFG, groups=None, labels=None):
    labels = labels or LABELS[:n_labels]
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
        groups=groups,
    )


def _rule(decision, name):
    return next(r for r in decision.rules if r.name == name)


def _flips(y, old, broken: int, fixed: int, n_labels=5):
    new = old.copy()
    right, wrong = np.flatnonzero(old == y), np.flatnonzero(old != y)
    new[right[:broken]] = (y[right[:broken]] + 1) % n_labels
    new[wrong[:fixed]] = y[wrong[:fixed]]
    return new


def _many_classes(kit, seed, n_classes=150, sizes=(5, 30), accuracy=0.9):
    """A 150-class test set with 5-30 rows per class and a champion about ``accuracy`` right."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(n_classes), rng.integers(sizes[0], sizes[1] + 1, n_classes))
    old = np.where(rng.uniform(size=len(y)) < accuracy, y, kit.wrong_label(y, n_classes, rng))
    return y, old, rng, [f"c{i}" for i in range(n_classes)]


def _compare_many(kit, y, old, new, labels, **kw):
    cfg = EvaluateConfig(bootstrap=100, length_bins=[])
    return _compare(kit, y, old, new, n_labels=len(labels), labels=labels, cfg=cfg, **kw)


# ---- the wording of the negative flip rate, and its budget ----


@pytest.mark.parametrize("broken,passes", [(3, False), (2, True)])
def test_negative_flip_budget_on_exactly_known_flips(kit, broken, passes):
    y, old, _, _ = kit.paired(n=100, seed=0)
    new = _flips(y, old, broken=broken, fixed=5)
    groups = {EARLIER: np.ones(100, bool)}
    comp = _compare(kit, y, old, new, groups=groups)
    result = MaxNegativeFlipRate().evaluate(comp, GateConfig(max_negative_flip_rate=0.02))
    assert result.value == pytest.approx(broken / 100) and result.threshold == 0.02
    assert result.passed is passes and result.group == EARLIER
    right = int((old == y).sum())
    assert result.detail.startswith(
        f"{broken} negative flips on the earlier test set: {broken}.0% of its 100 rows, "
        f"{broken / right:.1%} of the {right} rows the old model got right"
    )
    if not passes:
        assert "fails by 0.0100" in result.detail and "at most 2 negative flips of 100 would pass" in result.detail


def test_the_flip_rate_is_diluted_by_nothing_outside_the_earlier_test_set(kit):
    y, old, _, _ = kit.paired(n=400, seed=1)
    earlier = np.arange(400) < 200
    new = old.copy()
    right_earlier = np.flatnonzero((old == y) & earlier)[:8]  # 8 / 200 = 4% on the earlier rows, 2% of all
    new[right_earlier] = (y[right_earlier] + 1) % 5
    comp = _compare(kit, y, old, new, groups={EARLIER: earlier, NEW: ~earlier})
    assert comp.groups[ALL].negative_flip_rate == pytest.approx(0.02)
    result = MaxNegativeFlipRate().evaluate(comp, GateConfig(max_negative_flip_rate=0.03))
    assert not result.passed and result.value == pytest.approx(0.04)


# ---- non-inferiority and improvement, each on its own group ----


def _with_new_label_rows(kit, seed):
    """300 earlier rows of a..e where the candidate lost 12 rows, and 100 new rows of label f it gets right."""
    y, old, _, _ = kit.paired(n=300, seed=seed)
    new = _flips(y, old, broken=12, fixed=0)
    y = np.concatenate([y, np.full(100, 5)])
    old_all = np.concatenate([old, np.zeros(100, int)])
    new_all = np.concatenate([new, np.full(100, 5)])
    labels_old, labels_new = LABELS, [*LABELS, "f"]
    comp = compare_outputs(
        "single-label",
        labels_old,
        labels_new,
        y,
        kit.probs_for(old_all, 5),
        kit.probs_for(new_all, 6),
        config=CFG,
        groups={EARLIER: np.arange(400) < 300, NEW: np.arange(400) >= 300},
    )
    return comp


def test_new_label_rows_do_not_lift_non_inferiority(kit):
    for seed in range(5):
        comp = _with_new_label_rows(kit, seed)
        assert comp.groups[ALL].deltas["accuracy"]["delta"] > 0.15  # what "all" would credit
        lifted = NonInferiority().evaluate(comp, GateConfig(), group=ALL)
        assert lifted.passed  # judged on all rows the new label hides the loss
        result = NonInferiority().evaluate(comp, GateConfig())
        assert not result.passed and result.group == EARLIER, result.detail
        assert result.value < -0.01 and "the earlier test set" in result.detail and "gate.margin" in result.detail
        decision = apply_gate(comp, GateConfig())
        assert not decision.passed and _rule(decision, "improvement").passed
        assert decision.groups["non_inferiority"] == EARLIER and decision.groups["improvement"] == NEW


def test_non_inferiority_allows_a_small_loss_within_the_margin_only_with_evidence(kit):
    y, old, _, _ = kit.paired(n=2000, seed=3)
    same = NonInferiority().evaluate(_compare(kit, y, old, _flips(y, old, 3, 3)), GateConfig(margin=0.01))
    assert same.passed and same.group == ALL
    worse = NonInferiority().evaluate(_compare(kit, y, old, _flips(y, old, 40, 0)), GateConfig(margin=0.01))
    assert not worse.passed and "short by" in worse.detail


def test_a_tie_does_not_pass_the_improvement_rule_when_it_must_be_shown(kit):
    y, old, _, _ = kit.paired(n=300, seed=0)
    shown = GateConfig(improvement="shown")
    comp = _compare(kit, y, old, old.copy())
    result = Improvement().evaluate(comp, shown)
    assert not result.passed and result.value == 0.0 and "a tie does not pass" in result.detail
    small = Improvement().evaluate(_compare(kit, y, old, _flips(y, old, 0, 1)), shown)
    assert not small.passed  # +1 row: the interval still reaches 0
    big = Improvement().evaluate(_compare(kit, y, old, _flips(y, old, 1, 25)), shown)
    assert big.passed and big.value > 0


def test_not_worse_passes_a_tie_and_refuses_a_candidate_shown_worse(kit):
    y, old, _, _ = kit.paired(n=300, seed=0)
    tie = Improvement().evaluate(_compare(kit, y, old, old.copy()), GateConfig())
    assert tie.passed and "not shown worse" in tie.detail
    noisy = Improvement().evaluate(_compare(kit, y, old, _flips(y, old, 3, 1)), GateConfig())
    assert noisy.passed, "two rows worse out of 300 is not shown worse"
    worse = Improvement().evaluate(_compare(kit, y, old, _flips(y, old, 30, 2)), GateConfig())
    assert not worse.passed and "shown worse" in worse.detail


def test_interval_rules_fail_without_bootstrap(kit):
    y, old, _, _ = kit.paired(n=100, seed=2)
    comp = _compare(kit, y, old, _flips(y, old, 0, 9), cfg=CFG.model_copy(update={"bootstrap": 0}))
    for rule in (NonInferiority(), Improvement()):
        r = rule.evaluate(comp, GateConfig())
        assert not r.passed and "evaluate.bootstrap" in r.detail


# ---- which group a rule judges, and the fallback ----


def test_rules_fall_back_to_all_rows_when_groups_are_absent(kit):
    y, old, frame, _ = kit.paired(n=300, seed=4)
    comp = _compare(kit, y, old, _flips(y, old, 1, 20), frame)
    decision = apply_gate(comp, GateConfig())
    assert decision.passed, decision.reasons
    assert set(decision.groups.values()) == {ALL} and decision.group == ALL
    detail = _rule(decision, "non_inferiority").detail
    assert "the earlier test set is not part of this comparison, so all rows are judged" in detail
    assert "the new test set is not part of this comparison" in _rule(decision, "improvement").detail


def test_an_empty_new_test_set_falls_back_and_a_configured_group_is_used(kit):
    y, old, _, _ = kit.paired(n=300, seed=5)
    groups = {EARLIER: np.ones(300, bool), NEW: np.zeros(300, bool)}
    comp = _compare(kit, y, old, _flips(y, old, 1, 20), groups=groups)
    r = Improvement().evaluate(comp, GateConfig())
    assert r.group == ALL and "the new test set has no rows" in r.detail
    r = Improvement().evaluate(comp, GateConfig(groups={"improvement": EARLIER}))
    assert r.group == EARLIER and "judged" not in r.detail
    with pytest.raises(ConfigError, match="gate.groups.improvement is 'holdout'"):
        Improvement().evaluate(comp, GateConfig(groups={"improvement": "holdout"}))


# ---- classes and slices of the earlier test set ----


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


@pytest.mark.parametrize("fraction", [1.0, 0.5, 0.2])
def test_a_broken_class_is_always_rejected(kit, fraction):
    for seed in range(20):
        y, old, new, frame, victim = _planted_class(kit, seed, fraction)
        comp = _compare(kit, y, old, new, frame, cfg=FAST)
        decision = apply_gate(comp, ONLY_CLASSES)
        assert not decision.passed, seed
        rule = _rule(decision, "class_regression")
        assert not rule.passed and f"class '{victim}'" in rule.failed, (seed, rule.detail)
        if fraction == 1.0:
            assert "broken completely" in rule.detail
        assert apply_gate(comp, GateConfig()).passed is False  # defaults too


def test_a_small_class_moved_to_another_class_is_rejected(kit):
    for seed in range(5):
        y, old, rng, labels = _many_classes(kit, seed)
        sizes = np.bincount(y)
        victim = int(np.flatnonzero(sizes == 5)[0]) if (sizes == 5).any() else int(np.argmin(sizes))
        old[y == victim] = victim  # the champion got all of its rows right
        new = old.copy()
        noise = rng.choice(len(y), int(0.04 * len(y)), replace=False)  # a retrain's flips elsewhere
        new[noise] = np.where(rng.uniform(size=len(noise)) < 0.5, y[noise], kit.wrong_label(y[noise], 150, rng))
        new[y == victim] = (victim + 1) % len(labels)
        comp = _compare_many(kit, y, old, new, labels)
        rule = ClassRegression().evaluate(comp, ONLY_CLASSES)
        assert not rule.passed and rule.failed == [f"class 'c{victim}'"], rule.detail
        unit = next(u for u in apply_gate(comp, ONLY_CLASSES).classes if u["name"] == f"c{victim}")
        assert unit["failed_by"] == ["flip_budget", "all_lost", "broken"]  # McNemar has no power on 5 rows


def test_a_large_class_moved_is_caught_by_mcnemar(kit):
    y, old, _, _ = kit.paired(n=600, seed=6)
    new = old.copy()
    rows = np.flatnonzero((y == 3) & (old == y))[:15]  # 15 of ~108 right rows: within the flip budget
    new[rows] = 4
    decision = apply_gate(_compare(kit, y, old, new), ONLY_CLASSES)
    unit = next(u for u in decision.classes if u["name"] == "d")
    assert unit["failed_by"] == ["mcnemar"] and unit["p_holm"] < 0.05
    assert unit["p_value"] == pytest.approx(0.5**15)


@pytest.mark.parametrize("seed", range(6))
def test_random_two_percent_flips_over_150_classes_pass(kit, seed):
    y, old, rng, labels = _many_classes(kit, seed)
    new = old.copy()
    right, wrong = np.flatnonzero(old == y), np.flatnonzero(old != y)
    n_flip = int(round(0.015 * len(y)))  # seed noise alone flips 1.5-3%: the class rules must not mistake it
    broken = rng.choice(right, n_flip, replace=False)
    new[broken] = kit.wrong_label(y[broken], len(labels), rng)
    fixed = rng.choice(wrong, n_flip, replace=False)
    new[fixed] = y[fixed]
    comp = _compare_many(kit, y, old, new, labels, groups={EARLIER: np.ones(len(y), bool)})
    decision = apply_gate(comp, GateConfig())
    assert _rule(decision, "class_regression").passed, _rule(decision, "class_regression").detail
    assert _rule(decision, "max_negative_flip_rate").passed


def test_a_broken_slice_is_always_rejected(kit):
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
        rule = _rule(apply_gate(_compare(kit, y, old, new, frame, cfg=FAST), ONLY_CLASSES), "class_regression")
        assert not rule.passed and "slice 'channel=fax'" in rule.failed, seed


def test_the_power_statement_is_what_the_checks_reject(kit):
    """A class's detectable flips are rejected, one fewer is not (the class alone changes)."""
    for size in (2, 4, 12, 30):
        y = np.repeat(np.arange(5), [size, 40, 40, 40, 40])
        old = y.copy()
        comp = _compare(kit, y, old, old.copy())
        unit = next(u for u in apply_gate(comp, GateConfig()).classes if u["name"] == "a")
        k = unit["detectable_flips"]
        assert k is not None and unit["detectable_drop"] == pytest.approx(k / size)
        for flips, caught in ((k, True), (k - 1, False)):
            new = old.copy()
            new[:flips] = 1
            rule = ClassRegression().evaluate(_compare(kit, y, old, new), GateConfig())
            assert (not rule.passed) is caught, (size, flips, rule.detail)
    y = np.repeat(np.arange(5), [2, 40, 40, 40, 40])
    unit = next(u for u in apply_gate(_compare(kit, y, y, y.copy()), GateConfig()).classes if u["name"] == "a")
    assert unit["detectable_flips"] == 2  # 2 rows: only losing both is caught
    y = np.repeat(np.arange(5), [1, 40, 40, 40, 40])
    unit = next(u for u in apply_gate(_compare(kit, y, y, y.copy()), GateConfig()).classes if u["name"] == "a")
    assert unit["detectable_flips"] is None  # 1 row: no drop can be caught


def test_a_test_split_too_small_for_its_classes_is_warned_about(kit):
    y, old, _, labels = _many_classes(kit, 0, sizes=(3, 8))
    decision = apply_gate(_compare_many(kit, y, old, old.copy(), labels), GateConfig())
    assert len(decision.warnings) == 1
    warning = decision.warnings[0]
    assert warning.startswith("150 of 150 classes of all rows have fewer than 10 rows")
    assert "split.min_test_per_class" in warning and "split.test" in warning
    y, old, _, labels = _many_classes(kit, 0, n_classes=10, sizes=(40, 50))
    assert apply_gate(_compare_many(kit, y, old, old.copy(), labels), GateConfig()).warnings == []


# ---- new labels ----


def _new_label(kit, right_of_ten: int):
    y, old, _, _ = kit.paired(n=200, seed=7)
    y = np.concatenate([y, np.full(10, 5)])
    old = np.concatenate([old, np.zeros(10, int)])
    new = old.copy()
    new[200 : 200 + right_of_ten] = 5
    return compare_outputs(
        "single-label",
        LABELS,
        [*LABELS, "z"],
        y,
        kit.probs_for(old, 5),
        kit.probs_for(new, 6),
        config=CFG,
        groups={EARLIER: np.arange(210) < 200, NEW: np.arange(210) >= 190},
    )


def test_new_labels_are_held_to_a_recall_floor_on_their_rows(kit):
    low = NewLabelRecall().evaluate(_new_label(kit, 1), GateConfig())
    assert not low.passed and low.value == pytest.approx(0.1) and low.failed == ["label 'z'"]
    assert low.group == NEW and "'z' recall 0.1000 on 10 rows" in low.detail
    assert NewLabelRecall().evaluate(_new_label(kit, 8), GateConfig()).passed
    # 3 of 10 is below the floor but not shown to be: 10 rows cannot tell a learnt label from an unlucky one
    unlucky = NewLabelRecall().evaluate(_new_label(kit, 3), GateConfig())
    assert unlucky.passed and unlucky.value == pytest.approx(0.3)
    y, old, _, _ = kit.paired(n=100, seed=7)
    none = NewLabelRecall().evaluate(_compare(kit, y, old, old.copy()), GateConfig())
    assert none.passed and none.skipped


# ---- significance (optional) ----


def test_significance_is_optional_and_requires_the_new_model_ahead(kit):
    y, old, _, _ = kit.paired(n=400, seed=2)
    strict = GateConfig(require_significance=True)
    assert Significance().evaluate(_compare(kit, y, old, _flips(y, old, 1, 25)), strict).passed
    small = _compare(kit, y, old, _flips(y, old, 0, 2))
    assert Significance().evaluate(small, strict).value == pytest.approx(0.5)
    skipped = Significance().evaluate(small, GateConfig())
    assert skipped.passed and skipped.skipped
    worse = Significance().evaluate(_compare(kit, y, old, _flips(y, old, 30, 0)), strict)
    assert not worse.passed and worse.value < 0.05 and "does not fix more" in worse.detail


def test_an_improvement_passes(kit):
    for seed in range(20):
        y, old, frame, rng = kit.paired(n=600, seed=seed)
        wrong = np.flatnonzero(old != y)
        right = np.flatnonzero(old == y)
        fixed = rng.choice(wrong, len(wrong) // 2, replace=False)
        new = old.copy()
        new[fixed] = y[fixed]
        broken = rng.choice(right, 5, replace=False)  # 5 / 600 within the budget
        new[broken] = (y[broken] + 1) % 5
        decision = apply_gate(_compare(kit, y, old, new, frame, cfg=FAST), GateConfig())
        assert decision.passed, (seed, decision.reasons)
        assert decision.reasons == []


# ---- contract: every rule follows the protocol, names its group, explains itself, and can fail ----


def _cases(kit):
    y, old, frame, _ = kit.paired(n=600, seed=9)
    broken_class = old.copy()
    broken_class[y == 2] = 3
    good = _compare(kit, y, old, _flips(y, old, 0, 40), frame)
    return good, {
        "non_inferiority": (_compare(kit, y, old, _flips(y, old, 30, 0)), GateConfig()),
        "improvement": (_compare(kit, y, old, _flips(y, old, 30, 0)), GateConfig()),
        "max_negative_flip_rate": (_compare(kit, y, old, _flips(y, old, 30, 30)), GateConfig()),
        "class_regression": (_compare(kit, y, old, broken_class, frame), GateConfig()),
        "new_label_recall": (_new_label(kit, 1), GateConfig()),
        "significance": (_compare(kit, y, old, _flips(y, old, 0, 2)), GateConfig(require_significance=True)),
        "fairness_gap": (_compare(kit, y, old, np.where(frame["slice:source"] == "web", (y + 1) % 5, old), frame,
                                  cfg=EvaluateConfig(bootstrap=300, length_bins=[], fairness_columns=["source"])),
                         GateConfig()),
    }


def test_the_default_rules_cover_every_configured_group():
    assert {r.name for r in DEFAULT_RULES} == set(GateConfig().groups)


@pytest.mark.parametrize("rule", DEFAULT_RULES, ids=lambda r: r.name)
def test_rule_contract(kit, rule):
    assert isinstance(rule, GateRule)
    good, failing = _cases(kit)
    comp, policy = failing[rule.name]
    for case, pol, want in ((good, GateConfig(), True), (comp, policy, False)):
        result = rule.evaluate(case, pol)
        assert isinstance(result, RuleResult) and result.name == rule.name
        assert result.passed is want, result.detail
        assert result.group in case.groups
        assert isinstance(result.detail, str) and result.detail.endswith(".") and len(result.detail) > 30
        assert any(ch.isdigit() for ch in result.detail)
        json.dumps(result.to_dict(), allow_nan=False)
        if not want:
            assert "fail" in result.detail


def test_apply_gate_collects_reasons_and_is_json(kit):
    _, failing = _cases(kit)
    comp, _ = failing["max_negative_flip_rate"]
    decision = apply_gate(comp, GateConfig())
    assert not decision.passed and len(decision.rules) == len(DEFAULT_RULES)
    assert decision.reasons and any(r.startswith("max_negative_flip_rate: ") for r in decision.reasons)
    data = json.loads(json.dumps(decision.to_dict(), allow_nan=False))
    assert data["passed"] is False and data["policy"]["max_negative_flip_rate"] == 0.02
    assert data["groups"]["class_regression"] == ALL and len(data["classes"]) == 5
    with pytest.raises(ConfigError, match="no group named 'nope'"):
        apply_gate(comp, GateConfig(), group="nope")
    with pytest.raises(ConfigError, match="use one of"):
        apply_gate(comp, GateConfig(metric="bleu"))


def test_the_decision_says_which_rule_caught_what(kit):
    y, old, frame, _ = kit.paired(n=600, seed=10)
    new = _flips(y, old, 30, 0)
    new[y == 1] = 2
    decision = apply_gate(_compare(kit, y, old, new, frame), GateConfig())
    failed = {r.name: r.failed for r in decision.rules if not r.passed}
    assert set(failed) == {"non_inferiority", "max_negative_flip_rate", "class_regression", "improvement"}
    assert "class 'b'" in failed["class_regression"]


def test_gate_metric_aliases_for_regression_and_multi_label():
    y = np.linspace(0, 1, 50)
    comp = compare_outputs("regression", [], [], y, y + 0.05, y + 0.01, config=CFG)
    r = NonInferiority().evaluate(comp, GateConfig())
    assert r.passed and "'mae'" in r.detail and r.value == pytest.approx(0.04)
    ym = np.array([[1, 0], [0, 1]] * 10)
    comp = compare_outputs("multi-label", ["x", "y"], ["x", "y"], ym, ym * 0.9, ym * 0.9, config=CFG)
    assert "'subset_accuracy'" in Improvement().evaluate(comp, GateConfig()).detail


def test_comparison_report_is_self_contained(kit, tmp_path):
    y, old, frame, _ = kit.paired(n=300, seed=5)
    groups = {EARLIER: np.arange(300) < 200, NEW: np.arange(300) >= 200}
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
    decision = apply_gate(comp, GateConfig(warn_class_rows=50))
    path = write_comparison_report(comp, decision, tmp_path / "cmp")
    text = path.read_text()
    assert path.name == "compare.html"
    assert text.count('<img src="data:image/png;base64,') == 4  # metric deltas, flips, per class, per slice
    assert "http://" not in text and "https://" not in text
    assert "Negative flips (old right, new wrong)" in text and "example " in text
    assert "<th>group judged</th>" in text and "<td>earlier test set</td>" in text
    assert "Classes and slices of the earlier test set" in text and "p (Holm)" in text
    assert "Warning: " in text and "split.min_test_per_class" in text
    assert "4 negative flips on all rows: 1.3% of the 300 rows" in text
    data = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert data["decision"]["passed"] == decision.passed
    assert data["comparison"]["groups"]["all"]["mcnemar"]["old_right_new_wrong"] == 4


def test_a_class_the_old_model_barely_got_is_not_newly_broken(kit):
    y, old, _, _ = kit.paired(n=600, seed=3)
    rows = np.flatnonzero(y == 1)
    old[rows] = 2
    old[rows[:2]] = 1  # old recall 2/120
    new = old.copy()
    new[rows[:2]] = 2  # new recall 0: 2 flips are within the flip budget and not significant
    r = ClassRegression().evaluate(_compare(kit, y, old, new), GateConfig())
    assert r.passed, r.detail
    r = ClassRegression().evaluate(_compare(kit, y, old, new), GateConfig(class_min_flips=2))
    assert not r.passed and "broken completely" in r.detail


def test_a_class_that_loses_both_of_its_right_rows_is_rejected_but_one_flip_is_noise(kit):
    """Below class_min_flips the flip budget cannot speak; losing every previously-right row (two or more) still
    fails, while one lost row of two passes."""
    y, old, rng, labels = _many_classes(kit, 3)
    counts = np.bincount(y, minlength=len(labels))
    right_counts = np.bincount(y[old == y], minlength=len(labels))
    victim = int(np.flatnonzero((right_counts == 2) | ((right_counts >= 2) & (counts <= 6)))[0])
    rows = np.flatnonzero((y == victim) & (old == y))
    both = old.copy()
    both[y == victim] = (victim + 1) % len(labels)
    one = old.copy()
    one[rows[0]] = (victim + 1) % len(labels)
    groups = {EARLIER: np.ones(len(y), bool)}
    lost = _rule(apply_gate(_compare_many(kit, y, old, both, labels, groups=groups), ONLY_CLASSES), "class_regression")
    assert not lost.passed and f"class 'c{victim}'" in lost.failed
    noise = _rule(apply_gate(_compare_many(kit, y, old, one, labels, groups=groups), ONLY_CLASSES), "class_regression")
    assert noise.passed, noise.detail
