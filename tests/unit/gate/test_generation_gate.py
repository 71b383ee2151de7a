"""The paired comparison and the gate for text-generation: flips of right answers, per-field checks, report."""

import json

import numpy as np
import pandas as pd
import pytest

from keepfit.config import EvaluateConfig, GateConfig
from keepfit.errors import DataError
from keepfit.evaluation import score_generations
from keepfit.evaluation.bootstrap import resample_indices
from keepfit.gate import apply_gate, compare_outputs, mcnemar_exact, write_comparison_report
from keepfit.gate.compare import DELTA_METRICS

CFG = EvaluateConfig(bootstrap=300, length_bins=[])
GATE = GateConfig()


def _rows(n: int, json_answers: bool = True) -> pd.DataFrame:
    prompts = [json.dumps([{"role": "user", "content": f"Describe person {i}."}]) for i in range(n)]
    refs = (
        [json.dumps({"name": f"P{i}", "age": 20 + i}) for i in range(n)]
        if json_answers
        else [f"Person {i} is {20 + i} years old." for i in range(n)]
    )
    return pd.DataFrame(
        {
            "text": [f"Describe person {i}." for i in range(n)],
            "prompt": prompts,
            "completion": refs,
            "slice:source": ["web", "app"] * (n // 2),
        }
    )


def _wrong_age(ref: str) -> str:
    obj = json.loads(ref)
    return json.dumps({**obj, "age": obj["age"] + 100})


def _compare(frame: pd.DataFrame, old: list[str], new: list[str], config: EvaluateConfig = CFG, seed: int = 0):
    ended = np.ones(len(frame), dtype=bool)
    refs = frame["completion"].tolist()
    s_old = score_generations(refs, old, ended, match=config.generation_match, threshold=config.generation_threshold)
    s_new = score_generations(refs, new, ended, match=config.generation_match, threshold=config.generation_threshold)
    paired = frame.assign(output_old=old, output_new=new)
    return compare_outputs(
        "text-generation", [], [], np.zeros(len(frame)), s_old, s_new, frame=paired, config=config, seed=seed
    )


def test_breaking_three_of_ten_right_answers_is_refused_by_the_flip_rule():
    frame = _rows(10)
    old = frame["completion"].tolist()
    new = list(old)
    for i in (1, 4, 7):
        new[i] = _wrong_age(old[i])
    comp = _compare(frame, old, new)
    g = comp.group()
    assert comp.task == "text-generation" and comp.labels == [] and g.n == 10
    assert g.mcnemar["old_right"] == 10 and g.mcnemar["old_right_new_wrong"] == 3
    assert g.mcnemar["old_wrong_new_right"] == 0 and g.mcnemar["both_right"] == 7 and g.mcnemar["both_wrong"] == 0
    assert g.mcnemar["p_value"] == pytest.approx(mcnemar_exact(3, 0)) == pytest.approx(0.25)
    assert g.negative_flip_rate == pytest.approx(0.3) and g.positive_flip_rate == 0
    assert g.deltas["accuracy"]["old"] == 1.0 and g.deltas["accuracy"]["new"] == pytest.approx(0.7)
    assert g.deltas["field_match"]["delta"] == pytest.approx(-0.15)  # 3 rows lose 1 of 2 fields
    assert set(g.deltas) == set(DELTA_METRICS["text-generation"])
    decision = apply_gate(comp, GATE)
    assert not decision.passed
    flip_rule = next(r for r in decision.rules if r.name == "max_negative_flip_rate")
    assert not flip_rule.passed and flip_rule.value == pytest.approx(0.3)
    assert "3 negative flips on all rows" in flip_rule.detail
    assert any(reason.startswith("max_negative_flip_rate") for reason in decision.reasons)


def test_fixing_answers_without_breaking_any_passes():
    frame = _rows(10)
    new = frame["completion"].tolist()
    old = list(new)
    for i in (0, 3, 8):
        old[i] = "I am not sure."
    comp = _compare(frame, old, new)
    g = comp.group()
    assert g.mcnemar["old_right_new_wrong"] == 0 and g.mcnemar["old_wrong_new_right"] == 3
    assert sorted(f["index"] for f in g.positive_flips) == [0, 3, 8] and g.negative_flips == []
    decision = apply_gate(comp, GATE)
    assert decision.passed, decision.reasons
    by_name = {r.name: r for r in decision.rules}
    assert by_name["new_label_recall"].skipped and "not applicable" in by_name["new_label_recall"].detail
    rule = by_name["class_regression"]
    assert rule.passed and not rule.skipped and "2 fields and 2 slice values" in rule.detail


def test_flips_carry_the_prompt_reference_both_outputs_and_scores():
    frame = _rows(10)
    old = frame["completion"].tolist()
    new = list(old)
    new[4] = json.dumps({"name": "P4"})
    flip = _compare(frame, old, new).group().negative_flips[0]
    assert flip == {
        "index": 4,
        "prompt": "user: Describe person 4.",
        "reference": old[4],
        "output_old": old[4],
        "output_new": new[4],
        "score_old": 1.0,
        "score_new": 0.5,  # field_match: 1 of 2 fields
    }


def test_per_field_counts_and_a_broken_field_fails_class_regression():
    frame = _rows(10)
    old = frame["completion"].tolist()
    old[9] = json.dumps({"name": "P9", "age": 0})  # old gets age wrong on row 9
    new = [_wrong_age(r) for r in frame["completion"].tolist()]  # new gets every age wrong
    new[9] = frame["completion"][9]  # ... except row 9, which it fixes
    g = _compare(frame, old, new).group()
    age, name = g.per_class["age"], g.per_class["name"]
    assert age["n"] == 10 and age["old"] == pytest.approx(0.9) and age["new"] == pytest.approx(0.1)
    assert (age["old_right"], age["old_right_new_wrong"], age["old_wrong_new_right"]) == (9, 9, 1)
    assert (name["old_right"], name["old_right_new_wrong"], name["old_wrong_new_right"]) == (10, 0, 0)
    lo, hi = age["interval"]
    assert lo <= age["delta"] <= hi and age["delta"] == pytest.approx(-0.8)
    decision = apply_gate(_compare(frame, old, new), GATE)
    rule = next(r for r in decision.rules if r.name == "class_regression")
    assert not rule.passed and "field 'age'" in rule.failed and "field 'name'" not in rule.failed


def test_accuracy_delta_interval_is_the_paired_bootstrap():
    frame = _rows(20)
    refs = frame["completion"].tolist()
    old, new = list(refs), list(refs)
    for i in (0, 1, 2, 3, 4):
        old[i] = "?"
    for i in (5, 6):
        new[i] = "?"
    comp = _compare(frame, old, new, seed=7)
    right_old = np.array([0] * 5 + [1] * 15, dtype=float)
    right_new = np.array([1] * 5 + [0] * 2 + [1] * 13, dtype=float)
    idx = resample_indices(20, CFG.bootstrap, 7)
    diffs = right_new[idx].mean(axis=1) - right_old[idx].mean(axis=1)
    d = comp.group().deltas["accuracy"]
    assert d["delta"] == pytest.approx(0.15)
    assert d["interval"] == pytest.approx(tuple(np.percentile(diffs, [2.5, 97.5])))


def test_free_text_comparison_judges_slices_or_skips_class_regression_when_there_are_none():
    frame = _rows(10, json_answers=False)
    old = frame["completion"].tolist()
    new = list(old)
    new[2] = "No idea."
    comp = _compare(frame, old, new)
    assert comp.group().per_class == {} and comp.settings["match"] == "exact"
    rule = next(r for r in apply_gate(comp, GATE).rules if r.name == "class_regression")
    assert "no per-field table" in rule.detail and "0 fields and 2 slice values" in rule.detail
    bare = _compare(frame.drop(columns=["slice:source"]), old, new)
    rule = next(r for r in apply_gate(bare, GATE).rules if r.name == "class_regression")
    assert rule.passed and rule.skipped and "no per-field table" in rule.detail


def test_groups_are_judged_by_the_rules_like_any_task():
    frame = _rows(10)
    old = frame["completion"].tolist()
    new = list(old)
    new[0] = "?"
    ended = np.ones(10, dtype=bool)
    s_old = score_generations(old, old, ended, match="auto", threshold=1.0)
    s_new = score_generations(old, new, ended, match="auto", threshold=1.0)
    earlier = np.arange(10) < 6
    comp = compare_outputs(
        "text-generation", [], [], np.zeros(10), s_old, s_new, frame=frame.assign(output_old=old, output_new=new),
        config=CFG, groups={"earlier test set": earlier, "new test set": ~earlier},
    )
    assert comp.group("earlier test set").mcnemar["old_right_new_wrong"] == 1
    assert comp.group("new test set").mcnemar["old_right_new_wrong"] == 0
    decision = apply_gate(comp, GATE)
    assert decision.groups["max_negative_flip_rate"] == "earlier test set" and not decision.passed


def test_without_a_frame_flips_have_scores_only_and_bad_inputs_raise():
    refs = ["a", "b", "c"]
    ended = np.ones(3, dtype=bool)
    s_old = score_generations(refs, refs, ended, match="exact", threshold=1.0)
    s_new = score_generations(refs, ["a", "x", "c"], ended, match="exact", threshold=1.0)
    comp = compare_outputs("text-generation", [], [], np.zeros(3), s_old, s_new, config=CFG)
    assert comp.group().negative_flips == [{"index": 1, "score_old": 1.0, "score_new": 0.0}]
    with pytest.raises(DataError, match="shape \\[n, 7\\]"):
        compare_outputs("text-generation", [], [], np.zeros(3), s_old[:, :3], s_new, config=CFG)
    with pytest.raises(DataError, match="lacks \\['output_old', 'output_new'\\]"):
        compare_outputs("text-generation", [], [], np.zeros(3), s_old, s_new, config=CFG,
                        frame=pd.DataFrame({"completion": refs}))
    with pytest.raises(DataError, match="same rows"):
        compare_outputs("text-generation", [], [], np.zeros(3), s_old, s_new[:2], config=CFG)


def test_report_renders_generation_flips_with_their_texts(tmp_path):
    frame = _rows(10)
    old = frame["completion"].tolist()
    new = list(old)
    for i in (1, 4, 7):
        new[i] = _wrong_age(old[i])
    new[7] = "Sorry, <no> answer & more"
    comp = _compare(frame, old, new)
    decision = apply_gate(comp, GATE)
    html = write_comparison_report(comp, decision, tmp_path / "cmp").read_text()
    assert "REJECTED" in html and "Fields and slices of all rows" in html and "Per field (field_accuracy)" in html
    assert "Negative flips (old right, new wrong): first 3" in html
    assert "user: Describe person 4." in html and "old output" in html and "new output" in html
    assert "Sorry, &lt;no&gt; answer &amp; more" in html
    assert html.count("&quot;age&quot;: 124") == 1  # row 4's new answer, shown once
    data = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert data["comparison"]["groups"]["all"]["negative_flips"][1]["output_new"] == new[4]
