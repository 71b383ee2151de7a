"""`evaluate_outputs`: every evaluation number of one model on one set of rows, from arrays only."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from keepfit.config import EvaluateConfig
from keepfit.data.fairness import fairness_groups
from keepfit.errors import DataError
from keepfit.evaluation import calibration as cal
from keepfit.evaluation import metrics as m
from keepfit.evaluation._json import jsonable
from keepfit.evaluation.bootstrap import bootstrap_sums, percentile_interval
from keepfit.evaluation.fairness import fairness_headline, group_fairness
from keepfit.evaluation.open_set import OPEN_SET_METRICS, open_set_metrics
from keepfit.evaluation.slices import slice_masks
from keepfit.types import IMAGE, TEXT, answer_kind, is_single_label

__all__ = ["EvaluationResult", "evaluate_outputs", "MAX_LISTED_ERRORS"]

MAX_LISTED_ERRORS = 20

# Metrics that get bootstrap intervals, per task (all come from the same resampled sums, so they are cheap).
_INTERVAL_METRICS = {
    "single-label": ("accuracy", "macro_f1", "weighted_f1", "top_k_accuracy"),
    "multi-label": ("subset_accuracy", "hamming_loss", "micro_f1", "macro_f1"),
    "regression": ("mae", "rmse", "r2"),
    "text-generation": ("accuracy", "exact_match", "token_f1", "field_match", "json_valid", "rouge_l", "eos_rate"),
}
# The metric reported (with an interval) for every slice (text-generation: the share of right answers).
SLICE_METRIC = {
    "single-label": "accuracy", "multi-label": "subset_accuracy", "regression": "mae", "text-generation": "accuracy"
}


@dataclass
class EvaluationResult:
    """Everything `keepfit evaluate` reports. Shapes: ``confusion`` [C][C] (rows = truth) for single-label,
    [C][2][2] (per label ``[[tn, fp], [fn, tp]]``) for multi-label, None for regression. ``open_set``: what
    abstaining does (:func:`keepfit.evaluation.open_set.open_set_metrics`), None when not asked for.
    text-generation results come from :func:`keepfit.evaluation.generation.evaluate_generations`: no labels, per
    JSON field ``per_class`` {accuracy, n}, the generated answers in ``predicted``."""

    task: str
    labels: list[str]
    n: int
    headline: dict[str, float]
    intervals: dict[str, tuple[float, float]]
    per_class: dict[str, dict[str, float]]
    per_slice: dict[str, dict[str, dict[str, Any]]]
    confusion: list | None
    calibration: dict[str, Any] | None
    thresholds: dict[str, float] | None
    predicted: list
    top_k: int | None
    settings: dict[str, Any] = field(default_factory=dict)
    errors: list[dict[str, Any]] = field(default_factory=list)
    open_set: dict[str, Any] | None = None
    confused: list[dict[str, Any]] = field(default_factory=list)  # image rows: the most confused class pairs
    truth: np.ndarray | None = field(default=None, repr=False)  # y_true as evaluated, for the report's plots
    fairness: dict[str, Any] | None = None  # per-group figures and gaps (evaluate.fairness_columns), see fairness.py

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (NaN becomes null). Per-row predictions are left out; see ``.predicted``."""
        return jsonable(
            {
                "task": self.task,
                "labels": self.labels,
                "n": self.n,
                "headline": self.headline,
                "intervals": self.intervals,
                "per_class": self.per_class,
                "per_slice": self.per_slice,
                "confusion": self.confusion,
                "calibration": self.calibration,
                "thresholds": self.thresholds,
                "top_k": self.top_k,
                "settings": self.settings,
                "errors": self.errors,
                "open_set": self.open_set,
                **({"confused": self.confused} if self.confused else {}),
                **({"fairness": self.fairness} if self.fairness else {}),
            }
        )


