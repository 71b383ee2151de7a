"""`keepfit federate`: deal the snapshot's training rows to simulated clients, run Flower rounds, export the
average as a normal model folder, evaluate it on the test split and register it through the gate."""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from keepfit._io import atomic_write_text
from keepfit.config import KeepfitConfig
from keepfit.errors import ConfigError, MissingExtraError, TrainingError
from keepfit.federated.shards import check_shard, deal_rows
from keepfit.store import Store
from keepfit.types import Snapshot

__all__ = ["FederateResult", "federate", "require_flower"]

log = logging.getLogger("keepfit.federate")

EXTRA_HINT = "Install it with `pip install 'keepfit[federated]'` (Flower with its Ray simulation engine)."
LEDGER_FILE = "federation.json"
# what a run's Flower processes and the waiting command exchange, in the run (or client work) folder
PLAN_FILE, OUTCOME_FILE, WEIGHTS_DIR, CLIENT_ERROR_FILE = "plan.json", "outcome.json", "weights", "error.json"


def missing_modules() -> list[str]:
    """The federated extra's modules that are not installed."""
    return [name for name in ("flwr", "ray") if importlib.util.find_spec(name) is None]


def require_flower() -> None:
    """MissingExtraError naming the extra when Flower (or its simulation engine, Ray) is not installed."""
    missing = missing_modules()
    if missing:
        raise MissingExtraError(
            f"keepfit federate needs the 'federated' extra: {', '.join(missing)} is not installed. {EXTRA_HINT}"
        )


@dataclass(frozen=True)
class FederateResult:
    """What `keepfit federate` made. ``rounds``: per round the clients that replied, their examples, the bytes
    of weights sent down (to all sampled clients) and up (all replies), and the average's validation metrics.
    ``metrics`` are the exported model's test metrics; ``promoted`` says whether it is the champion now."""

    run_dir: Path
    model_dir: Path
    snapshot_id: str
    clients: list[int]  # training rows per client
    rounds: list[dict[str, Any]]
    metrics: dict[str, float]
    report: Path
    version: str | None
    champion_version: str | None
    promoted: bool
    reasons: list[str] = field(default_factory=list)
    judged_against: str | None = None
    seconds: float = 0.0
    # with keep_weights: per round, each client's (examples, weights by name) as the server received them, and
    # the round's average
    replies: dict[int, list[tuple[int, dict[str, np.ndarray]]]] = field(default_factory=dict)
    averages: dict[int, dict[str, np.ndarray]] = field(default_factory=dict)


def check_settings(config: KeepfitConfig, snap: Snapshot, clients: int) -> None:
    """A ConfigError unless the task is single-label classification and there are at least two clients."""
    if snap.task != "single-label":
        raise ConfigError(
            f"keepfit federate trains single-label text classifiers; the task is {snap.task}. "
            "Use `keepfit fit` for this task."
        )
    if clients < 2:
        raise ConfigError(f"A federation needs at least 2 clients, got {clients}. Set federate.clients (or --clients).")


def base_model(config: KeepfitConfig) -> Path:
    """The start model: the champion's folder when there is one (its weights start the rounds), else the
    configured pre-trained model."""
    from keepfit.registry import Registry
    from keepfit.train.model import resolve_model_path

    registry = Registry.open(config)
    champion = registry.champion()
    if champion is not None:
        return registry.model_path(champion.version)
    return resolve_model_path(config.model.name, config.model.revision)


def _write_shards(train: pd.DataFrame, parts: list[np.ndarray], folder: Path) -> list[Path]:
    """One Parquet file per simulated client (text, label): each client process reads its own file only."""
    from keepfit._io import atomic_write_bytes

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, rows in enumerate(parts):
        path = folder / f"client-{i}.parquet"
        atomic_write_bytes(path, train.iloc[rows][["text", "label"]].reset_index(drop=True).to_parquet(index=False))
        paths.append(path)
    return paths


