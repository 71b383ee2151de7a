"""Validation with quarantine: every input record is kept or quarantined with a reason, never lost.

:func:`load_and_validate` reads a file chunk by chunk (see :mod:`keepfit.data.load`), normalises text and
labels (:mod:`keepfit.data.normalize`) and applies the row rules below with Arrow compute, so a million rows
never become a million Python objects per column. ``n_in == len(kept) + len(quarantine)`` always holds.

Reason codes (one per quarantined row; the first rule that fails wins, in this order):

- ``unparseable``    the record could not be parsed (CSV field count, unterminated quote, broken JSON line)
- ``wrong_type``     a value of the wrong kind (a number or object as text, a list as a single label)
- ``empty_text``     no text, or only whitespace/control characters after normalisation
- ``too_long``       more than ``data.max_chars`` characters after normalisation
- ``missing_label``  no label (empty, or a cell such as NaN/None/null that reads as missing)
- ``bad_multilabel`` a multi-label cell that cannot be parsed (empty item, not a list, a 0/1 column with 7)
- ``bad_target``     a regression target that is empty, not a number, NaN or infinite
- ``bad_split``      a split value other than train/validation/test (or val/dev/valid, training/testing)
- ``unknown_label``  a label outside the known labels, or a rare spelling variant of a frequent one (below)

``task: text-generation`` reads conversations instead, with reasons of its own: see :mod:`keepfit.data.chat`.

Known labels come from ``known_labels`` or ``config.labels``. With them, any other label is ``unknown_label``
with a "did you mean" for case, whitespace or small-typo variants (difflib). Without them every non-empty
label is accepted, except a *rare spelling variant*: when two labels differ only in case, whitespace, ``_`` or
``-`` (``Refund`` vs ``refund``), the less frequent spelling is quarantined as ``unknown_label`` pointing at
the frequent one if it has fewer than ``VARIANT_RATIO`` (10%) of its rows; at 10% or more both are kept and a
warning names them.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from keepfit.config import KeepfitConfig
from keepfit.data.load import (
    KIND_BOOL,
    KIND_LIST,
    KIND_NAMES,
    KIND_NUMBER,
    KIND_TEXT,
    DataSource,
    RawChunk,
    open_source,
)
from keepfit.data.normalize import MISSING_TOKENS, normalize_text
from keepfit.errors import DataError
from keepfit.types import (
    GROUP,
    LABEL,
    LABELS,
    ROW,
    SLICE_PREFIX,
    SOURCE,
    SPLIT,
    TARGET,
    TEXT,
    TIME,
    is_generation,
    is_image,
)

if TYPE_CHECKING:
    from keepfit.data.chat import TokenCounter

__all__ = [
    "CheckedRows",
    "ColumnRoles",
    "load_and_validate",
    "resolve_columns",
    "slice_settings",
    "suggest_label",
    "QUARANTINE_COLUMNS",
    "REASONS",
    "VARIANT_RATIO",
]

QUARANTINE_COLUMNS = ["row", "source", "reason", "detail", "raw_text", "raw_label"]
REASONS = (
    "unparseable",
    "wrong_type",
    "empty_text",
    "too_long",
    "missing_label",
    "bad_multilabel",
    "bad_target",
    "bad_split",
    "unknown_label",
)
VARIANT_RATIO = 0.10
_RAW_CHARS = 300
_SPLIT_NAMES = {
    "train": "train",
    "training": "train",
    "validation": "validation",
    "valid": "validation",
    "val": "validation",
    "dev": "validation",
    "test": "test",
    "testing": "test",
}
_TRUE = frozenset({"1", "1.0", "true", "yes", "y", "t"})
_FALSE = frozenset({"0", "0.0", "false", "no", "n", "f"})
_NUMBER = r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$"
_MISSING_SLICE = "(missing)"


@dataclass
class CheckedRows:
    """The outcome of checking one file: canonical kept rows, quarantined rows with reasons, and counts.

    ``kept`` has the canonical columns of :mod:`keepfit.types` (row, source, text, label|labels|target, and
    group/time/split/slice:<name> when configured); ``quarantine`` has :data:`QUARANTINE_COLUMNS`;
    ``n_in == len(kept) + len(quarantine)``.
    """

    kept: pd.DataFrame
    quarantine: pd.DataFrame
    n_in: int
    labels: list[str]
    warnings: list[str]
    source: str

    @property
    def reason_counts(self) -> dict[str, int]:
        """Quarantined rows per reason code."""
        return {str(k): int(v) for k, v in self.quarantine["reason"].value_counts().items()}


@dataclass(frozen=True)
class ColumnRoles:
    """Which file column plays which canonical role (None: not used)."""

    text: str
    label: str | None = None
    label_columns: list[str] = field(default_factory=list)
    target: str | None = None
    group: str | None = None
    time: str | None = None
    split: str | None = None
    slices: dict[str, str] = field(default_factory=dict)  # slice name (from config) -> file column

    @property
    def read_columns(self) -> list[str]:
        cols = [
            self.text,
            self.label,
            *self.label_columns,
            self.target,
            self.group,
            self.time,
            self.split,
            *self.slices.values(),
        ]
        return list(dict.fromkeys(c for c in cols if c))


# --------------------------------------------------------------------------------------------------- columns


def _find_column(wanted: str, available: list[str]) -> tuple[str | None, str | None]:
    """The file column for a configured name: exact, else a unique match ignoring case and outer spaces."""
    if wanted in available:
        return wanted, None
    loose = [c for c in available if c.strip().casefold() == wanted.strip().casefold()]
    if len(loose) == 1:
        return loose[
            0
        ], f"column {wanted!r} not found; using {loose[0]!r}, which differs only in case or spaces"
    return None, None


def _did_you_mean(wanted: str, candidates: list[str]) -> str:
    folded = {c.casefold(): c for c in candidates}
    close = difflib.get_close_matches(wanted.casefold(), list(folded), n=1, cutoff=0.6)
    return f" (did you mean {folded[close[0]]!r}?)" if close else ""


def resolve_columns(
    src: DataSource, config: KeepfitConfig, *, require_answer: bool = True
) -> tuple[ColumnRoles, list[str]]:
    """Map the configured columns to the file's columns; raise DataError listing every missing one at once."""
    d = config.data
    task = config.task
    problems: list[str] = []
    warnings: list[str] = []

    def find(key: str, name: str | None, required: bool = True) -> str | None:
        if not name:
            return None
        found, warning = _find_column(name, src.columns)
        if warning:
            warnings.append(f"{src.name}: {warning}")
        if found is None and required:
            setting = key if "." in key else f"data.{key}"
            problems.append(f"{setting} is {name!r}, which is not a column{_did_you_mean(name, src.columns)}")
        return found

    text = find("text_column", d.text_column)
    label = target = None
    label_columns: list[str] = []
    if task == "regression":
        target = find("target_column", d.target_column, require_answer)
    elif task == "multi-label" and d.label_columns:
        label_columns = [c for c in (find("label_columns", n, require_answer) for n in d.label_columns) if c]
    else:
        label = find("label_column", d.label_column, require_answer)
    roles = ColumnRoles(
        text=text or "",
        label=label,
        label_columns=label_columns,
        target=target,
        group=find("group_column", d.group_column),
        time=find("time_column", d.time_column),
        split=find("split_column", d.split_column),
        slices={name: col for name, key in slice_settings(config).items() if (col := find(key, name))},
    )
    if problems:
        hint = ""
        if len(src.columns) == 1 and any(ch in src.columns[0] for ch in ",;\t| "):
            hint = (
                f" The header was read as one column {src.columns[0]!r}: the delimiter may be wrong or the "
                "header unquoted badly."
            )
        raise DataError(
            f"{src.name}: expected columns are missing: " + "; ".join(problems) + f". Columns found: "
            f"{src.columns}.{hint} Set the names in keepfit.yaml (data.text_column, data.label_column, ...) "
            "or pass --set data.text_column=NAME."
        )
    _check_column_types(src, roles)
    return roles, warnings


