"""Group fairness: per-group metrics and the gaps between groups (fairlearn), with bootstrap intervals.

Per fairness column (``evaluate.fairness_columns``; the groups come from :mod:`keepfit.data.fairness`) and group:

- ``accuracy``: the share of its rows answered right (single-label: the label; multi-label: the whole set);
- per judged label (``evaluate.fairness_labels``, every label when empty), one-vs-rest: ``selection_rate``, the
  share of its rows the model gives the label, and ``false_negative_rate``, the share of its rows that have the
  label and do not get it.

The gaps are taken over the groups with at least ``evaluate.fairness_min_group_rows`` rows (smaller ones are
shown, not compared):

- ``accuracy_gap``: highest minus lowest group accuracy (fairlearn ``MetricFrame.difference()``);
- ``demographic_parity_difference``: per label, highest minus lowest selection rate (fairlearn's
  ``demographic_parity_difference``), reported for the label where it is largest;
- ``equalized_odds_difference``: per label, the larger of the true and the false positive rate's gaps (fairlearn's
  ``equalized_odds_difference``), reported for the label where it is largest. A label that some compared group has
  no row of (or only rows of) is left out: fairlearn counts an undefined rate as 0, which would read as a gap.

Point values come from fairlearn's ``MetricFrame``. Every figure is also a function of per-row sums (rows, right
rows, and per label: rows with it, rows given it, rows with it given it, per group), so intervals are the
percentile bootstrap of :mod:`keepfit.evaluation.bootstrap` on those sums (a label gap's interval is that of the
label where the gap is largest), and the gate's paired comparison resamples both models' sums together
(:func:`paired_gaps`; there the largest gap over labels is taken in each resample, for both models alike); a test
pins the sums to fairlearn's values.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from keepfit.config import EvaluateConfig
from keepfit.errors import DataError, MissingExtraError
from keepfit.evaluation.bootstrap import bootstrap_sums, percentile_interval
from keepfit.types import is_single_label

__all__ = [
    "GAP_METRICS",
    "Outcomes",
    "judged_labels",
    "outcomes",
    "group_fairness",
    "fairness_headline",
    "paired_gaps",
]

GAP_METRICS = ("accuracy_gap", "demographic_parity_difference", "equalized_odds_difference")


@dataclass(frozen=True)
class Outcomes:
    """One model's answers as the fairness figures read them: ``right`` [n] (the row is answered right),
    ``truth`` and ``chosen`` [n, L] (the row has / is given each judged label)."""

    right: np.ndarray
    truth: np.ndarray
    chosen: np.ndarray


def judged_labels(labels: Sequence[str], wanted: Sequence[str]) -> list[int]:
    """Indices into ``labels`` of the labels judged one-vs-rest: ``wanted``, or all when it is empty."""
    if not wanted:
        return list(range(len(labels)))
    unknown = [x for x in wanted if x not in labels]
    if unknown:
        raise DataError(
            f"evaluate.fairness_labels names {unknown}, expected labels of the model ({len(labels)}: "
            f"{list(labels)[:10]}{' ...' if len(labels) > 10 else ''}). Fix the names in keepfit.yaml."
        )
    return [list(labels).index(x) for x in wanted]


def outcomes(task: str, y: np.ndarray, pred: np.ndarray, judged: Sequence[int]) -> Outcomes:
    """:class:`Outcomes` of predictions ``pred`` against ``y`` (single-label: class ids [n], -1 for a label the
    model does not know; multi-label: 0/1 matrices [n, C])."""
    idx = np.asarray(judged, dtype=int)
    if is_single_label(task):
        return Outcomes(pred == y, y[:, None] == idx[None, :], pred[:, None] == idx[None, :])
    return Outcomes((pred == y).all(axis=1), y[:, idx].astype(bool), pred[:, idx].astype(bool))


# ---------------------------------------------------------------------------------------- figures from sums


def _row_stats(o: Outcomes, member: np.ndarray) -> np.ndarray:
    """Per-row statistics [n, 2G + 3GL] whose column sums give every figure: per group g (``member`` [n, G]) its
    rows and right rows, then per group and label the rows with the label, given it, and with it given it."""
    n, g = member.shape
    m = member.astype(float)
    per_label = [m[:, :, None] * x[:, None, :] for x in (o.truth, o.chosen, o.truth & o.chosen)]
    return np.hstack([m, m * o.right[:, None], *(p.reshape(n, -1) for p in per_label)])


def _rates(sums: np.ndarray, g: int, n_labels: int) -> dict[str, np.ndarray]:
    """Rates from sums [..., 2G + 3GL]: accuracy [..., G]; selection, true and false positive rate [..., G, L]."""
    lead = sums.shape[:-1]
    rows, right = sums[..., :g], sums[..., g : 2 * g]
    truth, chosen, hit = (
        sums[..., 2 * g + i * g * n_labels : 2 * g + (i + 1) * g * n_labels].reshape(*lead, g, n_labels)
        for i in range(3)
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "accuracy": right / rows,
            "selection_rate": chosen / rows[..., None],
            "tpr": hit / truth,
            "fpr": (chosen - hit) / (rows[..., None] - truth),
        }


def _spread(values: np.ndarray) -> np.ndarray:
    """Highest minus lowest along the last axis, NaNs (an undefined rate) left out; NaN with fewer than two."""
    if values.shape[-1] == 0:  # no group with enough rows among these
        return np.full(values.shape[:-1], np.nan)
    finite = np.isfinite(values)
    with warnings.catch_warnings(), np.errstate(invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        spread = np.nanmax(values, axis=-1) - np.nanmin(values, axis=-1)
    return np.where(finite.sum(axis=-1) >= 2, spread, np.nan)


def _largest(values: np.ndarray, usable: np.ndarray) -> np.ndarray:
    """Largest over the usable labels (last axis), NaN when none is."""
    if not usable.any():
        return np.full(values.shape[:-1], np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmax(values[..., usable], axis=-1)


def _gaps(rates: dict[str, np.ndarray], kept: np.ndarray, eo_labels: np.ndarray) -> dict[str, np.ndarray]:
    """The three gaps over the ``kept`` groups, and per label the parity and odds gaps [..., L]."""
    parity = _spread(np.swapaxes(rates["selection_rate"][..., kept, :], -1, -2))
    odds = np.fmax(
        _spread(np.swapaxes(rates["tpr"][..., kept, :], -1, -2)),
        _spread(np.swapaxes(rates["fpr"][..., kept, :], -1, -2)),
    )
    all_labels = np.ones(parity.shape[-1], dtype=bool)
    return {
        "accuracy_gap": _spread(rates["accuracy"][..., kept]),
        "demographic_parity_difference": _largest(parity, all_labels),
        "equalized_odds_difference": _largest(odds, eo_labels),
        "parity_per_label": parity,
        "odds_per_label": odds,
    }


@dataclass(frozen=True)
class _Layout:
    """One fairness column's groups: names [G], which are compared (enough rows), which labels EO can judge."""

    names: list[str]
    member: np.ndarray  # [n, G] bool
    kept: np.ndarray  # [G] bool
    eo_labels: np.ndarray  # [L] bool


