"""The data layer for text-generation: both input shapes into the canonical columns, quality checks on prompts,
the token-length rule, split, snapshot round trip, diff, report and `keepfit init`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from keepfit.config import KeepfitConfig, load_config
from keepfit.data import (
    check_files,
    create_snapshot,
    diff_snapshots,
    diff_to_json,
    load_snapshot,
    render_html,
    snapshot_data,
    split_frame,
)
from keepfit.data.chat import conversation_from_messages, conversation_from_table
from keepfit.data.infer import infer, write_config_file
from keepfit.data.quality import check_leakage, run_quality
from keepfit.data.validate import load_and_validate
from keepfit.errors import DataError
from keepfit.store import Store


def _gen(**data: Any) -> KeepfitConfig:
    return KeepfitConfig.model_validate({"task": "text-generation", "data": data})


def _turns(*pairs: tuple[str, str]) -> list[dict[str, str]]:
    return [{"role": r, "content": c} for r, c in pairs]


def _jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def _chat(i: int, answer: str | None = None, system: str | None = None) -> dict[str, Any]:
    record: dict[str, Any] = {
        "messages": _turns(
            ("user", f"tell me fact number {i} about the {['sun', 'moon', 'sea'][i % 3]}"),
            ("assistant", answer or f"fact {i}: it is large and far away"),
        )
    }
    if system:
        record["system"] = system
    return record


# ------------------------------------------------------------------------------------------------ the shapes


def test_chat_jsonl_loads_into_the_canonical_columns_exactly(tmp_path: Path):
    answer = '  {"name": "Ada",  "age": 36}\n'
    records = [
        {
            "messages": _turns(
                ("user", "Hi\r\nthere"), ("assistant", "Hello!"), ("User", "Cafe\u0301  order?"), ("assistant", answer)
            ),
            "system": "You are terse.",
        },
        {"messages": _turns(("system", "Be kind."), ("user", "  q  "), ("assistant", "a"))},
    ]
    checked = load_and_validate(_jsonl(tmp_path / "chat.jsonl", records), _gen())
    assert checked.n_in == 2 and len(checked.quarantine) == 0 and checked.labels == []
    first, second = checked.kept.to_dict("records")
    assert list(checked.kept.columns) == ["row", "source", "text", "prompt", "completion"]
    assert json.loads(first["prompt"]) == _turns(
        ("system", "You are terse."), ("user", "Hi\nthere"), ("assistant", "Hello!"), ("user", "Café  order?")
    )
    assert first["completion"] == '{"name": "Ada",  "age": 36}'  # stripped outside, byte-exact inside
    assert first["text"] == "Hi there Hello! Café order?"  # non-system turns, normalised like classification
    assert (first["row"], first["source"]) == (1, "chat.jsonl")
    assert json.loads(second["prompt"]) == _turns(("system", "Be kind."), ("user", "q"))
    assert (second["completion"], second["text"]) == ("a", "q")
    assert any("another case" in w for w in checked.warnings)


def test_table_csv_loads_with_the_system_column_first_when_set(tmp_path: Path):
    path = tmp_path / "t.csv"
    pd.DataFrame(
        {
            "prompt": ["What is 2+2?", "Name a colour"],
            "completion": ["4", " blue "],
            "system": ["", "Answer in one word."],
        }
    ).to_csv(path, index=False)
    kept = load_and_validate(path, _gen()).kept
    assert json.loads(kept["prompt"][0]) == _turns(("user", "What is 2+2?"))
    assert json.loads(kept["prompt"][1]) == _turns(("system", "Answer in one word."), ("user", "Name a colour"))
    assert kept["completion"].tolist() == ["4", "blue"]
    assert kept["text"].tolist() == ["What is 2+2?", "Name a colour"]


def test_table_columns_are_configurable_and_parquet_works(tmp_path: Path):
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"q": ["a question"], "a": ["an answer"], "sys": [None], "team": ["x"]}), path)
    cfg = _gen(prompt_column="q", completion_column="a", system_column="sys", group_column="team")
    kept = load_and_validate(path, cfg).kept
    assert kept[["text", "completion", "group"]].values.tolist() == [["a question", "an answer", "x"]]


def test_chat_parquet_lists_and_a_csv_json_cell_load_the_same(tmp_path: Path):
    turns = _turns(("user", "q?"), ("assistant", "a."))
    pq.write_table(pa.table({"messages": [turns]}), tmp_path / "c.parquet")
    pd.DataFrame({"messages": [json.dumps(turns)]}).to_csv(tmp_path / "c.csv", index=False)
    frames = [load_and_validate(tmp_path / n, _gen()).kept for n in ("c.parquet", "c.csv")]
    assert [f[["prompt", "completion"]].values.tolist() for f in frames] == [
        [['[{"role": "user", "content": "q?"}]', "a."]]
    ] * 2


def test_conversational_prompt_completion_lists_are_read_as_turns():
    prompt = _turns(("user", "hi"), ("assistant", "hello"), ("user", "and?"))
    found = conversation_from_table(prompt, _turns(("assistant", "done")), "sys")
    assert found.prompt == [{"role": "system", "content": "sys"}, *prompt]
    assert found.completion == "done"
    bad = conversation_from_table("q", _turns(("user", "x")))
    assert bad.reason == "bad_messages"


def test_without_require_answer_a_prompt_alone_is_kept(tmp_path: Path):
    path = tmp_path / "p.csv"
    pd.DataFrame({"prompt": ["only a question"]}).to_csv(path, index=False)
    checked = load_and_validate(path, _gen(), require_answer=False)
    assert checked.kept["completion"].isna().all() and len(checked.kept) == 1
    found = conversation_from_messages(_turns(("user", "q")), require_answer=False)
    assert found.completion is None and found.prompt == _turns(("user", "q"))


def test_both_columns_present_uses_the_messages_and_says_so(tmp_path: Path):
    record = {**_chat(1), "prompt": "ignored", "completion": "ignored"}
    checked = load_and_validate(_jsonl(tmp_path / "b.jsonl", [record]), _gen())
    assert checked.kept["completion"][0] == "fact 1: it is large and far away"
    assert any("'messages' are used" in w for w in checked.warnings)


# ------------------------------------------------------------------------------------------------ quality


def _frame(rows: list[tuple[str, str]], system: str | None = None, **extra: Any) -> pd.DataFrame:
    prompts = [
        json.dumps(([{"role": "system", "content": system}] if system else []) + _turns(("user", p))) for p, _ in rows
    ]
    return pd.DataFrame(
        {
            "row": np.arange(2, len(rows) + 2),
            "source": "g.jsonl",
            "text": [p for p, _ in rows],
            "prompt": prompts,
            "completion": [c for _, c in rows],
            **extra,
        }
    )


def test_duplicates_and_conflicts_compare_the_whole_prompt_and_the_completion():
    a = _frame(
        [
            ("what is the boiling point of water", "100 C"),
            ("what is the boiling point of water", "100 C"),
            ("name the largest planet please", "Jupiter"),
            ("name the largest planet please", "Saturn"),
        ]
    )
    b = _frame([("what is the boiling point of water", "100 C")], system="Answer in Fahrenheit.")
    frame = pd.concat([a, b.assign(row=[9])], ignore_index=True)
    outcome = run_quality(frame, _gen())
    reasons = outcome.quarantine.set_index("row")["reason"].to_dict()
    assert reasons == {3: "duplicate", 4: "conflicting_completions", 5: "conflicting_completions"}
    # another system prompt makes another prompt: not a duplicate, but the same text is a near-duplicate
    assert 9 in outcome.kept["row"].tolist()
    near = next(f for f in outcome.findings if f.kind == "near_duplicates")
    assert near.count == 1 and near.action == "keep" and near.examples[0]["row"] == 9
    conflict = next(f for f in outcome.findings if f.kind == "conflicting_duplicates")
    assert "completions" in conflict.summary and conflict.examples[0]["labels"] == ["Jupiter", "Saturn"]
    lengths = next(f for f in outcome.findings if f.kind == "label_distribution")
    assert lengths.details["quantiles"]["max"] == 5.0 and "completion length" in lengths.summary


def test_leakage_across_splits_is_found_by_prompt_exact_and_near():
    frame = _frame(
        [
            ("how do I reset my password today", "Use the link."),
            ("how do i reset my password today?", "Use the link."),
            ("where is the nearest station", "Two blocks north."),
            ("how do I reset my password today", "Click forgot."),
            ("something entirely different here", "ok"),
        ],
        split=["train", "train", "train", "test", "test"],
    )
    leak = check_leakage(frame, _gen())
    details = leak.quarantine.set_index("row")["detail"].to_dict()
    assert details == {2: "same prompt as test row 5", 3: "near-duplicate of test row 5"}
    assert leak.findings[0].details["exact"] == 1 and leak.findings[0].details["near"] == 1


def test_check_files_keeps_every_row_and_splits_at_random(tmp_path: Path):
    records = [_chat(i) for i in range(40)] + [_chat(0), _chat(1, answer="other")]
    result = check_files(_jsonl(tmp_path / "c.jsonl", records), _gen(), split=True)
    assert result.n_in == len(result.kept) + len(result.quarantine) == 42
    assert result.report["quarantine_reasons"] == {"conflicting_completions": 2, "duplicate": 1}
    assert result.split is not None and result.split.method == "random"
    assert result.labels == [] and result.report["label_counts"] == {}
    assert "conflicting_completions" in render_html(result.report)
    stratified = KeepfitConfig.model_validate({"task": "text-generation", "split": {"method": "stratified"}})
    split = split_frame(result.kept.drop(columns=["split"]), stratified)
    assert split.method == "random" and any("no labels to stratify" in w for w in split.warnings)


# ------------------------------------------------------------------------------------------------ tokens


def _words(prompts: list[list[dict[str, str]]], completions: list[str]) -> np.ndarray:
    return np.array(
        [sum(len(m["content"].split()) for m in p) + len(c.split()) for p, c in zip(prompts, completions, strict=True)]
    )


def test_the_token_counter_quarantines_conversations_over_max_tokens(tmp_path: Path):
    records = [
        {"messages": _turns(("user", "one two three"), ("assistant", "four five"))},
        {"messages": _turns(("user", "one two three four five six"), ("assistant", "seven"))},
    ]
    path = _jsonl(tmp_path / "t.jsonl", records)
    result = check_files(path, _gen(max_tokens=5), count_tokens=_words)
    assert result.kept["completion"].tolist() == ["four five"]
    assert result.quarantine[["row", "reason"]].values.tolist() == [[2, "too_long"]]
    assert "7 tokens" in result.quarantine["detail"][0] and "data.max_tokens=5" in result.quarantine["detail"][0]
    # without a counter only characters count; without a limit the counter is not asked
    assert len(check_files(path, _gen(max_tokens=5)).kept) == 2
    assert len(check_files(path, _gen(), count_tokens=_words).kept) == 2


def test_the_counters_own_limit_applies_when_max_tokens_is_empty(tmp_path: Path):
    class Counter:
        max_tokens = 6

        def __call__(self, prompts, completions):
            return _words(prompts, completions)

    records = [
        {"messages": _turns(("user", "a b c"), ("assistant", "d"))},
        {"messages": _turns(("user", "a b c d e f"), ("assistant", "g"))},
    ]
    checked = load_and_validate(_jsonl(tmp_path / "t.jsonl", records), _gen(), count_tokens=Counter())
    assert checked.reason_counts == {"too_long": 1} and "the model's limit=6" in checked.quarantine["detail"][0]


# ------------------------------------------------------------------------------------------------ snapshot


def test_snapshot_round_trip_and_diff(tmp_path: Path):
    path = _jsonl(tmp_path / "c.jsonl", [_chat(i, system="Be brief." if i % 2 else None) for i in range(30)])
    cfg = KeepfitConfig.model_validate(
        {"task": "text-generation", "store": str(tmp_path / "store"), "data": {"train": str(path)}}
    )
    first = snapshot_data(cfg)
    store = Store.at(cfg.store)
    loaded = load_snapshot(store, first.id)
    assert loaded.labels == [] and loaded.task == "text-generation"
    for name in ("train", "validation", "test"):
        pd.testing.assert_frame_equal(loaded.split(name), first.split(name))
    again = create_snapshot(
        {n: loaded.split(n) for n in ("train", "validation", "test")},
        quarantine=loaded.quarantine,
        config=cfg,
        store=store,
    )
    assert again.id == first.id
    assert set(loaded.train.columns) >= {"prompt", "completion", "text", "split"}

    _jsonl(
        path, [_chat(i, answer="changed" if i == 3 else None, system="Be brief." if i % 2 else None) for i in range(31)]
    )
    second = snapshot_data(cfg)
    diff = diff_snapshots(first, second)
    assert (diff.added, diff.removed, diff.relabelled, diff.labels_new) == (1, 0, 1, [])
    assert diff.relabelled_examples[0]["new"] == "changed"
    assert json.loads(diff_to_json(diff))["task"] == "text-generation"


# ------------------------------------------------------------------------------------------------ init


def test_init_recognises_the_chat_shape_and_the_written_config_checks_the_data(tmp_path: Path):
    path = _jsonl(tmp_path / "chat.jsonl", [{**_chat(i), "user_id": f"u{i // 3}"} for i in range(12)])
    found = infer(path)
    assert found.config.task == "text-generation" and found.labels == []
    assert found.config.data.messages_column == "messages" and found.config.data.group_column == "user_id"
    written = write_config_file(found.config, found.notes, tmp_path / "keepfit.yaml")
    config = load_config(written)
    assert config.task == "text-generation" and config.model.name == "SmolLM2-135M-Instruct"
    assert "chat shape" in written.read_text()
    assert len(check_files(path, config).kept) == 12


def test_init_recognises_prompt_and_completion_like_columns(tmp_path: Path):
    rows = {
        "instruction": [f"write a haiku about item {i}" for i in range(10)],
        "input": ["" if i % 2 else f"context {i}" for i in range(10)],
        "output": [f"a short poem number {i}" for i in range(10)],
    }
    path = tmp_path / "alpaca.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    found = infer(path)
    d = found.config.data
    assert (found.config.task, d.prompt_column, d.completion_column) == ("text-generation", "instruction", "output")
    assert any("['input']" in n and "not used" in n for n in found.notes)


def test_init_leaves_classification_with_answer_like_columns_alone(tmp_path: Path):
    path = tmp_path / "yesno.csv"
    pd.DataFrame(
        {"question": [f"is item {i} in stock right now" for i in range(20)], "answer": ["yes", "no"] * 10}
    ).to_csv(path, index=False)
    found = infer(path)
    assert found.config.task == "single-label" and found.config.data.label_column == "answer"


def test_init_with_task_text_generation_and_no_shape_says_what_it_expected(tmp_path: Path):
    path = _jsonl(
        tmp_path / "share.jsonl",
        [{"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]}] * 3,
    )
    with pytest.raises(DataError, match=r"ShareGPT"):
        infer(path)
    other = tmp_path / "other.csv"
    pd.DataFrame({"text": ["a b", "c d"], "label": ["x", "y"]}).to_csv(other, index=False)
    with pytest.raises(DataError, match="No text-generation columns found"):
        infer(other, task="text-generation")