def slice_settings(config: KeepfitConfig) -> dict[str, str]:
    """The columns carried as ``slice:<name>`` and the setting naming each: data.slice_columns, then the
    evaluate.fairness_columns not among them (a fairness group travels, and is reported, as a slice)."""
    named = {name: "data.slice_columns" for name in config.data.slice_columns}
    return named | {name: "evaluate.fairness_columns" for name in config.evaluate.fairness_columns if name not in named}


def _check_column_types(src: DataSource, roles: ColumnRoles) -> None:
    """Typed files (Parquet, datasets) declare a type per column: a text column must hold strings."""
    kind = src.column_types.get(roles.text)
    if kind is not None and not any(k in kind.lower() for k in ("string", "binary", "utf8")):
        raise DataError(
            f"{src.name}: column {roles.text!r} (data.text_column) holds {kind}, expected text (strings). "
            f"Column types: {src.column_types}. Point data.text_column at the column with the text."
        )


# --------------------------------------------------------------------------------------------------- labels


def _label_key(label: str) -> str:
    return re.sub(r"[\s_\-]+", "", label.casefold())


def suggest_label(value: str, known: list[str]) -> str | None:
    """The known label ``value`` most likely means: same up to case/whitespace/_/-, else a close typo."""
    key = _label_key(value)
    for label in known:
        if _label_key(label) == key:
            return label
    folded = {k.casefold(): k for k in known}
    close = difflib.get_close_matches(value.casefold(), list(folded), n=1, cutoff=0.8)
    return folded[close[0]] if close else None


