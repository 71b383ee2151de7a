"""`keepfit adapt`: continued masked-language-model pre-training of the encoder on unlabelled in-domain text.

:func:`adapt` reads the text (:mod:`keepfit.data.unlabelled`), holds out a share of its distinct texts, and trains
``AutoModelForMaskedLM`` in keepfit's one loop (:func:`keepfit.train.loop.fit_loop`): the same length-bucketed
batches, bf16 decision, atomic checkpoints and exact resume. Masks come from transformers' MLM collator
(``DataCollatorForLanguageModeling(whole_word_mask=True)``) with its generator seeded from (seed, epoch, batch),
so a resumed run masks exactly as an uninterrupted one. The prediction head runs on the masked positions only
(:class:`MaskedPositionsLM`). The export is a plain encoder folder that `keepfit fit` starts from
(``model.name: <folder>``), keeping the base folder's sentence-transformers pooling declaration.
"""

from __future__ import annotations

import json
import logging
import math
import secrets
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from keepfit._io import atomic_dir, atomic_write_text
from keepfit.config import KeepfitConfig, config_hash
from keepfit.data.unlabelled import UnlabelledText, read_unlabelled
from keepfit.errors import ConfigError, ModelError, TrainingError
from keepfit.store import Store
from keepfit.train import prepare
from keepfit.train.batching import collate, sequence_cap, tokenize
from keepfit.train.checkpoint import TrainState, load_best
from keepfit.train.inference import autocast, choose_precision
from keepfit.train.job import Job
from keepfit.train.loop import EvalHook, _attach_log, _run_config, fit_loop, seed_everything
from keepfit.train.model import load_tokenizer, quiet_transformers, resolve_model_path

__all__ = [
    "AdaptResult", "adapt", "MaskedPositionsLM", "mlm_batch", "mlm_tokens", "mlm_collator", "ADAPT_META",
    "MLM_HEAD_FILE", "MaskableTokens",
]

log = logging.getLogger("keepfit.train")

ADAPT_META = "keepfit_adapt.json"  # not keepfit.json: `keepfit fit` must read the folder as a plain encoder
MLM_HEAD_FILE = "keepfit_mlm_head.safetensors"  # the trained prediction head, so a later adapt continues it
RUN_TEXT_FILE = "adapt_text.json"  # the run's text file and its hash (a resume must see the same text)
BEFORE_FILE = "held_out_before.json"
HELD_OUT_BATCH = 64
IGNORE = -100  # transformers' label of an unmasked position
# the sentence-transformers files of a base folder (the pooling declaration `model.pooling: auto` reads)
_SENTENCE_TRANSFORMERS_FILES = ("modules.json", "sentence_bert_config.json", "config_sentence_transformers.json")


@dataclass
class AdaptResult:
    """What adaptation made. Losses are the mean cross-entropy (nats) per masked token of the held-out texts,
    with the same masks before and after; ``model_dir`` is None when ``on_eval`` paused the run."""

    model_dir: Path | None
    run_dir: Path
    base_model: str
    text_sha256: str
    train_rows: int
    held_out_rows: int
    skipped_rows: int
    steps: int
    held_out_loss_before: float | None
    held_out_loss_after: float | None
    samples_per_second: float
    wall_seconds: float
    precision: str
    max_length: int
    head_loaded: bool
    history: list[dict[str, Any]] = field(default_factory=list)
    stopped_by: str | None = None

    @property
    def perplexity_before(self) -> float | None:
        return _perplexity(self.held_out_loss_before)

    @property
    def perplexity_after(self) -> float | None:
        return _perplexity(self.held_out_loss_after)

    @property
    def next_setting(self) -> str:
        """The override that makes `keepfit fit` start from the adapted encoder."""
        return f"model.name={self.model_dir}"


def _perplexity(loss: float | None) -> float | None:
    return None if loss is None else math.exp(min(loss, 50.0))


# --------------------------------------------------------------------------------------------------- masking


@dataclass
class MaskableTokens:
    """Token ids, character offsets and special-token flags per text (offsets: whole-word masking's words)."""

    ids: list[list[int]]
    offsets: list[list[tuple[int, int]]]
    special: list[list[int]]
    lengths: np.ndarray


