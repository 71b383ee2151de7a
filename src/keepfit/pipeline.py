"""The recipe: wires the stages in order (data -> train -> evaluate -> gate -> registry).

Each public function here is what a CLI command calls, and what a user calls from Python.
No stage logic lives here; only order, paths and lineage.
"""

from __future__ import annotations

import json
import logging
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
from keepfit.types import (
    COMPLETION,
    GENERATION,
    IMAGE_CLASSIFICATION,
    PROMPT,
    Snapshot,
    inputs_of,
    is_generation,
    is_image,
    is_single_label,
)

log = logging.getLogger(__name__)

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
    "evaluate_and_register",
    "register_gated",
    "GatedCandidate",
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
    label_issues: Any = None  # keepfit.data.TrainingLabelIssues found in the snapshot before training


@dataclass(frozen=True)
class EvaluateResult:
    metrics: dict[str, float]
    report: Path
    result: Any
    outputs: tuple[list[str], np.ndarray] | None = None  # (labels, outputs) on the evaluated split
    thresholds: np.ndarray | None = None  # multi-label decision thresholds served with the model
    generations: tuple[list[str], np.ndarray] | None = None  # text-generation: (answers, ended with EOS)


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
    pending: bool = False  # the batch stays in the history (HEAD) for the next update
    batch: dict[str, Any] = field(default_factory=dict)  # rows in, new, duplicates, screened, leaked, relabels
    warnings: list[str] = field(default_factory=list)
    judged_against: str | None = None  # the champion version the candidate was compared with
    interpolation: Any = None  # keepfit.train.interpolate.Interpolation: the champion's weight and its curve
    screen: Any = None  # keepfit.data.ScreenResult: rows of the batch the champion disputed, and the blocks


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
        return snapshot_data(config, store=store, count_tokens=token_counter_for(config))
    if store.head_file.exists():
        return load_snapshot(store, "HEAD")
    raise DataError(
        "No data to train on: expected data.train in keepfit.yaml or an existing snapshot, found neither. "
        "Run `keepfit init DATA` to write a config, or pass --snapshot ID."
    )


def token_counter_for(config: KeepfitConfig):
    """text-generation: the data check's token counter with the model's tokenizer (None for other tasks)."""
    if not is_generation(config.task):
        return None
    from keepfit.train.causal import token_counter

    return token_counter(config.model.name, config.model.revision)


def resolve_model(config: KeepfitConfig, ref: str | Path) -> Path:
    """A model folder from a path, a run folder, or a registry reference (``champion``, ``3``, ``v3``)."""
    from keepfit.train.model import is_model_folder

    path = Path(ref)
    for candidate in (path, path / "model"):
        if is_model_folder(candidate):
            return candidate
    if is_generation(config.task) and str(ref) not in ("champion", "challenger") and not str(ref).isdigit():
        from keepfit.train.causal import resolve_causal_model

        try:  # a GGUF file or folder, or the packaged SmolLM2: the base model itself, to score before fitting
            return resolve_causal_model(ref).path
        except ModelError:
            pass
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
    if is_single_label(snapshot.task):
        seen = sorted(set(snapshot.train["label"]))
        if len(seen) < 2:
            raise DataError(
                f"The training split holds {len(seen)} label(s) ({seen}); a classifier needs at least two. "
                "Add rows of other labels (check the quarantine file for rows that were set aside)."
            )


def _require_groups(config: KeepfitConfig, snapshot: Snapshot, splits: tuple[str, ...] = ("test",)) -> None:
    """Before any work: each evaluate.fairness_columns is carried by the snapshot and holds two groups or more in
    the splits judged (and in train when train.fairness_reweight weighs by them); DataError otherwise."""
    from keepfit.data.fairness import fairness_groups

    wanted = (*splits, "train") if config.train.fairness_reweight else splits
    for name in dict.fromkeys(wanted):
        fairness_groups(snapshot.split(name), config.evaluate.fairness_columns,
                        where=f"snapshot {snapshot.id[:12]}, {name} split")


