"""Bringing a new batch of rows into an existing snapshot, for `keepfit update`.

New rows are deduplicated against all earlier data: a text seen before with the same answer is quarantined as
``duplicate_of_earlier``. A text seen before with a different answer is a relabel. By default it is quarantined as
``conflicts_with_earlier`` for review: applying it silently would let a batch rewrite the earlier test set the
gate compares on. With ``apply_relabels`` the new answer replaces the earlier one where that row lives (a test row
stays in test).

For text-generation a row is identified by its prompt (the whole conversation before the answer, system turn
included), not by its text: the same question under another system prompt asks something else. A prompt seen
before with another completion is a relabel too ("re-answered"), handled the same way.

For image-classification a row is identified by its image's bytes (``image_sha``): the same picture under
another file name is seen before.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from keepfit.config import KeepfitConfig
from keepfit.types import (
    GROUP,
    IMAGE_SHA,
    LABEL,
    PROMPT,
    ROW,
    SOURCE,
    SPLIT,
    SPLITS,
    TEXT,
    Snapshot,
    Task,
    is_generation,
    is_image,
    is_single_label,
    label_column_for,
)

__all__ = [
    "MergedRows",
    "merge_new_rows",
    "replay_sample",
    "leakage_against_earlier",
    "earlier_group_splits",
    "identity_for",
]

# how much of an answer a quarantine detail quotes (completions can run to pages)
_SHOWN_ANSWER_CHARS = 80


@dataclass(frozen=True)
class MergedRows:
    """New rows split into genuinely new, duplicates of earlier data, and relabels of earlier rows."""

    new_rows: pd.DataFrame
    duplicates: pd.DataFrame  # quarantine rows: row, source, reason, detail, raw_text, raw_label
    relabelled: pd.DataFrame  # text, split, old, new, row, source (applied, or quarantined in ``duplicates``)
    earlier: dict[str, pd.DataFrame]  # the earlier splits with relabels applied


def identity_for(task: Task) -> str:
    """The column that says two rows ask the same thing: ``prompt`` for text-generation, ``image_sha`` for
    image-classification (the file's bytes, whatever its name), else ``text``."""
    if is_image(task):
        return IMAGE_SHA
    return PROMPT if is_generation(task) else TEXT


def _shown(value: object) -> str:
    text = str(value)
    return repr(text if len(text) <= _SHOWN_ANSWER_CHARS else text[: _SHOWN_ANSWER_CHARS - 3] + "...")


def _relabel_detail(split: str, old_answer: object, answer: object, task: Task) -> str:
    if is_generation(task):
        return (
            f"this prompt is an earlier {split} row answered {_shown(old_answer)}, here {_shown(answer)}; fix "
            "whichever is wrong, or set update.relabels: apply to take the new answer"
        )
    return (
        f"this {'image' if is_image(task) else 'text'} is an earlier {split} row labelled {old_answer!s}, here "
        f"{answer!s}; "
        "fix whichever is wrong, or set update.relabels: apply to take the new label"
    )


def _what_matched(task: Task) -> str:
    """What a duplicate of an earlier row shares with it, in the task's words."""
    if is_generation(task):
        return "prompt and completion"
    return "image (same bytes) and label" if is_image(task) else "text and label"


def _answer_key(value: object, task: Task) -> object:
    if task == "multi-label":
        return tuple(sorted(value))  # type: ignore[arg-type]
    if task == "regression":
        return round(float(value), 9)  # type: ignore[arg-type]
    return value


def merge_new_rows(
    old: Snapshot, new_rows: pd.DataFrame, *, apply_relabels: bool = False, pending: frozenset[str] = frozenset()
) -> MergedRows:
    """Deduplicate ``new_rows`` (canonical table) against every row of ``old``; quarantine or apply relabels.

    Rows are matched by :func:`identity_for` the task (text; prompt for text-generation). ``pending`` holds
    those identities of earlier rows that no champion was ever trained or judged on (a rejected batch kept in
    the history): a new answer for one of those is applied whatever ``apply_relabels`` says, because a corrected
    batch must be able to replace the batch it corrects.
    """
    column, identity = label_column_for(old.task), identity_for(old.task)
    earlier = {name: old.split(name).copy() for name in SPLITS}
    where: dict[str, tuple[str, int]] = {}
    for name, frame in earlier.items():
        for pos, key in enumerate(frame[identity].tolist()):
            where.setdefault(key, (name, pos))

    keep = np.ones(len(new_rows), dtype=bool)
    dupes, relabels = [], []
    for i, (key, text, answer, row, source) in enumerate(
        zip(new_rows[identity], new_rows[TEXT], new_rows[column], new_rows[ROW], new_rows[SOURCE], strict=True)
    ):
        hit = where.get(key)
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
                    "detail": f"same {_what_matched(old.task)} as an earlier {split} row (snapshot {old.id[:12]})",
                    "raw_text": text[:500],
                    "raw_label": str(answer),
                }
            )
        else:
            if apply_relabels or key in pending:
                frame.iat[pos, frame.columns.get_loc(column)] = answer
            else:
                dupes.append(
                    {
                        ROW: int(row),
                        SOURCE: source,
                        "reason": "conflicts_with_earlier",
                        "detail": _relabel_detail(split, old_answer, answer, old.task),
                        "raw_text": text[:500],
                        "raw_label": str(answer),
                    }
                )
            relabels.append({TEXT: text, SPLIT: split, "old": str(old_answer), "new": str(answer),
                             ROW: int(row), SOURCE: source,
                             "applied": bool(apply_relabels or key in pending), "pending": key in pending})
    duplicates = pd.DataFrame(dupes, columns=[ROW, SOURCE, "reason", "detail", "raw_text", "raw_label"])
    relabelled = pd.DataFrame(relabels, columns=[TEXT, SPLIT, "old", "new", ROW, SOURCE, "applied", "pending"])
    return MergedRows(
        new_rows=new_rows[keep].reset_index(drop=True),
        duplicates=duplicates,
        relabelled=relabelled,
        earlier=earlier,
    )