def _unknown_detail(value: str, known: list[str]) -> str:
    guess = suggest_label(value, known)
    if guess is not None:
        return (
            f'label "{value}" is not a known label (did you mean "{guess}"?). Fix the row or add the label '
            "to labels: in keepfit.yaml"
        )
    return (
        f'label "{value}" is not one of the {len(known)} known labels. Fix the row or add the label to '
        "labels: in keepfit.yaml"
    )


# ------------------------------------------------------------------------------------------------ chunk check


def _np_mask(arr: pa.Array) -> np.ndarray:
    return np.asarray(pc.fill_null(arr, False).to_numpy(zero_copy_only=False), dtype=bool)


def _show(value: str | None, limit: int = 60) -> str:
    if value is None:
        return "null"
    return value if len(value) <= limit else value[: limit - 1] + "…"


class _ChunkChecker:
    """Applies the row rules to one chunk: returns the kept canonical table and the quarantined rows."""

    def __init__(
        self, config: KeepfitConfig, roles: ColumnRoles, known: list[str] | None, source: str
    ) -> None:
        self.config = config
        self.roles = roles
        self.known = known
        self.known_set = pa.array(known or [], pa.string())
        self.source = source
        self.n_nul = 0

    def check(self, chunk: RawChunk) -> tuple[pa.Table, list[pa.Table]]:
        n = len(chunk)
        self.alive = np.ones(n, dtype=bool)
        self.quarantined: list[pa.Table] = []
        self.chunk = chunk
        self.raw_text = chunk.columns[self.roles.text] if n else pa.array([], pa.string())
        self.raw_label = self._raw_label(chunk)
        if chunk.unparseable:
            self.quarantined.append(_bad_records_table(chunk, self.source))
        if n == 0:
            return _kept_schema(
                self.roles, self.config, _has_answer(self.roles)
            ).empty_table(), self.quarantined
        text = self._check_text(chunk)
        columns: dict[str, pa.Array] = {TEXT: text}
        if self.config.task == "regression":
            if self.roles.target:
                columns[TARGET] = self._check_target(chunk)
        elif self.config.task == "multi-label":
            if self.roles.label or self.roles.label_columns:
                columns[LABELS] = self._check_multilabel(chunk)
        elif self.roles.label:
            columns[LABEL] = self._check_label(chunk)
        columns.update(self._extra_columns(chunk))
        keep = pa.array(self.alive)
        table = pa.table(
            {
                ROW: pa.array(chunk.rows[self.alive], pa.int64()),
                SOURCE: pa.array(np.full(int(self.alive.sum()), self.source, dtype=object), pa.string()),
                **{name: arr.filter(keep) for name, arr in columns.items()},
            }
        )
        return table, self.quarantined

    # -- helpers ---------------------------------------------------------------------------------------------
    def _raw_label(self, chunk: RawChunk) -> pa.Array:
        r = self.roles
        n = len(chunk)
        if n == 0:
            return pa.array([], pa.string())
        name = r.target or r.label
        if name:
            return chunk.columns[name]
        if r.label_columns:
            parts: list[pa.Array | str] = []
            for i, col in enumerate(r.label_columns):
                parts += ([", "] if i else []) + [f"{col}=", pc.fill_null(chunk.columns[col], "null")]
            return pc.binary_join_element_wise(*parts, "")
        return pa.nulls(n, pa.string())

    def _reject(self, mask: np.ndarray, reason: str, detail: str | list[str]) -> None:
        """Quarantine the still-alive rows of ``mask``; ``detail`` is one sentence or one per rejected row."""
        mask = mask & self.alive
        if not mask.any():
            return
        idx = np.flatnonzero(mask)
        take = pa.array(idx)
        count = len(idx)
        details = detail if isinstance(detail, list) else [detail] * count
        self.quarantined.append(
            pa.table(
                {
                    "row": pa.array(self.chunk.rows[idx], pa.int64()),
                    "source": pa.array([self.source] * count, pa.string()),
                    "reason": pa.array([reason] * count, pa.string()),
                    "detail": pa.array(details, pa.string()),
                    "raw_text": pc.utf8_slice_codeunits(pc.take(self.raw_text, take), 0, _RAW_CHARS),
                    "raw_label": pc.utf8_slice_codeunits(pc.take(self.raw_label, take), 0, _RAW_CHARS),
                }
            )
        )
        self.alive &= ~mask

    def _wrong_kinds(self, kinds: np.ndarray | None, allowed: tuple[int, ...]) -> np.ndarray:
        if kinds is None:
            return np.zeros(len(self.alive), dtype=bool)
        return ~np.isin(kinds, allowed)

    def _kind_details(
        self, mask: np.ndarray, kinds: np.ndarray, values: pa.Array, what: str, expected: str, extra: str = ""
    ) -> list[str]:
        idx = np.flatnonzero(mask & self.alive)
        shown = pc.take(values, pa.array(idx)).to_pylist()
        return [
            f"{what} is {KIND_NAMES[int(kinds[i])]} ({_show(v)}), expected {expected}{extra}"
            for i, v in zip(idx, shown, strict=True)
        ]

    # -- rules -----------------------------------------------------------------------------------------------
    def _check_text(self, chunk: RawChunk) -> pa.Array:
        raw = self.raw_text
        kinds = chunk.kinds.get(self.roles.text)
        wrong = self._wrong_kinds(kinds, (KIND_TEXT,))
        if wrong.any():
            self._reject(wrong, "wrong_type", self._kind_details(wrong, kinds, raw, "text", "a string"))
        text, n_nul = normalize_text(raw)
        self.n_nul += n_nul
        length = pc.fill_null(pc.utf8_length(text), 0).to_numpy(zero_copy_only=False)
        empty = length == 0
        if (empty & self.alive).any():
            raw_len = pc.fill_null(pc.utf8_length(raw), -1).to_numpy(zero_copy_only=False)
            idx = np.flatnonzero(empty & self.alive)
            details = [
                "text is missing (no value)"
                if raw_len[i] < 0
                else "text is empty"
                if raw_len[i] == 0
                else "text holds only whitespace or control characters"
                for i in idx
            ]
            self._reject(empty, "empty_text", details)
        limit = self.config.data.max_chars
        long = length > limit
        if (long & self.alive).any():
            details = [
                f"text has {int(length[i]):,} characters, more than data.max_chars={limit:,}; shorten it or "
                "raise data.max_chars"
                for i in np.flatnonzero(long & self.alive)
            ]
            self._reject(long, "too_long", details)
        return text

    def _missing_label_mask(self, norm: pa.Array) -> tuple[np.ndarray, np.ndarray]:
        tokens = [t for t in MISSING_TOKENS if not (self.known and t in self.known)]
        null = _np_mask(pc.is_null(norm)) | _np_mask(pc.equal(norm, ""))
        token = _np_mask(pc.is_in(norm, value_set=pa.array(tokens, pa.string()))) & ~null
        return null, token

    def _reject_missing(self, norm: pa.Array, empty_detail: str = "label is empty") -> None:
        null, token = self._missing_label_mask(norm)
        self._reject(null, "missing_label", empty_detail)
        if (token & self.alive).any():
            values = pc.take(norm, pa.array(np.flatnonzero(token & self.alive))).to_pylist()
            self._reject(
                token,
                "missing_label",
                [
                    f'label is "{v}", which reads as a missing value; if it is a real class, list it in '
                    "labels: in keepfit.yaml"
                    for v in values
                ],
            )

    def _check_label(self, chunk: RawChunk) -> pa.Array:
        assert self.roles.label is not None
        kinds = chunk.kinds.get(self.roles.label)
        wrong = self._wrong_kinds(kinds, (KIND_TEXT, KIND_NUMBER, KIND_BOOL))
        if wrong.any():
            self._reject(
                wrong,
                "wrong_type",
                self._kind_details(
                    wrong,
                    kinds,
                    self.raw_label,
                    "label",
                    "one label",
                    "; several labels per row need task: multi-label",
                ),
            )
        norm, _ = normalize_text(self.raw_label)
        self._reject_missing(norm)
        if self.known is not None:
            unknown = ~_np_mask(pc.is_in(norm, value_set=self.known_set)) & self.alive
            if unknown.any():
                values = pc.take(norm, pa.array(np.flatnonzero(unknown))).to_pylist()
                cache: dict[str, str] = {}
                details = [
                    cache.setdefault(v, _unknown_detail(v, self.known)) if v not in cache else cache[v]
                    for v in values
                ]
                self._reject(unknown, "unknown_label", details)
        return norm

    def _check_multilabel(self, chunk: RawChunk) -> pa.Array:
        if self.roles.label_columns:
            return self._multilabel_from_columns(chunk)
        assert self.roles.label is not None
        kinds = chunk.kinds.get(self.roles.label)
        wrong = self._wrong_kinds(kinds, (KIND_TEXT, KIND_NUMBER, KIND_BOOL, KIND_LIST))
        if wrong.any():
            self._reject(
                wrong,
                "wrong_type",
                self._kind_details(wrong, kinds, self.raw_label, "labels", "a list or separated labels"),
            )
        norm, _ = normalize_text(self.raw_label)
        self._reject_missing(norm, "labels are empty; write [] for a row with no labels")
        encoded = (
            pc.dictionary_encode(pc.fill_null(norm, "")).combine_chunks()
            if isinstance(norm, pa.ChunkedArray)
            else pc.dictionary_encode(pc.fill_null(norm, ""))
        )
        sep = self.config.data.label_separator
        parsed = [_parse_multilabel(v, sep) for v in encoded.dictionary.to_pylist()]
        codes = encoded.indices.to_numpy(zero_copy_only=False)
        errors = np.array([p[1] is not None for p in parsed], dtype=bool)
        bad = errors[codes] if len(parsed) else np.zeros(len(codes), dtype=bool)
        if (bad & self.alive).any():
            self._reject(bad, "bad_multilabel", [parsed[c][1] or "" for c in codes[bad & self.alive]])
        lists = [p[0] or [] for p in parsed]
        if self.known is not None:
            known = set(self.known)
            unknown_first = [next((x for x in lst if x not in known), None) for lst in lists]
            has_unknown = np.array([u is not None for u in unknown_first], dtype=bool)
            mask = has_unknown[codes] if len(lists) else np.zeros(len(codes), dtype=bool)
            if (mask & self.alive).any():
                self._reject(
                    mask,
                    "unknown_label",
                    [_unknown_detail(unknown_first[c] or "", self.known) for c in codes[mask & self.alive]],
                )
        dictionary = pa.array(lists, pa.list_(pa.string()))
        return pc.take(dictionary, encoded.indices)

    def _multilabel_from_columns(self, chunk: RawChunk) -> pa.Array:
        names = self.roles.label_columns
        n = len(chunk)
        matrix = np.zeros((n, len(names)), dtype=bool)
        bad_detail: list[str | None] = [None] * n
        for j, col in enumerate(names):
            norm, _ = normalize_text(chunk.columns[col])
            lower = pc.utf8_lower(norm)
            matrix[:, j] = _np_mask(pc.is_in(lower, value_set=pa.array(sorted(_TRUE))))
            ok = _np_mask(pc.is_in(lower, value_set=pa.array(sorted(_TRUE | _FALSE))))
            for i in np.flatnonzero(~ok & self.alive):
                if bad_detail[i] is None:
                    value = lower[int(i)].as_py()
                    bad_detail[i] = (
                        f"label column {col!r} holds {_show(value) if value else 'nothing'}, expected 0 or 1"
                    )
        bad = np.array([d is not None for d in bad_detail], dtype=bool)
        if bad.any():
            self._reject(
                bad, "bad_multilabel", [bad_detail[i] or "" for i in np.flatnonzero(bad & self.alive)]
            )
        row_idx, col_idx = np.nonzero(matrix)
        offsets = np.concatenate(([0], np.cumsum(np.bincount(row_idx, minlength=n)))).astype(np.int32)
        values = pa.array(np.asarray(names, dtype=object)[col_idx] if len(col_idx) else [], pa.string())
        return pa.ListArray.from_arrays(pa.array(offsets), values)

    def _check_target(self, chunk: RawChunk) -> pa.Array:
        assert self.roles.target is not None
        kinds = chunk.kinds.get(self.roles.target)
        wrong = self._wrong_kinds(kinds, (KIND_TEXT, KIND_NUMBER))
        if wrong.any():
            self._reject(
                wrong, "wrong_type", self._kind_details(wrong, kinds, self.raw_label, "target", "a number")
            )
        norm = pc.utf8_trim_whitespace(self.raw_label)
        empty = _np_mask(pc.is_null(norm)) | _np_mask(pc.equal(norm, ""))
        self._reject(empty, "bad_target", "target is empty")
        numeric = _np_mask(pc.match_substring_regex(norm, _NUMBER))
        bad = ~numeric & self.alive
        if bad.any():
            values = pc.take(norm, pa.array(np.flatnonzero(bad))).to_pylist()
            self._reject(bad, "bad_target", [_target_detail(v) for v in values])
        safe = pc.if_else(pa.array(numeric), norm, pa.scalar("0"))
        target = pc.cast(safe, pa.float64())
        infinite = ~np.isfinite(target.to_numpy(zero_copy_only=False))
        if (infinite & self.alive).any():
            values = pc.take(norm, pa.array(np.flatnonzero(infinite & self.alive))).to_pylist()
            self._reject(infinite, "bad_target", [f"target {_show(v)} overflows to infinity" for v in values])
        return target

    def _extra_columns(self, chunk: RawChunk) -> dict[str, pa.Array]:
        r = self.roles
        out: dict[str, pa.Array] = {}
        if r.group:
            out[GROUP] = normalize_text(chunk.columns[r.group]).values
        if r.time:
            out[TIME] = pc.utf8_trim_whitespace(chunk.columns[r.time])
        if r.split:
            lower = pc.utf8_lower(normalize_text(chunk.columns[r.split]).values)
            keys = pa.array(list(_SPLIT_NAMES), pa.string())
            names = pa.array(list(_SPLIT_NAMES.values()), pa.string())
            index = pc.index_in(lower, value_set=keys)
            bad = _np_mask(pc.is_null(index))
            if (bad & self.alive).any():
                values = pc.take(
                    chunk.columns[r.split], pa.array(np.flatnonzero(bad & self.alive))
                ).to_pylist()
                self._reject(
                    bad,
                    "bad_split",
                    [f"split is {_show(v)}, expected train, validation or test" for v in values],
                )
            out[SPLIT] = pc.take(names, pc.fill_null(index, 0))
        for name, col in r.slices.items():
            value = pc.fill_null(normalize_text(chunk.columns[col]).values, "")
            out[SLICE_PREFIX + name] = pc.if_else(pc.equal(value, ""), _MISSING_SLICE, value)
        return out


