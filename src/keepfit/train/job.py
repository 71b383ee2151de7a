"""The loop's unit of work: everything one training run needs, built once by a task kind's builder.

Classification's builder is :func:`keepfit.train.loop.build_job`; text-generation's is
:func:`keepfit.train.sft.build_sft_job`. A task kind plugs into the one loop through ``inputs`` (a batch's model
inputs), ``loss_fn`` (the training loss of a batch's outputs), ``evaluate_fn`` (the validation metrics) and
``export_fn`` (the model folder); the last three default to classification's when None. ``batches``
(image-classification) replaces ``inputs`` in the loop with an epoch's prefetched stream of batches.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from keepfit.config import KeepfitConfig
from keepfit.train import prepare

__all__ = ["Job"]


@dataclass
class Job:
    """Everything the loop needs, built once."""

    config: KeepfitConfig
    run_dir: Path
    task: str
    labels: list[str]
    model: nn.Module  # what trains: the full model, its peft wrapper, or a HeadModel on cached features
    full_model: nn.Module
    tokenizer: Any
    train: prepare.Encoded
    val: prepare.Encoded
    inputs: Callable[[np.ndarray], dict[str, torch.Tensor]]
    val_logits: Callable[[nn.Module], torch.Tensor]
    precision: str
    max_length: int
    mean: float = 0.0
    std: float = 1.0
    weights: torch.Tensor | None = None
    row_weights: torch.Tensor | None = None  # [n train rows] loss weight per row (train.fairness_reweight)
    teacher_logits: torch.Tensor | None = None
    teacher_correct: torch.Tensor | None = None
    teacher_index: torch.Tensor | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    loss_fn: Callable[[torch.Tensor, np.ndarray], torch.Tensor] | None = None  # (logits, rows) -> loss
    evaluate_fn: Callable[[nn.Module], dict[str, float]] | None = None  # model -> validation metrics
    export_fn: Callable[..., Path] | None = None  # (job, snapshot, state, metric) -> model folder
    # a strategy's last step on the best weights before classification's export (few-shot: fit the head)
    finish: Callable[[Job], None] | None = None
    # (epoch's plan of row-index batches, start position, epoch) -> the inputs of plan[start:], in order, made
    # ahead of the step (images: decoded and augmented by loader workers); None: the loop calls ``inputs``
    batches: Callable[[list[list[int]], int, int], Iterator[dict[str, torch.Tensor]]] | None = None
