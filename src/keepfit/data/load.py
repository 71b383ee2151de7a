"""Reading data files in chunks: CSV/TSV, JSONL, Parquet and Hugging Face ``datasets`` folders.

A file is opened with :func:`open_source`, which checks what can be checked at file level (exists, not empty,
a header, unique column names, a readable encoding) and raises :class:`~keepfit.errors.DataError` otherwise.
:meth:`DataSource.chunks` then yields :class:`RawChunk` values: the requested columns as Arrow *string* arrays
(numbers and booleans rendered as text, lists and objects as JSON), the original line number of every record,
a per-column code of the value's original kind, and the records that could not be parsed at all. Row-level
problems never raise here; the validation stage turns them into quarantined rows.

Line numbers are the file's own: for CSV the header is line 1 and a record spanning several physical lines (a
quoted newline) gets the line where it starts; for JSONL the physical line; for Parquet and ``datasets``
folders the 1-based record index. Blank lines are not records: they are skipped and counted in
:attr:`DataSource.warnings` (in a CSV of a single column a blank line cannot be told from an empty value and
counts as a record).
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import math
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from keepfit.config import KeepfitConfig
from keepfit.errors import DataError

__all__ = [
    "RawChunk",
    "BadRecord",
    "DataSource",
    "open_source",
    "KIND_TEXT",
    "KIND_NUMBER",
    "KIND_BOOL",
    "KIND_LIST",
    "KIND_OBJECT",
    "FORMATS",
    "detect_encoding",
]

KIND_TEXT, KIND_NUMBER, KIND_BOOL, KIND_LIST, KIND_OBJECT = 0, 1, 2, 3, 4
KIND_NAMES = {
    KIND_TEXT: "text",
    KIND_NUMBER: "a number",
    KIND_BOOL: "a boolean",
    KIND_LIST: "a list",
    KIND_OBJECT: "an object",
}
FORMATS = ("csv", "jsonl", "json", "parquet", "hf-datasets")

_SAMPLE_BYTES = 1 << 20
_DELIMITERS = (",", "\t", ";", "|")
_BLOCK_MIN = 16 << 20
_BLOCK_MAX = 64 << 20


@dataclass(frozen=True)
class BadRecord:
    """A record that could not be parsed: its line number, raw text and why."""

    row: int
    raw: str
    detail: str


@dataclass
class RawChunk:
    """Up to ``chunk_rows`` parsed records of one file.

    ``columns`` maps each requested column to a string array of length N (nulls for missing values); ``kinds``
    maps a column to an int8 array of length N with the KIND_* code of each original value, or None when every
    value was text (CSV); ``rows`` is int64 of length N; ``unparseable`` lists records left out of N.
    """

    columns: dict[str, pa.Array]
    kinds: dict[str, np.ndarray | None]
    rows: np.ndarray
    unparseable: list[BadRecord] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rows)


@dataclass
class DataSource:
    """An opened data file: its format, columns, encoding, and a chunk reader."""

    path: Path
    format: str
    columns: list[str]
    column_types: dict[str, str] = field(
        default_factory=dict
    )  # Parquet / datasets only: the Arrow type names
    encoding: str = "utf-8"
    delimiter: str | None = None
    warnings: list[str] = field(default_factory=list)
    chunk_rows: int = 200_000
    _split: str | None = None

    @property
    def name(self) -> str:
        return self.path.name

    def to_pandas(self) -> pd.DataFrame:
        """Every record, all columns, as one DataFrame (for files that fit in memory: predictions, feedback)."""
        frames = [pd.DataFrame({k: v.to_pandas() for k, v in chunk.columns.items()}) for chunk in self.chunks()]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=self.columns)

    def chunks(self, columns: list[str] | None = None) -> Iterator[RawChunk]:
        """Yield the chosen ``columns`` (all when None) of every record, chunk by chunk."""
        wanted = list(self.columns if columns is None else columns)
        if self.format == "csv":
            yield from _csv_chunks(self, wanted)
        elif self.format in ("jsonl", "json"):
            yield from _json_chunks(self, wanted)
        elif self.format == "parquet":
            yield from _parquet_chunks(self, wanted)
        else:
            yield from _datasets_chunks(self, wanted)


# --------------------------------------------------------------------------------------------------- opening


def open_source(
    path: str | Path, config: KeepfitConfig | None = None, *, split: str | None = None
) -> DataSource:
    """Open a data file or ``datasets`` folder and check it at file level.

    Raises DataError when the path is missing, empty, has no rows or header, repeats a column name, or cannot
    be read in its format. ``split`` names the split of a saved DatasetDict ('train' when empty).
    """
    config = config or KeepfitConfig()
    p = Path(path)
    if not p.exists():
        raise DataError(
            f"Data file {p} does not exist. Check the path (data.train in keepfit.yaml, or the argument)."
        )
    if p.is_dir():
        return _open_datasets_folder(p, config, split)
    if p.stat().st_size == 0:
        raise DataError(
            f"{p} is empty (0 bytes). Expected a header line and data rows. Point to the right file."
        )
    fmt = _format_of(p)
    if fmt == "parquet":
        return _open_parquet(p, config)
    with _open_binary(p) as f:
        sample = f.read(_SAMPLE_BYTES)
    if not sample.strip():
        raise DataError(
            f"{p} holds only whitespace. Expected a header line and data rows. Point to the right file."
        )
    encoding, warnings = _detect_encoding(p, sample, config.data.encoding)
    if fmt == "json" and sample.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"[":
        fmt = "json-array"
    if fmt in ("jsonl", "json", "json-array"):
        return _open_json(p, config, sample, encoding, warnings, fmt)
    return _open_csv(p, config, sample, encoding, warnings)


_COMPRESSED = {".gz": "gzip", ".bz2": "bz2"}


def _open_binary(p: Path) -> io.BufferedIOBase:
    """The file's bytes, decompressed for .gz and .bz2 (pyarrow's CSV reader decompresses those by itself)."""
    kind = _COMPRESSED.get(p.suffix.lower())
    if kind == "gzip":
        import gzip

        return gzip.open(p, "rb")  # type: ignore[return-value]
    if kind == "bz2":
        import bz2

        return bz2.open(p, "rb")  # type: ignore[return-value]
    return p.open("rb")


def _base_suffix(p: Path) -> str:
    """The format suffix, looking through a compression suffix: d.tsv.gz -> .tsv."""
    suffixes = [s.lower() for s in p.suffixes if s.lower() not in _COMPRESSED]
    return suffixes[-1] if suffixes else ""


def _format_of(p: Path) -> str:
    last = _base_suffix(p)
    if last in (".parquet", ".pq"):
        return "parquet"
    if last in (".jsonl", ".ndjson"):
        return "jsonl"
    if last == ".json":
        return "json"
    return "csv"


def _detect_encoding(p: Path, sample: bytes, forced: str | None) -> tuple[str, list[str]]:
    """The file's encoding: forced by config, a BOM, valid UTF-8, or charset-normalizer's best guess "
    "(warned)."""
    if forced:
        try:
            codecs.lookup(forced)
        except LookupError:
            raise DataError(
                f"data.encoding is {forced!r}, which Python does not know. Use a name such as utf-8, "
                "latin-1, cp1252."
            ) from None
        return forced, []
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16", [f"{p.name}: encoding detected as UTF-16 (byte-order mark); read as UTF-16"]
    if _is_utf8(sample):
        return "utf-8", []
    odd_lines = b"\n".join(line for line in sample.splitlines() if any(b > 127 for b in line))[:65536]
    encoding = _guess_encoding(odd_lines or sample)
    return encoding, [
        f"{p.name}: not valid UTF-8; encoding detected as {encoding} and decoded from it. If the text looks "
        "wrong, set data.encoding in keepfit.yaml."
    ]