def _target_detail(value: str) -> str:
    low = value.casefold()
    if low in ("nan", "-nan", "+nan"):
        return "target is NaN; a regression target must be a finite number"
    if low.lstrip("+-") in ("inf", "infinity"):
        return f"target is {value}; a regression target must be a finite number"
    if low in {t.casefold() for t in MISSING_TOKENS}:
        return f'target is "{value}", which reads as a missing value'
    if re.fullmatch(r"[+-]?\d+,\d+", value):
        dotted = value.replace(",", ".")
        return f'target "{value}" is not a number (did you mean {dotted}? use a dot for decimals)'
    return f'target "{_show(value)}" is not a number'


def _parse_multilabel(value: str, sep: str) -> tuple[list[str] | None, str | None]:
    """One multi-label cell: a JSON list of strings or ``sep``-joined labels -> (labels, error)."""
    if value == "":
        return None, "labels are empty"
    if value.startswith("["):
        try:
            items = json.loads(value)
        except json.JSONDecodeError:
            return None, f"labels {_show(value)} start like a JSON list but are not valid JSON"
        if not isinstance(items, list) or not all(
            isinstance(x, (str, int)) and not isinstance(x, bool) for x in items
        ):
            return None, f"labels {_show(value)} must be a JSON list of strings"
        labels = [" ".join(str(x).split()) for x in items]
    else:
        labels = [" ".join(x.split()) for x in value.split(sep)]
    if any(not x for x in labels):
        return (
            None,
            f'labels {_show(value)} hold an empty label (separator "{sep}" doubled, leading or trailing)',
        )
    return list(dict.fromkeys(labels)), None


