"""`keepfit auto --budget 20m`: a portfolio of recipes raced inside a wall-time budget, for someone who does
not want to choose.

1. A head-only model on the frozen encoder's cached features runs first: it is cheap, always finishes, and its
   feature pass measures how fast the encoder runs on this machine and these texts.
2. From that speed, the data's size and the budget left, the fine-tuning racers (LP-FT full fine-tuning at two
   learning rates, LoRA) get one schedule of E epochs each, and race as successive halving: every racer trains
   to the first rung (a fraction of E), the better half goes on to the next rung, ..., one finishes E. A paused
   racer continues from its checkpoint, so nothing is trained twice. With too little time for a racer, fewer
   race; with none, the head-only model wins.
3. The best validation score wins; it is scored once on test and registered with the leaderboard (each
   candidate's validation score, time, and why it stopped). The race stops within one evaluation of the budget,
   less the time the winner's scoring needs.

The race is also saved as an Optuna study (one trial per candidate), so the tune report and optuna-dashboard
show it like any study.
"""

from __future__ import annotations

import logging
import math
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from keepfit._duration import parse_duration
from keepfit.config import KeepfitConfig
from keepfit.errors import ConfigError, TrainingError
from keepfit.store import Store
from keepfit.train.loop import TrainResult, train_model
from keepfit.train.metrics import LOWER_IS_BETTER, best_metric_name
from keepfit.train.presets import PRESET_TAG
from keepfit.tune.space import train_overrides
from keepfit.tune.study import _TRIAL_ERRORS, Progress, _reason, masked_url, open_storage, storage_url
from keepfit.types import Snapshot

log = logging.getLogger(__name__)

__all__ = ["AutoResult", "Candidate", "DataProfile", "auto", "portfolio", "race_plan"]

MAX_EPOCHS = 8  # the longest schedule a racer gets (the best recipe's on banking77)
MIN_EPOCHS = 0.5  # a racer needs at least this much training to be worth its setup


@dataclass(frozen=True)
class DataProfile:
    """What the portfolio is chosen from."""

    train_rows: int
    validation_rows: int
    test_rows: int
    labels: int
    median_chars: float

    @classmethod
    def of(cls, snapshot: Snapshot) -> DataProfile:
        chars = snapshot.train["text"].astype(str).str.len()
        return cls(len(snapshot.train), len(snapshot.validation), len(snapshot.test), max(1, len(snapshot.labels)),
                   float(chars.median()) if len(chars) else 0.0)

    @property
    def rows_per_label(self) -> float:
        return self.train_rows / self.labels


@dataclass(frozen=True)
class Candidate:
    """One recipe of the portfolio: ``settings`` are train.* values over the project's config."""

    name: str
    settings: dict[str, Any]
    why: str


def portfolio(profile: DataProfile) -> tuple[Candidate, list[Candidate]]:
    """The head-only baseline and the fine-tuning racers for this data, cheapest first."""
    batch = 16 if profile.median_chars > 400 else 32  # long texts: smaller batches keep memory in bounds
    small = profile.rows_per_label < 30
    head = Candidate("head", {"strategy": "head", "epochs": 30 if small else 10, "head_lr": 1e-2,
                              "batch_size": batch}, "frozen encoder, cached features: seconds, and a floor")
    lpft = {"strategy": "full", "head_init": "probe", "freeze_embeddings": True, "batch_size": batch,
            "warmup_ratio": 0.06, "scheduler": "linear", "label_smoothing": 0.1, "early_stopping_patience": None}
    racers = [
        Candidate("full-lr1.5e-4", {**lpft, "lr": 1.5e-4, "head_lr": 1e-3},
                  "LP-FT full fine-tuning at the best recipe's learning rate"),
        Candidate("lora-r16", {"strategy": "lora", "head_init": "probe", "lora_r": 16, "lora_alpha": 32, "lr": 1e-3,
                               "head_lr": 2e-3, "batch_size": batch, "label_smoothing": 0.1,
                               "early_stopping_patience": None},
                  "LoRA adapters: fewer weights move, fewer earlier answers change"),
        Candidate("full-lr5e-5", {**lpft, "lr": 5e-5, "head_lr": 2e-3},
                  "LP-FT full fine-tuning at a gentle learning rate" + (" (small data)" if small else "")),
    ]
    return head, racers