detect_encoding = _detect_encoding  # public: keepfit.data.unlabelled reads plain-text files with it


_PREFERRED = ("cp1252", "latin_1", "iso8859_15", "cp1250", "cp1251", "shift_jis", "gb18030", "euc_kr", "big5")
_RARE_FAMILIES = ("cp4", "cp7", "cp8", "mac_", "hp_")


def _guess_encoding(sample: bytes) -> str:
    """charset-normalizer's guess; on a short sample many code pages tie, and then the common ones win."""
    from charset_normalizer import from_bytes

    results = list(from_bytes(sample))
    if not results:
        return "cp1252" if _decodes(sample, "cp1252") else "latin_1"
    best = results[0]
    ties = [
        r.encoding for r in results if r.chaos <= best.chaos + 0.02 and r.coherence >= best.coherence - 0.05
    ]
    for name in _PREFERRED:
        if name in ties:
            return name
    if best.encoding.startswith(_RARE_FAMILIES) and _decodes(sample, "cp1252"):
        return "cp1252"
    return best.encoding


def _decodes(sample: bytes, encoding: str) -> bool:
    try:
        sample.decode(encoding)
        return True
    except UnicodeDecodeError:
        return False


def _is_utf8(sample: bytes) -> bool:
    for cut in range(4):  # the sample may end inside a multi-byte character
        try:
            sample[: len(sample) - cut].decode("utf-8")
            return True
        except UnicodeDecodeError:
            continue
    return False


