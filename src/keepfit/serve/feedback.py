"""Feedback in bulk, and the next update's batch made from feedback.

``import_feedback``: a file of (request id, true label) rows into the prediction log; rows naming an unknown
request or label are kept aside in a file with their reason, nothing is dropped silently.

``feedback_batch``: the feedback that came since the last batch made from it, as a data file (text, label) for
`keepfit update`: the update checks it like any data (quarantine, duplicates of earlier data, leakage) and
gates the candidate as usual. Where the log holds only hashes (``serve.redact``), there is no text to train on
and those rows are counted, not used. ``mark_used`` moves the cutoff once the update ran, so the next batch
starts after it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from keepfit._io import atomic_write_bytes, atomic_write_text
from keepfit.errors import DataError
from keepfit.serve.log import Feedback, FeedbackResult, PredictionLog

__all__ = ["ImportReport", "FeedbackBatch", "import_feedback", "feedback_batch", "mark_used"]


@dataclass(frozen=True)
class ImportReport:
    rows: int
    result: FeedbackResult
    rejected_file: Path | None


@dataclass(frozen=True)
class FeedbackBatch:
    """A data file of feedback rows: ``rows`` written, ``redacted`` left out (no text), ``cutoff`` the feedback
    time up to which it reaches (what :func:`mark_used` records)."""

    path: Path
    rows: int
    redacted: int
    cutoff: float
    since: float | None


def import_feedback(
    log: PredictionLog,
    path: Path,
    rejected_dir: Path,
    *,
    id_column: str = "request_id",
    label_column: str = "label",
    declared: Sequence[str] = (),
) -> ImportReport:
    """Add the true labels in ``path`` (CSV/TSV/JSONL/Parquet) to ``log``; rejected rows go to a CSV in
    ``rejected_dir`` with a ``reason`` column. ``declared``: labels accepted beyond the answering version's
    (the project's ``labels:``). Raises DataError when a column is missing."""
    from keepfit.data.load import open_source

    frame = open_source(Path(path)).to_pandas()
    missing = [c for c in (id_column, label_column) if c not in frame.columns]
    if missing:
        raise DataError(
            f"{path} has no column(s) {missing} (columns: {list(frame.columns)}). Expected one column with the "
            "request id a prediction returned and one with the true label; name them with --id-column and "
            "--label-column."
        )
    ids = frame[id_column].astype("string").fillna("")
    labels = frame[label_column].astype("string").fillna("")
    items = [Feedback(rid, label) for rid, label in zip(ids, labels, strict=True)]
    result = log.add_feedback(items, source=f"file:{Path(path).name}", declared=declared)
    rejected_file = None
    if result.rejected:
        rows = frame.iloc[[number - 1 for number, _, _ in result.rejected]].copy()
        rows["reason"] = [reason for _, _, reason in result.rejected]
        rejected_dir.mkdir(parents=True, exist_ok=True)
        rejected_file = rejected_dir / f"{Path(path).stem}-rejected-{time.strftime('%Y%m%dT%H%M%S')}.csv"
        atomic_write_bytes(rejected_file, rows.to_csv(index=False).encode())
    return ImportReport(len(frame), result, rejected_file)


def _cutoff_file(folder: Path) -> Path:
    return folder / "used.json"


def last_cutoff(folder: Path) -> float | None:
    """The feedback time the last batch reached (None before the first)."""
    path = _cutoff_file(folder)
    if not path.exists():
        return None
    try:
        return float(json.loads(path.read_text())["cutoff"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise DataError(f"{path} is unreadable ({err}); delete it to build a batch from all feedback.") from None


def feedback_batch(
    log: PredictionLog,
    folder: Path,
    *,
    text_column: str,
    label_column: str,
    since: float | None = None,
    required: Sequence[str] = (),
) -> FeedbackBatch:
    """Write the feedback received after ``since`` (default: after the last batch's cutoff) to a CSV in
    ``folder``, one row per text: its text, its true label, and its request metadata as further columns (the
    project's group, time and slice columns come from there; ``required`` names those that must be present).
    Raises DataError when there is no feedback, or a required column is missing from the metadata."""
    since = last_cutoff(folder) if since is None else since
    rows = log.feedback_rows()
    if since is not None:
        rows = rows[rows["time"] > since]
    if rows.empty:
        after = f" after {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(since))} UTC" if since else ""
        raise DataError(
            f"No feedback{after} in {log.path}. Send true labels with POST /feedback or `keepfit feedback "
            "import FILE` first, or pass --data FILE."
        )
    redacted = int(rows["text"].isna().sum())
    usable = rows[rows["text"].notna()]
    if usable.empty:
        raise DataError(
            f"The {len(rows)} feedback rows have no text: the log keeps only hashes (serve.redact is true). "
            "Export the texts with their labels from your own records and pass them with --data FILE."
        )
    folder.mkdir(parents=True, exist_ok=True)
    cutoff = float(rows["time"].max())
    out = pd.DataFrame({text_column: usable["text"].to_numpy(), label_column: usable["label"].to_numpy()})
    extra = pd.DataFrame(list(usable["meta"])).drop(columns=[text_column, label_column], errors="ignore")
    missing = [c for c in required if c not in extra.columns]
    if missing:
        raise DataError(
            f"The config names data column(s) {missing} (group, time or slice columns), but the feedback rows' "
            f"requests carried no such metadata (they carried {sorted(extra.columns)}). Send them with each text "
            "(POST /predict {\"texts\": [...], \"metadata\": [{...}, ...]}), or leave them out of the config "
            "with --set (e.g. data.group_column=null)."
        )
    out = pd.concat([out, extra.reset_index(drop=True)], axis=1)
    path = folder / f"feedback-{time.strftime('%Y%m%dT%H%M%S', time.gmtime(cutoff))}.csv"
    atomic_write_bytes(path, out.to_csv(index=False).encode())
    return FeedbackBatch(path, len(out), redacted, cutoff, since)


def mark_used(batch: FeedbackBatch, folder: Path) -> None:
    """Record that feedback up to ``batch.cutoff`` went into an update."""
    atomic_write_text(_cutoff_file(folder), json.dumps({"cutoff": batch.cutoff, "batch": str(batch.path)}) + "\n")
