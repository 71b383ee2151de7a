"""A corpus of malformed text-generation inputs (chat JSONL and prompt/completion tables), generated here.

Each ends in quarantined rows with the expected reason or in a clear DataError, never another exception, and
``n_in == kept + quarantined`` whenever rows come back.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from keepfit.config import KeepfitConfig
from keepfit.data.check import check_files
from keepfit.data.validate import load_and_validate
from keepfit.errors import DataError

GEN = KeepfitConfig.model_validate({"task": "text-generation"})


def _gen(**data: Any) -> KeepfitConfig:
    return KeepfitConfig.model_validate({"task": "text-generation", "data": data})


def _turns(*pairs: tuple[str, Any]) -> list[dict[str, Any]]:
    return [{"role": r, "content": c} for r, c in pairs]


GOOD = {"messages": _turns(("user", "What is the capital of France?"), ("assistant", "Paris."))}


@dataclass
class Case:
    name: str
    build: Callable[[Path], Path]
    error: list[str] = field(default_factory=list)  # substrings of the DataError message
    reasons: dict[str, int] = field(default_factory=dict)  # quarantined rows per reason
    kept: int | None = None
    warning: str | None = None
    detail: str | None = None  # a substring of some quarantine detail
    config: KeepfitConfig = field(default_factory=lambda: GEN)
    whole_check: bool = False  # run check_files (quality checks too), not only the validation


def _write(name: str, data: bytes | str) -> Callable[[Path], Path]:
    def build(tmp: Path) -> Path:
        p = tmp / name
        p.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
        return p

    return build


def _jsonl(name: str, *records: Any, eol: str = "\n") -> Callable[[Path], Path]:
    return _write(name, eol.join(r if isinstance(r, str) else json.dumps(r) for r in records) + eol)


def _parquet(name: str, table: pa.Table) -> Callable[[Path], Path]:
    def build(tmp: Path) -> Path:
        p = tmp / name
        pq.write_table(table, p)
        return p

    return build


def _late_bad_byte(tmp: Path) -> Path:
    p = tmp / "late.jsonl"
    filler = "".join(
        json.dumps({"messages": _turns(("user", f"question {i}"), ("assistant", f"answer {i}"))}) + "\n"
        for i in range(20_000)
    ).encode()
    tail = b'{"messages": [{"role": "user", "content": "caf\xe9?"}, {"role": "assistant", "content": "yes"}]}\n'
    p.write_bytes(filler + tail)
    return p


CASES = [
    Case("empty file", _write("empty.jsonl", b""), error=["is empty"]),
    Case("whitespace only", _write("blank.jsonl", "\n  \n"), error=["only whitespace"]),
    Case(
        "broken JSON line",
        _jsonl("cut.jsonl", GOOD, '{"messages": [{"role": "user", "con'),
        kept=1,
        reasons={"unparseable": 1},
    ),
    Case(
        "neither shape's columns",
        _jsonl("other.jsonl", {"text": "hi", "label": "x"}),
        error=["'messages' column", "'prompt' and 'completion'", "Columns found: ['text', 'label']"],
    ),
    Case(
        "prompt without a completion column",
        _write("noanswer.csv", "prompt,complete\nhi,there\n"),
        error=["data.completion_column is 'completion'", "did you mean 'complete'"],
    ),
    Case(
        "JSON array in a .jsonl file",
        _write("array.jsonl", json.dumps([GOOD, GOOD])),
        error=["JSON Lines", "no line"],
    ),
    Case(
        "pretty-printed JSON array in a .jsonl file",
        _write("pretty.jsonl", json.dumps([GOOD], indent=2)),
        error=["JSON"],
    ),
    Case("JSON array file (.json) is read as records", _write("array.json", json.dumps([GOOD, GOOD])), kept=2),
    Case(
        "messages not a list",
        _jsonl("notlist.jsonl", GOOD, {"messages": "hello"}, {"messages": {"role": "user"}}, {"messages": 3}),
        kept=1,
        reasons={"bad_messages": 3},
        detail="expected a list of {role, content} turns",
    ),
    Case(
        "no messages value",
        _jsonl("nomessages.jsonl", GOOD, {"messages": None}, {"other": 1}),
        kept=1,
        reasons={"bad_messages": 2},
        detail="messages is missing",
    ),
    Case(
        "an item not an object",
        _jsonl("item.jsonl", GOOD, {"messages": ["hello", {"role": "assistant", "content": "x"}]}),
        kept=1,
        reasons={"bad_messages": 1},
        detail="message 1 of 2 is text, expected an object",
    ),
    Case(
        "item without a role",
        _jsonl("norole.jsonl", GOOD, {"messages": [{"content": "hi"}, {"role": "assistant", "content": "x"}]}),
        kept=1,
        reasons={"missing_role": 1},
        detail="has no role (keys: content)",
    ),
    Case(
        "unknown roles, a case variant kept",
        _jsonl(
            "roles.jsonl",
            {"messages": _turns(("User", "hi"), (" Assistant ", "hello"))},
            {"messages": _turns(("human", "hi"), ("bot", "hello"))},
            {"messages": _turns(("user", "hi"), ("tool", "{}"), ("assistant", "x"))},
            {"messages": [{"role": 1, "content": "hi"}, {"role": "assistant", "content": "x"}]},
        ),
        kept=1,
        reasons={"unknown_role": 3},
        warning="another case",
        detail='(did you mean "user"?)',
    ),
    Case(
        "content a number, an object, a list of parts, missing",
        _jsonl(
            "content.jsonl",
            GOOD,
            {"messages": _turns(("user", 42), ("assistant", "x"))},
            {"messages": _turns(("user", "hi"), ("assistant", {"answer": 1}))},
            {"messages": _turns(("user", [{"type": "text", "text": "hi"}]), ("assistant", "x"))},
            {"messages": [{"role": "user"}, {"role": "assistant", "content": "x"}]},
        ),
        kept=1,
        reasons={"bad_messages": 4},
        detail="content is a number, expected a string",
    ),
    Case(
        "empty content",
        _jsonl("emptyturn.jsonl", GOOD, {"messages": _turns(("user", " \n\t"), ("assistant", "x"))}),
        kept=1,
        reasons={"empty_content": 1},
    ),
    Case(
        "empty answer",
        _jsonl("emptyanswer.jsonl", GOOD, {"messages": _turns(("user", "q"), ("assistant", "   "))}),
        kept=1,
        reasons={"empty_completion": 1},
    ),
    Case(
        "no assistant at the end, only assistant turns, no turns, answer after an answer",
        _jsonl(
            "noanswer.jsonl",
            GOOD,
            {"messages": _turns(("user", "q"), ("assistant", "a"), ("user", "and?"))},
            {"messages": _turns(("assistant", "a"), ("assistant", "b"))},
            {"messages": []},
            {"messages": _turns(("user", "q"), ("assistant", "a"), ("assistant", "b"))},
        ),
        kept=1,
        reasons={"no_answer": 4},
        detail="no user turn",
    ),
    Case(
        "system in the middle",
        _jsonl("system.jsonl", GOOD, {"messages": _turns(("user", "q"), ("system", "s"), ("assistant", "a"))}),
        kept=1,
        reasons={"system_not_first": 1},
    ),
    Case(
        "two different system prompts, a system of the wrong type",
        _jsonl(
            "twosystems.jsonl",
            {**GOOD, "system": "Be brief."},
            {"messages": _turns(("system", "Be long."), ("user", "q"), ("assistant", "a")), "system": "Be brief."},
            {**GOOD, "system": 7},
        ),
        kept=1,
        reasons={"bad_messages": 1, "wrong_type": 1},
    ),
    Case(
        "non-UTF-8 bytes",
        _write(
            "latin1.jsonl",
            (
                json.dumps({"messages": _turns(("user", "ça coûte?"), ("assistant", "oui"))}, ensure_ascii=False) + "\n"
            ).encode("latin-1"),
        ),
        kept=1,
        warning="not valid UTF-8",
    ),
    # the loader decodes JSONL past its 1 MB sample with U+FFFD for stray bytes, for every task
    Case("invalid byte after the sample", _late_bad_byte, kept=20_001),
    Case("BOM", _write("bom.jsonl", b"\xef\xbb\xbf" + (json.dumps(GOOD) + "\n").encode()), kept=1),
    Case("CRLF line ends", _jsonl("crlf.jsonl", GOOD, GOOD | {"x": 1}, eol="\r\n"), kept=2),
    Case(
        "NUL bytes inside a turn",
        _jsonl("nul.jsonl", {"messages": _turns(("user", "he\u0000llo"), ("assistant", "x"))}),
        kept=1,
        warning="NUL",
    ),
    Case(
        "a huge conversation over max_chars",
        _jsonl("huge.jsonl", GOOD, {"messages": _turns(("user", "word " * 5_000), ("assistant", "ok"))}),
        kept=1,
        reasons={"too_long": 1},
        detail="more than data.max_chars=20,000",
    ),
    Case(
        "duplicated and conflicting prompts",
        _jsonl(
            "dupes.jsonl",
            GOOD,
            GOOD,
            {"messages": _turns(("user", "2+2?"), ("assistant", "4"))},
            {"messages": _turns(("user", "2+2?"), ("assistant", "5"))},
        ),
        kept=1,
        reasons={"duplicate": 1, "conflicting_completions": 2},
        whole_check=True,
    ),
    Case(
        "table: wrong kinds and missing values",
        _jsonl(
            "table.jsonl",
            {"prompt": "2+2?", "completion": "4"},
            {"prompt": 22, "completion": "x"},
            {"prompt": "q", "completion": 4},
            {"prompt": None, "completion": "x"},
            {"prompt": "q", "completion": None},
            {"prompt": "q", "completion": "", "system": "s"},
        ),
        kept=1,
        reasons={"wrong_type": 2, "empty_content": 1, "empty_completion": 2},
        detail="completion is a number (4), expected a string",
    ),
    Case(
        "table CSV with a bad record and a bad split",
        _write("t.csv", "prompt,completion,split\nq1,a1,train\nq2,a2,extra,field\nq3,a3,holdout\n"),
        kept=1,
        reasons={"unparseable": 1, "bad_split": 1},
        config=_gen(split_column="split"),
    ),
    Case("table CSV header only", _write("h.csv", "prompt,completion\n"), error=["no data rows"]),
    Case(
        "Parquet with a numeric completion column",
        _parquet("num.parquet", pa.table({"prompt": ["a", "b"], "completion": [1, 2]})),
        error=["'completion'", "holds int64", "expected text"],
    ),
    Case(
        "chat CSV with a broken messages cell",
        _write(
            "chat.csv",
            'messages\n"[{""role"": ""user"", ""content"": ""q""}, {""role"": ""assistant"", ""content"": ""a""}]"\n'
            '"[{""role"": ""user"""\n',
        ),
        kept=1,
        reasons={"bad_messages": 1},
    ),
]