def mlm_tokens(tokenizer, texts: list[str], max_length: int) -> MaskableTokens:
    """Token ids, offsets and special-token flags of ``texts``, truncated to ``max_length`` tokens."""
    if not texts:
        return MaskableTokens([], [], [], np.zeros(0, dtype=np.int64))
    encoded = tokenizer(
        texts, truncation=True, max_length=max_length, padding=False, return_offsets_mapping=True,
        return_special_tokens_mask=True, return_attention_mask=False, return_token_type_ids=False,
    )
    ids = encoded["input_ids"]
    return MaskableTokens(ids, encoded["offset_mapping"], encoded["special_tokens_mask"],
                   np.array([len(x) for x in ids], dtype=np.int64))


def mlm_collator(tokenizer, probability: float, whole_word: bool):
    """transformers' MLM collator (for :func:`mlm_batch`); whole words are always replaced by [MASK] (the
    collator's rule for them)."""
    from transformers import DataCollatorForLanguageModeling

    replace = {"mask_replace_prob": 1.0, "random_replace_prob": 0.0} if whole_word else {}
    return DataCollatorForLanguageModeling(
        tokenizer, mlm=True, mlm_probability=probability, whole_word_mask=whole_word, **replace
    )


def _batch_seed(*key: int) -> int:
    """A 63-bit torch seed from a tuple of ints (seed, stream, epoch, batch), each taken modulo 2**32."""
    return int(np.random.SeedSequence([k % 2**32 for k in key]).generate_state(2, np.uint64)[0] >> 1)


