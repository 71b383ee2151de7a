"""Splitting kept rows into train, validation and test: seeded, reproducible, and honest about its method.

Methods (``split.method``):

- ``given``       the ``split`` column (from ``data.split_column`` or separate validation/test files), as is
- ``group``       GroupShuffleSplit on the ``group`` column: every row of one group lands in one split
- ``time``        sorted by ``time``: the oldest rows train, the newest test (ties broken by row number)
- ``stratified``  single-label: sklearn ``train_test_split(stratify=...)``; labels too small to stratify are
                  put in train with a warning. Multi-label: iterative stratification (iterstrat).
- ``random``      regression (stratified on target quantile bins when there are enough rows), or any task
- ``auto``        given if present, else group if a group column, else time if a time column, else
                  stratified (single-/multi-label) or random (regression, text-generation: no classes to
                  stratify on; a configured ``stratified`` also splits at random there, with a warning)

The same rows and seed give the same split, whatever order the rows come in.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from keepfit.config import KeepfitConfig
from keepfit.data.quality import codes, combine_codes, first_positions
from keepfit.errors import DataError
from keepfit.types import (
    GROUP,
    LABEL,
    LABELS,
    ROW,
    SOURCE,
    SPLIT,
    SPLITS,
    TARGET,
    TEXT,
    TIME,
    is_generation,
    is_single_label,
)

__all__ = ["SplitResult", "split_rows", "split_frame", "resolve_method"]

_QUANTILE_BINS = 10


@dataclass
class SplitResult:
    """The rows with a ``split`` column, the method that ran, and any warnings (fallbacks are never
    silent)."""

    frame: pd.DataFrame
    method: str
    warnings: list[str] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        return {name: int((self.frame[SPLIT] == name).sum()) for name in SPLITS}


def resolve_method(frame: pd.DataFrame, config: KeepfitConfig) -> str:
    """The concrete method ``auto`` stands for on this table (or the configured one)."""
    method = config.split.method
    if method != "auto":
        return method
    if SPLIT in frame and frame[SPLIT].notna().any():
        return "given"
    if GROUP in frame and frame[GROUP].notna().any():
        return "group"
    if TIME in frame and frame[TIME].notna().any():
        return "time"
    return "random" if config.task == "regression" or is_generation(config.task) else "stratified"


def split_rows(frame: pd.DataFrame, config: KeepfitConfig) -> pd.DataFrame:
    """The rows with a ``split`` column ("train" | "validation" | "test"); see :func:`split_frame`."""
    return split_frame(frame, config).frame


def split_frame(frame: pd.DataFrame, config: KeepfitConfig) -> SplitResult:
    """Split a canonical row table by ``config.split`` (fractions of rows; of groups for group splits)."""
    method = resolve_method(frame, config)
    warnings: list[str] = []
    if len(frame) == 0:
        return SplitResult(frame.assign(**{SPLIT: pd.Series([], dtype=object)}), method, warnings)
    base = frame.reset_index(drop=True)
    ordered = _canonical_order(base)
    if method == "given":
        assigned = _given(ordered, config)
    elif method == "group":
        assigned = _by_group(ordered, config)
    elif method == "time":
        assigned = _by_time(ordered, config, warnings)
    elif method == "stratified" and config.task == "multi-label":
        assigned, method = _iterative(ordered, config, warnings), "iterative"
    elif method == "stratified" and is_single_label(config.task):
        assigned = _stratified(ordered, config, warnings)
    else:
        if method == "stratified" and is_generation(config.task):
            warnings.append("split.method is stratified, but text-generation has no labels to stratify on; "
                            "the rows were split at random")
        assigned = _random(ordered, config, warnings)
        if method == "stratified":
            method = "random"
    # back to the order the rows came in; the assignment itself never depended on that order
    out = base.assign(**{SPLIT: pd.Series(assigned, index=ordered.index, dtype=object)})
    return SplitResult(out, method, warnings)


def _canonical_order(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows in an order that does not depend on how they arrived (so the split is reproducible):
    by source file and line number (unique together), else by text."""
    if ROW not in frame:
        return frame.sort_values(TEXT, kind="stable") if TEXT in frame else frame
    rows = frame[ROW].to_numpy()
    if SOURCE in frame:
        source_code = codes(frame[SOURCE])
        names = pd.unique(frame[SOURCE].astype(object).to_numpy())
        rank = np.argsort(np.argsort(np.asarray([str(n) for n in names], dtype=object)))
        order = np.lexsort((rows, rank[source_code]))
    else:
        order = np.argsort(rows, kind="stable")
    if np.array_equal(order, np.arange(len(frame))):
        return frame
    return frame.iloc[order]


