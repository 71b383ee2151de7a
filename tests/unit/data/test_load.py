"""Loading: formats, encodings, delimiters, and original line numbers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from keepfit.config import KeepfitConfig
from keepfit.data.load import KIND_LIST, KIND_NUMBER, KIND_TEXT, open_source
from keepfit.data.normalize import normalize_text
from keepfit.data.validate import load_and_validate
from keepfit.errors import DataError

CFG = KeepfitConfig()


def _rows(src_path: Path) -> tuple[list[int], list[str]]:
    src = open_source(src_path, CFG)
    rows, texts = [], []
    for chunk in src.chunks(["text"]):
        rows += chunk.rows.tolist()
        texts += chunk.columns["text"].to_pylist()
    return rows, texts


def test_csv_line_numbers_follow_the_file_through_quoted_newlines_blank_lines_and_bad_rows(tmp_path: Path):
    p = tmp_path / "d.csv"
    p.write_text('text,label\n"two\nlines",a\n\nplain,b\nx,y,extra\n"three\n\nlines",c\nlast,d\n')
    checked = load_and_validate(p, CFG)
    assert checked.kept["row"].tolist() == [2, 5, 7, 10]
    assert checked.kept["text"].tolist() == ["two lines", "plain", "three lines", "last"]
    assert checked.quarantine[["row", "reason"]].values.tolist() == [[6, "unparseable"]]
    assert checked.n_in == 5
    assert any("blank line" in w for w in checked.warnings)


def test_crlf_and_bom_are_transparent(tmp_path: Path):
    p = tmp_path / "d.csv"
    p.write_bytes(b'\xef\xbb\xbftext,label\r\nhello there,a\r\n"multi\r\nline",b\r\nend,c\r\n')
    checked = load_and_validate(p, CFG)
    assert checked.kept["text"].tolist() == ["hello there", "multi line", "end"]
    assert checked.kept["label"].tolist() == ["a", "b", "c"]
    assert checked.kept["row"].tolist() == [2, 3, 5]


@pytest.mark.parametrize(
    ("delimiter", "suffix"), [(";", ".csv"), ("\t", ".tsv"), ("\t", ".csv"), ("|", ".txt")]
)
def test_delimiter_is_sniffed(tmp_path: Path, delimiter: str, suffix: str):
    p = tmp_path / f"d{suffix}"
    lines = ["text", "label"], ["a, b and c", "x"], ["d", "y"]
    p.write_text("\n".join(delimiter.join(r) for r in lines) + "\n")
    checked = load_and_validate(p, CFG)
    assert checked.kept["text"].tolist() == ["a, b and c", "d"]
    assert checked.kept["label"].tolist() == ["x", "y"]


def test_latin1_is_detected_and_warned(tmp_path: Path):
    p = tmp_path / "d.csv"
    p.write_bytes("text,label\ncafé crème brûlée,food\nnaïve façade,art\n".encode("latin-1"))
    checked = load_and_validate(p, CFG)
    assert checked.kept["text"].tolist() == ["café crème brûlée", "naïve façade"]
    assert any("not valid UTF-8" in w for w in checked.warnings)


def test_forced_encoding_is_used(tmp_path: Path):
    p = tmp_path / "d.csv"
    p.write_bytes("text,label\n“quoted” – dash,a\n".encode("cp1252"))
    cfg = KeepfitConfig.model_validate({"data": {"encoding": "cp1252"}})
    assert load_and_validate(p, cfg).kept["text"].tolist() == ["“quoted” – dash"]


def test_utf16_with_bom(tmp_path: Path):
    p = tmp_path / "d.csv"
    p.write_bytes("text,label\nhéllo,a\n".encode("utf-16"))
    checked = load_and_validate(p, CFG)
    assert checked.kept["text"].tolist() == ["héllo"]


def test_jsonl_keeps_line_numbers_and_quarantines_broken_lines(tmp_path: Path):
    p = tmp_path / "d.jsonl"
    p.write_text(
        '{"text": "a", "label": "x"}\n\n{"text": "b", "label": \n[1, 2]\n{"text": "c", "label": 3}\n'
    )
    checked = load_and_validate(p, CFG)
    assert checked.kept[["row", "text", "label"]].values.tolist() == [[1, "a", "x"], [5, "c", "3"]]
    q = checked.quarantine
    assert q["row"].tolist() == [3, 4] and set(q["reason"]) == {"unparseable"}
    assert "expected an object" in q["detail"].iloc[1]
    assert checked.n_in == 4


def test_json_kinds_are_reported(tmp_path: Path):
    p = tmp_path / "d.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in [{"text": "a", "label": 1}, {"text": 5, "label": ["x"]}]))
    chunk = next(open_source(p, CFG).chunks(["text", "label"]))
    assert chunk.kinds["text"].tolist() == [KIND_TEXT, KIND_NUMBER]
    assert chunk.kinds["label"].tolist() == [KIND_NUMBER, KIND_LIST]
    assert chunk.columns["label"].to_pylist() == ["1", '["x"]']


def test_json_array_file(tmp_path: Path):
    p = tmp_path / "d.json"
    p.write_text(json.dumps([{"text": "a", "label": "x"}, {"text": "b", "label": "y"}]))
    checked = load_and_validate(p, CFG)
    assert checked.kept["row"].tolist() == [1, 2]


def test_parquet_types_and_record_numbers(tmp_path: Path):
    p = tmp_path / "d.parquet"
    table = pa.table({"text": ["a", "b", None], "label": pa.array([1.0, float("nan"), 2.0])})
    pq.write_table(table, p)
    checked = load_and_validate(p, CFG)
    assert checked.kept[["row", "label"]].values.tolist() == [[1, "1"]]
    assert checked.quarantine[["row", "reason"]].values.tolist() == [[2, "missing_label"], [3, "empty_text"]]


def test_datasets_folder_with_class_labels_and_splits(tmp_path: Path):
    datasets = pytest.importorskip("datasets")
    features = datasets.Features(
        {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])}
    )
    train = datasets.Dataset.from_dict(
        {"text": ["good", "bad", "fine"], "label": [1, 0, 1]}, features=features
    )
    test = datasets.Dataset.from_dict({"text": ["meh"], "label": [0]}, features=features)
    datasets.DatasetDict({"train": train, "test": test}).save_to_disk(str(tmp_path / "ds"))
    checked = load_and_validate(tmp_path / "ds", CFG)
    assert checked.kept["label"].tolist() == ["pos", "neg", "pos"]
    assert load_and_validate(tmp_path / "ds", CFG, split="test").kept["text"].tolist() == ["meh"]
    with pytest.raises(DataError, match="splits"):
        load_and_validate(tmp_path / "ds", CFG, split="validation")


def test_chunks_cover_a_larger_file_in_order(tmp_path: Path):
    p = tmp_path / "d.jsonl"
    p.write_text("".join(json.dumps({"text": f"t{i}", "label": "a"}) + "\n" for i in range(25)))
    cfg = KeepfitConfig.model_validate({"data": {"chunk_rows": 10}})
    src = open_source(p, cfg)
    sizes = [len(c) for c in src.chunks(["text"])]
    assert sizes == [10, 10, 5]
    assert load_and_validate(p, cfg).kept["row"].tolist() == list(range(1, 26))


def test_normalize_text_nfc_controls_whitespace():
    arr = pa.array(["  e\u0301t\u00e9 ", "a\u00a0\u00a0b\tc\n", "x\x00y\u200b", None, "\x07", "plain"])
    out, n_nul = normalize_text(arr)
    assert out.to_pylist() == ["\u00e9t\u00e9", "a b c", "xy", None, "", "plain"]
    assert n_nul == 1


def test_many_rows_are_numbered_exactly(tmp_path: Path):
    rng = np.random.default_rng(0)
    lines, expected, line = ["text,label"], [], 2
    for i in range(3000):
        if rng.random() < 0.05:
            lines.append(f'"row {i}\nsecond",a')
            expected.append(line)
            line += 2
        else:
            lines.append(f"row {i},a")
            expected.append(line)
            line += 1
    p = tmp_path / "d.csv"
    p.write_text("\n".join(lines) + "\n")
    assert load_and_validate(p, CFG).kept["row"].tolist() == expected


@pytest.mark.parametrize("name", ["d.tsv.gz", "d.jsonl.bz2"])
def test_compressed_files(tmp_path: Path, name: str):
    import bz2
    import gzip

    p = tmp_path / name
    if name.endswith(".gz"):
        p.write_bytes(gzip.compress(b"text\tlabel\nhello, world\tx\n"))
    else:
        p.write_bytes(bz2.compress(json.dumps({"text": "hello, world", "label": "x"}).encode() + b"\n"))
    checked = load_and_validate(p, CFG)
    assert checked.kept[["row", "text", "label"]].values.tolist() == [
        [2 if name.endswith(".gz") else 1, "hello, world", "x"]
    ]


def test_normalize_text_is_idempotent_when_a_control_splits_a_letter_from_its_accent():
    import unicodedata

    once = normalize_text(pa.array(["cafe\x07\u0301 ok", "plain"])).values.to_pylist()
    twice = normalize_text(pa.array(once)).values.to_pylist()
    assert once == twice
    assert unicodedata.is_normalized("NFC", once[0]) and once[0] == "caf\u00e9 ok"