def _rung_levels(racers: int) -> tuple[list[float], list[int]]:
    """Successive halving: the share of E each rung reaches, and how many racers train to it."""
    rungs = max(0, math.ceil(math.log2(racers))) if racers > 1 else 0
    levels = [2.0 ** (i - rungs) for i in range(rungs + 1)]
    survivors = [math.ceil(racers / 2**i) for i in range(rungs + 1)]
    return levels, survivors


def _epoch_cost(racers: int) -> float:
    """Epochs of training a race of ``racers`` costs per epoch of the final schedule."""
    levels, survivors = _rung_levels(racers)
    previous, cost = 0.0, 0.0
    for level, n in zip(levels, survivors, strict=True):
        cost += n * (level - previous)
        previous = level
    return cost


@dataclass(frozen=True)
class RacePlan:
    racers: int  # how many race
    epochs: float  # each racer's schedule (E)
    levels: list[float]  # rung epochs
    survivors: list[int]
    evals_per_epoch: int
    epoch_seconds: float  # the estimates it was planned with
    setup_seconds: float = 0.0

    @property
    def eval_seconds(self) -> float:
        """Estimated time from one evaluation to the next."""
        return self.epoch_seconds / self.evals_per_epoch


def race_plan(seconds: float, epoch_seconds: float, setup_seconds: float, candidates: int,
              max_epochs: float = MAX_EPOCHS) -> RacePlan | None:
    """The most racers (up to ``candidates``) whose race fits ``seconds`` with at least MIN_EPOCHS each, and
    the longest schedule (E, at most ``max_epochs``) that then fits; None when not even one racer fits."""
    for k in range(candidates, 0, -1):
        left = seconds - k * setup_seconds
        epochs = min(max_epochs, left / (_epoch_cost(k) * epoch_seconds)) if left > 0 else 0.0
        if epochs >= MIN_EPOCHS:
            epochs = math.floor(epochs * 4) / 4  # quarter epochs: rung points fall on evaluations
            levels, survivors = _rung_levels(k)
            # evaluations at least twice as often as the first rung comes, and each rung moved to the nearest one
            evals = min(8, max(1, math.ceil(2 / (levels[0] * epochs) - 1e-9)))
            rung_epochs = [min(epochs, max(1, round(level * epochs * evals)) / evals) for level in levels]
            rung_epochs[-1] = epochs
            return RacePlan(k, epochs, rung_epochs, survivors, evals, epoch_seconds, setup_seconds)
    return None


@dataclass
class _Entry:
    """A candidate's place on the leaderboard, as the race goes."""

    candidate: Candidate
    run_dir: Path
    config: KeepfitConfig | None = None
    validation: float | None = None
    epochs: float = 0.0
    seconds: float = 0.0
    stopped: str = "not run"
    history: list[dict[str, Any]] = field(default_factory=list)
    trained: TrainResult | None = None  # set once a model was exported

    def row(self, metric: str, winner: bool) -> dict[str, Any]:
        return {
            "candidate": self.candidate.name,
            "strategy": self.candidate.settings.get("strategy"),
            f"validation {metric}": self.validation,
            "epochs": round(self.epochs, 2),
            "seconds": round(self.seconds, 1),
            "stopped": self.stopped,
            "winner": "yes" if winner else "",
            "why": self.candidate.why,
        }


@dataclass(frozen=True)
class AutoResult:
    """The race: the leaderboard (best first), the winner, its test metrics (scored once) and version."""

    budget_seconds: float
    race_seconds: float  # from the start to the winner chosen (the budget bounds this)
    wall_seconds: float  # including the winner's test scoring and registration
    metric: str
    leaderboard: list[dict[str, Any]]
    winner: str
    validation: float | None
    plan: RacePlan | None
    study: str
    version: str | None = None
    test: dict[str, float] = field(default_factory=dict)
    preset: str | None = None
    report: Path | None = None


