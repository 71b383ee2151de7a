"""The checks on constructed streams: windows without shift alert at most at the configured rate, shifted
windows alert on the checks whose quantity moved (and only on those), slices and bins add up."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binom

from keepfit.config import MonitorConfig
from keepfit.monitor.run import CHECKS, assess, bin_seconds_for, slices, timeline

RATE = 0.05
SETTINGS = MonitorConfig(false_alarm_rate=RATE, permutations=200, min_rows=50, min_feedback=20)


def _statuses(assessment) -> dict[str, str]:
    return {c.name: c.status for c in assessment.checks}


def test_windows_without_shift_alert_at_most_at_the_false_alarm_rate(streams):
    reference = streams.reference()
    windows = 40
    alerts = dict.fromkeys(CHECKS, 0)
    raw = {"input drift": 0, "label shift": 0}  # the p-values alone, before any effect-size threshold
    for k in range(windows):
        assessment = assess(streams.window(seed=k), reference, streams.labels_of, SETTINGS, seed=k)
        for check in assessment.checks:
            assert check.status != "skipped", check
            alerts[check.name] += check.alert
        raw["input drift"] += assessment.check("input drift").result.p_value < RATE
        raw["label shift"] += assessment.check("label shift").result.p_value < RATE
    # Each check is a test at level 0.05, so its alert count over 40 independent windows is at most
    # Binomial(40, 0.05). That exceeds binom.isf(0.001, 40, 0.05) = 7 with chance below 0.1%: a valid test fails
    # this line almost never, while one with twice the promised rate (mean 4) would exceed it about 5% of the time
    # and one with 0.25 nearly always.
    limit = binom.isf(0.001, windows, RATE)
    assert max(alerts.values()) <= limit, alerts
    assert max(raw.values()) <= limit, raw


def test_a_shifted_window_alerts_on_every_check_that_moved(streams):
    reference = streams.reference()
    window = streams.window(
        seed=1, shares=(0.85, 0.1, 0.05), score_shape=(1.5, 2.5), abstain_below=0.6, new_topic=True,
        accuracy_factor=0.6,
    )
    assessment = assess(window, reference, streams.labels_of, SETTINGS)
    assert _statuses(assessment) == dict.fromkeys(CHECKS, "alert"), [c.detail for c in assessment.checks]
    drift = assessment.check("input drift")
    assert set(t.term for t in drift.result.terms[:5]) & set(streams.NEW_TOPIC), drift.detail
    shift = assessment.check("label shift")
    reference_share, window_share = shift.result.shares()
    assert window_share[0] > 0.8 and f"neg {reference_share[0]:.0%} -> {window_share[0]:.0%}" in shift.detail
    assert assessment.check("confidence").value < assessment.check("confidence").reference - 0.15


def test_a_label_shift_alone_alerts_only_on_label_shift(streams):
    assessment = assess(
        streams.window(seed=2, shares=(0.8, 0.18, 0.02)), streams.reference(), streams.labels_of, SETTINGS
    )
    assert [c.name for c in assessment.alerts] == ["label shift"]


def test_a_tiny_window_does_not_alert_on_a_large_but_noisy_psi(streams):
    window = streams.window(seed=3, n=12, shares=(0.7, 0.3, 0.0), feedback_share=0.0)
    check = assess(window, streams.reference(), streams.labels_of, SETTINGS).check("label shift")
    assert check.value > SETTINGS.psi_threshold and not check.alert, check.detail


def test_realised_accuracy_needs_min_feedback_and_counts_abstentions_apart(streams):
    window = streams.window(seed=4, feedback_share=0.1, accuracy_factor=0.5)
    check = assess(window, streams.reference(), streams.labels_of, SETTINGS).check("realised accuracy")
    assert check.status == "skipped" and "needs monitor.min_feedback=20" in check.detail
    window = streams.window(seed=4, feedback_share=1.0, abstain_below=0.8)
    answered = window[~window["abstained"]]
    check = assess(window, streams.reference(), streams.labels_of, SETTINGS).check("realised accuracy")
    assert check.result.n == len(answered)
    assert check.value == pytest.approx(float(np.mean(answered["label"] == answered["feedback_label"])))
    assert f"{int(window['abstained'].sum())} more with feedback were abstained on" in check.detail


def test_redacted_texts_skip_input_drift_with_the_reason(streams):
    window = streams.window(seed=5)
    window["text"] = None
    check = assess(window, streams.reference(), streams.labels_of, SETTINGS).check("input drift")
    assert check.status == "skipped" and "serve.redact" in check.detail


def test_slices_are_judged_at_a_bonferroni_level_and_find_the_shifted_one(streams):
    reference = streams.reference()
    web = streams.window(seed=6, meta={"channel": "web"})
    app = streams.window(seed=7, new_topic=True, score_shape=(1.5, 2.5), meta={"channel": "app"})
    few = streams.window(seed=8, n=10, meta={})
    frame = pd.concat([web, app, few], ignore_index=True)
    settings = SETTINGS.model_copy(update={"slice_keys": ["channel"]})
    parts = {p.value: p for p in slices(frame, reference, streams.labels_of, settings)}
    assert set(parts) == {"web", "app", "(missing)"}
    assert parts["(missing)"].assessment is None and parts["(missing)"].n == 10
    assert parts["web"].assessment.alpha == pytest.approx(RATE / 2), "two slices are judged"
    assert {c.name for c in parts["app"].assessment.alerts} >= {"input drift", "confidence"}
    assert parts["web"].assessment.alerts == []


def test_timeline_bins_hold_every_row_once(streams):
    reference = streams.reference()
    first = streams.window(seed=9, n=60, start=streams.START, seconds=3600)
    third = streams.window(seed=10, n=30, start=streams.START + 2 * 3600, seconds=3600)
    frame = pd.concat([first, third], ignore_index=True)
    width, bins = timeline(frame, reference, streams.labels_of, streams.START, streams.START + 4 * 3600)
    assert width == 3600 and [b.n for b in bins] == [60, 0, 30, 0]
    assert bins[0].mean_confidence == pytest.approx(first["score"].mean())
    assert bins[0].psi is not None and bins[2].psi is not None and bins[1].psi is None
    assert bins[2].n_feedback == int(third["feedback_label"].notna().sum())
    assert bin_seconds_for(0, 2 * 86_400) == 3600 and bin_seconds_for(0, 2 * 86_400 + 1) == 86_400