def _decode_sample(sample: bytes, encoding: str) -> str:
    text = sample.decode(encoding, errors="ignore")
    return text.removeprefix("\ufeff")


# --------------------------------------------------------------------------------------------------- CSV


def _open_csv(
    p: Path, config: KeepfitConfig, sample: bytes, encoding: str, warnings: list[str]
) -> DataSource:
    text = _decode_sample(sample, encoding)
    complete = len(sample) < _SAMPLE_BYTES
    delimiter = _sniff_delimiter(p, text, complete)
    if delimiter != "," and _base_suffix(p) not in (".tsv", ".tab"):
        warnings.append(f"{p.name}: delimiter detected as {delimiter!r}")
    try:
        header = next(csv.reader(io.StringIO(text, newline=None), delimiter=delimiter), None)
    except csv.Error as err:
        raise DataError(
            f"{p.name}: the header line could not be read as CSV ({err}). Expected a line of column names "
            "such as text,label. Is this a text file in CSV format?"
        ) from None
    if not header or all(not h.strip() for h in header):
        raise DataError(
            f"{p.name}: the first line is empty; expected a header line naming the columns (such as "
            "text,label)."
        )
    _check_unique(p, header)
    return DataSource(
        p,
        "csv",
        list(header),
        encoding=encoding,
        delimiter=delimiter,
        warnings=warnings,
        chunk_rows=config.data.chunk_rows,
    )


def _check_unique(p: Path, names: list[str]) -> None:
    seen: dict[str, int] = {}
    for name in names:
        seen[name] = seen.get(name, 0) + 1
    dupes = [n for n, c in seen.items() if c > 1]
    if dupes:
        raise DataError(
            f"{p.name}: column names must be unique, but {', '.join(repr(d) for d in dupes)} appears more "
            f"than once (columns found: {names}). Rename the repeated columns in the header"
            + (" (empty names come from trailing delimiters: remove them)." if "" in dupes else ".")
        )


def _sniff_delimiter(p: Path, text: str, complete: bool) -> str:
    """The delimiter giving a header of more than one column and the most rows of that width."""
    if _base_suffix(p) in (".tsv", ".tab"):
        return "\t"
    lines = text.splitlines(keepends=True)
    if not complete and len(lines) > 1:
        lines = lines[:-1]
    lines = lines[:200]
    best, best_score = ",", (0.0, 0)
    for delimiter in _DELIMITERS:
        try:
            rows = [
                r for r in csv.reader(io.StringIO("".join(lines), newline=None), delimiter=delimiter) if r
            ]
        except csv.Error:
            continue
        if not rows or len(rows[0]) < 2:
            continue
        width = len(rows[0])
        consistent = sum(len(r) == width for r in rows) / len(rows)
        score = (consistent, width)
        if score > best_score:
            best, best_score = delimiter, score
    return best