def mlm_batch(
    collator, tokens: MaskableTokens, rows: np.ndarray, pad_id: int, seed: int
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Masked model inputs of ``rows`` and the original ids at the masked positions.

    Returns ``({input_ids, attention_mask: [B, T], masked: bool [B, T]}, targets [n_masked])``: the collator's
    masking (whole words when it was built so) drawn from a generator seeded with ``seed`` alone, so the same
    rows and seed always give the same masks.
    """
    batch = collate(tokens.ids, rows, pad_id)
    width = batch["input_ids"].shape[1]
    special = torch.ones((len(rows), width), dtype=torch.long)  # padding is never masked
    offsets = torch.zeros((len(rows), width, 2), dtype=torch.long)
    for i, r in enumerate(rows):
        n = int(tokens.lengths[r])
        special[i, :n] = torch.tensor(tokens.special[r], dtype=torch.long)
        offsets[i, :n] = torch.tensor(tokens.offsets[r], dtype=torch.long).reshape(n, 2)
    collator.generator = torch.Generator().manual_seed(seed)
    ids, labels = collator.torch_mask_tokens(
        batch["input_ids"].clone(), special_tokens_mask=special,
        offset_mapping=offsets if collator.whole_word_mask else None,
    )
    masked = labels != IGNORE
    return {"input_ids": ids, "attention_mask": batch["attention_mask"], "masked": masked}, labels[masked]


class MaskedPositionsLM(nn.Module):
    """A masked LM whose prediction head runs on the masked positions only.

    ``forward(input_ids, attention_mask, masked)`` returns ``.logits`` [n_masked, vocabulary] in the order of
    ``masked.nonzero()``. The head over the vocabulary costs about as much per token as MiniLM's six layers, and
    only ~15% of the tokens need it. Architectures whose head is one module beside the encoder (BERT's ``cls``,
    RoBERTa's ``lm_head``) take that path; others run whole and are indexed afterwards.
    """

    def __init__(self, mlm: nn.Module) -> None:
        super().__init__()
        self.mlm = mlm
        self.config = mlm.config  # the optimiser's head/encoder split reads these two
        self.base_model_prefix = mlm.base_model_prefix
        heads = [name for name, child in mlm.named_children() if child is not mlm.base_model]
        self.head_name = heads[0] if len(heads) == 1 else None

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, masked: torch.Tensor):
        from transformers.modeling_outputs import MaskedLMOutput

        if self.head_name is None:
            logits = self.mlm(input_ids=input_ids, attention_mask=attention_mask).logits[masked]
        else:
            hidden = self.mlm.base_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            logits = getattr(self.mlm, self.head_name)(hidden[masked])
        return MaskedLMOutput(logits=logits)


def _masked_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the masked tokens (0 for a batch where nothing was masked: short texts)."""
    return F.cross_entropy(logits.float(), targets, reduction="sum") / max(len(targets), 1)


def _held_out_metrics(model: nn.Module, batches: list[tuple[dict[str, torch.Tensor], torch.Tensor]],
                      precision: str, device: torch.device) -> dict[str, float]:
    """Mean masked-token loss (nats), its perplexity and the masked-token accuracy over fixed held-out masks."""
    loss_sum, right, count = 0.0, 0, 0
    with torch.inference_mode(), autocast(precision, device.type):
        for inputs, targets in batches:
            logits = model(**{k: v.to(device) for k, v in inputs.items()}).logits.float()
            targets = targets.to(device)
            loss_sum += float(F.cross_entropy(logits, targets, reduction="sum"))
            right += int((logits.argmax(-1) == targets).sum())
            count += len(targets)
    if count == 0:
        return {}
    loss = loss_sum / count
    return {"loss": loss, "perplexity": _perplexity(loss), "token_accuracy": right / count}


# ------------------------------------------------------------------------------------------------------ data


def _held_out_split(texts: list[str], share: float, cap: int, seed: int) -> tuple[np.ndarray, list[str]]:
    """Training row indices and the held-out texts: ``share`` of the distinct texts (at most ``cap``, at least
    one when ``share`` > 0), chosen at random; every copy of a held-out text leaves training."""
    distinct = list(dict.fromkeys(texts))
    n = min(cap, round(share * len(distinct)), len(distinct) - 1)
    if share > 0 and len(distinct) >= 2:
        n = max(n, 1)
    rng = np.random.default_rng([seed % 2**32, 1])
    held = [distinct[i] for i in sorted(rng.permutation(len(distinct))[:n])]
    chosen = set(held)
    return np.array([i for i, t in enumerate(texts) if t not in chosen], dtype=np.int64), held


def _max_length(tokenizer, texts: list[str], configured: int | None, limit: int) -> tuple[int, int]:
    """The token cap (configured, else the 99th percentile length) and how many texts it truncates."""
    lengths = np.array([len(x) for x in tokenize(tokenizer, texts, limit)], dtype=np.int64)
    cap = min(configured, limit) if configured else sequence_cap(lengths, limit)
    return cap, int((lengths > cap).sum())


# ----------------------------------------------------------------------------------------------------- model


def _load_mlm(path: Path) -> tuple[nn.Module, bool]:
    """``AutoModelForMaskedLM`` from ``path`` and whether its prediction head came from the folder (a sentence
    encoder ships none: the head starts fresh, seeded; a folder that `keepfit adapt` wrote has its head file)."""
    from transformers import AutoModelForMaskedLM

    try:
        with quiet_transformers():
            model, info = AutoModelForMaskedLM.from_pretrained(str(path), output_loading_info=True)
    except (OSError, ValueError, KeyError) as err:
        raise ModelError(f"Could not load {path} as a masked language model: {err}. Expected an encoder such "
                         "as BERT, RoBERTa or MiniLM (keepfit adapt trains encoders, not causal LMs).") from None
    head_file = path / MLM_HEAD_FILE
    if head_file.exists():
        unknown = model.load_state_dict(load_file(str(head_file)), strict=False).unexpected_keys
        if unknown:
            raise ModelError(f"{head_file} holds tensors {type(model).__name__} lacks ({unknown[:3]}): it was not "
                             f"written for this model. Remove the file to start the MLM head fresh.")
        log.info("MLM head: loaded from %s", head_file)
        return model, True
    prefix = model.base_model_prefix + "."
    fresh = sorted(k for k in info["missing_keys"] if not k.startswith(prefix))
    if fresh:
        log.warning("MLM head: %s has no prediction head (%d tensors: %s); it starts fresh, so the loss before "
                    "adaptation is that of an untrained head", path, len(fresh), ", ".join(fresh[:4]))
    return model, not fresh


def _head_state(mlm: nn.Module) -> dict[str, torch.Tensor]:
    """The prediction head's tensors, without the output matrix tied to the word embeddings (saved with them)."""
    prefix = mlm.base_model_prefix + "."
    tied = mlm.get_input_embeddings().weight
    shared = {n for n, p in mlm.named_parameters(remove_duplicate=False) if p is tied}
    return {k: v.detach().contiguous().clone() for k, v in mlm.state_dict().items()
            if not k.startswith(prefix) and k not in shared}


# ------------------------------------------------------------------------------------------------------- run


def _adapt_train_config(config: KeepfitConfig, train_rows: int) -> KeepfitConfig:
    """The config the loop runs: ``train`` rebuilt from ``adapt`` (precision, threads, bucketing, clipping and
    the checkpoint interval stay the project's)."""
    ac, tc = config.adapt, config.train
    epochs = ac.epochs
    if ac.max_steps is not None:
        per_epoch = math.ceil(train_rows / ac.batch_size)
        epochs = min(epochs, (ac.max_steps - 0.5) / per_epoch)  # the loop's ceil(epochs x batches) = max_steps
    train = tc.model_copy(update={
        "strategy": "full", "epochs": epochs, "batch_size": ac.batch_size, "lr": ac.lr, "head_lr": ac.head_lr,
        "weight_decay": ac.weight_decay, "warmup_ratio": ac.warmup_ratio, "seed": ac.seed, "optimizer": "adamw",
        "scheduler": "linear", "layerwise_lr_decay": None, "grad_accum": 1, "imbalance": "none",
        "metric_for_best": "loss", "average_checkpoints": 1, "early_stopping_patience": None,
        "evals_per_epoch": ac.evals_per_epoch,
    })
    return config.model_copy(update={"train": train})


def _build_job(config: KeepfitConfig, corpus: UnlabelledText, run_dir: Path, device: torch.device) -> Job:
    """The loop's job: the masked LM behind :class:`MaskedPositionsLM`, the training texts as a seeded stream
    of masked batches, the held-out texts as fixed masked batches for the loss."""
    ac = config.adapt
    source = resolve_model_path(config.model.name, config.model.revision)
    tokenizer = load_tokenizer(source)
    if tokenizer.mask_token is None:
        raise ModelError(f"The tokenizer of {source} has no mask token: masked-language-model training needs one. "
                         "Adapt an encoder such as BERT, RoBERTa or MiniLM.")
    whole_word = ac.whole_word_mask and tokenizer.is_fast
    if ac.whole_word_mask and not whole_word:
        log.warning("adapt.whole_word_mask needs a fast tokenizer (its offsets mark the words); %s has a slow one, "
                    "so single tokens are masked", source)
    mlm, head_loaded = _load_mlm(source)
    train_rows, held = _held_out_split(corpus.texts, ac.held_out, ac.max_held_out_rows, ac.seed)
    texts = [corpus.texts[i] for i in train_rows]  # never empty: one distinct text at least stays for training
    limit = prepare.model_max_length(mlm, tokenizer)
    max_length, cut = _max_length(tokenizer, texts, ac.max_length, limit)
    if cut:
        log.warning("%d of %d training texts are longer than %d tokens and are truncated", cut, len(texts), max_length)
    train, val = mlm_tokens(tokenizer, texts, max_length), mlm_tokens(tokenizer, held, max_length)
    collator = mlm_collator(tokenizer, ac.mask_probability, whole_word)
    pad = int(tokenizer.pad_token_id or 0)
    precision = choose_precision(config.train.precision, device.type)
    order = np.argsort(val.lengths, kind="stable")
    val_batches = [mlm_batch(collator, val, order[s:s + HELD_OUT_BATCH], pad, _batch_seed(ac.seed, 1, k))
                   for k, s in enumerate(range(0, len(order), HELD_OUT_BATCH))]
    mlm.to(device)
    model = MaskedPositionsLM(mlm)
    targets: dict[str, torch.Tensor] = {}  # the masked ids of the batch the stream handed out last

    def batches(plan: list[list[int]], start: int, epoch: int) -> Iterator[dict[str, torch.Tensor]]:
        for index in range(start, len(plan)):
            inputs, targets["now"] = mlm_batch(collator, train, np.array(plan[index]), pad,
                                               _batch_seed(ac.seed, 0, epoch, index))
            yield {k: v.to(device) for k, v in inputs.items()}

    def unused(_: Any) -> torch.Tensor:
        raise NotImplementedError("adapt feeds the loop through its masked batch stream and scores by MLM loss")

    job = Job(
        config=_adapt_train_config(config, len(texts)), run_dir=run_dir, task=config.task, labels=[],
        model=model, full_model=mlm, tokenizer=tokenizer,
        train=prepare.Encoded(train.ids, train.lengths, torch.zeros(len(texts)), None),
        val=prepare.Encoded(val.ids, val.lengths, torch.zeros(len(held)), None),
        inputs=unused, val_logits=unused, precision=precision, max_length=max_length,
        loss_fn=lambda logits, _rows: _masked_loss(logits, targets["now"].to(logits.device)),
        evaluate_fn=lambda m: _held_out_metrics(m, val_batches, precision, device),
        batches=batches,
    )
    job.meta |= {"model_path": str(source), "head_loaded": head_loaded, "whole_word_mask": whole_word,
                 "truncated_texts": cut, "held_out_texts": len(held), "train_texts": len(texts)}
    log.info("adapt %s on %d texts (%d held out), max_length %d, precision %s, masking %s at %.2f", source,
             len(texts), len(held), max_length, precision, "whole words" if whole_word else "tokens",
             ac.mask_probability)
    return job


def _loss_before(job: Job, run_dir: Path) -> dict[str, float]:
    """Held-out metrics of the model as loaded (kept in the run folder: a resumed run reports the same)."""
    path = run_dir / BEFORE_FILE
    if path.exists():
        return json.loads(path.read_text(encoding="utf-8"))
    job.model.eval()
    metrics = job.evaluate_fn(job.model) if len(job.val.ids) else {}
    job.model.train()
    atomic_write_text(path, json.dumps(metrics))
    log.info("held-out MLM before adaptation: %s", json.dumps(metrics))
    return metrics


def _record_text(run_dir: Path, corpus: UnlabelledText, resume: bool) -> None:
    """Write the run's text file and hash; on resume, refuse a text that changed (the weights would differ)."""
    path = run_dir / RUN_TEXT_FILE
    if resume and path.exists():
        recorded = json.loads(path.read_text(encoding="utf-8"))
        if recorded["sha256"] != corpus.sha256:
            raise TrainingError(f"{corpus.path} is not the text run {run_dir} started on ({recorded['path']}, sha256 "
                                f"{recorded['sha256'][:12]}; this one {corpus.sha256[:12]}): resuming would not "
                                "continue that run. Resume with that file, or start a new run without --resume.")
        return
    atomic_write_text(path, json.dumps({"path": str(corpus.path.resolve()), "sha256": corpus.sha256}))


def _text_path(text: str | Path | None, resume: Path | None) -> Path:
    """The text to read: the one given, else the one a resumed run recorded."""
    if text is not None:
        return Path(text)
    recorded = resume / RUN_TEXT_FILE if resume is not None else None
    if recorded is None or not recorded.exists():
        raise ConfigError("keepfit adapt needs the unlabelled text: pass --text FILE (one text per line, or a table "
                          "with the data.text_column column).")
    return Path(json.loads(recorded.read_text(encoding="utf-8"))["path"])


def _new_run_dir(config: KeepfitConfig) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    return Store.at(config.store).root / "adapted" / f"{stamp}-adapt-{secrets.token_hex(3)}"


# ---------------------------------------------------------------------------------------------------- export


def _copy_pooling_files(source: Path, folder: Path) -> None:
    """The base folder's sentence-transformers files (modules.json, 1_Pooling/, ...), so `model.pooling: auto`
    reads mean pooling from the adapted folder as from the base, and sentence-transformers loads it."""
    for name in _SENTENCE_TRANSFORMERS_FILES:
        if (source / name).is_file():
            shutil.copy2(source / name, folder / name)
    for sub in source.iterdir():
        if sub.is_dir() and sub.name[:1].isdigit() and "_" in sub.name:  # 1_Pooling, 2_Normalize
            shutil.copytree(sub, folder / sub.name)


def _card(meta: dict[str, Any]) -> str:
    def fmt(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.4f}"

    return f"""---
library_name: transformers
tags: [keepfit, domain-adaptation, fill-mask]
---

# keepfit adapted encoder

Continued masked-language-model pre-training of `{meta["base_model"]}` on unlabelled in-domain text.

- text: `{meta["text"]}` (sha256 `{meta["text_sha256"]}`)
- rows: {meta["train_rows"]} trained on, {meta["held_out_rows"]} held out, {meta["skipped_rows"]} empty skipped
- steps: {meta["steps"]} (epochs {meta["epochs"]:.2f}, batch {meta["batch_size"]}, lr {meta["lr"]})
- masking: {"whole words" if meta["whole_word_mask"] else "tokens"}, probability {meta["mask_probability"]}, seed \
{meta["seed"]}
- max length: {meta["max_length"]} tokens; precision {meta["precision"]}

## Held-out masked-token loss (same masks before and after)

| | loss (nats) | perplexity |
|---|---|---|
| before | {fmt(meta["held_out_loss_before"])} | {fmt(_perplexity(meta["held_out_loss_before"]))} |
| after | {fmt(meta["held_out_loss_after"])} | {fmt(_perplexity(meta["held_out_loss_after"]))} |

{"The base folder had no MLM head: the loss before is that of a freshly initialised head." if not meta["head_loaded"]
 else ""}

## Use

`keepfit fit --set model.name=<this folder>` (or `model: {{name: <this folder>}}` in keepfit.yaml). The folder is
a plain encoder (`AutoModel.from_pretrained`) with its tokenizer; the prediction head is kept in
`{MLM_HEAD_FILE}` for a later `keepfit adapt` from here.
"""


def _export(job: Job, state: TrainState, out: Path, meta: dict[str, Any]) -> Path:
    """The best held-out weights as a plain encoder folder: the base's own encoder class (with its pooler, which
    MLM training leaves untouched) holding the adapted weights, the tokenizer, the pooling files, the MLM head
    apart, the card and ``keepfit_adapt.json``; written aside and renamed into place."""
    from transformers import AutoModel

    load_best(job.run_dir / "checkpoints", job.model)
    mlm, source = job.full_model.to("cpu").eval(), Path(job.meta["model_path"])
    with quiet_transformers():
        encoder = AutoModel.from_pretrained(str(source))
    loaded = encoder.load_state_dict(mlm.base_model.state_dict(), strict=False)
    if loaded.unexpected_keys or any("pooler" not in k for k in loaded.missing_keys):
        raise ModelError(f"The adapted encoder does not fit {type(encoder).__name__} of {source} (unexpected "
                         f"{loaded.unexpected_keys[:3]}, missing {loaded.missing_keys[:3]}).")
    with atomic_dir(out, overwrite=True) as tmp, quiet_transformers():
        encoder.save_pretrained(str(tmp), safe_serialization=True)
        job.tokenizer.save_pretrained(str(tmp))
        _copy_pooling_files(source, tmp)
        save_file(_head_state(mlm), str(tmp / MLM_HEAD_FILE))
        (tmp / ADAPT_META).write_text(json.dumps(meta, indent=2), encoding="utf-8")
        (tmp / "README.md").write_text(_card(meta), encoding="utf-8")
    log.info("adapted encoder written to %s", out)
    return out


# -------------------------------------------------------------------------------------------------- the stage


def adapt(
    config: KeepfitConfig,
    text: str | Path | None = None,
    *,
    out: str | Path | None = None,
    resume: str | Path | None = None,
    progress: bool = True,
    on_eval: EvalHook | None = None,
) -> AdaptResult:
    """Continue masked-language-model pre-training of ``config.model.name`` on the unlabelled ``text``.

    ``text``: a plain text file (one text per line) or a CSV/TSV/JSONL/Parquet table with ``data.text_column``
    (checked before anything trains: DataError for a missing, empty, binary or textless file); optional when
    resuming (the run's own file). ``out``: the model folder (default ``<run>/model``; must not exist). ``resume``:
    a run folder (``<store>/adapted/<id>``) to continue from its last checkpoint, bitwise as if never stopped.
    ``on_eval``: see :data:`keepfit.train.loop.EvalHook` ("pause" checkpoints and exports nothing). The settings
    are ``config.adapt``; the run folder keeps config.yaml, train.log, metrics.jsonl and checkpoints/.
    """
    started = time.perf_counter()
    if config.task in ("text-generation", "image-classification"):
        raise ConfigError(f"keepfit adapt continues masked-language-model pre-training of a text encoder; the "
                          f"config's task is {config.task}. Use it with a text-classification or regression "
                          "project.")
    resume_dir = Path(resume) if resume is not None else None
    if resume_dir is not None and not (resume_dir / "config.yaml").exists():
        raise ConfigError(f"--resume {resume_dir}: not an adapt run folder (no config.yaml in it). Name a folder "
                          "under <store>/adapted/.")
    target = Path(out) if out is not None else None
    if target is not None and target.exists() and resume_dir is None:
        raise ConfigError(f"--out {target} already exists; name a new folder (the adapted model is written there "
                          "whole, or not at all).")
    corpus = read_unlabelled(_text_path(text, resume_dir), config)  # bad input fails before any run folder
    run_dir = resume_dir or _new_run_dir(config)
    run_dir.mkdir(parents=True, exist_ok=True)
    handler = _attach_log(run_dir)
    try:
        config = _run_config(config, run_dir, resume_dir is not None)
        _record_text(run_dir, corpus, resume_dir is not None)
        log.info("text %s: %d texts read, %d empty skipped, %d kept (sha256 %s)", corpus.path, corpus.rows_read,
                 corpus.empty_skipped, len(corpus.texts), corpus.sha256[:12])
        if config.train.threads:
            torch.set_num_threads(config.train.threads)
        from accelerate import Accelerator

        accelerator = Accelerator(cpu=not torch.cuda.is_available())
        seed_everything(config.adapt.seed)  # the fresh head's initial weights are part of the run
        job = _build_job(config, corpus, run_dir, accelerator.device)
        before = _loss_before(job, run_dir)
        state = fit_loop(job, accelerator, resume=resume_dir is not None, progress=progress, on_eval=on_eval)
        stopped = job.meta.pop("stopped_by", None)
        after = state.best_metric if job.val.ids else None
        meta = _meta(config, corpus, job, state, before.get("loss"), after)
        model_dir = None if stopped == "pause" else _export(job, state, target or run_dir / "model", meta)
        accelerator.end_training()
        seconds = max(state.train_seconds, 1e-9)
        return AdaptResult(
            model_dir=model_dir, run_dir=run_dir, base_model=config.model.name, text_sha256=corpus.sha256,
            train_rows=job.meta["train_texts"], held_out_rows=job.meta["held_out_texts"],
            skipped_rows=corpus.empty_skipped, steps=state.step, held_out_loss_before=before.get("loss"),
            held_out_loss_after=after, samples_per_second=state.samples_seen / seconds,
            wall_seconds=time.perf_counter() - started, precision=job.precision, max_length=job.max_length,
            head_loaded=job.meta["head_loaded"], history=state.history, stopped_by=stopped,
        )
    finally:
        log.removeHandler(handler)
        handler.close()


def _meta(config: KeepfitConfig, corpus: UnlabelledText, job: Job, state: TrainState, before: float | None,
          after: float | None) -> dict[str, Any]:
    ac, tc = config.adapt, job.config.train
    return {
        "kind": "adapted-encoder", "base_model": config.model.name, "model_path": job.meta["model_path"],
        "text": str(corpus.path), "text_sha256": corpus.sha256, "train_rows": job.meta["train_texts"],
        "held_out_rows": job.meta["held_out_texts"], "skipped_rows": corpus.empty_skipped, "steps": state.step,
        "epochs": tc.epochs, "batch_size": tc.batch_size, "lr": tc.lr, "mask_probability": ac.mask_probability,
        "whole_word_mask": job.meta["whole_word_mask"], "seed": ac.seed, "max_length": job.max_length,
        "truncated_texts": job.meta["truncated_texts"], "precision": job.precision,
        "held_out_loss_before": before, "held_out_loss_after": after, "head_loaded": job.meta["head_loaded"],
        "config_hash": config_hash(config), "adapt": ac.model_dump(mode="json"), "torch": torch.__version__,
        "run_dir": str(job.run_dir),
    }
