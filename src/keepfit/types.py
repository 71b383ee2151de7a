"""Plain typed values the stages pass to each other.

Stages talk through these (and pandas/Arrow tables, paths), never through each other's internals.

The canonical row table (a pandas DataFrame) every stage after loading sees has these columns:

- ``row``     int, 1-based line number of the record in its source file (header is line 1 for CSV)
- ``source``  str, file name the row came from
- ``text``    str, normalised text (NFC, control characters removed, whitespace collapsed); for text-generation
              the contents of the prompt's user and assistant turns joined by newlines (duplicates, slices,
              length, drift read it)
- ``label``   str, single-label tasks
- ``labels``  list[str], multi-label tasks
- ``target``  float, regression
- ``prompt``  str, text-generation: the conversation before the answer, as JSON: a list of
              ``{"role": "system"|"user"|"assistant", "content": str}`` (system first when given; ends with a
              user turn; earlier assistant turns are context, not supervised)
- ``completion`` str, text-generation: the answer (the final assistant turn), verbatim (NFC, no trimming inside)
- ``image``   str, image-classification: absolute path of the image file (in a snapshot, its copy in the store's
              content-addressed ``images/`` folder; ``text`` then holds the path it came from, relative to its source)
- ``image_sha`` str, image-classification: SHA-256 of the image file's bytes (row identity; covered by the snapshot id)
- ``image_phash`` str, image-classification: 64-bit perceptual hash as 16 hex digits (near-duplicates)
- ``group``   str, optional (group-aware splits)
- ``time``    str/datetime, optional (time-based splits)
- ``split``   "train" | "validation" | "test", after splitting
- ``slice:<name>`` one column per configured slice column, kept as the original value (str)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd

__all__ = ["Task", "Snapshot", "SPLITS", "ROW", "SOURCE", "TEXT", "LABEL", "LABELS", "TARGET", "GROUP", "TIME",
           "SPLIT", "SLICE_PREFIX", "PROMPT", "COMPLETION", "GENERATION", "IMAGE_CLASSIFICATION", "IMAGE", "IMAGE_SHA",
           "IMAGE_PHASH", "label_column_for", "is_generation", "answer_kind", "is_single_label", "is_image",
           "inputs_of"]

Task = Literal["single-label", "multi-label", "regression", "text-generation", "image-classification"]
GENERATION = "text-generation"
IMAGE_CLASSIFICATION = "image-classification"
SPLITS: tuple[str, str, str] = ("train", "validation", "test")

ROW = "row"
SOURCE = "source"
TEXT = "text"
LABEL = "label"
LABELS = "labels"
TARGET = "target"
GROUP = "group"
TIME = "time"
SPLIT = "split"
SLICE_PREFIX = "slice:"
PROMPT = "prompt"
COMPLETION = "completion"
IMAGE = "image"
IMAGE_SHA = "image_sha"
IMAGE_PHASH = "image_phash"


def label_column_for(task: Task) -> str:
    """The canonical column that holds the answer for a task."""
    return {"single-label": LABEL, "multi-label": LABELS, "regression": TARGET, GENERATION: COMPLETION,
            IMAGE_CLASSIFICATION: LABEL}[task]


def answer_kind(task: str) -> str:
    """What the model answers, whatever it reads: image-classification answers one label per row like
    single-label text classification (the metrics, calibration, flips and gate rules are shared)."""
    return "single-label" if task == IMAGE_CLASSIFICATION else task


def is_single_label(task: str) -> bool:
    """Whether the task picks exactly one label per row (text or image)."""
    return answer_kind(task) == "single-label"


def inputs_of(frame: pd.DataFrame) -> list[str]:
    """What a model reads for each row of a canonical table: the image's path for image rows, else the text."""
    return frame[IMAGE if IMAGE in frame else TEXT].astype(str).tolist()


def is_image(task: str) -> bool:
    """Whether the task reads images (``image`` column) rather than text."""
    return task == IMAGE_CLASSIFICATION


def is_generation(task: str) -> bool:
    """Whether the task trains a causal LM to write its answer (text-generation) rather than to classify."""
    return task == GENERATION


@dataclass(frozen=True)
class Snapshot:
    """The cleaned, split data of one version, stored under its content hash.

    ``train``/``validation``/``test`` are canonical row tables; ``quarantine`` holds every rejected row
    with ``row``, ``source``, ``reason`` and the original values; ``report`` is the check report (JSON-able).
    """

    id: str
    path: Path
    task: Task
    labels: list[str]
    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame
    quarantine: pd.DataFrame
    report: dict[str, Any] = field(default_factory=dict)
    parent: str | None = None

    def split(self, name: str) -> pd.DataFrame:
        return {"train": self.train, "validation": self.validation, "test": self.test}[name]

    @property
    def answer_column(self) -> str:
        return label_column_for(self.task)