def _bad_records_table(chunk: RawChunk, source: str) -> pa.Table:
    bad = chunk.unparseable
    return pa.table(
        {
            "row": pa.array([b.row for b in bad], pa.int64()),
            "source": pa.array([source] * len(bad), pa.string()),
            "reason": pa.array(["unparseable"] * len(bad), pa.string()),
            "detail": pa.array([b.detail for b in bad], pa.string()),
            "raw_text": pa.array([b.raw[:_RAW_CHARS] for b in bad], pa.string()),
            "raw_label": pa.nulls(len(bad), pa.string()),
        }
    )


def _answer_type(config: KeepfitConfig) -> tuple[str, pa.DataType]:
    if config.task == "regression":
        return TARGET, pa.float64()
    if config.task == "multi-label":
        return LABELS, pa.list_(pa.string())
    return LABEL, pa.string()


def _kept_schema(roles: ColumnRoles, config: KeepfitConfig, with_answer: bool) -> pa.Schema:
    fields = [pa.field(ROW, pa.int64()), pa.field(SOURCE, pa.string()), pa.field(TEXT, pa.string())]
    if with_answer:
        fields.append(pa.field(*_answer_type(config)))
    for present, name in ((roles.group, GROUP), (roles.time, TIME), (roles.split, SPLIT)):
        if present:
            fields.append(pa.field(name, pa.string()))
    fields += [pa.field(SLICE_PREFIX + s, pa.string()) for s in roles.slices]
    return pa.schema(fields)