def replay_sample(
    train: pd.DataFrame,
    n: int,
    task: Task,
    seed: int,
    *,
    margins: np.ndarray | None = None,
    boundary_share: float = 0.5,
) -> pd.DataFrame:
    """A sample of ``n`` earlier training rows (every column kept), stratified by label for single-label tasks.

    Other tasks (multi-label, regression, text-generation) get a seeded uniform sample in the rows' order;
    ``margins`` only matter for single-label. For single-label, every label keeps at least one row (when it has
    one), so no old class is forgotten for lack of examples. With ``margins`` (one per row: the champion's
    probability of the row's label minus its best other label's; low = near its decision boundary),
    ``boundary_share`` of each label's quota is its lowest-margin rows, where an update most easily flips a right
    answer, and the rest a random sample of its other rows.
    """
    if n <= 0 or len(train) == 0:
        return train.iloc[0:0].copy()
    if n >= len(train):
        return train.copy()
    rng = np.random.default_rng(seed)
    if not is_single_label(task):
        return train.iloc[np.sort(rng.choice(len(train), size=n, replace=False))].reset_index(drop=True)
    fraction = n / len(train)
    picks = []
    for _, index in train.groupby(LABEL, sort=True).indices.items():
        take = min(max(1, int(round(len(index) * fraction))), len(index))
        near = np.zeros(0, dtype=np.int64)
        if margins is not None:
            near = index[np.argsort(margins[index], kind="stable")[: int(round(take * boundary_share))]]
        rest = np.setdiff1d(index, near)
        picks.append(np.concatenate([near, rng.choice(rest, size=take - len(near), replace=False)]))
    chosen = np.sort(np.concatenate(picks))
    return train.iloc[chosen].reset_index(drop=True)


