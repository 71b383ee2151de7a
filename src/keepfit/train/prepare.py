"""From a snapshot (plus replayed rows) to what the loop consumes: token ids, targets, class weights."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from keepfit.errors import DataError
from keepfit.train.batching import sequence_cap, tokenize
from keepfit.types import SLICE_PREFIX, Snapshot, is_single_label, label_column_for

__all__ = [
    "Encoded",
    "resolve_labels",
    "training_frame",
    "encode_targets",
    "known_rows",
    "encode_texts",
    "class_weights",
    "target_scaling",
]

log = logging.getLogger("keepfit.train")


@dataclass
class Encoded:
    """One split ready for the loop: token ids per row, their lengths, targets and single-label class ids."""

    ids: list[list[int]]
    lengths: np.ndarray
    targets: torch.Tensor
    class_ids: np.ndarray | None


def resolve_labels(
    snapshot: Snapshot, old_labels: list[str] | None, replay: pd.DataFrame | None
) -> list[str]:
    """Old labels first (in their order), then labels new in the snapshot or the replayed rows."""
    if snapshot.task == "regression":
        return []
    out = list(old_labels or [])
    extra = list(snapshot.labels)
    if replay is not None and len(replay):
        column = label_column_for(snapshot.task)
        values = replay[column] if is_single_label(snapshot.task) else replay[column].explode().dropna()
        extra += sorted(set(values.astype(str)) - set(extra))
    out += [x for x in extra if x not in out]
    return out


def training_frame(snapshot: Snapshot, replay: pd.DataFrame | None) -> pd.DataFrame:
    """Training rows: the snapshot's train split plus the replayed rows (text, answer and ``slice:`` columns; the
    last carry the groups train.fairness_reweight weighs by)."""
    column = label_column_for(snapshot.task)
    keep = ["text", column, *[c for c in snapshot.train.columns if str(c).startswith(SLICE_PREFIX)]]
    train = snapshot.train[keep]
    if replay is None or len(replay) == 0:
        return train.reset_index(drop=True)
    missing = {"text", column} - set(replay.columns)
    if missing:
        raise DataError(f"Replay rows need columns text and {column}; missing {sorted(missing)}.")
    return pd.concat([train, replay[[c for c in keep if c in replay.columns]]], ignore_index=True)


def known_rows(frame: pd.DataFrame, task: str, labels: list[str]) -> np.ndarray:
    """Rows whose answers the model can express (a validation label unseen in training cannot be scored)."""
    if task == "regression":
        return frame["target"].notna().to_numpy()
    known = set(labels)
    if is_single_label(task):
        return frame["label"].isin(known).to_numpy()
    return np.array([set(v) <= known for v in frame["labels"]], dtype=bool)


def target_scaling(frame: pd.DataFrame) -> tuple[float, float]:
    """Mean and standard deviation of the regression target (std 1 when constant)."""
    values = frame["target"].to_numpy(dtype=float)
    std = float(values.std()) if len(values) > 1 else 1.0
    return float(values.mean()) if len(values) else 0.0, std if std > 0 else 1.0


def encode_targets(
    frame: pd.DataFrame, task: str, labels: list[str], mean: float = 0.0, std: float = 1.0
) -> tuple[torch.Tensor, np.ndarray | None]:
    """Targets: class ids [n] (long), 0/1 matrix [n, C] (float) or standardised values [n] (float)."""
    if task == "regression":
        values = (frame["target"].to_numpy(dtype=np.float64) - mean) / std
        return torch.tensor(values, dtype=torch.float32), None
    index = {x: i for i, x in enumerate(labels)}
    if is_single_label(task):
        ids = np.array([index[x] for x in frame["label"]], dtype=np.int64)
        return torch.from_numpy(ids), ids
    matrix = np.zeros((len(frame), len(labels)), dtype=np.float32)
    for row, values in enumerate(frame["labels"]):
        for v in values:
            matrix[row, index[v]] = 1.0
    return torch.from_numpy(matrix), None


def model_max_length(model, tokenizer) -> int:
    limits = [getattr(model.config, "max_position_embeddings", 512) or 512, 512]
    if 0 < getattr(tokenizer, "model_max_length", 0) < 100_000:
        limits.append(tokenizer.model_max_length)
    return int(min(limits))


def encode_texts(tokenizer, texts: list[str], limit: int) -> list[list[int]]:
    if len(texts) == 0:  # a job without validation rows (a federated client); fast tokenizers fail on []
        return []
    return tokenize(tokenizer, [str(t) for t in texts], limit)


def choose_max_length(tokenizer, texts: list[str], configured: int | None, limit: int) -> int:
    """Configured cap, else the 99th percentile token length of the training texts (never above ``limit``)."""
    if configured:
        return min(configured, limit)
    lengths = np.array([len(x) for x in tokenize(tokenizer, [str(t) for t in texts], limit)])
    return sequence_cap(lengths, limit)


def class_weights(task: str, targets: torch.Tensor, n_labels: int) -> torch.Tensor | None:
    """Inverse-frequency weights (single-label, mean 1 over present classes) or pos_weight (multi-label)."""
    if is_single_label(task):
        counts = torch.bincount(targets, minlength=n_labels).float()
        weights = torch.where(
            counts > 0, counts.sum() / (n_labels * counts.clamp_min(1)), torch.ones_like(counts)
        )
        return weights
    if task == "multi-label":
        pos = targets.sum(0)
        return ((len(targets) - pos) / pos.clamp_min(1)).clamp(max=100.0)
    return None
