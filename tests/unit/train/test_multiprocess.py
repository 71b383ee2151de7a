"""Data-parallel training on two CPU processes (`accelerate launch`) reaches the quality of one process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from keepfit.train.testing import sentiment_frame

pytestmark = pytest.mark.integration


def _train(cmd_prefix: list[str], table: Path, run: Path, model: Path) -> list[dict]:
    cmd = cmd_prefix + [
        "-m",
        "keepfit.cli.fit",
        "--data",
        str(table),
        "--run-dir",
        str(run),
        "--set",
        f"model.name={model}",
        "--set",
        "train.epochs=8",
        "--set",
        "train.lr=1e-2",
        "--set",
        "train.precision=fp32",
        "--set",
        "train.freeze_embeddings=false",
        "--set",
        "train.batch_size=16",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_two_processes_reach_the_same_quality(tiny_model, tmp_path):
    launcher = shutil.which("accelerate") or str(Path(sys.executable).parent / "accelerate")
    table = tmp_path / "rows.parquet"
    pd.concat(
        [sentiment_frame(320, 1).assign(split="train"), sentiment_frame(80, 2).assign(split="validation")]
    ).to_parquet(table)
    one = _train([sys.executable], table, tmp_path / "one", tiny_model)
    two = _train(
        [
            launcher,
            "launch",
            "--multi_gpu",
            "--num_processes",
            "2",
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
        ],
        table,
        tmp_path / "two",
        tiny_model,
    )
    assert "processes: 2" in (tmp_path / "two" / "train.log").read_text()
    assert [h["samples_seen"] for h in one] == [h["samples_seen"] for h in two]  # same global batches
    best_one = max(h["validation_accuracy"] for h in one)
    best_two = max(h["validation_accuracy"] for h in two)
    assert best_one >= 0.9 and best_two >= 0.9 and abs(best_one - best_two) <= 0.05
