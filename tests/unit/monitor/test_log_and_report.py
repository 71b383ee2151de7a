"""Through a real PredictionLog: feedback becomes realised accuracy; the report's JSON and HTML carry the
figures; the window's times and the settings are checked before anything is read."""

from __future__ import annotations

import json

import pytest

from keepfit.config import KeepfitConfig, MonitorConfig
from keepfit.errors import ConfigError, DataError
from keepfit.monitor import monitor, write_report
from keepfit.monitor.run import MonitorReport, assess, parse_duration, parse_time, slices, timeline
from keepfit.serve.log import Feedback, LoggedPrediction, PredictionLog

SETTINGS = MonitorConfig(false_alarm_rate=0.05, permutations=200, min_rows=50, min_feedback=20,
                         slice_keys=["channel"])


def _log(tmp_path, window) -> PredictionLog:
    log = PredictionLog(tmp_path / "predictions.sqlite")
    log.record_model("1", "single-label", ["neg", "pos", "neu"])
    log.append(
        LoggedPrediction(
            request_id=row.request_id, time=row.time, model_version="1", text=row.text, label=row.label,
            score=row.score, probabilities=row.probabilities, latency_ms=1.0, abstained=row.abstained,
            meta={"channel": "app" if i % 2 else "web"},
        )
        for i, row in enumerate(window.itertuples())
    )
    return log


def test_feedback_in_the_log_becomes_realised_accuracy_overall_and_per_slice(tmp_path, streams):
    window = streams.window(seed=11, n=120, feedback_share=0.0, abstain_below=0.75)
    log = _log(tmp_path, window)
    channel = {r.request_id: "app" if i % 2 else "web" for i, r in enumerate(window.itertuples())}
    answered = window[~window["abstained"]].reset_index(drop=True)
    # the first 40 answered requests get feedback: 30 confirm the prediction, 10 name another label
    items = [
        Feedback(r.request_id, r.label if i < 30 else ("pos" if r.label == "neg" else "neg"))
        for i, r in enumerate(answered.head(40).itertuples())
    ]
    abstained = window[window["abstained"]].head(3)
    assert len(abstained) == 3
    items += [Feedback(r.request_id, "neu") for r in abstained.itertuples()]
    assert log.add_feedback(items).accepted == 43
    frame = PredictionLog(log.path, readonly=True).predictions()
    settings = SETTINGS.model_copy(update={"min_feedback": 10})
    assessment = assess(frame, streams.reference(), streams.labels_of, settings)
    check = assessment.check("realised accuracy")
    assert (check.result.count, check.result.n) == (30, 40)
    assert "3 more with feedback were abstained on" in check.detail
    assert assessment.n_feedback == 43
    for part in slices(frame, streams.reference(), streams.labels_of, settings):
        mine = [f for f in items[:40] if channel[f.request_id] == part.value]
        right = sum(f.label == answered.set_index("request_id").loc[f.request_id, "label"] for f in mine)
        realised = part.assessment.check("realised accuracy").result
        assert (realised.count, realised.n) == (right, len(mine)), part.value


def _report(streams, window, overall=True) -> MonitorReport:
    reference = streams.reference()
    since, until = streams.START, streams.START + 3600
    width, bins = timeline(window, reference, streams.labels_of, since, until)
    return MonitorReport(
        ref="champion", reference=reference.summary(), log_path="log.sqlite", since=since, until=until,
        n_rows=len(window), truncated=False, versions={"1": len(window)}, min_rows=SETTINGS.min_rows,
        overall=assess(window, reference, streams.labels_of, SETTINGS) if overall else None,
        slices=[], timeline=bins, bin_seconds=width, feedback_available=17, settings=SETTINGS.model_dump(),
    )


def test_report_json_and_html_carry_the_figures_and_the_alerts(tmp_path, streams):
    report = _report(streams, streams.window(seed=12, new_topic=True, score_shape=(1.5, 2.5)))
    html_path, json_path = write_report(report, tmp_path / "out")
    body = json.loads(json_path.read_text())
    checks = {c["name"]: c for c in body["overall"]["checks"]}
    assert checks["input drift"]["status"] == "alert"
    assert checks["confidence"]["value"] == pytest.approx(report.overall.check("confidence").value)
    assert body["since_iso"] == "2026-03-01T00:00:00Z" and body["n_rows"] == 150
    assert body["suggestion"] == "`keepfit update --from-feedback` builds the next batch from 17 feedback rows."
    assert any(line.startswith("input drift: a classifier tells") for line in body["alerts"])
    page = html_path.read_text()
    assert page.count("data:image/png;base64,") == 2, "the timeline and the label shares"
    assert "ALERT" in page and "Input drift: what is new" in page


def test_too_few_rows_report_says_so_and_has_no_verdicts(tmp_path, streams):
    report = _report(streams, streams.window(seed=13, n=10), overall=False)
    assert report.alerts() == [] and report.suggestion() is None
    html_path, json_path = write_report(report, tmp_path / "out")
    assert json.loads(json_path.read_text())["overall"] is None
    assert "no verdicts" in html_path.read_text()


def test_durations_and_times():
    now = 1_772_323_200.0 + 86_400
    assert parse_duration("90m") == 5400 and parse_duration("36h") == 36 * 3600 and parse_duration("7d") == 604_800
    assert parse_time("2h", now) == now - 7200
    assert parse_time("2026-03-01", now) == 1_772_323_200.0
    assert parse_time("2026-03-01T01:00:00+01:00", now) == 1_772_323_200.0
    for bad in ("7", "-2h", "soon"):
        with pytest.raises(ConfigError):
            parse_time(bad, now) if bad == "soon" else parse_duration(bad)


def test_settings_that_cannot_work_are_refused_before_the_log_is_read(tmp_path):
    config = KeepfitConfig.model_validate({
        "store": str(tmp_path / "store"), "monitor": {"false_alarm_rate": 0.001, "permutations": 200, "window": "7x"}
    })
    with pytest.raises(ConfigError) as caught:
        monitor(config)
    assert len(caught.value.problems) == 2 and "at least 1000" in str(caught.value)


def test_no_log_is_the_logs_own_error(tmp_path):
    config = KeepfitConfig.model_validate({"store": str(tmp_path / "store")})
    with pytest.raises(DataError, match="No prediction log"):
        monitor(config)


def test_the_suggested_batch_counts_only_feedback_the_last_update_did_not_use(tmp_path, streams):
    from keepfit.monitor.run import _unused_feedback
    from keepfit.serve.feedback import FeedbackBatch, mark_used
    from keepfit.store import Store

    store = Store.at(tmp_path / "store")
    window = streams.window(seed=14, n=30, feedback_share=0.0)
    log = _log(tmp_path, window)
    ids = window["request_id"].tolist()
    log.add_feedback([Feedback(rid, "neg", time=1000.0 + i) for i, rid in enumerate(ids[:20])])
    assert _unused_feedback(log, store) == 20
    mark_used(FeedbackBatch(tmp_path / "batch.csv", 12, 0, 1011.0, None), store.feedback_batches)
    assert _unused_feedback(log, store) == 8, "feedback up to the cutoff went into the last update"


def test_feedback_naming_a_label_the_version_does_not_know_is_said(streams):
    window = streams.window(seed=15, feedback_share=1.0)
    window.loc[window.index[:5], "feedback_label"] = "billing"
    check = assess(window, streams.reference(), streams.labels_of, SETTINGS).check("realised accuracy")
    assert "feedback names labels v1 does not know: billing" in check.detail
