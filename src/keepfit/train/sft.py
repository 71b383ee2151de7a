"""Supervised fine-tuning of a causal LM (text-generation) in keepfit's one loop.

:func:`build_sft_job` makes the :class:`~keepfit.train.job.Job` the loop trains: examples encoded with the
model's chat template and loss on the answers only (:mod:`keepfit.train.causal`), LoRA by default (peft) or
full fine-tuning, optional packing of short examples (block-diagonal attention, positions restarting per
example, so a packed example sees exactly what it would alone), distillation from the champion's next-token
distributions on replayed rows (an update), and validation by the answers' token loss. The same loop gives
checkpoints, exact resume, length bucketing and the bf16 decision. :func:`export_sft` writes the merged model
as a plain transformers folder (what ``generate`` loads) with the adapter alone beside it.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from keepfit.config import KeepfitConfig, config_hash, config_to_yaml
from keepfit.errors import DataError
from keepfit.train import prepare
from keepfit.train.causal import (
    IGNORE,
    causal_loss,
    context_limit,
    conversation_lengths,
    distill_loss,
    encode_example,
    load_causal_model,
    load_causal_tokenizer,
    messages_of,
    pack_examples,
    resolve_causal_model,
)
from keepfit.train.checkpoint import load_best
from keepfit.train.export import export_model, model_card
from keepfit.train.inference import autocast, choose_precision
from keepfit.train.job import Job
from keepfit.types import COMPLETION, PROMPT, Snapshot

__all__ = ["build_sft_job", "export_sft", "sft_frame", "ADAPTER_DIR", "VAL_BATCH"]

ADAPTER_DIR = "adapter"  # inside the model folder: the LoRA adapter alone (peft), when trained with LoRA
VAL_BATCH = 16  # validation rows per forward pass ([batch, tokens, vocabulary] logits are large)
REPLAY = "replay"
log = logging.getLogger("keepfit.train")


def sft_frame(snapshot: Snapshot, replay: pd.DataFrame | None) -> pd.DataFrame:
    """Training examples: the snapshot's train split, then the replayed rows (``replay`` True on those)."""
    train = snapshot.train[[PROMPT, COMPLETION]].assign(**{REPLAY: False})
    if replay is None or len(replay) == 0:
        return train.reset_index(drop=True)
    missing = {PROMPT, COMPLETION} - set(replay.columns)
    if missing:
        raise DataError(f"Replay rows need columns {PROMPT} and {COMPLETION}; missing {sorted(missing)}.")
    return pd.concat([train, replay[[PROMPT, COMPLETION]].assign(**{REPLAY: True})], ignore_index=True)


def _max_length(config: KeepfitConfig, tokenizer, lengths: np.ndarray) -> int:
    """The longest training sequence: the data's longest conversation, capped by model.max_length, else by the
    model's context."""
    limit = config.model.max_length or context_limit(tokenizer)
    return int(min(limit, max(int(lengths.max()) if len(lengths) else 8, 8)))


def _encode(tokenizer, frame: pd.DataFrame, max_length: int) -> tuple[list[list[int]], list[list[int]]]:
    ids, labels = [], []
    for prompt, completion in zip(frame[PROMPT], frame[COMPLETION], strict=True):
        x, y = encode_example(tokenizer, messages_of(prompt), str(completion), max_length)
        ids.append(x)
        labels.append(y)
    return ids, labels


class _Units:
    """What one training row of the loop is: an example, or (packing) a pack of examples."""

    def __init__(self, ids: list[list[int]], labels: list[list[int]], replay: np.ndarray, packs: list[list[int]]):
        self.packs = packs
        self.ids = [sum((ids[i] for i in p), []) for p in packs]
        self.labels = [sum((labels[i] for i in p), []) for p in packs]
        self.segments = [sum(([k] * len(ids[i]) for k, i in enumerate(p)), []) for p in packs]
        self.replay = np.array([bool(replay[p].any()) for p in packs], dtype=bool)
        self.lengths = np.array([len(x) for x in self.ids], dtype=np.int64)


