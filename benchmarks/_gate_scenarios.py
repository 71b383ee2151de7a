"""Scenario builders for ``benchmarks/bench_gate.py``: pure functions on arrays and frames (no model, no store).

Two kinds of scenario:

- **Prediction level.** From a real champion's probabilities on test rows, a constructed candidate's
  probabilities: the control (realistic churn, new intents learned, nothing planted), one class broken, one slice
  broken, or a candidate that only looks better because of new-label rows. The result feeds
  ``keepfit.gate.compare_outputs`` and ``apply_gate`` exactly as an update's would.
- **Real updates.** Which intents the champion knows, which rows it is fitted on, and per seed a clean batch
  (new intents plus fresh rows of known ones) or the same kind of batch with two known intents' labels swapped.

Conventions: ``probs`` are [n, C] probabilities (rows sum to 1). The candidate's labels are the champion's labels
followed by the new ones, so ``y`` (indices into the candidate's labels) below ``len(labels_old)`` is a known label.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "TestRows",
    "Candidate",
    "Pools",
    "SwappedBatch",
    "test_rows",
    "move_to",
    "best_wrong",
    "control",
    "class_broken",
    "slice_broken",
    "looks_better",
    "plan_pools",
    "clean_batch",
    "swapped_batch",
    "recall_on",
    "summarise",
    "SLICE_COLUMN",
]

SLICE_COLUMN = "slice:channel"
# How far a moved row's probabilities go towards its new label: argmax becomes that label whatever the row held.
_MOVE_WEIGHT = 0.8


# -- prediction level ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TestRows:
    """A champion's outputs on test rows: earlier rows (labels it knows) and new rows (labels it lacks)."""

    labels_old: list[str]
    labels_new: list[str]
    y: np.ndarray  # [n] indices into labels_new
    probs_old: np.ndarray  # [n, len(labels_old)]
    texts: list[str]
    is_new: np.ndarray  # [n] bool: the row belongs to the new test set

    @property
    def champion_right(self) -> np.ndarray:
        return self.probs_old.argmax(axis=1) == self.y

    @property
    def groups(self) -> dict[str, np.ndarray]:
        """The groups an update's comparison keeps (pipeline names)."""
        return {"earlier test set": ~self.is_new, "new test set": self.is_new}


@dataclass(frozen=True)
class Candidate:
    """A constructed candidate: its probabilities over ``labels_new``, the frame to compare with, what was planted."""

    scenario: str
    probs: np.ndarray  # [n, len(labels_new)]
    frame: pd.DataFrame  # text and SLICE_COLUMN, aligned with the rows
    planted: dict[str, Any] = field(default_factory=dict)


def test_rows(
    labels_old: list[str],
    earlier: pd.DataFrame,
    probs_earlier: np.ndarray,
    new: pd.DataFrame,
    probs_new: np.ndarray,
) -> TestRows:
    """Stack earlier rows (``text``, ``label`` known to the champion) and new rows (labels it lacks)."""
    known = set(labels_old)
    unknown_earlier = sorted(set(earlier["label"]) - known)
    known_new = sorted(set(new["label"]) & known)
    if unknown_earlier or known_new:
        raise ValueError(
            f"earlier rows must have labels the champion knows and new rows labels it lacks; got unknown earlier "
            f"labels {unknown_earlier} and known new labels {known_new}"
        )
    labels_new = list(labels_old) + sorted(set(new["label"]))
    index = {name: i for i, name in enumerate(labels_new)}
    labels = pd.concat([earlier["label"], new["label"]], ignore_index=True)
    return TestRows(
        labels_old=list(labels_old),
        labels_new=labels_new,
        y=labels.map(index).to_numpy(dtype=int),
        probs_old=np.vstack([probs_earlier, probs_new]).astype(float),
        texts=pd.concat([earlier["text"], new["text"]], ignore_index=True).astype(str).tolist(),
        is_new=np.r_[np.zeros(len(earlier), dtype=bool), np.ones(len(new), dtype=bool)],
    )


def expand(probs_old: np.ndarray, n_labels: int) -> np.ndarray:
    """The champion's probabilities in the candidate's label space (zero for the labels it lacks)."""
    out = np.zeros((len(probs_old), n_labels))
    out[:, : probs_old.shape[1]] = probs_old
    return out


