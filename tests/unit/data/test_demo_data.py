"""The demo data: the check finds exactly what was planted; week 2 brings a new intent; the task is
learnable."""

from __future__ import annotations

import pandas as pd

from keepfit.config import KeepfitConfig
from keepfit.data import check_data
from keepfit.data.demo_data import (
    INTENTS,
    NEW_INTENT,
    generate_demo_data,
    generate_next_week,
    write_demo_files,
)


def _cfg(store) -> KeepfitConfig:
    return KeepfitConfig.model_validate(
        {
            "store": str(store),
            "data": {"label_column": "intent", "group_column": "customer_id", "slice_columns": ["channel"]},
        }
    )


def test_generation_is_seeded_and_shaped():
    a, b = generate_demo_data(500, seed=3), generate_demo_data(500, seed=3)
    pd.testing.assert_frame_equal(a.frame, b.frame)
    assert not a.frame.equals(generate_demo_data(500, seed=4).frame)
    assert list(a.frame.columns) == ["text", "intent", "customer_id", "channel", "region"]
    assert len(a.frame) == 500 and len(INTENTS) >= 10
    assert set(a.frame["channel"]) == {"email", "chat", "phone"}
    assert a.frame["customer_id"].nunique() < len(a.frame)  # customers have several tickets


def test_the_check_finds_what_was_planted(tmp_path):
    files = write_demo_files(tmp_path / "data", small=True)
    result = check_data(files.week1, _cfg(tmp_path / "store"))
    found, planted = result.report["found_counts"], files.planted_week1
    for key in ("exact_duplicates", "conflicting_duplicates", "empty_text", "unknown_label", "missing_label"):
        assert found[key] == planted[key], key
    assert result.n_in == files.week1_rows == len(result.kept) + len(result.quarantine)
    unknown = result.quarantine[result.quarantine["reason"] == "unknown_label"]
    assert set(unknown["raw_label"].str.strip()) == {"Refund_Request"}


def test_next_week_has_a_new_intent_a_shift_and_repeats():
    week1 = generate_demo_data(2000, seed=0)
    week2 = generate_next_week(week1.frame, 600, seed=1)
    assert len(week2.frame) == 600 and week2.planted["new_intent"] == NEW_INTENT
    assert (week2.frame["intent"] == NEW_INTENT).sum() == week2.planted["new_intent_rows"] > 40
    nonempty = week2.frame[week2.frame["text"].str.strip() != ""]
    repeated = nonempty.merge(week1.frame, on="text", suffixes=("", "_1"))
    assert (repeated["intent"] == repeated["intent_1"]).sum() >= week2.planted["repeats_of_week1"]
    assert (repeated["intent"] != repeated["intent_1"]).sum() == week2.planted["relabelled_from_week1"]
    chat1 = (week1.frame["channel"] == "chat").mean()
    chat2 = (week2.frame["channel"] == "chat").mean()
    assert chat2 > chat1 + 0.15


def test_a_small_model_learns_it(tmp_path):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.svm import LinearSVC

    files = write_demo_files(tmp_path / "data")
    result = check_data(files.week1, _cfg(tmp_path / "store"), split=True)
    kept = result.kept
    train, test = kept[kept["split"] == "train"], kept[kept["split"] == "test"]
    vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
    model = LinearSVC().fit(vec.fit_transform(train["text"]), train["label"])
    accuracy = (model.predict(vec.transform(test["text"])) == test["label"]).mean()
    assert accuracy > 0.9