def _layout(values: np.ndarray, truth: np.ndarray, min_rows: int) -> _Layout:
    names = sorted(set(values.tolist()))
    member = values[:, None] == np.asarray(names, dtype=object)[None, :]
    kept = member.sum(axis=0) >= min_rows
    with_label = (member[:, kept, None] & truth[:, None, :]).sum(axis=0)  # [G_kept, L]
    rows = member[:, kept].sum(axis=0)[:, None]
    eo_labels = ((with_label > 0) & (with_label < rows)).all(axis=0)
    return _Layout(names, member, kept, eo_labels)


# ------------------------------------------------------------------------------------------ one model


def _fairlearn():
    try:
        from fairlearn import metrics
    except ImportError:  # pragma: no cover - the extra is part of `make install`
        raise MissingExtraError(
            "evaluate.fairness_columns needs fairlearn: pip install 'keepfit[fairness]' (or remove the setting)."
        ) from None
    return metrics


def _metric_frames(y: np.ndarray, pred: np.ndarray, o: Outcomes, values: np.ndarray, names: list[str]):
    """fairlearn's MetricFrames by group: accuracy of the answers, and per judged label (one-vs-rest) its
    selection rate, false negative, true positive and false positive rate."""
    from sklearn.metrics import accuracy_score

    fm = _fairlearn()
    accuracy = fm.MetricFrame(metrics={"accuracy": accuracy_score}, y_true=y, y_pred=pred, sensitive_features=values)
    rates = {"selection_rate": fm.selection_rate, "false_negative_rate": fm.false_negative_rate,
             "tpr": fm.true_positive_rate, "fpr": fm.false_positive_rate}
    per_label = {f"{key}:{j}": _one_vs_rest(f, j) for j in range(len(names)) for key, f in rates.items()}
    with warnings.catch_warnings():  # a group without rows of a label: fairlearn warns, counts 0; left out of EO
        warnings.simplefilter("ignore")
        labels = fm.MetricFrame(metrics=per_label, y_true=o.truth.astype(int), y_pred=o.chosen.astype(int),
                                sensitive_features=values)
    return accuracy.by_group, labels.by_group


