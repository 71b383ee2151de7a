"""Feedback from the API and from a file, then `keepfit update --from-feedback` through the gate, on a copy of
the served project (the copy also checks that a moved store still serves and updates)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from keepfit.train.testing import sentiment_frame

pytestmark = pytest.mark.integration

RELAXED = ["--set", "gate.max_negative_flip_rate=1", "--set", "gate.margin=1", "--set", "update.epochs=2",
           "--set", "train.lr=1e-2", "--set", "train.head_lr=null", "--set", "train.precision=fp32",
           "--set", "train.threads=1", "--set", "train.freeze_embeddings=false", "--set", "evaluate.bootstrap=50"]


def test_feedback_import_and_update_from_feedback(served_project: Path, tmp_path: Path, start_server, keepfit_cli):
    project = tmp_path / "copy"
    shutil.copytree(served_project, project, ignore=shutil.ignore_patterns("server.json"))
    fresh = sentiment_frame(80, seed=11)
    srv = start_server(project)
    try:
        body = srv.client.post("/predict", json={"texts": fresh["text"].tolist()}).json()
    finally:
        srv.stop()
    ids = [p["id"] for p in body["predictions"]]
    # half the labels come by file, with two bad rows that must be set aside with their reason
    rows = pd.DataFrame({"request_id": ids, "label": fresh["label"]})
    bad = pd.DataFrame({"request_id": ["no-such-id", ids[0]], "label": ["pos", "sideways"]})
    pd.concat([rows, bad]).to_csv(project / "labels.csv", index=False)

    out = keepfit_cli(project, "feedback", "import", "labels.csv", check=False)
    assert out.returncode == 3, out.stdout + out.stderr
    assert "80 of 82 rows accepted" in out.stdout
    rejected = next((project / ".keepfit" / "serve" / "feedback-rejected").glob("*.csv"))
    reasons = pd.read_csv(rejected)
    assert list(reasons["request_id"]) == ["no-such-id", ids[0]]
    assert "unknown request id" in reasons["reason"][0] and "unknown label 'sideways'" in reasons["reason"][1]

    done = keepfit_cli(project, "update", "--from-feedback", "--quiet", *RELAXED, check=False)
    assert done.returncode in (0, 6), done.stdout[-3000:] + done.stderr[-3000:]  # a decision, either way
    assert "Feedback batch: 80 rows" in done.stdout
    assert "80 new" in done.stdout or "new (train" in done.stdout
    batch = pd.read_csv(next((project / ".keepfit" / "serve" / "feedback-batches").glob("feedback-*.csv")))
    assert sorted(batch["text"]) == sorted(fresh["text"]) and set(batch["label"]) <= {"neg", "pos"}

    again = keepfit_cli(project, "update", "--from-feedback", "--quiet", *RELAXED, check=False)
    assert again.returncode == 3 and "No feedback after" in again.stderr

    both = keepfit_cli(project, "update", "--from-feedback", "--data", "labels.csv", check=False)
    assert both.returncode == 2 and "got both" in both.stderr
