"""The prediction log: every answer the server gave, and the true labels that came back for some of them.

One SQLite file in WAL mode (``<store>/serve/predictions.sqlite`` by default). The server appends a batch of
answers in one transaction *before* it sends them, so a response a client received is on disk: a server killed
with SIGKILL loses at most the requests it had not answered yet. WAL with ``synchronous=NORMAL`` survives a
killed process (only a power cut can lose the last commits), and readers (`keepfit monitor`, `keepfit feedback
import`) never block the writer.

Tables:

- ``predictions``: ``request_id`` (unique per text; a request of n texts gets ids ``<id>`` .. or one per text),
  ``time`` (Unix seconds, UTC), ``model_version``, ``text`` (null when redacted), ``text_hash`` (SHA-256 of the
  text as sent), ``label`` (null when the model abstained), ``score`` (the top calibrated probability),
  ``abstained`` (0/1), ``probabilities`` (JSON list in the order of the version's labels), ``latency_ms``,
  ``meta`` (JSON object: the request's metadata, used as monitoring slices);
- ``models``: ``version`` -> ``labels`` (JSON list) and ``task``, one row per version that answered;
- ``feedback``: ``request_id`` -> the true ``label``, ``time``, ``source`` ("api" or the imported file); a later
  label for the same request replaces the earlier one.
"""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from keepfit.config import KeepfitConfig
from keepfit.errors import DataError
from keepfit.store import Store

__all__ = [
    "LoggedPrediction",
    "Feedback",
    "FeedbackResult",
    "PredictionLog",
    "text_hash",
    "log_path_for",
]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS predictions (
    request_id TEXT PRIMARY KEY,
    time REAL NOT NULL,
    model_version TEXT NOT NULL,
    text TEXT,
    text_hash TEXT NOT NULL,
    label TEXT,
    score REAL NOT NULL,
    abstained INTEGER NOT NULL,
    probabilities TEXT NOT NULL,
    latency_ms REAL NOT NULL,
    meta TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS predictions_time ON predictions(time);
CREATE TABLE IF NOT EXISTS models (
    version TEXT PRIMARY KEY,
    task TEXT NOT NULL,
    labels TEXT NOT NULL,
    first_seen REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS feedback (
    request_id TEXT PRIMARY KEY,
    label TEXT NOT NULL,
    time REAL NOT NULL,
    source TEXT NOT NULL
);
"""


def log_path_for(config: KeepfitConfig) -> Path:
    """The prediction log of the project: ``serve.log_path``, else ``<store>/serve/predictions.sqlite``."""
    return Path(config.serve.log_path) if config.serve.log_path else Store.at(config.store).predictions_db


def text_hash(text: str) -> str:
    """SHA-256 (hex) of a text: what the log keeps of it when redacted."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class LoggedPrediction:
    """One answered text. ``label`` is None when the model abstained; ``probabilities`` follow the labels
    of ``model_version`` (see :meth:`PredictionLog.record_model`)."""

    request_id: str
    time: float
    model_version: str
    text: str
    label: str | None
    score: float
    probabilities: Sequence[float]
    latency_ms: float
    abstained: bool = False
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Feedback:
    request_id: str
    label: str
    time: float | None = None


@dataclass
class FeedbackResult:
    """What an import kept: ``accepted`` rows, and ``rejected`` as (row number from 1, request id, reason)."""

    accepted: int = 0
    replaced: int = 0
    rejected: list[tuple[int, str, str]] = field(default_factory=list)


class PredictionLog:
    """The log in ``path`` (created with its folder when missing). Thread-safe; one connection per instance.

    ``redact``: keep only the hash of each text (the column ``text`` stays null)."""

    def __init__(self, path: str | Path, *, redact: bool = False, readonly: bool = False) -> None:
        self.path = Path(path)
        self.redact = redact
        self._lock = threading.Lock()
        if readonly:
            if not self.path.exists():
                raise DataError(
                    f"No prediction log at {self.path}: nothing has been served in this project yet. "
                    "Run `keepfit serve` and send requests, or pass the log's path (serve.log_path)."
                )
            uri = f"file:{self.path}?mode=ro"
            self._db = sqlite3.connect(uri, uri=True, check_same_thread=False, timeout=30)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path), check_same_thread=False, timeout=30, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        self._known_versions: set[str] = set()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> PredictionLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing ---------------------------------------------------------------------------------------------

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db, self._lock)

    def record_model(self, version: str, task: str, labels: Sequence[str]) -> None:
        """Remember the label order of ``version`` (once; what ``probabilities`` columns mean)."""
        if version in self._known_versions:
            return
        with self._transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO models(version, task, labels, first_seen) VALUES (?, ?, ?, ?)",
                (str(version), task, json.dumps(list(labels)), time.time()),
            )
        self._known_versions.add(version)

    def append(self, rows: Iterable[LoggedPrediction]) -> int:
        """Write ``rows`` in one transaction (durable when this returns); returns how many were written."""
        values = [
            (
                r.request_id,
                float(r.time),
                str(r.model_version),
                None if self.redact else r.text,
                text_hash(r.text),
                r.label,
                float(r.score),
                int(bool(r.abstained)),
                json.dumps([round(float(p), 6) for p in r.probabilities]),
                float(r.latency_ms),
                json.dumps(r.meta or {}, ensure_ascii=False, default=str),
            )
            for r in rows
        ]
        if not values:
            return 0
        with self._transaction() as db:
            db.executemany("INSERT INTO predictions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", values)
        return len(values)

    def add_feedback(
        self, items: Iterable[Feedback], *, source: str = "api", declared: Iterable[str] = ()
    ) -> FeedbackResult:
        """Store the true labels of logged requests. Rows naming an unknown request id, or a label neither the
        version that answered nor ``declared`` (the project's ``labels:``, where a new label is declared before
        the model learns it) knows, are rejected with the reason; the others are kept (a later label for the
        same request replaces the earlier one)."""
        result = FeedbackResult()
        declared = set(declared)
        items = list(items)
        with self._transaction() as db:
            models = {
                version: (task, set(json.loads(labels)))
                for version, task, labels in db.execute("SELECT version, task, labels FROM models")
            }
            for number, item in enumerate(items, start=1):
                rid, label = str(item.request_id).strip(), str(item.label).strip()
                row = db.execute(
                    "SELECT model_version, (SELECT 1 FROM feedback f WHERE f.request_id = p.request_id) "
                    "FROM predictions p WHERE request_id = ?",
                    (rid,),
                ).fetchone()
                if row is None:
                    result.rejected.append((number, rid, "unknown request id (no logged prediction has it)"))
                    continue
                task, known = models.get(row[0], ("single-label", set()))
                problem = _label_problem(label, task, known | declared, row[0])
                if problem:
                    result.rejected.append((number, rid, problem))
                    continue
                db.execute(
                    "INSERT OR REPLACE INTO feedback(request_id, label, time, source) VALUES (?, ?, ?, ?)",
                    (rid, label, float(item.time if item.time is not None else time.time()), source),
                )
                result.accepted += 1
                result.replaced += int(row[1] is not None)
        return result

    # -- reading ---------------------------------------------------------------------------------------------

    def models(self) -> dict[str, dict[str, Any]]:
        """Every version that answered: ``{version: {"task": ..., "labels": [...]}}``."""
        with self._lock:
            rows = self._db.execute("SELECT version, task, labels FROM models").fetchall()
        return {v: {"task": t, "labels": json.loads(labels)} for v, t, labels in rows}

    def predictions(
        self, *, since: float | None = None, until: float | None = None, limit: int | None = None
    ) -> pd.DataFrame:
        """Logged answers with ``since <= time < until`` (Unix seconds), oldest first; with ``limit`` the newest
        ``limit`` of them. Columns as in the table, plus ``feedback_label`` (null where none came);
        ``probabilities`` and ``meta`` decoded."""
        where, args = _window(since, until)
        query = (
            "SELECT p.*, f.label AS feedback_label FROM predictions p LEFT JOIN feedback f USING (request_id)"
            f"{where} ORDER BY p.time DESC" + (f" LIMIT {int(limit)}" if limit else "")
        )
        with self._lock:
            frame = pd.read_sql_query(query, self._db, params=args)
        frame = frame.iloc[::-1].reset_index(drop=True)
        frame["probabilities"] = [json.loads(x) for x in frame["probabilities"]]
        frame["meta"] = [json.loads(x) for x in frame["meta"]]
        frame["abstained"] = frame["abstained"].astype(bool)
        return frame

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM predictions").fetchone()[0])

    def feedback_rows(self, *, since: float | None = None, until: float | None = None) -> pd.DataFrame:
        """Feedback joined with its prediction: ``request_id, text, text_hash, label`` (the true one),
        ``predicted``, ``model_version``, ``time`` (of the feedback), ``source``, ``meta`` (the request's
        metadata, decoded), oldest first."""
        where, args = _window(since, until, column="f.time")
        query = (
            "SELECT f.request_id, p.text, p.text_hash, f.label, p.label AS predicted, p.model_version, f.time, "
            f"f.source, p.meta FROM feedback f JOIN predictions p USING (request_id){where} ORDER BY f.time"
        )
        with self._lock:
            frame = pd.read_sql_query(query, self._db, params=args)
        frame["meta"] = [json.loads(x) for x in frame["meta"]]
        return frame


