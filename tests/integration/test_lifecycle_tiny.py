"""The whole lifecycle through the CLI on a tiny model built from a config: init, fit, evaluate, predict,
update (promoted), a corrupted update (rejected), compare, rollback; read back through MLflow's own client."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from keepfit.cli import app
from keepfit.train.testing import all_texts, make_tiny_model, sentiment_frame

runner = CliRunner()


def _invoke(*args: str):
    result = runner.invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("proj")
    model = make_tiny_model(root / "tiny-model", all_texts())
    week1 = sentiment_frame(400, seed=1, labels=("neg", "pos"))
    week1.to_csv(root / "week1.csv", index=False)
    week2 = sentiment_frame(300, seed=2, labels=("neg", "pos", "neu"))
    week2.to_csv(root / "week2.csv", index=False)
    # an annotator who swapped two intents in a fresh batch: a systematic regression the gate must catch
    bad = sentiment_frame(300, seed=5, labels=("neg", "pos", "neu"))
    bad["label"] = bad["label"].map({"neg": "pos", "pos": "neg", "neu": "neu"})
    bad.to_csv(root / "week2_bad.csv", index=False)
    _invoke("init", str(root / "week1.csv"), "--out", str(root / "keepfit.yaml"))
    text = (root / "keepfit.yaml").read_text()
    (root / "keepfit.yaml").write_text(text.replace("all-MiniLM-L6-v2", str(model)))
    return root


def _cfg(project: Path) -> list[str]:
    return [
        "--config", str(project / "keepfit.yaml"),
        "--set", "train.lr=1e-2", "--set", "train.head_lr=null", "--set", "train.epochs=4",
        "--set", "train.precision=fp32", "--set", "train.freeze_embeddings=false",
        "--set", "update.epochs=8", "--set", "update.lr=3e-3",
        "--set", "evaluate.bootstrap=200", "--set", "gate.max_negative_flip_rate=0.05",
    ]


def test_lifecycle(project: Path):
    from mlflow import MlflowClient

    out = _invoke("fit", *_cfg(project), "--quiet")
    assert "accuracy" in out

    out = _invoke("evaluate", "champion", *_cfg(project), "--out", str(project / "eval"))
    evaluation = json.loads((project / "eval" / "evaluation.json").read_text())
    assert evaluation["headline"]["accuracy"] > 0.9, "an easy keyword task must be learned"

    texts = pd.DataFrame({"text": ["this film was great", "awful plot really"]})
    texts.to_csv(project / "in.csv", index=False)
    _invoke("predict", "champion", str(project / "in.csv"), str(project / "out.csv"), *_cfg(project)[:2])
    predicted = pd.read_csv(project / "out.csv")
    assert predicted["label"].tolist() == ["pos", "neg"]

    out = _invoke("update", "--data", str(project / "week2.csv"), *_cfg(project), "--quiet")
    assert "Promoted" in out, out
    curves = list((project / ".keepfit" / "runs").glob("*-update-*/interpolated/interpolation.json"))
    assert len(curves) == 1 and json.loads(curves[0].read_text())["curve"][0]["alpha"] == 0.0
    assert "Interpolation (BCWI, uniform)" in out

    # plain continued fine-tuning (no replay, no distillation) on the swapped batch: a candidate that really is worse
    result = runner.invoke(app, ["update", "--data", str(project / "week2_bad.csv"), *_cfg(project), "--quiet",
                                 "--set", "update.distill=false", "--set", "update.replay_ratio=0",
                                 "--set", "update.screen=keep", "--set", "update.interpolate=off"])
    assert "Rejected" in result.output, result.output

    _invoke("compare", "1", "2", *_cfg(project), "--out", str(project / "cmp"))
    compared = json.loads((project / "cmp" / "compare.json").read_text())
    groups = compared["comparison"]["groups"] if "comparison" in compared else compared["groups"]
    from keepfit import Registry, load_config, load_snapshot
    from keepfit.store import Store

    config = load_config(project / "keepfit.yaml")
    trained_on = Registry.open(config).get("2").lineage.data_snapshot
    n_test = len(load_snapshot(Store.at(config.store), trained_on).test)
    assert groups["all"]["n"] == n_test, "compare scores both models on the test rows version 2 was trained with"
    listed = len(groups["all"]["negative_flips"])
    assert groups["all"]["negative_flip_rate"] * n_test == pytest.approx(listed)

    out = _invoke("models", "list", *_cfg(project)[:2])
    out = _invoke("models", "rollback", "--reason", "test rollback", *_cfg(project)[:2])

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    client = MlflowClient(f"sqlite:///{project / '.keepfit' / 'registry' / 'mlflow.db'}")
    (model,) = client.search_registered_models()
    champion = client.get_model_version_by_alias(model.name, "champion")
    challenger = client.get_model_version_by_alias(model.name, "challenger")
    assert str(champion.version) == "1", "rollback moves champion back to version 1"
    assert str(challenger.version) == "3", "the corrupted candidate stays challenger"
    assert len(client.search_model_versions(f"name='{model.name}'")) == 3, "nothing is deleted"

    # the same swapped batch through the default screen: the champion disputes the swapped rows before training
    result = runner.invoke(app, ["update", "--data", str(project / "week2_bad.csv"), *_cfg(project), "--quiet",
                                 "--drop-pending", "--json"])
    summary = json.loads(result.stdout)
    assert summary["batch"]["screened_out"] >= 180, summary["batch"]
    assert "look swapped" in summary["batch"]["screen"]["summary"]
    assert result.exit_code in (0, 6)