def _true_values(snapshot: Snapshot, frame: pd.DataFrame, labels: list[str]) -> np.ndarray:
    """Ground truth in the array convention the evaluate stage expects, aligned with ``labels``."""
    column = snapshot.answer_column
    if snapshot.task == "regression":
        return frame[column].to_numpy(dtype=float)
    index = {name: i for i, name in enumerate(labels)}
    if is_single_label(snapshot.task):
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

    frame = snapshot.split(split)
    if len(frame) == 0:
        raise DataError(
            f"Snapshot {snapshot.id[:12]} has no {split} rows to evaluate on. "
            "Give a larger data set or set split.test above 0."
        )
    if is_generation(snapshot.task):
        return _evaluate_generation(config, model_dir, frame, out_dir, history=history, title=title)
    _require_groups(config, snapshot, (split,))
    predictor = load_predictor(model_dir)
    preds = predictor.predict(inputs_of(frame), batch_size=config.evaluate.batch_size)
    labels = preds.labels
    validation = None
    if len(snapshot.validation) and not predictor.postprocessing.saved:  # an older folder: fit them here
        val_preds = predictor.predict(inputs_of(snapshot.validation), batch_size=config.evaluate.batch_size)
        validation = (_true_values(snapshot, snapshot.validation, labels), val_preds.outputs)
    result = evaluate_outputs(
        snapshot.task,
        labels,
        _true_values(snapshot, frame, labels),
        preds.outputs,
        config=config.evaluate,
        frame=frame,
        validation=validation,
        thresholds=preds.thresholds,
        temperature=preds.temperature,
        abstain_threshold=preds.abstain_threshold,
        out_of_scope_label=config.data.out_of_scope_label,
        seed=config.train.seed,
    )
    report = write_evaluation_report(result, out_dir, history=history, title=title)
    return EvaluateResult(
        metrics=dict(result.headline), report=report, result=result, outputs=(labels, preds.outputs),
        thresholds=preds.thresholds,
    )


GENERATION_BATCH = 32  # prompts per generate() call: left padding of a length-sorted batch wastes little


def _generations(config: KeepfitConfig, model_dir: Path, frame: pd.DataFrame) -> tuple[list[str], np.ndarray]:
    """Greedy answers of the model in ``model_dir`` to the prompts of ``frame``, and which ended with EOS."""
    from keepfit.train.generator import load_generator, prompt_messages

    return load_generator(model_dir).answer(
        prompt_messages(frame[PROMPT]), max_new_tokens=config.evaluate.max_new_tokens,
        batch_size=min(config.evaluate.batch_size, GENERATION_BATCH),
    )


def _generation_scores(config: KeepfitConfig, frame: pd.DataFrame, answers: list[str], ended: np.ndarray):
    """Per-example scores of ``answers`` against the frame's references (what "right" means: evaluate.*)."""
    from keepfit.evaluation.generation import match_kind, score_generations

    references = frame[COMPLETION].astype(str).tolist()
    return score_generations(
        references, answers, ended, match=match_kind(references, config.evaluate.generation_match),
        threshold=config.evaluate.generation_threshold,
    )


def _evaluate_generation(config, model_dir: Path, frame: pd.DataFrame, out_dir: Path, *, history, title):
    from keepfit.evaluation import write_evaluation_report
    from keepfit.evaluation.generation import evaluate_generations

    answers, ended = _generations(config, model_dir, frame)
    result = evaluate_generations(frame, answers, ended, config.evaluate, seed=config.train.seed)
    report = write_evaluation_report(result, out_dir, history=history, title=title)
    return EvaluateResult(
        metrics=dict(result.headline), report=report, result=result,
        outputs=([], _generation_scores(config, frame, answers, ended)), generations=(answers, ended),
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
    tags: dict[str, str] | None = None,
) -> FitResult:
    """Snapshot the data, fine-tune, evaluate on the test split and register the model.

    The first registered version becomes ``champion``; later fits are registered without an alias
    (use ``keepfit update`` to replace a champion through the gate). ``tags`` go on the registered version
    (``keepfit.preset``: the preset it was trained with, which `keepfit update` then reuses).
    """
    from keepfit.lock import project_lock

    store = Store.at(config.store)
    with project_lock(store, "keepfit fit", timeout=config.update.lock_timeout):
        return _fit_locked(config, store, snapshot, resume, register, progress, tags)


RUN_SNAPSHOT_FILE = "snapshot.json"


