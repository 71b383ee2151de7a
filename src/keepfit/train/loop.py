"""``train_model``: one readable fine-tuning loop on Accelerate.

Setup (data, model, strategy) is done by :func:`build_job`; :func:`fit_loop` is the loop itself, top to
bottom; the tricks (length bucketing, bf16 autocast, accumulation, checkpoints) are small helpers it calls.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from keepfit._io import atomic_write_text
from keepfit.config import KeepfitConfig, config_hash, load_config, save_config
from keepfit.errors import TrainingError
from keepfit.train import prepare
from keepfit.train.batching import collate, epoch_batches, padding_overhead, sample_indices
from keepfit.train.checkpoint import (
    TrainState,
    average_ranked,
    latest_checkpoint,
    load_best,
    load_checkpoint,
    save_best,
    save_checkpoint,
    save_ranked,
)
from keepfit.train.export import export_model, model_card
from keepfit.train.head import HeadModel, cached_features
from keepfit.train.inference import autocast, choose_precision, sorted_forward
from keepfit.train.job import Job
from keepfit.train.losses import focal_distillation_loss, task_loss
from keepfit.train.memory import TRIM_EVERY_STEPS, release_free_memory
from keepfit.train.metrics import LOWER_IS_BETTER, best_metric_name, eval_metrics
from keepfit.train.model import (
    head_linear,
    input_embeddings,
    load_model,
    load_tokenizer,
    pooling_of,
    read_meta,
    resolve_model_path,
)
from keepfit.train.optim import build_optimizer, build_scheduler
from keepfit.train.postprocess import Postprocessing, fit_postprocessing
from keepfit.train.reweigh import training_row_weights
from keepfit.types import Snapshot, is_generation, is_image, is_single_label

__all__ = ["TrainResult", "EvalHook", "train_model", "seed_everything", "export_current"]

log = logging.getLogger("keepfit.train")

# Called after each evaluation with its history row (epoch, step, train_loss, train_seconds, validation_*):
# None goes on, "stop" ends the run and exports the best weights, "pause" checkpoints and exports nothing.
EvalHook = Callable[[dict[str, Any]], "str | None"]


@dataclass
class TrainResult:
    """What training made. ``history``: one dict per evaluation (epoch, step, train_loss, validation metrics);
    ``padding_overhead`` is computed tokens / real tokens of the training batches (1.0 = no padding)."""

    run_dir: Path
    model_dir: Path
    history: list[dict[str, Any]]
    best_epoch: float | None
    best_metric: float | None
    samples_per_second: float
    padding_overhead: float
    wall_seconds: float
    labels: list[str]
    task: str
    metric_name: str = "accuracy"
    precision: str = "fp32"
    max_length: int = 0
    phases: dict[str, float] = field(default_factory=dict)  # seconds: setup, teacher, loop, export
    stopped_by: str | None = None  # "stop" or "pause" when on_eval ended the run ("pause": nothing exported)


# --------------------------------------------------------------------------------------------- small helpers


def seed_everything(seed: int) -> None:
    """One seed for python, numpy and torch (the batch order has its own generator from the same seed)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _epoch_rng(seed: int, epoch: int) -> np.random.Generator:
    return np.random.default_rng([seed, epoch])


