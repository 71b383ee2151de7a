"""`keepfit monitor` on a tiny fitted project: a quiet hour, a drifted hour, an hour with too few rows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from keepfit.cli import app
from keepfit.cli._common import MONITOR_ALERT
from keepfit.serve.log import Feedback, LoggedPrediction, PredictionLog
from keepfit.train.testing import all_texts, make_tiny_model, sentiment_frame

runner = CliRunner()
HOUR = 3600.0
START = 1_772_323_200.0  # 2026-03-01T00:00:00Z
QUIET = ["--since", "2026-03-01T00:00Z", "--until", "2026-03-01T01:00Z"]
DRIFTED = ["--since", "2026-03-01T02:00Z", "--until", "2026-03-01T03:00Z"]
SPARSE = ["--since", "2026-03-01T04:00Z", "--until", "2026-03-01T05:00Z"]
TRAIN = ["--set", "train.lr=1e-2", "--set", "train.head_lr=null", "--set", "train.epochs=4",
         "--set", "train.precision=fp32", "--set", "train.freeze_embeddings=false"]


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("monitored")
    model = make_tiny_model(root / "tiny-model", all_texts())
    sentiment_frame(300, seed=1).to_csv(root / "week1.csv", index=False)
    assert runner.invoke(app, ["init", str(root / "week1.csv"), "--out", str(root / "keepfit.yaml")]).exit_code == 0
    text = (root / "keepfit.yaml").read_text()
    (root / "keepfit.yaml").write_text(text.replace("all-MiniLM-L6-v2", str(model)))
    fitted = runner.invoke(app, ["fit", "--config", str(root / "keepfit.yaml"), *TRAIN, "--quiet"])
    assert fitted.exit_code == 0, fitted.output
    _write_log(root)
    return root


def _write_log(root: Path) -> None:
    """Hour 0: the model's own answers on fresh texts of the training distribution. Hour 2: a new topic the
    model is unsure about, nearly all answered "neg", a third abstained, feedback that mostly disagrees.
    Hour 4: ten requests."""
    from keepfit import Registry, load_config
    from keepfit.train.predict import load_predictor

    config = load_config(root / "keepfit.yaml")
    predictor = load_predictor(Registry.open(config).model_path("champion"))
    labels = list(predictor.labels)
    log = PredictionLog(root / ".keepfit" / "serve" / "predictions.sqlite")
    log.record_model("1", "single-label", labels)
    quiet = sentiment_frame(120, seed=3)["text"].tolist()
    outputs = predictor.predict(quiet).outputs
    rows = [_row(f"q{i}", START + i * 25, t, labels, p) for i, (t, p) in enumerate(zip(quiet, outputs, strict=True))]
    rng = np.random.default_rng(0)
    topic = ["refund", "card", "charged", "twice", "account", "blocked", "transfer", "fee"]
    for i in range(120):
        text = " ".join(rng.choice(topic, 4))
        top = labels.index("neg") if i % 10 else labels.index("pos")
        p = np.full(len(labels), 0.45 / (len(labels) - 1))
        p[top] = 0.55
        rows.append(_row(f"d{i}", START + 2 * HOUR + i * 25, text, labels, p, abstained=i % 3 == 0))
    sparse = sentiment_frame(10, seed=4)["text"].tolist()
    outputs = predictor.predict(sparse).outputs
    rows += [_row(f"s{i}", START + 4 * HOUR + i, t, labels, p)
             for i, (t, p) in enumerate(zip(sparse, outputs, strict=True))]
    log.append(rows)
    answered = [r for r in rows if r.request_id.startswith("d") and not r.abstained][:40]
    log.add_feedback([Feedback(r.request_id, "pos" if r.label == "neg" else "neg") for r in answered])
    log.close()


def _row(rid: str, when: float, text: str, labels: list[str], p: np.ndarray, abstained: bool = False):
    top = int(np.argmax(p))
    return LoggedPrediction(rid, when, "1", text, None if abstained else labels[top], float(p[top]),
                            [float(x) for x in p], 1.0, abstained=abstained)


def _monitor(project: Path, *args: str):
    return runner.invoke(app, ["monitor", "--config", str(project / "keepfit.yaml"), *args], catch_exceptions=False)


def test_a_quiet_hour_passes_and_caches_the_reference(project):
    done = _monitor(project, *QUIET, "--fail-on-alert", "--out", str(project / "quiet"))
    assert done.exit_code == 0, done.output
    assert "No alert." in done.output and "120 logged predictions" in done.output
    cached = json.loads((project / ".keepfit" / "monitor" / "reference-v1.json").read_text())
    figures = json.loads((project / "quiet" / "monitor.json").read_text())
    assert figures["reference"]["n_validation"] == len(cached["scores"]) > 0
    assert {c["status"] for c in figures["overall"]["checks"]} <= {"ok", "skipped"}


def test_a_drifted_hour_alerts_and_fails_with_the_monitor_exit_code(project):
    done = _monitor(project, *DRIFTED, "--fail-on-alert", "--out", str(project / "drifted"))
    assert done.exit_code == MONITOR_ALERT, done.output
    for check in ("input drift", "label shift", "confidence", "abstention", "estimated accuracy", "realised accuracy"):
        assert f"ALERT {check}:" in done.output, (check, done.output)
    assert "`keepfit update --from-feedback` builds the next batch from 40 feedback rows." in done.output
    page = (project / "drifted" / "monitor.html").read_text()
    assert "data:image/png;base64," in page and "refund" in page


def test_json_output_is_one_document_with_every_figure(project):
    done = _monitor(project, *DRIFTED, "--json", "--out", str(project / "drifted-json"))
    assert done.exit_code == 0, done.output
    figures = json.loads(done.stdout)
    checks = {c["name"]: c for c in figures["overall"]["checks"]}
    assert figures["n_rows"] == 120 and figures["feedback_available"] == 40
    assert checks["abstention"]["value"] == pytest.approx(40 / 120)
    assert checks["realised accuracy"]["value"] == 0.0 and checks["realised accuracy"]["result"]["n"] == 40
    assert checks["confidence"]["value"] == pytest.approx(0.55, abs=1e-6)
    assert figures == json.loads((project / "drifted-json" / "monitor.json").read_text())


def test_too_few_rows_give_no_verdict_and_exit_0(project):
    done = _monitor(project, *SPARSE, "--fail-on-alert", "--out", str(project / "sparse"))
    assert done.exit_code == 0, done.output
    assert "Fewer than monitor.min_rows=50 rows in the window: no verdicts." in done.output