def federate(
    config: KeepfitConfig,
    *,
    snapshot: str | None = None,
    clients: int | None = None,
    shards: str | None = None,
    rounds: int | None = None,
    register: bool = True,
    keep_weights: bool = False,
) -> FederateResult:
    """Federated fine-tuning on Flower's simulation runtime: the snapshot's training rows are dealt to
    ``clients`` (federate.clients) simulated clients (``shards``: iid or dirichlet label skew), each trains the
    small part (federate.train_strategy) on its own rows for federate.local_epochs per round, and the server
    averages (federate.strategy: FedAvg or FedProx) for ``rounds`` rounds. The average is exported as a model
    folder (as `keepfit fit` writes), evaluated on the test split and registered: version 1 becomes champion;
    with a champion the rounds start from its weights and the gate judges the result (rejected: challenger).

    The ServerApp and the ClientApps run in Flower's processes (a SuperLink of this run with its simulation
    runtime on Ray); ``keep_weights`` keeps each round's average and every reply's weights (tests, benchmarks:
    ``FederateResult.averages`` / ``replies``). Holds the project lock.
    """
    from keepfit.lock import project_lock

    require_flower()
    changes = {k: v for k, v in {"clients": clients, "shards": shards, "rounds": rounds}.items() if v is not None}
    config = config.model_copy(update={"federate": config.federate.model_copy(update=changes)}) if changes else config
    store = Store.at(config.store)
    config = config.model_copy(update={"store": str(store.root.resolve())})  # Flower's processes read it
    with project_lock(store, "keepfit federate", timeout=config.update.lock_timeout):
        return _federate_locked(config, store, snapshot, register, keep_weights)


def _federate_locked(config, store: Store, snapshot, register: bool, keep_weights: bool) -> FederateResult:
    from keepfit.federated.processes import free_port, launch
    from keepfit.pipeline import _new_run_dir, _require_trainable, resolve_snapshot

    started = time.perf_counter()
    fc = config.federate
    snap = resolve_snapshot(config, snapshot)
    check_settings(config, snap, fc.clients)
    _require_trainable(snap)
    parts = deal_rows(snap.train["label"], fc.clients, fc.shards, alpha=fc.alpha, seed=fc.seed)
    base = base_model(config)
    run_dir = _new_run_dir(store, "federate").resolve()
    _write_shards(snap.train, parts, run_dir / "shards")
    plan = {"snapshot": snap.id, "base": str(base), "clients": fc.clients, "shards": str(run_dir / "shards"),
            "keep_weights": keep_weights}
    simulation = {"num-supernodes": fc.clients, "client-resources-num-cpus": 1, "init-args-num-cpus": fc.workers,
                  "init-args-logging-level": "ERROR"}
    outcome = launch(config, run_dir, plan, f"127.0.0.1:{free_port()}", simulation)
    result = finish(config, snap, run_dir, {**outcome, "clients": [len(p) for p in parts]}, register, started)
    if not keep_weights:
        return result
    averages, replies = _saved_weights(run_dir / WEIGHTS_DIR)
    return replace(result, averages=averages, replies=replies)


def _saved_weights(folder: Path) -> tuple[dict[int, dict[str, np.ndarray]], dict[int, list]]:
    """What ``Ledger.save_weights`` wrote: each round's average, and its replies as (examples, weights)."""
    from safetensors import safe_open
    from safetensors.numpy import load_file

    averages, replies = {}, {}
    for path in sorted(folder.glob("round-*.safetensors")):
        _, r, kind, *_ = path.stem.split("-")
        if kind == "average":
            averages[int(r)] = load_file(str(path))
            continue
        with safe_open(str(path), framework="numpy") as f:
            examples = int(f.metadata()["examples"])
        replies.setdefault(int(r), []).append((examples, load_file(str(path))))
    return averages, replies


@dataclass(frozen=True)
class _Exported:
    """The exported average as registration needs it (what a ServerApp process reports back)."""

    model_dir: Path
    history: list[dict[str, Any]]
    labels: list[str]