def leakage_against_earlier(
    earlier: dict[str, pd.DataFrame], new_rows: pd.DataFrame, config: KeepfitConfig
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """New split rows whose text (exactly, or as a near-duplicate) is an earlier row of another split.

    Exact copies are matched by the task's identity (the prompt for text-generation, the image's bytes for
    image-classification), near-duplicates by the normalised text (images: by their perceptual hashes).

    Such a row would leak: a new training row that copies an earlier test row lifts the candidate on the very
    rows the gate judges it by, and a new test row that copies an earlier training row measures memory. Earlier
    rows are never touched (they were judged as they are); the new row is quarantined with reason ``leakage``,
    or kept / failed as ``quality.leakage`` says. Returns (kept new rows, quarantine rows).
    """
    from keepfit.data.quality import QUARANTINE_COLUMNS, _CrossMatcher, _frame_near_method, add_derived_columns

    empty = pd.DataFrame(columns=QUARANTINE_COLUMNS)
    old = pd.concat([earlier[name].assign(**{SPLIT: name}) for name in SPLITS], ignore_index=True)
    if len(new_rows) == 0 or len(old) == 0 or config.quality.leakage == "keep":
        return new_rows.reset_index(drop=True), empty
    both = pd.concat([old, new_rows], ignore_index=True)
    frame = add_derived_columns(both, config)
    matcher = _CrossMatcher(
        frame,
        _frame_near_method(frame, config),
        config.quality.near_duplicate_threshold,
        config.quality.image_near_duplicate_distance,
    )
    partner = np.full(len(frame), -1, dtype=np.int64)
    similarity = np.zeros(len(frame))
    splits = frame[SPLIT].astype(object).to_numpy(dtype=object)
    is_new = np.arange(len(frame)) >= len(old)
    for name in SPLITS:
        query = np.flatnonzero(is_new & (splits == name))
        index = np.flatnonzero(~is_new & (splits != name))
        if len(query) and len(index):
            matcher.match(query, index, partner, similarity)
    leaked = np.flatnonzero(is_new & (partner >= 0))
    if len(leaked) == 0:
        return new_rows.reset_index(drop=True), empty
    column = label_column_for(config.task)
    same_what = "'s prompt" if is_generation(config.task) else ""
    texts = frame[identity_for(config.task)].astype(str).to_numpy(dtype=object)
    if config.quality.leakage == "fail":
        from keepfit.errors import DataError

        shown = "; ".join(f"row {int(frame[ROW].iat[p])}: {str(frame[TEXT].iat[p])[:60]!r}" for p in leaked[:5])
        raise DataError(
            f"{len(leaked)} new rows repeat (or nearly repeat) earlier rows of another split: {shown}. "
            "Remove them from the batch, or set quality.leakage to drop to quarantine them."
        )
    quarantine = pd.DataFrame(
        {
            ROW: frame[ROW].to_numpy()[leaked].astype(np.int64),
            SOURCE: frame[SOURCE].to_numpy(dtype=object)[leaked],
            "reason": "leakage",
            "detail": [
                f"{splits[p]} row {'copies' if texts[p] == texts[partner[p]] else 'nearly copies'} an earlier "
                f"{splits[partner[p]]} row{same_what} ({str(frame[TEXT].iat[int(partner[p])])[:80]!r}); kept out "
                "so the earlier splits stay independent"
                for p in leaked
            ],
            "raw_text": [str(t)[:300] for t in frame[TEXT].to_numpy()[leaked]],
            "raw_label": [str(v) for v in frame[column].to_numpy(dtype=object)[leaked]],
        },
        columns=QUARANTINE_COLUMNS,
    )
    keep = np.ones(len(new_rows), dtype=bool)
    keep[leaked - len(old)] = False
    return new_rows[keep].reset_index(drop=True), quarantine


def earlier_group_splits(earlier: dict[str, pd.DataFrame]) -> dict[str, str]:
    """group value -> the split that already holds it (new rows of a known group must join that split)."""
    out: dict[str, str] = {}
    for name in SPLITS:
        frame = earlier[name]
        if GROUP in frame:
            for value in frame[GROUP].dropna().astype(str):
                out.setdefault(value, name)
    return out
