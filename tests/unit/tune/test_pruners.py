"""The pruners tune.pruner names stop hopeless trials early, on a constructed objective whose curves are known:
trial x climbs to x, so the low ones are worth stopping and the best one never is."""

from __future__ import annotations

import optuna
import pytest

from keepfit.config import config_from_mapping
from keepfit.tune.study import _pruner

STEPS = 12


def _study(pruner: str) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    config = config_from_mapping({"tune": {"space": {"lr": {"low": 1e-5, "high": 1e-3}}, "pruner": pruner,
                                           "startup_trials": 3, "warmup_evals": 1}})
    study = optuna.create_study(direction="maximize", pruner=_pruner(config),
                                sampler=optuna.samplers.RandomSampler(seed=1))

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0.0, 1.0)
        for step in range(1, STEPS + 1):
            trial.report(x * step / STEPS, step)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return x

    study.optimize(objective, n_trials=40)
    return study


@pytest.mark.parametrize("pruner", ["median", "halving", "hyperband"])
def test_pruners_stop_the_low_curves_early_and_never_the_best(pruner):
    study = _study(pruner)
    states = optuna.trial.TrialState
    pruned = study.get_trials(states=(states.PRUNED,))
    complete = study.get_trials(states=(states.COMPLETE,))
    assert len(pruned) >= 10, f"{pruner} pruned only {len(pruned)} of 40"
    assert all(max(t.intermediate_values) < STEPS for t in pruned)  # stopped before the end
    best_x = max(t.params["x"] for t in study.trials)
    assert study.best_trial.params["x"] == best_x  # the best curve was never stopped
    mean = lambda ts: sum(t.params["x"] for t in ts) / len(ts)  # noqa: E731
    assert mean(pruned) < mean(complete)
    steps_run = sum(len(t.intermediate_values) for t in study.trials)
    assert steps_run < 0.8 * 40 * STEPS  # the point of pruning: less work


def test_no_pruner_runs_every_trial_to_the_end():
    study = _study("none")
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
