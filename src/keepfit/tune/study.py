"""`keepfit tune`: a hyper-parameter study of ``tune.space`` on Optuna's own storage, one worker or many.

Each trial fine-tunes with one point of the space and reports every validation evaluation, so the pruner can
stop a hopeless trial early; a trial that fails (divergence, out of memory, a bad combination) is recorded as
failed with its reason and the study goes on. The study lives in an SQLAlchemy database (SQLite in the store,
or ``--storage postgresql://...`` shared by ``keepfit tune --worker`` processes on several machines); a trial
of a killed worker is found (same machine: its process is gone; elsewhere: its heartbeat stopped), marked failed
and run again, so a study resumes where it was killed. The budget (``tune.trials``, ``tune.timeout``) is the
study's, not one worker's.

Selection is honest: trials see the validation split only (or k folds of train + validation); the test split
is scored once, for the chosen configuration, when the study is finished. The chosen values are written back as
a named preset in keepfit.yaml and the model is registered with the study, trial and space in its lineage.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import socket
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from keepfit._duration import parse_duration
from keepfit.config import KeepfitConfig, ParamSpace
from keepfit.errors import ConfigError, DataError, MissingExtraError, ModelError, TrainingError
from keepfit.store import Store
from keepfit.train.loop import EvalHook, TrainResult, train_model
from keepfit.train.metrics import LOWER_IS_BETTER, best_metric_name
from keepfit.train.presets import PRESET_TAG
from keepfit.tune.space import is_int_setting, suggest, train_overrides
from keepfit.types import Snapshot, is_single_label

log = logging.getLogger(__name__)

__all__ = ["TuneResult", "tune", "open_storage", "storage_url", "study_counts", "masked_url", "FAILURE", "STOPPED"]

# trial user attributes keepfit writes (what the report and a resumed study read back)
FAILURE = "keepfit.failure"  # why a trial failed
SEED = "keepfit.seed"
WORKER = "keepfit.worker"  # host:pid of the process running it
RUN_DIR = "keepfit.run_dir"
STOPPED = "keepfit.stopped"  # "budget" when the wall-time budget ended it early (its best so far counts)
SIGNATURE = "keepfit.signature"  # study attribute: the snapshot, metric and space it searches

Progress = Callable[[str], None]


@dataclass(frozen=True)
class TuneResult:
    """What a study found: trial counts by state, the best trial, and the chosen configuration retrained or
    reused, scored once on test and registered (``fit``; None for a worker, or with ``register=False``)."""

    study: str
    storage: str  # the URL with any password masked
    metric: str
    direction: str
    counts: dict[str, int]
    best_trial: int | None
    best_value: float | None
    best_params: dict[str, Any]
    wall_seconds: float
    fit: Any = None  # keepfit.pipeline.FitResult of the chosen configuration (None when registered before)
    version: str | None = None  # the registered version of the chosen configuration
    test: dict[str, float] = field(default_factory=dict)  # its test metrics (scored once)
    preset: str | None = None  # the preset written to keepfit.yaml
    report: Path | None = None
    trials: list[dict[str, Any]] = field(default_factory=list)


# ----------------------------------------------------------------------------------------------- storage


def _optuna():
    try:
        import optuna
    except ImportError:
        raise MissingExtraError("keepfit tune needs Optuna: pip install 'keepfit[tune]'.") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def masked_url(url: str) -> str:
    """``url`` with its password replaced by ***, for logs and reports."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not a URL SQLAlchemy understands: nothing to mask
        return url


def _with_driver(url: str) -> str:
    """``postgresql://`` names psycopg 3 in SQLAlchemy 2.1; the tune extra installs psycopg2, so a URL without a
    driver gets the one that is installed."""
    import importlib.util

    if url.startswith(("postgresql://", "postgres://")) and importlib.util.find_spec("psycopg") is None \
            and importlib.util.find_spec("psycopg2") is not None:
        return "postgresql+psycopg2://" + url.split("://", 1)[1]
    return url


def storage_url(config: KeepfitConfig, url: str | None = None) -> str:
    """The study storage's URL: ``url``, else ``tune.storage``, else SQLite in the project store."""
    return url or config.tune.storage or f"sqlite:///{Store.at(config.store).studies_db}"