def _label_problem(label: str, task: str, known: set[str], version: str) -> str | None:
    """Why ``label`` cannot be the truth for an answer of ``version`` (None when it can): regression takes a
    finite number, multi-label labels joined by ``|``, single-label one known label."""
    if task == "regression":
        try:
            value = float(label)
        except ValueError:
            value = float("nan")
        return None if math.isfinite(value) else f"not a number: {label!r} (version {version} predicts a number)"
    parts = [x.strip() for x in label.split("|")] if task == "multi-label" else [label]
    unknown = [x for x in parts if x not in known] if label else [label]
    if not unknown:
        return None
    return (
        f"unknown label {unknown[0]!r} (version {version} knows {len(known)} labels: {_preview(sorted(known))}; "
        "declare a new label in keepfit.yaml's labels: first)"
    )


def _window(since: float | None, until: float | None, column: str = "p.time") -> tuple[str, list[float]]:
    clauses, args = [], []
    if since is not None:
        clauses.append(f"{column} >= ?")
        args.append(float(since))
    if until is not None:
        clauses.append(f"{column} < ?")
        args.append(float(until))
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), args


def _preview(values: list[str], limit: int = 8) -> str:
    shown = ", ".join(values[:limit])
    return shown + (f", ... ({len(values) - limit} more)" if len(values) > limit else "")


class _Transaction:
    """``BEGIN IMMEDIATE`` .. ``COMMIT`` under the instance lock; rolled back on an exception."""

    def __init__(self, db: sqlite3.Connection, lock: threading.Lock) -> None:
        self._db, self._lock = db, lock

    def __enter__(self) -> sqlite3.Connection:
        self._lock.acquire()
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._lock.release()
            raise
        return self._db

    def __exit__(self, exc_type: type | None, *exc: object) -> None:
        try:
            self._db.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            self._lock.release()