def evaluate_outputs(
    task: str,
    labels: list[str],
    y_true: np.ndarray,
    outputs: np.ndarray,
    *,
    config: EvaluateConfig,
    frame: pd.DataFrame | None = None,
    validation: tuple[np.ndarray, np.ndarray] | None = None,
    thresholds: Mapping[str, float] | Sequence[float] | np.ndarray | None = None,
    temperature: float | None = None,
    abstain_threshold: float | None = None,
    out_of_scope_label: str | None = None,
    seed: int = 0,
) -> EvaluationResult:
    """Evaluate one model's ``outputs`` against ``y_true`` (conventions: :mod:`keepfit.evaluation.metrics`).

    ``frame`` (rows aligned with the arrays) provides slices: ``slice:<name>`` columns and text-length bins
    (characters, ``config.length_bins``).

    What is served is what is judged: ``thresholds`` ([C] or ``{label: t}``, multi-label) and
    ``temperature`` are the post-processing the model serves its ``outputs`` with (a predictor's
    ``Predictions.thresholds`` / ``Predictions.temperature``; the outputs already carry the temperature).
    Given, they are used as they are and nothing is tuned or fitted: the decisions use ``thresholds``, and
    the calibration shows the raw model ("before", the temperature undone) and what is served ("after").
    Otherwise ``validation`` = (y_true, outputs) of the validation split tunes the multi-label thresholds and
    fits a temperature that is reported but not served; without it thresholds are 0.5 and no temperature is
    fitted. ``settings["threshold_source"]`` and ``calibration["temperature_source"]`` say which happened;
    ``headline["ece"]`` is always the ECE of the outputs as given (what is served).
    Open set (single-label): ``abstain_threshold`` (``Predictions.abstain_threshold``; the model abstains
    below that top probability) and ``out_of_scope_label`` (``data.out_of_scope_label``; predicting it
    abstains, and its rows are the out-of-scope ones) add ``result.open_set`` and the headline metrics
    ``open_set.answered_share``, ``open_set.answered_accuracy`` and, with that label among ``labels``,
    ``open_set.oos_recall``, ``open_set.in_scope_accuracy``, ``open_set.oos_precision``; the other metrics
    stay those of the model's best guess on every row.
    Intervals are percentile bootstrap with ``config.bootstrap`` resamples.
    Raises DataError for empty input, misaligned shapes, NaN outputs or unusable thresholds/temperature.
    """
    y, out = m.check_outputs(task, labels, y_true, outputs)
    val = None
    if validation is not None:
        val = m.check_outputs(task, labels, validation[0], validation[1], what="validation outputs")
    served_thresholds = _served_thresholds(task, labels, thresholds)
    served_temperature = _served_temperature(task, temperature)
    served_abstain = _served_abstain_threshold(task, abstain_threshold)
    settings = {
        "bootstrap": config.bootstrap,
        "confidence": config.confidence,
        "seed": seed,
        "calibration_bins": config.calibration_bins,
        "length_bins": list(config.length_bins),
        "length_unit": "characters",
    }
    if is_single_label(task):
        result = _single(labels, y, out, config, val)
    elif task == "multi-label":
        result = _multi(labels, y, out, val, served_thresholds)
        settings["threshold_source"] = (
            "served" if served_thresholds is not None else "tuned on validation" if val is not None else "default 0.5"
        )
    else:
        result = _regression(y, out)
    stats, from_sums, per_class, confusion, predicted, named_thresholds, top_k = result
    headline = _headline(task, labels, y, out, predicted, config.top_k)
    calibration = None
    if task != "regression":
        calibration = _calibration(task, y, out, val, config.calibration_bins, served_temperature)
        headline["ece"] = calibration["ece_served"]
    open_set = None
    if is_single_label(task) and (served_abstain is not None or out_of_scope_label is not None):
        open_set = open_set_metrics(
            y, out, labels, abstain_threshold=served_abstain, out_of_scope_label=out_of_scope_label
        )
        headline.update({f"open_set.{k}": open_set[k] for k in OPEN_SET_METRICS if k in open_set})
    intervals = _intervals(task, stats, from_sums, config, seed)
    masks = slice_masks(frame, len(y), config.length_bins)
    per_slice = _per_slice(task, stats, from_sums, masks, config, seed)
    fairness = _fairness(task, labels, y, predicted, frame, config, seed)
    if fairness is not None:
        gaps, gap_intervals = fairness_headline(fairness)
        headline.update(gaps)
        intervals.update(gap_intervals)
    return EvaluationResult(
        task=task,
        labels=list(labels),
        n=len(y),
        headline=headline,
        intervals=intervals,
        per_class=per_class,
        per_slice=per_slice,
        confusion=confusion,
        calibration=calibration,
        thresholds=named_thresholds,
        predicted=_named(task, labels, predicted),
        top_k=top_k,
        settings=settings,
        errors=_worst_errors(task, labels, y, out, predicted, frame),
        open_set=open_set,
        confused=most_confused(labels, y, predicted, frame) if is_single_label(task) else [],
        truth=y,
        fairness=fairness,
    )