def finish(config: KeepfitConfig, snap: Snapshot, run_dir: Path, outcome: dict[str, Any], register: bool,
           started: float) -> FederateResult:
    """Record the federation (``federation.json``), then evaluate and register the exported average through the
    gate (see :func:`keepfit.pipeline.register_gated`)."""
    from keepfit.pipeline import register_gated

    fc = config.federate
    clients, rounds = outcome.get("clients", []), outcome["rounds"]
    atomic_write_text(run_dir / LEDGER_FILE, json.dumps({"clients": clients, "rounds": rounds}, indent=2,
                                                        default=float))
    trained = _Exported(Path(outcome["model_dir"]), outcome["history"], outcome["labels"])
    if not register:
        return FederateResult(run_dir, trained.model_dir, snap.id, clients, rounds, {}, run_dir / LEDGER_FILE,
                              None, None, False, seconds=time.perf_counter() - started)
    tags = {"keepfit.federate": f"{fc.strategy}, {len(rounds[-1]['received']) if rounds else 0} clients, "
                                f"{len(rounds)} rounds"}
    gated = register_gated(config, snap, trained, run_dir, kind="federate", tags=tags)
    return FederateResult(
        run_dir=run_dir, model_dir=trained.model_dir, snapshot_id=snap.id, clients=clients, rounds=rounds,
        metrics=dict(gated.evaluation.metrics),
        report=gated.compared.report if gated.compared else gated.evaluation.report, version=gated.version,
        champion_version=gated.champion_version, promoted=gated.promoted, reasons=gated.reasons,
        judged_against=gated.judged_against, seconds=time.perf_counter() - started,
    )


def server_member(config: KeepfitConfig, snap: Snapshot, base: Path, run_dir: Path):
    """The server's member (its validation rows scored each round; it exports the average) and the federation's
    labels: the start model's labels first, then the snapshot's new ones (as a warm start grows its head)."""
    from keepfit.federated.local import build_member
    from keepfit.train.model import read_meta
    from keepfit.train.prepare import resolve_labels

    labels = resolve_labels(snap, read_meta(base).get("labels"), None)
    member = build_member(config, snap.validation[["text", "label"]], labels, base, run_dir / "server",
                          validation=snap.validation)
    return member, labels


def ledger_json(ledger) -> dict[str, Any]:
    """The ledger's rounds as JSON-able dicts (what the server received, per round)."""
    return {"rounds": [asdict(r) for r in ledger.rounds]}


def export_average(server, snap: Snapshot, ledger, run_dir: Path):
    """The last average in the server's model, exported like a fit's model folder; a TrainingError when no
    round produced one (every client failed)."""
    from keepfit.federated.local import set_weights
    from keepfit.train.checkpoint import TrainState
    from keepfit.train.loop import TrainResult, export_current
    from keepfit.train.metrics import best_metric_name

    if ledger.final is None:
        errors = [e for r in ledger.rounds for e in r.errors]
        first = f" The first client error: {errors[0]}" if errors else ""
        raise TrainingError(
            f"The federation ended without an average: {len(ledger.rounds)} round(s) ran, {len(errors)} client "
            f"failure(s). Expected every round to get replies; see {run_dir} and the clients' logs.{first}"
        )
    job = server.job
    set_weights(server, ledger.final)
    metric = best_metric_name(job.task, job.config.train.metric_for_best)
    history = [{"epoch": float(r.round), "step": r.round, "train_loss": r.train_loss, **r.validation}
               for r in ledger.rounds]
    last = history[-1].get(f"validation_{metric}", math.nan) if history else math.nan
    state = TrainState(precision=job.precision, history=history, best_epoch=float(len(history)), best_metric=last)
    fc = job.config.federate
    job.meta |= {"federated": {"rounds": len(ledger.rounds), "strategy": fc.strategy, "mu": fc.mu,
                               "train_strategy": fc.train_strategy, "local_epochs": fc.local_epochs}}
    model_dir = export_current(job, snap, state, metric)
    return TrainResult(
        run_dir=job.run_dir, model_dir=model_dir, history=history, best_epoch=state.best_epoch,
        best_metric=last, samples_per_second=0.0, padding_overhead=1.0, wall_seconds=0.0, labels=job.labels,
        task=job.task, metric_name=metric, precision=job.precision, max_length=job.max_length,
    )


def read_shard(config: KeepfitConfig, path: Path, labels: list[str] | None) -> pd.DataFrame:
    """A client's own rows from its file, validated like any data file (rows set aside are counted in the log),
    then checked against the federation's ``labels`` (None: only that rows are left)."""
    from keepfit.data.validate import load_and_validate

    checked = load_and_validate(path, config.model_copy(update={"labels": None}))
    if len(checked.quarantine):
        log.warning("shard %s: %d row(s) set aside by the data checks", path, len(checked.quarantine))
    known = labels if labels is not None else sorted(set(checked.kept["label"].astype(str)))
    return check_shard(checked.kept, known, path)