def open_storage(config: KeepfitConfig, url: str | None = None):
    """Optuna's RDB storage at ``url``, ``tune.storage`` or SQLite in the store, with heartbeats so a killed
    worker's trial is failed and retried (once its heartbeat is two ``tune.heartbeat_seconds`` old)."""
    optuna = _optuna()
    from optuna.storages import RDBStorage

    url = _with_driver(storage_url(config, url))
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    beat = max(1, math.ceil(config.tune.heartbeat_seconds))
    for attempt in range(3):  # workers starting together on a new database race to create its tables
        try:
            return _rdb_storage(optuna, RDBStorage, url, engine, beat)
        except Exception as err:  # noqa: BLE001 - the loser of the race sees a duplicate key; try again
            if attempt == 2 or not any(w in str(err) for w in ("UniqueViolation", "already exists")):
                raise
            time.sleep(1.0 + attempt)
    raise AssertionError("unreachable")


def _rdb_storage(optuna, RDBStorage, url: str, engine: dict, beat: int):
    try:
        with warnings.catch_warnings():  # heartbeats are marked experimental since Optuna 2.9
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return RDBStorage(
                url, engine_kwargs=engine, heartbeat_interval=beat, grace_period=2 * beat,
                heartbeat_stale_trial_callback=_retry(),
            )
    except ImportError as err:
        raise MissingExtraError(f"The storage {masked_url(url)} needs a database driver that is missing ({err}); "
                                "for PostgreSQL: pip install 'keepfit[tune]' (psycopg2-binary).") from None
    except Exception as err:  # noqa: BLE001 - SQLAlchemy's errors are many; the user needs the URL and the cause
        if isinstance(err, optuna.exceptions.OptunaError) or type(err).__module__.startswith(("sqlalchemy",
                                                                                              "psycopg")):
            raise ConfigError(
                f"Cannot open the study storage {masked_url(url)}: {str(err).splitlines()[0]}. Expected an "
                "SQLAlchemy URL such as sqlite:///path/studies.sqlite or postgresql://user@host:5432/db that "
                "this machine can reach; check --storage or tune.storage."
            ) from None
        raise