def _run_snapshot(config: KeepfitConfig, store: Store, snapshot: str | None, resume: Path | None) -> Snapshot:
    """A resumed run trains on the snapshot it started with (its id is in the run folder), not on HEAD."""
    from keepfit.data import load_snapshot

    if resume is None:
        return resolve_snapshot(config, snapshot)
    saved = Path(resume) / RUN_SNAPSHOT_FILE
    if not saved.exists():
        log.warning("resume: %s has no %s (an older run); using the snapshot resolved now", resume, saved.name)
        return resolve_snapshot(config, snapshot)
    started_on = json.loads(saved.read_text(encoding="utf-8"))["snapshot"]
    if snapshot and not started_on.startswith(snapshot):
        raise DataError(
            f"--snapshot {snapshot} differs from the snapshot {started_on[:12]} the run in {resume} started on; "
            "a resumed run must continue on the same data. Drop --snapshot, or start a new run."
        )
    return load_snapshot(store, started_on)


def _fit_locked(config, store: Store, snapshot, resume, register: bool, progress: bool, tags=None) -> FitResult:
    from keepfit._io import atomic_write_text
    from keepfit.train import train_model

    snap = _run_snapshot(config, store, snapshot, resume)
    _require_trainable(snap)
    _require_groups(config, snap)
    run_dir = Path(resume) if resume else _new_run_dir(store, "fit")
    if resume is None:
        atomic_write_text(run_dir / RUN_SNAPSHOT_FILE, json.dumps({"snapshot": snap.id}))
    issues = None if is_generation(snap.task) else _training_label_issues(config, snap, run_dir)
    trained = train_model(snap, config, run_dir, resume=resume is not None, progress=progress)
    return evaluate_and_register(config, snap, trained, run_dir, register=register, label_issues=issues, tags=tags)


def evaluate_and_register(
    config: KeepfitConfig,
    snap: Snapshot,
    trained: Any,
    run_dir: Path,
    *,
    register: bool = True,
    tags: dict[str, str] | None = None,
    search: dict[str, Any] | None = None,
    label_issues: Any = None,
) -> FitResult:
    """Score a trained model once on the test split (report in ``run_dir/evaluation``) and register it: the
    first version becomes champion, later ones are registered without an alias. ``tags`` and ``search`` (a tuned
    model's study, trial and space) go into the version's tags and lineage. Hold the project lock to call it."""
    evaluation = _evaluate_model(config, trained.model_dir, snap, run_dir / "evaluation", history=trained.history)
    version = None
    if register:
        from dataclasses import replace

        from keepfit.registry import Registry

        registry = Registry.open(config)
        alias = None if registry.champion() else "champion"
        lineage = replace(_lineage(config, snap, trained.labels, parent=None), search=search)
        info = registry.register(
            trained.model_dir,
            metrics=_numeric(evaluation.metrics),
            lineage=lineage,
            evaluation_dir=run_dir / "evaluation",
            alias=alias,
            tags={"keepfit.kind": "fit", "keepfit.run_dir": str(run_dir), **(tags or {})},
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
        label_issues=label_issues,
    )


def _training_label_issues(config: KeepfitConfig, snap: Snapshot, run_dir: Path):
    """Rows of the snapshot whose label out-of-fold predictions of a cheap model dispute (confident learning),
    written to the run folder for `keepfit data review`; they are reported, not removed."""
    from keepfit.data.review import find_training_label_issues, write_label_issues

    rows = pd.concat([snap.train.assign(split="train"), snap.validation.assign(split="validation"),
                      snap.test.assign(split="test")], ignore_index=True)
    found = find_training_label_issues(rows, snap.task, snap.labels, config.train.seed)
    write_label_issues(found.issues, run_dir, origin="fit", snapshot_id=snap.id)
    return found


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
    """Predict a file with a model (folder, run or registry reference); returns the predict report. A
    text-generation model answers each row's prompt (``text_column`` or data.prompt_column, or chat messages)."""
    from keepfit.train import predict_file
    from keepfit.train.model import read_meta

    model_dir = resolve_model(config, model)
    if is_generation(read_meta(model_dir).get("task", config.task)):
        from keepfit.train.generator import generate_file

        d = config.data
        return generate_file(model_dir, in_path, out_path, prompt_column=text_column or d.prompt_column,
                             messages_column=d.messages_column, system_column=d.system_column,
                             batch_size=min(config.evaluate.batch_size, GENERATION_BATCH))
    if is_image(read_meta(model_dir).get("task", config.task)):
        return _predict_images(config, model_dir, Path(in_path), Path(out_path), top_k or config.evaluate.top_k)
    return predict_file(
        model_dir,
        in_path,
        out_path,
        text_column=text_column or config.data.text_column,
        batch_size=config.evaluate.batch_size,
        top_k=top_k or config.evaluate.top_k,
    )


