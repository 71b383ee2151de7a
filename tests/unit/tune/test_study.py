"""`keepfit tune` on a tiny project: trials fail with their reason and the study goes on, the budget is the
study's, a killed worker's trial is run again, the chosen model is scored once on test and registered with its
search in the lineage, and its values come back as a preset."""

from __future__ import annotations

import subprocess
import sys
import time

import optuna
import pytest
import yaml

from keepfit.config import load_config
from keepfit.errors import ConfigError
from keepfit.registry import Registry
from keepfit.train.testing import write_tiny_project
from keepfit.tune.study import FAILURE, STOPPED, WORKER, open_storage, study_counts, tune

GOOD_AND_DIVERGING = {"lr": {"choices": [0.01, 1.0e6]}, "epochs": {"choices": [2, 3]}}


def _project(tmp_path, tiny_model, **tune_settings):
    settings = {"space": GOOD_AND_DIVERGING, "sampler": "grid", "pruner": "none", **tune_settings}
    return write_tiny_project(tmp_path / "project", tiny_model, tune=settings)


def _study(config, name):
    return optuna.load_study(study_name=name, storage=open_storage(config))


def test_a_grid_study_records_failures_registers_the_best_and_writes_its_preset(tmp_path, tiny_model):
    path = _project(tmp_path, tiny_model, trials=10, study_name="grid")
    config = load_config(path)
    lines: list[str] = []
    result = tune(config, config_path=path, say=lines.append)

    # the grid has 4 points: each run once, however large tune.trials is
    assert len(result.trials) == 4 and result.counts["counted"] == 4
    failed = [t for t in result.trials if t["state"] == "FAIL"]
    assert len(failed) == 2 and all(t["params"]["lr"] == 1.0e6 for t in failed)
    assert all("diverged" in t["failure"] for t in failed)
    assert result.best_params["lr"] == 0.01 and result.best_value >= 0.9
    assert len(lines) == 4 and all("done, best" in line for line in lines)

    # scored once on test, registered with the search in its lineage and the preset's name in its tags
    registry = Registry.open(config)
    info = registry.get(result.version)
    assert info.lineage.search["study"] == "grid" and info.lineage.search["trial"] == result.best_trial
    assert info.lineage.search["space"] == GOOD_AND_DIVERGING
    assert info.tags["keepfit.preset"] == "grid" and info.tags["keepfit.kind"] == "tune"
    assert result.test["accuracy"] == info.metrics["accuracy"]
    assert "champion" in info.aliases

    # the chosen values are a preset of the config file now (the user's comment kept), and it applies
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# a tiny test project")
    preset = yaml.safe_load(text)["presets"]["grid"]
    assert preset == {f"train.{k}": v for k, v in result.best_params.items()}
    from keepfit.train.presets import preset_overrides

    tuned = load_config(path, preset_overrides("grid", load_config(path).presets))
    assert tuned.train.lr == 0.01 and tuned.train.epochs == result.best_params["epochs"]

    # only the best trial's model folder is kept; checkpoints of none
    study_dir = config.store_path / "tune" / "grid"
    models = sorted(p.parent.name for p in study_dir.glob("trial-*/model"))
    assert models == [f"trial-{result.best_trial:04d}"]
    assert not list(study_dir.glob("trial-*/checkpoints"))
    assert (result.report.parent / "tune.json").exists()

    # run again: nothing left to run, nothing registered twice
    again = tune(config, config_path=path, say=lines.append)
    assert again.counts == result.counts and again.version == result.version
    assert len(registry.list()) == 1


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # the test itself asks for the killed worker's trial
def test_the_trial_budget_is_the_studys_and_a_killed_workers_trial_runs_again(tmp_path, tiny_model):
    space = {"lr": {"low": 5e-3, "high": 3e-2, "log": True}}
    path = _project(tmp_path, tiny_model, trials=3, study_name="resume", space=space, sampler="random")
    config = load_config(path)
    study = optuna.create_study(study_name="resume", storage=open_storage(config), direction="maximize")
    # a trial left running by a worker of this machine that was killed: its process is gone
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    trial = study.ask({"lr": optuna.distributions.FloatDistribution(5e-3, 3e-2, log=True)})
    trial.set_user_attr(WORKER, f"{__import__('socket').gethostname()}:{dead.pid}")
    killed_lr = trial.params["lr"]

    lines: list[str] = []
    result = tune(config, config_path=path, worker=True, say=lines.append)
    assert lines[0] == "1 trial(s) of a killed worker queued again"
    states = {t["number"]: t["state"] for t in result.trials}
    assert states[0] == "FAIL" and FAILURE not in _study(config, "resume").trials[0].user_attrs
    counted = [t for t in result.trials if t["state"] in ("COMPLETE", "PRUNED")]
    assert len(counted) == 3  # the budget counts finished trials, not the killed one
    assert counted[0]["params"]["lr"] == killed_lr  # the killed trial's values ran first, again
    assert result.fit is None and result.version is None  # a worker only runs trials

    more = tune(config.model_copy(update={"tune": config.tune.model_copy(update={"trials": 4})}), say=lines.append,
                worker=True)
    assert more.counts["counted"] == 4  # one more, not four more


