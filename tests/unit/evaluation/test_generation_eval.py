"""Scores of generated answers (hand-computed), evaluate_generations, and its HTML/JSON report."""

import json

import numpy as np
import pandas as pd
import pytest

from keepfit.config import EvaluateConfig
from keepfit.errors import ConfigError, DataError
from keepfit.evaluation import (
    evaluate_generations,
    field_scores,
    match_kind,
    score_generations,
    write_evaluation_report,
)
from keepfit.evaluation import generation as gen
from keepfit.evaluation.bootstrap import resample_indices

CFG = EvaluateConfig(bootstrap=300, length_bins=[20])
COL = {name: j for j, name in enumerate(gen.SCORE_COLUMNS)}
REF = '{"name": "Ann", "age": 31, "city": "Oslo"}'


def _scores(refs, outs, match="auto", threshold=1.0, ended=None):
    ended = np.ones(len(refs), dtype=bool) if ended is None else ended
    return score_generations(refs, outs, ended, match=match, threshold=threshold)


def test_exact_match_collapses_whitespace_keeps_case_and_compares_json_objects():
    assert gen.exact_match("Paris is  big", "  Paris is\nbig \t") == 1.0
    assert gen.exact_match("Paris", "paris") == 0.0
    assert gen.exact_match("Paris.", "Paris") == 0.0
    assert gen.exact_match('{"a": 1, "b": [1, 2]}', '{"b":[1,2],   "a":1.0}') == 1.0  # key order, spacing, 1 == 1.0
    assert gen.exact_match('{"a": true}', '{"a": 1}') == 0.0  # true is not 1
    assert gen.exact_match('{"a": [1, 2]}', '{"a": [2, 1]}') == 0.0
    assert gen.exact_match('{"a": 1}', '{"a": 1} trailing text') == 0.0


def test_token_f1_is_squad_f1():
    # reference tokens [cat, sat, on, mat] (articles and "." dropped), answer [cat, sat, on, hat]: 3 shared
    assert gen.token_f1("The cat sat on the mat.", "a cat sat on a hat") == pytest.approx(0.75)
    # P = 2/2, R = 2/3 -> F1 = 2 * 1 * 2/3 / (1 + 2/3) = 0.8
    assert gen.token_f1("New York City", "new york") == pytest.approx(0.8)
    # repeated tokens count as often as both have them: ref [x, x, y], out [x, y, y] -> 2 shared, P = R = 2/3
    assert gen.token_f1("x x y", "x y y") == pytest.approx(2 / 3)
    assert gen.token_f1("", "") == 1.0 and gen.token_f1("the", "") == 1.0  # only an article: both empty
    assert gen.token_f1("cat", "") == 0.0 and gen.token_f1("cat", "dog") == 0.0


def test_rouge_l_on_lin_2004_examples():
    # Lin (2004), section 3.1: LCS("police killed the gunman", "police kill the gunman") = 3 of 4 words
    assert gen.rouge_l("police killed the gunman", "police kill the gunman") == pytest.approx(0.75)
    # "the gunman kill police": LCS = "the gunman" = 2 of 4 -> 0.5
    assert gen.rouge_l("police killed the gunman", "the gunman kill police") == pytest.approx(0.5)
    # lengths differ: LCS 3, P = 3/3, R = 3/5 -> F = 2 * 0.6 / 1.6 = 0.75; case and punctuation do not count
    assert gen.rouge_l("A b, C d e", "a c e!") == pytest.approx(0.75)
    assert gen.rouge_l("", "") == 1.0 and gen.rouge_l("a", "") == 0.0 and gen.rouge_l("a b", "c d") == 0.0


def _lcs_table(a, b):
    t = np.zeros((len(a) + 1, len(b) + 1), dtype=int)
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            t[i + 1, j + 1] = t[i, j] + 1 if x == y else max(t[i, j + 1], t[i + 1, j])
    return int(t[-1, -1])


def test_bit_parallel_lcs_matches_the_table():
    rng = np.random.default_rng(0)
    for _ in range(300):
        a = list(rng.choice(list("abcde"), rng.integers(0, 25)))
        b = list(rng.choice(list("abcde"), rng.integers(0, 80)))
        assert gen.lcs_length(a, b) == _lcs_table(a, b)


