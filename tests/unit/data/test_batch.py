"""A batch on its way into the history: nothing lost, HEAD untouched until trainable, pending relabels applied,
leakage into earlier splits kept out, relabels reported with the setting that applies them."""

from __future__ import annotations

import pandas as pd
import pytest

from keepfit.config import KeepfitConfig
from keepfit.data import create_snapshot, load_snapshot
from keepfit.data.batch import merge_batch, snapshot_batch
from keepfit.errors import DataError
from keepfit.store import Store

WORDS = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa".split()


def _text(i: int) -> str:
    return f"{WORDS[i % 16]} {WORDS[(i // 16) % 16]} {WORDS[(i * 7) % 16]} request number {i}"


def _frames(start: int, n: int) -> dict[str, pd.DataFrame]:
    rows = pd.DataFrame({
        "row": range(2, n + 2), "source": "week1.csv",
        "text": [_text(i) for i in range(start, start + n)], "label": ["a" if i % 2 else "b" for i in range(n)],
    })
    cut1, cut2 = int(n * 0.7), int(n * 0.85)
    return {"train": rows[:cut1], "validation": rows[cut1:cut2], "test": rows[cut2:]}


@pytest.fixture()
def project(tmp_path):
    config = KeepfitConfig.model_validate({"store": str(tmp_path / ".keepfit")})
    store = Store.at(config.store)
    judged = create_snapshot(_frames(0, 40), quarantine=None, config=config, store=store)
    return tmp_path, config, store, judged


def _batch(tmp_path, rows: list[tuple[str, str]], name: str = "batch.csv"):
    path = tmp_path / name
    pd.DataFrame(rows, columns=["text", "label"]).to_csv(path, index=False)
    return path


def test_nothing_to_train_on_writes_nothing_and_keeps_head(project):
    tmp_path, config, store, judged = project
    repeat = [(t, lab) for t, lab in zip(judged.train["text"], judged.train["label"], strict=True)][:5]
    batch = merge_batch(config, judged, judged, _batch(tmp_path, repeat))
    before = sorted(p.name for p in store.snapshots.iterdir())
    with pytest.raises(DataError, match="brings nothing to train on: of 5 rows, 5 repeat earlier data"):
        snapshot_batch(config, batch, base=judged, judged=judged)
    assert sorted(p.name for p in store.snapshots.iterdir()) == before
    assert load_snapshot(store, "HEAD").id == judged.id


def test_every_row_accounted_and_head_not_moved(project):
    tmp_path, config, store, judged = project
    fresh = [(_text(i), "a" if i % 2 else "b") for i in range(100, 130)]
    repeat = [(judged.train["text"].iat[0], judged.train["label"].iat[0])]
    relabel = [(judged.test["text"].iat[0], "a" if judged.test["label"].iat[0] == "b" else "b")]
    empty = [("", "a")]
    batch = merge_batch(config, judged, judged, _batch(tmp_path, fresh + repeat + relabel + empty))
    snap, new_train, section = snapshot_batch(config, batch, base=judged, judged=judged)
    assert section["rows_in"] == 33
    kept = section["new_rows"] + section["relabels"]["applied"]
    assert kept + len(snap.quarantine) == 33
    assert set(snap.quarantine["reason"]) >= {"duplicate_of_earlier", "conflicts_with_earlier"}
    assert load_snapshot(store, "HEAD").id == judged.id, "HEAD moves only when the update says so"
    assert set(new_train["text"]) <= {t for t, _ in fresh}
    assert section["relabels"]["count"] == 1 and section["relabels"]["applied"] == 0
    assert "update.relabels: apply" in section["relabels"]["summary"]


