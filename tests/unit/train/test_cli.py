"""`keepfit predict` through the CLI; presets; the train-only entry used under `accelerate launch`."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
from typer.testing import CliRunner

from keepfit.cli.app import app
from keepfit.errors import ConfigError
from keepfit.train.presets import preset_overrides
from keepfit.train.testing import sentiment_frame


def test_predict_command_writes_the_file(trained, easy_snapshot, tmp_path):
    src, out = tmp_path / "in.csv", tmp_path / "out.csv"
    easy_snapshot.test[["text"]].to_csv(src, index=False)
    result = CliRunner().invoke(app, ["predict", str(trained.run_dir), str(src), str(out), "--top-k", "1"])
    assert result.exit_code == 0, result.output
    assert "Predicted 60 rows" in result.output and "texts/s" in result.output
    written = pd.read_csv(out)
    assert list(written.columns) == ["text", "label", "score", "top_k", "abstained"]
    assert all(len(json.loads(x)) == 1 for x in written["top_k"])


def test_presets_are_valid_overrides():
    from keepfit.config import load_config

    best = load_config(None, preset_overrides("best"))
    assert best.train.strategy == "full" and best.train.head_lr and best.train.early_stopping_patience
    assert load_config(None, preset_overrides("fast")).train.epochs == 2
    with pytest.raises(ConfigError, match="expected one of"):
        preset_overrides("fastest")


def test_train_only_entry_trains_from_a_table(tiny_model, tmp_path):
    frames = [
        sentiment_frame(120, 1).assign(split="train"),
        sentiment_frame(40, 2).assign(split="validation"),
    ]
    table = tmp_path / "rows.parquet"
    pd.concat(frames).to_parquet(table)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "keepfit.cli.fit",
        "--data",
        str(table),
        "--run-dir",
        str(tmp_path / "run"),
        "--set",
        f"model.name={tiny_model}",
        "--set",
        "train.epochs=6",
        "--set",
        "train.lr=1e-2",
        "--set",
        "train.precision=fp32",
        "--set",
        "train.batch_size=16",
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "samples/s" in done.stdout and (tmp_path / "run" / "model" / "model.safetensors").exists()


def test_fit_command_trains_and_evaluates_a_project(tiny_model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sentiment_frame(200, 5).to_csv("data.csv", index=False)
    (tmp_path / "keepfit.yaml").write_text(
        f"task: single-label\ndata:\n  train: data.csv\nmodel:\n  name: {tiny_model}\n"
        "train:\n  epochs: 6\n  lr: 0.01\n  batch_size: 16\n  precision: fp32\n"
    )
    result = CliRunner().invoke(app, ["fit", "--quiet", "--no-register", "--set", "train.seed=7"])
    assert result.exit_code == 0, result.output
    assert "samples/s" in result.output and "test accuracy" in result.output
    runs = list((tmp_path / ".keepfit" / "runs").glob("*-fit-*"))
    assert len(runs) == 1 and (runs[0] / "model" / "keepfit.json").exists()
    assert "seed: 7" in (runs[0] / "config.yaml").read_text()
    resumed = CliRunner().invoke(app, ["fit", "--quiet", "--no-register", "--resume", str(runs[0])])
    assert resumed.exit_code == 0, resumed.output
    bad = CliRunner().invoke(app, ["fit", "--quiet", "--resume", str(tmp_path)])
    assert bad.exit_code != 0