class _Race:
    """Runs the candidates against one deadline."""

    def __init__(self, config: KeepfitConfig, snap: Snapshot, folder: Path, metric: str, deadline: float,
                 say: Progress):
        self.config, self.snap, self.folder, self.metric = config, snap, folder, metric
        self.deadline, self.say = deadline, say
        self.lower = metric in LOWER_IS_BETTER

    def better(self, a: float | None, b: float | None) -> bool:
        if a is None:
            return False
        return b is None or (a < b if self.lower else a > b)

    def train(self, entry: _Entry, *, until_epoch: float | None, resume: bool, slack: float = 1e-6) -> None:
        """Train ``entry`` up to ``until_epoch`` (paused at the evaluation within ``slack`` epochs of it) or to the
        end of its schedule, stopped at the deadline either way; failures are recorded on the entry."""
        assert entry.config is not None
        started = time.time()

        def on_eval(row: dict[str, Any]) -> str | None:
            entry.history.append(row)
            value = row.get(f"validation_{self.metric}")
            if value is not None and math.isfinite(float(value)) and self.better(float(value), entry.validation):
                entry.validation = float(value)
            entry.epochs = float(row.get("epoch", entry.epochs))
            if time.time() >= self.deadline:
                return "stop"
            if until_epoch is not None and entry.epochs >= until_epoch - slack:
                return "pause"
            return None

        try:
            trained = train_model(self.snap, entry.config, entry.run_dir, resume=resume, progress=False,
                                  on_eval=on_eval)
        except _TRIAL_ERRORS as err:
            entry.stopped = f"failed: {_reason(err)}"
            log.warning("auto: %s failed: %s", entry.candidate.name, entry.stopped)
            return
        finally:
            entry.seconds += time.time() - started
        if trained.stopped_by == "pause":
            entry.stopped = "paused"
            return
        entry.trained = trained
        entry.stopped = "budget" if trained.stopped_by == "stop" else "finished"
        if trained.best_metric is not None:
            entry.validation = float(trained.best_metric)

    def report(self, entry: _Entry) -> None:
        value = f"{entry.validation:.4f}" if entry.validation is not None else "n/a"
        self.say(f"{entry.candidate.name}: {entry.stopped} after {entry.epochs:g} epochs, validation "
                 f"{self.metric} {value}, {entry.seconds:.0f} s; {max(0, self.deadline - time.time()):.0f} s left")


def _forward_seconds_per_row(trained: TrainResult | None, profile: DataProfile, fallback: float) -> float:
    """The encoder's forward time per row, from the head-only model's feature pass (train + validation)."""
    from keepfit.train.model import read_meta

    if trained is None:
        return fallback
    seconds = read_meta(trained.model_dir).get("feature_seconds")
    rows = profile.train_rows + profile.validation_rows
    return float(seconds) / rows if seconds and rows else fallback