def _batch(units: _Units, rows: np.ndarray, pad: int, packed: bool) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Right-padded model inputs and labels of ``rows``; packed rows get positions restarting per example and a
    block-diagonal causal mask (each example attends to itself only).

    Only the positions from the batch's first supervised token on get logits (``logits_to_keep``): the output
    layer over the vocabulary is skipped for the prompt, and the labels returned are trimmed to match, so
    ``causal_loss(model(**inputs).logits, labels)`` is the loss of the whole batch."""
    width = max(int(units.lengths[r]) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    seg = torch.full((len(rows), width), -1, dtype=torch.long)
    for b, r in enumerate(rows):
        n = int(units.lengths[r])
        ids[b, :n] = torch.tensor(units.ids[r])
        labels[b, :n] = torch.tensor(units.labels[r])
        mask[b, :n] = 1
        seg[b, :n] = torch.tensor(units.segments[r])
    supervised = (labels != IGNORE).any(dim=0).nonzero()
    start = max(int(supervised[0]) - 1, 0) if len(supervised) else 0  # the logits at p predict the token at p+1
    keep = {"logits_to_keep": width - start}
    if not packed:
        return {"input_ids": ids, "attention_mask": mask, **keep}, labels[:, start:]
    starts = torch.ones_like(seg, dtype=torch.bool)
    starts[:, 1:] = seg[:, 1:] != seg[:, :-1]
    idx = torch.arange(width).expand_as(seg)
    position = idx - torch.cummax(torch.where(starts, idx, torch.zeros_like(idx)), dim=1).values
    causal = torch.tril(torch.ones(width, width, dtype=torch.bool))
    same = (seg[:, :, None] == seg[:, None, :]) & (seg[:, :, None] >= 0)
    allowed = (same & causal) | torch.eye(width, dtype=torch.bool)  # a pad token sees itself: no empty rows
    return {"input_ids": ids, "attention_mask": allowed[:, None], "position_ids": position, **keep}, labels[:, start:]


def _on(inputs: dict[str, Any], device) -> dict[str, Any]:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}


def _validation(model: nn.Module, units: _Units, pad: int, precision: str, device) -> dict[str, float]:
    """Mean token loss and next-token accuracy of the validation answers (longest first, VAL_BATCH a pass)."""
    order = np.argsort(-units.lengths, kind="stable")
    loss_sum, right, count = 0.0, 0, 0
    with torch.inference_mode():
        for start in range(0, len(order), VAL_BATCH):
            inputs, labels = _batch(units, order[start:start + VAL_BATCH], pad, packed=False)
            with autocast(precision, device.type):
                logits = model(**_on(inputs, device)).logits
            target = labels[:, 1:].to(device)
            shifted = logits[:, :-1].float()
            keep = target != IGNORE
            loss_sum += float(F.cross_entropy(shifted[keep], target[keep], reduction="sum"))
            right += int((shifted.argmax(-1)[keep] == target[keep]).sum())
            count += int(keep.sum())
    return {"loss": loss_sum / max(count, 1), "token_accuracy": right / max(count, 1)}


def build_sft_job(
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
    """The loop's job for a text-generation snapshot (see the module docstring). ``init_from``: a keepfit
    model folder to continue from (an update); ``teacher``: distil from that model on the replayed rows."""
    tc = config.train
    source = resolve_causal_model(init_from or config.model.name, None if init_from else config.model.revision)
    tokenizer = load_causal_tokenizer(source)
    model = load_causal_model(source)
    model.config.use_cache = False
    frame = sft_frame(snapshot, replay)
    lengths = conversation_lengths(tokenizer, [messages_of(p) for p in frame[PROMPT]], frame[COMPLETION].tolist())
    max_length = _max_length(config, tokenizer, lengths)
    ids, labels = _encode(tokenizer, frame, max_length)
    cut = int((lengths > max_length).sum())
    if cut:
        log.warning("%d training examples are longer than max_length %d: their prompts lose tokens from the "
                    "start", cut, max_length)
    replay_rows = frame[REPLAY].to_numpy()
    example_lengths = np.array([len(x) for x in ids], dtype=np.int64)
    if tc.packing:
        packs = pack_examples(example_lengths, max_length, np.argsort(-example_lengths, kind="stable"))
    else:
        packs = [[i] for i in range(len(ids))]
    train = _Units(ids, labels, replay_rows, packs)
    val_ids, val_labels = _encode(tokenizer, snapshot.validation, max_length)
    val = _Units(val_ids, val_labels, np.zeros(len(val_ids), dtype=bool), [[i] for i in range(len(val_ids))])
    precision = choose_precision(tc.precision, device.type)
    pad = int(tokenizer.pad_token_id)
    model.to(device)
    if tc.freeze_embeddings and tc.strategy == "full":
        model.get_input_embeddings().weight.requires_grad_(False)
    trainable: nn.Module = model
    if tc.strategy == "lora":
        from keepfit.train.lora import add_lora

        trainable = add_lora(model, tc, causal=True)
    elif tc.strategy == "head":
        raise DataError(
            "train.strategy head does not apply to text-generation (there is no classification head); "
            "use lora (the default) or full."
        )
    teacher_model = _teacher(teacher, device) if teacher is not None and tc.distill_weight > 0 else None
    counters = {"tokens": 0, "supervised_tokens": 0}

    built: dict[str, Any] = {}  # the batch inputs() built, which loss_fn() of the same step reuses

    def inputs(rows: np.ndarray) -> dict[str, torch.Tensor]:
        batch, target = _batch(train, rows, pad, tc.packing)
        counters["tokens"] += int(train.lengths[rows].sum())
        built.update(rows=rows, batch=_on(batch, device), target=target)
        return built["batch"]

    def loss_fn(logits: torch.Tensor, rows: np.ndarray) -> torch.Tensor:
        if built.get("rows") is not rows:  # called without inputs() for these rows: build them here
            batch, target = _batch(train, rows, pad, tc.packing)
            built.update(rows=rows, batch=_on(batch, device), target=target)
        batch, target = built["batch"], built["target"].to(logits.device)
        counters["supervised_tokens"] += int((target[:, 1:] != IGNORE).sum())
        loss = causal_loss(logits, target)
        chosen = torch.from_numpy(train.replay[rows]).to(logits.device)
        if teacher_model is not None and bool(chosen.any()):
            with torch.inference_mode(), autocast(precision, device.type):
                taught = teacher_model(**batch).logits
            loss = loss + tc.distill_weight * distill_loss(
                logits, taught.clone(), target, chosen, tc.distill_temperature
            )
        return loss

    def evaluate_fn(m: nn.Module) -> dict[str, float]:
        return _validation(m, val, pad, precision, device)

    def val_logits(m: nn.Module) -> torch.Tensor:
        raise NotImplementedError("text-generation validates by token loss (evaluate_fn), not by logits")

    empty = torch.zeros(0)
    job = Job(
        config=config,
        run_dir=run_dir,
        task=snapshot.task,
        labels=[],
        model=trainable,
        full_model=model,
        tokenizer=tokenizer,
        train=prepare.Encoded(train.ids, train.lengths, torch.zeros(len(train.ids)), None),
        val=prepare.Encoded(val.ids, val.lengths, empty, None),
        inputs=inputs,
        val_logits=val_logits,
        precision=precision,
        max_length=max_length,
        loss_fn=loss_fn,
        evaluate_fn=evaluate_fn,
        export_fn=export_sft,
    )
    job.meta |= {
        "base_model": str(config.model.name),
        "model_path": str(source.path),
        "gguf_file": source.gguf_file,
        "init_from": str(init_from) if init_from else None,
        "teacher": str(teacher) if teacher else None,
        "replay_rows": 0 if replay is None else len(replay),
        "packing": {"sequences": len(packs), "examples": len(ids)} if tc.packing else None,
        "truncated_examples": cut,
        "token_counters": counters,
    }
    log.info("model %s, text-generation, %d examples (%d sequences), max_length %d, precision %s, strategy %s",
             source.path, len(ids), len(packs), max_length, precision, tc.strategy)
    return job


def _teacher(teacher: Path, device) -> nn.Module:
    """The champion, frozen, for distillation on the replayed rows."""
    model = load_causal_model(resolve_causal_model(teacher))
    model.config.use_cache = False
    for p in model.parameters():
        p.requires_grad_(False)
    return model.to(device).eval()


def _card_meta(job: Job, snapshot: Snapshot, state: Any, metric: str) -> dict[str, Any]:
    tc = job.config.train
    counters = job.meta.pop("token_counters", {})  # this process's run (a resumed run counts from its resume)
    seconds = max(state.train_seconds, 1e-9)
    return {
        "task": job.task,
        "labels": [],
        "max_length": job.max_length,
        "max_new_tokens": job.config.evaluate.max_new_tokens,
        "data_snapshot": snapshot.id,
        "config_hash": config_hash(job.config),
        "strategy": tc.strategy,
        "seed": tc.seed,
        "best_epoch": state.best_epoch,
        "best_metric": state.best_metric,
        "metric": metric,
        "precision": job.precision,
        "torch": torch.__version__,
        "train_tokens_per_second": counters.get("tokens", 0) / seconds,
        "train_tokens": counters.get("tokens", 0),
        "supervised_tokens": counters.get("supervised_tokens", 0),
        **job.meta,
    }


def export_sft(job: Job, snapshot: Snapshot, state: Any, metric: str) -> Path:
    """The best weights, adapters merged, as a plain transformers causal-LM folder (safetensors, tokenizer with
    its chat template, a generation_config that is greedy and stops at the end of turn), with the LoRA adapter
    alone in ``adapter/`` (saved before merging: merging folds it into the base weights)."""
    started = time.perf_counter()
    load_best(job.run_dir / "checkpoints", job.model)
    model, place_adapter = job.full_model, None
    if job.config.train.strategy == "lora":
        from keepfit.train.lora import merge_lora

        saved = job.run_dir / "adapter.partial"
        job.model.save_pretrained(str(saved))
        model = merge_lora(job.model)

        def place_adapter(folder: Path) -> None:
            saved.rename(folder / ADAPTER_DIR)

    model = model.to("cpu").eval()
    model.config.use_cache = True
    tok, gen = job.tokenizer, model.generation_config
    gen.eos_token_id, gen.pad_token_id = int(tok.eos_token_id), int(tok.pad_token_id)
    gen.do_sample, gen.temperature, gen.top_p, gen.top_k = False, None, None, None
    gen.max_new_tokens = job.config.evaluate.max_new_tokens
    meta = _card_meta(job, snapshot, state, metric)
    card = model_card(meta, state.history, config_to_yaml(job.config))
    out = export_model(model, tok, job.run_dir / "model", meta, card, None, extra=place_adapter)
    log.info("exported %s in %.1f s", out, time.perf_counter() - started)
    return out