def test_the_corpus_is_large_enough():
    assert len(CASES) >= 15
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_generation_input_ends_in_a_clear_error_or_in_quarantine(case: Case, tmp_path: Path):
    path = case.build(tmp_path)
    if case.error:
        with pytest.raises(DataError) as err:
            load_and_validate(path, case.config)
        message = str(err.value)
        for part in case.error:
            assert part in message, f"{part!r} not in {message!r}"
        return
    if case.whole_check:
        result = check_files(path, case.config)
        kept, quarantine, n_in, warnings = result.kept, result.quarantine, result.n_in, result.warnings
    else:
        checked = load_and_validate(path, case.config)
        kept, quarantine, n_in, warnings = checked.kept, checked.quarantine, checked.n_in, checked.warnings
    assert n_in == len(kept) + len(quarantine)
    assert quarantine["reason"].value_counts().to_dict() == case.reasons
    if case.kept is not None:
        assert len(kept) == case.kept
    if case.warning is not None:
        assert any(case.warning in w for w in warnings), warnings
    if case.detail is not None:
        assert quarantine["detail"].str.contains(case.detail, regex=False).any(), quarantine["detail"].tolist()
    assert quarantine["row"].between(1, n_in + 100_000).all()
    assert quarantine["detail"].str.len().gt(5).all()
    assert kept["completion"].str.len().gt(0).all() and kept["text"].str.len().gt(0).all()


def test_a_stray_byte_past_the_sample_becomes_a_replacement_character(tmp_path: Path):
    checked = load_and_validate(_late_bad_byte(tmp_path), GEN)
    assert checked.kept["text"].iloc[-1] == "caf\ufffd?"


def test_a_token_counter_that_miscounts_is_a_clear_error(tmp_path: Path):
    path = _jsonl("ok.jsonl", GOOD, GOOD)(tmp_path)
    with pytest.raises(DataError, match="count_tokens returned 1 counts for 2 conversations"):
        load_and_validate(path, _gen(max_tokens=10), count_tokens=lambda prompts, completions: [3])