def _attach_log(run_dir: Path) -> logging.Handler:
    handler = logging.FileHandler(run_dir / "train.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    return handler


def _run_config(config: KeepfitConfig, run_dir: Path, resume: bool) -> KeepfitConfig:
    """The config of this run: the saved one when resuming (same settings, same weights), else ``config``."""
    saved = run_dir / "config.yaml"
    if resume and saved.exists():
        stored = load_config(saved)
        if config_hash(stored) != config_hash(config):
            log.warning("resume: using the config saved in %s, not the one passed (they differ)", saved)
        return stored
    save_config(config, saved)
    return config


def _is_better(value: float, best: float | None, metric: str) -> bool:
    if best is None:
        return True
    return value < best if metric in LOWER_IS_BETTER else value > best


@contextlib.contextmanager
def _progress_bar(enabled: bool, total: int, done: int):
    """A rich progress bar with samples/s and ETA; a no-op when disabled."""
    if not enabled:
        yield lambda **_: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = [
        TextColumn("[bold]training"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("batches"),
        TextColumn("{task.fields[speed]}"),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, transient=False) as bar:
        task = bar.add_task("train", total=total, completed=done, speed="", info="")
        yield lambda **kw: bar.update(task, **kw)


# --------------------------------------------------------------------------------------------------- setup


def _head_dropout(model: nn.Module, configured: float | None) -> float:
    if configured is not None:
        return configured
    cfg = model.config
    value = getattr(cfg, "classifier_dropout", None)
    return float(value if value is not None else getattr(cfg, "hidden_dropout_prob", 0.1))


def _teacher_outputs(job: Job, teacher: Path, texts: list[str]) -> None:
    """Teacher logits over its own labels for every training row, once; and whether the teacher was right."""
    from keepfit.train.predict import load_predictor

    predictor = load_predictor(teacher, precision=job.precision)
    logits = predictor.logits(texts, batch_size=64)
    if job.task == "regression":
        raw = logits.reshape(-1) * predictor.std + predictor.mean
        job.teacher_logits = ((raw - job.mean) / job.std).reshape(-1, 1)
        job.teacher_index = torch.tensor([0])
        job.teacher_correct = (job.teacher_logits.reshape(-1) - job.train.targets).abs() <= 0.5
        return
    keep = [i for i, name in enumerate(predictor.labels) if name in job.labels]
    job.teacher_logits = logits[:, keep]
    index = torch.tensor([job.labels.index(predictor.labels[i]) for i in keep])
    job.teacher_index = index
    if is_single_label(job.task):
        job.teacher_correct = index[job.teacher_logits.argmax(-1)] == job.train.targets
    else:
        predicted = (job.teacher_logits >= 0).float()
        outside = job.train.targets.sum(-1) - job.train.targets[:, index].sum(-1)
        job.teacher_correct = (predicted == job.train.targets[:, index]).all(-1) & (outside == 0)
    log.info(
        "teacher %s right on %.1f%% of %d training rows",
        teacher,
        100 * job.teacher_correct.float().mean(),
        len(texts),
    )


def build_job(
    snapshot: Snapshot,
    config: KeepfitConfig,
    run_dir: Path,
    *,
    init_from: Path | None,
    teacher: Path | None,
    replay: pd.DataFrame | None,
    device: torch.device,
    resume: bool = False,
) -> Job:
    """Labels, model, tokenised data and the strategy's trainable module. ``resume``: a checkpoint will replace
    the weights, so the linear-probe head start is skipped."""
    tc = config.train
    task = snapshot.task
    model_path = (
        resolve_model_path(init_from)
        if init_from
        else resolve_model_path(config.model.name, config.model.revision)
    )
    old_labels = read_meta(model_path).get("labels") if init_from else None
    labels = prepare.resolve_labels(snapshot, old_labels, replay)
    frame = prepare.training_frame(snapshot, replay)
    val_frame = snapshot.validation
    keep = prepare.known_rows(val_frame, task, labels) if len(val_frame) else np.zeros(0, dtype=bool)
    if len(val_frame) and not keep.all():
        log.warning(
            "validation: %d rows have labels absent from training; they are not scored", (~keep).sum()
        )
    val_frame = val_frame[keep] if len(val_frame) else val_frame
    mean, std = prepare.target_scaling(frame) if task == "regression" else (0.0, 1.0)

    tokenizer = load_tokenizer(model_path)
    model = load_model(model_path, task, labels, dropout=tc.dropout, pooling=config.model.pooling)
    limit = prepare.model_max_length(model, tokenizer)
    max_length = prepare.choose_max_length(tokenizer, frame["text"].tolist(), config.model.max_length, limit)
    precision = choose_precision(tc.precision, device.type)
    log.info(
        "model %s, task %s, %d labels, max_length %d, precision %s, strategy %s",
        model_path,
        task,
        len(labels),
        max_length,
        precision,
        tc.strategy,
    )

    def encoded(part: pd.DataFrame) -> prepare.Encoded:
        ids = prepare.encode_texts(tokenizer, part["text"].tolist(), max_length)
        targets, class_ids = prepare.encode_targets(part, task, labels, mean, std)
        return prepare.Encoded(ids, np.array([len(x) for x in ids], dtype=np.int64), targets, class_ids)

    train, val = encoded(frame), encoded(val_frame)
    pad = tokenizer.pad_token_id or 0
    model.to(device)
    if old_labels and is_single_label(task) and len(labels) > len(old_labels):
        _imprint_new_labels(model, train, len(old_labels), pad, precision, device, tc.seed)
    resumes = resume and latest_checkpoint(run_dir / "checkpoints") is not None
    probed = tc.strategy not in ("head", "fewshot")  # few-shot fits its head after the pairs
    if tc.head_init == "probe" and not old_labels and task != "regression" and probed and not resumes:
        _probe_head(model, train, pad, precision, device, tc, task)
        release_free_memory()  # the feature pass's activations are gone: give their pages back
    if tc.freeze_embeddings and tc.strategy != "head":
        input_embeddings(model).weight.requires_grad_(False)
    trainable: nn.Module = model
    if tc.strategy == "head":
        cache, started = run_dir / "cache", time.perf_counter()
        feats = cached_features(cache, "train", model, model_path, train.ids, pad, 64, precision).to(device)
        val_feats = cached_features(cache, "validation", model, model_path, val.ids, pad, 64, precision)
        val_feats = val_feats.to(device)
        feature_seconds = time.perf_counter() - started  # the encoder pass counts as training time
        trainable = HeadModel(head_linear(model), _head_dropout(model, tc.dropout)).to(device)

        def inputs(rows: np.ndarray) -> dict[str, torch.Tensor]:
            return {"features": feats[torch.from_numpy(rows)]}

        def val_logits(m: nn.Module) -> torch.Tensor:
            with torch.inference_mode():
                return m(features=val_feats).logits.float().cpu()
    else:
        if tc.strategy == "lora":
            from keepfit.train.lora import add_lora

            trainable = add_lora(model, tc)

        def inputs(rows: np.ndarray) -> dict[str, torch.Tensor]:
            return {k: v.to(device) for k, v in collate(train.ids, rows, pad).items()}

        def val_logits(m: nn.Module) -> torch.Tensor:
            return sorted_forward(
                val.ids, pad, 64, lambda b: m(**b).logits, precision=precision, device=device
            )

    job = Job(
        config=config,
        run_dir=run_dir,
        task=task,
        labels=labels,
        model=trainable,
        full_model=model,
        tokenizer=tokenizer,
        train=train,
        val=val,
        inputs=inputs,
        val_logits=val_logits,
        precision=precision,
        max_length=max_length,
        mean=mean,
        std=std,
    )
    if tc.strategy == "head":
        job.meta["feature_seconds"] = feature_seconds
    if tc.imbalance == "class_weights" and task != "regression":
        job.weights = prepare.class_weights(task, train.targets, len(labels)).to(device)
    if tc.fairness_reweight:  # rows of `frame` are the rows of `train`, in order
        job.row_weights = training_row_weights(frame, config.evaluate.fairness_columns)
    if teacher is not None and tc.distill_weight > 0:
        started = time.perf_counter()
        _teacher_outputs(job, Path(teacher), frame["text"].tolist())
        job.meta["teacher_seconds"] = time.perf_counter() - started
    job.meta |= {
        "base_model": str(config.model.name),
        "model_path": str(model_path),
        "init_from": str(init_from) if init_from else None,
        "teacher": str(teacher) if teacher else None,
        "replay_rows": 0 if replay is None else len(replay),
        "pooling": pooling_of(model),
    }
    return job


def _probe_head(model, train, pad: int, precision: str, device, tc, task: str) -> None:
    """Fit the new head on the frozen encoder's features first (full-batch AdamW, tc.probe_steps steps)."""
    from keepfit.train.head import encode_features, fit_probe

    started = time.perf_counter()
    features = encode_features(model, train.ids, pad, 64, precision).to(device)
    loss, fit = fit_probe(head_linear(model), features, train.targets.to(device), tc, task)
    log.info("linear probe: head fitted on frozen features of %d rows in %.1f s (loss %.4f, training accuracy %.3f)",
             len(features), time.perf_counter() - started, loss, fit)


IMPRINT_ROWS = 256  # examples per new label (and of the whole training set, for the centre) to imprint from


def _imprint_new_labels(model, train, n_old: int, pad: int, precision: str, device, seed: int) -> None:
    """Head inputs of the new labels' training rows -> their grown rows start at the labels' prototypes."""
    from keepfit.train.model import imprint_rows

    rng = np.random.default_rng(seed)
    targets = np.asarray(train.targets)
    picks = {
        int(c): rng.permutation(np.flatnonzero(targets == c))[:IMPRINT_ROWS]
        for c in np.unique(targets[targets >= n_old])
    }
    sample = rng.permutation(len(targets))[:IMPRINT_ROWS]
    wanted = np.unique(np.concatenate([sample, *picks.values()]))
    captured: list[torch.Tensor] = []
    hook = head_linear(model).register_forward_hook(lambda _m, args, _out: captured.append(args[0].detach()))
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(wanted), 64):
            rows = wanted[start : start + 64]
            batch = {k: v.to(device) for k, v in collate(train.ids, rows, pad).items()}
            with torch.inference_mode(), autocast(precision, device.type):
                model(**batch)
    finally:
        hook.remove()
        model.train(was_training)
    features = torch.cat(captured).float()
    where = {int(r): i for i, r in enumerate(wanted)}
    rows = {c: features[[where[int(r)] for r in idx]] for c, idx in picks.items()}
    imprint_rows(model, rows, features[[where[int(r)] for r in sample]].mean(dim=0))
    log.info("new label rows imprinted from %d examples: %s", sum(len(v) for v in picks.values()), sorted(picks))


# ------------------------------------------------------------------------------------------------ the loop


def _loss(job: Job, logits: torch.Tensor, rows: np.ndarray) -> torch.Tensor:
    if job.loss_fn is not None:
        return job.loss_fn(logits, rows)
    tc = job.config.train
    index = torch.from_numpy(rows)
    target = job.train.targets[index].to(logits.device)
    row_weights = None if job.row_weights is None else job.row_weights[index].to(logits.device)
    loss = task_loss(logits, target, job.task, class_weights=job.weights, label_smoothing=tc.label_smoothing,
                     row_weights=row_weights)
    if job.teacher_logits is not None:
        loss = loss + tc.distill_weight * focal_distillation_loss(
            logits[:, job.teacher_index.to(logits.device)],
            job.teacher_logits[index].to(logits.device),
            job.teacher_correct[index].to(logits.device),
            job.task,
            temperature=tc.distill_temperature,
            alpha=tc.focal_alpha,
            beta=tc.focal_beta,
        )
    return loss


def _evaluate(job: Job, model: nn.Module) -> dict[str, float]:
    if len(job.val.ids) == 0:
        return {}
    model.eval()
    if job.evaluate_fn is not None:
        metrics = job.evaluate_fn(model)
    else:
        metrics = eval_metrics(job.task, job.val_logits(model), job.val.targets, job.mean, job.std)
    model.train()
    return metrics


def _epoch_plan(job: Job, epoch: int, world: int) -> list[list[int]]:
    tc = job.config.train
    rng = _epoch_rng(tc.seed, epoch)
    rows = sample_indices(len(job.train.ids), job.train.class_ids, tc.imbalance, rng)
    batches = epoch_batches(rows, job.train.lengths, tc.batch_size, rng, bucketing=tc.length_bucketing)
    return [b.tolist() for b in batches if len(b) >= world]


def _batch_stream(job: Job, plan: list[list[int]], start: int, epoch: int, rank: int, world: int):
    """The task kind's stream of this process's inputs for ``plan[start:]`` (made ahead of the step), or None
    where the kind makes each batch with ``job.inputs`` when the loop asks (text)."""
    if job.batches is None:
        return None
    return job.batches([b[rank::world] for b in plan], start, epoch)


def _decide(on_eval: EvalHook | None, row: dict[str, Any], accelerator) -> str | None:
    """The hook's word after an evaluation ("stop", "pause" or None), asked on the main process and shared with
    the others so every process leaves the loop at the same batch."""
    if on_eval is None:
        return None
    word = [on_eval(row) if accelerator.is_main_process else None]
    if accelerator.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        broadcast_object_list(word)
    if word[0] not in (None, "stop", "pause"):
        raise ValueError(f"on_eval must return None, 'stop' or 'pause', got {word[0]!r}")
    return word[0]


def fit_loop(
    job: Job, accelerator, *, resume: bool, progress: bool, on_eval: EvalHook | None = None
) -> TrainState:
    """Train ``job.model``; evaluate, keep the best weights, checkpoint; return the final state.

    After each evaluation ``on_eval`` (when given) sees its history row and may end the run there: "stop" (the
    best weights are exported as after the last epoch) or "pause" (checkpointed, nothing exported; resuming
    continues from that batch). An exception it raises (a pruned trial) ends the run without a checkpoint.
    """
    tc = job.config.train
    rank, world = accelerator.process_index, accelerator.num_processes
    log.info("processes: %d (this is rank %d), device %s", world, rank, accelerator.device)
    ckpt_dir = job.run_dir / "checkpoints"
    everything = tc.strategy != "lora"
    metric = best_metric_name(job.task, tc.metric_for_best)

    batches_per_epoch = len(_epoch_plan(job, 0, world))
    total_batches = max(1, math.ceil(tc.epochs * batches_per_epoch))
    n_epochs = math.ceil(total_batches / max(batches_per_epoch, 1))
    total_steps = sum(
        math.ceil(min(batches_per_epoch, total_batches - e * batches_per_epoch) / tc.grad_accum)
        for e in range(n_epochs)
    )
    base = job.model
    model = accelerator.prepare(base)
    if tc.compile:
        model = _compiled(model)
    optimizer = build_optimizer(base, tc)
    scheduler = build_scheduler(optimizer, tc, total_steps)
    state = TrainState(precision=job.precision)
    last = latest_checkpoint(ckpt_dir) if resume else None
    if last is not None:
        state = load_checkpoint(last, base, optimizer, scheduler, rank=rank)
        job.precision = state.precision
        log.info("resumed from %s (epoch %d, batch %d, step %d)", last, state.epoch, state.batch, state.step)
    elif resume:
        log.info("resume: no checkpoint in %s, starting from the beginning", ckpt_dir)
    overheads: list[float] = []
    job.meta.pop("stopped_by", None)

    def checkpoint() -> None:
        if accelerator.is_main_process:
            save_checkpoint(ckpt_dir, base, optimizer, scheduler, state, everything=everything, rank=rank)
        accelerator.wait_for_everyone()

    done_batches = min(total_batches, state.epoch * batches_per_epoch + state.batch)
    with _progress_bar(progress and accelerator.is_main_process, total_batches, done_batches) as update:
        while state.epoch < n_epochs and not _stopped(state, tc):
            plan = state.batch_order or _epoch_plan(job, state.epoch, world)
            state.batch_order = plan
            limit = min(len(plan), total_batches - state.epoch * batches_per_epoch)
            evals = {round(limit * (k + 1) / tc.evals_per_epoch) for k in range(tc.evals_per_epoch)}
            lengths = job.train.lengths
            overheads.append(padding_overhead([np.array(b) for b in plan[:limit]], lengths))
            model.train()
            stream = _batch_stream(job, plan[:limit], state.batch, state.epoch, rank, world)
            tick, seen = time.perf_counter(), 0
            while state.batch < limit:
                rows = np.array(plan[state.batch])
                mine = rows[rank::world]
                boundary = (state.batch + 1) % tc.grad_accum == 0 or state.batch + 1 == limit
                sync = contextlib.nullcontext() if boundary or world == 1 else accelerator.no_sync(model)
                with sync:
                    with autocast(job.precision, accelerator.device.type):
                        logits = model(**(next(stream) if stream is not None else job.inputs(mine))).logits
                    loss = _loss(job, logits, mine) / tc.grad_accum
                    accelerator.backward(loss)
                state.batch += 1
                state.loss_sum, state.loss_count = (
                    state.loss_sum + loss.item() * tc.grad_accum,
                    state.loss_count + 1,
                )
                state.samples_seen += len(rows)
                seen += len(rows)
                if not boundary:
                    continue
                if tc.grad_clip:
                    accelerator.clip_grad_norm_(base.parameters(), tc.grad_clip)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                state.step += 1
                if state.step % TRIM_EVERY_STEPS == 0:
                    release_free_memory()
                elapsed = time.perf_counter() - tick
                update(
                    completed=state.epoch * batches_per_epoch + state.batch,
                    speed=f"{seen / max(elapsed, 1e-9):.1f} samples/s",
                )
                if state.batch in evals:
                    state.train_seconds += time.perf_counter() - tick
                    _record_eval(
                        job,
                        model,
                        base,
                        state,
                        metric,
                        state.loss_sum / max(state.loss_count, 1),
                        everything,
                        accelerator,
                        batches_per_epoch,
                    )
                    update(info=_eval_info(state, metric))
                    word = _decide(on_eval, state.history[-1], accelerator)
                    tick, seen = time.perf_counter(), 0
                    if word is not None:
                        job.meta["stopped_by"] = word
                        break
                    if _stopped(state, tc):
                        break
                if state.step % tc.checkpoint_every_steps == 0 and state.batch < limit:
                    state.train_seconds += time.perf_counter() - tick
                    checkpoint()
                    tick, seen = time.perf_counter(), 0
            state.train_seconds += time.perf_counter() - tick
            if stream is not None and hasattr(stream, "close"):
                stream.close()  # stops the loader's workers when the epoch ends early (stop, pause)
            if state.batch >= limit or _stopped(state, tc):
                state.epoch, state.batch, state.batch_order = state.epoch + 1, 0, []
            checkpoint()
            if "stopped_by" in job.meta:
                break
    job.meta["padding_overhead"] = float(np.mean(overheads)) if overheads else 1.0
    return state


def _compiled(model: nn.Module) -> nn.Module:
    """torch.compile with dynamic shapes (batches differ in length); the model as is where compiling fails."""
    try:
        return torch.compile(model, dynamic=True)
    except Exception as err:  # noqa: BLE001 - a missing compiler must not stop training
        log.warning("train.compile: torch.compile failed (%s); training without it", err)
        return model


def _stopped(state: TrainState, tc) -> bool:
    return tc.early_stopping_patience is not None and state.stale_evals >= tc.early_stopping_patience


def _eval_info(state: TrainState, metric: str) -> str:
    last = state.history[-1] if state.history else {}
    value = last.get(f"validation_{metric}")
    return f"val {metric} {value:.4f}" if isinstance(value, float) else ""


def _record_eval(
    job: Job,
    model: nn.Module,
    base: nn.Module,
    state: TrainState,
    metric: str,
    train_loss: float,
    everything: bool,
    accelerator,
    batches_per_epoch: int,
) -> None:
    """Validation metrics into the history and metrics.jsonl; the best weights kept; early-stopping count."""
    metrics = _evaluate(job, model)
    release_free_memory()
    epoch = round(state.epoch + state.batch / max(batches_per_epoch, 1), 4)
    row: dict[str, Any] = {
        "epoch": epoch,
        "step": state.step,
        "train_loss": train_loss,
        "samples_seen": state.samples_seen,
        "train_seconds": round(state.train_seconds, 3),
    }
    row.update({f"validation_{k}": v for k, v in metrics.items()})
    state.history.append(row)
    state.loss_sum, state.loss_count = 0.0, 0
    value = metrics.get(metric)
    if value is None:  # no validation rows: the last weights are the best we know
        state.best_epoch = epoch
        if accelerator.is_main_process:
            save_best(job.run_dir / "checkpoints", base, float("nan"), epoch, everything=everything)
    elif _is_better(value, state.best_metric, metric):
        state.best_metric, state.best_epoch, state.stale_evals = value, epoch, 0
        if accelerator.is_main_process:
            save_best(job.run_dir / "checkpoints", base, value, epoch, everything=everything)
    else:
        state.stale_evals += 1
    if value is not None and job.config.train.average_checkpoints > 1 and accelerator.is_main_process:
        save_ranked(
            job.run_dir / "checkpoints", base, value, epoch, keep=job.config.train.average_checkpoints,
            lower_is_better=metric in LOWER_IS_BETTER, everything=everything,
        )
    log.info("eval %s", json.dumps(row))
    if accelerator.is_main_process:
        atomic_write_text(job.run_dir / "metrics.jsonl", "".join(json.dumps(h) + "\n" for h in state.history))
    accelerator.wait_for_everyone()


# ------------------------------------------------------------------------------------------------- finish


def _postprocessing(job: Job) -> Postprocessing:
    """Temperature, thresholds and abstain threshold of the best weights, fitted on the validation split, to
    serve with them."""
    job.model.eval()
    needed = len(job.val.ids) and job.task != "regression"  # regression serves its target scaling only
    logits = job.val_logits(job.model) if needed else torch.zeros((0, len(job.labels)))
    post = fit_postprocessing(
        job.task,
        job.labels,
        logits,
        job.val.targets,
        target_mean=job.mean,
        target_std=job.std,
        in_scope_recall=job.config.evaluate.in_scope_recall,
        out_of_scope_label=job.config.data.out_of_scope_label,
    )
    log.info(
        "post-processing to serve: temperature %s, thresholds %s, abstain threshold %s (%s)",
        post.temperature,
        post.thresholds,
        post.abstain_threshold,
        post.fitted_on or "no validation rows: nothing fitted",
    )
    return post


def _average_checkpoints(job: Job, state: TrainState, metric: str) -> None:
    """Replace the best weights by the average of the best ``train.average_checkpoints`` evaluations' weights
    when that average scores at least as well on validation (it is chosen on validation, like the best one)."""
    averaged = average_ranked(job.run_dir / "checkpoints")
    if averaged is None or state.best_metric is None:
        return
    weights, entries = averaged
    best = {k: v.clone() for k, v in job.model.state_dict().items()}
    job.model.load_state_dict(weights, strict=False)
    value = _evaluate(job, job.model).get(metric)
    kept = value is not None and not _is_better(state.best_metric, value, metric)
    if not kept:
        job.model.load_state_dict(best)
    job.meta["checkpoint_average"] = {
        "epochs": [e["epoch"] for e in entries],
        "validation": {"average": value, "best single": state.best_metric},
        "metric": metric,
        "used": kept,
    }
    log.info("checkpoint average of epochs %s: validation %s %s vs best %s: %s", [e["epoch"] for e in entries],
             metric, value, state.best_metric, "used" if kept else "not used")


def _export(job: Job, snapshot: Snapshot, state: TrainState, metric: str) -> Path:
    """Best weights into the full model, adapters merged, written as a Hugging Face folder with the
    post-processing fitted on validation (a task kind's own export when it has one)."""
    if job.export_fn is not None:
        return job.export_fn(job, snapshot, state, metric)
    tc = job.config.train
    load_best(job.run_dir / "checkpoints", job.model)
    if tc.average_checkpoints > 1:
        _average_checkpoints(job, state, metric)
    if job.finish is not None:
        job.finish(job)
    postprocessing = _postprocessing(job)
    model = job.full_model
    if tc.strategy == "head":
        with torch.no_grad():
            head_linear(model).load_state_dict(job.model.linear.state_dict())
    elif tc.strategy == "lora":
        from keepfit.train.lora import merge_lora

        model = merge_lora(job.model)
    model = model.to("cpu").eval()
    meta = {
        "task": job.task,
        "labels": job.labels,
        "target_mean": job.mean,
        "target_std": job.std,
        "max_length": job.max_length,
        "data_snapshot": snapshot.id,
        "config_hash": config_hash(job.config),
        "strategy": tc.strategy,
        "seed": tc.seed,
        "best_epoch": state.best_epoch,
        "best_metric": state.best_metric,
        "metric": metric,
        "precision": job.precision,
        "torch": torch.__version__,
        **job.meta,
    }
    from keepfit.config import config_to_yaml

    card = model_card(meta, state.history, config_to_yaml(job.config))
    return export_model(model, job.tokenizer, job.run_dir / "model", meta, card, postprocessing)


def export_current(job: Job, snapshot: Snapshot, state: TrainState, metric: str) -> Path:
    """``job.model``'s current weights as a model folder, exported exactly as a fit exports its best ones (for
    weights made outside this loop, e.g. a federated average); ``state`` gives the card its history."""
    best = float("nan") if state.best_metric is None else state.best_metric
    save_best(job.run_dir / "checkpoints", job.model, best, state.best_epoch or 0.0,
              everything=job.config.train.strategy != "lora")
    return _export(job, snapshot, state, metric)


def train_model(
    snapshot: Snapshot,
    config: KeepfitConfig,
    run_dir: Path,
    *,
    resume: bool = False,
    init_from: Path | None = None,
    teacher: Path | None = None,
    replay: pd.DataFrame | None = None,
    progress: bool = True,
    on_eval: EvalHook | None = None,
) -> TrainResult:
    """Fine-tune on ``snapshot.train`` (plus ``replay`` rows), early-stop on validation, export the best.

    ``init_from``: warm start from a keepfit model folder (its head grows for new labels; old rows kept);
    ``teacher``: focal distillation from that model; ``resume``: continue from the last checkpoint in run_dir
    (bitwise the same result on CPU); ``on_eval``: see :data:`EvalHook` (pruning, budgets, successive halving).
    Writes config.yaml, metrics.jsonl, train.log, checkpoints/, model/ (not when paused).
    """
    from accelerate import Accelerator

    start = time.perf_counter()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    handler = _attach_log(run_dir)
    try:
        config = _run_config(config, run_dir, resume)
        tc = config.train
        if tc.threads:
            torch.set_num_threads(tc.threads)
        accelerator = Accelerator(cpu=not torch.cuda.is_available())
        seed_everything(tc.seed + accelerator.process_index)
        if len(snapshot.train) == 0:
            raise TrainingError(
                f"Snapshot {snapshot.id[:12]} has no training rows. Add data or change the split."
            )
        builder = build_job
        if is_generation(snapshot.task):
            from keepfit.train.sft import build_sft_job as builder
        elif is_image(snapshot.task):
            from keepfit.train.vision import build_image_job as builder
        elif tc.strategy == "fewshot":
            from keepfit.train.fewshot import build_fewshot_job as builder
        job = builder(
            snapshot,
            config,
            run_dir,
            init_from=init_from,
            teacher=teacher,
            replay=replay,
            device=accelerator.device,
            resume=resume,
        )
        metric = best_metric_name(job.task, tc.metric_for_best)
        teacher_s = job.meta.get("teacher_seconds", 0.0)
        phases = {"setup_s": time.perf_counter() - start - teacher_s, "teacher_s": teacher_s}
        t0 = time.perf_counter()
        state = fit_loop(job, accelerator, resume=resume, progress=progress, on_eval=on_eval)
        phases["loop_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        model_dir = run_dir / "model"
        stopped_by = job.meta.pop("stopped_by", None)
        if accelerator.is_main_process and stopped_by != "pause":
            model_dir = _export(job, snapshot, state, metric)
        phases["export_s"] = time.perf_counter() - t0
        accelerator.wait_for_everyone()
        accelerator.end_training()
        return TrainResult(
            run_dir=run_dir,
            model_dir=model_dir,
            history=state.history,
            best_epoch=state.best_epoch,
            best_metric=state.best_metric,
            samples_per_second=state.samples_seen
            / max(state.train_seconds + job.meta.get("feature_seconds", 0.0), 1e-9),
            padding_overhead=job.meta.get("padding_overhead", 1.0),
            wall_seconds=time.perf_counter() - start,
            labels=job.labels,
            task=job.task,
            metric_name=metric,
            precision=job.precision,
            max_length=job.max_length,
            phases=phases,
            stopped_by=stopped_by,
        )
    finally:
        log.removeHandler(handler)
        handler.close()
