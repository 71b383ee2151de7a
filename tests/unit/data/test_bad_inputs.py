"""A corpus of malformed inputs, generated here: each ends in a helpful DataError or in quarantined rows.

Never another exception, and ``n_in == kept + quarantined`` whenever rows come back.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from keepfit.config import KeepfitConfig
from keepfit.data.validate import load_and_validate
from keepfit.errors import DataError

SINGLE = KeepfitConfig()
REGRESSION = KeepfitConfig.model_validate({"task": "regression", "data": {"target_column": "label"}})
MULTI = KeepfitConfig.model_validate({"task": "multi-label"})


@dataclass
class Case:
    name: str
    build: Callable[[Path], Path]
    error: list[str] = field(default_factory=list)  # substrings of the DataError message
    reasons: dict[str, int] = field(default_factory=dict)  # quarantined rows per reason
    kept: int | None = None
    warning: str | None = None
    config: KeepfitConfig = field(default_factory=lambda: SINGLE)


def _write(name: str, data: bytes | str) -> Callable[[Path], Path]:
    def build(tmp: Path) -> Path:
        p = tmp / name
        p.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
        return p

    return build


def _parquet(name: str, table: pa.Table) -> Callable[[Path], Path]:
    def build(tmp: Path) -> Path:
        p = tmp / name
        pq.write_table(table, p)
        return p

    return build


def _truncated_parquet(tmp: Path) -> Path:
    p = tmp / "cut.parquet"
    pq.write_table(pa.table({"text": ["a"] * 100, "label": ["x"] * 100}), p)
    p.write_bytes(p.read_bytes()[:-40])
    return p


def _not_a_dataset_folder(tmp: Path) -> Path:
    d = tmp / "folder"
    d.mkdir()
    (d / "notes.txt").write_text("hello")
    return d


def _late_bad_byte(tmp: Path) -> Path:
    p = tmp / "late.csv"
    filler = "".join(f"row number {i},a\n" for i in range(80_000)).encode()
    p.write_bytes(b"text,label\n" + filler + b"caf\xe9 au lait,b\n")
    return p


J = json.dumps
CASES = [
    Case("missing file", lambda t: t / "nope.csv", error=["does not exist"]),
    Case("empty file", _write("empty.csv", b""), error=["is empty", "header"]),
    Case("whitespace only", _write("blank.csv", "\n \n\t\n"), error=["only whitespace"]),
    Case("header only", _write("header.csv", "text,label\n"), error=["no data rows", "['text', 'label']"]),
    Case("header and blank lines", _write("hb.csv", "text,label\n\n\n"), error=["no data rows"]),
    Case("empty first line", _write("first.csv", "\ntext,label\na,b\n"), error=["first line is empty"]),
    Case(
        "space separated",
        _write("space.csv", "text label\nhello x\n"),
        error=["Columns found: ['text label']", "delimiter may be wrong"],
    ),
    Case(
        "missing label column",
        _write("nolabel.csv", "text,lable\na,x\n"),
        error=["data.label_column is 'label'", "did you mean 'lable'", "--set data.text_column"],
    ),
    Case("no text column", _write("notext.csv", "body,label\na,x\n"), error=["data.text_column is 'text'"]),
    Case(
        "duplicate column names",
        _write("dupe.csv", "text,label,text\na,x,b\n"),
        error=["'text' appears more"],
    ),
    Case(
        "semicolon delimiter",
        _write("semi.csv", "text;label\nhello, world;x\nbye;y\n"),
        kept=2,
        warning="delimiter detected as ';'",
    ),
    Case("BOM and CRLF", _write("bom.csv", b"\xef\xbb\xbftext,label\r\nhi,x\r\nho,y\r\n"), kept=2),
    Case(
        "latin-1",
        _write("latin1.csv", "text,label\nça coûte très cher,prix\n".encode("latin-1")),
        kept=1,
        warning="not valid UTF-8",
    ),
    Case(
        "cp1252 smart quotes",
        _write("cp1252.csv", "text,label\n“smart” quotes – €5,x\n".encode("cp1252")),
        kept=1,
        warning="not valid UTF-8",
    ),
    Case(
        "utf-16", _write("utf16.csv", "text,label\nhi there,x\n".encode("utf-16")), kept=1, warning="UTF-16"
    ),
    Case("invalid byte after the sample", _late_bad_byte, kept=80_001, warning="replaced with U+FFFD"),
    Case(
        "NUL bytes inside text", _write("nul.csv", b"text,label\nhel\x00lo,x\nok,y\n"), kept=2, warning="NUL"
    ),
    Case(
        "text of NUL bytes only",
        _write("nulonly.csv", b"text,label\n\x00\x00,x\nok,y\n"),
        kept=1,
        reasons={"empty_text": 1},
    ),
    Case(
        "1 MB single row",
        _write("huge.csv", "text,label\n" + "word " * 210_000 + ",x\nshort,y\n"),
        kept=1,
        reasons={"too_long": 1},
    ),
    Case(
        "NaN and None labels",
        _write("nan.csv", "text,label\na,NaN\nb,None\nc,\nd,null\ne,ok\n"),
        kept=1,
        reasons={"missing_label": 4},
    ),
    Case("numbers as labels", _write("num.csv", "text,label\na,0\nb,1\nc,2\n"), kept=3),
    Case(
        "only whitespace texts",
        _write("ws.csv", 'text,label\n   ,x\n\t,y\n"\n",z\n'),
        kept=0,
        reasons={"empty_text": 3},
    ),
    Case(
        "unterminated quote",
        _write("quote.csv", 'text,label\nok,x\n"never closed,y\nmore,z\n'),
        kept=1,
        reasons={"unparseable": 1},
    ),
    Case(
        "extra columns in some rows",
        _write("extra.csv", "text,label\na,x\nb,y,surprise\nc,z\n"),
        kept=2,
        reasons={"unparseable": 1},
    ),
    Case(
        "missing fields in some rows",
        _write("short.csv", "text,label,source\na,x,web\nb\nc,z,app\n"),
        kept=2,
        reasons={"unparseable": 1},
    ),
    Case("old Mac line endings", _write("cr.csv", "text,label\rhi,x\rho,y\r"), kept=2),
    Case(
        "JSONL broken midway",
        _write("cut.jsonl", J({"text": "a", "label": "x"}) + "\n" + '{"text": "b", "lab'),
        kept=1,
        reasons={"unparseable": 1},
    ),
    Case(
        "JSONL with a non-object line",
        _write("list.jsonl", J({"text": "a", "label": "x"}) + '\n[1, 2]\n"s"\n'),
        kept=1,
        reasons={"unparseable": 2},
    ),
    Case("JSONL with no objects", _write("none.jsonl", "[1]\n[2]\n"), error=["JSON Lines", "no line"]),
    Case(
        "JSON array broken midway",
        _write("cut.json", '[{"text": "a", "label": "x"}, {"text": '),
        error=["broken at line 1", "JSON Lines"],
    ),
    Case(
        "JSONL mixed types",
        _write(
            "mixed.jsonl",
            "\n".join(
                J(r)
                for r in [
                    {"text": "a", "label": "x"},
                    {"text": 3.5, "label": "x"},
                    {"text": None, "label": "x"},
                    {"text": "b", "label": {"k": 1}},
                    {"text": "c", "label": True},
                ]
            ),
        ),
        kept=2,
        reasons={"wrong_type": 2, "empty_text": 1},
    ),
    Case(
        "Parquet with a numeric text column",
        _parquet("wrong.parquet", pa.table({"text": [1, 2], "label": ["a", "b"]})),
        error=["'text'", "holds int64", "expected text"],
    ),
    Case(
        "Parquet without the label column",
        _parquet("nolab.parquet", pa.table({"text": ["a"], "y": ["b"]})),
        error=["data.label_column is 'label'", "['text', 'y']"],
    ),
    Case("Parquet truncated", _truncated_parquet, error=["Parquet"]),
    Case(
        "Parquet with no rows",
        _parquet(
            "zero.parquet", pa.table({"text": pa.array([], pa.string()), "label": pa.array([], pa.string())})
        ),
        error=["no data rows"],
    ),
    Case(
        "folder that is not a dataset",
        _not_a_dataset_folder,
        error=["not a Hugging Face dataset", "notes.txt"],
    ),
    Case("binary garbage", _write("garbage.csv", bytes(range(256)) * 4), error=["Columns found"]),
    Case(
        "regression with bad targets",
        _write("reg.csv", "text,label\na,1.5\nb,high\nc,NaN\nd,inf\ne,\n"),
        kept=1,
        reasons={"bad_target": 4},
        config=REGRESSION,
    ),
    Case(
        "multi-label bad encodings",
        _write("ml.csv", 'text,label\na,x|y\nb,x||y\nc,|\nd,"[1, [2]]"\ne,\n'),
        kept=1,
        reasons={"bad_multilabel": 3, "missing_label": 1},
        config=MULTI,
    ),
    Case(
        "label all missing",
        _write("allmissing.csv", "text,label\na,\nb,\n"),
        kept=0,
        reasons={"missing_label": 2},
    ),
]


def test_the_corpus_is_large_enough():
    assert len(CASES) >= 25
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_ends_in_a_clear_error_or_in_quarantine(case: Case, tmp_path: Path):
    path = case.build(tmp_path)
    if case.error:
        with pytest.raises(DataError) as err:
            load_and_validate(path, case.config)
        message = str(err.value)
        for part in case.error:
            assert part in message, f"{part!r} not in {message!r}"
        return
    checked = load_and_validate(path, case.config)
    assert checked.n_in == len(checked.kept) + len(checked.quarantine)
    assert checked.reason_counts == case.reasons
    if case.kept is not None:
        assert len(checked.kept) == case.kept
    if case.warning is not None:
        assert any(case.warning in w for w in checked.warnings), checked.warnings
    assert checked.quarantine["row"].between(1, checked.n_in + 100_000).all()
    assert checked.quarantine["detail"].str.len().gt(5).all()