def test_field_match_with_missing_extra_wrong_and_invalid_answers():
    outs = [
        '{"city": "Oslo", "age": 31, "name": "Ann"}',  # same object, other order
        '{"name": "Ann", "age": 31}',  # city missing
        '{"name": "Ann", "age": 31, "city": "Oslo", "zip": "0150"}',  # an extra field
        '{"name": "Ann", "age": "31", "city": "Oslo"}',  # age wrong (a string)
        '{"name": "Ann", "age": 31,',  # not JSON
        '```json\n{"name": "Ann", "age": 31, "city": "Oslo"}\n```',  # fenced: not one JSON object
    ]
    s = _scores([REF] * 6, outs, match="field")
    np.testing.assert_allclose(s[:, COL["field_match"]], [1, 2 / 3, 1, 2 / 3, 0, 0])
    np.testing.assert_allclose(s[:, COL["exact_match"]], [1, 0, 0, 0, 0, 0])
    np.testing.assert_allclose(s[:, COL["json_valid"]], [1, 1, 1, 1, 0, 0])
    np.testing.assert_allclose(s[:, COL["right"]], [1, 0, 1, 0, 0, 0])  # field_match >= 1
    loose = _scores([REF] * 6, outs, match="field", threshold=0.6)
    np.testing.assert_allclose(loose[:, COL["right"]], [1, 1, 1, 1, 0, 0])  # 2/3 >= 0.6
    strict = _scores([REF] * 6, outs, match="exact")
    np.testing.assert_allclose(strict[:, COL["right"]], [1, 0, 0, 0, 0, 0])


def test_free_text_references_score_field_match_as_exact_and_json_valid_as_one():
    s = _scores(["Paris", "Rome"], ["Paris", "{not json"])
    np.testing.assert_allclose(s[:, COL["exact_match"]], [1, 0])
    np.testing.assert_allclose(s[:, COL["field_match"]], s[:, COL["exact_match"]])
    np.testing.assert_allclose(s[:, COL["json_valid"]], [1, 1])


def test_right_is_the_match_score_against_the_threshold_and_ended_is_passed_through():
    refs, outs = ["New York City", "New York City"], ["new york", "Boston"]
    ended = np.array([True, False])
    s = _scores(refs, outs, match="token_f1", threshold=0.8, ended=ended)  # F1 = 0.8 exactly: right
    np.testing.assert_allclose(s[:, COL["right"]], [1, 0])
    np.testing.assert_allclose(s[:, COL["ended"]], [1, 0])
    assert _scores(refs, outs, match="token_f1", threshold=0.81)[0, COL["right"]] == 0
    assert _scores(refs, outs, match="rouge_l", threshold=0.8)[0, COL["right"]] == 1  # ROUGE-L 0.8 too
    assert _scores(refs, outs, match="exact")[0, COL["right"]] == 0
    assert s.shape == (2, 7) and s.dtype == float


def test_match_kind_reads_nearly_all_json_references_as_fields():
    assert match_kind([REF] * 10, "auto") == "field"
    assert match_kind([REF] * 9 + ["free text"], "auto") == "field"  # 90% JSON objects
    assert match_kind([REF] * 8 + ["a", "b"], "auto") == "exact"
    assert match_kind(["[1, 2]", '"x"'], "auto") == "exact"  # JSON, but not objects
    assert match_kind([], "auto") == "exact"
    assert match_kind([REF], "token_f1") == "token_f1"


def test_field_scores_mark_rows_without_the_field_as_nan():
    refs = [REF, '{"name": "Bo"}', "free text"]
    outs = ['{"name": "Ann", "age": 30, "city": "Oslo"}', "nonsense", '{"name": "x"}']
    table = field_scores(refs, outs)
    assert list(table) == ["name", "age", "city"]
    np.testing.assert_equal(table["name"], [1.0, 0.0, np.nan])
    np.testing.assert_equal(table["age"], [0.0, np.nan, np.nan])
    np.testing.assert_equal(table["city"], [1.0, np.nan, np.nan])


def test_bad_inputs_raise_with_what_was_expected():
    with pytest.raises(DataError, match="expected 2 generated answers"):
        _scores(["a", "b"], ["a"])
    with pytest.raises(DataError, match="shape \\[2\\]"):
        score_generations(["a", "b"], ["a", "b"], np.ones(3, bool), match="exact", threshold=1.0)
    with pytest.raises(ConfigError, match="generation match must be one of"):
        _scores(["a"], ["a"], match="bleu")
    with pytest.raises(DataError, match="must be strings"):
        _scores(["a"], [None])
    with pytest.raises(DataError, match="'completion' column"):
        evaluate_generations(pd.DataFrame({"text": ["x"]}), ["x"], np.ones(1, bool), CFG)


def _prompt(i: int) -> str:
    return json.dumps([{"role": "system", "content": "Answer in JSON."}, {"role": "user", "content": f"Who is {i}?"}])