def _predict_images(config: KeepfitConfig, model_dir: Path, in_path: Path, out_path: Path, top_k: int):
    """Predict an image folder or a table of image paths: every image is checked as for training; the readable
    ones are predicted, the others are written with their reason (and no label), so no input is lost."""
    import time

    from keepfit.data.validate import load_and_validate
    from keepfit.train import load_predictor
    from keepfit.train.predict import PredictReport, prediction_columns, write_table

    cfg = config if is_image(config.task) else config.model_copy(update={"task": IMAGE_CLASSIFICATION})
    rows = load_and_validate(in_path, cfg, require_answer=False)
    start = time.perf_counter()
    preds = load_predictor(model_dir).predict(inputs_of(rows.kept), config.evaluate.batch_size, top_k)
    kept = rows.kept[["row", "text", "image"]].rename(columns={"text": "path"}).assign(**prediction_columns(preds))
    rejected = rows.quarantine.assign(path=rows.quarantine["raw_text"])[["row", "path", "reason", "detail"]]
    out = pd.concat([kept, rejected], ignore_index=True).sort_values("row", kind="stable")
    write_table(out, out_path)
    seconds = time.perf_counter() - start
    return PredictReport(out_path, len(out), seconds, len(rows.kept) / max(seconds, 1e-9), IMAGE_CLASSIFICATION)


def _paired_outputs(config: KeepfitConfig, model_dir: Path, frame: pd.DataFrame):
    from keepfit.train import load_predictor

    preds = load_predictor(model_dir).predict(inputs_of(frame), batch_size=config.evaluate.batch_size)
    return preds.labels, preds.outputs, preds.thresholds


def _compare_on(
    config: KeepfitConfig,
    old_dir: Path,
    new_dir: Path,
    snapshot: Snapshot,
    out_dir: Path,
    groups: dict[str, np.ndarray] | None = None,
    frame: pd.DataFrame | None = None,
    new_outputs: tuple[list[str], np.ndarray, np.ndarray | None] | None = None,
    interpolation: Any = None,
    timings: dict[str, float] | None = None,
) -> CompareResult:
    from keepfit.gate import apply_gate, compare_outputs, write_comparison_report

    frame = snapshot.test if frame is None else frame
    if is_generation(snapshot.task):
        return _compare_generations(config, old_dir, new_dir, frame, out_dir, groups, new_outputs, timings)
    labels_old, out_old, thresholds_old = _paired_outputs(config, old_dir, frame)
    # the candidate's test outputs are reused from its evaluation when given (same rows, same order)
    labels_new, out_new, thresholds_new = new_outputs or _paired_outputs(config, new_dir, frame)
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
        thresholds_old=thresholds_old,
        thresholds_new=thresholds_new,
    )
    decision = apply_gate(comparison, config.gate)
    report = write_comparison_report(comparison, decision, out_dir, interpolation=interpolation, timings=timings)
    return CompareResult(comparison=comparison, decision=decision, report=report)


def _compare_generations(config, old_dir: Path, new_dir: Path, frame: pd.DataFrame, out_dir: Path, groups,
                         new_outputs: tuple[list[str], np.ndarray] | None, timings) -> CompareResult:
    """Champion and candidate answer the same prompts; each answer is scored against the reference, and the
    paired per-example scores go through the same comparison and gate as a classifier's."""
    from keepfit.gate import apply_gate, compare_outputs, write_comparison_report

    old_answers, old_ended = _generations(config, old_dir, frame)
    new_answers, new_ended = new_outputs or _generations(config, new_dir, frame)
    comparison = compare_outputs(
        GENERATION,
        [],
        [],
        np.zeros(len(frame)),
        _generation_scores(config, frame, old_answers, old_ended),
        _generation_scores(config, frame, new_answers, new_ended),
        frame=frame.reset_index(drop=True).assign(output_old=old_answers, output_new=new_answers),
        config=config.evaluate,
        groups=groups,
        seed=config.train.seed,
    )
    decision = apply_gate(comparison, config.gate)
    report = write_comparison_report(comparison, decision, out_dir, timings=timings)
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


HEAD_UPDATE_EPOCHS, HEAD_UPDATE_LR = 10.0, 1e-2


