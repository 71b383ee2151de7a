"""Batch prediction from a model folder: length-sorted batches, inference mode, outputs in input order.

Texts are cleaned as the data check cleaned the training texts (:func:`keepfit.data.normalize.normalize_text`)
and outputs go through the folder's saved post-processing (:mod:`keepfit.train.postprocess`): the temperature,
the multi-label thresholds and the regression target scaling that evaluation and the gate judged.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import torch
from torch import nn

from keepfit._io import atomic_write_bytes
from keepfit.data.normalize import normalize_text
from keepfit.errors import DataError, ModelError
from keepfit.train.batching import tokenize
from keepfit.train.inference import choose_precision, sorted_forward
from keepfit.train.model import (
    load_classifier,
    load_tokenizer,
    read_meta,
    resolve_model_path,
    task_from_config,
)
from keepfit.train.postprocess import load_postprocessing
from keepfit.types import IMAGE_CLASSIFICATION, is_single_label

__all__ = [
    "Predictions",
    "Predictor",
    "PredictReport",
    "load_predictor",
    "predict_file",
    "outputs_from_logits",
    "clean_texts",
    "logits_cache",
    "write_table",
]


@dataclass
class Predictions:
    """Model outputs for n texts.

    ``outputs``: single-label [n, C] softmax probabilities, multi-label [n, C] sigmoid probabilities (both
    after the saved temperature), regression [n] predicted targets (in the original units); columns follow
    ``labels``. ``thresholds`` [C] (multi-label): a label is predicted when its probability is >= its
    threshold. ``temperature``: what the logits were divided by (None: not scaled). ``abstain_threshold``
    and ``out_of_scope_label`` (single-label): the model abstains below that top probability, and when it
    predicts that label (see :meth:`abstained`).
    """

    task: str
    labels: list[str]
    outputs: np.ndarray
    texts_per_second: float
    top_k_labels: list[list[str]] = field(default_factory=list)
    top_k_scores: list[list[float]] = field(default_factory=list)
    thresholds: np.ndarray | None = None
    temperature: float | None = None
    abstain_threshold: float | None = None
    out_of_scope_label: str | None = None

    def decisions(self) -> np.ndarray:
        """What the model predicts: label index [n] (single-label), 0/1 [n, C] with ``thresholds``
        (multi-label), or the predicted target [n] (regression)."""
        if is_single_label(self.task):
            return self.outputs.argmax(axis=1) if len(self.outputs) else np.zeros(0, dtype=int)
        if self.task == "multi-label":
            limits = self.thresholds if self.thresholds is not None else 0.5
            return (self.outputs >= limits).astype(int)
        return self.outputs

    def abstained(self) -> np.ndarray:
        """Bool [n]: where the model abstains (single-label): its top probability is below
        ``abstain_threshold``, or it predicts ``out_of_scope_label``. All False for other tasks and for a
        model with neither."""
        if not is_single_label(self.task):
            return np.zeros(len(self.outputs), dtype=bool)
        from keepfit.evaluation.open_set import abstentions

        oos = self.labels.index(self.out_of_scope_label) if self.out_of_scope_label in self.labels else None
        return abstentions(self.outputs, self.abstain_threshold, oos)


@dataclass(frozen=True)
class PredictReport:
    out_path: Path
    rows: int
    seconds: float
    texts_per_second: float
    task: str


def outputs_from_logits(
    logits: torch.Tensor,
    task: str,
    mean: float = 0.0,
    std: float = 1.0,
    temperature: float | None = None,
) -> np.ndarray:
    """Probabilities (classification; logits divided by ``temperature`` first) or targets in original units
    (regression) from raw logits."""
    logits = logits.float()
    if task == "regression":
        return (logits.reshape(-1) * std + mean).numpy()
    if temperature is not None:
        logits = logits / temperature
    if is_single_label(task):
        return torch.softmax(logits, dim=-1).numpy()
    return torch.sigmoid(logits).numpy()


def clean_texts(texts: list[str]) -> list[str]:
    """``texts`` cleaned exactly as the data check cleans training texts (NFC, controls removed, whitespace
    collapsed and trimmed), so a served text is the text the model was trained and judged on."""
    if not texts:
        return []
    return normalize_text(pa.array(texts, pa.string())).values.to_pylist()


_CACHES: list[tuple[Path, dict[tuple[str, str], dict[str, torch.Tensor]]]] = []


@contextlib.contextmanager
def logits_cache(model_dir: Path) -> Iterator[None]:
    """While open, the raw outputs of the model in ``model_dir`` are computed once per distinct text, by any
    Predictor of that folder: an update asks the champion about the same rows for its screen, the replay
    margins, the teacher pass and the interpolation. Only for a folder whose weights do not change meanwhile."""
    entry = (Path(model_dir).resolve(), {})
    _CACHES.append(entry)
    try:
        yield
    finally:
        _CACHES.remove(entry)


def _cache_for(model_dir: Path, precision: str) -> dict[str, torch.Tensor] | None:
    folder = Path(model_dir).resolve()
    for cached, store in reversed(_CACHES):
        if cached == folder:
            return store.setdefault((str(folder), precision), {})
    return None


def _read_model_config(model_dir: Path):
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(str(model_dir))
    except (OSError, ValueError) as err:
        raise ModelError(f"Could not read the model config in {model_dir}: {err}") from None


class Predictor:
    """A loaded model folder. ``predict(texts)`` gives :class:`Predictions`.

    ``fp32_below``: passes of fewer texts run in fp32 even where ``precision`` chose bf16 (a server's lone
    requests: bf16 autocast casts every weight on each call, which for one text costs more than it saves:
    18 vs 12 ms per text with all-MiniLM-L6-v2 on this project's 2-core machine; BENCHMARKS.md)."""

    fp32_below: int = 0

    def __init__(self, model_dir: Path, *, precision: str = "auto", threads: int | None = None) -> None:
        self.model_dir = Path(model_dir)
        self.meta = read_meta(self.model_dir)
        self.model = self._load_model()
        self.tokenizer = load_tokenizer(self.model_dir)
        config = self.model.config if self.model is not None else _read_model_config(self.model_dir)
        self.task = self.meta.get("task") or task_from_config(config)
        self.labels = list(self.meta.get("labels") or [config.id2label[i] for i in range(config.num_labels)])
        self.max_length = self.meta.get("max_length") or min(self.tokenizer.model_max_length, 512)
        self.postprocessing = load_postprocessing(self.model_dir)
        self.mean = self.postprocessing.target_mean
        self.std = self.postprocessing.target_std
        self.temperature = self.postprocessing.temperature
        self.thresholds = self.postprocessing.decision_thresholds()
        self.precision = choose_precision(precision)
        if threads:
            torch.set_num_threads(threads)

    def _load_model(self) -> nn.Module | None:
        """The torch classifier that :meth:`_forward` runs; a backend that runs another engine returns None
        (its model config is then read from the folder, and no weights are loaded)."""
        try:
            return load_classifier(self.model_dir, pooling=self.meta.get("pooling", "cls")).eval()
        except (OSError, ValueError, RuntimeError) as err:
            raise ModelError(f"Could not load the model in {self.model_dir}: {err}") from None

    def logits(self, texts: list[str], batch_size: int = 64) -> torch.Tensor:
        """Raw outputs [n, C] (regression [n, 1]) of the cleaned ``texts``, in input order; no post-processing.

        Inside :func:`logits_cache` for this model folder, each distinct text is computed once."""
        cleaned = clean_texts([str(t) for t in texts])
        if not cleaned:
            return torch.zeros((0, 1 if self.task == "regression" else len(self.labels)))
        memo = _cache_for(self.model_dir, self.precision)
        if memo is None:
            return self._forward(cleaned, batch_size)
        missing = [t for t in dict.fromkeys(cleaned) if t not in memo]
        if missing:
            memo.update(zip(missing, self._forward(missing, batch_size), strict=True))
        return torch.stack([memo[t] for t in cleaned])

    def _forward(self, cleaned: list[str], batch_size: int) -> torch.Tensor:
        ids = tokenize(self.tokenizer, cleaned, self.max_length)
        pad = self.tokenizer.pad_token_id or 0
        precision = "fp32" if len(cleaned) < self.fp32_below else self.precision
        return sorted_forward(ids, pad, batch_size, lambda b: self.model(**b).logits, precision=precision)

    def predict(self, texts: list[str], batch_size: int = 64, top_k: int = 5) -> Predictions:
        """Outputs for ``texts`` (see :class:`Predictions`), with the ``top_k`` labels per text."""
        texts = [str(t) for t in texts]
        start = time.perf_counter()
        logits = self.logits(texts, batch_size)
        outputs = outputs_from_logits(logits, self.task, self.mean, self.std, self.temperature)
        seconds = max(time.perf_counter() - start, 1e-9)
        top_labels: list[list[str]] = []
        top_scores: list[list[float]] = []
        if self.task != "regression" and len(texts):
            k = min(top_k, len(self.labels))
            order = np.argsort(-outputs, axis=1, kind="stable")[:, :k]
            top_labels = [[self.labels[j] for j in row] for row in order]
            top_scores = [[float(outputs[i, j]) for j in row] for i, row in enumerate(order)]
        return Predictions(
            self.task,
            self.labels,
            outputs,
            len(texts) / seconds,
            top_labels,
            top_scores,
            thresholds=self.thresholds,
            temperature=None if self.task == "regression" else self.temperature,
            abstain_threshold=self.postprocessing.abstain_threshold,
            out_of_scope_label=self.postprocessing.out_of_scope_label,
        )


def load_predictor(model_dir: Path, *, precision: str = "auto") -> Predictor:
    """A Predictor for a keepfit model folder, a run folder (its ``model/``) or a plain HF folder; for an image
    model folder (image_config.json, or keepfit.json's task image-classification) an
    :class:`~keepfit.train.vision.ImagePredictor` (same surface; inputs are image paths)."""
    folder = Path(model_dir)
    folder = folder / "model" if not (folder / "keepfit.json").exists() and (folder / "model").is_dir() else folder
    if (folder / "image_config.json").exists() or read_meta(folder).get("task") == IMAGE_CLASSIFICATION:
        from keepfit.train.vision import ImagePredictor

        return ImagePredictor(folder, precision=precision)
    return Predictor(resolve_model_path(model_dir), precision=precision)


def _read_table(path: Path) -> pd.DataFrame:
    from keepfit.data.load import open_source

    return open_source(path).to_pandas()


def write_table(frame: pd.DataFrame, path: Path) -> None:
    """``frame`` written atomically to ``path`` in the format its suffix names (Parquet, JSONL, TSV, else CSV)."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import io

        buf = io.BytesIO()
        frame.to_parquet(buf, index=False)
        data = buf.getvalue()
    elif suffix in (".jsonl", ".json"):
        data = frame.to_json(orient="records", lines=True, force_ascii=False).encode()
    else:
        data = frame.to_csv(index=False, sep="\t" if suffix == ".tsv" else ",").encode()
    atomic_write_bytes(path, data)


def prediction_columns(preds: Predictions) -> dict[str, list]:
    """label, score and top_k (JSON list of [label, probability]) per row, and for single-label whether the
    model abstained (see :meth:`Predictions.abstained`; label and score stay its best guess); prediction
    for regression."""
    if preds.task == "regression":
        return {"prediction": [float(x) for x in preds.outputs]}
    top = [
        json.dumps([[lab, round(p, 6)] for lab, p in zip(ls, ps, strict=False)])
        for ls, ps in zip(preds.top_k_labels, preds.top_k_scores, strict=False)
    ]
    if preds.task == "multi-label":
        chosen = ["|".join(preds.labels[j] for j in np.flatnonzero(row)) for row in preds.decisions()]
        return {"label": chosen, "score": [float(row.max()) for row in preds.outputs], "top_k": top}
    best = preds.decisions()
    return {
        "label": [preds.labels[j] for j in best],
        "score": [float(preds.outputs[i, j]) for i, j in enumerate(best)],
        "top_k": top,
        "abstained": [bool(x) for x in preds.abstained()],
    }


def predict_file(
    model_dir: Path,
    in_path: Path,
    out_path: Path,
    *,
    text_column: str = "text",
    batch_size: int = 64,
    top_k: int = 5,
) -> PredictReport:
    """Predict every row of ``in_path`` (CSV/TSV/JSONL/Parquet); write it with predictions to ``out_path``.

    Rows keep their input order; texts are cleaned as the data check cleans them (:func:`clean_texts`), and
    the input columns are written back unchanged. The output format follows ``out_path``'s suffix.
    """
    frame = _read_table(Path(in_path))
    if text_column not in frame.columns:
        raise DataError(
            f"{in_path} has no column {text_column!r} (columns: {list(frame.columns)}). "
            "Pass --text-column NAME."
        )
    predictor = load_predictor(model_dir)
    start = time.perf_counter()
    preds = predictor.predict(frame[text_column].fillna("").astype(str).tolist(), batch_size, top_k)
    out = frame.copy()
    for name, values in prediction_columns(preds).items():
        out[f"predicted_{name}" if name in frame.columns else name] = values  # never overwrite input columns
    write_table(out, Path(out_path))
    seconds = time.perf_counter() - start
    return PredictReport(Path(out_path), len(frame), seconds, preds.texts_per_second, preds.task)
