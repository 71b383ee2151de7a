"""Paired comparison of an old and a new model on the same examples.

Everything is *paired*: both models are scored on the same rows, and every bootstrap resample uses the same
row indices for both (their per-example statistics are stacked and resampled together), so intervals on
deltas reflect the correlation between the two models.

What "right" means per example (used for flips, McNemar and slices):

- single-label: the predicted label is the true label;
- multi-label: the whole label set is predicted exactly, each label at its model's threshold
  (``thresholds_old`` / ``thresholds_new``, the tuned thresholds the model is served with; 0.5 when not given) -
  a flip is an example that was fully right and now is not (or the reverse);
- regression: ``|prediction - target| <= tolerance`` (``EvaluateConfig.regression_tolerance``, else half the
  standard deviation of the targets); a negative flip is an example whose error grew beyond the tolerance;
- text-generation: the ``right`` column of the score matrices of
  :func:`keepfit.evaluation.generation.score_generations` (the configured match score at least its threshold);
  the outputs are those [n, 7] matrices, the generated texts travel in ``frame`` (columns :data:`OUTPUT_OLD`,
  :data:`OUTPUT_NEW` beside the reference ``completion``), and there are no labels.

Labels are aligned by **name**: the new model may know labels the old one never saw. ``y_true`` indexes the
union ``labels_new + [labels of the old model that the new one lacks]``. An old model's prediction can never
be a label it does not know, so examples of new labels always count as wrong for the old model.

Per class the compared metric is recall (accuracy on the class's examples) for single-label and F1 for
multi-label; for text-generation with JSON references the "classes" are the reference objects' top-level fields
and the metric is ``field_accuracy`` (the share of the rows whose reference has the field that the answer gets
right; recall-like); per slice it is the rate of right examples as defined above. Per class and per slice the paired
counts are kept too: ``old_right`` (rows the old model got right), ``old_right_new_wrong`` (negative flips) and
``old_wrong_new_right``; for a class, "right" means the class is predicted for a row that has it.

The negative flip rate has one definition, ``NFR = #(old right and new wrong) / N`` over the ``N`` rows of a
group; :func:`negative_flip_sentence` words it, with the share of previously-right rows beside it, for every
message and report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import binomtest

from keepfit.config import EvaluateConfig
from keepfit.data.fairness import fairness_groups
from keepfit.errors import ConfigError, DataError
from keepfit.evaluation import calibration as cal
from keepfit.evaluation import fairness as fair
from keepfit.evaluation import generation as gen
from keepfit.evaluation import metrics as m
from keepfit.evaluation._json import jsonable
from keepfit.evaluation.bootstrap import bootstrap_sums, percentile_interval
from keepfit.evaluation.slices import slice_masks
from keepfit.types import COMPLETION, GENERATION, PROMPT, TEXT, answer_kind, is_generation, is_single_label

__all__ = [
    "Comparison",
    "GroupComparison",
    "compare_outputs",
    "union_labels",
    "mcnemar_exact",
    "DELTA_METRICS",
    "MAX_LISTED_FLIPS",
    "OUTPUT_OLD",
    "OUTPUT_NEW",
    "ALL",
    "EARLIER",
    "NEW",
    "describe_group",
    "negative_flip_sentence",
]

ALL = "all"
EARLIER = "earlier test set"  # test rows the champion was judged on before (what it could already do)
NEW = "new test set"  # test rows that came with the batch
MAX_LISTED_FLIPS = 200
# text-generation: the frame columns holding the two models' generated answers
OUTPUT_OLD, OUTPUT_NEW = "output_old", "output_new"
DELTA_METRICS = {
    "single-label": ("accuracy", "macro_f1", "weighted_f1", "top_k_accuracy"),
    "multi-label": ("subset_accuracy", "hamming_loss", "micro_f1", "macro_f1"),
    "regression": ("mae", "rmse", "r2", "within_tolerance"),
    GENERATION: ("accuracy", "exact_match", "field_match", "token_f1", "rouge_l", "eos_rate"),
}
CLASS_METRIC = {"single-label": "recall", "multi-label": "f1", GENERATION: "field_accuracy"}
SLICE_METRIC = {
    "single-label": "accuracy", "multi-label": "exact match", "regression": "within tolerance",
    GENERATION: "share right",
}


@dataclass
class GroupComparison:
    """Old vs new on one group of examples. Deltas are new - old; ``interval``: paired bootstrap interval."""

    name: str
    n: int
    deltas: dict[str, dict[str, Any]]
    mcnemar: dict[str, Any]
    negative_flip_rate: float
    positive_flip_rate: float
    negative_flips: list[dict[str, Any]]
    positive_flips: list[dict[str, Any]]
    per_class: dict[str, dict[str, Any]]
    per_slice: dict[str, dict[str, dict[str, Any]]]
    calibration: dict[str, float] | None
    negative_flip_rate_of_right: float = float("nan")  # negative flips / rows the old model got right
    # per fairness column and gap (evaluate.fairness_columns): both models' gaps and the paired change
    fairness: dict[str, dict[str, dict[str, Any]]] | None = None

    def to_dict(self) -> dict[str, Any]:
        return jsonable(self.__dict__)


@dataclass
class Comparison:
    """A paired comparison, per named group of examples (always including ``"all"``)."""

    task: str
    labels: list[str]
    labels_old: list[str]
    labels_new: list[str]
    n: int
    groups: dict[str, GroupComparison]
    settings: dict[str, Any] = field(default_factory=dict)

    def group(self, name: str = ALL) -> GroupComparison:
        if name not in self.groups:
            raise ConfigError(f"The comparison has no group named {name!r}; it has {sorted(self.groups)}.")
        return self.groups[name]

    def to_dict(self) -> dict[str, Any]:
        return jsonable(
            {
                "task": self.task,
                "labels": self.labels,
                "labels_old": self.labels_old,
                "labels_new": self.labels_new,
                "n": self.n,
                "settings": self.settings,
                "groups": {k: g.to_dict() for k, g in self.groups.items()},
            }
        )


def union_labels(labels_old: list[str], labels_new: list[str]) -> list[str]:
    """The shared label space: the new model's labels, then the old model's labels the new one lacks."""
    return list(labels_new) + [x for x in labels_old if x not in set(labels_new)]


def describe_group(name: str) -> str:
    """How a group is named in a sentence: "the earlier test set", "all rows", "group 'x'"."""
    if name == ALL:
        return "all rows"
    if name in (EARLIER, NEW):
        return f"the {name}"
    return f"group {name!r}"


def negative_flip_sentence(flips: int, n: int, old_right: int, group: str) -> str:
    """The one wording of the negative flip rate, e.g. "18 negative flips on the earlier test set: 6.1% of its
    293 rows, 7.0% of the 257 rows the old model got right"."""
    where = describe_group(group)
    if n == 0:
        return f"no negative flips on {where}: it has no rows"
    its = "the" if group == ALL else "its"
    of_right = (
        f"{flips / old_right:.1%} of the {old_right} rows the old model got right"
        if old_right
        else "the old model got none of them right"
    )
    noun = "negative flip" if flips == 1 else "negative flips"
    return f"{flips} {noun} on {where}: {flips / n:.1%} of {its} {n} rows, {of_right}"