def move_to(probs: np.ndarray, rows: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """A copy of ``probs`` where each of ``rows`` now predicts its ``targets`` entry; other rows are untouched.

    The moved row is a mix of its old distribution and the target, so it stays a distribution.
    """
    out = probs.copy()
    rows = np.asarray(rows, dtype=int)
    if len(rows):
        onehot = np.zeros((len(rows), probs.shape[1]))
        onehot[np.arange(len(rows)), np.asarray(targets, dtype=int)] = 1.0
        out[rows] = (1 - _MOVE_WEIGHT) * probs[rows] + _MOVE_WEIGHT * onehot
    return out


def best_wrong(probs: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per row, the most probable label other than the true one (where a realistic flip goes)."""
    masked = probs.copy()
    masked[np.arange(len(y)), y] = -np.inf
    return masked.argmax(axis=1)


def _channel(n: int, rng: np.random.Generator, share: float) -> np.ndarray:
    """A planted slice column: ``phone`` on about ``share`` of the rows, the rest ``app`` or ``web``."""
    return np.where(rng.random(n) < share, "phone", np.where(rng.random(n) < 0.5, "app", "web"))


def _frame(rows: TestRows, channel: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"text": rows.texts, SLICE_COLUMN: channel})


def _pick(rng: np.random.Generator, mask: np.ndarray, k: int) -> np.ndarray:
    where = np.flatnonzero(mask)
    return np.sort(rng.choice(where, size=min(k, len(where)), replace=False))


def _churn(
    rows: TestRows, probs: np.ndarray, rng: np.random.Generator, nfr: float, pfr: float, exclude: np.ndarray
) -> tuple[np.ndarray, dict[str, int]]:
    """Background flips of a realistic retrain on earlier rows outside ``exclude``: shares of all earlier rows."""
    earlier = ~rows.is_new
    n_earlier = int(earlier.sum())
    right = rows.champion_right
    neg = _pick(rng, earlier & right & ~exclude, round(nfr * n_earlier))
    pos = _pick(rng, earlier & ~right & ~exclude, round(pfr * n_earlier))
    probs = move_to(probs, neg, best_wrong(rows.probs_old[neg], rows.y[neg]))
    probs = move_to(probs, pos, rows.y[pos])
    return probs, {"churn_negative_flips": len(neg), "churn_positive_flips": len(pos)}


def _learn_new(rows: TestRows, probs: np.ndarray, rng: np.random.Generator, recall: float) -> np.ndarray:
    """The candidate gets about ``recall`` of the new rows right (the rest keep the champion's wrong guess)."""
    learned = np.flatnonzero(rows.is_new & (rng.random(len(rows.y)) < recall))
    return move_to(probs, learned, rows.y[learned])


def _base(rows: TestRows, rng: np.random.Generator, slice_share: float) -> tuple[np.ndarray, np.ndarray]:
    return expand(rows.probs_old, len(rows.labels_new)), _channel(len(rows.y), rng, slice_share)


def control(
    rows: TestRows,
    rng: np.random.Generator,
    *,
    churn_nfr: float = 0.01,
    churn_pfr: float = 0.02,
    new_recall: float = 0.9,
    slice_share: float = 0.1,
) -> Candidate:
    """A good candidate: a realistic retrain's churn on earlier rows, most new-intent rows right, nothing planted."""
    probs, channel = _base(rows, rng, slice_share)
    probs, counts = _churn(rows, probs, rng, churn_nfr, churn_pfr, np.zeros(len(rows.y), dtype=bool))
    return Candidate("control", _learn_new(rows, probs, rng, new_recall), _frame(rows, channel), counts)


def class_broken(
    rows: TestRows,
    rng: np.random.Generator,
    *,
    min_rows: int = 5,
    churn_nfr: float = 0.01,
    churn_pfr: float = 0.02,
    new_recall: float = 0.9,
    slice_share: float = 0.1,
) -> Candidate:
    """The control, except that every earlier row of one known intent is now predicted as another intent.

    The broken intent is drawn among those with at least ``min_rows`` earlier rows; it goes to the intent the
    champion most often confuses it with (a realistic collapse).
    """
    earlier = ~rows.is_new
    counts = np.bincount(rows.y[earlier], minlength=len(rows.labels_old))[: len(rows.labels_old)]
    eligible = np.flatnonzero(counts >= min_rows)
    if not len(eligible):
        raise ValueError(f"no known intent has {min_rows} earlier test rows; lower min_rows")
    broken = int(rng.choice(eligible))
    members = earlier & (rows.y == broken)
    guesses = best_wrong(rows.probs_old[members], rows.y[members])
    into = int(Counter(guesses.tolist()).most_common(1)[0][0])
    probs, channel = _base(rows, rng, slice_share)
    probs, churn = _churn(rows, probs, rng, churn_nfr, churn_pfr, members)
    where = np.flatnonzero(members)
    probs = move_to(probs, where, np.full(len(where), into))
    planted = {
        "class": rows.labels_new[broken],
        "predicted_as": rows.labels_new[into],
        "class_rows": len(where),
        "champion_right_in_class": int((members & rows.champion_right).sum()),
        **churn,
    }
    return Candidate("class_broken", _learn_new(rows, probs, rng, new_recall), _frame(rows, channel), planted)


def slice_broken(
    rows: TestRows,
    rng: np.random.Generator,
    *,
    slice_share: float = 0.1,
    flip_share: float = 0.4,
    min_flips: int = 3,
    churn_nfr: float = 0.01,
    churn_pfr: float = 0.02,
    new_recall: float = 0.9,
) -> Candidate:
    """The control, except that ``flip_share`` (at least ``min_flips``, as far as there are) of the earlier rows of
    slice ``channel=phone`` that the champion got right are now wrong."""
    probs, channel = _base(rows, rng, slice_share)
    in_slice = channel == "phone"
    earlier = ~rows.is_new
    probs, churn = _churn(rows, probs, rng, churn_nfr, churn_pfr, in_slice)
    right = earlier & in_slice & rows.champion_right
    flipped = _pick(rng, right, max(round(flip_share * right.sum()), min_flips))
    probs = move_to(probs, flipped, best_wrong(rows.probs_old[flipped], rows.y[flipped]))
    planted = {
        "slice": "channel=phone",
        "slice_rows_earlier": int((earlier & in_slice).sum()),
        "flipped": len(flipped),
        **churn,
    }
    return Candidate("slice_broken", _learn_new(rows, probs, rng, new_recall), _frame(rows, channel), planted)


def looks_better(
    rows: TestRows,
    rng: np.random.Generator,
    *,
    nfr: float = 0.03,
    slice_share: float = 0.1,
) -> Candidate:
    """The champion with ``nfr`` of the earlier rows flipped to wrong (spread over all earlier rows the champion got
    right), no fixes, and every new-label row right: better on "all" only because of the new labels."""
    probs, channel = _base(rows, rng, slice_share)
    earlier = ~rows.is_new
    flipped = _pick(rng, earlier & rows.champion_right, round(nfr * earlier.sum()))
    probs = move_to(probs, flipped, best_wrong(rows.probs_old[flipped], rows.y[flipped]))
    new = np.flatnonzero(rows.is_new)
    probs = move_to(probs, new, rows.y[new])
    planted = {"negative_flips": len(flipped), "earlier_rows": int(earlier.sum()), "new_rows_right": len(new)}
    return Candidate("looks_better", probs, _frame(rows, channel), planted)


# -- real updates --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pools:
    """Where the rows come from: the champion's training rows, fresh rows of its intents, rows of held-out ones."""

    known: list[str]
    held_out: list[str]
    champion: pd.DataFrame
    fresh: pd.DataFrame
    new: pd.DataFrame


def plan_pools(
    train: pd.DataFrame,
    rng: np.random.Generator,
    *,
    held_out: int,
    champion_rows: int,
    intents: int | None = None,
    label: str = "category",
) -> Pools:
    """Split the training rows once: ``held_out`` intents the champion never sees (``intents`` in all, every
    intent when None), and a stratified ``champion_rows`` of the known intents' rows to fit it on."""
    every = sorted(train[label].unique())
    used = sorted(rng.choice(every, size=intents, replace=False).tolist()) if intents else every
    if not 0 < held_out < len(used) - 1:
        raise ValueError(f"held_out must leave at least two known intents of {len(used)}; got {held_out}")
    held = sorted(rng.choice(used, size=held_out, replace=False).tolist())
    known = [x for x in used if x not in set(held)]
    known_rows = train[train[label].isin(known)]
    fraction = min(1.0, champion_rows / len(known_rows))
    champion = known_rows.groupby(label, group_keys=False).sample(frac=fraction, random_state=rng)
    return Pools(
        known=known,
        held_out=held,
        champion=champion.reset_index(drop=True),
        fresh=known_rows.drop(champion.index).reset_index(drop=True),
        new=train[train[label].isin(held)].reset_index(drop=True),
    )


def _new_intent_rows(
    pools: Pools, rng: np.random.Generator, new_intents: int, per_intent: int, label: str
) -> pd.DataFrame:
    chosen = sorted(rng.choice(pools.held_out, size=min(new_intents, len(pools.held_out)), replace=False).tolist())
    parts = [
        pools.new[pools.new[label] == x].sample(n=min(per_intent, int((pools.new[label] == x).sum())), random_state=rng)
        for x in chosen
    ]
    return pd.concat(parts, ignore_index=True)


def _shuffled(frame: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    return frame.sample(frac=1.0, random_state=rng).reset_index(drop=True)


def clean_batch(
    pools: Pools,
    rng: np.random.Generator,
    *,
    new_intents: int,
    rows_per_new_intent: int,
    fresh_rows: int,
    label: str = "category",
) -> pd.DataFrame:
    """A clean batch: ``rows_per_new_intent`` rows of each of ``new_intents`` held-out intents plus ``fresh_rows``
    rows of known intents the champion was not fitted on."""
    new = _new_intent_rows(pools, rng, new_intents, rows_per_new_intent, label)
    fresh = pools.fresh.sample(n=min(fresh_rows, len(pools.fresh)), random_state=rng)
    return _shuffled(pd.concat([new, fresh], ignore_index=True), rng)


@dataclass(frozen=True)
class SwappedBatch:
    """A batch in which every row of intent ``pair[0]`` is labelled ``pair[1]`` and the reverse."""

    rows: pd.DataFrame  # as sent (the swapped rows carry the other intent's label)
    pair: tuple[str, str]
    swapped: dict[str, list[str]]  # true intent -> its texts that were sent with the other label


def swapped_batch(
    pools: Pools,
    rng: np.random.Generator,
    *,
    new_intents: int,
    rows_per_new_intent: int,
    fresh_rows: int,
    swap_rows: int,
    label: str = "category",
) -> SwappedBatch:
    """A batch like :func:`clean_batch` (same size) in which ``swap_rows`` rows each of two known intents, drawn
    per seed, carry each other's label; the other fresh rows come from the remaining intents."""
    if 2 * swap_rows > fresh_rows:
        raise ValueError(f"fresh_rows ({fresh_rows}) must hold both swapped blocks (2 x {swap_rows})")
    sizes = pools.fresh[label].value_counts()
    eligible = sorted(sizes[sizes >= swap_rows].index)
    if len(eligible) < 2:
        raise ValueError(f"fewer than two known intents have {swap_rows} fresh rows; lower swap_rows")
    a, b = (str(x) for x in rng.choice(eligible, size=2, replace=False))
    blocks = {x: pools.fresh[pools.fresh[label] == x].sample(n=swap_rows, random_state=rng) for x in (a, b)}
    others = pools.fresh[~pools.fresh[label].isin([a, b])]
    rest = others.sample(n=min(fresh_rows - 2 * swap_rows, len(others)), random_state=rng)
    sent = [blocks[a].assign(**{label: b}), blocks[b].assign(**{label: a})]
    new = _new_intent_rows(pools, rng, new_intents, rows_per_new_intent, label)
    rows = _shuffled(pd.concat([new, rest, *sent], ignore_index=True), rng)
    return SwappedBatch(rows=rows, pair=(a, b), swapped={x: blocks[x]["text"].tolist() for x in (a, b)})


def recall_on(labels: list[str], probs: np.ndarray, truth: pd.Series, intent: str) -> float:
    """Share of the rows whose true label is ``intent`` that ``probs`` (over ``labels``) predicts right."""
    rows = (truth == intent).to_numpy()
    if not rows.any():
        return float("nan")
    predicted = np.asarray(labels)[probs[rows].argmax(axis=1)]
    return float((predicted == intent).mean())


# -- summary -------------------------------------------------------------------------------------------------


def summarise(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per scenario (in order of first appearance): seeds run, seeds that met the expectation, and how
    often each rule failed."""
    order: list[str] = []
    by: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        if r["scenario"] not in by:
            order.append(r["scenario"])
            by[r["scenario"]] = []
        by[r["scenario"]].append(r)
    out = []
    for name in order:
        rs = by[name]
        caught = Counter(rule["name"] for r in rs for rule in r.get("failing_rules", []))
        out.append(
            {
                "scenario": name,
                "expected": rs[0]["expected"],
                "seeds": len(rs),
                "met": sum(bool(r["met"]) for r in rs),
                "promoted": sum(bool(r["promoted"]) for r in rs),
                "caught_by": dict(caught.most_common()),
                "errors": sum(1 for r in rs if r.get("error")),
            }
        )
    return out
