"""`keepfit monitor`: a time window of the prediction log judged against the reference version's own data.

The reference is a registered version (the champion by default): its training texts (for input drift) and its
predictions on its validation split (label shares, confidences, abstentions, accuracy), computed once per
version and cached in ``<store>/monitor/reference-v<version>.json``. :func:`monitor` reads the window and the
reference; :func:`assess` turns any set of logged rows into a list of :class:`Check` verdicts, for the whole
window and for each slice (a value of a request-metadata key in ``monitor.slice_keys``, and each model version
when several answered). Thresholds and the false-alarm rate come from :class:`keepfit.config.MonitorConfig`.

Alert rules, each a test at level alpha (``monitor.false_alarm_rate``) and, where a threshold applies, an
effect beyond it, so that small windows do not alert on noise:

- input drift: the domain classifier's permutation p < alpha;
- label shift: PSI > ``psi_threshold`` and the chi-square p < alpha;
- confidence: the mean top probability fell by more than ``confidence_drop`` and the one-sided Welch p < alpha;
- abstention: the lower end of the rate's Wilson interval lies above ``abstention_rate`` (the rate is shown to
  be too high, not merely observed above it once in a small window);
- estimated and realised accuracy: the upper end of the interval lies more than ``accuracy_drop`` below the
  reference accuracy (validation accuracy on the rows the version answers).

Intervals are two-sided at level 1 - 2 alpha, so each end is a one-sided bound at alpha. Slices test at
alpha / m (Bonferroni over the m slices judged), so many slices do not multiply the false alarms.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from keepfit._duration import parse_duration
from keepfit._io import atomic_write_text
from keepfit.config import KeepfitConfig, MonitorConfig
from keepfit.errors import ConfigError, DataError, ModelError
from keepfit.evaluation._json import jsonable
from keepfit.monitor.drift import (
    MIN_TEXTS,
    confidence_drop,
    domain_classifier_test,
    estimated_accuracy,
    label_shift,
    proportion,
)
from keepfit.store import Store
from keepfit.types import LABEL, TEXT, is_single_label

__all__ = [
    "Reference",
    "Check",
    "Assessment",
    "SliceReport",
    "TimeBin",
    "MonitorReport",
    "CHECKS",
    "parse_duration",
    "parse_time",
    "reference_path",
    "load_reference",
    "top_labels",
    "assess",
    "slices",
    "bin_seconds_for",
    "timeline",
    "monitor",
]

CHECKS = ("input drift", "label shift", "confidence", "abstention", "estimated accuracy", "realised accuracy")
REFERENCE_FORMAT = 1
MONITOR_FOLDER = "monitor"
MISSING = "(missing)"
HOURLY_UP_TO_S = 2 * 86_400  # windows up to two days are binned by hour, longer ones by day
_MIN_BIN_ROWS_FOR_PSI = 20  # a PSI over fewer rows is mostly smoothing noise
_MIN_BIN_FEEDBACK = 5


# ------------------------------------------------------------------------------------------------ values


@dataclass(frozen=True)
class Reference:
    """What a window is compared with: registry version ``version``, trained on snapshot ``snapshot_id``.

    Per validation row [n]: ``predicted`` (index into ``labels``), ``correct`` (predicted == true label),
    ``scores`` (top calibrated probability) and ``abstained``; ``texts``: the training split's texts."""

    version: str
    snapshot_id: str
    labels: tuple[str, ...]
    predicted: np.ndarray
    correct: np.ndarray
    scores: np.ndarray
    abstained: np.ndarray
    texts: Sequence[str] = ()

    @property
    def accuracy(self) -> float:
        """Validation accuracy on the rows the version answers (all rows when it never abstains)."""
        answered = ~self.abstained
        return float(self.correct[answered].mean()) if answered.any() else float("nan")

    @property
    def abstention_rate(self) -> float:
        return float(self.abstained.mean()) if len(self.abstained) else 0.0

    def summary(self) -> dict[str, Any]:
        counts = np.bincount(self.predicted, minlength=len(self.labels))
        return {
            "version": self.version,
            "snapshot": self.snapshot_id,
            "n_validation": len(self.predicted),
            "n_train_texts": len(self.texts),
            "accuracy": self.accuracy,
            "mean_confidence": float(self.scores.mean()) if len(self.scores) else None,
            "abstention_rate": self.abstention_rate,
            "label_shares": {lab: float(c / max(counts.sum(), 1)) for lab, c in zip(self.labels, counts, strict=True)},
        }