def _retry():
    """Queue a killed worker's trial again with the same values (at most 3 times)."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3)


def _sampler(config: KeepfitConfig):
    optuna = _optuna()
    tc = config.tune
    if tc.sampler == "random":
        return optuna.samplers.RandomSampler(seed=tc.seed)
    if tc.sampler == "grid":
        grid = {name: _grid_values(name, spec) for name, spec in tc.space.items()}
        return optuna.samplers.GridSampler(grid, seed=tc.seed)
    return optuna.samplers.TPESampler(seed=tc.seed, n_startup_trials=max(1, tc.startup_trials), constant_liar=True)


def _grid_values(name: str, spec: ParamSpace) -> list[Any]:
    if spec.choices is not None:
        return list(spec.choices)
    assert spec.low is not None and spec.high is not None and spec.step is not None  # the config checked it
    values = np.arange(spec.low, spec.high + spec.step / 2, spec.step)
    return [int(round(v)) for v in values] if is_int_setting(name) else [float(v) for v in values]


def _trial_budget(config: KeepfitConfig) -> int | None:
    """tune.trials, and for a grid no more than its points (each is run once)."""
    tc = config.tune
    if tc.sampler != "grid":
        return tc.trials
    points = math.prod(len(_grid_values(name, spec)) for name, spec in tc.space.items())
    return points if tc.trials is None else min(tc.trials, points)


def _pruner(config: KeepfitConfig):
    optuna = _optuna()
    tc = config.tune
    if tc.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=tc.startup_trials, n_warmup_steps=tc.warmup_evals)
    if tc.pruner == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    if tc.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource="auto", reduction_factor=3)
    return optuna.pruners.NopPruner()


def _signature(config: KeepfitConfig, snapshot: Snapshot, metric: str) -> dict[str, Any]:
    return {
        "snapshot": snapshot.id,
        "metric": metric,
        "space": {k: v.model_dump(exclude_defaults=True) for k, v in config.tune.space.items()},
        "folds": config.tune.folds,
    }


def _open_study(config: KeepfitConfig, storage, name: str, snapshot: Snapshot, metric: str):
    """Create the study or join it; a study of that name that searches something else is refused."""
    optuna = _optuna()
    direction = "minimize" if metric in LOWER_IS_BETTER else "maximize"
    study = optuna.create_study(
        storage=storage, study_name=name, sampler=_sampler(config), pruner=_pruner(config), direction=direction,
        load_if_exists=True,
    )
    wanted = _signature(config, snapshot, metric)
    found = study.user_attrs.get(SIGNATURE)
    if found is None:
        study.set_user_attr(SIGNATURE, wanted)
    elif found != wanted:
        differs = [f"{k}: the study has {json.dumps(found.get(k))}, this run {json.dumps(wanted[k])}"
                   for k in wanted if found.get(k) != wanted[k]]
        raise ConfigError(f"Study {name!r} searches something else; pick another name with --study, or run with "
                          "the settings it was started with:", differs)
    if study.direction.name.lower() != direction:
        raise ConfigError(f"Study {name!r} was created to {study.direction.name.lower()}; {metric} needs "
                          f"{direction}. Pick another name with --study.")
    return study


# ------------------------------------------------------------------------------------------------ counts


def _counted(trial) -> bool:
    """A trial that used the budget: finished, pruned, or failed with a reason (a killed worker's trial, failed
    by keepfit or the heartbeat check, is run again instead and does not count)."""
    name = trial.state.name
    return name in ("COMPLETE", "PRUNED") or (name == "FAIL" and FAILURE in trial.user_attrs)


def study_counts(study) -> dict[str, int]:
    """Trials by state (COMPLETE, PRUNED, FAIL, RUNNING, WAITING) and ``counted``: those the budget counts."""
    counts = {"COMPLETE": 0, "PRUNED": 0, "FAIL": 0, "RUNNING": 0, "WAITING": 0, "counted": 0}
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
        counts["counted"] += _counted(trial)
    return counts


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fail_dead_local_trials(study) -> int:
    """Trials left running by a killed process of this machine: failed and queued again at once (a worker on
    another machine is judged by its heartbeat instead)."""
    from optuna.trial import TrialState

    me, retried = socket.gethostname(), 0
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        host, _, pid = str(trial.user_attrs.get(WORKER, "")).rpartition(":")
        if host != me or not pid.isdigit() or int(pid) == os.getpid() or _alive(int(pid)):
            continue
        if study._storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL):
            _retry()(study, study._storage.get_trial(trial._trial_id))
            retried += 1
            log.info("trial %d of a killed worker (pid %s) failed and queued again", trial.number, pid)
    return retried


# --------------------------------------------------------------------------------------------- objective


class _TrialFailed(Exception):
    """A trial's own failure, recorded with its reason; the study goes on."""


_TRIAL_ERRORS = (TrainingError, ModelError, DataError, ConfigError, ValueError, RuntimeError, MemoryError,
                 FloatingPointError)


def _reason(err: BaseException) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    if isinstance(err, MemoryError) or "out of memory" in text.lower():
        return f"out of memory: {text[:300]}"
    return f"{type(err).__name__}: {text[:300]}"


def _folds(snapshot: Snapshot, config: KeepfitConfig) -> list[tuple[pd.DataFrame, pd.DataFrame]]:
    """k (train, validation) pairs over train + validation: grouped when the data names groups, stratified for
    single-label data whose every label has k rows, else plain shuffled folds."""
    from sklearn.model_selection import GroupKFold, KFold, StratifiedKFold

    k = int(config.tune.folds or 0)
    pool = pd.concat([snapshot.train, snapshot.validation], ignore_index=True)
    if len(pool) < 2 * k:
        raise DataError(f"tune.folds {k} needs at least {2 * k} rows of train + validation, found {len(pool)}; "
                        "lower tune.folds or remove it.")
    group = config.data.group_column
    if group and group in pool.columns:
        splits = GroupKFold(n_splits=k).split(pool, groups=pool[group].astype(str))
    elif is_single_label(snapshot.task) and pool[snapshot.answer_column].value_counts().min() >= k:
        splits = StratifiedKFold(n_splits=k, shuffle=True, random_state=config.split.seed).split(
            pool, pool[snapshot.answer_column].astype(str))
    else:
        splits = KFold(n_splits=k, shuffle=True, random_state=config.split.seed).split(pool)
    return [(pool.iloc[a].reset_index(drop=True), pool.iloc[b].reset_index(drop=True)) for a, b in splits]


