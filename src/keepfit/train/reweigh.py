"""Kamiran-Calders reweighing (train.fairness_reweight): training rows weighted so group and label are independent.

Kamiran & Calders, "Data preprocessing techniques for classification without discrimination" (KAIS 2012): a row
of group ``g`` and label ``y`` gets the weight ``P(g) P(y) / P(g, y)`` = ``n_g n_y / (n n_gy)``, the ratio of
the count that independence would give the (group, label) cell to its observed count. In the weighted data every
group has the same label distribution (the overall one) and every label the same group distribution, and the
weights sum to ``n``. Groups are the combinations of the values of every ``evaluate.fairness_columns``. fairlearn
has no pre-processing reweigher (its mitigations are reductions and post-processing), so the few lines are here.
The loss turns the weights into a weighted mean (:func:`keepfit.train.losses.task_loss`, ``row_weights``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from keepfit.data.fairness import fairness_groups
from keepfit.types import LABEL

__all__ = ["reweighing_weights", "training_row_weights"]


def reweighing_weights(groups: Sequence[np.ndarray], labels: np.ndarray) -> np.ndarray:
    """Per row ``P(g) P(y) / P(g, y)`` [n] (float64, summing to n) for the groups formed by the arrays of
    ``groups`` together (each [n]) and ``labels`` [n]."""
    frame = pd.DataFrame({f"g{i}": np.asarray(g, dtype=object) for i, g in enumerate(groups)})
    keys = list(frame.columns)
    frame["y"] = np.asarray(labels, dtype=object)
    n = len(frame)
    n_g = frame.groupby(keys)["y"].transform("size").to_numpy(float)
    n_y = frame.groupby("y")["y"].transform("size").to_numpy(float)
    n_gy = frame.groupby([*keys, "y"])["y"].transform("size").to_numpy(float)
    return n_g * n_y / (n * n_gy)


def training_row_weights(frame: pd.DataFrame, columns: Sequence[str]) -> torch.Tensor:
    """The reweighing weights [n] (float32) of the training rows of ``frame`` (canonical rows with ``label``
    and the fairness columns as ``slice:<name>``), by the groups of ``columns``."""
    groups = fairness_groups(frame, columns, where="the training rows")
    return torch.from_numpy(reweighing_weights(list(groups.values()), frame[LABEL].to_numpy()).astype(np.float32))
