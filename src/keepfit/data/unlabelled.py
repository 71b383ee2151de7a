"""Unlabelled in-domain text for `keepfit adapt`: a plain text file (one text per line) or a table's text column.

Texts are normalised as the data stage normalises them (:func:`~keepfit.data.normalize.normalize_text`); empty
texts are skipped and counted. Everything that would make training meaningless is refused before any model is
loaded, with a :class:`~keepfit.errors.DataError` saying what was expected, what came and what to do: a missing or
empty file, a binary file (an image or an archive renamed ``.txt``), a table without the text column, a file
with no non-empty text.
"""

from __future__ import annotations

import codecs
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from keepfit.config import KeepfitConfig
from keepfit.data.load import detect_encoding, open_source
from keepfit.data.normalize import normalize_text
from keepfit.errors import DataError

__all__ = ["UnlabelledText", "read_unlabelled", "TABLE_SUFFIXES"]

# Files with these suffixes (also under .gz/.bz2) are tables read by keepfit.data.load; any other is plain text.
TABLE_SUFFIXES = (".csv", ".tsv", ".tab", ".jsonl", ".ndjson", ".json", ".parquet", ".pq")
_COMPRESSED = (".gz", ".bz2")
_SAMPLE_BYTES = 1 << 16
# What common binary files start with: a renamed image, archive, document or executable is not text.
_MAGIC = {
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"GIF8": "a GIF image",
    b"PK\x03\x04": "a zip archive (or an Office document)",
    b"\x1f\x8b": "a gzip archive",
    b"BZh": "a bzip2 archive",
    b"7z\xbc\xaf": "a 7-zip archive",
    b"%PDF": "a PDF document",
    b"\x7fELF": "an executable",
    b"PAR1": "a Parquet file",
    b"SQLite format 3": "an SQLite database",
}


@dataclass
class UnlabelledText:
    """The texts of one file, normalised and non-empty, in file order.

    ``rows_read``: texts (lines or records) read; ``empty_skipped``: of those, empty after normalisation (or
    missing); ``unparseable``: table records that could not be parsed; ``sha256``: of the file's bytes.
    """

    path: Path
    texts: list[str]
    sha256: str
    rows_read: int
    empty_skipped: int
    format: str
    unparseable: int = 0
    warnings: list[str] = field(default_factory=list)


def read_unlabelled(path: str | Path, config: KeepfitConfig | None = None) -> UnlabelledText:
    """The non-empty, normalised texts of ``path``: one per line of a plain text file, or ``data.text_column``
    of a CSV/TSV/JSONL/Parquet table. Raises DataError for a missing, empty, binary or textless file."""
    config = config or KeepfitConfig()
    p = Path(path)
    if not p.exists():
        raise DataError(f"Text file {p} does not exist. Expected a plain text file (one text per line) or a "
                        "CSV/TSV/JSONL/Parquet table; check the path given to --text.")
    if p.is_dir():
        raise DataError(f"{p} is a folder. Expected one file: plain text (one text per line) or a table.")
    if p.stat().st_size == 0:
        raise DataError(f"{p} is empty (0 bytes). Expected in-domain texts, one per line; point --text at the "
                        "file that holds them.")
    suffixes = [s.lower() for s in p.suffixes]
    compressed = bool(suffixes) and suffixes[-1] in _COMPRESSED
    base = [s for s in suffixes if s not in _COMPRESSED]
    is_table = bool(base) and base[-1] in TABLE_SUFFIXES
    if not compressed and not (base and base[-1] in (".parquet", ".pq")):  # Parquet is binary by design
        _refuse_binary(p, is_table)
    texts = _table_texts(p, config) if is_table else _line_texts(p, config)
    if not texts.texts:
        where = f"column {config.data.text_column!r} of {p}" if is_table else f"{p}"
        raise DataError(f"{where} holds no non-empty text ({texts.rows_read} rows read, all empty after "
                        "normalisation). Expected in-domain texts to adapt on; point --text at the right file.")
    return texts


def _sha256(p: Path) -> str:
    digest = hashlib.sha256()
    with p.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _refuse_binary(p: Path, is_table: bool) -> None:
    """DataError when the first bytes of ``p`` are a known binary signature or hold NUL bytes (outside UTF-16)."""
    with p.open("rb") as f:
        sample = f.read(_SAMPLE_BYTES)
    kind = next((name for magic, name in _MAGIC.items() if sample.startswith(magic)), None)
    utf16 = sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
    if kind is None and b"\x00" in sample and not utf16:
        kind = "binary data (it holds NUL bytes)"
    if kind is None:
        return
    expected = "a CSV/TSV/JSONL table" if is_table else "plain text, one text per line"
    raise DataError(f"{p} is not text: it looks like {kind}. Expected {expected}; export the texts to a .txt file "
                    "(one per line) or a CSV with a text column and pass that to --text.")


def _kept(values: pa.Array) -> tuple[list[str], int]:
    """Normalised non-empty texts of a string array, and how many were empty or missing."""
    clean = normalize_text(values).values
    keep = pc.fill_null(pc.greater(pc.utf8_length(clean), 0), False)
    texts = clean.filter(keep).to_pylist()
    return texts, len(values) - len(texts)


def _line_texts(p: Path, config: KeepfitConfig) -> UnlabelledText:
    """One text per line of a plain text file, decoded as the data stage decodes (a BOM, UTF-8, a guess)."""
    data = p.read_bytes()
    encoding, warnings = detect_encoding(p, data[: 1 << 20], config.data.encoding)
    try:
        decoded = data.decode(encoding).removeprefix("\ufeff")
    except UnicodeDecodeError as err:
        raise DataError(f"{p} cannot be decoded as {encoding} (byte {err.start}): expected text in one encoding. "
                        "Set data.encoding (e.g. --set data.encoding=cp1252) or re-save the file as UTF-8.") from None
    # split on line breaks only: normalisation would turn a lone \r or a form feed inside a line into a space
    lines = decoded.replace("\r\n", "\n").split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final newline ends the last line; it does not start an empty one
    texts, empty = _kept(pa.array(lines, pa.string()))
    return UnlabelledText(p, texts, _sha256(p), len(lines), empty, "text", warnings=warnings)


def _table_texts(p: Path, config: KeepfitConfig) -> UnlabelledText:
    """``data.text_column`` of a table, chunk by chunk; unparseable records are counted, not fatal."""
    source = open_source(p, config)
    column = config.data.text_column
    if column not in source.columns:
        raise DataError(f"{p} has no column {column!r}: expected the texts in data.text_column, got the columns "
                        f"{source.columns}. Name the text column with --set data.text_column=NAME, or pass a plain "
                        "text file (one text per line).")
    texts: list[str] = []
    read = empty = unparseable = 0
    for chunk in source.chunks([column]):
        kept, skipped = _kept(chunk.columns[column])
        texts += kept
        read, empty, unparseable = read + len(chunk), empty + skipped, unparseable + len(chunk.unparseable)
    return UnlabelledText(p, texts, _sha256(p), read, empty, source.format, unparseable, list(source.warnings))
