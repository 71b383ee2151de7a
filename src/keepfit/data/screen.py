"""Screening a new batch with the champion before a candidate is trained on it.

The champion scores the new rows of labels it knows. Two kinds of evidence flag a row:

- **Confident learning** (cleanlab): a row whose given label disagrees with a *confident* champion. Per-class
  confidence thresholds come from the champion's validation predictions (``cleanlab.count.get_confident_thresholds``
  on clean, held-out rows, not on the batch under suspicion), and the candidate rows are the off-diagonal of the
  batch's confident joint (``cleanlab.count.compute_confident_joint`` with those thresholds). A 90%-accurate
  champion is confidently wrong on a few percent of any batch, so a row is flagged on its own only above a
  confidence that the champion reached on at most ``max_flag_rate`` of its validation rows while disagreeing
  with their label: on a clean batch from the same distribution about that share of rows is flagged.
- **Blocks**: flagged rows aggregated by (given label, champion's label). A pair A -> B is a block when far more
  rows labelled A are B by the champion than its validation confusion predicts (a one-sided binomial test
  against the upper confidence bound of the validation rate, Bonferroni-corrected over every pair the batch
  could show). A block together with its reverse B -> A is reported as a suspected swap, alone as a suspected
  systematic relabel. Every row of a block whose top champion label is the block's label is flagged, however
  confident: the block is the evidence. Rows where the champion agrees with the given label are never flagged.

Pure functions on arrays and frames: no model is loaded here (the pipeline passes the champion's probabilities).
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats

from keepfit.data.validate import QUARANTINE_COLUMNS
from keepfit.errors import DataError
from keepfit.types import GROUP, LABEL, PROMPT, ROW, SLICE_PREFIX, SOURCE, TEXT, TIME

__all__ = ["Block", "ScreenResult", "ScreenMode", "ISSUE_COLUMNS", "LABEL_ISSUE", "screen_batch", "apply_screen"]

ScreenMode = Literal["quarantine", "keep", "fail"]
LABEL_ISSUE = "label_issue"
# one flagged row; canonical passthrough columns (group, time, slice:<name>) follow when the rows have them
ISSUE_COLUMNS = [ROW, SOURCE, TEXT, LABEL, "suspected_label", "confidence", "reason", "block"]
_REVIEW_HINT = "see `keepfit data review`; re-admit checked rows with `keepfit data accept`"


@dataclass(frozen=True)
class Block:
    """Rows labelled ``given`` that the champion calls ``suspected``, far more of them than it errs that way.

    ``count``: batch rows labelled ``given`` whose top champion label is ``suspected`` (all of them flagged);
    ``n_given``: batch rows labelled ``given``; ``share`` = count / n_given; ``expected``: the count its
    validation confusion predicts (n_given x validation rate; NaN without validation rows of ``given``);
    ``p_value``: Bonferroni-corrected; ``kind``: ``"swap"`` when the reverse pair is a block too (or shows
    the same excess at the uncorrected level), else ``"relabel"``.
    """

    given: str
    suspected: str
    count: int
    n_given: int
    share: float
    expected: float
    p_value: float
    kind: Literal["swap", "relabel"]
    examples: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.given}->{self.suspected}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "given": self.given,
            "suspected": self.suspected,
            "count": self.count,
            "n_given": self.n_given,
            "share": round(self.share, 4),
            "expected": None if math.isnan(self.expected) else round(self.expected, 2),
            "p_value": float(self.p_value),
            "kind": self.kind,
            "examples": list(self.examples),
        }


@dataclass(frozen=True)
class ScreenResult:
    """What the screen found in ``n_rows`` batch rows.

    ``flagged``: one row per flagged batch row, :data:`ISSUE_COLUMNS` (+ group/time/slice columns when the batch
    has them); ``reason`` is ``"block"`` or ``"confident"``, ``block`` the block's name (``"A->B"``) or empty;
    ``confidence`` the champion's probability of ``suspected_label``. ``kept``: bool [n_rows], False where flagged.
    ``min_confidence``: the cut a row needs to be flagged on its own.
    """

    flagged: pd.DataFrame
    blocks: list[Block]
    kept: np.ndarray
    summary: str
    n_rows: int
    min_confidence: float
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def blocks_frame(self) -> pd.DataFrame:
        columns = ["given", "suspected", "count", "n_given", "share", "expected", "p_value", "kind", "examples"]
        return pd.DataFrame([b.to_dict() for b in self.blocks], columns=columns)

    def quarantine(self) -> pd.DataFrame:
        """The flagged rows in the canonical quarantine format (reason ``label_issue``)."""
        return pd.DataFrame(
            {
                ROW: self.flagged[ROW].astype("int64"),
                SOURCE: self.flagged[SOURCE].astype(str),
                "reason": LABEL_ISSUE,
                "detail": [_detail(r, self.blocks) for r in self.flagged.itertuples(index=False)],
                "raw_text": self.flagged[TEXT].astype(str).str.slice(0, 500),
                "raw_label": self.flagged[LABEL].astype(str),
            },
            columns=QUARANTINE_COLUMNS,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary for the update report."""
        return {
            "n_rows": self.n_rows,
            "n_flagged": len(self.flagged),
            "n_in_blocks": int((self.flagged["reason"] == "block").sum()),
            "min_confidence": round(self.min_confidence, 4),
            "blocks": [b.to_dict() for b in self.blocks],
            "summary": self.summary,
            "settings": dict(self.settings),
        }