def auto(
    config: KeepfitConfig,
    *,
    budget: str,
    config_path: Path | None = None,
    snapshot: str | None = None,
    register: bool = True,
    say: Progress | None = None,
    max_epochs: float = MAX_EPOCHS,
) -> AutoResult:
    """Race the portfolio on a snapshot inside ``budget`` (``20m``, ``1h``); register the winner. ``max_epochs``
    caps a racer's schedule (a small data set needs no more than the best recipe's 8)."""
    from keepfit.pipeline import _require_trainable, resolve_snapshot

    say = say or log.info
    seconds = check_budget(budget)
    if config.task == "text-generation":
        raise ConfigError(
            "keepfit auto races classification recipes (head-only, full, LoRA over a classifier head); it does "
            "not apply to task text-generation yet. Use `keepfit fit` (LoRA by default) or `keepfit tune` with a "
            "tune.space over train.lr, train.epochs and train.lora_r."
        )
    if config.task == "image-classification":
        raise ConfigError(
            "keepfit auto races text classification recipes; it does not apply to task image-classification yet. "
            "Use `keepfit fit` (EfficientNet-Lite0, full fine-tuning by default; train.strategy head is the fast "
            "one) or `keepfit tune` with a tune.space over train.lr and train.epochs."
        )
    started = time.time()
    snap = resolve_snapshot(config, snapshot)
    _require_trainable(snap)
    profile = DataProfile.of(snap)
    metric = best_metric_name(snap.task, config.train.metric_for_best)
    name = f"auto-{snap.id[:12]}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime(started))}"
    folder = Store.at(config.store).tune / name
    folder.mkdir(parents=True, exist_ok=True)
    head, racers = portfolio(profile)
    say(f"auto: {profile.train_rows} training rows, {profile.labels} labels, median {profile.median_chars:.0f} "
        f"characters; budget {seconds:.0f} s")

    race = _Race(config, snap, folder, metric, started + seconds - _reserve(profile, 0.01), say)
    entries = [_Entry(c, folder / c.name) for c in (head, *racers)]
    baseline = entries[0]
    baseline.config = train_overrides(config, head.settings)
    race.train(baseline, until_epoch=None, resume=False)
    race.report(baseline)
    rate = _forward_seconds_per_row(baseline.trained, profile, fallback=0.01)
    race.deadline = started + seconds - _reserve(profile, rate)
    plan = _plan(race, profile, rate, len(racers), _schedule_cap(config, profile, max_epochs))
    if plan is None:
        say("auto: no time left for a fine-tuning racer; the head-only model wins")
        for entry in entries[1:]:
            entry.stopped = "not run: budget"
    else:
        say(f"auto: {plan.racers} racer(s), {plan.epochs:g} epochs each, rungs at {plan.levels} epochs "
            f"(estimated {plan.epoch_seconds:.0f} s per epoch)")
        _run_race(race, entries[1:], plan, config)
    race_seconds = time.time() - started
    return _finish(config, snap, entries, metric, plan, name, folder, seconds, race_seconds, started,
                   config_path, register, say)


def _schedule_cap(config: KeepfitConfig, profile: DataProfile, max_epochs: float) -> float:
    """The longest schedule a racer gets: the project's own train.epochs when each label has 30 rows or more (a
    race of long schedules compares racers early in their warm-up and high learning rate, and on banking77 in 10
    minutes it lost to one 3-epoch run: BENCHMARKS.md), up to ``max_epochs`` for smaller data."""
    return min(max_epochs, config.train.epochs) if profile.rows_per_label >= 30 else max_epochs


def _reserve(profile: DataProfile, rate: float) -> float:
    """Seconds kept out of the race for the winner's export and test pass: the encoder's pass over test and
    validation, doubled, and a few seconds of writing (``rate``: forward seconds per row)."""
    return 2 * rate * (profile.test_rows + profile.validation_rows) + 5.0


# A training step costs this many feature-pass forwards per row: measured on banking77 with all-MiniLM-L6-v2 on
# 2 cores (training 190 samples/s against the head-only feature pass's ~1,100 rows/s: backward, optimiser, and
# the feature pass's larger inference batches); the race re-plans from measured epochs after its first rung.
TRAIN_TO_FORWARD = 6.0


def _plan(race: _Race, profile: DataProfile, rate: float, candidates: int, max_epochs: float) -> RacePlan | None:
    """Time per epoch of a fine-tuning racer ~ TRAIN_TO_FORWARD forward passes over train and one over
    validation; its setup ~ one pass over train (the linear-probe head start) and a few seconds of loading."""
    epoch_seconds = rate * (TRAIN_TO_FORWARD * profile.train_rows + profile.validation_rows)
    setup_seconds = rate * profile.train_rows + 5.0
    left = race.deadline - time.time()
    return race_plan(left, max(epoch_seconds, 1e-3), setup_seconds, candidates, max_epochs)


