"""A new batch of labelled rows on its way into the data history, for `keepfit update`.

Two steps, with the champion's screen in between (the pipeline runs it; the data stage loads no model):

1. :func:`merge_batch`: check the file, deduplicate it against every earlier row, sort out relabels.
2. :func:`snapshot_batch`: split the new rows (a known group joins its split), keep out rows that leak into
   earlier splits, and store earlier + new as a snapshot *without moving HEAD* - the update moves HEAD once
   the snapshot proved trainable, so a batch that brings nothing leaves the history as it was.

Two snapshots matter: ``judged``, the one the champion was trained and judged on, and ``base``, the newest one
descending from it (HEAD). Rows in ``base`` but not in ``judged`` come from batches whose candidate was rejected:
they are *pending*, stay in the history, and are trained on by the next update. Every input row is kept (new,
or as a relabel of an earlier row) or quarantined with its reason: ``n_in == new + applied relabels +
quarantined`` is checked.

For text-generation a row is identified by its prompt (see :func:`keepfit.data.merge.identity_for`): a prompt
seen before with the same completion repeats it, with another completion it is re-answered (a relabel). For
image-classification by its image's bytes (``image_sha``): a renamed copy of an earlier image is seen before.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from keepfit.config import KeepfitConfig
from keepfit.data.merge import identity_for
from keepfit.errors import DataError
from keepfit.store import Store
from keepfit.types import GROUP, SPLIT, SPLITS, TEXT, Snapshot, is_generation, is_image, label_column_for

__all__ = ["Batch", "merge_batch", "snapshot_batch", "pending_texts", "relabel_summary", "MAX_RELABEL_EXAMPLES"]

MAX_RELABEL_EXAMPLES = 5


@dataclass(frozen=True)
class Batch:
    """A checked batch merged against ``base``: its new rows (no split yet), the updated earlier splits and
    every row quarantined so far."""

    path: Path
    n_in: int
    new_rows: pd.DataFrame
    earlier: dict[str, pd.DataFrame]
    quarantine: pd.DataFrame
    relabelled: pd.DataFrame
    check_report: dict[str, Any]
    n_duplicates: int
    n_check_quarantined: int
    notes: list[str] = field(default_factory=list)


def pending_texts(base: Snapshot, judged: Snapshot) -> frozenset[str]:
    """Texts (prompts for text-generation) in ``base`` that the champion never saw: rows of rejected batches
    still waiting for a champion."""
    key = identity_for(base.task)
    seen = set().union(*(set(judged.split(name)[key]) for name in SPLITS))
    return frozenset(t for name in SPLITS for t in base.split(name)[key] if t not in seen)


def merge_batch(config: KeepfitConfig, base: Snapshot, judged: Snapshot, path: Path) -> Batch:
    """Check ``path`` and merge its rows into ``base`` (relabels of pending rows are always applied)."""
    from keepfit.data.check import check_data
    from keepfit.data.merge import merge_new_rows

    checked = check_data(path, config, batch=True)
    merged = merge_new_rows(
        base,
        checked.kept,
        apply_relabels=config.update.relabels == "apply",
        pending=pending_texts(base, judged),
    )
    quarantine = pd.concat([checked.quarantine, merged.duplicates], ignore_index=True)
    n_applied = int(merged.relabelled["applied"].sum()) if len(merged.relabelled) else 0
    if checked.n_in != len(merged.new_rows) + n_applied + len(quarantine):
        raise DataError(
            f"internal: {checked.n_in} rows in but {len(merged.new_rows)} new + {n_applied} relabels + "
            f"{len(quarantine)} quarantined"
        )
    return Batch(
        path=Path(path),
        n_in=checked.n_in,
        new_rows=merged.new_rows,
        earlier=merged.earlier,
        quarantine=quarantine,
        relabelled=merged.relabelled,
        check_report=checked.report,
        n_duplicates=int((merged.duplicates["reason"] == "duplicate_of_earlier").sum()),
        n_check_quarantined=len(checked.quarantine),
    )


def _words(config: KeepfitConfig) -> tuple[str, str, str]:
    """(what a row asks, what it answers, what a changed answer is called) in the task's own words."""
    if is_generation(config.task):
        return "prompt", "answer", "re-answered prompts"
    return ("image" if is_image(config.task) else "text"), "label", "relabels"


def _cut(answer: str, generation: bool) -> str:
    return answer if not generation or len(answer) <= 120 else answer[:117] + "..."


def relabel_summary(batch: Batch, config: KeepfitConfig) -> dict[str, Any]:
    """How many rows re-send an earlier text with another label (text-generation: an earlier prompt with
    another answer), what happened to them, and the setting. Example answers are cut to 120 characters for
    text-generation."""
    r = batch.relabelled
    applied = int(r["applied"].sum()) if len(r) else 0
    pending = int(r["pending"].sum()) if len(r) else 0
    generation = is_generation(config.task)
    asked, answer, called = _words(config)
    examples = [
        {"text": str(t)[:120], "split": s, "old": _cut(o, generation), "new": _cut(n, generation)}
        for t, s, o, n in zip(r[TEXT], r[SPLIT], r["old"], r["new"], strict=True)
    ][:MAX_RELABEL_EXAMPLES]
    if not len(r):
        sentence = f"no row re-sends an earlier {asked} with another {answer}"
    elif applied == len(r):
        sentence = (
            f"{len(r)} rows re-send earlier {asked}s with other {answer}s and were applied as {called}"
            + (f" ({pending} of them correct rows of a batch no champion was judged on)" if pending else "")
        )
    else:
        sentence = (
            f"{len(r)} rows re-send earlier {asked}s with other {answer}s ({called}); {len(r) - applied} were "
            "quarantined as conflicts_with_earlier"
            + (f" and {applied} applied to pending rows" if applied else "")
            + ". To apply them, set update.relabels: apply (it changes the earlier test set the gate compares on)"
        )
    return {
        "count": len(r),
        "applied": applied,
        "applied_to_pending": pending,
        "setting": f"update.relabels: {config.update.relabels}",
        "examples": examples,
        "summary": sentence,
    }