def _fairness(task, labels, y, pred, frame, config: EvaluateConfig, seed: int) -> dict[str, Any] | None:
    """Per-group figures and gaps between groups of evaluate.fairness_columns (classification; None otherwise)."""
    if not config.fairness_columns or task in ("regression", "text-generation"):
        return None
    if frame is None:
        raise DataError(
            f"evaluate.fairness_columns is {config.fairness_columns}, which needs the evaluated rows with their "
            "groups: pass frame= (the rows that produced the outputs), or empty evaluate.fairness_columns."
        )
    groups = fairness_groups(frame, config.fairness_columns, where="the evaluated rows")
    return group_fairness(task, labels, y, pred, groups, config, seed)


def _single(labels, y, probs, config, val):
    pred = m.predict_single(probs)
    k = min(config.top_k, len(labels))
    stats = m.single_stats(y, pred, len(labels), m.top_k_hits(y, probs, k))
    known = y >= 0
    with warnings.catch_warnings():  # one label only: scikit-learn warns although `labels` is given
        warnings.filterwarnings("ignore", message="A single label was found", category=UserWarning)
        confusion = skm.confusion_matrix(y[known], pred[known], labels=np.arange(len(labels))).tolist()
    return (
        stats,
        lambda s: m.single_from_sums(s, len(labels)),
        m.per_class_single(y, probs, labels),
        confusion,
        pred,
        None,
        k,
    )


def _served_thresholds(task: str, labels: list[str], given) -> np.ndarray | None:
    if given is None:
        return None
    if task != "multi-label":
        raise DataError(f"thresholds apply to multi-label outputs only; the task is {task}. Pass thresholds=None.")
    if isinstance(given, Mapping):
        missing = [x for x in labels if x not in given]
        if missing:
            raise DataError(f"thresholds lack labels {missing}; give one threshold per label of {labels}.")
        given = [given[x] for x in labels]
    values = np.asarray(given, dtype=float).reshape(-1)
    if len(values) != len(labels):
        raise DataError(
            f"Expected {len(labels)} thresholds (one per label, in the order {labels}), got {len(values)}. "
            "Pass the Predictions.thresholds of the model that made the outputs."
        )
    if not np.all((values >= 0) & (values <= 1)):
        raise DataError(
            f"thresholds must be probabilities in [0, 1], got {values.tolist()}. "
            "Pass the Predictions.thresholds of the model that made the outputs."
        )
    return values


def _served_temperature(task: str, given: float | None) -> float | None:
    if given is None or task == "regression":
        return None
    if not (math.isfinite(given) and given > 0):
        raise DataError(
            f"temperature must be a positive finite number (the logits were divided by it), got {given!r}. "
            "Pass the Predictions.temperature of the model that made the outputs, or None."
        )
    return float(given)


def _served_abstain_threshold(task: str, given: float | None) -> float | None:
    if given is None:
        return None
    if not is_single_label(task):
        raise DataError(
            f"abstain_threshold applies to single-label outputs only; the task is {task}. Pass abstain_threshold=None."
        )
    if not 0 < given < 1:
        raise DataError(
            f"abstain_threshold must be a probability strictly between 0 and 1 (the model abstains below it), got "
            f"{given!r}. Pass the Predictions.abstain_threshold of the model that made the outputs, or None."
        )
    return float(given)