class _LineCounter:
    """Turns pyarrow's record numbers into physical line numbers, interleaving the rows it could not parse.

    pyarrow numbers records (header = 1) and reports malformed ones to a handler; a valid record's physical
    size is 1 + the newlines inside its fields. Walking both in record order gives each record's starting
    line.
    """

    def __init__(self, header_lines: int) -> None:
        self.next_record = 2
        self.next_line = 1 + header_lines
        # (record number, raw text): the handler is called in file order (the reader runs on one thread)
        self.invalid: deque[tuple[int, str]] = deque()
        self.bad: list[BadRecord] = []
        self.blank_lines = 0

    def handler(self, row: Any) -> str:
        number = row.number if row.number is not None else self.next_record
        self.invalid.append((number, row.text or ""))
        return "skip"

    def _consume_invalid(self) -> None:
        _, text = self.invalid.popleft()
        self.bad.append(BadRecord(self.next_line, text[:500], _unparseable_detail(text)))
        self.next_line += 1 + text.count("\n")
        self.next_record += 1

    def place(self, sizes: np.ndarray) -> np.ndarray:
        """Starting lines of the next ``len(sizes)`` valid records, whose physical sizes are ``sizes``."""
        starts = np.empty(len(sizes), dtype=np.int64)
        i = 0
        while i < len(sizes):
            while self.invalid and self.invalid[0][0] <= self.next_record:
                self._consume_invalid()
            take = len(sizes) - i
            if self.invalid:
                take = min(take, self.invalid[0][0] - self.next_record)
            seg = sizes[i : i + take]
            starts[i : i + take] = self.next_line + np.cumsum(seg) - seg
            self.next_line += int(seg.sum())
            self.next_record += take
            i += take
        return starts

    def finish(self) -> None:
        while self.invalid:
            self._consume_invalid()


def _unparseable_detail(text: str) -> str:
    if text.count('"') % 2 == 1:
        return (
            "the record has an unterminated quote, so it runs on until the end of the file or a later quote"
        )
    return (
        "the record has a different number of fields than the header; quote fields that contain the delimiter"
    )


def _csv_reader(src: DataSource, wanted: list[str], counter: _LineCounter) -> pacsv.CSVStreamingReader:
    block = int(min(max(src.path.stat().st_size + 1, _BLOCK_MIN), _BLOCK_MAX))
    read = pacsv.ReadOptions(use_threads=False, block_size=block, encoding=src.encoding)
    parse = pacsv.ParseOptions(
        delimiter=src.delimiter or ",",
        newlines_in_values=True,
        ignore_empty_lines=False,
        invalid_row_handler=counter.handler,
    )
    convert = pacsv.ConvertOptions(
        column_types={c: pa.binary() for c in src.columns},
        strings_can_be_null=False,
        quoted_strings_can_be_null=False,
    )
    return pacsv.open_csv(src.path, read_options=read, parse_options=parse, convert_options=convert)


def _csv_chunks(src: DataSource, wanted: list[str]) -> Iterator[RawChunk]:
    counter = _LineCounter(header_lines=1 + sum(c.count("\n") for c in src.columns))
    try:
        reader = _csv_reader(src, wanted, counter)
        batches = iter(reader)
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                break
            chunk = _csv_batch_to_chunk(src, batch, wanted, counter)
            if len(chunk) or chunk.unparseable:
                yield chunk
    except pa.ArrowInvalid as err:
        raise DataError(_csv_failure_message(src, counter, err)) from None
    counter.finish()
    if counter.bad:
        yield RawChunk(
            {c: pa.array([], pa.string()) for c in wanted},
            {c: None for c in wanted},
            np.array([], dtype=np.int64),
            counter.bad,
        )
        counter.bad = []
    if counter.blank_lines:
        src.warnings.append(f"{src.name}: skipped {counter.blank_lines} blank line(s)")


