"""Two worker processes on one Optuna study in a real PostgreSQL: no trial runs twice, and both see the same best.

The server is started by the test in a temporary folder (Debian's postgresql package); where it is not installed
or cannot start, the test is skipped with the reason."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration

WORKER = """
import sys, optuna
optuna.logging.set_verbosity(optuna.logging.WARNING)
from keepfit.config import config_from_mapping
from keepfit.tune import suggest
space = config_from_mapping({"tune": {"space": {"lr": {"low": 1e-5, "high": 1e-1, "log": True},
                                                "batch_size": {"choices": [8, 16, 32, 64]}}}}).tune.space
study = optuna.load_study(study_name="shared", storage=sys.argv[1])
def objective(trial):
    values = suggest(trial, space)
    trial.set_user_attr("worker", sys.argv[2])
    return (values["lr"] - 1e-3) ** 2 + values["batch_size"] / 1000
study.optimize(objective, n_trials=int(sys.argv[3]))
print(study.best_trial.number, study.best_value)
"""


def test_two_workers_share_one_study_without_running_a_trial_twice(postgres_url: str):
    import optuna

    optuna.create_study(study_name="shared", storage=postgres_url, sampler=optuna.samplers.RandomSampler(seed=0))
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, postgres_url, name, "12"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for name in ("a", "b")]
    outputs = [w.communicate(timeout=300) for w in workers]
    assert all(w.returncode == 0 for w in workers), [err[-2000:] for _, err in outputs]
    study = optuna.load_study(study_name="shared", storage=postgres_url)
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == 24 and sorted(t.number for t in trials) == list(range(24))
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert {t.user_attrs["worker"] for t in trials} == {"a", "b"}
    best = min(trials, key=lambda t: t.value)
    for out, _ in outputs:  # each worker's view of the best is the study's (or the best it had seen by then)
        number, value = out.split()
        assert float(value) >= best.value and int(number) in {t.number for t in trials}
    assert study.best_trial.number == best.number