def _sizes(n: int, config: KeepfitConfig) -> tuple[int, int]:
    n_test = int(round(n * config.split.test))
    n_val = int(round(n * config.split.validation))
    if n_test + n_val >= n:
        n_test = min(n_test, max(0, n - 1))
        n_val = min(n_val, max(0, n - 1 - n_test))
    return n_val, n_test


def _labels_from_positions(n: int, val: np.ndarray, test: np.ndarray) -> np.ndarray:
    out = np.full(n, "train", dtype=object)
    out[val] = "validation"
    out[test] = "test"
    return out


def _given(frame: pd.DataFrame, config: KeepfitConfig) -> np.ndarray:
    if SPLIT not in frame:
        raise DataError(
            "split.method is 'given' but the rows have no split: expected data.split_column or separate "
            "data.validation/data.test files. Name the column, or set split.method to auto."
        )
    values = frame[SPLIT].astype(object).to_numpy()
    bad = sorted({str(v) for v in values if v not in SPLITS})
    if bad:
        raise DataError(
            f"split values must be one of {list(SPLITS)}, got {bad[:5]}. "
            "Fix the split column or set split.method."
        )
    return values


def _by_group(frame: pd.DataFrame, config: KeepfitConfig) -> np.ndarray:
    from sklearn.model_selection import GroupShuffleSplit

    if GROUP not in frame:
        raise DataError("split.method is group but the rows have no group column; set data.group_column.")
    groups = codes(frame[GROUP])  # integers: sklearn sorts groups, and sorting strings is slow
    n = len(frame)
    positions = np.arange(n)
    test = np.empty(0, dtype=np.int64)
    rest = positions
    n_groups = int(groups.max()) + 1
    if config.split.test > 0 and n_groups > 2:
        gss = GroupShuffleSplit(n_splits=1, test_size=config.split.test, random_state=config.split.seed)
        train_idx, test_idx = next(gss.split(positions, groups=groups))
        test, rest = positions[test_idx], positions[train_idx]
    val = np.empty(0, dtype=np.int64)
    rest_groups = groups[rest]
    if config.split.validation > 0 and len(np.unique(rest_groups)) > 1:
        share = config.split.validation / (1 - config.split.test)
        gss = GroupShuffleSplit(n_splits=1, test_size=min(share, 0.9), random_state=config.split.seed + 1)
        train_idx, val_idx = next(gss.split(rest, groups=rest_groups))
        val = rest[val_idx]
    assigned = _labels_from_positions(n, val, test)
    pairs = first_positions(combine_codes(groups, codes(assigned)))
    splits_per_group = np.bincount(groups[pairs], minlength=n_groups)
    if (
        splits_per_group > 1
    ).any():  # GroupShuffleSplit guarantees this; a failure here is a bug, not bad input
        raise DataError(f"group split put {int((splits_per_group > 1).sum())} group(s) in two splits")
    return assigned


def _by_time(frame: pd.DataFrame, config: KeepfitConfig, warnings: list[str]) -> np.ndarray:
    if TIME not in frame:
        raise DataError("split.method is time but the rows have no time column; set data.time_column.")
    parsed = pd.to_datetime(frame[TIME], errors="coerce", utc=True, format="mixed")
    if parsed.isna().any():
        bad = int(parsed.isna().sum())
        warnings.append(f"time split: {bad} time value(s) could not be read as dates; they sort as oldest")
    order = pd.DataFrame(
        {
            "t": parsed.fillna(pd.Timestamp.min.tz_localize("UTC")),
            "row": frame[ROW].to_numpy() if ROW in frame else np.arange(len(frame)),
            "pos": np.arange(len(frame)),
        }
    )
    ranked = order.sort_values(["t", "row"], kind="stable")["pos"].to_numpy()
    n_val, n_test = _sizes(len(frame), config)
    n_train = len(frame) - n_val - n_test
    return _labels_from_positions(len(frame), ranked[n_train : n_train + n_val], ranked[n_train + n_val :])


def _two_step(n: int, config: KeepfitConfig, splitter) -> tuple[np.ndarray, np.ndarray]:
    """Test first, then validation from the rest; ``splitter(positions, size, seed) -> (keep, taken)``."""
    n_val, n_test = _sizes(n, config)
    positions = np.arange(n)
    test = np.empty(0, dtype=np.int64)
    rest = positions
    if n_test > 0:
        rest, test = splitter(positions, n_test, config.split.seed)
    val = np.empty(0, dtype=np.int64)
    if n_val > 0:
        rest, val = splitter(rest, n_val, config.split.seed + 1)
    return val, test