def test_the_time_budget_stops_a_trial_at_its_next_evaluation(tmp_path, tiny_model):
    space = {"lr": {"choices": [0.01]}}
    path = _project(tmp_path, tiny_model, trials=5, timeout="4s", space=space, sampler="random",
                    study_name="clock")
    config = load_config(path)
    config = config.model_copy(update={"train": config.train.model_copy(update={"epochs": 400.0})})
    started = time.time()
    result = tune(config, worker=True)
    elapsed = time.time() - started
    trial = _study(config, "clock").trials[0]
    assert trial.state == optuna.trial.TrialState.COMPLETE and trial.user_attrs[STOPPED] == "budget"
    assert "keepfit.baseline" not in trial.user_attrs  # a --worker never queues the baseline
    assert len(result.trials) == 1  # the budget was spent on the first trial
    assert len(trial.intermediate_values) < 100  # of 400 epochs, the few that fit in 4 s ran
    assert elapsed < 4 + 6  # the budget, one evaluation, the model's loading and the study's opening


def test_bad_studies_get_one_clear_error(tmp_path, tiny_model):
    path = _project(tmp_path, tiny_model, study_name="fixed")
    config = load_config(path)
    with pytest.raises(ConfigError, match="a grid needs the values"):  # an empty space is the default one, not a grid
        tune(config.model_copy(update={"tune": config.tune.model_copy(update={"space": {}})}))
    with pytest.raises(ConfigError, match="would never end"):
        tune(config.model_copy(update={"tune": config.tune.model_copy(update={"trials": None})}))
    with pytest.raises(ConfigError) as err:
        tune(config, storage="postgresql://keepfit:s3cret@127.0.0.1:1/studies")
    assert "s3cret" not in str(err.value) and "***" in str(err.value) and "reach" in str(err.value)

    optuna.create_study(study_name="fixed", storage=open_storage(config)).set_user_attr(
        "keepfit.signature", {"snapshot": "another", "metric": "accuracy", "space": {}, "folds": None})
    with pytest.raises(ConfigError) as err:
        tune(config)
    assert "searches something else" in str(err.value) and any("snapshot" in p for p in err.value.problems)


def test_cross_validation_scores_each_trial_on_k_folds_then_retrains_the_choice(tmp_path, tiny_model):
    path = _project(tmp_path, tiny_model, trials=1, folds=3, study_name="cv", space={"lr": {"choices": [0.01]}},
                    sampler="random")
    config = load_config(path)
    result = tune(config, config_path=path)
    trial = _study(config, "cv").trials[0]
    assert trial.user_attrs["keepfit.baseline"] is True and trial.params == {"lr": 0.01}  # the config's own values
    assert len(trial.user_attrs["keepfit.fold_scores"]) == 3
    assert trial.value == pytest.approx(sum(trial.user_attrs["keepfit.fold_scores"]) / 3)
    assert result.fit is not None and result.fit.run_dir.name == "chosen-trial-0000"
    assert study_counts(_study(config, "cv"))["COMPLETE"] == 1


def test_the_baseline_is_the_configs_own_values_inside_the_space(tmp_path, tiny_model):
    from keepfit.tune.study import _baseline

    space = {"lr": {"low": 1e-3, "high": 0.1, "log": True}, "epochs": {"choices": [2, 3]},
             "batch_size": {"low": 8, "high": 64, "step": 5}, "dropout": {"low": 0.0, "high": 0.3},
             "strategy": {"choices": ["full", "lora"]}}
    path = _project(tmp_path, tiny_model, space=space, sampler="tpe")
    config = load_config(path)  # lr 0.01, epochs 4, batch 16 (not on the 8 + 5k grid), dropout empty, full
    assert _baseline(config) == {"lr": 0.01, "strategy": "full"}