def mcnemar_exact(old_right_new_wrong: int, old_wrong_new_right: int) -> float:
    """Two-sided exact McNemar p-value: binomial test of discordant pairs against 1/2 (1.0 if none)."""
    b, c = int(old_right_new_wrong), int(old_wrong_new_right)
    if b + c == 0:
        return 1.0
    return float(binomtest(c, b + c, 0.5, alternative="two-sided").pvalue)


def _expand(task: str, own: list[str], union: list[str], outputs: np.ndarray) -> np.ndarray:
    """Outputs [n, len(own)] placed in the union label space (zero probability for labels the model lacks)."""
    if task == "regression":
        return outputs
    where = {name: i for i, name in enumerate(union)}
    full = np.zeros((len(outputs), len(union)), dtype=float)
    full[:, [where[name] for name in own]] = outputs
    return full


def compare_outputs(
    task: str,
    labels_old: list[str],
    labels_new: list[str],
    y_true: np.ndarray,
    outputs_old: np.ndarray,
    outputs_new: np.ndarray,
    *,
    frame: pd.DataFrame | None = None,
    config: EvaluateConfig,
    groups: dict[str, np.ndarray] | None = None,
    seed: int = 0,
    thresholds_old: np.ndarray | None = None,
    thresholds_new: np.ndarray | None = None,
) -> Comparison:
    """Paired comparison of two models' outputs on the same rows (conventions in the module docstring).

    ``groups`` maps a name to a boolean mask [n] of rows to report on separately (the pipeline's update passes
    :data:`EARLIER`, :data:`NEW` and :data:`ALL`, which the gate's rules judge); ``"all"`` is added when
    missing. In the ``"all"`` group the other groups also appear as slices. ``thresholds_old`` /
    ``thresholds_new`` (multi-label only): per-label decision thresholds [len(labels_old)] /
    [len(labels_new)], aligned with each model's own labels; 0.5 when None.

    text-generation: ``labels_old``/``labels_new`` are [] and ``y_true`` is ignored; ``outputs_old`` /
    ``outputs_new`` are the [n, 7] score matrices of :func:`keepfit.evaluation.generation.score_generations`;
    ``frame`` (optional) holds the rows with ``completion`` and the generated texts in :data:`OUTPUT_OLD` /
    :data:`OUTPUT_NEW`, for the flips' texts and, when the references are JSON objects, the per-field table.
    """
    if is_generation(task):
        return _compare_generation(outputs_old, outputs_new, frame=frame, config=config, groups=groups, seed=seed)
    union = union_labels(labels_old, labels_new) if task != "regression" else []
    y, old = m.check_outputs(
        task,
        union,
        y_true,
        _expand(task, labels_old, union, _as2d(task, outputs_old, labels_old)),
        what="old model outputs",
    )
    _, new = m.check_outputs(
        task,
        union,
        y_true,
        _expand(task, labels_new, union, _as2d(task, outputs_new, labels_new)),
        what="new model outputs",
    )
    n = len(y)
    if frame is not None and len(frame) != n:
        raise DataError(
            f"The frame has {len(frame)} rows but the outputs have {n}; pass the rows that were "
            "scored, in the same order."
        )
    masks = _groups(groups, n)
    tolerance = _tolerance(task, y, config)
    cut_old = _thresholds(task, labels_old, union, thresholds_old, "thresholds_old")
    cut_new = _thresholds(task, labels_new, union, thresholds_new, "thresholds_new")
    model_old = _score(task, y, old, config, tolerance, cut_old)
    model_new = _score(task, y, new, config, tolerance, cut_new)
    settings = {
        "bootstrap": config.bootstrap,
        "confidence": config.confidence,
        "seed": seed,
        "class_metric": CLASS_METRIC.get(answer_kind(task)),
        "slice_metric": SLICE_METRIC[answer_kind(task)],
        "regression_tolerance": tolerance,
        "length_unit": "characters",
        "length_bins": config.length_bins,
        "thresholds": None
        if task != "multi-label"
        else {"old": "0.5" if thresholds_old is None else "given", "new": "0.5" if thresholds_new is None else "given"},
    }
    fair = fairness_groups(frame, config.fairness_columns, where="the compared rows") if (
        config.fairness_columns and frame is not None and task != "regression") else {}
    # the labels judged: evaluate.fairness_labels, else every label both models know (a label one model lacks
    # would read as a gap); none without fairness columns (regression has no labels at all)
    judged = ([union.index(x) for x in config.fairness_labels if x in union] or [
        union.index(x) for x in labels_old if x in labels_new]) if fair else []
    out = {}
    for name, mask in masks.items():
        extra = {k: v for k, v in masks.items() if k != ALL} if name == ALL else None
        out[name] = _compare_group(
            name, mask, task, union, y, old, new, model_old, model_new, frame, extra, config, seed
        )
        if fair:
            out[name].fairness = _fairness_changes(task, union, judged, y, model_old, model_new, fair, mask, config,
                                                   seed)
    return Comparison(
        task=task,
        labels=union,
        labels_old=list(labels_old),
        labels_new=list(labels_new),
        n=n,
        groups=out,
        settings=settings,
    )