def _csv_failure_message(src: DataSource, counter: _LineCounter, err: Exception) -> str:
    msg = str(err)
    if "straddling" in msg or "block" in msg.lower():
        return (
            f"{src.name}: a record starting after line {counter.next_line - 1} is larger than "
            f'{_BLOCK_MAX >> 20} MB. This is almost always an unterminated quote (") that swallows the rest '
            "of the file. Fix the quote, or save the file as JSONL or Parquet."
        )
    return (
        f"{src.name}: could not be read as CSV near line {counter.next_line}: {msg}. Check the file's format."
    )


def _csv_batch_to_chunk(
    src: DataSource, batch: pa.RecordBatch, wanted: list[str], counter: _LineCounter
) -> RawChunk:
    if batch.schema.names != src.columns:
        raise DataError(
            f"{src.name}: the CSV reader found columns {batch.schema.names}, the header sniffing found "
            f"{src.columns}. Check the header line and the delimiter."
        )
    # every column counts: a newline inside any quoted field moves the following line numbers
    sizes = np.ones(batch.num_rows, dtype=np.int64)
    lengths = np.zeros(batch.num_rows, dtype=np.int64)
    for arr in batch.columns:
        sizes += pc.count_substring(arr, "\n").to_numpy(zero_copy_only=False).astype(np.int64)
        lengths += pc.binary_length(arr).to_numpy(zero_copy_only=False).astype(np.int64)
    rows = counter.place(sizes)
    # A blank line parses as a record of empty fields. With one column it cannot be told from an empty value,
    # so there it stays a record (and becomes an empty_text row); with several, an all-empty line is not a
    # record.
    blank = (lengths == 0) & (sizes == 1) & (len(src.columns) > 1)
    columns = {name: batch.column(name) for name in wanted}
    if blank.any():
        counter.blank_lines += int(blank.sum())
        keep = pa.array(~blank)
        columns = {n: a.filter(keep) for n, a in columns.items()}
        rows = rows[~blank]
    columns = {name: _binary_to_string(arr, src, rows) for name, arr in columns.items()}
    return RawChunk(columns, {n: None for n in wanted}, rows)


def _binary_to_string(arr: pa.Array, src: DataSource, rows: np.ndarray) -> pa.Array:
    try:
        return arr.cast(pa.string())
    except pa.ArrowInvalid:
        values = arr.to_pylist()
        bad = [i for i, v in enumerate(values) if v is not None and not _valid_utf8(v)]
        src.warnings.append(
            f"{src.name}: {len(bad)} value(s) are not valid {src.encoding} (first at line {rows[bad[0]]}); "
            "the bad bytes were replaced with U+FFFD. Set data.encoding if the file uses another encoding."
        )
        return pa.array(
            [None if v is None else v.decode("utf-8", errors="replace") for v in values], pa.string()
        )


def _valid_utf8(value: bytes) -> bool:
    try:
        value.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


# --------------------------------------------------------------------------------------------------- JSON


def _open_json(
    p: Path, config: KeepfitConfig, sample: bytes, encoding: str, warnings: list[str], fmt: str
) -> DataSource:
    if fmt == "json-array":
        columns = _json_array_columns(p, encoding)
        return DataSource(
            p, "json", columns, encoding=encoding, warnings=warnings, chunk_rows=config.data.chunk_rows
        )
    text = _decode_sample(sample, encoding)
    lines = text.splitlines()
    if len(sample) == _SAMPLE_BYTES and lines:
        lines = lines[:-1]
    columns: dict[str, None] = {}
    parsed = 0
    for line in lines:
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            parsed += 1
            columns.update(dict.fromkeys(value))
        if parsed >= 1000:
            break
    if not parsed:
        raise DataError(
            f"{p.name}: expected JSON Lines (one JSON object per line, such as "
            '{"text": "...", "label": "..."}), but no line of the first MB is a JSON object. '
            "Check the format, or save the data as CSV."
        )
    return DataSource(
        p, "jsonl", list(columns), encoding=encoding, warnings=warnings, chunk_rows=config.data.chunk_rows
    )


