"""Snapshots: round trip, content hash (same data -> same id, in any row order), HEAD, and atomicity."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from keepfit.config import KeepfitConfig
from keepfit.data import snapshot as snapshot_module
from keepfit.data.snapshot import create_snapshot, list_snapshots, load_snapshot, resolve_snapshot_id
from keepfit.errors import DataError
from keepfit.store import Store


def _cfg(**raw: object) -> KeepfitConfig:
    return KeepfitConfig.model_validate(raw)


def _split_rows(n: int = 30, label_of=lambda i: "ab"[i % 2]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "row": np.arange(2, n + 2),
            "source": "d.csv",
            "text": [f"text {i}" for i in range(n)],
            "label": [label_of(i) for i in range(n)],
            "split": ["train"] * (n - 10) + ["validation"] * 5 + ["test"] * 5,
        }
    )


QUARANTINE = pd.DataFrame(
    {
        "row": [40, 41],
        "source": "d.csv",
        "reason": ["empty_text", "duplicate"],
        "detail": ["", "same as row 2"],
        "raw_text": ["", "text 0"],
        "raw_label": ["a", "a"],
    }
)


def test_round_trip_writes_every_file_and_reads_the_same_rows(tmp_path):
    store = Store.at(tmp_path / "store")
    frame = _split_rows()
    snap = create_snapshot(
        frame, quarantine=QUARANTINE, config=_cfg(), store=store, report={"n_in": 32}, sources=["d.csv"]
    )
    assert len(snap.id) == 64 and snap.path == store.snapshot(snap.id)
    for name in (
        "train.parquet",
        "validation.parquet",
        "test.parquet",
        "quarantine.parquet",
        "quarantine.csv",
        "report.json",
        "report.html",
        "meta.json",
    ):
        assert (snap.path / name).is_file(), name
    meta = json.loads((snap.path / "meta.json").read_text())
    assert meta["counts"] == {"train": 20, "validation": 5, "test": 5, "quarantine": 2}
    assert meta["labels"] == ["a", "b"] and meta["task"] == "single-label" and meta["sources"] == ["d.csv"]
    assert meta["parent"] is None and len(meta["config_hash"]) == 16
    assert pd.read_csv(snap.path / "quarantine.csv")["reason"].tolist() == ["empty_text", "duplicate"]
    loaded = load_snapshot(store, "HEAD")
    assert loaded.id == snap.id
    pd.testing.assert_frame_equal(
        loaded.train[["row", "text", "label"]].reset_index(drop=True),
        frame[frame["split"] == "train"][["row", "text", "label"]].reset_index(drop=True),
        check_dtype=False,
    )
    assert loaded.report["n_in"] == 32 and loaded.report["snapshot"] == snap.id
    assert store.head_file.read_text().strip() == snap.id


def test_same_content_in_any_order_gets_the_same_id_and_reuses_the_folder(tmp_path):
    store = Store.at(tmp_path / "store")
    frame = _split_rows()
    first = create_snapshot(frame, quarantine=QUARANTINE, config=_cfg(), store=store)
    marker = first.path / "meta.json"
    before = marker.stat().st_mtime_ns
    again = create_snapshot(
        frame.sample(frac=1.0, random_state=1), quarantine=QUARANTINE.iloc[::-1], config=_cfg(), store=store
    )
    assert again.id == first.id and marker.stat().st_mtime_ns == before
    as_dict = {s: frame[frame["split"] == s] for s in ("train", "validation", "test")}
    assert create_snapshot(as_dict, quarantine=QUARANTINE, config=_cfg(), store=store).id == first.id
    assert len(list_snapshots(store)) == 1


def test_changed_content_gets_a_new_id_with_the_old_one_as_parent(tmp_path):
    store = Store.at(tmp_path / "store")
    first = create_snapshot(_split_rows(), quarantine=None, config=_cfg(), store=store)
    relabelled = _split_rows(label_of=lambda i: "b" if i == 2 else "ab"[i % 2])
    second = create_snapshot(relabelled, quarantine=None, config=_cfg(), store=store)
    assert second.id != first.id and second.parent == first.id
    assert resolve_snapshot_id(store, "HEAD~1") == first.id
    assert resolve_snapshot_id(store, first.id[:8]) == first.id
    assert [i.id for i in list_snapshots(store)] == sorted(
        [first.id, second.id], key=lambda i: (i != first.id, i)
    )
    with pytest.raises(DataError, match="no parent"):
        resolve_snapshot_id(store, "HEAD~2")
    with pytest.raises(DataError, match="No snapshot"):
        resolve_snapshot_id(store, "ffffffffffff0")


def test_a_crash_while_writing_leaves_no_folder_and_head_untouched(tmp_path, monkeypatch):
    store = Store.at(tmp_path / "store")
    first = create_snapshot(_split_rows(), quarantine=None, config=_cfg(), store=store)
    calls = {"n": 0}
    real = snapshot_module._write_parquet

    def crash_on_third(frame, path):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("killed mid-write")
        real(frame, path)

    monkeypatch.setattr(snapshot_module, "_write_parquet", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        create_snapshot(_split_rows(40), quarantine=None, config=_cfg(), store=store)
    assert calls["n"] == 3
    assert {p.name for p in store.snapshots.iterdir()} == {"HEAD", first.id}  # no temp folder left
    assert store.head_file.read_text().strip() == first.id


def test_multilabel_lists_survive_the_round_trip(tmp_path):
    store = Store.at(tmp_path / "store")
    frame = pd.DataFrame(
        {
            "row": [2, 3, 4],
            "source": "m",
            "text": ["a", "b", "c"],
            "labels": [["x", "y"], ["y"], []],
            "split": ["train", "validation", "test"],
        }
    )
    snap = create_snapshot(frame, quarantine=None, config=_cfg(task="multi-label"), store=store)
    assert snap.labels == ["x", "y"]
    assert snap.train["labels"].iat[0] == ["x", "y"] and isinstance(snap.train["labels"].iat[0], list)


def test_an_empty_store_says_what_to_do(tmp_path):
    with pytest.raises(DataError, match="keepfit data snapshot"):
        load_snapshot(Store.at(tmp_path / "nothing"), "HEAD")