def _as2d(task: str, outputs: np.ndarray, labels: list[str]) -> np.ndarray:
    out = np.asarray(outputs, dtype=float)
    if task != "regression" and (out.ndim != 2 or out.shape[1] != len(labels)):
        raise DataError(
            f"{task} outputs must have one column per label of their model ({len(labels)}), "
            f"got shape {list(out.shape)}."
        )
    return out


def _thresholds(
    task: str, own: list[str], union: list[str], given: np.ndarray | None, what: str
) -> np.ndarray | float:
    """Per-label thresholds in the union label space; a label the model lacks is never predicted."""
    if given is None:
        return 0.5
    if task != "multi-label":
        raise DataError(f"{what} applies to multi-label comparisons only; this one is {task}. Pass None.")
    cut = np.asarray(given, dtype=float)
    if cut.shape != (len(own),) or not np.isfinite(cut).all():
        raise DataError(
            f"{what} must hold one finite threshold per label of its model ({len(own)}), got shape "
            f"{list(cut.shape)}; pass the thresholds saved with the model, in its label order."
        )
    full = np.full(len(union), np.inf)
    full[[union.index(name) for name in own]] = cut
    return full


def _groups(groups: dict[str, np.ndarray] | None, n: int) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for name, mask in (groups or {}).items():
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (n,):
            raise DataError(
                f"Group {name!r} has a mask of shape {list(mask.shape)}; expected [{n}] (one per row)."
            )
        out[name] = mask
    if ALL not in out:
        out = {ALL: np.ones(n, dtype=bool), **out}
    return out


