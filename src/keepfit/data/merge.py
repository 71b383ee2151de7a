"""Bringing a new batch of rows into an existing snapshot, for `keepfit update`.

New rows are deduplicated against all earlier data: a text seen before with the same answer is quarantined as
``duplicate_of_earlier``. A text seen before with a different answer is a relabel. By default it is quarantined as
``conflicts_with_earlier`` for review: applying it silently would let a batch rewrite the earlier test set the
gate compares on. With ``apply_relabels`` the new answer replaces the earlier one where that row lives (a test row
stays in test).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from keepfit.types import LABEL, ROW, SOURCE, SPLIT, SPLITS, TEXT, Snapshot, Task, label_column_for

__all__ = ["MergedRows", "merge_new_rows", "replay_sample"]


@dataclass(frozen=True)
class MergedRows:
    """New rows split into genuinely new, duplicates of earlier data, and relabels of earlier rows."""

    new_rows: pd.DataFrame
    duplicates: pd.DataFrame  # quarantine rows: row, source, reason, detail, raw_text, raw_label
    relabelled: pd.DataFrame  # text, split, old, new, row, source (applied, or quarantined in ``duplicates``)
    earlier: dict[str, pd.DataFrame]  # the earlier splits with relabels applied


def _answer_key(value: object, task: Task) -> object:
    if task == "multi-label":
        return tuple(sorted(value))  # type: ignore[arg-type]
    if task == "regression":
        return round(float(value), 9)  # type: ignore[arg-type]
    return value


def merge_new_rows(old: Snapshot, new_rows: pd.DataFrame, *, apply_relabels: bool = False) -> MergedRows:
    """Deduplicate ``new_rows`` (canonical table) against every row of ``old``; quarantine or apply relabels."""
    column = label_column_for(old.task)
    earlier = {name: old.split(name).copy() for name in SPLITS}
    where: dict[str, tuple[str, int]] = {}
    for name, frame in earlier.items():
        for pos, text in enumerate(frame[TEXT].tolist()):
            where.setdefault(text, (name, pos))

    keep = np.ones(len(new_rows), dtype=bool)
    dupes, relabels = [], []
    for i, (text, answer, row, source) in enumerate(
        zip(new_rows[TEXT], new_rows[column], new_rows[ROW], new_rows[SOURCE], strict=True)
    ):
        hit = where.get(text)
        if hit is None:
            continue
        keep[i] = False
        split, pos = hit
        frame = earlier[split]
        old_answer = frame[column].iat[pos]
        if _answer_key(old_answer, old.task) == _answer_key(answer, old.task):
            dupes.append(
                {
                    ROW: int(row),
                    SOURCE: source,
                    "reason": "duplicate_of_earlier",
                    "detail": f"same text and label as an earlier {split} row (snapshot {old.id[:12]})",
                    "raw_text": text[:500],
                    "raw_label": str(answer),
                }
            )
        else:
            if apply_relabels:
                frame.iat[pos, frame.columns.get_loc(column)] = answer
            else:
                dupes.append(
                    {
                        ROW: int(row),
                        SOURCE: source,
                        "reason": "conflicts_with_earlier",
                        "detail": f"this text is an earlier {split} row labelled {old_answer!s}, here {answer!s}; "
                        "fix whichever is wrong, or set update.relabels: apply to take the new label",
                        "raw_text": text[:500],
                        "raw_label": str(answer),
                    }
                )
            relabels.append({TEXT: text, SPLIT: split, "old": str(old_answer), "new": str(answer),
                             ROW: int(row), SOURCE: source})
    duplicates = pd.DataFrame(dupes, columns=[ROW, SOURCE, "reason", "detail", "raw_text", "raw_label"])
    relabelled = pd.DataFrame(relabels, columns=[TEXT, SPLIT, "old", "new", ROW, SOURCE])
    return MergedRows(
        new_rows=new_rows[keep].reset_index(drop=True),
        duplicates=duplicates,
        relabelled=relabelled,
        earlier=earlier,
    )


def replay_sample(train: pd.DataFrame, n: int, task: Task, seed: int) -> pd.DataFrame:
    """A sample of ``n`` earlier training rows, stratified by label for single-label tasks.

    Every label keeps at least one row (when it has one), so no old class is forgotten for lack of examples.
    """
    if n <= 0 or len(train) == 0:
        return train.iloc[0:0].copy()
    if n >= len(train):
        return train.copy()
    rng = np.random.default_rng(seed)
    if task != "single-label":
        return train.iloc[np.sort(rng.choice(len(train), size=n, replace=False))].reset_index(drop=True)
    fraction = n / len(train)
    picks = []
    for _, index in train.groupby(LABEL, sort=True).indices.items():
        take = max(1, int(round(len(index) * fraction)))
        picks.append(rng.choice(index, size=min(take, len(index)), replace=False))
    chosen = np.sort(np.concatenate(picks))
    return train.iloc[chosen].reset_index(drop=True)
