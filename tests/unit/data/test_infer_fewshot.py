"""`keepfit init` suggests train.strategy fewshot for a data set with few examples per label, and says why."""

from __future__ import annotations

import pandas as pd

from keepfit.config import load_config
from keepfit.data.infer import FEWSHOT_MAX_PER_LABEL, infer, write_config_file
from keepfit.train.testing import sentiment_frame

LABELS = ("neg", "pos", "neu")


def test_few_examples_per_label_suggest_fewshot_in_the_written_config(tmp_path):
    sentiment_frame(8 * len(LABELS), 0, LABELS).to_csv(tmp_path / "few.csv", index=False)
    found = infer(tmp_path / "few.csv")
    assert found.config.train.strategy == "fewshot" and found.config.model.pooling == "mean"
    (note,) = [n for n in found.notes if n.startswith("train.strategy")]
    assert "median of 8 rows per label" in note and f"at most {FEWSHOT_MAX_PER_LABEL}" in note
    written = write_config_file(found.config, found.notes, tmp_path / "keepfit.yaml")
    text = written.read_text()
    assert "  strategy: fewshot  # train.strategy: fewshot (a median of 8 rows" in text
    assert load_config(written).train.strategy == "fewshot"


def test_labels_with_enough_rows_keep_full_fine_tuning(tmp_path):
    rows = (FEWSHOT_MAX_PER_LABEL + 1) * len(LABELS)
    sentiment_frame(rows, 0, LABELS).to_csv(tmp_path / "more.csv", index=False)
    found = infer(tmp_path / "more.csv")
    assert found.config.train.strategy == "full"
    assert not [n for n in found.notes if n.startswith("train.strategy")]


def test_a_label_too_small_for_pairs_is_named_in_the_note(tmp_path):
    rows = pd.concat([sentiment_frame(10, 0), pd.DataFrame({"text": ["okay film"], "label": ["neu"]})])
    rows.to_csv(tmp_path / "rare.csv", index=False)
    found = infer(tmp_path / "rare.csv")
    (note,) = [n for n in found.notes if n.startswith("train.strategy")]
    assert found.config.train.strategy == "fewshot" and "1 label(s) have fewer than 3 rows" in note