def _tolerance(task: str, y: np.ndarray, config: EvaluateConfig) -> float | None:
    if task != "regression":
        return None
    if config.regression_tolerance is not None:
        return float(config.regression_tolerance)
    return float(0.5 * np.std(y))


@dataclass
class _Scored:
    pred: np.ndarray
    correct: np.ndarray
    stats: np.ndarray
    class_right: np.ndarray | None = None  # [n, C] bool: the row has the class and the model predicts it
    class_truth: np.ndarray | None = None  # [n, C] bool: the row has the class (text-generation: the field)


def _truth(task: str, y: np.ndarray, c: int) -> np.ndarray:
    """[n, C] bool: the row's truth holds the class (a single-label -1 holds none)."""
    if task == "multi-label":
        return y.astype(bool)
    return y[:, None] == np.arange(c)[None, :]


def _score(
    task: str,
    y: np.ndarray,
    out: np.ndarray,
    config: EvaluateConfig,
    tolerance: float | None,
    thresholds: np.ndarray | float = 0.5,
) -> _Scored:
    if is_single_label(task):
        pred = m.predict_single(out)
        hits = m.top_k_hits(y, out, config.top_k)
        right = pred == y
        return _Scored(
            pred,
            right.astype(float),
            m.single_stats(y, pred, out.shape[1], hits),
            _truth(task, y, out.shape[1]) & right[:, None],
        )
    if task == "multi-label":
        pred = m.predict_multi(out, thresholds)
        right = (pred == y).all(axis=1).astype(float)
        return _Scored(pred, right, m.multi_stats(y, pred), y.astype(bool) & pred.astype(bool))
    stats = m.regression_stats(y, out, tolerance)
    return _Scored(out, stats[:, 5].copy(), stats)


def _from_sums(task: str, c: int):
    if is_single_label(task):
        return lambda s: m.single_from_sums(s, c)
    if task == "multi-label":
        return lambda s: m.multi_from_sums(s, c)
    if task == GENERATION:
        return lambda s: gen.generation_from_sums(s, c)
    return m.regression_from_sums


def _compare_group(
    name,
    mask,
    task,
    union,
    y,
    old,
    new,
    a: _Scored,
    b: _Scored,
    frame,
    extra,
    config: EvaluateConfig,
    seed: int,
) -> GroupComparison:
    rows = np.flatnonzero(mask)
    n = len(rows)
    from_sums = _from_sums(task, len(union))
    k = a.stats.shape[1]
    paired = np.hstack([a.stats[rows], b.stats[rows]])
    point_old, point_new = from_sums(paired[:, :k].sum(axis=0)), from_sums(paired[:, k:].sum(axis=0))
    samples = None
    if config.bootstrap and n:
        sums = bootstrap_sums(paired, config.bootstrap, seed)
        samples = (from_sums(sums[:, :k]), from_sums(sums[:, k:]))
    deltas = {}
    for metric in DELTA_METRICS[answer_kind(task)]:
        diffs = samples[1][metric] - samples[0][metric] if samples is not None else None
        deltas[metric] = _delta(point_old[metric], point_new[metric], diffs, config.confidence)
        deltas[metric]["higher_is_better"] = m.HIGHER_IS_BETTER[metric]
    ca, cb = a.correct[rows], b.correct[rows]
    neg, pos = np.flatnonzero((ca == 1) & (cb == 0)), np.flatnonzero((ca == 0) & (cb == 1))
    mcnemar = {
        "old_right": int((ca == 1).sum()),
        "both_right": int(((ca == 1) & (cb == 1)).sum()),
        "both_wrong": int(((ca == 0) & (cb == 0)).sum()),
        "old_right_new_wrong": len(neg),
        "old_wrong_new_right": len(pos),
        "p_value": mcnemar_exact(len(neg), len(pos)),
        "new_better": len(pos) > len(neg),
    }
    sub_frame = frame.iloc[rows].reset_index(drop=True) if frame is not None else None
    sub_extra = {k2: v[rows] for k2, v in extra.items()} if extra else None
    return GroupComparison(
        name=name,
        n=n,
        deltas=deltas,
        mcnemar=mcnemar,
        negative_flip_rate=len(neg) / n if n else float("nan"),
        positive_flip_rate=len(pos) / n if n else float("nan"),
        negative_flips=_flips(rows[neg], task, union, y, a, b, frame),
        positive_flips=_flips(rows[pos], task, union, y, a, b, frame),
        per_class=_per_class(task, union, point_old, point_new, samples, config.confidence, y[rows], a, b, rows),
        per_slice=_per_slice(slice_masks(sub_frame, n, config.length_bins, sub_extra), ca, cb, config, seed),
        calibration=_calibration(task, y[rows], old[rows], new[rows], config.calibration_bins) if n else None,
        negative_flip_rate_of_right=len(neg) / int((ca == 1).sum()) if (ca == 1).any() else float("nan"),
    )


