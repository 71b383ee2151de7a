"""Label issues for people to review: found in the training data at fit time, and in each screened batch.

- :func:`find_training_label_issues`: out-of-fold probabilities of a cheap model (TF-IDF 1-2 grams + LinearSVC,
  sigmoid-calibrated; 5 folds) fed to ``cleanlab.filter.find_label_issues``. Seconds on 10k rows.
- :func:`write_label_issues`: flagged rows into a folder (a run or snapshot folder) as ``label_issues.parquet``.
- :func:`collect_label_issues`: every flagged row of a project store, with where it came from and whether a
  person has decided on it: ``label_issues.parquet`` under ``runs/*/`` and ``snapshots/*/``, and the rows a
  snapshot quarantined with reason ``label_issue`` that no such file describes.
- :func:`write_review_csv` / :func:`render_review_html`: the review list as a CSV to fill in (``accept`` and
  optionally ``corrected_label``) and as a page.
- :func:`accept_reviewed`: a filled-in review CSV becomes a normal data file under ``<store>/accepted/`` that the
  next ``keepfit update --data`` takes, so accepted rows enter the data the one way rows do, through the gate.
  The decisions are kept next to it; :func:`accepted_pairs` gives the screen the rows a person has vouched for.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from keepfit._io import atomic_write_bytes, atomic_write_text
from keepfit.config import KeepfitConfig
from keepfit.data.screen import ISSUE_COLUMNS, LABEL_ISSUE
from keepfit.data.validate import suggest_label
from keepfit.errors import DataError
from keepfit.store import Store
from keepfit.types import GROUP, LABEL, ROW, SLICE_PREFIX, SOURCE, SPLIT, TEXT, TIME, Task, is_single_label

__all__ = [
    "TrainingLabelIssues",
    "AcceptResult",
    "LABEL_ISSUES_FILE",
    "ACCEPTED_DIR",
    "REVIEW_COLUMNS",
    "find_training_label_issues",
    "write_label_issues",
    "collect_label_issues",
    "write_review_csv",
    "render_review_html",
    "accept_reviewed",
    "accepted_pairs",
]

LABEL_ISSUES_FILE = "label_issues.parquet"
ACCEPTED_DIR = "accepted"  # under the store root
_DECISIONS_SUFFIX = ".decisions.csv"
REVIEW_COLUMNS = ["issue", "status", "origin", "where", *ISSUE_COLUMNS, "detail"]
_TRUE = {"yes", "y", "true", "1", "x", "accept", "accepted"}
_FALSE = {"no", "n", "false", "0", "reject", "rejected"}


@dataclass(frozen=True)
class TrainingLabelIssues:
    """Rows of a training table whose label an out-of-fold model confidently disputes.

    ``issues``: :data:`keepfit.data.screen.ISSUE_COLUMNS` (reason ``"out_of_fold"``; ``confidence`` is the
    model's probability of ``suspected_label``) plus ``split``/group/time/slice columns the table has;
    ``n_rows``: rows given; ``n_checked``: rows of labels with enough rows to be judged; ``accuracy``:
    out-of-fold accuracy of the cheap model on those (NaN when nothing was checked); ``note``: why rows or the
    whole table were not checked, else empty.
    """

    issues: pd.DataFrame
    n_rows: int
    n_checked: int
    accuracy: float
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_rows": self.n_rows,
            "n_checked": self.n_checked,
            "n_issues": len(self.issues),
            "out_of_fold_accuracy": None if np.isnan(self.accuracy) else round(float(self.accuracy), 4),
            "by_label": {str(k): int(v) for k, v in self.issues[LABEL].value_counts().items()},
            "note": self.note,
        }


@dataclass(frozen=True)
class AcceptResult:
    """What :func:`accept_reviewed` did. ``path`` is the data file written (None when no row needed one);
    ``n_accepted`` rows kept as labelled, ``n_corrected`` with a new label, ``n_rejected`` left out;
    ``n_already_in_data`` accepted fit-time rows that are in the training data already; ``n_relabels`` corrected
    fit-time rows, which the update applies only with ``update.relabels: apply``; ``command`` the next step."""

    path: Path | None
    n_rows: int
    n_accepted: int
    n_corrected: int
    n_rejected: int
    n_already_in_data: int
    n_relabels: int
    command: str


def _passthrough(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c in (SPLIT, GROUP, TIME) or str(c).startswith(SLICE_PREFIX)]


def _empty_issues(frame: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(columns=ISSUE_COLUMNS + _passthrough(frame))


def find_training_label_issues(
    frame: pd.DataFrame,
    task: Task,
    labels: list[str],
    seed: int,
    *,
    folds: int = 5,
    min_rows_per_label: int = 10,
) -> TrainingLabelIssues:
    """Label issues in a canonical table (row, source, text, label, ...) from out-of-fold predictions.

    Each row is scored by a TF-IDF (1-2 grams) + LinearSVC model (sigmoid-calibrated) trained on the other
    ``folds - 1`` folds; cleanlab's ``find_label_issues`` (prune by noise rate) picks the rows whose label is
    confidently contradicted. Labels with fewer than ``min_rows_per_label`` rows are left out (too few rows to
    learn from in every fold; the note says which). Single-label tasks only: for other tasks nothing is checked
    and the note says so. ``seed`` fixes the folds.
    """
    n = len(frame)
    if not is_single_label(task):
        return TrainingLabelIssues(_empty_issues(frame), n, 0, float("nan"),
                                   f"label issues are searched for single-label tasks only; this is a {task} task")
    missing = [c for c in (ROW, SOURCE, TEXT, LABEL) if c not in frame.columns]
    if missing:
        raise DataError(f"cannot search for label issues: the table lacks {missing} (found {list(frame.columns)}); "
                        "pass a canonical row table such as a snapshot's train split.")
    counts = frame[LABEL].astype(str).value_counts()
    judged = counts[counts >= max(min_rows_per_label, 2 * folds)].index
    rare = sorted(set(counts.index) - set(judged))
    note = (f"{len(rare)} label(s) with fewer than {max(min_rows_per_label, 2 * folds)} rows not checked: "
            f"{', '.join(rare[:10])}{' ...' if len(rare) > 10 else ''}") if rare else ""
    unknown = sorted(set(counts.index) - set(labels))
    if unknown:
        raise DataError(f"cannot search for label issues: labels {unknown[:5]} are not among the {len(labels)} "
                        "labels given; pass the snapshot's labels.")
    mask = frame[LABEL].astype(str).isin(judged).to_numpy()
    if len(judged) < 2:
        return TrainingLabelIssues(_empty_issues(frame), n, 0, float("nan"),
                                   note or "fewer than two labels with enough rows: nothing to compare")
    probs, classes = _out_of_fold_probs(frame.loc[mask, TEXT].astype(str).tolist(),
                                        frame.loc[mask, LABEL].astype(str).to_numpy(), folds, seed)
    issues = _cleanlab_issues(frame.loc[mask], probs, classes)
    given = pd.Index(classes).get_indexer(frame.loc[mask, LABEL].astype(str))
    accuracy = float((probs.argmax(axis=1) == given).mean())
    return TrainingLabelIssues(issues, n, int(mask.sum()), accuracy, note)


def _out_of_fold_probs(texts: list[str], y: np.ndarray, folds: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.svm import LinearSVC

    # LinearSVC is ~10x faster than LogisticRegression here (7 s vs 72 s on banking77's 10k rows, 2 cores) at
    # the same out-of-fold accuracy; the sigmoid calibration gives cleanlab probabilities
    model = make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
        CalibratedClassifierCV(LinearSVC(C=0.5, random_state=seed), cv=3, method="sigmoid"),
    )
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)  # per-fold class-count notes from scikit-learn
        probs = cross_val_predict(model, texts, y, cv=cv, method="predict_proba", n_jobs=1)
    return probs, np.unique(y)


def _cleanlab_issues(frame: pd.DataFrame, probs: np.ndarray, classes: np.ndarray) -> pd.DataFrame:
    from cleanlab.filter import find_label_issues

    given = pd.Index(classes).get_indexer(frame[LABEL].astype(str))
    mask = find_label_issues(given, probs, filter_by="prune_by_noise_rate", n_jobs=1)
    top = probs.argmax(axis=1)
    picked = frame.iloc[np.flatnonzero(mask)]
    passthrough = _passthrough(frame)
    return pd.DataFrame(
        {
            ROW: picked[ROW].astype("int64").to_numpy(),
            SOURCE: picked[SOURCE].astype(str).to_numpy(),
            TEXT: picked[TEXT].astype(str).to_numpy(),
            LABEL: picked[LABEL].astype(str).to_numpy(),
            "suspected_label": classes[top[mask]].astype(str),
            "confidence": probs[mask, top[mask]].astype(float),
            "reason": "out_of_fold",
            "block": "",
            **{c: picked[c].to_numpy() for c in passthrough},
        },
        columns=ISSUE_COLUMNS + passthrough,
    ).sort_values("confidence", ascending=False, kind="stable").reset_index(drop=True)


def write_label_issues(
    issues: pd.DataFrame, folder: str | Path, *, origin: str, snapshot_id: str | None = None
) -> Path:
    """Write flagged rows (:data:`~keepfit.data.screen.ISSUE_COLUMNS`, e.g. ``ScreenResult.flagged`` or
    ``TrainingLabelIssues.issues``) to ``folder/label_issues.parquet``, atomically. ``origin`` names the finder
    (``"fit"`` or ``"screen"``); an empty table is written too, so "looked and found nothing" is on record."""
    missing = [c for c in ISSUE_COLUMNS if c not in issues.columns]
    if missing:
        raise DataError(f"cannot store label issues: the table lacks {missing}; expected {ISSUE_COLUMNS}.")
    table = issues.assign(origin=origin, snapshot=snapshot_id or "",
                          found=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    for column in (*_passthrough(table), TEXT, LABEL, SOURCE, "suspected_label", "reason", "block"):
        table[column] = table[column].astype(str)
    table[ROW] = table[ROW].astype("int64")
    table["confidence"] = table["confidence"].astype(float)
    import io

    buffer = io.BytesIO()
    table.reset_index(drop=True).to_parquet(buffer, index=False)
    return atomic_write_bytes(Path(folder) / LABEL_ISSUES_FILE, buffer.getvalue())


def _issue_id(text: str, label: str) -> str:
    return hashlib.sha256(f"{text}\x00{label}".encode()).hexdigest()[:12]


def _stored_issues(root: Path) -> list[pd.DataFrame]:
    parts = []
    for path in sorted([*root.glob(f"runs/*/{LABEL_ISSUES_FILE}"), *root.glob(f"snapshots/*/{LABEL_ISSUES_FILE}")]):
        table = pd.read_parquet(path)
        if len(table):
            parts.append(table.assign(where=str(path.parent.relative_to(root)), _mtime=path.stat().st_mtime))
    return parts


def _quarantined_issues(root: Path) -> list[pd.DataFrame]:
    parts = []
    for path in sorted(root.glob("snapshots/*/quarantine.parquet")):
        q = pd.read_parquet(path)
        q = q[q["reason"] == LABEL_ISSUE] if "reason" in q.columns else q.iloc[0:0]
        if len(q):
            parts.append(pd.DataFrame({
                ROW: q[ROW].astype("int64"), SOURCE: q[SOURCE].astype(str), TEXT: q["raw_text"].astype(str),
                LABEL: q["raw_label"].astype(str), "suspected_label": "", "confidence": np.nan,
                "reason": LABEL_ISSUE, "block": "", "detail": q["detail"].astype(str), "origin": "screen",
                "where": str(path.parent.relative_to(root)), "_mtime": path.stat().st_mtime,
            }))
    return parts


def _decisions(root: Path) -> pd.DataFrame:
    parts = [pd.read_csv(p, dtype=str, keep_default_na=False)
             for p in sorted((root / ACCEPTED_DIR).glob(f"*{_DECISIONS_SUFFIX}"))]
    if not parts:
        return pd.DataFrame(columns=["issue", "status", TEXT, LABEL])
    return pd.concat(parts, ignore_index=True).drop_duplicates("issue", keep="last")


def _detail(r: Any) -> str:
    who = "the champion" if r.origin == "screen" else "an out-of-fold model"
    said = f"{who} says {r.suspected_label!r} (p={r.confidence:.2f}) for this row labelled {r.label!r}"
    return f"{said}; part of block {r.block}" if r.block else said


def collect_label_issues(store_root: str | Path) -> pd.DataFrame:
    """Every flagged row of the project store, newest finding first, one row per (text, label).

    Columns :data:`REVIEW_COLUMNS` plus any split/group/time/slice columns the findings carry: ``issue`` a
    stable id (from text and label) that the review CSV refers to; ``status`` ``open``, ``accepted``,
    ``corrected`` or ``rejected`` (decided by :func:`accept_reviewed`); ``origin`` ``fit`` or ``screen``;
    ``where`` the folder it was found in, relative to the store.
    """
    root = Path(store_root)
    rich = _stored_issues(root)
    described = {(r.source, int(r.row), r.text) for t in rich for r in t[[SOURCE, ROW, TEXT]].itertuples()}
    bare = [t[[(s, int(r), x) not in described for s, r, x in zip(t[SOURCE], t[ROW], t[TEXT], strict=True)]]
            for t in _quarantined_issues(root)]
    parts = [p for p in [*rich, *bare] if len(p)]
    if not parts:
        return pd.DataFrame(columns=REVIEW_COLUMNS)
    table = pd.concat(parts, ignore_index=True)
    table["detail"] = table["detail"].fillna("") if "detail" in table.columns else ""
    table["detail"] = [d or _detail(r) for d, r in zip(table["detail"], table.itertuples(index=False), strict=True)]
    table = table.sort_values("_mtime", ascending=False, kind="stable").drop_duplicates([TEXT, LABEL])
    table["issue"] = [_issue_id(t, lab) for t, lab in zip(table[TEXT], table[LABEL], strict=True)]
    decided = _decisions(root).set_index("issue")["status"]
    table["status"] = table["issue"].map(decided).fillna("open")
    extra = [c for c in _passthrough(table) if c not in REVIEW_COLUMNS]
    return table[REVIEW_COLUMNS + extra].reset_index(drop=True)


def write_review_csv(issues: pd.DataFrame, path: str | Path) -> Path:
    """The review list as a CSV to fill in: ``accept`` (yes/no) and ``corrected_label`` (empty keeps the label)
    come first, so a spreadsheet shows them next to the id."""
    table = issues.copy()
    table.insert(1, "accept", "")
    table.insert(2, "corrected_label", "")
    return atomic_write_text(Path(path), table.to_csv(index=False))


_HTML = """<!doctype html>
<html><head><meta charset="utf-8"><title>keepfit: label issues</title>
<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}th{background:#eee}
.block{background:#fff3e0}</style></head><body>
<h1>Label issues</h1>
<p>{{ n }} flagged row(s), {{ n_open }} open. Fill in <code>accept</code> (and <code>corrected_label</code>) in the
review CSV (<code>keepfit data review --csv FILE</code>), then run <code>keepfit data accept FILE</code>.</p>
{% if n %}<table><tr>{% for c in columns %}<th>{{ c }}</th>{% endfor %}</tr>
{% for r in rows %}<tr{% if r.block %} class="block"{% endif %}>{% for c in columns %}<td>{{ r[c] }}</td>
{% endfor %}</tr>
{% endfor %}</table>{% endif %}
</body></html>
"""


def render_review_html(issues: pd.DataFrame) -> str:
    """The review list as a self-contained page (Jinja2 with autoescape: texts are shown, never run)."""
    from jinja2 import Environment

    columns = ["issue", "status", "origin", SOURCE, ROW, TEXT, LABEL, "suspected_label", "confidence", "reason",
               "block", "where"]
    rows = issues.assign(confidence=issues["confidence"].map(lambda x: "" if pd.isna(x) else f"{x:.2f}"))
    template = Environment(autoescape=True).from_string(_HTML)
    return template.render(columns=columns, rows=rows[columns].fillna("").to_dict("records"), n=len(issues),
                           n_open=int((issues["status"] == "open").sum()))


def _read_reviewed(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise DataError(f"{path} does not exist; write the review CSV with `keepfit data review --csv {path}`.")
    reviewed = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in ("issue", "accept") if c not in reviewed.columns]
    if missing:
        raise DataError(
            f"{path}: expected the columns of a review CSV, {missing} missing (found {list(reviewed.columns)}). "
            "Write it with `keepfit data review --csv FILE`, fill in accept (yes/no) and optionally "
            "corrected_label, and keep the issue column."
        )
    if "corrected_label" not in reviewed.columns:
        reviewed["corrected_label"] = ""
    reviewed["accept"] = reviewed["accept"].str.strip().str.lower()
    reviewed["corrected_label"] = reviewed["corrected_label"].str.strip()
    bad = reviewed.loc[~reviewed["accept"].isin(_TRUE | _FALSE | {""})]
    if len(bad):
        lines = ", ".join(f"line {i + 2}: {v!r}" for i, v in bad["accept"].head(5).items())
        raise DataError(f"{path}: accept must be yes or no (empty: not decided yet); found {lines}. "
                        "Fix those cells.")
    return reviewed


def _known_labels(config: KeepfitConfig, store: Store, issues: pd.DataFrame) -> list[str]:
    if config.labels:
        return list(config.labels)
    from keepfit.data.snapshot import load_snapshot

    if store.head_file.exists():
        return list(load_snapshot(store, "HEAD").labels)
    return sorted(set(issues[LABEL]) | set(issues["suspected_label"]) - {""})


def _check_reviewed(path: Path, reviewed: pd.DataFrame, issues: pd.DataFrame, known: list[str]) -> None:
    problems = []
    unknown_ids = reviewed.loc[~reviewed["issue"].isin(set(issues["issue"])), "issue"]
    if len(unknown_ids):
        problems.append(f"{len(unknown_ids)} row(s) name no label issue of this project (issue "
                        f"{', '.join(map(repr, unknown_ids.head(3)))}); keep the issue column as "
                        "`keepfit data review --csv` wrote it")
    repeated = reviewed.loc[reviewed["issue"].duplicated(), "issue"]
    if len(repeated):
        problems.append(f"issue {', '.join(map(repr, repeated.head(3)))} appears more than once")
    corrected = reviewed.loc[reviewed["corrected_label"] != "", "corrected_label"]
    for value in sorted(set(corrected) - set(known))[:5]:
        guess = suggest_label(value, known)
        hint = f' (did you mean "{guess}"?)' if guess else ""
        problems.append(f'corrected_label "{value}" is not one of the {len(known)} known labels{hint}')
    if problems:
        raise DataError(f"{path}: " + "; ".join(problems) + ". Fix the file and run `keepfit data accept` again.")


def _data_file(rows: pd.DataFrame, config: KeepfitConfig) -> pd.DataFrame:
    """Accepted rows under the project's own column names, so ``keepfit update --data`` reads them as it reads
    any batch."""
    d = config.data
    columns: dict[str, Any] = {d.text_column: rows[TEXT].to_numpy(), d.label_column or LABEL: rows["final"].to_numpy()}
    for canonical, name in ((GROUP, d.group_column), (TIME, d.time_column)):
        if name:
            columns[name] = rows[canonical].to_numpy() if canonical in rows else ""
    for name in d.slice_columns:
        column = SLICE_PREFIX + name
        columns[name] = rows[column].to_numpy() if column in rows else ""
    return pd.DataFrame(columns)


def accept_reviewed(
    reviewed: str | Path, config: KeepfitConfig, *, labels: Collection[str] | None = None
) -> AcceptResult:
    """Turn a filled-in review CSV into a data file of the accepted rows, for the next ``keepfit update``.

    ``reviewed`` is the CSV from :func:`write_review_csv` with ``accept`` (yes/no; empty leaves the row open)
    and optionally ``corrected_label`` filled in; any subset of its rows may be given. Screened rows (they never
    reached the data) are written as accepted or corrected. Fit-time rows are in the training data already: accepted as
    labelled they need nothing, corrected they are written as relabels (applied by an update with
    ``update.relabels: apply``). The file is ``<store>/accepted/<UTC stamp>.csv`` with the decisions next to it
    (``.decisions.csv``), which mark the issues decided and let the screen pass those rows. ``labels``: the
    known labels (default: ``config.labels``, else the HEAD snapshot's).
    """
    path = Path(reviewed)
    store = Store.at(config.store)
    issues = collect_label_issues(store.root)
    table = _read_reviewed(path)
    known = list(labels) if labels is not None else _known_labels(config, store, issues)
    _check_reviewed(path, table, issues, known)
    table = table[table["accept"] != ""]  # undecided rows stay open for a later review
    merged = table[["issue", "accept", "corrected_label"]].merge(issues, on="issue", how="left")
    accepted = merged["accept"].isin(_TRUE)
    corrected = accepted & (merged["corrected_label"] != "") & (merged["corrected_label"] != merged[LABEL])
    merged["final"] = np.where(corrected, merged["corrected_label"], merged[LABEL])
    merged["status"] = np.where(corrected, "corrected", np.where(accepted, "accepted", "rejected"))
    from_fit = merged["origin"] == "fit"
    write = accepted & (~from_fit | corrected)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    folder = store.root / ACCEPTED_DIR
    out = None
    if write.any():
        out = atomic_write_text(folder / f"{stamp}.csv", _data_file(merged[write], config).to_csv(index=False))
    decisions = merged[["issue", "status", TEXT, "final"]].rename(columns={"final": LABEL})
    atomic_write_text(folder / f"{stamp}{_DECISIONS_SUFFIX}", decisions.to_csv(index=False))
    n_relabels = int((corrected & from_fit).sum())
    if out is None:
        command = "nothing to add to the data: no accepted row needs it"
    else:
        flag = " --set update.relabels=apply" if n_relabels else ""
        command = f"keepfit update --data {out}{flag}"
    return AcceptResult(
        path=out,
        n_rows=int(write.sum()),
        n_accepted=int((accepted & ~corrected).sum()),
        n_corrected=int(corrected.sum()),
        n_rejected=int((~accepted).sum()),
        n_already_in_data=int((accepted & ~corrected & from_fit).sum()),
        n_relabels=n_relabels,
        command=command,
    )


def accepted_pairs(store_root: str | Path) -> set[tuple[str, str]]:
    """(text, label) of every row a person accepted or corrected: pass it to ``screen_batch(reviewed=...)`` so
    the batch that re-admits them is not screened out again."""
    decided = _decisions(Path(store_root))
    kept = decided[decided["status"].isin(["accepted", "corrected"])]
    return set(zip(kept[TEXT].astype(str), kept[LABEL].astype(str), strict=True))
