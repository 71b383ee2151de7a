"""Diff of two crafted snapshots with known added, removed and relabelled rows and a planted label shift."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from keepfit.config import KeepfitConfig
from keepfit.data.diff import diff_renderable, diff_snapshots, diff_to_json
from keepfit.data.snapshot import create_snapshot
from keepfit.store import Store


def _frame(texts: list[str], labels: list[str]) -> pd.DataFrame:
    n = len(texts)
    return pd.DataFrame(
        {
            "row": np.arange(2, n + 2),
            "source": "f.csv",
            "text": texts,
            "label": labels,
            "split": (["train", "train", "validation", "test"] * n)[:n],
        }
    )


def _pair(tmp_path):
    store = Store.at(tmp_path / "store")
    texts_a = [f"ticket {i}" for i in range(40)]
    labels_a = ["old"] * 4 + ["a"] * 18 + ["b"] * 18
    a = create_snapshot(_frame(texts_a, labels_a), quarantine=None, config=KeepfitConfig(), store=store)
    # B: drop the 4 'old' rows, relabel 3 rows a -> b, add 10 rows of a new label 'c' with longer texts
    texts_b = texts_a[4:] + [f"a much longer new ticket about something else entirely {i}" for i in range(10)]
    labels_b = ["b"] * 3 + labels_a[7:] + ["c"] * 10
    b = create_snapshot(_frame(texts_b, labels_b), quarantine=None, config=KeepfitConfig(), store=store)
    return a, b


def test_diff_counts_rows_labels_and_shifts(tmp_path):
    a, b = _pair(tmp_path)
    d = diff_snapshots(a, b)
    assert (d.rows_a, d.rows_b) == (40, 46)
    assert (d.added, d.removed, d.relabelled, d.unchanged) == (10, 4, 3, 33)
    assert d.labels_new == ["c"] and d.labels_vanished == ["old"]
    assert {e["text"] for e in d.relabelled_examples} == {"ticket 4", "ticket 5", "ticket 6"}
    assert all(e["old"] == "a" and e["new"] == "b" for e in d.relabelled_examples)
    shift = {r["label"]: r for r in d.label_shift}
    assert shift["c"]["share_a"] == 0 and abs(shift["c"]["share_b"] - 10 / 46) < 1e-9
    assert d.label_shift[0]["label"] == "c"  # the largest change first
    assert d.label_test["chi2_p"] < 0.01 and 0 < d.label_test["js_distance"] <= 1
    assert d.length_test["mean_chars_b"] > d.length_test["mean_chars_a"]
    # every added text is longer than every old one, so the KS statistic is exactly their share of B
    assert abs(d.length_test["ks"] - 10 / 46) < 1e-9
    assert json.loads(diff_to_json(d))["added"] == 10


def test_same_snapshot_has_no_differences(tmp_path):
    a, _ = _pair(tmp_path)
    d = diff_snapshots(a, a)
    assert (d.added, d.removed, d.relabelled) == (0, 0, 0) and d.label_test["js_distance"] == 0


def test_diff_renderable_shows_the_counts(tmp_path):
    from rich.console import Console

    a, b = _pair(tmp_path)
    console = Console(record=True, width=120)
    console.print(diff_renderable(diff_snapshots(a, b)))
    text = console.export_text()
    assert "relabelled" in text and "new labels: c" in text and "vanished labels: old" in text