def _one_vs_rest(metric, j: int):
    """A binary fairlearn metric read on column ``j`` of the [n, L] one-vs-rest truth and choice matrices (which
    fairlearn hands over as [n] when L is 1)."""

    def column(x) -> np.ndarray:
        x = np.asarray(x)
        return x.reshape(len(x), -1)[:, j]

    return lambda truth, chosen: metric(column(truth), column(chosen))


def _ends(values: np.ndarray, groups: list[str]) -> list[str] | None:
    """[lowest group, highest group] of ``values`` [G] (NaN left out)."""
    finite = np.flatnonzero(np.isfinite(values))
    if len(finite) < 2:
        return None
    return [groups[finite[np.argmin(values[finite])]], groups[finite[np.argmax(values[finite])]]]


def _gap_details(rates: dict[str, np.ndarray], gaps: dict[str, np.ndarray], lay: _Layout, names: list[str]):
    """Per gap: the label it is largest for (None for accuracy) and the groups at its two ends."""
    groups = [g for g, k in zip(lay.names, lay.kept, strict=True) if k]
    out: dict[str, dict[str, Any]] = {"accuracy_gap": {"label": None,
                                                       "groups": _ends(rates["accuracy"][lay.kept], groups)}}
    parity, odds = gaps["parity_per_label"], np.where(lay.eo_labels, gaps["odds_per_label"], np.nan)
    for metric, per_label in (("demographic_parity_difference", parity), ("equalized_odds_difference", odds)):
        if not np.isfinite(per_label).any():
            out[metric] = {"label": None, "groups": None}
            continue
        j = int(np.nanargmax(per_label))
        if metric == "demographic_parity_difference":
            ends = _ends(rates["selection_rate"][lay.kept, j], groups)
        else:  # the rate whose gap is the larger one
            tpr, fpr = rates["tpr"][lay.kept, j], rates["fpr"][lay.kept, j]
            ends = _ends(tpr if _spread(tpr) >= _spread(fpr) else fpr, groups)
        out[metric] = {"label": names[j], "groups": ends}
    return out


def _column_report(y, pred, o: Outcomes, values, names: list[str], config: EvaluateConfig, seed: int):
    """The fairness section of one column: groups (fairlearn's values), gaps with intervals, per-label gaps."""
    lay = _layout(values, o.truth, config.fairness_min_group_rows)
    by_acc, by_label = _metric_frames(y, pred, o, values, names)
    rates = {
        "accuracy": by_acc["accuracy"].reindex(lay.names).to_numpy(float),
        **{key: np.column_stack([by_label[f"{key}:{j}"].reindex(lay.names).to_numpy(float) for j in range(len(names))])
           for key in ("selection_rate", "false_negative_rate", "tpr", "fpr")},
    }
    gaps = _gaps(rates, lay.kept, lay.eo_labels)
    samples, accuracy_samples = None, None
    if config.bootstrap:
        resampled = _rates(bootstrap_sums(_row_stats(o, lay.member), config.bootstrap, seed), len(lay.names),
                           len(names))
        samples, accuracy_samples = _gaps(resampled, lay.kept, lay.eo_labels), resampled["accuracy"]
    details = _gap_details(rates, gaps, lay, names)
    has_label = (lay.member[:, :, None] & o.truth[:, None, :]).any(axis=0)  # [G, L]: FNR is defined
    groups = {}
    for i, name in enumerate(lay.names):
        fnr = rates["false_negative_rate"][i]
        groups[name] = {
            "n": int(lay.member[:, i].sum()),
            "accuracy": float(rates["accuracy"][i]),
            "interval": None if accuracy_samples is None
            else percentile_interval(accuracy_samples[:, i], config.confidence),
            "selection_rate": {label: float(v) for label, v in zip(names, rates["selection_rate"][i], strict=True)},
            "false_negative_rate": {label: float(fnr[j]) if has_label[i, j] else None for j, label in enumerate(names)},
            "compared": bool(lay.kept[i]),
        }
    return {
        "groups": groups,
        "gaps": {
            metric: {
                "value": _finite(gaps[metric]),
                "interval": _gap_interval(samples, metric, details[metric]["label"], names, config.confidence),
                **details[metric],
            }
            for metric in GAP_METRICS
        },
        "per_label": {
            label: {"demographic_parity_difference": _finite(gaps["parity_per_label"][j]),
                    "equalized_odds_difference": _finite(gaps["odds_per_label"][j]) if lay.eo_labels[j] else None}
            for j, label in enumerate(names)
        },
    }