def _fairness_changes(task, union, judged, y, a: _Scored, b: _Scored, groups: dict[str, np.ndarray], mask,
                      config: EvaluateConfig, seed: int) -> dict[str, dict[str, dict[str, Any]]]:
    """Per fairness column and gap: both models' gaps on the rows of ``mask`` and the paired interval of the change
    (the same bootstrap resamples for both models); a gap undefined for either model has no delta."""
    rows = np.flatnonzero(mask)
    old, new = (fair.outcomes(task, y[rows], s.pred[rows], judged) for s in (a, b))
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for column, values in groups.items():
        gaps = fair.paired_gaps(old, new, values[rows], [union[j] for j in judged],
                                min_rows=config.fairness_min_group_rows, resamples=config.bootstrap, seed=seed)
        out[column] = {}
        for metric, d in gaps.items():
            diffs = None if d["samples_old"] is None else d["samples_new"] - d["samples_old"]
            defined = d["old"] is not None and d["new"] is not None
            change = _delta(d["old"], d["new"], diffs, config.confidence) if defined else {
                "old": d["old"], "new": d["new"], "delta": None, "interval": None, "one_sided": None}
            out[column][metric] = {**change, **{k: d[k] for k in ("label", "groups_old", "groups_new",
                                                                  "compared_groups")}}
    return out


def _delta(old: Any, new: Any, diffs: np.ndarray | None, confidence: float) -> dict[str, Any]:
    """Point values, their delta (new - old) and the percentile interval of the resampled deltas ``diffs``."""
    old_v, new_v = float(old), float(new)
    interval = percentile_interval(diffs, confidence) if diffs is not None else None
    # each bound of the central interval at 2c - 1 is a one-sided bound at c: what a one-sided test (is the
    # candidate worse? better?) at level 1 - c compares with its margin
    one_sided = percentile_interval(diffs, 2 * confidence - 1) if diffs is not None else None
    return {"old": old_v, "new": new_v, "delta": new_v - old_v, "interval": interval, "one_sided": one_sided}


def _per_class(
    task, union, point_old, point_new, samples, confidence, y, a: _Scored, b: _Scored, rows
) -> dict[str, dict[str, Any]]:
    """The class metric (recall or F1) per label with its paired counts; ``n`` = examples whose truth holds the
    label."""
    if task == "regression":
        return {}
    key = f"{CLASS_METRIC[answer_kind(task)]}_per_class"
    diffs = samples[1][key] - samples[0][key] if samples is not None else None
    old_hit, new_hit = a.class_right[rows], b.class_right[rows]
    truth = a.class_truth[rows] if a.class_truth is not None else _truth(task, y, len(union))
    counts = {
        "old_right": old_hit.sum(axis=0),
        "old_right_new_wrong": (old_hit & ~new_hit).sum(axis=0),
        "old_wrong_new_right": (truth & ~old_hit & new_hit).sum(axis=0),
    }
    out = {}
    for j, name in enumerate(union):
        entry = _delta(
            point_old[key][j], point_new[key][j], None if diffs is None else diffs[:, j], confidence
        )
        out[name] = {
            "n": int(point_old["support_per_class"][j]),
            **entry,
            **{k: int(v[j]) for k, v in counts.items()},
        }
    return out