@dataclass(frozen=True)
class Check:
    """One verdict: ``status`` is "ok", "alert" or "skipped" (then ``detail`` says why). ``value`` is the
    window's figure, ``reference`` the reference's, ``threshold`` the alert rule in words; ``result`` the
    statistic behind it (a :mod:`keepfit.monitor.drift` value); ``advice`` what to do when it alerts."""

    name: str
    status: str
    value: float | None
    reference: float | None
    threshold: str
    detail: str
    interval: tuple[float, float] | None = None
    advice: str = ""
    result: Any = None

    @property
    def alert(self) -> bool:
        return self.status == "alert"


@dataclass(frozen=True)
class Assessment:
    """The checks over one set of rows: ``n`` logged predictions, ``n_feedback`` of them with a true label,
    judged at level ``alpha``."""

    n: int
    n_feedback: int
    alpha: float
    checks: list[Check]

    def check(self, name: str) -> Check:
        return next(c for c in self.checks if c.name == name)

    @property
    def alerts(self) -> list[Check]:
        return [c for c in self.checks if c.alert]


@dataclass(frozen=True)
class SliceReport:
    """The rows whose request metadata ``key`` has ``value`` (``key`` "model_version": the version that
    answered); ``assessment`` is None when the slice has fewer than ``monitor.min_rows`` rows."""

    key: str
    value: str
    n: int
    n_feedback: int
    assessment: Assessment | None


@dataclass(frozen=True)
class TimeBin:
    """One bin of the window starting at ``start`` (Unix seconds): volume and the figures over its rows
    (None where it has no rows, fewer than 20 rows for the PSI, or fewer than 5 feedback rows)."""

    start: float
    n: int
    mean_confidence: float | None
    abstention_rate: float | None
    estimated_accuracy: float | None
    realised_accuracy: float | None
    n_feedback: int
    psi: float | None


@dataclass
class MonitorReport:
    """Everything `keepfit monitor` found in the window ``since`` .. ``until`` (Unix seconds) of the log.

    ``overall`` is None when the window has fewer than ``min_rows`` rows (no verdicts then). ``truncated``:
    the window held more than ``max_rows`` rows and only the newest were read. ``feedback_available``: the
    feedback rows (with text) not yet used by `keepfit update --from-feedback`, what its next batch would hold."""

    ref: str
    reference: dict[str, Any]
    log_path: str
    since: float
    until: float
    n_rows: int
    truncated: bool
    versions: dict[str, int]
    min_rows: int
    overall: Assessment | None
    slices: list[SliceReport]
    timeline: list[TimeBin]
    bin_seconds: int
    feedback_available: int
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def enough_rows(self) -> bool:
        return self.overall is not None

    @property
    def since_iso(self) -> str:
        return _iso(self.since)

    @property
    def until_iso(self) -> str:
        return _iso(self.until)

    def alerts(self) -> list[str]:
        """Every alert as one line: what crossed which threshold and what to do; slices prefixed ``[key=value]``."""
        lines = [f"{c.name}: {c.detail} {c.advice}".strip() for c in (self.overall.alerts if self.overall else [])]
        for part in self.slices:
            for c in part.assessment.alerts if part.assessment else []:
                lines.append(f"[{part.key}={part.value}] {c.name}: {c.detail}")
        return lines

    def suggestion(self) -> str | None:
        """What to run next when something alerted."""
        if not self.alerts():
            return None
        if self.feedback_available:
            n = self.feedback_available
            return f"`keepfit update --from-feedback` builds the next batch from {n} feedback rows."
        return (
            "No new feedback: send true labels for some recent requests (POST /feedback or `keepfit feedback "
            "import`), then `keepfit update --from-feedback` builds the next batch from them."
        )

    def to_dict(self) -> dict[str, Any]:
        """Strict JSON values (NaN as null), with the alert lines and the suggestion."""
        body = asdict(self)
        body.update(
            since_iso=self.since_iso, until_iso=self.until_iso, alerts=self.alerts(), suggestion=self.suggestion()
        )
        return jsonable(body)


# ------------------------------------------------------------------------------------------------ window