def _candidate_config(config: KeepfitConfig, rows: int | None = None) -> KeepfitConfig:
    """The training config of a warm-started candidate: update.train_strategy, update.epochs (10 passes for a
    head-only candidate, train.epochs otherwise), update.lr and update.head_lr where set; with ``rows`` (new +
    replayed), epochs raised so the candidate takes at least update.min_steps optimiser steps (a small batch
    still gets enough steps to learn a new label)."""
    u = config.update
    # a few-shot champion's encoder is tuned already: its warm candidates train the head on it, where replay and
    # distillation apply (the pair loss has neither), unless update.train_strategy says otherwise
    strategy = u.train_strategy or ("head" if config.train.strategy == "fewshot" else config.train.strategy)
    head = strategy == "head"
    epochs = u.epochs or (HEAD_UPDATE_EPOCHS if head else config.train.epochs)
    if rows and u.min_steps:
        steps_per_epoch = max(rows / (config.train.batch_size * config.train.grad_accum), 1e-9)
        epochs = max(epochs, u.min_steps / steps_per_epoch)
    head_lr = u.head_lr or (HEAD_UPDATE_LR if head else config.train.head_lr)
    changes = {"strategy": strategy, "epochs": epochs, "lr": u.lr or config.train.lr, "head_lr": head_lr}
    return config.model_copy(update={"train": config.train.model_copy(update=changes)})


def _test_groups(judged: Snapshot, new: Snapshot) -> dict[str, np.ndarray]:
    """The gate's groups: test rows the champion was judged on before, the batch's test rows, and all."""
    from keepfit.data.merge import identity_for

    key = identity_for(new.task)  # the prompt for text-generation: a question under a new system prompt is new
    seen = set(judged.test[key])
    is_old = new.test[key].isin(seen).to_numpy()
    return {EARLIER: is_old, NEW: ~is_old, "all": np.ones(len(new.test), dtype=bool)}


EARLIER, NEW = "earlier test set", "new test set"


def _update_base(store: Store, judged: Snapshot, drop_pending: bool) -> Snapshot:
    """HEAD when it descends from the champion's snapshot (it then holds pending batches), else that snapshot."""
    from keepfit.data import ancestors, load_snapshot

    if drop_pending or not store.head_file.exists():
        return judged
    head = load_snapshot(store, "HEAD")
    if judged.id in ancestors(store, head.id):
        return head
    log.warning(
        "HEAD %s does not descend from the champion's snapshot %s; the update starts from the champion's",
        head.id[:12], judged.id[:12],
    )
    return judged


def _screen(config: KeepfitConfig, champion_dir: Path, judged: Snapshot, batch) -> tuple[pd.DataFrame, Any]:
    """The champion scores the batch's rows of labels it knows, before any training: rows it disputes far more
    often than its validation error predicts (e.g. two swapped labels) become quarantine rows
    (``update.screen: quarantine``), are only reported (``keep``), or refuse the batch (``fail``).

    Returns the quarantine rows and the screen's result (None when the screen could not run, with the reason
    logged)."""
    empty = batch.quarantine.iloc[0:0]
    rows = batch.new_rows
    if not is_single_label(judged.task) or len(rows) == 0 or len(judged.validation) == 0:
        return empty, None
    from keepfit.data.review import accepted_pairs
    from keepfit.data.screen import apply_screen, screen_batch
    from keepfit.train import load_predictor

    predictor = load_predictor(champion_dir)
    labels = list(predictor.labels)
    known = rows[rows["label"].isin(set(labels))].reset_index(drop=True)
    val = judged.validation[judged.validation["label"].isin(set(labels))]
    if len(known) == 0 or len(val) == 0:
        return empty, None
    bs = config.evaluate.batch_size
    index = {name: i for i, name in enumerate(labels)}
    result = screen_batch(
        known,
        labels,
        predictor.predict(inputs_of(known), batch_size=bs).outputs,
        val_true=np.array([index[v] for v in val["label"]]),
        val_probs=predictor.predict(inputs_of(val), batch_size=bs).outputs,
        min_confidence=config.update.screen_min_confidence,
        reviewed=accepted_pairs(Store.at(config.store).root),
    )
    _, quarantine = apply_screen(known, result, config.update.screen)
    return quarantine, result