def _json_array_columns(p: Path, encoding: str) -> list[str]:
    records = _load_json_array(p, encoding)
    columns: dict[str, None] = {}
    for record in records[:1000]:
        if isinstance(record, dict):
            columns.update(dict.fromkeys(record))
    if not columns:
        raise DataError(f"{p.name}: a JSON array of objects was expected, but it holds no objects.")
    return list(columns)


def _load_json_array(p: Path, encoding: str) -> list[Any]:
    try:
        with _open_binary(p) as f:
            raw = f.read()
        value = json.loads(raw.decode(encoding if encoding != "utf-8" else "utf-8-sig", errors="replace"))
    except json.JSONDecodeError as err:
        raise DataError(
            f"{p.name}: the JSON document is broken at line {err.lineno}, column {err.colno} ({err.msg}); a "
            "single JSON array cannot be read in part. Fix the file, or save it as JSON Lines (one object "
            "per line), where a broken line only costs that line."
        ) from None
    if not isinstance(value, list):
        raise DataError(
            f"{p.name}: expected a JSON array of objects or JSON Lines, got a JSON {type(value).__name__}."
        )
    return value


def _json_chunks(src: DataSource, wanted: list[str]) -> Iterator[RawChunk]:
    if src.format == "json":
        records = _load_json_array(src.path, src.encoding)
        for start in range(0, len(records), src.chunk_rows):
            part = records[start : start + src.chunk_rows]
            items = [(start + i + 1, r) for i, r in enumerate(part)]
            yield _records_to_chunk(items, wanted, "record")
        return
    items: list[tuple[int, Any]] = []
    blank = 0
    with io.TextIOWrapper(_open_binary(src.path), encoding=src.encoding, errors="replace", newline="") as f:
        for lineno, line in enumerate(_physical_lines(f), start=1):
            if lineno == 1:
                line = line.removeprefix("\ufeff")
            if not line.strip():
                blank += 1
                continue
            items.append((lineno, line))
            if len(items) >= src.chunk_rows:
                yield _lines_to_chunk(items, wanted)
                items = []
    if items:
        yield _lines_to_chunk(items, wanted)
    if blank:
        src.warnings.append(f"{src.name}: skipped {blank} blank line(s)")


def _physical_lines(f: io.TextIOBase) -> Iterator[str]:
    """Lines split on \\n only (a stray \\r or U+2028 inside a JSON string is not a line break)."""
    rest = ""
    while True:
        block = f.read(1 << 20)
        if not block:
            break
        parts = (rest + block).split("\n")
        rest = parts.pop()
        yield from parts
    if rest:
        yield rest


def _lines_to_chunk(items: list[tuple[int, str]], wanted: list[str]) -> RawChunk:
    parsed: list[tuple[int, Any]] = []
    bad: list[BadRecord] = []
    for lineno, line in items:
        try:
            value = json.loads(line)
        except json.JSONDecodeError as err:
            bad.append(BadRecord(lineno, line[:500], f"not valid JSON ({err.msg} at column {err.colno})"))
            continue
        if not isinstance(value, dict):
            bad.append(
                BadRecord(
                    lineno,
                    line[:500],
                    f"the line is JSON {_json_kind(value)}, expected an object "
                    'such as {"text": ..., "label": ...}',
                )
            )
            continue
        parsed.append((lineno, value))
    chunk = _records_to_chunk(parsed, wanted, "line")
    chunk.unparseable.extend(bad)
    return chunk


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "list"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool) or value is None:
        return "literal"
    return "number"