def _per_slice(masks, ca, cb, config: EvaluateConfig, seed: int) -> dict[str, dict[str, dict[str, Any]]]:
    """Rate of right examples per slice value, old vs new, with a paired interval on the delta."""
    flat = [(name, value, mask) for name, values in masks.items() for value, mask in values.items()]
    sampled = None
    if config.bootstrap and flat:
        cols = np.column_stack([np.column_stack([mask, ca * mask, cb * mask]) for _, _, mask in flat])
        sums = bootstrap_sums(cols, config.bootstrap, seed)
        with np.errstate(invalid="ignore", divide="ignore"):
            sampled = (sums[:, 2::3] - sums[:, 1::3]) / sums[:, 0::3]
    out: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in masks}
    for j, (name, value, mask) in enumerate(flat):
        old, new = float(ca[mask].mean()), float(cb[mask].mean())
        interval = percentile_interval(sampled[:, j], config.confidence) if sampled is not None else None
        out[name][value] = {
            "n": int(mask.sum()),
            "old": old,
            "new": new,
            "delta": new - old,
            "interval": interval,
            "old_right": int((ca[mask] == 1).sum()),
            "old_right_new_wrong": int(((ca[mask] == 1) & (cb[mask] == 0)).sum()),
            "old_wrong_new_right": int(((ca[mask] == 0) & (cb[mask] == 1)).sum()),
        }
    return out


def _calibration(task, y, old, new, n_bins: int) -> dict[str, float] | None:
    if task in ("regression", GENERATION):
        return None
    ece_old = cal.expected_calibration_error(*cal.confidence_and_correct(task, y, old), n_bins)
    ece_new = cal.expected_calibration_error(*cal.confidence_and_correct(task, y, new), n_bins)
    return {"ece_old": ece_old, "ece_new": ece_new, "delta": ece_new - ece_old}


def _describe(task, union, value) -> Any:
    if is_single_label(task):
        return union[int(value)] if value >= 0 else None
    if task == "multi-label":
        return [union[j] for j in np.flatnonzero(value)]
    return float(value)


def _flips(rows: np.ndarray, task, union, y, a: _Scored, b: _Scored, frame) -> list[dict[str, Any]]:
    if task == GENERATION:
        return _generation_flips(rows, a, b, frame)
    texts = frame[TEXT].astype(str).to_numpy() if frame is not None and TEXT in frame.columns else None
    out = []
    for i in rows[:MAX_LISTED_FLIPS]:
        row = {
            "index": int(i),
            "true": _describe(task, union, y[i]),
            "old": _describe(task, union, a.pred[i]),
            "new": _describe(task, union, b.pred[i]),
        }
        if texts is not None:
            row["text"] = str(texts[i])
        out.append(row)
    return out


# ---- text-generation: the same paired comparison over per-example answer scores ----


def _compare_generation(
    outputs_old: np.ndarray,
    outputs_new: np.ndarray,
    *,
    frame: pd.DataFrame | None,
    config: EvaluateConfig,
    groups: dict[str, np.ndarray] | None,
    seed: int,
) -> Comparison:
    """:func:`compare_outputs` for text-generation: "right" is the score matrices' ``right`` column as given."""
    old = _generation_scores(outputs_old, "old model outputs")
    new = _generation_scores(outputs_new, "new model outputs")
    n = len(old)
    if new.shape != old.shape:
        raise DataError(
            f"new model outputs have {len(new)} rows but the old model's have {n}; score both models' answers on "
            "the same rows, in the same order."
        )
    if frame is not None and len(frame) != n:
        raise DataError(
            f"The frame has {len(frame)} rows but the outputs have {n}; pass the rows that were "
            "scored, in the same order."
        )
    texts = _generation_texts(frame)
    references = texts[COMPLETION] if texts is not None else None
    fields_old: dict[str, np.ndarray] = {}
    fields_new: dict[str, np.ndarray] = {}
    if references is not None and gen.match_kind(references, "auto") == "field":
        fields_old = gen.field_scores(references, texts[OUTPUT_OLD])
        fields_new = gen.field_scores(references, texts[OUTPUT_NEW])
    fields = list(fields_old)
    match = gen.match_kind(references, config.generation_match) if references is not None else None
    # the flips show each answer's match score; without references to resolve "auto", the right column (0/1)
    column = gen.SCORE_COLUMNS.index(gen.MATCH_COLUMN[match]) if match in gen.MATCH_COLUMN else 0
    model_old = _generation_scored(old, fields_old, column)
    model_new = _generation_scored(new, fields_new, column)
    masks = _groups(groups, n)
    y = np.zeros(n)  # no labels: the references are in the frame, "right" in the score matrices
    out = {}
    for name, mask in masks.items():
        extra = {k: v for k, v in masks.items() if k != ALL} if name == ALL else None
        out[name] = _compare_group(
            name, mask, GENERATION, fields, y, old, new, model_old, model_new, frame, extra, config, seed
        )
    settings = {
        "bootstrap": config.bootstrap,
        "confidence": config.confidence,
        "seed": seed,
        "class_metric": CLASS_METRIC[GENERATION] if fields else None,
        "slice_metric": SLICE_METRIC[GENERATION],
        "regression_tolerance": None,
        "length_unit": "characters",
        "length_bins": config.length_bins,
        "thresholds": None,
        "match": match or config.generation_match,
        "threshold": config.generation_threshold,
        "fields": fields,
    }
    return Comparison(task=GENERATION, labels=[], labels_old=[], labels_new=[], n=n, groups=out, settings=settings)