def _interpolate(
    config: KeepfitConfig, champion_dir: Path, candidate_dirs: Path | list[Path], snapshot: Snapshot, run_dir: Path
):
    """BCWI after a warm start (``update.interpolate``, ``update.interpolate_method``), chosen on the
    validation rows, of the candidate or of the soup of several (``update.soup``: ``candidate_dirs`` holds
    them all). None when not done: the (first) candidate is then used as it is."""
    dirs = [Path(candidate_dirs)] if isinstance(candidate_dirs, (str, Path)) else [Path(d) for d in candidate_dirs]
    setting = config.update.interpolate
    if not is_single_label(snapshot.task) or len(snapshot.validation) == 0:
        if len(dirs) > 1:
            log.warning("update.soup: %d candidates trained, but averaging needs single-label validation rows; "
                        "the first candidate is used alone", len(dirs))
        return None
    if setting == "off" or config.update.strategy != "warm":
        if len(dirs) == 1:
            return None
        setting = 0.0  # the soup alone: no weight on the champion
    from keepfit.train.interpolate import interpolate_candidate, write_curve

    result = interpolate_candidate(
        champion_dir,
        dirs,
        inputs_of(snapshot.validation),
        snapshot.validation["label"].tolist(),
        run_dir / "interpolated" / "model",
        setting=setting,
        margin=config.update.interpolate_margin,
        batch_size=config.evaluate.batch_size,
        method=config.update.interpolate_method,
        fisher_rows=config.update.fisher_rows,
        seed=config.train.seed,
    )
    write_curve(result, run_dir / "interpolated")
    return result


def _champion_margins(config: KeepfitConfig, champion_dir: Path, rows: pd.DataFrame) -> np.ndarray:
    """Per row: the champion's probability of the row's label minus that of its best other label (-1 for a
    label it does not know), the distance from its decision boundary."""
    from keepfit.train import load_predictor

    predictor = load_predictor(champion_dir)
    probs = predictor.predict(inputs_of(rows), batch_size=config.evaluate.batch_size).outputs
    index = {name: i for i, name in enumerate(predictor.labels)}
    target = np.array([index.get(v, -1) for v in rows["label"]])
    known = target >= 0
    margins = np.full(len(rows), -1.0)
    own = probs[np.flatnonzero(known), target[known]]
    others = probs[known].copy()
    others[np.arange(len(own)), target[known]] = -np.inf
    margins[known] = own - others.max(axis=1)
    return margins


def _train_candidate(config, snapshot: Snapshot, judged: Snapshot, new_train, champion_dir, run_dir, progress):
    from keepfit.train import train_model

    if config.update.strategy == "retrain":
        return train_model(snapshot, config, run_dir, progress=progress)
    from keepfit.data.merge import replay_sample

    n_replay = int(round(config.update.replay_ratio * len(new_train)))
    margins = None
    if config.update.replay == "boundary" and is_single_label(judged.task) and 0 < n_replay < len(judged.train):
        margins = _champion_margins(config, champion_dir, judged.train)
    replay = replay_sample(judged.train, n_replay, judged.task, config.train.seed, margins=margins)
    warm = Snapshot(
        id=snapshot.id, path=snapshot.path, task=snapshot.task, labels=snapshot.labels,
        train=new_train, validation=snapshot.validation, test=snapshot.test,
        quarantine=snapshot.quarantine, report=snapshot.report, parent=snapshot.parent,
    )
    return train_model(
        warm,
        _candidate_config(config, len(new_train) + len(replay)),
        run_dir,
        init_from=champion_dir,
        teacher=champion_dir if config.update.distill else None,
        replay=replay,
        progress=progress,
    )


def _train_soup(config, snapshot: Snapshot, judged: Snapshot, new_train, champion_dir, run_dir, progress):
    """The candidate, or ``update.soup`` warm-started candidates with seeds train.seed + i (averaged before the
    interpolation); the first trains in ``run_dir``, the others in ``run_dir/soup-i``."""
    first = _train_candidate(config, snapshot, judged, new_train, champion_dir, run_dir, progress)
    n = config.update.soup if config.update.strategy == "warm" and is_single_label(snapshot.task) else 1
    out = [first]
    for i in range(1, n):
        seeded = config.model_copy(update={"train": config.train.model_copy(update={"seed": config.train.seed + i})})
        out.append(_train_candidate(seeded, snapshot, judged, new_train, champion_dir, run_dir / f"soup-{i}", progress))
    return out


