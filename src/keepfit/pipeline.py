"""The recipe: wires the stages in order (data -> train -> evaluate -> gate -> registry).

Each public function here is what a CLI command calls, and what a user calls from Python.
No stage logic lives here; only order, paths and lineage.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from keepfit.config import KeepfitConfig, config_hash
from keepfit.errors import DataError, ModelError, RegistryError
from keepfit.store import Store
from keepfit.types import Snapshot

__all__ = [
    "FitResult",
    "EvaluateResult",
    "UpdateResult",
    "CompareResult",
    "fit",
    "evaluate",
    "predict",
    "update",
    "compare",
    "resolve_snapshot",
    "resolve_model",
]


@dataclass(frozen=True)
class FitResult:
    """What `keepfit fit` made: the run folder, the model folder, its evaluation and registry version."""

    run_dir: Path
    model_dir: Path
    snapshot_id: str
    metrics: dict[str, float]
    report: Path
    version: str | None
    train: Any = None


@dataclass(frozen=True)
class EvaluateResult:
    metrics: dict[str, float]
    report: Path
    result: Any
    outputs: tuple[list[str], np.ndarray] | None = None  # (labels, outputs) on the evaluated split


@dataclass(frozen=True)
class CompareResult:
    comparison: Any
    decision: Any
    report: Path


@dataclass(frozen=True)
class UpdateResult:
    """What `keepfit update` did: the new snapshot, the candidate, the gate's decision and what was promoted."""

    snapshot_id: str
    diff: Any
    candidate_version: str | None
    champion_version: str | None
    promoted: bool
    forced: bool
    reasons: list[str]
    report: Path
    run_dir: Path
    decision: Any = None
    comparison: Any = None
    timings: dict[str, float] = field(default_factory=dict)