@dataclass
class _Objective:
    config: KeepfitConfig
    snapshot: Snapshot
    study_dir: Path
    metric: str
    deadline: float | None

    def __call__(self, trial) -> float:
        trial.set_user_attr(WORKER, f"{socket.gethostname()}:{os.getpid()}")
        trial.set_user_attr(SEED, self.config.train.seed)
        run_dir = self.study_dir / f"trial-{trial.number:04d}"
        trial.set_user_attr(RUN_DIR, str(run_dir))
        shutil.rmtree(run_dir, ignore_errors=True)  # a number is used once; this is a leftover of a dead store
        try:
            values = suggest(trial, self.config.tune.space)
            config = train_overrides(self.config, values)
            if self.config.tune.folds:
                return self._cross_validate(trial, config, run_dir)
            return self._train(trial, config, self.snapshot, run_dir, report=True)
        except _TRIAL_ERRORS as err:
            reason = _reason(err)
            trial.set_user_attr(FAILURE, reason)
            log.warning("trial %d failed: %s", trial.number, reason)
            _tidy(run_dir, keep_model=False)
            raise _TrialFailed(reason) from err
        except BaseException:  # pruned, interrupted: nothing of it is kept but its log
            _tidy(run_dir, keep_model=False)
            raise

    def _hook(self, trial, report: bool) -> EvalHook:
        optuna = _optuna()
        step = [0]

        def on_eval(row: dict[str, Any]) -> str | None:
            loss = row.get("train_loss")
            if isinstance(loss, float) and not math.isfinite(loss):
                raise TrainingError(f"diverged: the training loss is {loss} at epoch {row.get('epoch')}; lower "
                                    "the learning rate or keep train.grad_clip")
            value = row.get(f"validation_{self.metric}")
            if value is None or not math.isfinite(float(value)):
                raise TrainingError(f"no validation {self.metric} at epoch {row.get('epoch')} (got {value})")
            if report:
                step[0] += 1
                trial.report(float(value), step=step[0])
                last = float(row.get("epoch", 0)) >= self.config.train.epochs - 1e-6  # nothing left to save
                if not last and trial.should_prune():
                    raise optuna.TrialPruned(f"pruned after evaluation {step[0]} (validation {self.metric} "
                                             f"{value:.4f})")
            if self.deadline is not None and time.time() >= self.deadline:
                trial.set_user_attr(STOPPED, "budget")
                return "stop"
            return None

        return on_eval

    def _train(self, trial, config: KeepfitConfig, snapshot: Snapshot, run_dir: Path, *, report: bool) -> float:
        trained = train_model(snapshot, config, run_dir, progress=False, on_eval=self._hook(trial, report))
        if trained.best_metric is None or not math.isfinite(trained.best_metric):
            raise TrainingError(f"training ended without a validation {self.metric}")
        trial.set_user_attr("keepfit.best_epoch", trained.best_epoch)
        trial.set_user_attr("keepfit.samples_per_second", round(trained.samples_per_second, 2))
        _tidy(run_dir, keep_model=report)
        return float(trained.best_metric)

    def _cross_validate(self, trial, config: KeepfitConfig, run_dir: Path) -> float:
        """Mean best validation metric over the folds; reported after each fold so the pruner can stop early."""
        optuna = _optuna()
        scores = []
        for k, (train, validation) in enumerate(_folds(self.snapshot, config), start=1):
            fold = replace(self.snapshot, train=train, validation=validation)
            scores.append(self._train(trial, config, fold, run_dir / f"fold-{k}", report=False))
            trial.set_user_attr("keepfit.fold_scores", scores)
            trial.report(float(np.mean(scores)), step=k)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned after fold {k} (mean validation {self.metric} "
                                         f"{np.mean(scores):.4f})")
            if self.deadline is not None and time.time() >= self.deadline:
                trial.set_user_attr(STOPPED, "budget")
                break
        return float(np.mean(scores))


def _tidy(run_dir: Path, *, keep_model: bool) -> None:
    """A trial keeps its log, config and metrics; checkpoints (optimiser states) go, and the model unless asked."""
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    if not keep_model:
        shutil.rmtree(run_dir / "model", ignore_errors=True)


# ------------------------------------------------------------------------------------------------- study