def update(
    config: KeepfitConfig,
    data: Path,
    *,
    force: bool = False,
    drop_pending: bool = False,
    progress: bool = False,
    on_diff: Any = None,
) -> UpdateResult:
    """New data -> screen -> snapshot and diff -> candidate -> paired comparison with the champion -> gate.

    The candidate becomes ``champion`` only if every gate rule passes (or ``force``, which is recorded);
    otherwise it is registered as ``challenger`` with the reasons, and its batch stays in the data history
    as a pending snapshot (HEAD) that the next update trains on too (``drop_pending`` starts from the
    champion's snapshot instead). The whole update holds the project lock, so two updates never race; the
    promotion is a compare-and-swap on the champion the candidate was judged against.
    """
    from keepfit.lock import project_lock

    store = Store.at(config.store)
    with project_lock(store, "keepfit update", timeout=config.update.lock_timeout):
        return _update_locked(config, Path(data), store, force, drop_pending, progress, on_diff)


def _update_locked(config, data: Path, store: Store, force, drop_pending, progress, on_diff) -> UpdateResult:
    from keepfit.data import diff_snapshots, load_snapshot, set_head
    from keepfit.data.batch import merge_batch, snapshot_batch
    from keepfit.registry import Registry

    timings: dict[str, float] = {}
    started = time.perf_counter()
    registry = Registry.open(config)
    champion = registry.champion()
    if champion is None:
        raise RegistryError("No champion to update: run `keepfit fit` first to register version 1.")
    judged = load_snapshot(store, champion.lineage.data_snapshot)
    base = _update_base(store, judged, drop_pending)
    champion_dir = registry.model_path(champion.version)
    from keepfit.train.predict import logits_cache

    with logits_cache(champion_dir):  # the champion scores each row once
        batch = merge_batch(config, base, judged, data)
        timings["data_s"] = time.perf_counter() - started

        t0 = time.perf_counter()
        screened, screen = _screen(config, champion_dir, judged, batch)
        timings["screen_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        snapshot, new_train, section = snapshot_batch(
            config, batch, base=base, judged=judged, screened=screened,
            screen_report=screen.to_dict() if screen is not None else {"skipped": "single-label rows of known labels "
                                                                        "and the champion's validation rows needed"},
        )
        _require_trainable(snapshot)
        _require_groups(config, snapshot)
        set_head(store, snapshot.id)  # only now: the batch is in the history, trainable, and judged next
        diff = diff_snapshots(judged, snapshot)
        if on_diff is not None:
            on_diff(diff)
        timings["data_s"] += time.perf_counter() - t0

        run_dir = _new_run_dir(store, "update")
        if screen is not None:
            from keepfit.data.review import write_label_issues

            write_label_issues(screen.flagged, run_dir, origin="screen", snapshot_id=snapshot.id)
        t0 = time.perf_counter()
        soup = _train_soup(config, snapshot, judged, new_train, champion_dir, run_dir, progress)
        trained = soup[0]
        timings["teacher_s"] = sum(t.phases.get("teacher_s", 0.0) for t in soup)
        timings["train_s"] = time.perf_counter() - t0 - timings["teacher_s"]
        t0 = time.perf_counter()
        interpolation = _interpolate(config, champion_dir, [t.model_dir for t in soup], snapshot, run_dir)
        model_dir = interpolation.model_dir if interpolation and interpolation.model_dir else trained.model_dir
        timings["interpolate_s"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        evaluation = _evaluate_model(config, model_dir, snapshot, run_dir / "evaluation", history=trained.history)
        timings["evaluate_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        compared = _compare_on(
            config, champion_dir, model_dir, snapshot, run_dir / "comparison",
            groups=_test_groups(judged, snapshot),
            new_outputs=evaluation.generations if is_generation(snapshot.task)
            else (*evaluation.outputs, evaluation.thresholds),
            interpolation=interpolation, timings=dict(timings),
        )
        timings["compare_s"] = time.perf_counter() - t0
        decision = compared.decision

        t0 = time.perf_counter()
        info = registry.register(
            model_dir,
            metrics=_numeric(evaluation.metrics),
            lineage=_lineage(config, snapshot, trained.labels, parent=champion.version),
            evaluation_dir=run_dir / "evaluation",
            comparison_dir=run_dir / "comparison",
            tags={"keepfit.kind": f"update-{config.update.strategy}", "keepfit.run_dir": str(run_dir)},
        )
        reasons = list(decision.reasons)
        promoted = bool(decision.passed or force)
        if promoted:
            promoted, reasons = _promote(registry, info.version, champion.version, decision, reasons)
        if not promoted:
            registry.set_challenger(info.version, reasons=reasons)
        timings["register_s"] = time.perf_counter() - t0
        timings["total_s"] = time.perf_counter() - started
        from keepfit.gate.report import rewrite_timings

        rewrite_timings(run_dir / "comparison", timings)  # registration's time too (the registry's copy lacks it)
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
            pending=not promoted,
            batch=section,
            warnings=list(getattr(decision, "warnings", []) or []),
            screen=screen,
            judged_against=champion.version,
            interpolation=interpolation,
        )