def _new_run_dir(store: Store, kind: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    path = store.run(f"{stamp}-{kind}-{secrets.token_hex(3)}")
    path.mkdir(parents=True, exist_ok=False)
    return path


def resolve_snapshot(config: KeepfitConfig, snapshot: str | None = None) -> Snapshot:
    """The snapshot to train on: the one named, else one made (or reused) from ``config.data``, else HEAD."""
    from keepfit.data import load_snapshot, snapshot_data

    store = Store.at(config.store)
    if snapshot:
        return load_snapshot(store, snapshot)
    if config.data.train:
        return snapshot_data(config, store=store)
    if store.head_file.exists():
        return load_snapshot(store, "HEAD")
    raise DataError(
        "No data to train on: expected data.train in keepfit.yaml or an existing snapshot, found neither. "
        "Run `keepfit init DATA` to write a config, or pass --snapshot ID."
    )


def resolve_model(config: KeepfitConfig, ref: str | Path) -> Path:
    """A model folder from a path, a run folder, or a registry reference (``champion``, ``3``, ``v3``)."""
    path = Path(ref)
    for candidate in (path, path / "model"):
        if (candidate / "config.json").exists():
            return candidate
    from keepfit.registry import Registry

    try:
        return Registry.open(config).model_path(str(ref))
    except RegistryError as err:
        raise ModelError(
            f"Model {ref!s} not found: expected a model folder (with config.json), a run folder, or a "
            f"registered version such as 'champion' or '3'. {err}"
        ) from None


def _snapshot_for_model(config: KeepfitConfig, ref: str | Path, snapshot: str | None) -> Snapshot:
    """The snapshot named, else the one a registered model was trained on, else the config's data."""
    from keepfit.data import load_snapshot

    if snapshot:
        return load_snapshot(Store.at(config.store), snapshot)
    if not Path(ref).exists():
        from keepfit.registry import Registry

        try:
            trained_on = Registry.open(config).get(str(ref)).lineage.data_snapshot
            return load_snapshot(Store.at(config.store), trained_on)
        except (RegistryError, DataError):
            pass  # not a registered version, or its snapshot is gone: fall back to the config's data
    return resolve_snapshot(config, None)


def _require_trainable(snapshot: Snapshot) -> None:
    """Fail early, with the fix, on data a model cannot be fitted and judged on."""
    counts = {name: len(snapshot.split(name)) for name in ("train", "validation", "test")}
    empty = [name for name, n in counts.items() if n == 0]
    if empty:
        raise DataError(
            f"Snapshot {snapshot.id[:12]} has no {' or '.join(empty)} rows (counts: {counts}): training needs "
            "validation rows for early stopping and test rows for the evaluation. Add more data, or change "
            "split.validation / split.test."
        )
    if snapshot.task == "single-label":
        seen = sorted(set(snapshot.train["label"]))
        if len(seen) < 2:
            raise DataError(
                f"The training split holds {len(seen)} label(s) ({seen}); a classifier needs at least two. "
                "Add rows of other labels (check the quarantine file for rows that were set aside)."
            )


def _true_values(snapshot: Snapshot, frame: pd.DataFrame, labels: list[str]) -> np.ndarray:
    """Ground truth in the array convention the evaluate stage expects, aligned with ``labels``."""
    column = snapshot.answer_column
    if snapshot.task == "regression":
        return frame[column].to_numpy(dtype=float)
    index = {name: i for i, name in enumerate(labels)}
    if snapshot.task == "single-label":
        return np.array([index.get(v, -1) for v in frame[column]], dtype=int)
    matrix = np.zeros((len(frame), len(labels)), dtype=int)
    for row, values in enumerate(frame[column]):
        for v in values:
            if v in index:
                matrix[row, index[v]] = 1
    return matrix


def _evaluate_model(
    config: KeepfitConfig,
    model_dir: Path,
    snapshot: Snapshot,
    out_dir: Path,
    *,
    split: str = "test",
    history: list[dict] | None = None,
    title: str = "keepfit evaluation",
) -> EvaluateResult:
    from keepfit.evaluation import evaluate_outputs, write_evaluation_report
    from keepfit.train import load_predictor

    predictor = load_predictor(model_dir)
    frame = snapshot.split(split)
    if len(frame) == 0:
        raise DataError(
            f"Snapshot {snapshot.id[:12]} has no {split} rows to evaluate on. "
            "Give a larger data set or set split.test above 0."
        )
    preds = predictor.predict(frame["text"].tolist(), batch_size=config.evaluate.batch_size)
    labels = preds.labels
    validation = None
    if len(snapshot.validation):
        val_preds = predictor.predict(snapshot.validation["text"].tolist(), batch_size=config.evaluate.batch_size)
        validation = (_true_values(snapshot, snapshot.validation, labels), val_preds.outputs)
    result = evaluate_outputs(
        snapshot.task,
        labels,
        _true_values(snapshot, frame, labels),
        preds.outputs,
        config=config.evaluate,
        frame=frame,
        validation=validation,
        seed=config.train.seed,
    )
    report = write_evaluation_report(result, out_dir, history=history, title=title)
    return EvaluateResult(
        metrics=dict(result.headline), report=report, result=result, outputs=(labels, preds.outputs)
    )


def _lineage(config: KeepfitConfig, snapshot: Snapshot, labels: list[str], parent: str | None):
    from keepfit.registry import Lineage, code_version

    return Lineage(
        data_snapshot=snapshot.id,
        parent_version=parent,
        config_hash=config_hash(config),
        code_version=code_version(),
        task=snapshot.task,
        labels=list(labels),
    )


def fit(
    config: KeepfitConfig,
    *,
    snapshot: str | None = None,
    resume: Path | None = None,
    register: bool = True,
    progress: bool = False,
) -> FitResult:
    """Snapshot the data, fine-tune, evaluate on the test split and register the model.

    The first registered version becomes ``champion``; later fits are registered without an alias
    (use ``keepfit update`` to replace a champion through the gate).
    """
    from keepfit.train import train_model

    snap = resolve_snapshot(config, snapshot)
    _require_trainable(snap)
    store = Store.at(config.store)
    run_dir = Path(resume) if resume else _new_run_dir(store, "fit")
    trained = train_model(snap, config, run_dir, resume=resume is not None, progress=progress)
    evaluation = _evaluate_model(config, trained.model_dir, snap, run_dir / "evaluation", history=trained.history)
    version = None
    if register:
        from keepfit.registry import Registry

        registry = Registry.open(config)
        alias = None if registry.champion() else "champion"
        info = registry.register(
            trained.model_dir,
            metrics=_numeric(evaluation.metrics),
            lineage=_lineage(config, snap, trained.labels, parent=None),
            evaluation_dir=run_dir / "evaluation",
            alias=alias,
            tags={"keepfit.kind": "fit", "keepfit.run_dir": str(run_dir)},
        )
        version = info.version
    return FitResult(
        run_dir=run_dir,
        model_dir=trained.model_dir,
        snapshot_id=snap.id,
        metrics=evaluation.metrics,
        report=evaluation.report,
        version=version,
        train=trained,
    )


def _numeric(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and np.isfinite(v)}


def evaluate(
    config: KeepfitConfig,
    model: str | Path = "champion",
    *,
    snapshot: str | None = None,
    split: Literal["train", "validation", "test"] = "test",
    out_dir: Path | None = None,
) -> EvaluateResult:
    """Evaluate a model (folder, run or registry reference) on a snapshot split; writes JSON + HTML.

    Without ``snapshot``, a registered model is evaluated on the snapshot it was trained on.
    """
    model_dir = resolve_model(config, model)
    snap = _snapshot_for_model(config, model, snapshot)
    out = out_dir or _new_run_dir(Store.at(config.store), "evaluate")
    return _evaluate_model(config, model_dir, snap, Path(out), split=split)


def predict(
    config: KeepfitConfig,
    model: str | Path,
    in_path: Path,
    out_path: Path,
    *,
    text_column: str | None = None,
    top_k: int | None = None,
):
    """Predict a file with a model (folder, run or registry reference); returns the predict report."""
    from keepfit.train import predict_file

    return predict_file(
        resolve_model(config, model),
        in_path,
        out_path,
        text_column=text_column or config.data.text_column,
        batch_size=config.evaluate.batch_size,
        top_k=top_k or config.evaluate.top_k,
    )


def _paired_outputs(config: KeepfitConfig, model_dir: Path, frame: pd.DataFrame):
    from keepfit.train import load_predictor

    preds = load_predictor(model_dir).predict(frame["text"].tolist(), batch_size=config.evaluate.batch_size)
    return preds.labels, preds.outputs


def _compare_on(
    config: KeepfitConfig,
    old_dir: Path,
    new_dir: Path,
    snapshot: Snapshot,
    out_dir: Path,
    groups: dict[str, np.ndarray] | None = None,
    frame: pd.DataFrame | None = None,
    new_outputs: tuple[list[str], np.ndarray] | None = None,
) -> CompareResult:
    from keepfit.gate import apply_gate, compare_outputs, write_comparison_report

    frame = snapshot.test if frame is None else frame
    labels_old, out_old = _paired_outputs(config, old_dir, frame)
    # the candidate's test outputs are reused from its evaluation when given (same rows, same order)
    labels_new, out_new = new_outputs or _paired_outputs(config, new_dir, frame)
    union = labels_new + [x for x in labels_old if x not in labels_new]
    comparison = compare_outputs(
        snapshot.task,
        labels_old,
        labels_new,
        _true_values(snapshot, frame, union),
        out_old,
        out_new,
        frame=frame,
        config=config.evaluate,
        groups=groups,
        seed=config.train.seed,
    )
    decision = apply_gate(comparison, config.gate)
    report = write_comparison_report(comparison, decision, out_dir)
    return CompareResult(comparison=comparison, decision=decision, report=report)


def compare(
    config: KeepfitConfig,
    a: str | Path = "champion",
    b: str | Path = "challenger",
    *,
    snapshot: str | None = None,
    out_dir: Path | None = None,
) -> CompareResult:
    """Paired comparison of model ``a`` (old) and ``b`` (new) on the same test examples, with the gate's verdict.

    Without ``snapshot``, both are scored on the test split of the snapshot ``b`` was trained on.
    """
    old_dir, new_dir = resolve_model(config, a), resolve_model(config, b)
    snap = _snapshot_for_model(config, b, snapshot)
    out = out_dir or _new_run_dir(Store.at(config.store), "compare")
    return _compare_on(config, old_dir, new_dir, snap, Path(out))


def _update_snapshot(config: KeepfitConfig, old: Snapshot, data: Path) -> tuple[Snapshot, Any, pd.DataFrame]:
    """Check the new file, deduplicate it against all earlier data, split it, and store old + new as a snapshot.

    Returns the new snapshot, its diff against ``old``, and the new training rows (for the warm start).
    """
    from keepfit.data import check_data, create_snapshot, diff_snapshots, split_rows
    from keepfit.data.merge import merge_new_rows

    checked = check_data(data, config)
    apply = config.update.relabels == "apply"
    merged = merge_new_rows(old, checked.kept, apply_relabels=apply)
    new_split = split_rows(merged.new_rows, config)
    frames = {
        name: pd.concat([merged.earlier[name], new_split[new_split["split"] == name]], ignore_index=True)
        for name in ("train", "validation", "test")
    }
    quarantine = pd.concat([checked.quarantine, merged.duplicates], ignore_index=True)
    snapshot = create_snapshot(
        frames,
        quarantine=quarantine,
        config=config,
        store=Store.at(config.store),
        parent=old.id,
        report={**checked.report, "update": {"relabels": config.update.relabels,
                                             "relabelled": merged.relabelled.to_dict("records"),
                                             "quarantined_against_earlier": len(merged.duplicates)}},
    )
    relabelled_train = set(merged.relabelled.loc[merged.relabelled["split"] == "train", "text"]) if apply else set()
    new_train = pd.concat(
        [
            new_split[new_split["split"] == "train"],
            frames["train"][frames["train"]["text"].isin(relabelled_train)],
        ],
        ignore_index=True,
    )
    if len(new_train) == 0:
        raise DataError(
            f"{data} brings nothing to train on: of {checked.n_in} rows, {len(merged.duplicates)} repeat earlier "
            f"data, {len(checked.quarantine)} were quarantined and no new row landed in the training split. "
            "Add new labelled rows, or run `keepfit data check` on the file to see why rows were dropped."
        )
    return snapshot, diff_snapshots(old, snapshot), new_train


def _test_groups(old: Snapshot, new: Snapshot) -> dict[str, np.ndarray]:
    seen = set(old.test["text"])
    is_old = new.test["text"].isin(seen).to_numpy()
    return {"earlier test set": is_old, "new test set": ~is_old, "all": np.ones(len(new.test), dtype=bool)}


def _candidate_config(config: KeepfitConfig) -> KeepfitConfig:
    train = config.train.model_copy(
        update={k: v for k, v in {"epochs": config.update.epochs, "lr": config.update.lr}.items() if v is not None}
    )
    return config.model_copy(update={"train": train})


def update(
    config: KeepfitConfig,
    data: Path,
    *,
    force: bool = False,
    progress: bool = False,
    on_diff: Any = None,
) -> UpdateResult:
    """New data -> snapshot and diff -> candidate -> paired comparison with the champion -> gate -> registry.

    The candidate becomes ``champion`` only if every gate rule passes (or ``force``, which is recorded);
    otherwise it is registered as ``challenger`` with the reasons.
    """
    from keepfit.data import load_snapshot
    from keepfit.registry import Registry
    from keepfit.train import train_model

    timings: dict[str, float] = {}
    started = time.perf_counter()
    registry = Registry.open(config)
    champion = registry.champion()
    if champion is None:
        raise RegistryError("No champion to update: run `keepfit fit` first to register version 1.")
    store = Store.at(config.store)
    old = load_snapshot(store, champion.lineage.data_snapshot)
    snapshot, diff, new_train = _update_snapshot(config, old, Path(data))
    _require_trainable(snapshot)
    if on_diff is not None:
        on_diff(diff)
    timings["data_s"] = time.perf_counter() - started

    run_dir = _new_run_dir(store, "update")
    champion_dir = registry.model_path(champion.version)
    t0 = time.perf_counter()
    if config.update.strategy == "retrain":
        trained = train_model(snapshot, config, run_dir, progress=progress)
    else:
        from keepfit.data.merge import replay_sample

        replay = replay_sample(
            old.train, int(round(config.update.replay_ratio * len(new_train))), old.task, config.train.seed
        )
        warm = Snapshot(
            id=snapshot.id, path=snapshot.path, task=snapshot.task, labels=snapshot.labels,
            train=new_train, validation=snapshot.validation, test=snapshot.test,
            quarantine=snapshot.quarantine, report=snapshot.report, parent=snapshot.parent,
        )
        trained = train_model(
            warm,
            _candidate_config(config),
            run_dir,
            init_from=champion_dir,
            teacher=champion_dir if config.update.distill else None,
            replay=replay,
            progress=progress,
        )
    timings["train_s"] = time.perf_counter() - t0

    evaluation = _evaluate_model(config, trained.model_dir, snapshot, run_dir / "evaluation", history=trained.history)
    compared = _compare_on(
        config,
        champion_dir,
        trained.model_dir,
        snapshot,
        run_dir / "comparison",
        groups=_test_groups(old, snapshot),
        new_outputs=evaluation.outputs,
    )
    decision = compared.decision
    info = registry.register(
        trained.model_dir,
        metrics=_numeric(evaluation.metrics),
        lineage=_lineage(config, snapshot, trained.labels, parent=champion.version),
        evaluation_dir=run_dir / "evaluation",
        comparison_dir=run_dir / "comparison",
        tags={"keepfit.kind": f"update-{config.update.strategy}", "keepfit.run_dir": str(run_dir)},
    )
    reasons = list(decision.reasons)
    promoted = bool(decision.passed or force)
    if promoted:
        why = "gate passed" if decision.passed else "forced past the gate: " + "; ".join(reasons)
        registry.promote(info.version, reason=why, forced=not decision.passed)
    else:
        registry.set_challenger(info.version, reasons=reasons)
    timings["total_s"] = time.perf_counter() - started
    return UpdateResult(
        snapshot_id=snapshot.id,
        diff=diff,
        candidate_version=info.version,
        champion_version=info.version if promoted else champion.version,
        promoted=promoted,
        forced=promoted and not decision.passed,
        reasons=reasons,
        report=compared.report,
        run_dir=run_dir,
        decision=decision,
        comparison=compared.comparison,
        timings=timings,
    )
