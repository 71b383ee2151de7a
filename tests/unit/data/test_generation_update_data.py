"""The data side of `keepfit update` for text-generation: a week-2 chat file merged into the week-1 snapshot.

Rows are identified by their prompt (the whole conversation before the answer): a repeated prompt with the same
completion is a duplicate, with another completion it is re-answered (a relabel: quarantined, or applied with
update.relabels: apply); the same question under another system prompt is a new row, and one whose text copies an
earlier test row is kept out as leakage. Every batch row is kept or quarantined. Also: replay samples of
generation rows, `keepfit init --task text-generation`, and data text that looks like rich markup.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from rich.console import Console
from typer.testing import CliRunner

from keepfit.cli import app
from keepfit.config import KeepfitConfig
from keepfit.data import diff_renderable, diff_snapshots, load_snapshot, snapshot_data, summary_renderable
from keepfit.data.batch import merge_batch, pending_texts, snapshot_batch
from keepfit.data.check import check_data
from keepfit.data.merge import replay_sample
from keepfit.errors import ConfigError
from keepfit.store import Store

runner = CliRunner()

VOCAB = (
    "river stone maple copper lantern violet harbor pepper glacier walnut thunder meadow saffron beacon orchid "
    "falcon cobalt prairie ember juniper quartz willow canyon mango cedar tundra sparrow marble lotus comet"
).split()
SYSTEM = "You are a terse support bot."  # week 1 gives it to every fifth conversation
RELABEL_TRAIN, RELABEL_TEST = "a different answer [v2]", '{"intent": "refund"}'


def _question(i: int) -> str:
    words = np.random.default_rng(i).choice(VOCAB, size=7, replace=False)
    return "what about " + " ".join(words) + f" case {i}?"


def _record(i: int, split: str, answer: str | None = None, system: str | None = None) -> dict[str, Any]:
    record: dict[str, Any] = {
        "messages": [
            {"role": "user", "content": _question(i)},
            {"role": "assistant", "content": answer or f"answer {i}: " + _question(i + 1000)},
        ],
        "split": split,
    }
    if system:
        record["system"] = system
    return record


def _week1_split(i: int) -> str:
    return "train" if i < 28 else "validation" if i < 34 else "test"


def _week1(i: int) -> dict[str, Any]:
    return _record(i, _week1_split(i), system=SYSTEM if i % 5 == 0 else None)


def _jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def _config(tmp_path: Path, relabels: str = "quarantine") -> KeepfitConfig:
    return KeepfitConfig.model_validate(
        {
            "task": "text-generation",
            "store": str(tmp_path / "store"),
            "data": {"train": str(tmp_path / "week1.jsonl"), "split_column": "split"},
            "update": {"relabels": relabels},
        }
    )


NEW_TRAIN, NEW_TEST = range(100, 110), range(110, 112)


def _week2(tmp_path: Path) -> Path:
    """20 rows: 12 new prompts (10 train, 2 test), 3 exact repeats (two train rows, one test row), 2 re-answered
    prompts (train row 2, test row 36), row 3's question under a system prompt (a new prompt), row 37's
    question under a system prompt sent to train (its text copies an earlier test row), one with no answer."""
    records = [_record(i, "train") for i in NEW_TRAIN] + [_record(i, "test") for i in NEW_TEST]
    records += [_week1(0), _week1(1), _week1(35)]
    records += [_record(2, "train", answer=RELABEL_TRAIN), _record(36, "test", answer=RELABEL_TEST)]
    records += [_record(3, "train", system=SYSTEM), _record(37, "train", system=SYSTEM)]
    records.append({"messages": [{"role": "user", "content": "a question nobody answered"}], "split": "train"})
    return _jsonl(tmp_path / "week2.jsonl", records)


@pytest.fixture()
def week1(tmp_path: Path):
    _jsonl(tmp_path / "week1.jsonl", [_week1(i) for i in range(40)])
    judged = snapshot_data(_config(tmp_path))
    assert [len(judged.split(n)) for n in ("train", "validation", "test")] == [28, 6, 6]
    assert len(judged.quarantine) == 0 and judged.task == "text-generation"
    return tmp_path, judged


def _by_prompt(frame: pd.DataFrame, question: str, system: str | None = None) -> pd.DataFrame:
    prompts = frame["prompt"].map(json.loads)
    wanted = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": question}]
    return frame[[p == wanted for p in prompts]]


# ------------------------------------------------------------------------------------------------ merge


def test_week2_every_row_is_kept_or_quarantined_and_relabels_wait_for_review(week1):
    tmp_path, judged = week1
    config = _config(tmp_path)
    store = Store.at(config.store)
    batch = merge_batch(config, judged, judged, _week2(tmp_path))

    assert batch.n_in == 20 and batch.n_duplicates == 3 and batch.n_check_quarantined == 1
    assert batch.quarantine["reason"].value_counts().to_dict() == {
        "duplicate_of_earlier": 3, "conflicts_with_earlier": 2, "no_answer": 1,
    }
    assert len(batch.new_rows) == 14, "12 new prompts + row 3 and row 37 under a system prompt"
    assert batch.n_in == len(batch.new_rows) + len(batch.quarantine)
    dupes = batch.quarantine[batch.quarantine["reason"] == "duplicate_of_earlier"]
    assert all(d.startswith("same prompt and completion as an earlier") for d in dupes["detail"])
    conflicts = batch.quarantine[batch.quarantine["reason"] == "conflicts_with_earlier"].set_index("raw_label")
    test_detail = conflicts.loc[RELABEL_TEST, "detail"]
    assert test_detail.startswith("this prompt is an earlier test row answered 'answer 36: ")
    assert repr(RELABEL_TEST) in test_detail and "update.relabels: apply to take the new answer" in test_detail
    assert set(batch.relabelled["split"]) == {"train", "test"} and not batch.relabelled["applied"].any()

    snap, new_train, section = snapshot_batch(config, batch, base=judged, judged=judged)
    assert section["rows_in"] == 20 and section["new_rows"] == 13 and section["leaked_into_earlier_splits"] == 1
    assert section["new_by_split"] == {"train": 11, "validation": 0, "test": 2}
    assert section["rows_in"] == section["new_rows"] + section["relabels"]["applied"] + len(snap.quarantine)
    leak = snap.quarantine[snap.quarantine["reason"] == "leakage"]
    assert leak["raw_text"].tolist() == [_question(37)]
    assert "nearly copies an earlier test row's prompt" in leak["detail"].iat[0]

    # the same question under another system prompt asks something else: a new training row, not a duplicate
    assert len(_by_prompt(snap.train, _question(3))) == 1 and len(_by_prompt(snap.train, _question(3), SYSTEM)) == 1
    # re-answered prompts wait for review: the earlier rows keep their answers, nothing of them is trained on
    assert _by_prompt(snap.test, _question(36))["completion"].tolist() == [f"answer 36: {_question(1036)}"]
    assert _by_prompt(snap.train, _question(2))["completion"].tolist() == [f"answer 2: {_question(1002)}"]
    assert sorted(new_train["text"]) == sorted([_question(i) for i in NEW_TRAIN] + [_question(3)])
    assert set(new_train.columns) >= {"prompt", "completion", "text"}

    relabels = section["relabels"]
    assert (relabels["count"], relabels["applied"]) == (2, 0)
    assert "re-send earlier prompts with other answers (re-answered prompts)" in relabels["summary"]
    assert "other labels" not in relabels["summary"] and "update.relabels: apply" in relabels["summary"]
    assert load_snapshot(store, "HEAD").id == judged.id, "HEAD moves only when the update says so"
    stored = load_snapshot(store, snap.id)
    for name in ("train", "validation", "test"):
        pd.testing.assert_frame_equal(stored.split(name), snap.split(name))
    diff = diff_snapshots(judged, stored)
    assert (diff.added, diff.removed, diff.relabelled, diff.labels_new) == (13, 0, 0, [])


def test_with_relabels_apply_the_new_answers_replace_the_earlier_ones_where_they_live(week1):
    tmp_path, judged = week1
    config = _config(tmp_path, relabels="apply")
    batch = merge_batch(config, judged, judged, _week2(tmp_path))
    assert batch.relabelled["applied"].all() and len(batch.relabelled) == 2
    assert "conflicts_with_earlier" not in set(batch.quarantine["reason"])
    snap, new_train, section = snapshot_batch(config, batch, base=judged, judged=judged)
    assert section["rows_in"] == section["new_rows"] + section["relabels"]["applied"] + len(snap.quarantine)
    assert (section["new_rows"], section["relabels"]["applied"], len(snap.quarantine)) == (13, 2, 5)
    assert _by_prompt(snap.test, _question(36))["completion"].tolist() == [RELABEL_TEST], "a test row stays in test"
    assert _by_prompt(snap.train, _question(2))["completion"].tolist() == [RELABEL_TRAIN]
    assert _by_prompt(new_train, _question(2))["completion"].tolist() == [RELABEL_TRAIN], "re-answered: trained on"
    assert len(_by_prompt(new_train, _question(36))) == 0
    assert "were applied as re-answered prompts" in section["relabels"]["summary"]
    assert {e["new"] for e in section["relabels"]["examples"]} == {RELABEL_TRAIN, RELABEL_TEST}

    diff = diff_snapshots(judged, snap)
    assert (diff.added, diff.relabelled) == (13, 2)
    shown = _rendered(diff_renderable(diff))
    relabelled = next(line for line in shown.splitlines() if "relabelled" in line)
    assert "... -> a different answer [v2] │" in relabelled, shown  # train rows first; answers cut to 60


def test_a_re_answered_pending_prompt_is_applied_even_under_quarantine(week1):
    """A corrected batch replaces a rejected batch it corrects: pending rows are keyed by prompt."""
    tmp_path, judged = week1
    config = _config(tmp_path)
    first = _jsonl(tmp_path / "first.jsonl", [_record(i, "train", answer="wrong") for i in range(200, 210)])
    pending, _, _ = snapshot_batch(config, merge_batch(config, judged, judged, first), base=judged, judged=judged)
    keys = pending_texts(pending, judged)
    assert keys == set(pending.train["prompt"]) - set(judged.train["prompt"]) and len(keys) == 10
    assert all(json.loads(k)[-1]["role"] == "user" for k in keys), "prompts, not texts"

    fixed = _jsonl(tmp_path / "fixed.jsonl", [_record(i, "train", answer=f"right {i}") for i in range(200, 210)])
    batch = merge_batch(config, pending, judged, fixed)
    snap, new_train, section = snapshot_batch(config, batch, base=pending, judged=judged)
    assert section["relabels"]["applied_to_pending"] == 10 and len(snap.quarantine) == 0
    assert sorted(new_train["completion"]) == sorted(f"right {i}" for i in range(200, 210))


# ------------------------------------------------------------------------------------------------ replay


def test_replay_sample_is_a_seeded_sample_of_whole_generation_rows(week1):
    _, judged = week1
    train = judged.train
    first = replay_sample(train, 10, "text-generation", seed=7)
    again = replay_sample(train, 10, "text-generation", seed=7, margins=np.zeros(len(train)))
    pd.testing.assert_frame_equal(first, again)
    assert list(first.columns) == list(train.columns) and len(first) == 10
    pairs = set(zip(train["prompt"], train["completion"], train["text"], strict=True))
    assert set(zip(first["prompt"], first["completion"], first["text"], strict=True)) <= pairs
    assert first["prompt"].is_unique
    other = replay_sample(train, 10, "text-generation", seed=8)
    assert set(other["prompt"]) != set(first["prompt"])
    assert len(replay_sample(train, 0, "text-generation", seed=7)) == 0
    pd.testing.assert_frame_equal(replay_sample(train, 99, "text-generation", seed=7), train)


# ------------------------------------------------------------------------------------------------ init


def test_init_task_text_generation_prints_the_generation_columns(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    chat = _jsonl(tmp_path / "chat.jsonl", [_week1(i) for i in range(12)])
    done = runner.invoke(app, ["init", str(chat), "--task", "text-generation", "--out", "chat.yaml"])
    assert done.exit_code == 0, done.output
    first = done.output.splitlines()[0]
    assert first.split() == ["task:", "text-generation", "messages:", "messages", "system:", "system"]
    assert (tmp_path / "chat.yaml").exists()

    table = tmp_path / "alpaca.csv"
    pd.DataFrame(
        {"instruction": [_question(i) for i in range(12)], "output": [f"answer {i}" for i in range(12)]}
    ).to_csv(table, index=False)
    done = runner.invoke(app, ["init", str(table), "--task", "text-generation", "--out", "table.yaml"])
    assert done.exit_code == 0, done.output
    assert done.output.splitlines()[0].split() == [
        "task:", "text-generation", "prompt:", "instruction", "completion:", "output",
    ]
    assert "text:" not in done.output.splitlines()[0]

    bad = runner.invoke(app, ["init", str(table), "--task", "generation", "--out", "bad.yaml"])
    assert bad.exit_code != 0 and not (tmp_path / "bad.yaml").exists()
    assert isinstance(bad.exception, ConfigError)  # the entry point turns it into a message and exit code 2
    assert "text-generation" in str(bad.exception) and "got 'generation'" in str(bad.exception)


# ------------------------------------------------------------------------------------------------ markup


def _rendered(renderable: Any) -> str:
    console = Console(file=io.StringIO(), width=240, color_system=None)
    console.print(renderable)
    return console.file.getvalue()  # type: ignore[attr-defined]


def test_labels_and_answers_that_look_like_markup_are_printed_as_they_are(tmp_path: Path):
    rows = [(f"please look at ticket {w} soon", "[urgent]" if i % 2 else "normal") for i, w in enumerate(VOCAB)]
    rows.append((rows[0][0], "[urgent]"))  # same text, other label: a conflicting duplicate, shown as an example
    path = tmp_path / "tickets[1].csv"
    pd.DataFrame(rows, columns=["text", "label"]).to_csv(path, index=False)
    report = check_data(path, KeepfitConfig.model_validate({"store": str(tmp_path / "store")})).report
    report["warnings"] = [*report.get("warnings", []), "label [urgent] is rare"]
    shown = _rendered(summary_renderable(report))
    assert "tickets[1].csv" in shown and "label [urgent] is rare" in shown
    label_rows = [line for line in shown.splitlines() if "[urgent]" in line]
    assert len(label_rows) >= 3, shown  # the distribution row, the conflict's example, the warning

    cfg = KeepfitConfig.model_validate({"store": str(tmp_path / "store"), "data": {"train": str(path)}})
    a = snapshot_data(cfg)
    pd.DataFrame(rows[:-1] + [("a brand new ticket text here", "[later]")], columns=["text", "label"]).to_csv(
        path, index=False
    )
    diff = diff_snapshots(a, snapshot_data(cfg))
    assert diff.labels_new == ["[later]"]
    shown = _rendered(diff_renderable(diff))
    assert "new labels: [later]" in shown
    assert "'a brand new ticket text here' [[later]]" in shown
    assert "[urgent]" in shown  # the label share table


def test_the_champion_screen_refuses_generation_rows_with_a_reason(week1):
    """`keepfit update` screens single-label batches only; the screen itself says why it cannot take these."""
    from keepfit.data.screen import screen_batch
    from keepfit.errors import DataError

    _, judged = week1
    rows = judged.train.head(4)
    with pytest.raises(DataError, match="text-generation rows .* no label to dispute"):
        screen_batch(rows, [], np.zeros((4, 0)), val_true=np.zeros(0, np.int64), val_probs=np.zeros((0, 0)))