def _has_answer(roles: ColumnRoles) -> bool:
    return bool(roles.label or roles.label_columns or roles.target)


_QUARANTINE_SCHEMA = pa.schema(
    [
        ("row", pa.int64()),
        ("source", pa.string()),
        ("reason", pa.string()),
        ("detail", pa.string()),
        ("raw_text", pa.string()),
        ("raw_label", pa.string()),
    ]
)


# --------------------------------------------------------------------------------------------------- variants


def _rare_variants(counts: dict[str, int]) -> tuple[dict[str, str], list[str]]:
    """Spellings to quarantine (variant -> frequent spelling) and warnings for variants kept as common."""
    groups: dict[str, list[str]] = {}
    for label in counts:
        groups.setdefault(_label_key(label), []).append(label)
    rare: dict[str, str] = {}
    warnings: list[str] = []
    for spellings in groups.values():
        if len(spellings) < 2:
            continue
        spellings.sort(key=lambda s: (-counts[s], s))
        top = spellings[0]
        for other in spellings[1:]:
            if counts[other] < VARIANT_RATIO * counts[top]:
                rare[other] = top
            else:
                warnings.append(
                    f'labels "{top}" ({counts[top]} rows) and "{other}" ({counts[other]} rows) differ only '
                    "in case or spacing; both are kept as separate labels. List the labels in keepfit.yaml "
                    "to choose."
                )
    return rare, warnings