_PER_LABEL = {"demographic_parity_difference": "parity_per_label", "equalized_odds_difference": "odds_per_label"}


def _gap_interval(samples, metric: str, label: str | None, names: list[str], confidence: float):
    """The percentile interval of a gap: the accuracy gap's over its resampled values; a label gap's over the
    resampled gap of the label where it is largest on the rows as given (a maximum over labels taken anew in each
    resample sits above the point value: the largest of many noisy rates is biased up)."""
    if samples is None:
        return None
    if metric not in _PER_LABEL:
        return percentile_interval(samples[metric], confidence)
    return None if label is None else percentile_interval(samples[_PER_LABEL[metric]][:, names.index(label)],
                                                          confidence)


def _finite(value: Any) -> float | None:
    v = float(value)
    return v if np.isfinite(v) else None


def group_fairness(
    task: str,
    labels: Sequence[str],
    y: np.ndarray,
    pred: np.ndarray,
    groups: dict[str, np.ndarray],
    config: EvaluateConfig,
    seed: int = 0,
) -> dict[str, Any]:
    """The evaluation's fairness section: per column of ``groups`` ({column: group of each row [n]}), the groups'
    figures and the gaps with ``config.bootstrap`` percentile intervals (see the module docstring).

    ``y``/``pred``: single-label class ids [n] (``y`` -1 for an unknown label), multi-label 0/1 [n, C].
    """
    judged = judged_labels(labels, config.fairness_labels)
    names = [labels[j] for j in judged]
    o = outcomes(task, y, pred, judged)
    return {
        "settings": {
            "labels": names if config.fairness_labels else "all (one-vs-rest each; the largest gap is reported)",
            "min_group_rows": config.fairness_min_group_rows,
            "interval": f"{config.confidence:.0%} percentile bootstrap, {config.bootstrap} resamples",
        },
        "columns": {
            column: _column_report(y, pred, o, values, names, config, seed) for column, values in groups.items()
        },
    }


def fairness_headline(section: dict[str, Any]) -> tuple[dict[str, float], dict[str, tuple[float, float]]]:
    """Headline entries ``fairness.<column>.<gap>`` of a :func:`group_fairness` section, and their intervals."""
    values, intervals = {}, {}
    for column, report in section["columns"].items():
        for metric, gap in report["gaps"].items():
            if gap["value"] is None:
                continue
            values[f"fairness.{column}.{metric}"] = gap["value"]
            if gap["interval"] is not None:
                intervals[f"fairness.{column}.{metric}"] = gap["interval"]
    return values, intervals


# ------------------------------------------------------------------------------------ two models, paired


def paired_gaps(
    old: Outcomes,
    new: Outcomes,
    values: np.ndarray,
    names: list[str],
    *,
    min_rows: int,
    resamples: int,
    seed: int,
) -> dict[str, dict[str, Any]]:
    """Per gap metric, both models' gaps on the same rows (groups ``values`` [n]): ``old``/``new`` point values,
    ``samples_old``/``samples_new`` [resamples] from the *same* bootstrap resamples (None without resamples), and
    ``label``/``groups_old``/``groups_new`` (where each model's gap is largest and between which groups)."""
    lay = _layout(values, old.truth, min_rows)  # the same rows, so the same truth, for both models
    g, n_labels = len(lay.names), len(names)
    stats_old, stats_new = _row_stats(old, lay.member), _row_stats(new, lay.member)
    k = stats_old.shape[1]
    rates = [_rates(s.sum(axis=0), g, n_labels) for s in (stats_old, stats_new)]
    points = [_gaps(r, lay.kept, lay.eo_labels) for r in rates]
    samples = None
    if resamples:
        sums = bootstrap_sums(np.hstack([stats_old, stats_new]), resamples, seed)
        samples = [_gaps(_rates(part, g, n_labels), lay.kept, lay.eo_labels) for part in (sums[:, :k], sums[:, k:])]
    details = [_gap_details(r, p, lay, names) for r, p in zip(rates, points, strict=True)]
    return {
        metric: {
            "old": _finite(points[0][metric]),
            "new": _finite(points[1][metric]),
            "samples_old": None if samples is None else samples[0][metric],
            "samples_new": None if samples is None else samples[1][metric],
            "label": details[1][metric]["label"],
            "groups_old": details[0][metric]["groups"],
            "groups_new": details[1][metric]["groups"],
            "compared_groups": [x for x, kept in zip(lay.names, lay.kept, strict=True) if kept],
        }
        for metric in GAP_METRICS
    }