def _detail(row: Any, blocks: list[Block]) -> str:
    said = f"the champion says {row.suspected_label!r} (p={row.confidence:.2f}) for this row labelled {row.label!r}"
    if row.block:
        block = next(b for b in blocks if b.name == row.block)
        what = "a suspected swap" if block.kind == "swap" else "a suspected relabel"
        return (
            f"{said}; part of {what}: {block.count} of {block.n_given} {block.given!r} rows of the batch are "
            f"{block.suspected!r} by the champion (expected ~{_approx(block.expected)}); {_REVIEW_HINT}"
        )
    return f"{said}, more confident than it ever is when wrong on validation; {_REVIEW_HINT}"


def _approx(x: float) -> str:
    return "?" if math.isnan(x) else f"{x:.0f}" if x >= 1 or x == 0 else f"{x:.1f}"


def _check_inputs(
    rows: pd.DataFrame, labels: list[str], probs: np.ndarray, val_true: np.ndarray, val_probs: np.ndarray
) -> np.ndarray:
    k = len(labels)
    if PROMPT in rows.columns and LABEL not in rows.columns:
        raise DataError(
            "cannot screen the batch: the screen checks single-label rows against the champion's label "
            "probabilities, and these are text-generation rows (prompt, completion) with no label to dispute. "
            "Screen only single-label batches (`keepfit update` skips the screen for other tasks)."
        )
    problems = []
    missing = [c for c in (ROW, SOURCE, TEXT, LABEL) if c not in rows.columns]
    if missing:
        problems.append(f"rows lack the canonical columns {missing} (found {list(rows.columns)})")
    if probs.ndim != 2 or probs.shape != (len(rows), k):
        problems.append(f"probs has shape {probs.shape}, expected ({len(rows)}, {k}): one row per batch row, "
                        "one column per champion label")
    if val_probs.ndim != 2 or val_probs.shape != (len(val_true), k):
        problems.append(f"val_probs has shape {val_probs.shape}, expected ({len(val_true)}, {k})")
    if len(val_true) == 0:
        problems.append("no validation predictions: the screen needs the champion's validation truth and "
                        "probabilities to know how often it is confidently wrong")
    elif val_true.min() < 0 or val_true.max() >= k:
        problems.append(f"val_true holds indices outside 0..{k - 1}")
    for name, p in (("probs", probs), ("val_probs", val_probs)):
        if p.size and (not np.isfinite(p).all() or p.min() < 0):
            problems.append(f"{name} holds negative or non-finite values; pass probabilities")
    if problems:
        raise DataError("cannot screen the batch: " + "; ".join(problems) + ".")
    index = {name: i for i, name in enumerate(labels)}
    given = rows[LABEL].astype(str).map(index)
    if given.isna().any():
        unknown = sorted(set(rows.loc[given.isna(), LABEL].astype(str)))[:5]
        raise DataError(
            f"cannot screen the batch: labels {unknown} are not among the champion's {k} labels. Pass only the "
            "new rows of labels the champion knows (rows of new labels cannot be screened)."
        )
    return given.to_numpy(dtype=np.int64)