def _generation_scores(outputs: np.ndarray, what: str) -> np.ndarray:
    """A score matrix [n, 7] of :func:`keepfit.evaluation.generation.score_generations`, checked."""
    scores = np.asarray(outputs, dtype=float)
    k = len(gen.SCORE_COLUMNS)
    if scores.ndim != 2 or scores.shape[1] != k:
        raise DataError(
            f"{what}: text-generation expects the score matrix of score_generations, shape [n, {k}] (columns "
            f"{', '.join(gen.SCORE_COLUMNS)}), got shape {list(scores.shape)}."
        )
    if len(scores) == 0:
        raise DataError(f"Nothing to compare: {what} has 0 rows. Compare on a split with at least one row.")
    if not np.isfinite(scores).all() or (scores < 0).any() or (scores > 1).any():
        raise DataError(f"{what}: every score must be a finite number in [0, 1]; rescore with score_generations.")
    if not np.isin(scores[:, 0], (0.0, 1.0)).all():
        raise DataError(f"{what}: the 'right' column must hold 0 or 1; rescore with score_generations.")
    return scores


def _generation_texts(frame: pd.DataFrame | None) -> dict[str, list[str]] | None:
    if frame is None:
        return None
    needed = (COMPLETION, OUTPUT_OLD, OUTPUT_NEW)
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise DataError(
            f"A text-generation comparison's frame needs the columns {list(needed)} (the reference and both "
            f"models' generated answers); it lacks {missing}. Add the answers as columns {OUTPUT_OLD!r} and "
            f"{OUTPUT_NEW!r}, or pass frame=None."
        )
    return {c: ["" if v is None or v != v else str(v) for v in frame[c].tolist()] for c in needed}


def _generation_scored(scores: np.ndarray, fields: dict[str, np.ndarray], column: int) -> _Scored:
    """One model's answers: ``pred`` holds the match score per row, classes are the JSON fields."""
    table = np.column_stack(list(fields.values())) if fields else np.zeros((len(scores), 0))
    return _Scored(
        pred=scores[:, column].copy(),
        correct=scores[:, 0].copy(),
        stats=gen.generation_stats(scores, fields),
        class_right=table == 1,
        class_truth=np.isfinite(table),
    )


def _generation_flips(rows: np.ndarray, a: _Scored, b: _Scored, frame) -> list[dict[str, Any]]:
    """Flipped answers with their texts (when the frame is given) and both models' match scores."""
    out = []
    for i in rows[:MAX_LISTED_FLIPS]:
        row: dict[str, Any] = {"index": int(i)}
        if frame is not None:
            record = frame.iloc[int(i)]
            row["prompt"] = gen.chat_text(record[PROMPT]) if PROMPT in frame.columns else ""
            row["reference"] = str(record[COMPLETION])
            row[OUTPUT_OLD], row[OUTPUT_NEW] = str(record[OUTPUT_OLD]), str(record[OUTPUT_NEW])
        row["score_old"], row["score_new"] = float(a.pred[i]), float(b.pred[i])
        out.append(row)
    return out
