"""The prediction log: redaction, windows, feedback checks, and a reader beside a writer."""

from __future__ import annotations

from pathlib import Path

import pytest

from keepfit.errors import DataError
from keepfit.serve.feedback import feedback_batch, mark_used
from keepfit.serve.log import Feedback, LoggedPrediction, PredictionLog, text_hash


def _row(rid: str, t: float, text: str = "hello", label: str | None = "a", version: str = "1") -> LoggedPrediction:
    return LoggedPrediction(rid, t, version, text, label, 0.9, [0.9, 0.1], 3.0, abstained=label is None,
                            meta={"channel": "app"})


def test_redacted_log_keeps_only_the_hash(tmp_path: Path):
    with PredictionLog(tmp_path / "p.sqlite", redact=True) as log:
        log.record_model("1", "single-label", ["a", "b"])
        log.append([_row("r1", 1.0, "secret text")])
        frame = log.predictions()
    assert frame["text"].isna().all() and frame["text_hash"][0] == text_hash("secret text")
    assert frame["meta"][0] == {"channel": "app"} and frame["probabilities"][0] == [0.9, 0.1]


def test_windows_and_limits(tmp_path: Path):
    with PredictionLog(tmp_path / "p.sqlite") as log:
        log.record_model("1", "single-label", ["a", "b"])
        log.append([_row(f"r{i}", float(i)) for i in range(10)])
        assert list(log.predictions(since=3, until=6)["request_id"]) == ["r3", "r4", "r5"]
        assert list(log.predictions(limit=2)["request_id"]) == ["r8", "r9"]  # newest, oldest first
        assert bool(log.predictions()["abstained"].any()) is False


def test_feedback_rejects_unknown_ids_and_labels_and_replaces_earlier(tmp_path: Path):
    with PredictionLog(tmp_path / "p.sqlite") as log:
        log.record_model("1", "single-label", ["a", "b"])
        log.append([_row("r1", 1.0), _row("r2", 2.0, label=None)])
        result = log.add_feedback([Feedback("r1", "b"), Feedback("zz", "a"), Feedback("r2", "c")])
        assert result.accepted == 1 and [r[1] for r in result.rejected] == ["zz", "r2"]
        assert "unknown label 'c'" in result.rejected[1][2]
        again = log.add_feedback([Feedback("r1", "a", time=5.0)])
        assert again.replaced == 1
        rows = log.feedback_rows()
    assert list(rows["label"]) == ["a"] and list(rows["predicted"]) == ["a"]


def test_a_reader_sees_what_a_writer_committed(tmp_path: Path):
    path = tmp_path / "p.sqlite"
    writer = PredictionLog(path)
    writer.record_model("1", "single-label", ["a", "b"])
    reader = PredictionLog(path, readonly=True)
    writer.append([_row("r1", 1.0)])
    assert reader.count() == 1
    with pytest.raises(DataError, match="nothing has been served"):
        PredictionLog(tmp_path / "none.sqlite", readonly=True)


def test_feedback_batches_move_their_cutoff(tmp_path: Path):
    with PredictionLog(tmp_path / "p.sqlite") as log:
        log.record_model("1", "single-label", ["a", "b"])
        log.append([_row("r1", 1.0, "first"), _row("r2", 2.0, "second")])
        log.add_feedback([Feedback("r1", "b", time=10.0)])
        folder = tmp_path / "batches"
        batch = feedback_batch(log, folder, text_column="text", label_column="label")
        assert batch.rows == 1 and batch.cutoff == 10.0
        mark_used(batch, folder)
        with pytest.raises(DataError, match="No feedback after"):
            feedback_batch(log, folder, text_column="text", label_column="label")
        log.add_feedback([Feedback("r2", "a", time=20.0)])
        nxt = feedback_batch(log, folder, text_column="text", label_column="label")
    assert nxt.rows == 1 and nxt.path.read_text().splitlines() == ["text,label,channel", "second,a,app"]


def test_a_declared_new_label_is_accepted_as_feedback(tmp_path: Path):
    with PredictionLog(tmp_path / "p.sqlite") as log:
        log.record_model("1", "single-label", ["a", "b"])
        log.append([_row("r1", 1.0)])
        refused = log.add_feedback([Feedback("r1", "crypto")])
        assert "declare a new label" in refused.rejected[0][2]
        assert log.add_feedback([Feedback("r1", "crypto")], declared=["a", "b", "crypto"]).accepted == 1