def _run_race(race: _Race, entries: list[_Entry], plan: RacePlan, config: KeepfitConfig) -> None:
    """Successive halving over the first ``plan.racers`` entries; the rest are not run."""
    for entry in entries[plan.racers:]:
        entry.stopped = "not run: budget"
    alive = entries[:plan.racers]
    for entry in alive:
        entry.config = train_overrides(config, {**entry.candidate.settings, "epochs": plan.epochs,
                                             "evals_per_epoch": plan.evals_per_epoch,
                                             "checkpoint_every_steps": 10**9})
    for rung, (level, _) in enumerate(zip(plan.levels, plan.survivors, strict=True)):
        last = rung == len(plan.levels) - 1 or len(alive) == 1  # a lone racer goes straight to the end
        for entry in alive:
            if race.deadline - time.time() < plan.setup_seconds + plan.eval_seconds:  # it would end past it
                entry.stopped = ("not run: budget" if entry.stopped == "not run" else
                                 f"budget (paused at {entry.epochs:g} epochs, not exported)")
                continue
            race.train(entry, until_epoch=None if last else level, resume=entry.stopped == "paused",
                       slack=0.5 / plan.evals_per_epoch)  # evaluations fall on whole batches, near k / evals
            race.report(entry)
        if last:
            break
        keep = plan.survivors[rung + 1]
        if keep > 1 and not _fits(race, alive, plan, rung + 1, keep):
            keep = 1  # slower than planned: the best racer alone gets the time left
            race.say(f"auto: racers slower than planned; only the best goes on after rung {rung + 1}")
        running = [e for e in alive if e.stopped == "paused"]
        ranked = sorted(running, key=lambda e: (e.validation is None,
                                                -(e.validation or 0) if not race.lower else (e.validation or 0)))
        for entry in ranked[keep:]:
            entry.stopped = f"halved at rung {rung + 1} ({level:g} of {plan.epochs:g} epochs)"
            shutil.rmtree(entry.run_dir / "checkpoints", ignore_errors=True)
        alive = ranked[:keep]
        if not alive:
            break
    for entry in alive:
        if entry.stopped == "paused":  # the deadline came between rungs: its checkpoint is all there is
            entry.stopped = "budget (paused, not exported)"


def _measured_epoch_seconds(entries: list[_Entry]) -> float | None:
    """Seconds per epoch the racers took so far (setup included), the slowest one's."""
    rates = [e.seconds / e.epochs for e in entries if e.epochs > 0 and e.seconds > 0]
    return max(rates) if rates else None


def _fits(race: _Race, alive: list[_Entry], plan: RacePlan, rung: int, keep: int) -> bool:
    """Whether ``keep`` racers can still go through the remaining rungs at the speed measured so far."""
    per_epoch = _measured_epoch_seconds(alive)
    if per_epoch is None:
        return True
    need, previous = 0.0, plan.levels[rung - 1]
    for level, n in zip(plan.levels[rung:], plan.survivors[rung:], strict=True):
        need += min(n, keep) * (level - previous) * per_epoch
        previous = level
    return need <= race.deadline - time.time()


def _finish(config, snap, entries: list[_Entry], metric: str, plan, name: str, folder: Path, seconds: float,
            race_seconds: float, started: float, config_path: Path | None, register: bool, say: Progress):
    """The best exported candidate scored once on test and registered; the race saved as a study; report."""
    from keepfit.lock import project_lock
    from keepfit.pipeline import evaluate_and_register

    lower = metric in LOWER_IS_BETTER
    exported = [e for e in entries if e.trained is not None and e.validation is not None]
    if not exported:
        reasons = "; ".join(f"{e.candidate.name}: {e.stopped}" for e in entries)
        raise TrainingError(f"keepfit auto: no candidate finished inside the budget ({reasons}). Give a larger "
                            "--budget, or look at the failures in the run folders under " + str(folder))
    winner = min(exported, key=lambda e: e.validation if lower else -e.validation)  # type: ignore[operator]
    order = sorted(entries, key=lambda e: (e.validation is None, (e.validation or 0) * (1 if lower else -1)))
    leaderboard = [e.row(metric, e is winner) for e in order]
    for entry in entries:
        if entry is not winner:
            shutil.rmtree(entry.run_dir / "checkpoints", ignore_errors=True)
            shutil.rmtree(entry.run_dir / "cache", ignore_errors=True)
    say(f"auto: winner {winner.candidate.name} (validation {metric} {winner.validation:.4f}) after "
        f"{race_seconds:.0f} s of a {seconds:.0f} s budget")
    preset = f"auto-{snap.id[:12]}"
    search = {"study": name, "trial": winner.candidate.name, "space": "keepfit auto portfolio",
              "params": winner.candidate.settings, "validation": winner.validation}
    assert winner.config is not None and winner.trained is not None
    with project_lock(Store.at(config.store), "keepfit auto", timeout=config.update.lock_timeout):
        fit = evaluate_and_register(winner.config, snap, winner.trained, winner.run_dir, register=register,
                                    search=search, tags={"keepfit.kind": "auto", "keepfit.auto.study": name,
                                                         PRESET_TAG: preset})
    test = {k: v for k, v in fit.metrics.items() if isinstance(v, (int, float))}
    if config_path is not None:
        from keepfit.train.presets import write_preset

        write_preset(Path(config_path), preset, {f"train.{k}": v for k, v in winner.candidate.settings.items()
                                                 if v is not None})
    study = _as_study(config, name, entries, metric)
    result = AutoResult(seconds, race_seconds, time.time() - started, metric, leaderboard, winner.candidate.name,
                        winner.validation, plan, name, fit.version, test, preset if config_path else None)
    report = _report(study, folder, result, masked_url(storage_url(config)))
    return replace(result, report=report, wall_seconds=time.time() - started)


