from pathlib import Path

import pandas as pd

from keepfit.data.merge import merge_new_rows, replay_sample
from keepfit.types import Snapshot


def _frame(texts, labels, start=2, source="week1.csv"):
    return pd.DataFrame(
        {"row": range(start, start + len(texts)), "source": source, "text": texts, "label": labels}
    )


def _snapshot():
    return Snapshot(
        id="a" * 64,
        path=Path("."),
        task="single-label",
        labels=["billing", "refund"],
        train=_frame(["pay bill", "get refund", "money back"], ["billing", "refund", "refund"]),
        validation=_frame(["invoice please"], ["billing"], start=10),
        test=_frame(["refund status"], ["refund"], start=20),
        quarantine=pd.DataFrame(),
    )


def test_new_rows_are_deduplicated_and_relabels_applied_where_they_live():
    old = _snapshot()
    new = _frame(
        ["pay bill", "refund status", "cancel card", "lost card"],
        ["billing", "billing", "cancel", "cancel"],
        source="week2.csv",
    )
    merged = merge_new_rows(old, new, apply_relabels=True)
    assert merged.new_rows["text"].tolist() == ["cancel card", "lost card"]
    assert merged.duplicates["reason"].tolist() == ["duplicate_of_earlier"]
    assert merged.duplicates["row"].tolist() == [2]
    assert merged.relabelled[["text", "split", "old", "new"]].values.tolist() == [
        ["refund status", "test", "refund", "billing"]
    ]
    assert merged.earlier["test"]["label"].tolist() == ["billing"]
    # the old snapshot is not modified in place
    assert old.test["label"].tolist() == ["refund"]
    # every new input row is accounted for
    assert len(merged.new_rows) + len(merged.duplicates) + len(merged.relabelled) == len(new)


def test_relabels_are_quarantined_by_default_and_the_earlier_test_set_is_untouched():
    old = _snapshot()
    new = _frame(["refund status", "pay bill"], ["billing", "billing"], source="week2.csv")
    merged = merge_new_rows(old, new)
    assert merged.duplicates["reason"].tolist() == ["conflicts_with_earlier", "duplicate_of_earlier"]
    assert "labelled refund, here billing" in merged.duplicates["detail"].iloc[0]
    assert merged.earlier["test"]["label"].tolist() == ["refund"]
    assert len(merged.new_rows) == 0


def test_replay_sample_is_stratified_seeded_and_keeps_every_label():
    train = _frame([f"t{i}" for i in range(100)], ["a"] * 90 + ["b"] * 9 + ["c"])
    sample = replay_sample(train, 20, "single-label", seed=1)
    counts = sample["label"].value_counts().to_dict()
    assert counts == {"a": 18, "b": 2, "c": 1}
    assert sample.equals(replay_sample(train, 20, "single-label", seed=1))
    assert len(replay_sample(train, 500, "single-label", seed=1)) == 100
    assert len(replay_sample(train, 0, "single-label", seed=1)) == 0


def test_boundary_replay_takes_half_of_each_quota_from_the_least_sure_rows():
    import numpy as np

    train = _frame([f"t{i}" for i in range(100)], ["a"] * 60 + ["b"] * 40)
    margins = np.linspace(1.0, 0.0, 100)  # within each label the later rows are nearer the boundary
    sample = replay_sample(train, 20, "single-label", seed=3, margins=margins)
    assert sample["label"].value_counts().to_dict() == {"a": 12, "b": 8}  # the quotas stay proportional
    a_rows = set(sample.loc[sample["label"] == "a", "text"])
    b_rows = set(sample.loc[sample["label"] == "b", "text"])
    assert {f"t{i}" for i in range(54, 60)} <= a_rows  # a's 6 least sure rows (half of 12)
    assert {f"t{i}" for i in range(96, 100)} <= b_rows  # b's 4 least sure rows (half of 8)
    random_part = replay_sample(train, 20, "single-label", seed=3)
    assert set(random_part["text"]) != set(sample["text"])
    only_near = replay_sample(train, 20, "single-label", seed=3, margins=margins, boundary_share=1.0)
    assert set(only_near["text"]) == {f"t{i}" for i in range(48, 60)} | {f"t{i}" for i in range(92, 100)}