def _stratified(frame: pd.DataFrame, config: KeepfitConfig, warnings: list[str]) -> np.ndarray:
    from sklearn.model_selection import train_test_split

    labels = frame[LABEL].astype(str).to_numpy()
    counts = pd.Series(labels).value_counts()
    too_small = counts[counts < 3]
    strat = labels.copy()
    if len(too_small):
        warnings.append(
            f"stratified split: {len(too_small)} label(s) have fewer than 3 rows and cannot be spread over "
            f"three splits; their rows go to train: {', '.join(map(str, too_small.index[:10]))}"
        )
    small = np.isin(labels, too_small.index.to_numpy())
    eligible = np.flatnonzero(~small)

    def splitter(positions: np.ndarray, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        candidates = positions[np.isin(positions, eligible)]
        if size >= len(candidates):
            return positions[~np.isin(positions, candidates)], candidates
        try:
            keep, taken = train_test_split(
                candidates, test_size=size, random_state=seed, stratify=strat[candidates]
            )
        except ValueError as err:
            warnings.append(f"stratified split fell back to a random split ({err})")
            keep, taken = train_test_split(candidates, test_size=size, random_state=seed)
        return np.sort(np.concatenate([keep, positions[~np.isin(positions, candidates)]])), np.sort(taken)

    val, test = _two_step(len(frame), config, splitter)
    assigned = _labels_from_positions(len(frame), val, test)
    if config.split.min_test_per_class:
        assigned = _top_up_test(assigned, labels, config.split.min_test_per_class, config.split.seed, warnings)
    return assigned


def _top_up_test(assigned: np.ndarray, labels: np.ndarray, minimum: int, seed: int, warnings: list[str]) -> np.ndarray:
    """Move training rows of a class into test until it has ``minimum`` test rows (the gate needs rows per class
    to protect it), never taking more than half of the class's training rows."""
    rng = np.random.default_rng(seed)
    out = assigned.copy()
    moved, short = 0, []
    for label in np.unique(labels):
        is_label = labels == label
        need = minimum - int((is_label & (out == "test")).sum())
        if need <= 0:
            continue
        train_pos = np.flatnonzero(is_label & (out == "train"))
        take = min(need, len(train_pos) // 2)
        if take < need:
            short.append(str(label))
        if take > 0:
            out[rng.choice(train_pos, size=take, replace=False)] = "test"
            moved += take
    if moved:
        warnings.append(f"split.min_test_per_class={minimum}: moved {moved} training rows into test")
    if short:
        warnings.append(
            f"{len(short)} label(s) have too few rows for {minimum} test rows each (at most half of a label's "
            f"training rows move): {', '.join(short[:10])}"
        )
    return out


def _iterative(frame: pd.DataFrame, config: KeepfitConfig, warnings: list[str]) -> np.ndarray:
    from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit
    from sklearn.preprocessing import MultiLabelBinarizer

    matrix = MultiLabelBinarizer().fit_transform(frame[LABELS].map(list))

    def splitter(positions: np.ndarray, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        if size >= len(positions):
            return positions[:0], positions
        msss = MultilabelStratifiedShuffleSplit(n_splits=1, test_size=size, random_state=seed)
        keep, taken = next(msss.split(positions.reshape(-1, 1), matrix[positions]))
        return np.sort(positions[keep]), np.sort(positions[taken])

    val, test = _two_step(len(frame), config, splitter)
    return _labels_from_positions(len(frame), val, test)


def _random(frame: pd.DataFrame, config: KeepfitConfig, warnings: list[str]) -> np.ndarray:
    from sklearn.model_selection import train_test_split

    strat = None
    if config.task == "regression" and TARGET in frame and len(frame) >= 10 * _QUANTILE_BINS:
        # stratifying on target quantiles keeps the target range alike in every split
        strat = pd.qcut(
            frame[TARGET].astype(float), _QUANTILE_BINS, labels=False, duplicates="drop"
        ).to_numpy()

    def splitter(positions: np.ndarray, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        if size >= len(positions):
            return positions[:0], positions
        try:
            keep, taken = train_test_split(
                positions,
                test_size=size,
                random_state=seed,
                stratify=None if strat is None else strat[positions],
            )
        except ValueError as err:
            warnings.append(f"target-quantile stratification fell back to a random split ({err})")
            keep, taken = train_test_split(positions, test_size=size, random_state=seed)
        return np.sort(keep), np.sort(taken)

    val, test = _two_step(len(frame), config, splitter)
    return _labels_from_positions(len(frame), val, test)