def _best(study):
    try:
        return study.best_trial
    except ValueError:  # no trial completed yet
        return None


@dataclass
class _AfterTrial:
    """Per finished trial: keep only the best model folder, say where the study stands, stop at the budget."""

    total: int | None
    deadline: float | None
    started: float
    keep_models: bool
    say: Progress
    metric: str
    durations: list[float] = field(default_factory=list)

    def __call__(self, study, trial) -> None:
        from optuna.trial import TrialState

        best = _best(study)
        if not self.keep_models and trial.state == TrialState.COMPLETE and best is not None:
            for other in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
                if other.number != best.number and RUN_DIR in other.user_attrs:
                    shutil.rmtree(Path(other.user_attrs[RUN_DIR]) / "model", ignore_errors=True)
        if trial.duration is not None:
            self.durations.append(trial.duration.total_seconds())
        counts = study_counts(study)
        self.say(self._line(trial, best, counts))
        if self.total is not None and counts["counted"] + counts["RUNNING"] >= self.total:
            study.stop()

    def _line(self, trial, best, counts: dict[str, int]) -> str:
        value = f" {self.metric} {trial.value:.4f}" if trial.value is not None else ""
        why = trial.user_attrs.get(FAILURE, "")
        state = trial.state.name.lower() + (f" ({why})" if why else "") + value
        if trial.user_attrs.get(STOPPED):
            state += " (stopped by the time budget)"
        budget = f"{counts['counted']}/{self.total}" if self.total else str(counts["counted"])
        best_text = f"best {best.value:.4f} (trial {best.number})" if best is not None else "no best yet"
        return (f"trial {trial.number}: {state} | {budget} done, {best_text}, {counts['PRUNED']} pruned, "
                f"{counts['FAIL']} failed, {_clock(time.time() - self.started)} elapsed{self._left(counts)}")

    def _left(self, counts: dict[str, int]) -> str:
        estimates = []
        if self.deadline is not None:
            estimates.append(max(0.0, self.deadline - time.time()))
        if self.total is not None and self.durations:
            estimates.append(max(0, self.total - counts["counted"]) * float(np.mean(self.durations)))
        return f", ~{_clock(min(estimates))} left" if estimates else ""


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


def tune(
    config: KeepfitConfig,
    *,
    config_path: Path | None = None,
    snapshot: str | None = None,
    storage: str | None = None,
    study_name: str | None = None,
    worker: bool = False,
    register: bool = True,
    say: Progress | None = None,
) -> TuneResult:
    """Run (or join, or resume) the study of ``config.tune`` on a snapshot; unless ``worker``, then retrain or
    reuse the best trial's model, score it once on test, register it and write its values back to
    ``config_path`` as a preset. ``say`` receives one line per finished trial."""
    from keepfit.pipeline import resolve_snapshot

    _optuna()  # the extra's message before any work
    tc = config.tune
    say = say or log.info
    if not tc.space:
        config, tc = _with_default_space(config)
        say(f"tune.space is empty: searching keepfit's default space ({', '.join(tc.space)})")
    if tc.trials is None and not tc.timeout:
        raise ConfigError("tune.trials and tune.timeout are both empty: the study would never end. Set "
                          "tune.trials (e.g. 20), tune.timeout (e.g. 2h), or both (whichever ends first).")
    budget = parse_duration(tc.timeout) if tc.timeout else None
    started = time.time()
    snap = resolve_snapshot(config, snapshot)
    from keepfit.pipeline import _require_trainable

    _require_trainable(snap)
    metric = best_metric_name(snap.task, config.train.metric_for_best)
    name = study_name or tc.study_name or f"tune-{snap.id[:12]}"
    store = Store.at(config.store)
    url = storage_url(config, storage)
    opened = open_storage(config, url)
    study = _open_study(config, opened, name, snap, metric)
    retried = _fail_dead_local_trials(study)
    if retried:
        say(f"{retried} trial(s) of a killed worker queued again")
    # the baseline goes first in a new study; not from --worker processes (several starting at once would each
    # queue it) and not for a grid (it runs every point anyway)
    if tc.baseline and not worker and tc.sampler != "grid" and not study.get_trials(deepcopy=False):
        baseline = _baseline(config)
        study.enqueue_trial(baseline, user_attrs={"keepfit.baseline": True})
        say(f"trial 0 runs the config's own values first (the baseline): {baseline}")
    study_dir = store.tune / name
    study_dir.mkdir(parents=True, exist_ok=True)
    deadline = started + budget if budget else None
    total = _trial_budget(config)
    after = _AfterTrial(total, deadline, started, tc.keep_models, say, metric)
    counts = study_counts(study)
    if total is None or counts["counted"] + counts["RUNNING"] < total:
        study.optimize(
            _Objective(config, snap, study_dir, metric, deadline), n_trials=None,
            timeout=budget, callbacks=[after], catch=(_TrialFailed,), gc_after_trial=True,
        )
    counts = study_counts(study)
    best = _best(study)
    result = TuneResult(
        study=name, storage=masked_url(url), metric=metric, direction=study.direction.name.lower(),
        counts=counts, best_trial=best.number if best else None, best_value=best.value if best else None,
        best_params=dict(best.params) if best else {}, wall_seconds=time.time() - started,
        trials=[_trial_row(t) for t in study.get_trials(deepcopy=False)],
    )
    if worker:
        return result
    if best is None:
        raise TrainingError(f"Study {name!r} has no completed trial ({counts}); every trial failed or was pruned. "
                            "See the reasons with `keepfit tune` output or the trials' train.log under "
                            f"{study_dir}, and widen or fix tune.space.")
    earlier = _registered(config, name, best.number) if register else None
    if earlier is not None:
        say(f"trial {best.number} of study {name} is registered already as version {earlier.version}; "
            "nothing retrained or registered again")
        fit, version, test = None, earlier.version, dict(earlier.metrics)
        preset = _write_preset(config_path, name, best.params)
    else:
        fit, preset = _finish(config, snap, study, best, study_dir, config_path, register, say)
        version, test = fit.version, {k: v for k, v in fit.metrics.items() if isinstance(v, (int, float))}
    result = replace(result, fit=fit, version=version, test=test, preset=preset)
    report = _report(study, study_dir, result)
    return replace(result, report=report, wall_seconds=time.time() - started)