def _multi(labels, y, probs, val, served):
    if served is not None:
        thresholds = served
    else:
        thresholds = m.tune_thresholds(*val) if val is not None else np.full(len(labels), 0.5)
    pred = m.predict_multi(probs, thresholds)
    confusion = skm.multilabel_confusion_matrix(y, pred).tolist()
    named = dict(zip(labels, map(float, thresholds), strict=True))
    return (
        m.multi_stats(y, pred),
        lambda s: m.multi_from_sums(s, len(labels)),
        m.per_label_multi(y, pred, labels, thresholds),
        confusion,
        pred,
        named,
        None,
    )


def _regression(y, pred):
    return m.regression_stats(y, pred), m.regression_from_sums, {}, None, pred, None, None


def _headline(task, labels, y, out, pred, top_k) -> dict[str, float]:
    if is_single_label(task):
        return m.single_label_headline(y, out, top_k)
    if task == "multi-label":
        return m.multi_label_headline(y, pred)
    return m.regression_headline(y, out)


def _intervals(task, stats, from_sums, config: EvaluateConfig, seed: int) -> dict[str, tuple[float, float]]:
    if config.bootstrap == 0:
        return {}
    values = from_sums(bootstrap_sums(stats, config.bootstrap, seed))
    out = {}
    for name in _INTERVAL_METRICS[answer_kind(task)]:
        interval = percentile_interval(values[name], config.confidence)
        if interval is not None:
            out[name] = interval
    return out


def _per_slice(task, stats, from_sums, masks, config: EvaluateConfig, seed: int) -> dict[str, dict[str, Any]]:
    """Per slice value: n, the task's main metrics, and a bootstrap interval on :data:`SLICE_METRIC`.

    The interval resamples the whole evaluation set (as for the headline) and reads each slice's rows off it;
    every slice metric is column 1 / column 0 of the statistics (accuracy, exact match, or MAE).
    """
    key = SLICE_METRIC[answer_kind(task)]
    flat = [(name, value, mask) for name, values in masks.items() for value, mask in values.items()]
    sampled = None
    if config.bootstrap and flat:
        cols = np.column_stack([stats[:, :2] * mask[:, None] for _, _, mask in flat])
        sums = bootstrap_sums(cols, config.bootstrap, seed)
        with np.errstate(invalid="ignore", divide="ignore"):
            sampled = sums[:, 1::2] / sums[:, 0::2]
    out: dict[str, dict[str, Any]] = {name: {} for name in masks}
    for j, (name, value, mask) in enumerate(flat):
        metrics = from_sums(stats[mask].sum(axis=0))
        entry: dict[str, Any] = {"n": int(mask.sum())}
        for metric in dict.fromkeys((*_INTERVAL_METRICS[answer_kind(task)][:2], key)):
            entry[metric] = float(metrics[metric])
        if sampled is not None:
            entry["interval"] = percentile_interval(sampled[:, j], config.confidence)
        out[name][value] = entry
    return out


def _calibration(task, y, probs, val, n_bins: int, served: float | None) -> dict[str, Any]:
    """Calibration before and after temperature scaling, and which of the two is served.

    ``served`` (the temperature already in ``probs``): "before" is the raw model, recovered by undoing it,
    and "after" is ``probs``. Otherwise "before" is ``probs`` and "after" uses a temperature fitted on
    ``val`` (reported, not served).
    """
    raw = cal.apply_temperature(task, probs, 1.0 / served) if served is not None else probs
    conf, correct = cal.confidence_and_correct(task, y, raw)
    out: dict[str, Any] = {
        "unit": "row (max probability)" if is_single_label(task) else "label decision (max(p, 1-p))",
        "n_bins": n_bins,
        "ece": cal.expected_calibration_error(conf, correct, n_bins),
        "nll": cal.negative_log_likelihood(task, y, raw),
        "bins": cal.reliability_bins(conf, correct, n_bins),
        "temperature": None,
        "temperature_source": None,
        "ece_after": None,
        "nll_after": None,
        "bins_after": None,
    }
    temperature = served
    if temperature is None and val is not None:
        temperature = cal.fit_temperature(task, *val)
    if temperature is not None:
        scaled = probs if served is not None else cal.apply_temperature(task, probs, temperature)
        conf_t, correct_t = cal.confidence_and_correct(task, y, scaled)
        out.update(
            temperature=temperature,
            temperature_source="served" if served is not None else "fitted on validation (not served)",
            ece_after=cal.expected_calibration_error(conf_t, correct_t, n_bins),
            nll_after=cal.negative_log_likelihood(task, y, raw, temperature),
            bins_after=cal.reliability_bins(conf_t, correct_t, n_bins),
        )
    out["ece_served"] = out["ece_after"] if served is not None else out["ece"]
    return out