def _individual_cut(
    val_true: np.ndarray, val_probs: np.ndarray, thresholds: np.ndarray, max_flag_rate: float
) -> float:
    """The lowest confidence cut whose flag rate on validation is at most ``max_flag_rate`` with 95% confidence.

    Only rows the champion gets wrong while confident (over its per-class threshold) count. Bounding the upper
    end of the rate's interval, not the rate seen, keeps a clean batch's flag rate under ``max_flag_rate``
    although a few hundred validation rows estimate it roughly.
    """
    n = len(val_true)
    top = val_probs.argmax(axis=1)
    conf = val_probs[np.arange(n), top]
    wrong = np.sort(conf[(top != val_true) & (conf >= thresholds[top] - 1e-6)])[::-1]
    allowed = 0
    while allowed < len(wrong) and stats.beta.ppf(0.95, allowed + 2, n - allowed - 1) <= max_flag_rate:
        allowed += 1  # allowing one more flagged validation row still bounds the rate
    return float(wrong[allowed]) if allowed < len(wrong) else 0.5


def _pair_counts(given: np.ndarray, top: np.ndarray, k: int) -> np.ndarray:
    counts = np.zeros((k, k), dtype=np.int64)
    np.add.at(counts, (given, top), 1)
    return counts


def _upper_rates(val_counts: np.ndarray, beta: float, prior_rows: float = 10.0) -> np.ndarray:
    """One-sided (1 - beta) upper bound of each validation confusion rate (given i -> champion j), row-wise.

    The smaller of the pair's Clopper-Pearson bound and the bound of its class's whole error rate, which borrows
    ``prior_rows`` rows' worth of the champion's overall error rate: with a handful of validation rows per class
    the pair's own bound says almost nothing (0 of 4 bounds the rate at 0.53), and a pair is never confused more
    often than its class is wrong. A class without validation rows gets the overall bound.
    """
    n = val_counts.sum(axis=1).astype(float)
    c = val_counts.astype(float)
    errors = n - np.diag(c)
    overall = float(errors.sum() / n.sum()) if n.sum() else 0.5
    overall = min(max(overall, 1e-3), 0.999)
    class_upper = stats.beta.ppf(1 - beta, overall * prior_rows + errors, (1 - overall) * prior_rows + n - errors)
    with np.errstate(invalid="ignore", divide="ignore"):
        pair_upper = np.where(c >= n[:, None], 1.0,
                              stats.beta.ppf(1 - beta, c + 1, np.maximum(n[:, None] - c, 1e-12)))
    upper = np.minimum(pair_upper, class_upper[:, None])
    np.fill_diagonal(upper, 1.0)
    return upper


def _find_blocks(
    rows: pd.DataFrame,
    labels: list[str],
    given: np.ndarray,
    top: np.ndarray,
    eligible: np.ndarray,
    val_counts: np.ndarray,
    *,
    alpha: float,
    beta: float,
    min_block_rows: int,
    min_block_share: float,
    n_examples: int,
) -> list[Block]:
    k = len(labels)
    counts = _pair_counts(given[eligible], top[eligible], k)
    n_given = np.bincount(given[eligible], minlength=k)
    upper = _upper_rates(val_counts, beta)
    n_val = val_counts.sum(axis=1)
    n_tests = max(1, int((n_given > 0).sum()) * (k - 1))
    raw_p = np.ones((k, k))
    np.fill_diagonal(counts, 0)
    for i, j in zip(*np.nonzero(counts), strict=True):
        if i != j:
            raw_p[i, j] = float(stats.binom.sf(counts[i, j] - 1, n_given[i], upper[i, j]))
    big = (counts >= min_block_rows) & (counts >= min_block_share * n_given[:, None])
    significant = big & (np.minimum(raw_p * n_tests, 1.0) < alpha)
    np.fill_diagonal(significant, False)
    texts = rows[TEXT].astype(str).to_numpy()
    blocks = []
    for i, j in zip(*np.nonzero(significant), strict=True):
        swap = significant[j, i] or (big[j, i] and raw_p[j, i] < alpha)
        members = np.flatnonzero(eligible & (given == i) & (top == j))
        blocks.append(
            Block(
                given=labels[i],
                suspected=labels[j],
                count=int(counts[i, j]),
                n_given=int(n_given[i]),
                share=float(counts[i, j] / n_given[i]),
                expected=float(n_given[i] * val_counts[i, j] / n_val[i]) if n_val[i] else float("nan"),
                p_value=float(min(raw_p[i, j] * n_tests, 1.0)),
                kind="swap" if swap else "relabel",
                examples=[texts[m] for m in members[:n_examples]],
            )
        )
    # a swap whose reverse is only significant uncorrected is still reported in both directions
    names = {(b.given, b.suspected) for b in blocks}
    for b in [b for b in blocks if b.kind == "swap" and (b.suspected, b.given) not in names]:
        i, j = labels.index(b.suspected), labels.index(b.given)
        members = np.flatnonzero(eligible & (given == i) & (top == j))
        blocks.append(
            Block(
                given=b.suspected,
                suspected=b.given,
                count=int(counts[i, j]),
                n_given=int(n_given[i]),
                share=float(counts[i, j] / n_given[i]),
                expected=float(n_given[i] * val_counts[i, j] / n_val[i]) if n_val[i] else float("nan"),
                p_value=float(min(raw_p[i, j] * n_tests, 1.0)),
                kind="swap",
                examples=[texts[m] for m in members[:n_examples]],
            )
        )
    return sorted(blocks, key=lambda b: (-b.count, b.given, b.suspected))