def parse_time(text: str, now: float) -> float:
    """Unix seconds from an ISO date or time (``2026-03-01``, ``2026-03-01T12:00``, UTC unless it says
    otherwise) or a duration back from ``now`` (``2h`` = two hours ago)."""
    value = str(text).strip()
    if re.fullmatch(r"\d+(?:\.\d+)?\s*[smhdwSMHDW]", value):
        return now - parse_duration(value)
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(
            f"Time {text!r} not understood: expected an ISO date or time (2026-03-01, 2026-03-01T12:00Z) or a "
            "duration back from now (90m, 2h, 7d)."
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _check_settings(settings: MonitorConfig) -> None:
    """Settings no window could satisfy, all reported at once."""
    problems = []
    smallest_p = 1 / (settings.permutations + 1)
    if smallest_p >= settings.false_alarm_rate:
        problems.append(
            f"monitor.permutations={settings.permutations} cannot give p < {settings.false_alarm_rate:g} (the "
            f"smallest p-value is 1/{settings.permutations + 1}); set it to at least "
            f"{math.ceil(1 / settings.false_alarm_rate)}"
        )
    if settings.false_alarm_rate >= 0.5:
        problems.append(f"monitor.false_alarm_rate={settings.false_alarm_rate:g} must be below 0.5")
    try:
        parse_duration(settings.window)
    except ConfigError as err:
        problems.append(f"monitor.window: {err}")
    if problems:
        raise ConfigError("The monitor settings cannot work:", problems)


# --------------------------------------------------------------------------------------------- reference


def reference_path(store: Store, version: str) -> Path:
    """Where the reference figures of ``version`` are cached."""
    return store.root / MONITOR_FOLDER / f"reference-v{version}.json"


def load_reference(config: KeepfitConfig, ref: str = "champion") -> Reference:
    """The reference of registry version ``ref``: its validation predictions (cached per version) and its
    training texts, both from the snapshot it was trained on."""
    from keepfit.data.snapshot import load_snapshot
    from keepfit.registry import Registry

    registry = Registry.open(config)
    info = registry.get(ref)
    store = Store.at(config.store)
    snapshot_id = info.lineage.data_snapshot
    try:
        snapshot = load_snapshot(store, snapshot_id)
    except DataError as err:
        raise DataError(
            f"Version {info.version} was trained on snapshot {snapshot_id[:12]}, which cannot be read: {err} "
            "The monitor compares traffic with that data: restore the store's snapshots folder."
        ) from None
    path = reference_path(store, info.version)
    cached = _read_cached(path, info.version, snapshot.id)
    if cached is None:
        cached = _reference_predictions(registry.model_path(info.version), snapshot, config.evaluate.batch_size)
        atomic_write_text(path, json.dumps({"format": REFERENCE_FORMAT, "version": info.version,
                                            "snapshot": snapshot.id, **cached}))
    return Reference(
        version=info.version,
        snapshot_id=snapshot.id,
        labels=tuple(cached["labels"]),
        predicted=np.asarray(cached["predicted"], dtype=np.int64),
        correct=np.asarray(cached["correct"], dtype=bool),
        scores=np.asarray(cached["scores"], dtype=float),
        abstained=np.asarray(cached["abstained"], dtype=bool),
        texts=snapshot.train[TEXT].astype(str).tolist(),
    )


def _read_cached(path: Path, version: str, snapshot_id: str) -> dict[str, Any] | None:
    """The cached figures, or None when missing, unreadable or made for other data (then they are recomputed)."""
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    same = (body.get("format"), body.get("version"), body.get("snapshot")) == (REFERENCE_FORMAT, version, snapshot_id)
    return body if same else None


def _reference_predictions(model_dir: Path, snapshot: Any, batch_size: int) -> dict[str, list]:
    from keepfit.train.predict import load_predictor

    predictor = load_predictor(model_dir)
    if not is_single_label(predictor.task):
        raise ModelError(
            f"keepfit monitor judges single-label classifiers; the model in {model_dir} is {predictor.task}. "
            "Monitor a single-label version (--ref)."
        )
    rows = snapshot.validation
    if len(rows) == 0:
        raise DataError(
            f"Snapshot {snapshot.id[:12]} has no validation rows: the monitor's reference label shares, "
            "confidences and accuracy come from them. Fit with a validation split (split.validation > 0)."
        )
    preds = predictor.predict(rows[TEXT].astype(str).tolist(), batch_size=batch_size)
    predicted = preds.outputs.argmax(axis=1)
    labels = list(predictor.labels)
    return {
        "labels": labels,
        "predicted": predicted.tolist(),
        "correct": (np.asarray(labels)[predicted] == rows[LABEL].astype(str).to_numpy()).tolist(),
        "scores": [round(float(s), 6) for s in preds.outputs.max(axis=1)],
        "abstained": preds.abstained().tolist(),
    }


# -------------------------------------------------------------------------------------------- assessment


def top_labels(frame: pd.DataFrame, labels_of: Mapping[str, Sequence[str]]) -> list[str]:
    """The label of the largest probability of each logged row (abstained or not: the reference's predictions
    on validation never abstain either), named through the label order of the version that answered."""
    missing = sorted({str(v) for v in frame["model_version"]} - set(map(str, labels_of)))
    if missing:
        raise DataError(
            f"The prediction log has rows of version(s) {missing} but no label list for them (table models); "
            "the log was not written by `keepfit serve`. Pass the server's log (serve.log_path)."
        )
    return [
        str(labels_of[str(version)][int(np.argmax(p))])
        for version, p in zip(frame["model_version"], frame["probabilities"], strict=True)
    ]


def assess(
    frame: pd.DataFrame,
    reference: Reference,
    labels_of: Mapping[str, Sequence[str]],
    settings: MonitorConfig,
    *,
    alpha: float | None = None,
    seed: int = 0,
) -> Assessment:
    """Every check of :data:`CHECKS` over the logged rows in ``frame`` (columns of
    :meth:`keepfit.serve.log.PredictionLog.predictions`), at level ``alpha`` (``settings.false_alarm_rate``
    when None). ``labels_of``: each version's labels in probability order."""
    alpha = settings.false_alarm_rate if alpha is None else alpha
    level = 1 - 2 * alpha
    has_feedback = frame["feedback_label"].notna().to_numpy()
    checks = [
        _input_drift(frame, reference, settings, alpha, seed),
        _label_shift(top_labels(frame, labels_of), reference, settings, alpha, seed),
        _confidence(frame, reference, settings, alpha),
        _abstention(frame, reference, settings, level),
        _estimated_accuracy(frame, reference, settings, level),
        _realised_accuracy(frame, reference, settings, level),
    ]
    return Assessment(len(frame), int(has_feedback.sum()), alpha, checks)


def _skipped(name: str, threshold: str, why: str) -> Check:
    return Check(name, "skipped", None, None, threshold, why)


def _status(alert: bool) -> str:
    return "alert" if alert else "ok"


def _input_drift(frame: pd.DataFrame, reference: Reference, settings: MonitorConfig, alpha: float, seed: int) -> Check:
    threshold = f"p < {alpha:.3g}"
    texts = [str(t) for t in frame[TEXT] if isinstance(t, str)]
    if len(texts) < MIN_TEXTS or len(reference.texts) < MIN_TEXTS:
        why = (
            "the log keeps no texts (serve.redact): nothing to compare"
            if not texts and len(frame)
            else f"{len(texts)} window and {len(reference.texts)} training texts (needs {MIN_TEXTS} of each)"
        )
        return _skipped("input drift", threshold, why)
    result = domain_classifier_test(
        reference.texts, texts, permutations=settings.permutations, max_rows=settings.max_rows, seed=seed
    )
    terms = ", ".join(f"'{t.term}' ({t.window_share:.0%} vs {t.reference_share:.0%})" for t in result.terms[:5])
    detail = (
        f"a classifier tells window texts from training texts with AUC {result.auc:.3f} (chance 0.5; null 95th "
        f"percentile {result.null_p95:.3f}, p = {result.p_value:.4f})"
        + (f"; more frequent now: {terms}" if terms else "")
    )
    return Check(
        "input drift", _status(result.p_value < alpha), result.auc, 0.5, threshold, detail,
        advice="Traffic differs from the training data: read the terms and a sample of recent requests, and label "
        "some of them so the next update learns them.",
        result=result,
    )


def _label_shift(
    predicted: list[str], reference: Reference, settings: MonitorConfig, alpha: float, seed: int
) -> Check:
    threshold = f"PSI > {settings.psi_threshold:g}, p < {alpha:.3g}"
    result = label_shift(*_label_counts(predicted, reference), seed=seed)
    ref_share, win_share = result.shares()
    moved = [i for i in np.argsort(-np.abs(win_share - ref_share), kind="stable")[:3] if win_share[i] != ref_share[i]]
    moves = ", ".join(f"{result.labels[i]} {ref_share[i]:.0%} -> {win_share[i]:.0%}" for i in moved)
    detail = f"PSI {result.psi:.3f}, chi-square p = {result.p_value:.4g} ({result.method})" + (
        f"; largest moves: {moves}" if moves else ""
    )
    alert = result.psi > settings.psi_threshold and result.p_value < alpha
    return Check(
        "label shift", _status(alert), result.psi, None, threshold, detail,
        advice="The mix of predicted labels moved: either traffic changed or the model now errs on a new kind of "
        "request; feedback on recent requests tells which.",
        result=result,
    )


def _label_counts(predicted: Sequence[str], reference: Reference) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Reference and window counts per label: the reference's labels, then any new ones the window has."""
    names = list(reference.labels) + sorted(set(predicted) - set(reference.labels))
    index = {name: i for i, name in enumerate(names)}
    window = np.bincount(np.asarray([index[p] for p in predicted], dtype=np.int64), minlength=len(names))
    return np.bincount(reference.predicted, minlength=len(names)), window, names


def _confidence(frame: pd.DataFrame, reference: Reference, settings: MonitorConfig, alpha: float) -> Check:
    threshold = f"drop > {settings.confidence_drop:g}, p < {alpha:.3g}"
    if len(frame) < 2 or len(reference.scores) < 2:
        return _skipped("confidence", threshold, f"{len(frame)} window and {len(reference.scores)} validation rows")
    result = confidence_drop(reference.scores, frame["score"].to_numpy(dtype=float))
    alert = result.drop > settings.confidence_drop and result.p_value < alpha
    detail = (
        f"mean top probability {result.window_mean:.3f} against {result.reference_mean:.3f} on validation "
        f"(drop {result.drop:+.3f}, one-sided Welch p = {result.p_value:.4g})"
    )
    return Check(
        "confidence", _status(alert), result.window_mean, result.reference_mean, threshold, detail,
        advice="The model is less sure than on its validation data: requests it was not trained for are likely.",
        result=result,
    )


def _abstention(frame: pd.DataFrame, reference: Reference, settings: MonitorConfig, level: float) -> Check:
    threshold = f"lower > {settings.abstention_rate:.0%}"
    if len(frame) == 0:
        return _skipped("abstention", threshold, "no rows")
    result = proportion(int(frame["abstained"].sum()), len(frame), level)
    alert = result.interval[0] > settings.abstention_rate
    detail = (
        f"abstained on {result.count} of {result.n} requests ({result.rate:.1%}, {level:.0%} interval "
        f"[{result.interval[0]:.1%}, {result.interval[1]:.1%}]; {reference.abstention_rate:.1%} on validation)"
    )
    return Check(
        "abstention", _status(alert), result.rate, reference.abstention_rate, threshold, detail, result.interval,
        advice="Many requests fit no known label well: review the abstained requests; new labels may be needed.",
        result=result,
    )


def _estimated_accuracy(frame: pd.DataFrame, reference: Reference, settings: MonitorConfig, level: float) -> Check:
    floor = reference.accuracy - settings.accuracy_drop
    threshold = f"upper < {floor:.3f}"
    answered = ~frame["abstained"].to_numpy(dtype=bool)
    if not answered.any():
        return _skipped("estimated accuracy", threshold, "no answered rows")
    result = estimated_accuracy(frame["score"].to_numpy(dtype=float)[answered], level)
    detail = (
        f"expected accuracy {result.value:.3f} on {result.n} answered requests from calibrated confidence "
        f"({level:.0%} interval [{result.interval[0]:.3f}, {result.interval[1]:.3f}]; {reference.accuracy:.3f} on "
        "validation)"
    )
    return Check(
        "estimated accuracy", _status(result.interval[1] < floor), result.value, reference.accuracy, threshold,
        detail, result.interval,
        advice="The confidences imply lower accuracy than at validation: collect feedback to confirm it.",
        result=result,
    )


def _realised_accuracy(frame: pd.DataFrame, reference: Reference, settings: MonitorConfig, level: float) -> Check:
    floor = reference.accuracy - settings.accuracy_drop
    threshold = f"upper < {floor:.3f}"
    labelled = frame[frame["feedback_label"].notna()]
    answered = labelled[~labelled["abstained"].to_numpy(dtype=bool)]
    abstained = len(labelled) - len(answered)
    if len(answered) < settings.min_feedback:
        return _skipped(
            "realised accuracy", threshold,
            f"{len(answered)} answered requests with feedback (needs monitor.min_feedback={settings.min_feedback})",
        )
    right = int((answered[LABEL].astype(str) == answered["feedback_label"].astype(str)).sum())
    result = proportion(right, len(answered), level)
    # feedback may name a label declared after this version was trained: never right, and worth saying so
    new = sorted(set(labelled["feedback_label"].astype(str)) - set(reference.labels))
    detail = (
        f"{right} of {len(answered)} answered requests with feedback right ({result.rate:.3f}, {level:.0%} "
        f"interval [{result.interval[0]:.3f}, {result.interval[1]:.3f}]; {reference.accuracy:.3f} on validation)"
        + (f"; {abstained} more with feedback were abstained on" if abstained else "")
        + (f"; feedback names labels v{reference.version} does not know: {', '.join(new[:5])}" if new else "")
    )
    return Check(
        "realised accuracy", _status(result.interval[1] < floor), result.rate, reference.accuracy, threshold,
        detail, result.interval,
        advice="Feedback shows the model is worse than at validation: update it on the feedback.",
        result=result,
    )


# ------------------------------------------------------------------------------------------ slices, time


def _slice_groups(frame: pd.DataFrame, keys: Sequence[str]) -> list[tuple[str, str, np.ndarray]]:
    """(key, value, row mask) per value of each metadata key, and per model version; a key with one value
    only is left out (its slice is the whole window again)."""
    groups = []
    for key in keys:
        values = np.array([str(m.get(key)) if m.get(key) is not None else MISSING for m in frame["meta"]])
        if len(set(values)) > 1:
            groups += [(key, value, values == value) for value in sorted(set(values))]
    versions = frame["model_version"].astype(str).to_numpy()
    if len(set(versions)) > 1:
        groups += [("model_version", v, versions == v) for v in sorted(set(versions), key=_version_key)]
    return groups


def _version_key(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (1 << 62, version)


def slices(
    frame: pd.DataFrame,
    reference: Reference,
    labels_of: Mapping[str, Sequence[str]],
    settings: MonitorConfig,
    *,
    seed: int = 0,
) -> list[SliceReport]:
    """One :class:`SliceReport` per slice value; those with at least ``min_rows`` rows are judged at
    alpha / m, m being how many are judged (Bonferroni)."""
    groups = _slice_groups(frame, settings.slice_keys)
    judged = sum(int(mask.sum()) >= settings.min_rows for _, _, mask in groups)
    alpha = settings.false_alarm_rate / max(judged, 1)
    out = []
    for key, value, mask in groups:
        part = frame[mask].reset_index(drop=True)
        n_feedback = int(part["feedback_label"].notna().sum())
        judge = len(part) >= settings.min_rows
        assessment = assess(part, reference, labels_of, settings, alpha=alpha, seed=seed) if judge else None
        out.append(SliceReport(key, value, len(part), n_feedback, assessment))
    return out


def bin_seconds_for(since: float, until: float) -> int:
    """Hourly bins for windows up to two days, daily bins for longer ones."""
    return 3600 if until - since <= HOURLY_UP_TO_S else 86_400


def timeline(
    frame: pd.DataFrame,
    reference: Reference,
    labels_of: Mapping[str, Sequence[str]],
    since: float,
    until: float,
) -> tuple[int, list[TimeBin]]:
    """The window cut into bins (see :func:`bin_seconds_for`, aligned to UTC hours or days): per bin the
    volume, mean confidence, abstention rate, estimated and realised accuracy and the label PSI."""
    width = bin_seconds_for(since, until)
    first = math.floor(since / width) * width
    count = max(1, math.ceil((until - first) / width))
    index = ((frame["time"].to_numpy(dtype=float) - first) // width).astype(int) if len(frame) else np.zeros(0, int)
    predicted = np.asarray(top_labels(frame, labels_of), dtype=object) if len(frame) else np.zeros(0, object)
    bins = []
    for b in range(count):
        mask = index == b
        bins.append(_time_bin(first + b * width, frame[mask], predicted[mask], reference))
    return width, bins


def _time_bin(start: float, rows: pd.DataFrame, predicted: np.ndarray, reference: Reference) -> TimeBin:
    if len(rows) == 0:
        return TimeBin(start, 0, None, None, None, None, 0, None)
    abstained = rows["abstained"].to_numpy(dtype=bool)
    scores = rows["score"].to_numpy(dtype=float)
    labelled = rows["feedback_label"].notna().to_numpy() & ~abstained
    realised = (
        float((rows[LABEL][labelled].astype(str) == rows["feedback_label"][labelled].astype(str)).mean())
        if labelled.sum() >= _MIN_BIN_FEEDBACK else None
    )
    psi = label_shift(*_label_counts(predicted, reference)).psi if len(rows) >= _MIN_BIN_ROWS_FOR_PSI else None
    return TimeBin(
        start=start,
        n=len(rows),
        mean_confidence=float(scores.mean()),
        abstention_rate=float(abstained.mean()),
        estimated_accuracy=float(scores[~abstained].mean()) if (~abstained).any() else None,
        realised_accuracy=realised,
        n_feedback=int(rows["feedback_label"].notna().sum()),
        psi=psi,
    )


# ------------------------------------------------------------------------------------------------ monitor


def _unused_feedback(log: Any, store: Store) -> int:
    """Feedback rows with text that came after the last `keepfit update --from-feedback` used any: what its
    next batch would hold (redacted rows have no text to train on)."""
    from keepfit.serve.feedback import last_cutoff

    rows = log.feedback_rows()
    cutoff = last_cutoff(store.feedback_batches)
    if cutoff is not None:
        rows = rows[rows["time"] > cutoff]
    return int(rows["text"].notna().sum())


def monitor(
    config: KeepfitConfig,
    *,
    ref: str = "champion",
    since: str | None = None,
    until: str | None = None,
    now: float | None = None,
) -> MonitorReport:
    """Judge the prediction log's window against registry version ``ref``.

    ``until`` (default ``now``) and ``since`` (default ``until`` minus ``monitor.window``) are ISO times or
    durations back from now (``2h``). At most ``monitor.max_rows`` newest rows are read. Raises DataError when
    there is no log, ConfigError for settings or times that cannot work."""
    from keepfit.serve.log import PredictionLog, log_path_for

    settings = config.monitor
    if not settings.slice_keys and config.data.slice_columns:  # by default, the project's own slices
        settings = settings.model_copy(update={"slice_keys": list(config.data.slice_columns)})
    _check_settings(settings)
    now = time.time() if now is None else float(now)
    end = parse_time(until, now) if until else now
    start = parse_time(since, now) if since else end - parse_duration(settings.window)
    if start >= end:
        raise ConfigError(f"The window is empty: --since {_iso(start)} is not before --until {_iso(end)}.")
    log_path = log_path_for(config)
    with PredictionLog(log_path, readonly=True) as log:
        frame = log.predictions(since=start, until=end, limit=settings.max_rows)
        labels_of = {str(v): list(m["labels"]) for v, m in log.models().items()}
        feedback_available = _unused_feedback(log, Store.at(config.store))
    reference = load_reference(config, ref)
    seed = config.train.seed
    enough = len(frame) >= settings.min_rows
    width, bins = timeline(frame, reference, labels_of, start, end)
    return MonitorReport(
        ref=ref,
        reference=reference.summary(),
        log_path=str(log_path),
        since=start,
        until=end,
        n_rows=len(frame),
        truncated=len(frame) >= settings.max_rows,
        versions={str(k): int(v) for k, v in frame["model_version"].astype(str).value_counts().items()},
        min_rows=settings.min_rows,
        overall=assess(frame, reference, labels_of, settings, seed=seed) if enough else None,
        slices=slices(frame, reference, labels_of, settings, seed=seed) if enough else [],
        timeline=bins,
        bin_seconds=width,
        feedback_available=feedback_available,
        settings=settings.model_dump(mode="json"),
    )