def _named(task, labels, pred) -> list:
    if is_single_label(task):
        return [labels[i] for i in pred]
    if task == "multi-label":
        return [[labels[j] for j in np.flatnonzero(row)] for row in pred]
    return [float(v) for v in pred]


MAX_CONFUSED_PAIRS, EXAMPLES_PER_PAIR = 6, 4


def most_confused(labels: list[str], y: np.ndarray, pred: np.ndarray, frame: pd.DataFrame | None) -> list[dict]:
    """For image rows: the class pairs (truth, predicted) with the most mistakes, most first, each with the
    paths of up to EXAMPLES_PER_PAIR of its images (the report shows them as thumbnails). Empty for text."""
    if frame is None or IMAGE not in frame.columns:
        return []
    wrong = np.flatnonzero((pred != y) & (y >= 0))
    if len(wrong) == 0:
        return []
    pairs = pd.Series(list(zip(y[wrong], pred[wrong], strict=True)), index=wrong)
    paths = frame[IMAGE].astype(str).to_numpy()
    names = frame[TEXT].astype(str).to_numpy() if TEXT in frame.columns else paths
    out = []
    for (true, predicted), count in pairs.value_counts(sort=True).head(MAX_CONFUSED_PAIRS).items():
        rows = pairs.index[pairs == (true, predicted)][:EXAMPLES_PER_PAIR]
        out.append({"true": labels[true], "predicted": labels[predicted], "count": int(count),
                    "images": [paths[i] for i in rows], "names": [names[i] for i in rows]})
    return out


def _worst_errors(task, labels, y, out, pred, frame) -> list[dict[str, Any]]:
    """The most confident mistakes (classification) or largest absolute errors (regression)."""
    texts = frame[TEXT].astype(str).tolist() if frame is not None and TEXT in frame.columns else None
    if is_single_label(task):
        wrong = np.flatnonzero(pred != y)
        score = out[wrong, pred[wrong]]
        order = wrong[np.argsort(-score, kind="stable")][:MAX_LISTED_ERRORS]
        rows = [
            {
                "index": int(i),
                "true": labels[y[i]] if y[i] >= 0 else None,
                "predicted": labels[pred[i]],
                "confidence": float(out[i, pred[i]]),
            }
            for i in order
        ]
    elif task == "multi-label":
        wrong = np.flatnonzero((pred != y).any(axis=1))[:MAX_LISTED_ERRORS]
        rows = [
            {
                "index": int(i),
                "true": [labels[j] for j in np.flatnonzero(y[i])],
                "predicted": [labels[j] for j in np.flatnonzero(pred[i])],
            }
            for i in wrong
        ]
    else:
        order = np.argsort(-np.abs(out - y), kind="stable")[:MAX_LISTED_ERRORS]
        rows = [
            {
                "index": int(i),
                "true": float(y[i]),
                "predicted": float(out[i]),
                "abs_error": float(abs(out[i] - y[i])),
            }
            for i in order
        ]
    if texts is not None:
        for row in rows:
            row["text"] = texts[row["index"]]
    if frame is not None and IMAGE in frame.columns:  # the report shows it as a thumbnail
        paths = frame[IMAGE].astype(str).to_numpy()
        for row in rows:
            row["image"] = paths[row["index"]]
    return rows