def _promote(registry, version: str, judged_against: str, decision, reasons: list[str]) -> tuple[bool, list[str]]:
    """Compare-and-swap: promote only if the champion is still the version the candidate was judged against."""
    from keepfit.registry import ChampionMoved

    why = "gate passed" if decision.passed else "forced past the gate: " + "; ".join(reasons)
    try:
        registry.promote(version, reason=why, forced=not decision.passed, expected_champion=judged_against)
    except ChampionMoved as err:
        return False, [*reasons, str(err)]
    return True, reasons


def update_from_feedback(
    config: KeepfitConfig, *, since: float | None = None, **options: Any
) -> tuple[UpdateResult, Any]:
    """`keepfit update --from-feedback`: the feedback received since the last such update (or ``since``) becomes
    the batch of a normal, gated :func:`update`; returns its result and the
    :class:`keepfit.serve.feedback.FeedbackBatch`. The cutoff moves only once the update ran to a decision."""
    from keepfit.serve.feedback import feedback_batch, mark_used
    from keepfit.serve.log import PredictionLog, log_path_for

    folder = Store.at(config.store).feedback_batches
    column = config.data.label_column or config.data.target_column or "label"
    data = config.data
    required = [c for c in (data.group_column, data.time_column, *data.slice_columns,
                            *config.evaluate.fairness_columns) if c]
    with PredictionLog(log_path_for(config), readonly=True) as log:
        batch = feedback_batch(
            log, folder, text_column=data.text_column, label_column=column, since=since, required=required
        )
    result = update(config, batch.path, **options)
    mark_used(batch, folder)
    return result, batch


@dataclass(frozen=True)
class GatedCandidate:
    """A model trained outside fit/update (e.g. `keepfit federate`), evaluated, registered and, when a champion
    exists, judged by the gate like an update's candidate."""

    version: str
    champion_version: str
    promoted: bool
    reasons: list[str]
    evaluation: EvaluateResult
    compared: CompareResult | None  # None when there was no champion (the candidate became version 1's champion)
    judged_against: str | None


def register_gated(
    config: KeepfitConfig, snap: Snapshot, trained: Any, run_dir: Path, *, kind: str,
    tags: dict[str, str] | None = None,
) -> GatedCandidate:
    """Score ``trained.model_dir`` once on the snapshot's test split and register it. Without a champion it becomes
    champion (as a first fit does); with one, the paired comparison and gate of `keepfit update` decide: promoted
    (compare-and-swap on the champion judged against) or challenger with the reasons. Hold the project lock."""
    from keepfit.registry import Registry

    registry = Registry.open(config)
    champion = registry.champion()
    evaluation = _evaluate_model(config, trained.model_dir, snap, run_dir / "evaluation", history=trained.history)
    compared = None
    if champion is not None:
        compared = _compare_on(
            config, registry.model_path(champion.version), trained.model_dir, snap, run_dir / "comparison",
            new_outputs=(*evaluation.outputs, evaluation.thresholds),
        )
    info = registry.register(
        trained.model_dir,
        metrics=_numeric(evaluation.metrics),
        lineage=_lineage(config, snap, trained.labels, parent=champion.version if champion else None),
        evaluation_dir=run_dir / "evaluation",
        comparison_dir=run_dir / "comparison" if compared else None,
        alias=None if champion else "champion",
        tags={"keepfit.kind": kind, "keepfit.run_dir": str(run_dir), **(tags or {})},
    )
    if champion is None:
        return GatedCandidate(info.version, info.version, True, [], evaluation, None, None)
    reasons = list(compared.decision.reasons)
    promoted = bool(compared.decision.passed)
    if promoted:
        promoted, reasons = _promote(registry, info.version, champion.version, compared.decision, reasons)
    if not promoted:
        registry.set_challenger(info.version, reasons=reasons)
    return GatedCandidate(
        info.version, info.version if promoted else champion.version, promoted, reasons, evaluation, compared,
        champion.version,
    )