def _json_rows(n=10):
    refs = [json.dumps({"name": f"P{i}", "age": 20 + i, "city": "Oslo"}) for i in range(n)]
    frame = pd.DataFrame(
        {
            "text": [f"Who is {i}?" + "!" * (15 * (i % 2)) for i in range(n)],  # 10 or 25 characters
            "prompt": [_prompt(i) for i in range(n)],
            "completion": refs,
            "slice:source": ["web", "app"] * (n // 2),
        }
    )
    outs = list(refs)
    outs[1] = json.dumps({"name": "P1", "age": 99, "city": "Oslo"})  # 2/3
    outs[2] = json.dumps({"name": "P2"})  # 1/3
    outs[3] = "I do not know"  # 0, not JSON
    ended = np.ones(n, dtype=bool)
    ended[3] = False
    return frame, outs, ended


def test_evaluate_generations_headline_slices_fields_and_errors():
    frame, outs, ended = _json_rows()
    r = evaluate_generations(frame, outs, ended, CFG, seed=4)
    assert r.task == "text-generation" and r.labels == [] and r.n == 10
    assert r.confusion is None and r.calibration is None and r.thresholds is None
    assert r.predicted == outs
    assert r.settings["match"] == "field" and r.settings["threshold"] == 1.0 and r.settings["max_new_tokens"] == 128
    h = r.headline
    assert h["accuracy"] == pytest.approx(0.7) and h["exact_match"] == pytest.approx(0.7)
    assert h["field_match"] == pytest.approx((7 + 2 / 3 + 1 / 3) / 10)
    assert h["json_valid"] == pytest.approx(0.9) and h["eos_rate"] == pytest.approx(0.9)
    assert set(h) == set(gen.GENERATION_METRICS)
    for name, value in h.items():
        lo, hi = r.intervals[name]
        assert lo - 1e-12 <= value <= hi + 1e-12, name
    # rows 1 (app), 2 (web), 3 (app) are wrong
    assert r.per_slice["source"]["web"]["n"] == 5 and r.per_slice["source"]["web"]["accuracy"] == pytest.approx(0.8)
    assert r.per_slice["source"]["app"]["accuracy"] == pytest.approx(0.6)
    assert r.per_slice["length_chars"]["<=20"]["n"] == 5 and r.per_slice["length_chars"][">20"]["n"] == 5
    assert r.per_class == {
        "name": {"accuracy": pytest.approx(0.9), "n": 10},
        "age": {"accuracy": pytest.approx(0.7), "n": 10},
        "city": {"accuracy": pytest.approx(0.8), "n": 10},
    }
    assert [e["index"] for e in r.errors] == [3, 2, 1]  # lowest field score first
    worst = r.errors[0]
    assert worst == {
        "index": 3,
        "prompt": "system: Answer in JSON.\nuser: Who is 3?",
        "reference": frame["completion"][3],
        "output": "I do not know",
        "score": 0.0,
        "ended": False,
    }


def test_headline_interval_is_the_percentile_of_resampled_right_rates():
    frame, outs, ended = _json_rows()
    r = evaluate_generations(frame, outs, ended, CFG, seed=4)
    right = np.array([1, 0, 0, 0, 1, 1, 1, 1, 1, 1], dtype=float)
    rates = right[resample_indices(10, CFG.bootstrap, 4)].mean(axis=1)
    assert r.intervals["accuracy"] == pytest.approx(tuple(np.percentile(rates, [2.5, 97.5])))


def test_free_text_evaluation_has_no_field_table():
    frame = pd.DataFrame({"text": ["q1", "q2"], "prompt": ["[]", "[]"], "completion": ["Paris", "Rome"]})
    r = evaluate_generations(frame, ["Paris", "Milan"], np.ones(2, bool), EvaluateConfig(bootstrap=50))
    assert r.settings["match"] == "exact" and r.per_class == {}
    assert r.headline["accuracy"] == 0.5 and r.headline["json_valid"] == 1.0
    assert r.errors[0]["output"] == "Milan"


def test_report_renders_generation_headline_fields_and_examples(tmp_path):
    frame, outs, ended = _json_rows()
    frame.loc[3, "prompt"] = json.dumps([{"role": "user", "content": "Is <b>3</b> & co here?"}])
    r = evaluate_generations(frame, outs, ended, CFG)
    html = write_evaluation_report(r, tmp_path / "ev").read_text()
    assert "Per field" in html and "Largest errors" in html and "Slice: source" in html
    assert "user: Is &lt;b&gt;3&lt;/b&gt; &amp; co here?" in html  # the prompt, escaped
    assert "I do not know" in html and "Who is 2?" in html
    assert "Reliability" not in html and "Confusion" not in html and "Calibration" not in html
    data = json.loads((tmp_path / "ev" / "evaluation.json").read_text())
    assert data["task"] == "text-generation" and data["headline"]["accuracy"] == pytest.approx(0.7)
    assert data["errors"][0]["output"] == "I do not know"