def test_relabels_of_pending_rows_are_applied(project):
    """A corrected batch replaces the rejected batch it corrects, even with update.relabels: quarantine."""
    tmp_path, config, store, judged = project
    first = [(_text(i), "a") for i in range(200, 240)]  # all labelled "a": the "swapped" batch
    batch1 = merge_batch(config, judged, judged, _batch(tmp_path, first, "swapped.csv"))
    pending, _, _ = snapshot_batch(config, batch1, base=judged, judged=judged)
    corrected = [(_text(i), "b") for i in range(200, 240)]
    batch2 = merge_batch(config, pending, judged, _batch(tmp_path, corrected, "corrected.csv"))
    snap, new_train, section = snapshot_batch(config, batch2, base=pending, judged=judged)
    assert section["relabels"]["applied_to_pending"] == 40
    labels = pd.concat([snap.train, snap.validation, snap.test]).set_index("text")["label"]
    assert (labels.loc[[t for t, _ in corrected]] == "b").all()
    assert set(new_train["label"]) >= {"b"}
    assert not (new_train.set_index("text").loc[[t for t in new_train["text"] if t in dict(corrected)], "label"]
                == "a").any()


def test_new_row_copying_an_earlier_row_of_another_split_is_kept_out(project):
    from keepfit.data.merge import leakage_against_earlier

    _, config, _, judged = project
    earlier = {name: judged.split(name) for name in ("train", "validation", "test")}
    near_test = judged.test["text"].iat[1] + "!"  # not the same text, the same words: a near-duplicate
    same_train = judged.train["text"].iat[2]
    new = pd.DataFrame({
        "row": [2, 3, 4, 5], "source": "b.csv", "label": "a",
        "text": [near_test, same_train, judged.test["text"].iat[3] + " ok", _text(999)],
        "split": ["train", "test", "test", "train"],
    })
    kept, quarantine = leakage_against_earlier(earlier, new, config)
    assert quarantine["row"].tolist() == [2, 3]
    assert "earlier test row" in quarantine["detail"].iat[0] and "nearly copies" in quarantine["detail"].iat[0]
    assert "copies an earlier train row" in quarantine["detail"].iat[1]
    assert kept["row"].tolist() == [4, 5], "a test row near an earlier test row is no leak; a fresh row stays"
    assert len(kept) + len(quarantine) == len(new)


def test_a_resumed_fit_trains_on_the_snapshot_it_started_with(project):
    """HEAD moved on (an update, another snapshot) while a fit was killed: --resume keeps the run's data."""
    import json

    from keepfit.pipeline import RUN_SNAPSHOT_FILE, _run_snapshot

    tmp_path, config, store, judged = project
    run = tmp_path / "run"
    run.mkdir()
    (run / RUN_SNAPSHOT_FILE).write_text(json.dumps({"snapshot": judged.id}))
    later = create_snapshot(_frames(500, 40), quarantine=None, config=config, store=store)
    assert load_snapshot(store, "HEAD").id == later.id != judged.id
    assert _run_snapshot(config, store, None, run).id == judged.id
    with pytest.raises(DataError, match="a resumed run must continue on the same data"):
        _run_snapshot(config, store, later.id[:12], run)


def test_a_batch_the_screen_took_whole_is_quarantined_once(project):
    """Every new row set aside by the screen, a pending relabel left to train on: each row counted once."""
    tmp_path, config, store, judged = project
    first = [(_text(i), "a") for i in range(600, 620)]
    pending, _, _ = snapshot_batch(config, merge_batch(config, judged, judged, _batch(tmp_path, first, "p.csv")),
                                   base=judged, judged=judged)
    rows = [(_text(i), "b") for i in range(600, 602)] + [(_text(i), "a") for i in range(700, 705)]
    batch = merge_batch(config, pending, judged, _batch(tmp_path, rows, "b.csv"))
    screened = batch.new_rows.assign(reason="label_issue", detail="", raw_text=batch.new_rows["text"],
                                     raw_label=batch.new_rows["label"])[["row", "source", "reason", "detail",
                                                                         "raw_text", "raw_label"]]
    snap, _, section = snapshot_batch(config, batch, base=pending, judged=judged, screened=screened)
    assert section["screened_out"] == 5 and section["leaked_into_earlier_splits"] == 0
    assert len(snap.quarantine) == 5 and section["relabels"]["applied"] == 2
