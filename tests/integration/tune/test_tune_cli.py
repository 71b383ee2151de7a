"""`keepfit tune` as users run it: a study killed mid-trial (SIGKILL) resumes and finishes its budget, and two
`keepfit tune --worker` processes share one study in a real PostgreSQL, then one `keepfit tune` registers the best.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from keepfit.config import load_config
from keepfit.registry import Registry
from keepfit.train.testing import all_texts, make_tiny_model, write_tiny_project
from keepfit.tune.study import FAILURE, RUN_DIR, WORKER, open_storage

pytestmark = pytest.mark.integration

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
       "MLFLOW_DISABLE_TELEMETRY": "true"}
KEEPFIT = [sys.executable, "-c", "from keepfit.cli import main; main()"]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "model", all_texts())


def _keepfit(project: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([*KEEPFIT, "tune", "--config", str(project), *args], env=ENV, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=project.parent)


def _finished(proc: subprocess.Popen, timeout: float = 300) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{out[-3000:]}\n{err[-3000:]}"
    return out


def test_a_study_killed_mid_trial_resumes_and_finishes_its_budget(tmp_path, tiny_model):
    space = {"lr": {"low": 5e-3, "high": 3e-2, "log": True}}
    project = write_tiny_project(tmp_path / "project", tiny_model, train={"epochs": 40},
                                 tune={"space": space, "sampler": "random", "pruner": "none", "trials": 3,
                                       "study_name": "killed"})
    storage = open_storage(load_config(project))
    proc = _keepfit(project, "--quiet")
    deadline = time.time() + 120
    victim = None
    while time.time() < deadline and victim is None:  # kill it once the second trial has reported
        time.sleep(0.3)
        try:
            trials = optuna.load_study(study_name="killed", storage=storage).trials
        except KeyError:
            continue
        victim = next((t for t in trials if t.number == 1 and t.state.name == "RUNNING"
                       and len(t.intermediate_values) == 0 and t.params), None)
    assert victim is not None, "the second trial never started"
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)

    out = _finished(_keepfit(project))
    assert "1 trial(s) of a killed worker queued again" in out
    study = optuna.load_study(study_name="killed", storage=storage)
    killed = study.trials[1]
    assert killed.state.name == "FAIL" and FAILURE not in killed.user_attrs  # not the trial's own fault
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(done) == 3  # the budget, as if nothing had happened
    assert [t for t in done if t.params == killed.params], "the killed trial's values never ran again"
    assert len({t.user_attrs[RUN_DIR] for t in study.trials}) == len(study.trials)
    versions = Registry.open(load_config(project)).list()
    assert len(versions) == 1 and versions[0].lineage.search["trial"] == study.best_trial.number


def test_two_workers_share_a_study_in_postgresql_and_one_finisher_registers_the_best(
    tmp_path, tiny_model, postgres_url
):
    space = {"lr": {"low": 1e-3, "high": 5e-2, "log": True}, "epochs": {"choices": [1, 2, 3]}}
    # trials long enough (several seconds each) that the second worker's start-up, slow on a loaded machine, does
    # not find the study already done
    project = write_tiny_project(tmp_path / "project", tiny_model, train={"epochs": 8},
                                 tune={"space": {"lr": space["lr"]}, "sampler": "tpe", "startup_trials": 2,
                                       "trials": 6})
    args = ["--storage", postgres_url, "--study", "shared-tiny", "--quiet"]
    workers = [_keepfit(project, *args, "--worker") for _ in range(2)]
    for worker in workers:
        _finished(worker)
    out = _finished(_keepfit(project, *args))

    study = optuna.load_study(study_name="shared-tiny", storage=postgres_url)
    trials = study.trials
    counted = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert 6 <= len(counted) <= 7  # the budget is the study's (two workers may race for the last trial)
    assert sorted(t.number for t in trials) == list(range(len(trials)))
    assert len({t.user_attrs[WORKER] for t in trials}) == 2  # both workers ran trials
    assert "nothing retrained" not in out
    version = Registry.open(load_config(project)).list()[-1]
    assert version.lineage.search["study"] == "shared-tiny"
    assert version.lineage.search["trial"] == study.best_trial.number
    assert version.lineage.search["validation"] == pytest.approx(study.best_value)