def _records_to_chunk(items: list[tuple[int, Any]], wanted: list[str], unit: str) -> RawChunk:
    bad = [
        BadRecord(n, json.dumps(r)[:500], f"the {unit} is not a JSON object")
        for n, r in items
        if not isinstance(r, dict)
    ]
    items = [(n, r) for n, r in items if isinstance(r, dict)]
    rows = np.fromiter((n for n, _ in items), dtype=np.int64, count=len(items))
    columns, kinds = {}, {}
    for name in wanted:
        values, codes = _values_and_kinds([r.get(name) for _, r in items])
        columns[name] = pa.array(values, pa.string())
        kinds[name] = codes
    return RawChunk(columns, kinds, rows, bad)


def _values_and_kinds(values: list[Any]) -> tuple[list[str | None], np.ndarray]:
    out: list[str | None] = []
    codes = np.zeros(len(values), dtype=np.int8)
    for i, v in enumerate(values):
        if v is None or isinstance(v, str):
            out.append(v)
        elif isinstance(v, bool):
            out.append("true" if v else "false")
            codes[i] = KIND_BOOL
        elif isinstance(v, (int, float)):
            out.append(_number_text(v))
            codes[i] = KIND_NUMBER
        elif isinstance(v, list):
            out.append(json.dumps(v, ensure_ascii=False))
            codes[i] = KIND_LIST
        else:
            out.append(json.dumps(v, ensure_ascii=False, default=str))
            codes[i] = KIND_OBJECT
    return out, codes


def _number_text(v: float | int) -> str | None:
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if v.is_integer() and abs(v) < 1e15:
            return str(int(v))
    return repr(v)


# --------------------------------------------------------------------------------------------------- Arrow


def _open_parquet(p: Path, config: KeepfitConfig) -> DataSource:
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(p)
    except (pa.ArrowInvalid, OSError) as err:
        raise DataError(
            f"{p.name}: not a readable Parquet file ({err}). Check that the file is complete."
        ) from None
    names = list(schema.names)
    _check_unique(p, names)
    types = {f.name: str(f.type) for f in schema}
    return DataSource(p, "parquet", names, types, warnings=[], chunk_rows=config.data.chunk_rows)


def _parquet_chunks(src: DataSource, wanted: list[str]) -> Iterator[RawChunk]:
    import pyarrow.parquet as pq

    start = 0
    try:
        pf = pq.ParquetFile(src.path)
        for batch in pf.iter_batches(batch_size=src.chunk_rows, columns=wanted):
            yield _arrow_to_chunk(batch, wanted, start)
            start += batch.num_rows
    except (pa.ArrowInvalid, OSError) as err:
        raise DataError(
            f"{src.name}: Parquet read failed after record {start} ({err}). Is the file complete?"
        ) from None


def _open_datasets_folder(p: Path, config: KeepfitConfig, split: str | None) -> DataSource:
    markers = ("dataset_info.json", "state.json", "dataset_dict.json")
    if not any((p / m).exists() for m in markers) and not any(
        (p / c / "state.json").exists() for c in _subdirs(p)
    ):
        raise DataError(
            f"{p} is a folder but not a Hugging Face dataset saved with save_to_disk (no dataset_dict.json "
            f"or state.json inside; found: {sorted(x.name for x in p.iterdir())[:10]}). Point to a data file "
            "or a saved dataset folder."
        )
    dataset = _load_dataset(p, split)
    features = dataset.features
    names = list(dataset.column_names)
    types = {
        n: type(features[n]).__name__ if type(features[n]).__name__ != "Value" else features[n].dtype
        for n in names
    }
    src = DataSource(
        p, "hf-datasets", names, types, warnings=[], chunk_rows=config.data.chunk_rows, _split=split
    )
    if len(dataset) == 0:
        raise DataError(f"{p}: the dataset has no rows. Point to a dataset with data.")
    return src


def _subdirs(p: Path) -> list[str]:
    return [x.name for x in p.iterdir() if x.is_dir()]