def _variant_detail(value: str, top: str, counts: dict[str, int]) -> str:
    return (
        f'label "{value}" ({counts[value]} rows) looks like a rare variant of "{top}" ({counts[top]} rows) '
        f'(did you mean "{top}"?). Fix the rows, or list both in labels: in keepfit.yaml to keep them apart'
    )


def _quarantine_variants(
    kept: pa.Table, config: KeepfitConfig
) -> tuple[pa.Table, pa.Table | None, list[str]]:
    """Move rows carrying a rare spelling variant of a frequent label to the quarantine."""
    if config.task == "regression" or kept.num_rows == 0:
        return kept, None, []
    if config.task == "multi-label":
        if LABELS not in kept.column_names:
            return kept, None, []
        column = kept.column(LABELS).combine_chunks()
        flat = pc.list_flatten(column)
        parents = pc.list_parent_indices(column).to_numpy(zero_copy_only=False)
    else:
        if LABEL not in kept.column_names:
            return kept, None, []
        flat = kept.column(LABEL).combine_chunks()
        parents = np.arange(kept.num_rows)
    vc = pc.value_counts(flat)
    counts = dict(zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist(), strict=True))
    rare, warnings = _rare_variants(counts)
    if not rare:
        return kept, None, warnings
    is_rare = _np_mask(pc.is_in(flat, value_set=pa.array(list(rare), pa.string())))
    rows = np.unique(parents[is_rare])
    first_rare: dict[int, str] = {}
    flat_values = pc.take(flat, pa.array(np.flatnonzero(is_rare))).to_pylist()
    for parent, value in zip(parents[is_rare], flat_values, strict=True):
        first_rare.setdefault(int(parent), value)
    mask = np.zeros(kept.num_rows, dtype=bool)
    mask[rows] = True
    take = pa.array(rows)
    picked = kept.take(take)
    raw_label = (
        pc.cast(picked.column(LABEL), pa.string())
        if config.task != "multi-label"
        else pa.array([json.dumps(v) for v in picked.column(LABELS).to_pylist()], pa.string())
    )
    quarantine = pa.table(
        {
            "row": picked.column(ROW),
            "source": picked.column(SOURCE),
            "reason": pa.array(["unknown_label"] * len(rows), pa.string()),
            "detail": pa.array(
                [_variant_detail(first_rare[int(r)], rare[first_rare[int(r)]], counts) for r in rows],
                pa.string(),
            ),
            "raw_text": pc.utf8_slice_codeunits(picked.column(TEXT), 0, _RAW_CHARS),
            "raw_label": raw_label,
        }
    )
    return kept.filter(pa.array(~mask)), quarantine, warnings