def _summary(n_rows: int, blocks: list[Block], n_confident: int) -> str:
    if not blocks and not n_confident:
        return f"no label issues in {n_rows:,} screened rows: the champion agrees, or is not confident enough."
    parts, done = [], set()
    for b in blocks:
        if b.name in done:
            continue
        first = f"{b.count} of {b.n_given} {b.given!r} rows are {b.suspected!r} by the champion " \
                f"(expected ~{_approx(b.expected)})"
        reverse = next((r for r in blocks if r.given == b.suspected and r.suspected == b.given), None)
        if b.kind == "swap" and reverse is not None:
            done.add(reverse.name)
            parts.append(
                f"labels {b.given!r} and {b.suspected!r} look swapped in this batch: {first} and {reverse.count} "
                f"of {reverse.n_given} {reverse.given!r} rows are {reverse.suspected!r} "
                f"(expected ~{_approx(reverse.expected)})"
            )
        else:
            parts.append(f"rows labelled {b.given!r} look relabelled from {b.suspected!r} in this batch: {first}")
    if n_confident:
        parts.append(
            f"{n_confident} other row{'s' if n_confident != 1 else ''} of {n_rows:,} disagree with a confident "
            "champion"
        )
    return "; ".join(parts) + "."


def screen_batch(
    rows: pd.DataFrame,
    labels: list[str],
    probs: np.ndarray,
    *,
    val_true: np.ndarray,
    val_probs: np.ndarray,
    min_confidence: float | None = None,
    max_flag_rate: float = 0.005,
    alpha: float = 0.01,
    min_block_rows: int = 5,
    min_block_share: float = 0.1,
    reviewed: Collection[tuple[str, str]] = (),
    n_examples: int = 3,
) -> ScreenResult:
    """Flag batch rows whose label disagrees with a confident champion, and blocks of them (see the module doc).

    ``rows``: canonical table of the new single-label rows of labels the champion knows (row, source, text,
    label, ...), n rows; text-generation rows (no label) raise DataError, and the update never screens them.
    ``labels``: the champion's labels, K, in the order of its output columns.
    ``probs``: float [n, K], the champion's probabilities on ``rows``. ``val_true``: int [m], the champion's
    validation truth as indices into ``labels``; ``val_probs``: float [m, K], its probabilities there.
    ``min_confidence``: the champion probability a row needs to be flagged on its own; by default the
    cut that flags ``max_flag_rate`` of the validation rows (never below 0.5). ``alpha``: family-wise error rate
    of the block tests. ``min_block_rows`` / ``min_block_share``: a block needs at least this many rows and this
    share of its label's batch rows. ``reviewed``: (text, label) pairs a person has checked and accepted; they are
    never flagged and take no part in the block counts.
    """
    from cleanlab.count import compute_confident_joint, get_confident_thresholds

    probs = np.asarray(probs, dtype=float)
    val_true = np.asarray(val_true, dtype=np.int64)
    val_probs = np.asarray(val_probs, dtype=float)
    given = _check_inputs(rows, labels, probs, val_true, val_probs)
    k, n = len(labels), len(rows)
    settings = {"max_flag_rate": max_flag_rate, "alpha": alpha, "min_block_rows": min_block_rows,
                "min_block_share": min_block_share}

    # per-class thresholds from the champion's validation rows (clean, held out), not from the batch
    thresholds = np.asarray(get_confident_thresholds(val_true, val_probs), dtype=float)
    cut = max(0.5, min_confidence if min_confidence is not None else
              _individual_cut(val_true, val_probs, thresholds, max_flag_rate))
    settings["min_confidence"] = min_confidence

    reviewed_pairs = set(reviewed)
    eligible = np.array(
        [(t, lab) not in reviewed_pairs for t, lab in zip(rows[TEXT].astype(str), rows[LABEL].astype(str),
                                                          strict=True)],
        dtype=bool,
    ) if reviewed_pairs else np.ones(n, dtype=bool)
    top = probs.argmax(axis=1) if n else np.zeros(0, dtype=np.int64)
    confidence = probs[np.arange(n), top] if n else np.zeros(0)

    confident = np.zeros(n, dtype=bool)
    if n:
        _, off_diagonal = compute_confident_joint(
            given, probs, thresholds=thresholds, calibrate=False, return_indices_of_off_diagonals=True
        )
        confident[np.asarray(off_diagonal, dtype=np.int64)] = True
    confident &= eligible & (top != given) & (confidence > cut)

    val_counts = _pair_counts(val_true, val_probs.argmax(axis=1), k)
    blocks = _find_blocks(
        rows, labels, given, top, eligible, val_counts,
        alpha=alpha, beta=0.05, min_block_rows=min_block_rows, min_block_share=min_block_share,
        n_examples=n_examples,
    )
    block_of = np.full(n, "", dtype=object)
    for b in blocks:
        i, j = labels.index(b.given), labels.index(b.suspected)
        block_of[eligible & (given == i) & (top == j)] = b.name
    in_block = block_of != ""
    flagged_mask = in_block | confident

    passthrough = [c for c in rows.columns if c in (GROUP, TIME) or str(c).startswith(SLICE_PREFIX)]
    picked = rows.iloc[np.flatnonzero(flagged_mask)]
    flagged = pd.DataFrame(
        {
            ROW: picked[ROW].astype("int64").to_numpy(),
            SOURCE: picked[SOURCE].astype(str).to_numpy(),
            TEXT: picked[TEXT].astype(str).to_numpy(),
            LABEL: picked[LABEL].astype(str).to_numpy(),
            "suspected_label": [labels[j] for j in top[flagged_mask]],
            "confidence": confidence[flagged_mask].astype(float),
            "reason": np.where(in_block[flagged_mask], "block", "confident"),
            "block": block_of[flagged_mask].astype(str),
            **{c: picked[c].to_numpy() for c in passthrough},
        },
        columns=ISSUE_COLUMNS + passthrough,
    )
    return ScreenResult(
        flagged=flagged,
        blocks=blocks,
        kept=~flagged_mask,
        summary=_summary(n, blocks, int((confident & ~in_block).sum())),
        n_rows=n,
        min_confidence=float(cut),
        settings=settings,
    )