def _registered(config: KeepfitConfig, study: str, trial: int):
    """The registered version made from ``trial`` of ``study``, if any (a finished study run again)."""
    from keepfit.registry import Registry

    for info in Registry.open(config).list():
        if info.tags.get("keepfit.tune.study") == study and info.tags.get("keepfit.tune.trial") == str(trial):
            return info
    return None


def _write_preset(config_path: Path | None, study: str, params: dict[str, Any]) -> str | None:
    """The chosen values as preset ``study`` (``tuned-<study>`` where that is a built-in name) in the config
    file; None when the config came from defaults (no file to write to)."""
    if config_path is None:
        return None
    from keepfit.train.presets import write_preset

    name = _preset_name(study)
    write_preset(Path(config_path), name, {f"train.{k}": v for k, v in params.items()})
    return name


def _with_default_space(config: KeepfitConfig) -> tuple[KeepfitConfig, Any]:
    from keepfit.config import TuneConfig
    from keepfit.tune.space import DEFAULT_SPACE

    if config.tune.sampler == "grid":
        raise ConfigError("tune.sampler is grid but tune.space is empty: a grid needs the values to try, e.g.\n"
                          "tune:\n  space:\n    lr: {choices: [5.0e-5, 1.0e-4, 2.0e-4]}\n"
                          "    epochs: {choices: [2, 3]}")
    tc = TuneConfig.model_validate({**config.tune.model_dump(), "space": DEFAULT_SPACE})
    return config.model_copy(update={"tune": tc}), tc


def _baseline(config: KeepfitConfig) -> dict[str, Any]:
    """The config's own value of each searched setting that lies inside the space (the others are sampled)."""
    values = {}
    for name, spec in config.tune.space.items():
        value = getattr(config.train, name)
        if spec.choices is not None:
            inside = value in spec.choices
        else:
            inside = isinstance(value, (int, float)) and not isinstance(value, bool) \
                and spec.low <= value <= spec.high  # type: ignore[operator]
            if inside and spec.step is not None:
                inside = abs((value - spec.low) / spec.step - round((value - spec.low) / spec.step)) < 1e-9
        if inside:
            values[name] = value
    return values