# ------------------------------------------------------------------------------------------------ entry point


def load_and_validate(
    path: str | Path,
    config: KeepfitConfig,
    *,
    known_labels: list[str] | None = None,
    require_answer: bool = True,
    split: str | None = None,
    count_tokens: TokenCounter | None = None,
) -> CheckedRows:
    """Read ``path`` and keep or quarantine every record (see the module docstring for the rules).

    ``known_labels`` (else ``config.labels``) turns labels outside the set into ``unknown_label`` rows.
    ``require_answer=False`` lets a file without the label/target column through (for prediction); ``split``
    picks the split of a saved DatasetDict ('train' when empty). Raises DataError for file-level problems
    only. ``task: text-generation`` has rules of its own (:mod:`keepfit.data.chat`), where ``count_tokens``
    adds the token-length rule; ``task: image-classification`` reads an image folder or a table of image paths
    (:mod:`keepfit.data.images`).
    """
    if is_generation(config.task):
        from keepfit.data.chat import load_conversations  # chat builds on this module's checker

        return load_conversations(
            path, config, require_answer=require_answer, split=split, count_tokens=count_tokens
        )
    if is_image(config.task):
        from keepfit.data.images import load_images  # images build on this module's checker

        return load_images(path, config, known_labels=known_labels, require_answer=require_answer)
    src = open_source(path, config, split=split)
    roles, warnings = resolve_columns(src, config, require_answer=require_answer)
    known = (
        list(known_labels) if known_labels is not None else (list(config.labels) if config.labels else None)
    )
    checker = _ChunkChecker(config, roles, known, src.name)
    kept_parts: list[pa.Table] = []
    quarantine_parts: list[pa.Table] = []
    n_in = 0
    schema = _kept_schema(roles, config, _has_answer(roles))
    for chunk in src.chunks(roles.read_columns):
        n_in += len(chunk) + len(chunk.unparseable)
        kept, quarantined = checker.check(chunk)
        kept_parts.append(kept.cast(schema) if kept.num_rows else schema.empty_table())
        quarantine_parts.extend(quarantined)
    if n_in == 0:
        raise DataError(
            f"{src.name}: no data rows (columns found: {src.columns}). Expected at least one record after "
            "the header. Point to the file with the data."
        )
    kept_table = pa.concat_tables(kept_parts) if kept_parts else schema.empty_table()
    if known is None:
        kept_table, variants, variant_warnings = _quarantine_variants(kept_table, config)
        warnings += variant_warnings
        if variants is not None:
            quarantine_parts.append(variants)
    warnings += src.warnings
    if checker.n_nul:
        warnings.append(
            f"{src.name}: {checker.n_nul} text(s) contained NUL bytes; the NUL bytes were removed"
        )
    quarantine = _quarantine_frame(quarantine_parts)
    kept_frame = _kept_frame(kept_table, config)
    labels = _labels(kept_frame, config, known)
    return CheckedRows(kept_frame, quarantine, n_in, labels, warnings, src.name)


def _quarantine_frame(parts: list[pa.Table]) -> pd.DataFrame:
    table = (
        pa.concat_tables([p.cast(_QUARANTINE_SCHEMA) for p in parts])
        if parts
        else _QUARANTINE_SCHEMA.empty_table()
    )
    table = table.sort_by([("row", "ascending")])
    return table.to_pandas()


def _kept_frame(table: pa.Table, config: KeepfitConfig) -> pd.DataFrame:
    table = table.combine_chunks()
    if LABELS in table.column_names:
        lists = table.column(LABELS).to_pylist()
        frame = table.drop_columns([LABELS]).to_pandas()
        frame.insert(
            table.column_names.index(LABELS), LABELS, pd.Series(lists, dtype=object, index=frame.index)
        )
        return frame
    return table.to_pandas()


def _labels(kept: pd.DataFrame, config: KeepfitConfig, known: list[str] | None) -> list[str]:
    if config.task == "regression":
        return []
    if config.labels:
        return list(config.labels)
    if known is not None:
        return list(known)
    if config.task == "multi-label":
        if LABELS not in kept:
            return []
        return sorted({x for lst in kept[LABELS] for x in lst})
    if LABEL not in kept:
        return []
    return sorted(str(x) for x in kept[LABEL].unique())
