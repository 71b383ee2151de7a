"""Quality checks on crafted rows: duplicates, conflicts, near-duplicates, label distribution and leakage are
counted exactly, and every check honours the one QualityCheck contract."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from keepfit.config import KeepfitConfig
from keepfit.data.quality import (
    QUALITY_CHECKS,
    ConflictingLabels,
    ExactDuplicates,
    Finding,
    LabelDistribution,
    Leakage,
    NearDuplicates,
    QualityCheck,
    aggressive_key,
    check_leakage,
    run_quality,
)
from keepfit.data.validate import QUARANTINE_COLUMNS
from keepfit.errors import DataError


def _cfg(**raw: object) -> KeepfitConfig:
    return KeepfitConfig.model_validate(raw)


def _frame(rows: list[tuple], split: list[str] | None = None) -> pd.DataFrame:
    """Canonical single-label rows from (text, label) pairs; row numbers start at 2 (line after the
    header)."""
    frame = pd.DataFrame(
        {
            "row": np.arange(2, len(rows) + 2),
            "source": "t.csv",
            "text": [r[0] for r in rows],
            "label": [r[1] for r in rows],
        }
    )
    if split is not None:
        frame["split"] = split
    return frame


ROWS = [
    ("i want a refund for my order", "refund"),  # row 2
    ("where is my parcel", "status"),  # row 3
    ("where is my parcel", "status"),  # row 4: exact duplicate of 3
    ("cancel my order now", "cancel"),  # row 5
    ("where is my parcel", "status"),  # row 6: exact duplicate of 3
    ("my card was stolen", "card"),  # row 7
    ("my card was stolen", "refund"),  # row 8: conflict with 7
    ("i want a refund for my order please", "refund"),  # row 9: near-duplicate of 2 (Jaccard 6/7)
    ("cancel my order now", "cancel"),  # row 10: exact duplicate of 5
    ("my card was stolen", "card"),  # row 11: conflict group (7, 8, 11)
    ("completely different words here", "other"),  # row 12
]


def test_conflicting_labels_flags_every_copy():
    f = ConflictingLabels().run(_frame(ROWS), _cfg())
    assert f.count == 3
    assert sorted(_frame(ROWS)["row"].to_numpy()[f.flagged]) == [7, 8, 11]
    assert f.details["texts"] == 1
    assert f.reason == "conflicting_labels"
    assert "'card', 'refund'" in f.flag_detail[0]


def test_exact_duplicates_keep_the_first_copy_and_name_it():
    f = ExactDuplicates().run(_frame(ROWS), _cfg())
    rows = _frame(ROWS)["row"].to_numpy()[f.flagged]
    # rows 4, 6 copy 3; 10 copies 5; 11 copies 7 (same text, same label)
    assert sorted(rows) == [4, 6, 10, 11]
    assert dict(zip(rows, f.flag_detail, strict=True))[6] == "same as row 3"
    assert f.details["texts"] == 3


def test_run_quality_drops_conflicts_then_duplicates_and_loses_nothing():
    frame = _frame(ROWS)
    out = run_quality(frame, _cfg())
    assert len(out.kept) + len(out.quarantine) == len(frame)
    assert list(out.quarantine.columns) == QUARANTINE_COLUMNS
    reasons = out.quarantine.groupby("reason")["row"].apply(sorted).to_dict()
    assert reasons == {"conflicting_labels": [7, 8, 11], "duplicate": [4, 6, 10]}
    detail = out.quarantine.set_index("row").loc[10, "detail"]
    assert detail == "same as row 5"
    kinds = [f.kind for f in out.findings]
    assert kinds == ["conflicting_duplicates", "exact_duplicates", "near_duplicates", "label_distribution"]
    near = out.findings[2]
    assert near.count == 1 and near.action == "keep" and near.details["method"] == "minhash"
    assert near.examples[0]["row"] == 9 and near.examples[0]["similar_to_row"] == 2


def test_near_duplicates_drop_when_configured():
    out = run_quality(_frame(ROWS), _cfg(quality={"near_duplicates": "drop"}))
    near = out.quarantine[out.quarantine["reason"] == "near_duplicate"]
    assert near["row"].tolist() == [9]
    assert "row 2" in near["detail"].iat[0]


def test_near_duplicate_fallback_uses_the_normalised_key_above_the_limit():
    rows = [
        ("Refund, please!!", "r"),
        ("refund please", "r"),
        ("Order 123 status", "s"),
        ("order 456 status", "s"),
        ("refund please", "r"),
        ("nothing alike", "x"),
    ]
    f = NearDuplicates().run(_frame(rows), _cfg(quality={"near_duplicate_max_rows": 3}))
    assert f.details["method"] == "normalised_key"
    # row 3 ~ row 2, row 5 ~ row 4; row 6 is an exact copy of row 3 (not a near-duplicate)
    assert sorted(_frame(rows)["row"].to_numpy()[f.flagged]) == [3, 5]
    assert "normalised" in f.summary
    assert list(aggressive_key(pd.Series(["  A-b, 12 c!"]))) == ["a b c"]


def test_fail_action_raises_with_counts_and_examples():
    with pytest.raises(DataError) as err:
        run_quality(
            _frame(ROWS), _cfg(quality={"exact_duplicates": "fail", "conflicting_duplicates": "keep"})
        )
    message = str(err.value)
    assert "exact_duplicates" in message and "found 4" in message and "row 4" in message


def test_keep_action_keeps_every_row():
    cfg = _cfg(quality={"exact_duplicates": "keep", "conflicting_duplicates": "keep"})
    out = run_quality(_frame(ROWS), cfg)
    assert len(out.kept) == len(ROWS) and len(out.quarantine) == 0
    assert out.findings[0].count == 3 and out.findings[1].count == 4


def test_duplicates_are_looked_for_within_a_given_split_only():
    rows = [("same text", "a"), ("same text", "a"), ("other", "b")]
    f = ExactDuplicates().run(_frame(rows, split=["train", "test", "train"]), _cfg())
    assert f.count == 0  # across splits this is leakage, not a duplicate


def test_label_distribution_counts_ratio_and_small_labels():
    rows = [(f"t{i}", "big") for i in range(10)] + [("s1", "small")] + [(f"m{i}", "mid") for i in range(3)]
    f = LabelDistribution().run(
        _frame(rows), _cfg(labels=["big", "small", "mid", "absent"], quality={"imbalance_warn_ratio": 5})
    )
    assert f.details["counts"] == {"big": 10, "mid": 3, "small": 1, "absent": 0}
    assert f.details["ratio"] == 10.0 and f.details["imbalanced"] is True
    assert f.details["below_minimum"] == {"small": 1, "absent": 0}
    assert f.count == 2 and f.action == "report"


def test_multilabel_and_regression_conflicts():
    ml = pd.DataFrame(
        {"row": [2, 3, 4], "source": "m", "text": ["x", "x", "y"], "labels": [["a", "b"], ["b", "a"], ["a"]]}
    )
    assert ConflictingLabels().run(ml, _cfg(task="multi-label")).count == 0  # same set, other order
    assert ExactDuplicates().run(ml, _cfg(task="multi-label")).count == 1
    reg = pd.DataFrame({"row": [2, 3, 4], "source": "r", "text": ["x", "x", "x"], "target": [1.0, 2.0, 1.0]})
    cfg = _cfg(task="regression", data={"target_column": "y"})
    assert ConflictingLabels().run(reg, cfg).count == 3
    assert LabelDistribution().run(reg, cfg).details["quantiles"]["max"] == 2.0


def test_leakage_flags_the_training_side_only():
    rows = [
        ("shared exact text", "a"),
        ("shared exact text", "a"),  # train 2 / test 3
        ("i want a refund for my order please", "r"),
        ("i want a refund for my order", "r"),  # train / test
        ("val and test share this", "v"),
        ("val and test share this", "v"),  # validation / test
        ("unique train row", "u"),
        ("unique test row", "u"),
    ]
    split = ["train", "test", "train", "test", "validation", "test", "train", "test"]
    frame = _frame(rows, split)
    f = Leakage().run(frame, _cfg())
    flagged_rows = sorted(frame["row"].to_numpy()[f.flagged])
    assert flagged_rows == [2, 4, 6]
    assert f.details["exact"] == 2 and f.details["near"] == 1
    out = check_leakage(frame, _cfg())
    assert sorted(out.quarantine["row"]) == [2, 4, 6]
    assert (out.kept["split"] == "validation").sum() == 0  # the only validation row leaked into test
    assert (out.kept["split"] == "test").sum() == 4  # nothing removed from test
    detail = out.quarantine.set_index("row").loc[2, "detail"]
    assert detail == "same text as test row 3"


def test_leakage_with_the_cheap_method():
    rows = [("Refund please!", "r"), ("refund please", "r"), ("x y z", "q")]
    frame = _frame(rows, ["train", "test", "train"])
    f = Leakage().run(frame, _cfg(quality={"near_duplicate_max_rows": 1}))
    assert f.count == 1 and f.details == {"exact": 0, "near": 1, "method": "normalised_key"}


CHECKS = list(QUALITY_CHECKS) + [Leakage()]


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.name)
@pytest.mark.parametrize(
    "frame",
    [_frame(ROWS), _frame(ROWS, ["train", "test"] * 5 + ["validation"]), _frame([])],
    ids=["plain", "split", "empty"],
)
def test_every_quality_check_honours_the_contract(check, frame):
    assert isinstance(check, QualityCheck)
    finding = check.run(frame, _cfg())
    assert isinstance(finding, Finding)
    assert finding.kind == check.name
    assert finding.count >= 0 and finding.action in {"drop", "keep", "fail", "report"}
    assert len(finding.flagged) == len(finding.flag_detail)
    assert len(finding.flagged) <= len(frame)
    assert all(0 <= p < len(frame) for p in finding.flagged)
    assert len(set(finding.flagged.tolist())) == len(finding.flagged)
    assert len(finding.examples) <= 5
    if finding.action != "report":
        assert finding.count == len(finding.flagged) and finding.reason
    json.dumps(finding.to_dict())
    # the check does not modify its input
    assert check.run(frame, _cfg()).count == finding.count


@pytest.mark.parametrize("max_rows", [1, 200_000], ids=["normalised_key", "minhash"])
def test_check_files_gives_the_same_counts_with_either_near_duplicate_method(tmp_path, max_rows):
    from keepfit.data import check_files

    rows = [
        ("Where is my parcel?", "s"),
        ("where is my parcel", "s"),
        ("Where is my parcel?", "s"),
        ("card stolen", "c"),
        ("card stolen", "r"),
    ] + [(f"filler text number {w}", "f") for w in "abcdefghij"]
    pd.DataFrame(rows, columns=["text", "label"]).to_csv(tmp_path / "d.csv", index=False)
    cfg = _cfg(quality={"near_duplicate_max_rows": max_rows})
    result = check_files(tmp_path / "d.csv", cfg, split=True)
    assert result.report["found_counts"]["exact_duplicates"] == 1
    assert result.report["found_counts"]["conflicting_duplicates"] == 2
    near = result.finding("near_duplicates")
    assert near.details["method"] == ("normalised_key" if max_rows == 1 else "minhash")
    assert near.count == 1  # "where is my parcel" vs "Where is my parcel?": the same words
    assert not any(c.startswith("_") for c in result.kept.columns)
    assert result.n_in == len(result.kept) + len(result.quarantine) == 15


def test_minhash_signatures_estimate_jaccard_and_lsh_finds_close_pairs():
    from keepfit.data.quality import _shingles, minhash_signatures

    base = [" ".join(f"w{i}x{j}" for j in range(20)) for i in range(60)]
    close = [t + " extra" for t in base]  # 19 of 20 bigrams shared: Jaccard 19/21 = 0.905
    far = [" ".join(t.split()[:10]) + " other words here" for t in base]  # Jaccard well under 0.5
    sets = [_shingles(t) for t in base + close]
    sig = minhash_signatures(sets)
    assert sig.shape == (120, 60) and sig.dtype == np.uint32
    estimate = (sig[:60] == sig[60:]).mean()
    assert abs(estimate - 19 / 21) < 0.05
    frame = _frame([(t, "a") for t in base + close + far])
    f = NearDuplicates().run(frame, _cfg())
    flagged = sorted(frame["row"].to_numpy()[f.flagged] - 2)
    assert flagged == list(range(60, 120))  # every close copy, none of the far ones
    assert all(e["similarity"] >= 0.85 for e in f.examples)