def _split_new_rows(rows: pd.DataFrame, earlier: dict[str, pd.DataFrame], config: KeepfitConfig) -> pd.DataFrame:
    """A split for each new row; a row whose group already lives in an earlier split joins that split."""
    from keepfit.data.merge import earlier_group_splits
    from keepfit.data.split import split_rows

    known = earlier_group_splits(earlier) if GROUP in rows else {}
    joins = rows[GROUP].astype(str).map(known) if known else pd.Series(np.nan, index=rows.index, dtype=object)
    fixed = rows[joins.notna()].assign(**{SPLIT: joins[joins.notna()]})
    free = rows[joins.isna()]
    parts = [fixed]
    if len(free):
        parts.append(split_rows(free.reset_index(drop=True), config))
    return pd.concat(parts, ignore_index=True) if len(parts) > 1 else fixed.reset_index(drop=True)


def snapshot_batch(
    config: KeepfitConfig,
    batch: Batch,
    *,
    base: Snapshot,
    judged: Snapshot,
    screened: pd.DataFrame | None = None,
    screen_report: dict[str, Any] | None = None,
) -> tuple[Snapshot, pd.DataFrame, dict[str, Any]]:
    """Split and store ``batch`` on top of ``base`` (HEAD is not moved).

    ``screened``: quarantine rows for new rows the champion's screen set aside (matched to new rows by
    ``source`` and ``row``). Returns the snapshot, the rows a warm-started candidate trains on (every training
    row the champion was not trained on, with its current answer: new, pending and relabelled rows) and the
    update section of the snapshot report. Raises DataError, before anything is written, when nothing is left
    to train on.
    """
    from keepfit.data.merge import leakage_against_earlier
    from keepfit.data.snapshot import create_snapshot

    rows = batch.new_rows
    screened = screened if screened is not None else batch.quarantine.iloc[0:0]
    if len(screened):
        out = set(zip(screened["source"], screened["row"].astype(int), strict=True))
        rows = rows[[(s, int(r)) not in out for s, r in zip(rows["source"], rows["row"], strict=True)]]
    new_split, leaked = rows, screened.iloc[0:0]  # nothing left to split when the screen took every new row
    if len(rows):
        new_split = _split_new_rows(rows.reset_index(drop=True), batch.earlier, config)
        new_split, leaked = leakage_against_earlier(batch.earlier, new_split, config)
    frames = {
        name: pd.concat([batch.earlier[name], new_split[new_split[SPLIT] == name]], ignore_index=True)
        if len(new_split)
        else batch.earlier[name]
        for name in SPLITS
    }
    quarantine = pd.concat([batch.quarantine, screened, leaked], ignore_index=True)
    new_train = _untrained_rows(frames["train"], judged)
    relabels = relabel_summary(batch, config)
    section = {
        "batch": str(batch.path),
        "rows_in": batch.n_in,
        "new_rows": int(len(new_split)),
        "new_by_split": {name: int((new_split[SPLIT] == name).sum()) if len(new_split) else 0 for name in SPLITS},
        "duplicates_of_earlier": batch.n_duplicates,
        "quarantined_by_check": batch.n_check_quarantined,
        "screened_out": int(len(screened)),
        "leaked_into_earlier_splits": int(len(leaked)),
        "relabels": relabels,
        "pending_rows": len(pending_texts(base, judged)),
        "screen": screen_report or {},
        "judged_snapshot": judged.id,
        "base_snapshot": base.id,
    }
    if len(new_train) == 0:
        _, answer, _ = _words(config)
        fresh = "new prompts with their answers" if is_generation(config.task) else "new labelled rows"
        raise DataError(
            f"{batch.path} brings nothing to train on: of {batch.n_in} rows, {batch.n_duplicates} repeat earlier "
            f"data with the same {answer}, {batch.n_check_quarantined} were quarantined by the data check, "
            f"{len(screened)} by the champion's screen, {len(leaked)} leak into earlier splits; "
            f"{relabels['summary']}; and no new row landed in the training split. Nothing was written. "
            f"Add {fresh}, or run `keepfit data check` on the file to see why rows were dropped."
        )
    snapshot = create_snapshot(
        frames,
        quarantine=quarantine,
        config=config,
        store=Store.at(config.store),
        parent=base.id,
        report={**batch.check_report, "update": section},
        move_head=False,
    )
    return snapshot, new_train, section


def _untrained_rows(train: pd.DataFrame, judged: Snapshot) -> pd.DataFrame:
    """Training rows the champion was not trained on as they are now (new text, or the same text relabelled;
    text-generation: new prompt, or the same prompt re-answered)."""
    column, identity = label_column_for(judged.task), identity_for(judged.task)

    def keys(frame: pd.DataFrame) -> pd.Series:
        return frame[identity].astype(str) + "\x1f" + frame[column].astype(str)

    trained = set(keys(judged.train))
    return train[~keys(train).isin(trained).to_numpy()].reset_index(drop=True)
