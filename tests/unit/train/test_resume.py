"""A run killed with SIGKILL mid-epoch, then resumed, ends with an uninterrupted run's weights, bitwise."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

SCRIPT = """
import sys, time
from pathlib import Path
import keepfit.train.loop as loop
from keepfit.train import train_model
from keepfit.train.testing import config_for, sentiment_frame, snapshot_of

model, run, mode = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
if mode == "slow":  # slow each step down so the parent can kill us mid-epoch
    original = loop._loss
    def slow_loss(*args, **kwargs):
        time.sleep(0.03)
        return original(*args, **kwargs)
    loop._loss = slow_loss
snap = snapshot_of(sentiment_frame(200, 1), sentiment_frame(40, 2), sentiment_frame(40, 3))
config = config_for(model, epochs=3, lr=5e-3, checkpoint_every_steps=4, dropout=0.1)
train_model(snap, config, run, resume=(mode == "resume"), progress=False)
"""


def _run(script: Path, model: Path, run: Path, mode: str) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.Popen(
        [sys.executable, str(script), str(model), str(run), mode],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _mid_epoch_checkpoint(run: Path) -> bool:
    return any(
        not p.name.endswith("-b0")
        for p in (run / "checkpoints").glob("step-*")
        if (p / "state.json").exists()
    )


def test_resume_after_sigkill_is_bitwise_identical(tiny_model, tmp_path):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    proc = _run(script, tiny_model, straight, "plain")
    assert proc.wait(timeout=120) == 0, proc.stderr.read().decode()[-2000:]

    proc = _run(script, tiny_model, killed, "slow")
    deadline = time.time() + 120
    while not _mid_epoch_checkpoint(killed) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be killed; slow it down further"
    time.sleep(0.1)  # land somewhere after the checkpoint, mid-epoch
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert not (killed / "model").exists()

    proc = _run(script, tiny_model, killed, "resume")
    assert proc.wait(timeout=120) == 0, proc.stderr.read().decode()[-2000:]
    assert "resumed from" in (killed / "train.log").read_text()

    a = load_file(str(straight / "model" / "model.safetensors"))
    b = load_file(str(killed / "model" / "model.safetensors"))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])][:5]
    assert (straight / "metrics.jsonl").read_text().count("\n") == (
        killed / "metrics.jsonl"
    ).read_text().count("\n")