def _as_study(config: KeepfitConfig, name: str, entries: list[_Entry], metric: str):
    """The race as an Optuna study in the store's storage: one trial per candidate that ran."""
    import optuna
    from optuna.distributions import CategoricalDistribution
    from optuna.trial import TrialState, create_trial

    direction = "minimize" if metric in LOWER_IS_BETTER else "maximize"
    study = optuna.create_study(storage=open_storage(config), study_name=name, direction=direction,
                                load_if_exists=True)
    names = [e.candidate.name for e in entries]
    for entry in entries:
        if entry.stopped == "not run: budget":
            continue
        failed = entry.stopped.startswith("failed") or entry.validation is None
        state = TrialState.FAIL if failed else TrialState.COMPLETE if entry.trained else TrialState.PRUNED
        values = [h.get(f"validation_{metric}") for h in entry.history]
        study.add_trial(create_trial(
            state=state, value=None if failed else entry.validation,
            params={"candidate": entry.candidate.name}, distributions={"candidate": CategoricalDistribution(names)},
            intermediate_values={i + 1: float(v) for i, v in enumerate(values) if v is not None and np.isfinite(v)},
            user_attrs={"keepfit.stopped": entry.stopped, "keepfit.seconds": round(entry.seconds, 1),
                        "keepfit.seed": entry.config.train.seed if entry.config else None,
                        **({"keepfit.failure": entry.stopped} if failed else {})},
        ))
    return study


def _report(study, folder: Path, result: AutoResult, storage: str) -> Path:
    from keepfit.tune.report import write_tune_report

    plan = result.plan
    summary = {
        "study": result.study,
        "storage": storage,
        "metric": result.metric,
        "budget seconds": result.budget_seconds,
        "race seconds": round(result.race_seconds, 1),
        "plan": None if plan is None else {"racers": plan.racers, "epochs": plan.epochs, "rungs": plan.levels,
                                           "evals per epoch": plan.evals_per_epoch,
                                           "estimated seconds per epoch": round(plan.epoch_seconds, 1)},
        "winner": result.winner,
        "best validation": result.validation,
        "test": result.test or None,
        "registered version": result.version,
        "preset": result.preset,
        "selection_note": (
            "Candidates were compared on the validation split only; the test split was scored once, for the "
            f"winner ({result.winner})."
        ),
    }
    return write_tune_report(study, folder / "report", title=f"keepfit auto: {result.study}", summary=summary,
                             leaderboard=result.leaderboard)


def check_budget(text: str) -> float:
    """Seconds of ``--budget``; under 10 s is refused (not even the head-only model fits)."""
    seconds = parse_duration(text)
    if seconds < 10:
        raise ConfigError(f"--budget {text} is under 10 seconds: the head-only baseline alone needs more. Give "
                          "at least a few minutes (10m or more lets fine-tuning race on a real data set).")
    return seconds
