"""Real processes on one store: two `keepfit update` started at once, and an update killed with SIGKILL.

The project lock serialises them: the second update waits, then starts from (and is judged against) the champion
the first one left. A killed update leaves no registered version, no HEAD pointing at a half-made snapshot, and
no lock that blocks the next update.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from keepfit.train.testing import all_texts, make_tiny_model, sentiment_frame

pytestmark = pytest.mark.integration

KEEPFIT = [sys.executable, "-c", "from keepfit.cli import main; main()"]
SETTINGS = [
    "--set", "train.lr=1e-2", "--set", "train.head_lr=null", "--set", "train.epochs=3",
    "--set", "train.precision=fp32", "--set", "train.threads=1", "--set", "evaluate.bootstrap=100",
]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "MLFLOW_DISABLE_TELEMETRY": "true",
            "TOKENIZERS_PARALLELISM": "false", "KEEPFIT_DEBUG": "0"}


def _run(project: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([*KEEPFIT, *args], cwd=project, env=_env(), capture_output=True, text=True, timeout=600)
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _start(project: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([*KEEPFIT, *args], cwd=project, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    model = make_tiny_model(tmp_path / "tiny", all_texts())
    sentiment_frame(300, seed=1).to_csv(tmp_path / "week1.csv", index=False)
    for i, seed in enumerate((2, 3), start=2):
        sentiment_frame(150, seed=seed).to_csv(tmp_path / f"week{i}.csv", index=False)
    (tmp_path / "keepfit.yaml").write_text(
        f"model:\n  name: {model}\ndata:\n  train: week1.csv\nregistry:\n  model_name: races\n"
    )
    _run(tmp_path, "fit", "--quiet", *SETTINGS)
    return tmp_path


def _registry(project: Path) -> list[dict]:
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{project / '.keepfit' / 'registry' / 'mlflow.db'}")
    versions = client.search_model_versions("name='races'")
    return sorted(({"version": int(v.version), "tags": dict(v.tags), "aliases": list(v.aliases)} for v in versions),
                  key=lambda v: v["version"])


def _lineage(project: Path, version: int) -> dict:
    from keepfit import Registry, load_config

    info = Registry.open(load_config(project / "keepfit.yaml")).get(str(version))
    return {"parent": info.lineage.parent_version, "snapshot": info.lineage.data_snapshot}


def test_two_updates_at_once_are_serialised(project: Path):
    args = ["--quiet", "--json", *SETTINGS, "--set", "gate.max_negative_flip_rate=1", "--set", "gate.margin=1"]
    first = _start(project, "update", "--data", "week2.csv", *args)
    time.sleep(0.5)
    second = _start(project, "update", "--data", "week3.csv", *args)
    outs = [p.communicate(timeout=600) for p in (first, second)]
    codes = [first.returncode, second.returncode]
    assert all(c in (0, 6) for c in codes), outs
    versions = _registry(project)
    assert [v["version"] for v in versions] == [1, 2, 3], "each update registered exactly one version"
    parents = {v: _lineage(project, v)["parent"] for v in (2, 3)}
    # whichever got the lock first was judged against 1; the other waited and was judged against the champion
    # the first left behind (2 if it was promoted, else still 1) - never against a champion that had moved
    results = {str(r["candidate_version"]): r for r in (json.loads(out) for out, _ in outs)}
    assert sorted(results) == ["2", "3"]
    champion_after_first = "2" if results["2"]["promoted"] else "1"
    assert parents[2] == "1"
    assert parents[3] == champion_after_first, (parents, outs)
    # the second update's snapshot builds on the first one's (one history, no fork)
    from keepfit.data import ancestors
    from keepfit.store import Store

    store = Store.at(project / ".keepfit")
    s2, s3 = _lineage(project, 2)["snapshot"], _lineage(project, 3)["snapshot"]
    assert s2 in ancestors(store, s3)
    assert (store.head_file.read_text().strip()) == s3


def test_sigkill_during_update_leaves_nothing_half_made(project: Path):
    from keepfit.store import Store

    store = Store.at(project / ".keepfit")
    head_before = store.head_file.read_text().strip()
    proc = _start(project, "update", "--data", "week2.csv", "--quiet", *SETTINGS, "--set", "train.epochs=30")
    deadline = time.time() + 120
    while time.time() < deadline and not list((store.runs).glob("*-update-*/checkpoints*")):
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert [v["version"] for v in _registry(project)] == [1], "a killed update registers nothing"
    head = store.head_file.read_text().strip()
    assert head == head_before or (store.snapshot(head) / "meta.json").exists()
    # the lock died with its process: the next update runs to the end
    done = _run(project, "update", "--data", "week2.csv", "--quiet", "--json", *SETTINGS, check=False)
    assert done.returncode in (0, 6), done.stderr[-3000:]
    assert json.loads(done.stdout)["candidate_version"] in ("2", 2)
