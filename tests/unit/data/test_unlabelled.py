"""Unlabelled text for `keepfit adapt`: plain lines and table columns are read and normalised, empty texts counted;
every bad input (missing, empty, textless, binary, no text column) is a clear DataError through the CLI, exit 3,
no traceback, and leaves no run folder behind."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from keepfit.cli import main
from keepfit.data.unlabelled import read_unlabelled
from keepfit.errors import DataError

KEEPFIT = Path(sys.executable).with_name("keepfit")


def test_plain_text_is_normalised_and_empty_lines_counted(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_bytes("\ufeffcard  arrived\tlate\r\n\r\n   \nCafe\u0301 refund\nlast line without newline".encode())
    text = read_unlabelled(path)
    assert text.texts == ["card arrived late", "Caf\u00e9 refund", "last line without newline"]
    assert (text.rows_read, text.empty_skipped, text.format) == (5, 2, "text")
    assert len(text.sha256) == 64


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_a_table_gives_its_text_column(tmp_path, suffix):
    frame = pd.DataFrame({"category": ["a", "b", "c"], "text": ["top up  failed", None, "where is my card"]})
    path = tmp_path / f"rows{suffix}"
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    elif suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True)
    else:
        frame.to_parquet(path)
    text = read_unlabelled(path)
    assert text.texts == ["top up failed", "where is my card"]
    assert (text.rows_read, text.empty_skipped) == (3, 1)


def _png(path: Path) -> None:
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(path, "PNG")


def _zip(path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("texts.txt", "hello\n" * 50)
    path.write_bytes(buf.getvalue())


BAD: dict[str, tuple[str, Callable[[Path], None] | None, str]] = {
    "missing": ("gone.txt", None, "does not exist"),
    "empty": ("empty.txt", lambda p: p.write_bytes(b""), "is empty (0 bytes)"),
    "only blank lines": ("blank.txt", lambda p: p.write_text("\n  \n\t\n"), "holds no non-empty text"),
    "png renamed .txt": ("photo.txt", _png, "looks like a PNG image"),
    "zip renamed .txt": ("archive.txt", _zip, "looks like a zip archive"),
    "nul bytes": ("dump.txt", lambda p: p.write_bytes(b"ab\x00\x01cd" * 100), "holds NUL bytes"),
    "no text column": ("rows.csv", lambda p: p.write_text("body,label\nhello,a\n"), "has no column 'text'"),
    "empty text column": ("rows.jsonl", lambda p: p.write_text('{"text": ""}\n{"text": null}\n'),
                          "holds no non-empty text"),
}


def _adapt_cli(monkeypatch, capsys, cwd: Path, *args: str) -> tuple[int, str]:
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", ["keepfit", "adapt", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    return int(exit_info.value.code), capsys.readouterr().err


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_text_is_a_data_error_before_anything_runs(case, tmp_path, monkeypatch, capsys):
    name, make, expected = BAD[case]
    path = tmp_path / name
    if make is not None:
        make(path)
    with pytest.raises(DataError, match=re.escape(expected)):
        read_unlabelled(path)
    code, err = _adapt_cli(monkeypatch, capsys, tmp_path, "--text", str(path), "--set", "store=store")
    assert code == DataError.exit_code, err
    assert "DataError:" in err and "Traceback" not in err
    assert "Expected" in " ".join(err.split()) or "expected" in err  # says what it expected, and what to do
    assert not (tmp_path / "store").exists()  # refused before any run folder was made


def test_adapt_needs_a_text(tmp_path, monkeypatch, capsys):
    code, err = _adapt_cli(monkeypatch, capsys, tmp_path)
    assert code == 2 and "pass --text FILE" in err and "Traceback" not in err


def test_the_real_entry_point_refuses_a_binary_file(tmp_path):
    path = tmp_path / "photo.txt"
    _png(path)
    env = {**os.environ, "COLUMNS": "200", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([str(KEEPFIT), "adapt", "--text", str(path)], capture_output=True, text=True,
                          cwd=tmp_path, env=env, timeout=120)
    assert done.returncode == DataError.exit_code, done.stderr
    assert "looks like a PNG image" in done.stderr and "Traceback" not in done.stderr
