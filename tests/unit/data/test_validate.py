"""Validation rules on crafted rows: every row kept or quarantined with the right reason."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from keepfit.config import KeepfitConfig
from keepfit.data.validate import QUARANTINE_COLUMNS, CheckedRows, load_and_validate, suggest_label
from keepfit.errors import DataError

BANKING = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "banking77" / "train.csv"


def _cfg(**raw: object) -> KeepfitConfig:
    return KeepfitConfig.model_validate(raw)


def _csv(tmp_path: Path, rows: list[dict], name: str = "d.csv") -> Path:
    p = tmp_path / name
    pd.DataFrame(rows).to_csv(p, index=False)
    return p


def _jsonl(tmp_path: Path, rows: list[dict], name: str = "d.jsonl") -> Path:
    p = tmp_path / name
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return p


def _reasons(checked: CheckedRows) -> dict[int, str]:
    assert checked.n_in == len(checked.kept) + len(checked.quarantine)
    assert list(checked.quarantine.columns) == QUARANTINE_COLUMNS
    return dict(zip(checked.quarantine["row"], checked.quarantine["reason"], strict=True))


def test_text_rules(tmp_path: Path):
    rows = [
        {"text": "fine", "label": "a"},
        {"text": "", "label": "a"},
        {"text": " \t\u00a0 ", "label": "a"},
        {"text": "x" * 30, "label": "a"},
        {"text": "  spaced   out\ttext ", "label": "a"},
    ]
    checked = load_and_validate(_csv(tmp_path, rows), _cfg(data={"max_chars": 20}))
    assert _reasons(checked) == {3: "empty_text", 4: "empty_text", 5: "too_long"}
    assert checked.kept["text"].tolist() == ["fine", "spaced out text"]
    too_long = checked.quarantine.set_index("row").loc[5]
    assert "30 characters" in too_long["detail"] and "data.max_chars=20" in too_long["detail"]
    assert too_long["raw_text"] == "x" * 30


def test_missing_labels_and_nan_tokens(tmp_path: Path):
    p = tmp_path / "d.csv"
    p.write_text("text,label\na,x\nb,\nc,NaN\nd,None\ne, x \n")
    checked = load_and_validate(p, _cfg())
    assert _reasons(checked) == {3: "missing_label", 4: "missing_label", 5: "missing_label"}
    assert checked.kept["label"].tolist() == ["x", "x"]  # the trailing space is trimmed, not a new label
    detail = checked.quarantine.set_index("row").loc[4, "detail"]
    assert '"NaN"' in detail and "labels:" in detail


def test_a_listed_none_label_is_a_real_class(tmp_path: Path):
    p = tmp_path / "d.csv"
    p.write_text("text,label\na,None\nb,spam\n")
    checked = load_and_validate(p, _cfg(labels=["None", "spam"]))
    assert checked.kept["label"].tolist() == ["None", "spam"]


def test_unknown_labels_with_did_you_mean(tmp_path: Path):
    rows = [
        {"text": f"t{i}", "label": lab} for i, lab in enumerate(["refund", "Refund", "refnud", "card", "zzz"])
    ]
    checked = load_and_validate(_csv(tmp_path, rows), _cfg(labels=["refund", "card"]))
    assert _reasons(checked) == {3: "unknown_label", 4: "unknown_label", 6: "unknown_label"}
    details = checked.quarantine.set_index("row")["detail"]
    assert 'did you mean "refund"?' in details[3]
    assert 'did you mean "refund"?' in details[4]
    assert "did you mean" not in details[6]
    assert checked.labels == ["refund", "card"]


def test_known_labels_argument_overrides_config(tmp_path: Path):
    rows = [{"text": "a", "label": "x"}, {"text": "b", "label": "y"}]
    checked = load_and_validate(_csv(tmp_path, rows), _cfg(), known_labels=["x"])
    assert _reasons(checked) == {3: "unknown_label"}
    assert checked.labels == ["x"]


def test_rare_case_variants_are_quarantined_common_ones_warned(tmp_path: Path):
    labels = ["refund"] * 20 + ["Refund "] + ["card"] * 10 + ["Card"] * 5
    rows = [{"text": f"t{i}", "label": lab} for i, lab in enumerate(labels)]
    checked = load_and_validate(_csv(tmp_path, rows), _cfg())
    reasons = _reasons(checked)
    assert reasons == {22: "unknown_label"}
    assert 'did you mean "refund"?' in checked.quarantine["detail"].iloc[0]
    assert checked.labels == ["Card", "card", "refund"]
    assert any('"card"' in w and '"Card"' in w for w in checked.warnings)


def test_suggest_label():
    known = ["card_arrival", "refund", "exchange_rate"]
    assert suggest_label("Card Arrival", known) == "card_arrival"
    assert suggest_label("exchange-rate", known) == "exchange_rate"
    assert suggest_label("refnud", known) == "refund"
    assert suggest_label("weather", known) is None


def test_regression_targets(tmp_path: Path):
    p = tmp_path / "d.csv"
    p.write_text('text,score\na,1.5\nb,abc\nc,nan\nd,inf\ne,\nf,"2,5"\ng,-3e2\nh,1e999\n')
    checked = load_and_validate(p, _cfg(task="regression", data={"target_column": "score"}))
    assert _reasons(checked) == {r: "bad_target" for r in (3, 4, 5, 6, 7, 9)}
    assert checked.kept["target"].tolist() == [1.5, -300.0]
    assert checked.kept["target"].dtype == "float64"
    details = checked.quarantine.set_index("row")["detail"]
    assert "NaN" in details[4] and "did you mean 2.5" in details[7] and "infinity" in details[9]
    assert checked.labels == []


def test_multilabel_separator_and_json(tmp_path: Path):
    p = tmp_path / "d.csv"
    p.write_text(
        'text,tags\na,x|y\nb," y | x |x"\nc,x||y\nd,"[""x"", ""z""]"\ne,"[1, {}]"\nf,\ng,[]\nh,"[broken"\n'
    )
    checked = load_and_validate(p, _cfg(task="multi-label", data={"label_column": "tags"}))
    assert _reasons(checked) == {
        4: "bad_multilabel",
        6: "bad_multilabel",
        7: "missing_label",
        9: "bad_multilabel",
    }
    assert checked.kept["labels"].tolist() == [["x", "y"], ["y", "x"], ["x", "z"], []]
    assert checked.labels == ["x", "y", "z"]


def test_multilabel_known_labels(tmp_path: Path):
    p = _jsonl(tmp_path, [{"text": "a", "labels": ["x", "Y"]}, {"text": "b", "labels": ["x"]}])
    checked = load_and_validate(
        p, _cfg(task="multi-label", labels=["x", "y"], data={"label_column": "labels"})
    )
    assert _reasons(checked) == {1: "unknown_label"}
    assert 'did you mean "y"?' in checked.quarantine["detail"].iloc[0]


def test_multilabel_from_label_columns(tmp_path: Path):
    p = tmp_path / "d.csv"
    p.write_text("text,toxic,spam\na,1,0\nb,0,0\nc,1,1\nd,2,0\ne,true,\n")
    checked = load_and_validate(
        p, _cfg(task="multi-label", data={"label_column": None, "label_columns": ["toxic", "spam"]})
    )
    assert _reasons(checked) == {5: "bad_multilabel", 6: "bad_multilabel"}
    assert checked.kept["labels"].tolist() == [["toxic"], [], ["toxic", "spam"]]
    assert "'toxic' holds 2" in checked.quarantine["detail"].iloc[0]


def test_wrong_types_from_json(tmp_path: Path):
    rows = [
        {"text": "ok", "label": "a"},
        {"text": 42, "label": "a"},
        {"text": "list label", "label": ["a", "b"]},
        {"text": "number label", "label": 7},
        {"text": {"nested": 1}, "label": "a"},
    ]
    checked = load_and_validate(_jsonl(tmp_path, rows), _cfg())
    assert _reasons(checked) == {2: "wrong_type", 3: "wrong_type", 5: "wrong_type"}
    assert checked.kept["label"].tolist() == ["a", "7"]
    assert "multi-label" in checked.quarantine.set_index("row").loc[3, "detail"]
    assert "a number (42)" in checked.quarantine.set_index("row").loc[2, "detail"]


def test_group_time_split_and_slice_columns(tmp_path: Path):
    rows = [
        {"text": "a", "label": "x", "cust": "c1", "ts": "2024-01-01", "fold": "train", "lang": "en"},
        {"text": "b", "label": "x", "cust": "c1", "ts": "2024-01-02", "fold": "VAL", "lang": None},
        {"text": "c", "label": "y", "cust": "c2", "ts": "2024-01-03", "fold": "holdout", "lang": "de"},
        {"text": "d", "label": "y", "cust": "c3", "ts": "2024-01-04", "fold": "test", "lang": "de"},
    ]
    cfg = _cfg(
        data={"group_column": "cust", "time_column": "ts", "split_column": "fold", "slice_columns": ["lang"]}
    )
    checked = load_and_validate(_csv(tmp_path, rows), cfg)
    assert _reasons(checked) == {4: "bad_split"}
    kept = checked.kept
    assert list(kept.columns) == ["row", "source", "text", "label", "group", "time", "split", "slice:lang"]
    assert kept["split"].tolist() == ["train", "validation", "test"]
    assert kept["slice:lang"].tolist() == ["en", "(missing)", "de"]
    assert kept["group"].tolist() == ["c1", "c1", "c3"]


def test_missing_configured_columns_are_listed_with_did_you_mean(tmp_path: Path):
    p = _csv(tmp_path, [{"Text": "a", "categroy": "x", "user": "u"}])
    with pytest.raises(DataError) as err:
        load_and_validate(p, _cfg(data={"label_column": "category", "group_column": "users"}))
    msg = str(err.value)
    assert "data.label_column is 'category'" in msg and "did you mean 'categroy'" in msg
    assert "data.group_column is 'users'" in msg and "did you mean 'user'" in msg
    assert "Columns found: ['Text', 'categroy', 'user']" in msg


def test_case_insensitive_column_match_warns(tmp_path: Path):
    checked = load_and_validate(_csv(tmp_path, [{"Text": "a", "Label": "x"}]), _cfg())
    assert checked.kept["text"].tolist() == ["a"]
    assert any("using 'Text'" in w for w in checked.warnings)


def test_prediction_files_may_lack_the_label(tmp_path: Path):
    p = _csv(tmp_path, [{"text": "a"}, {"text": ""}])
    checked = load_and_validate(p, _cfg(), require_answer=False)
    assert list(checked.kept.columns) == ["row", "source", "text"]
    assert _reasons(checked) == {3: "empty_text"}
    with pytest.raises(DataError, match="label_column"):
        load_and_validate(p, _cfg())


def test_kept_rows_use_the_canonical_dtypes(tmp_path: Path):
    checked = load_and_validate(
        _csv(tmp_path, [{"text": "a", "label": 1}, {"text": "b", "label": 2}]), _cfg()
    )
    assert checked.kept["row"].dtype == "int64"
    assert checked.kept["label"].tolist() == ["1", "2"]
    assert checked.source == "d.csv" and set(checked.kept["source"]) == {"d.csv"}
    assert checked.quarantine.empty and checked.quarantine["row"].dtype == "int64"


@pytest.mark.shared
def test_banking77_train_loads_whole():
    if not BANKING.exists():
        pytest.skip(
            f"shared data not found at {BANKING} (expected ../shared/data/banking77 next to the repo)"
        )
    checked = load_and_validate(BANKING, _cfg(data={"label_column": "category"}))
    assert checked.n_in == 10_003
    assert len(checked.kept) == 10_003 and checked.quarantine.empty
    assert len(checked.labels) == 77
    assert checked.kept["row"].is_monotonic_increasing