def _trial_row(trial) -> dict[str, Any]:
    return {
        "number": trial.number,
        "state": trial.state.name,
        "value": trial.value,
        "params": dict(trial.params),
        "seconds": trial.duration.total_seconds() if trial.duration else None,
        "failure": trial.user_attrs.get(FAILURE),
        "stopped": trial.user_attrs.get(STOPPED),
    }


def _preset_name(study: str) -> str:
    from keepfit.train.presets import PRESETS

    return f"tuned-{study}" if study in (*PRESETS, "none") else study


def _trained_from_run(run_dir: Path, trial) -> TrainResult:
    """The TrainResult of a finished trial, read back from its run folder (its model was kept)."""
    from keepfit.train.model import read_meta

    model_dir = run_dir / "model"
    meta = read_meta(model_dir)
    metrics = run_dir / "metrics.jsonl"
    history = [json.loads(line) for line in metrics.read_text(encoding="utf-8").splitlines() if line.strip()]
    return TrainResult(
        run_dir=run_dir, model_dir=model_dir, history=history, best_epoch=meta.get("best_epoch"),
        best_metric=meta.get("best_metric"), samples_per_second=float(trial.user_attrs.get(
            "keepfit.samples_per_second", 0.0)), padding_overhead=float(meta.get("padding_overhead", 1.0)),
        wall_seconds=trial.duration.total_seconds() if trial.duration else 0.0, labels=list(meta.get("labels", [])),
        task=str(meta.get("task", "")), metric_name=str(meta.get("metric", "accuracy")),
    )


def _finish(config: KeepfitConfig, snap: Snapshot, study, best, study_dir: Path, config_path: Path | None,
            register: bool, say: Progress):
    """The best trial's model (kept, else retrained with its values and seed) scored once on test and
    registered; its values written back as a preset."""
    from keepfit.lock import project_lock
    from keepfit.pipeline import evaluate_and_register

    chosen = train_overrides(config, best.params)
    run_dir = Path(best.user_attrs.get(RUN_DIR, study_dir / f"trial-{best.number:04d}"))
    if (run_dir / "model" / "config.json").exists() and not config.tune.folds:
        trained = _trained_from_run(run_dir, best)
    else:
        run_dir = study_dir / f"chosen-trial-{best.number:04d}"
        shutil.rmtree(run_dir, ignore_errors=True)
        say(f"retraining trial {best.number}'s configuration on the snapshot's own split"
            + (" (the trials were scored by cross-validation)" if config.tune.folds else ""))
        trained = train_model(snap, chosen, run_dir, progress=False)
    preset = _preset_name(study.study_name)
    space = {k: v.model_dump(exclude_defaults=True) for k, v in config.tune.space.items()}
    search = {"study": study.study_name, "trial": best.number, "space": space, "params": dict(best.params),
              "validation": best.value}
    store = Store.at(config.store)
    with project_lock(store, "keepfit tune", timeout=config.update.lock_timeout):
        fit = evaluate_and_register(
            chosen, snap, trained, run_dir, register=register, search=search,
            tags={"keepfit.kind": "tune", "keepfit.tune.study": study.study_name,
                  "keepfit.tune.trial": str(best.number), PRESET_TAG: preset},
        )
    return fit, _write_preset(config_path, study.study_name, best.params)


def _report(study, study_dir: Path, result: TuneResult) -> Path:
    from keepfit.tune.report import write_tune_report

    summary = {
        "study": result.study,
        "storage": result.storage,
        "metric": result.metric,
        "direction": result.direction,
        "trials": result.counts,
        "best trial": result.best_trial,
        "best validation": result.best_value,
        "best params": result.best_params,
        "space": study.user_attrs.get(SIGNATURE, {}).get("space"),
        "wall seconds": round(time.time() - study.trials[0].datetime_start.timestamp(), 1)
        if study.trials and study.trials[0].datetime_start else None,
        "test": result.test or None,
        "registered version": result.version,
        "preset": result.preset,
        "selection_note": (
            "Trials were chosen on the validation split only"
            + (" (k-fold cross-validation on train + validation)" if study.user_attrs.get(SIGNATURE, {}).get("folds")
               else "")
            + f"; the test split was scored once, for the chosen configuration (trial {result.best_trial})."
        ),
    }
    return write_tune_report(study, study_dir / "report", title=f"keepfit tune: {result.study}", summary=summary)