def apply_screen(
    rows: pd.DataFrame, result: ScreenResult, mode: ScreenMode = "quarantine"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The rows to train on and the quarantine rows, as ``update.screen`` says.

    ``quarantine``: flagged rows leave the batch for review (reason ``label_issue``). ``keep``: every row is
    trained on (the flags are only reported). ``fail``: a block refuses the whole batch with a DataError; rows
    flagged on their own, which any batch has a few of, are quarantined as in ``quarantine``.
    ``len(rows) == len(kept) + len(quarantine)`` holds for ``quarantine`` and ``fail``.
    """
    if mode not in ("quarantine", "keep", "fail"):
        raise DataError(f"update.screen is {mode!r}; expected quarantine, keep or fail.")
    if len(rows) != result.n_rows:
        raise DataError(f"the screen saw {result.n_rows} rows but {len(rows)} were passed; screen these rows first.")
    if mode == "fail" and result.blocks:
        raise DataError(
            f"the batch was refused by the screen: {result.summary} Fix the labels in the batch file, or set "
            "update.screen: quarantine to train on the rest and review the flagged rows with `keepfit data review`."
        )
    if mode == "keep":
        return rows.reset_index(drop=True), pd.DataFrame(columns=QUARANTINE_COLUMNS)
    return rows[result.kept].reset_index(drop=True), result.quarantine()
