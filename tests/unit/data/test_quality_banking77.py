"""The check on the real banking77 training set: its duplicates and conflicts, counted independently."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from keepfit.config import KeepfitConfig
from keepfit.data import check_data

BANKING = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "banking77" / "train.csv"

pytestmark = pytest.mark.skipif(
    not BANKING.exists(), reason=f"banking77 not found at {BANKING} (../shared/data)"
)


@pytest.mark.shared
def test_banking77_duplicates_and_conflicts_match_pandas():
    raw = pd.read_csv(BANKING, dtype=str, keep_default_na=False)
    # the same normalisation the loader applies to text: whitespace collapsed and trimmed
    text = raw["text"].str.replace(r"\s+", " ", regex=True).str.strip()
    frame = raw.assign(text=text)
    answers_per_text = frame.groupby("text")["category"].transform("nunique")
    conflict_rows = int((answers_per_text > 1).sum())
    clean = frame[answers_per_text == 1]
    exact_dups = int(clean.duplicated(["text", "category"]).sum())

    cfg = KeepfitConfig.model_validate({"data": {"text_column": "text", "label_column": "category"}})
    result = check_data(BANKING, cfg)
    found = result.report["found_counts"]
    assert found["conflicting_duplicates"] == conflict_rows
    assert found["exact_duplicates"] == exact_dups
    assert (conflict_rows, exact_dups) == (0, 4)  # what banking77's train.csv holds (10,003 rows)
    assert result.n_in == len(raw) == len(result.kept) + len(result.quarantine)
    assert result.report["label_counts"] and len(result.report["label_counts"]) == 77
