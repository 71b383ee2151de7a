"""Open-set rejection (single-label): when a model abstains, how its threshold is chosen, and what it costs.

A model abstains on a row when its calibrated confidence (the top temperature-scaled softmax probability) is
below its abstain threshold, or when it predicts the out-of-scope label: a label such as CLINC150's ``oos``
that stands for "none of the known labels". The threshold is chosen on validation so that a target share of
in-scope rows is still answered (:func:`choose_abstain_threshold`); the same rule (:func:`abstentions`)
decides what is served and what evaluation judges (:func:`open_set_metrics`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from keepfit.errors import ConfigError

__all__ = ["choose_abstain_threshold", "abstentions", "open_set_metrics", "OPEN_SET_METRICS"]

# The open-set numbers that join the headline metrics, as ``open_set.<name>``; the last three need an
# out-of-scope label the model knows.
OPEN_SET_METRICS = ("answered_share", "answered_accuracy", "oos_recall", "in_scope_accuracy", "oos_precision")
_BELOW_ONE = float(np.nextafter(1.0, 0.0))


def choose_abstain_threshold(scores: np.ndarray, in_scope_recall: float) -> float | None:
    """The highest threshold that still answers at least ``in_scope_recall`` of the rows of ``scores``.

    ``scores`` [n]: the top calibrated probability of each in-scope validation row. A row is answered when
    its score is >= the threshold, so the threshold is the ``ceil(recall * n)``-th largest score (the
    ``1 - recall`` quantile). None with no rows or for recall 1 (never abstain). A threshold of 1.0 (scores
    saturated in float) is served as the largest float below 1, which answers the same float32 rows and keeps
    the threshold a probability in (0, 1).
    """
    if isinstance(in_scope_recall, bool) or not 0 < in_scope_recall <= 1:
        raise ConfigError(
            f"evaluate.in_scope_recall must be a share in (0, 1] of in-scope rows still answered, got "
            f"{in_scope_recall!r}. Use e.g. 0.95, or 1 to never abstain."
        )
    values = np.sort(np.asarray(scores, dtype=float).reshape(-1))[::-1]
    if in_scope_recall == 1 or len(values) == 0:
        return None
    # the tolerance keeps 0.95 * 100 at 95 rows although the float product may land just above it
    answered = max(math.ceil(in_scope_recall * len(values) - 1e-9), 1)
    return min(float(values[answered - 1]), _BELOW_ONE)


def abstentions(
    probs: np.ndarray, abstain_threshold: float | None, out_of_scope: int | None = None
) -> np.ndarray:
    """Bool [n]: the rows of single-label ``probs`` [n, C] the model abstains on.

    A row abstains when its top probability is below ``abstain_threshold`` (None: never for that reason) or
    when its predicted label index is ``out_of_scope`` (the index of the out-of-scope label; None: none).
    """
    probs = np.asarray(probs, dtype=float)
    if probs.ndim != 2 or len(probs) == 0:
        return np.zeros(len(probs), dtype=bool)
    out = np.zeros(len(probs), dtype=bool)
    if abstain_threshold is not None:
        out |= probs.max(axis=1) < abstain_threshold
    if out_of_scope is not None:
        out |= probs.argmax(axis=1) == out_of_scope
    return out


def open_set_metrics(
    y_true: np.ndarray,
    probs: np.ndarray,
    labels: list[str],
    *,
    abstain_threshold: float | None,
    out_of_scope_label: str | None = None,
) -> dict[str, Any]:
    """What abstaining does on these rows: ``y_true`` [n] label indices (-1: a label the model does not
    know), ``probs`` [n, C] as served.

    Always: ``answered_share`` (in-scope rows answered / in-scope rows) and ``answered_accuracy`` (answered
    rows whose label is right / answered rows; an out-of-scope row answered is a wrong answer). With an
    out-of-scope label among ``labels``: ``oos_recall`` (out-of-scope rows rejected, by abstaining or by
    predicting that label / out-of-scope rows), ``in_scope_accuracy`` (in-scope rows answered with their
    label / in-scope rows) and ``oos_precision`` (out-of-scope rows among the rejected). A ratio without
    rows under it is NaN. Also the counts, the threshold, and a ``note`` when the out-of-scope label is not
    one of the model's labels (its rows cannot be told apart then, so every row counts as in scope).
    """
    y = np.asarray(y_true, dtype=int)
    probs = np.asarray(probs, dtype=float)
    oos = labels.index(out_of_scope_label) if out_of_scope_label in labels else None
    abstained = abstentions(probs, abstain_threshold, oos)
    answered = ~abstained
    right = answered & (probs.argmax(axis=1) == y)
    outside = y == oos if oos is not None else np.zeros(len(y), dtype=bool)
    inside = ~outside
    out: dict[str, Any] = {
        "abstain_threshold": abstain_threshold,
        "out_of_scope_label": labels[oos] if oos is not None else None,
        "n_in_scope": int(inside.sum()),
        "n_out_of_scope": int(outside.sum()),
        "n_abstained": int(abstained.sum()),
        "answered_share": _share(answered & inside, inside),
        "answered_accuracy": _share(right, answered),
    }
    if oos is not None:
        out["oos_recall"] = _share(abstained & outside, outside)
        out["in_scope_accuracy"] = _share(right & inside, inside)
        out["oos_precision"] = _share(abstained & outside, abstained)
    elif out_of_scope_label is not None:
        out["note"] = (
            f"out-of-scope label {out_of_scope_label!r} is not one of the model's labels, so its rows cannot be "
            "told apart: every row counts as in scope and no out-of-scope recall is reported"
        )
    return out


def _share(hits: np.ndarray, rows: np.ndarray) -> float:
    total = int(rows.sum())
    return int(hits.sum()) / total if total else float("nan")