def _load_dataset(p: Path, split: str | None) -> Any:
    try:
        from datasets import DatasetDict, load_from_disk
    except ImportError as err:  # pragma: no cover - datasets is a dependency
        raise DataError(
            "Reading a datasets folder needs the `datasets` package: pip install datasets"
        ) from err
    try:
        loaded = load_from_disk(str(p))
    except (FileNotFoundError, ValueError, OSError) as err:
        raise DataError(f"{p}: could not be loaded with datasets.load_from_disk ({err}).") from None
    if isinstance(loaded, DatasetDict):
        name = split or "train"
        if name not in loaded:
            raise DataError(
                f"{p}: the saved DatasetDict has splits {list(loaded)}, not {name!r}. Name the file's split "
                "(for example folder path plus split='validation' in Python)."
            )
        return loaded[name]
    return loaded


def _datasets_chunks(src: DataSource, wanted: list[str]) -> Iterator[RawChunk]:
    dataset = _load_dataset(src.path, src._split)
    table = dataset.with_format("arrow")
    for start in range(0, len(dataset), src.chunk_rows):
        batch = table[start : start + src.chunk_rows].select(wanted)
        batch = _class_labels_to_names(batch, dataset.features)
        yield _arrow_to_chunk(batch, wanted, start)


def _class_labels_to_names(batch: pa.Table, features: Any) -> pa.Table:
    """ClassLabel columns hold integers; users mean the names."""
    from datasets import ClassLabel

    for name in batch.column_names:
        feature = features[name]
        inner = getattr(feature, "feature", None)
        if isinstance(feature, ClassLabel):
            names = pa.array(feature.names, pa.string())
            idx = batch.column(name).combine_chunks()
            batch = batch.set_column(batch.column_names.index(name), name, pc.take(names, idx))
        elif isinstance(inner, ClassLabel):
            values = [
                [inner.names[i] for i in v] if v is not None else None for v in batch.column(name).to_pylist()
            ]
            batch = batch.set_column(
                batch.column_names.index(name), name, pa.array(values, pa.list_(pa.string()))
            )
        elif isinstance(feature, list) and feature and isinstance(feature[0], ClassLabel):
            values = [
                [feature[0].names[i] for i in v] if v is not None else None
                for v in batch.column(name).to_pylist()
            ]
            batch = batch.set_column(
                batch.column_names.index(name), name, pa.array(values, pa.list_(pa.string()))
            )
    return batch


def _arrow_to_chunk(batch: pa.RecordBatch | pa.Table, wanted: list[str], start: int) -> RawChunk:
    rows = np.arange(start + 1, start + 1 + batch.num_rows, dtype=np.int64)
    columns, kinds = {}, {}
    for name in wanted:
        arr = batch.column(name)
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks()
        columns[name], kinds[name] = _arrow_as_text(arr)
    return RawChunk(columns, kinds, rows)


def _arrow_as_text(arr: pa.Array) -> tuple[pa.Array, np.ndarray | None]:
    """Render a typed Arrow array as strings, with the kind of each original value."""
    t = arr.type
    if pa.types.is_dictionary(t):
        return _arrow_as_text(arr.dictionary_decode())
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return arr.cast(pa.string()), None
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        try:
            return arr.cast(pa.string()), None
        except pa.ArrowInvalid:
            return pa.array(
                [None if v is None else v.decode("utf-8", "replace") for v in arr.to_pylist()]
            ), None
    n = len(arr)
    if pa.types.is_floating(t):  # shortest round-trip text; 1.0 -> "1", NaN -> "nan" (checked on pyarrow 25)
        return arr.cast(pa.string()), np.full(n, KIND_NUMBER, dtype=np.int8)
    if pa.types.is_integer(t) or pa.types.is_decimal(t):
        return arr.cast(pa.string()), np.full(n, KIND_NUMBER, dtype=np.int8)
    if pa.types.is_boolean(t):
        return pc.if_else(arr, "true", "false"), np.full(n, KIND_BOOL, dtype=np.int8)
    if pa.types.is_temporal(t):
        return arr.cast(pa.string()), None
    values, codes = _values_and_kinds(arr.to_pylist())
    return pa.array(values, pa.string()), codes
