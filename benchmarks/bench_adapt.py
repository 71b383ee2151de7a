"""Domain adaptation on banking77: does `keepfit adapt` (continued MLM pre-training on the unlabelled training
texts) help a fine-tune on a small labelled subset?

    python benchmarks/bench_adapt.py adapt [--epochs 3] [--set adapt.lr=1e-4 ...] [--tag NAME]
    python benchmarks/bench_adapt.py finetune --arm base|adapted --seed S [--fraction 0.1] [--tag NAME]
    python benchmarks/bench_adapt.py report [--tag NAME]
    python benchmarks/bench_adapt.py speed [--steps 20]

Each piece is its own invocation (run them under ``flock /tmp/keepfit-cpu.lock`` on a shared machine) and writes
its JSON to benchmarks/results/:

- ``adapt``: all-MiniLM-L6-v2 adapted on the text column of DATA_DIR/train.csv (labels unused; the test texts are
  never seen) with the config's ``adapt`` settings; the adapted folder goes to WORK/adapted[-TAG]. JSON: time,
  steps, samples/s, held-out MLM loss and perplexity before and after (5% of the distinct texts held out, the
  same masks before and after; the packaged model has no MLM head, so "before" is a fresh head's loss).
- ``finetune``: keepfit's default fine-tuning recipe on a stratified ``fraction`` of train.csv drawn with seed S
  (the same rows for both arms), 10% of those per label held out for validation, train.seed S, started from the
  packaged model (``base``) or the adapted folder (``adapted``); test accuracy and macro-F1 on all of test.csv.
- ``report``: the per-seed pairs, means, and the paired difference with a t interval over seeds, into
  results/bench_adapt[-TAG].json. The base arm's runs are shared by every TAG (they do not depend on it).
- ``speed``: a training step (forward and backward, batch 32) with the prediction head on the masked positions
  only, as keepfit trains, against the head on every position, on the same masked batches.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_train import _scores, keepfit_snapshot, load_data, model_path  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "banking77"
DEFAULT_WORK = Path(tempfile.gettempdir()) / "keepfit-bench-adapt"


def _suffix(tag: str | None) -> str:
    return f"-{tag}" if tag else ""


def run_adapt(args: argparse.Namespace) -> dict:
    from keepfit.config import load_config
    from keepfit.train.adapt import adapt

    work = Path(args.work)
    out = work / f"adapted{_suffix(args.tag)}"
    if out.exists():
        raise SystemExit(f"{out} exists; remove it to adapt again")
    overrides = [f"model.name={model_path()}", f"store={work / 'store'}", f"adapt.epochs={args.epochs}", *args.set]
    config = load_config(None, overrides)
    train = pd.read_csv(Path(args.data) / "train.csv")
    text = work / "banking77-train-texts.txt"  # the texts alone: no label reaches adaptation
    work.mkdir(parents=True, exist_ok=True)
    text.write_text("\n".join(train["text"].astype(str)) + "\n", encoding="utf-8")
    started = time.perf_counter()
    result = adapt(config, text, out=out, progress=False)
    return {
        "piece": "adapt", "tag": args.tag, "overrides": overrides, "adapt_settings": config.adapt.model_dump(),
        "model_dir": str(result.model_dir), "wall_seconds": time.perf_counter() - started,
        "train_seconds": result.history[-1]["train_seconds"] if result.history else None,
        "train_rows": result.train_rows, "held_out_rows": result.held_out_rows, "steps": result.steps,
        "samples_per_second": result.samples_per_second, "precision": result.precision,
        "max_length": result.max_length, "head_loaded": result.head_loaded,
        "held_out_loss_before": result.held_out_loss_before, "held_out_loss_after": result.held_out_loss_after,
        "perplexity_before": result.perplexity_before, "perplexity_after": result.perplexity_after,
        "history": result.history,
    }


def run_speed(args: argparse.Namespace) -> dict:
    """Training-step time of the MLM with its prediction head on the masked positions only (keepfit's
    MaskedPositionsLM) against the head on every position (what AutoModelForMaskedLM's forward does), on the same
    masked batches of banking77 texts; the two alternate, best and median of ``--steps`` each."""
    import torch
    from transformers import AutoModelForMaskedLM

    from keepfit.train.adapt import MaskedPositionsLM, mlm_batch, mlm_collator, mlm_tokens
    from keepfit.train.inference import autocast, choose_precision
    from keepfit.train.model import load_tokenizer

    tokenizer = load_tokenizer(model_path())
    mlm = AutoModelForMaskedLM.from_pretrained(str(model_path()))
    texts = pd.read_csv(Path(args.data) / "train.csv")["text"].astype(str).tolist()
    rng = np.random.default_rng(0)
    tokens = mlm_tokens(tokenizer, texts, 56)
    collator, precision = mlm_collator(tokenizer, 0.15, True), choose_precision("auto")
    pad = tokenizer.pad_token_id
    batches = [mlm_batch(collator, tokens, rng.choice(len(texts), 32, replace=False), pad, seed=i)
               for i in range(args.steps + 2)]
    model = MaskedPositionsLM(mlm).train()
    head = model.head_name  # BERT's cls
    times: dict[str, list[float]] = {"masked positions": [], "every position": []}
    for i, (inputs, targets) in enumerate(batches):
        for mode in times:
            model.head_name = head if mode == "masked positions" else None
            started = time.perf_counter()
            with autocast(precision):
                logits = model(**inputs).logits
            torch.nn.functional.cross_entropy(logits.float(), targets).backward()
            model.zero_grad(set_to_none=True)
            if i >= 2:  # the first two are warm-up
                times[mode].append(time.perf_counter() - started)
    summary = {mode: {"best_ms": 1000 * min(t), "median_ms": 1000 * float(np.median(t))} for mode, t in times.items()}
    return {"piece": "speed", "precision": precision, "batch_size": 32, "steps": args.steps,
            "threads": torch.get_num_threads(), "step_forward_backward": summary,
            "median_speedup": summary["every position"]["median_ms"] / summary["masked positions"]["median_ms"]}


def labelled_subset(train: pd.DataFrame, fraction: float, seed: int) -> pd.DataFrame:
    """A stratified ``fraction`` of the rows (at least 2 per label, so each keeps one for training)."""
    picks = [g.sample(n=max(2, round(fraction * len(g))), random_state=seed) for _, g in train.groupby("label")]
    return pd.concat(picks).reset_index(drop=True)


def run_finetune(args: argparse.Namespace) -> dict:
    from keepfit.config import load_config
    from keepfit.train import load_predictor, train_model

    train, test = load_data(Path(args.data), None)
    subset = labelled_subset(train, args.fraction, args.seed)
    start = model_path() if args.arm == "base" else Path(args.work) / f"adapted{_suffix(args.tag)}"
    if not Path(start).exists():
        raise SystemExit(f"{start} does not exist: run the adapt piece first")
    config = load_config(None, [f"model.name={start}", f"train.seed={args.seed}", *args.set])
    with tempfile.TemporaryDirectory() as tmp:
        snapshot = keepfit_snapshot(subset, test, Path(tmp), f"banking77-{args.fraction}-s{args.seed}")
        started = time.perf_counter()
        result = train_model(snapshot, config, Path(tmp) / "run", progress=False)
        train_seconds = time.perf_counter() - started
        predictor = load_predictor(result.model_dir)
        preds = predictor.predict(test["text"].tolist(), batch_size=64)
        pred = [preds.labels[i] for i in preds.outputs.argmax(1)]
    return {
        "piece": "finetune", "arm": args.arm, "seed": args.seed, "tag": _arm_tag(args), "fraction": args.fraction,
        "model": str(start), "train_rows": len(snapshot.train), "validation_rows": len(snapshot.validation),
        "test_rows": len(test), "train_wall_seconds": train_seconds, "precision": result.precision,
        "best_validation_accuracy": result.best_metric, "overrides": args.set,
        **_scores(test["label"].tolist(), pred),
    }


def _arm_tag(args: argparse.Namespace) -> str | None:
    """The base arm does not depend on the adapted variant: every variant is compared with the same base runs."""
    return None if args.arm == "base" else args.tag


def report(args: argparse.Namespace) -> dict:
    from scipy import stats

    suffix = _suffix(args.tag)
    adapt_file = RESULTS / f"bench_adapt_adapt{suffix}.json"
    pieces = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("bench_adapt_ft_*_s*.json"))]
    pieces = [p for p in pieces if (p["arm"] == "base" and p.get("tag") is None) or
              (p["arm"] == "adapted" and p.get("tag") == args.tag)]
    by_seed: dict[int, dict[str, dict]] = {}
    for piece in pieces:
        by_seed.setdefault(piece["seed"], {})[piece["arm"]] = piece
    pairs = {s: arms for s, arms in sorted(by_seed.items()) if {"base", "adapted"} <= set(arms)}
    base = np.array([arms["base"]["test_accuracy"] for arms in pairs.values()])
    adapted = np.array([arms["adapted"]["test_accuracy"] for arms in pairs.values()])
    diff = adapted - base
    interval = None
    if len(diff) >= 2:
        half = stats.t.ppf(0.975, len(diff) - 1) * diff.std(ddof=1) / np.sqrt(len(diff))
        interval = [float(diff.mean() - half), float(diff.mean() + half)]
    summary = {
        "adapt": json.loads(adapt_file.read_text()) if adapt_file.exists() else None,
        "seeds": list(pairs),
        "per_seed": {s: {arm: {k: arms[arm][k] for k in ("test_accuracy", "test_macro_f1", "train_wall_seconds")}
                         for arm in ("base", "adapted")} for s, arms in pairs.items()},
        "mean_test_accuracy": {"base": float(base.mean()) if len(base) else None,
                               "adapted": float(adapted.mean()) if len(adapted) else None},
        "paired_difference": {"mean": float(diff.mean()) if len(diff) else None, "t_interval_95": interval,
                              "adapted_better_seeds": int((diff > 0).sum()), "seeds": len(diff)},
    }
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("piece", choices=["adapt", "finetune", "report", "speed"])
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="Folder with train.csv and test.csv.")
    parser.add_argument("--work", default=str(DEFAULT_WORK), help="Where the adapted model and the text go.")
    parser.add_argument("--tag", default=None, help="Names a variant (its adapted folder and JSON files).")
    parser.add_argument("--epochs", type=float, default=3.0, help="adapt: passes over the texts.")
    parser.add_argument("--arm", choices=["base", "adapted"], default="base")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fraction", type=float, default=0.1, help="finetune: labelled share of train.csv.")
    parser.add_argument("--steps", type=int, default=20, help="speed: timed steps per mode.")
    parser.add_argument("--set", action="append", default=[], help="Config override (KEY=VALUE), repeatable.")
    args = parser.parse_args()
    if not (Path(args.data) / "train.csv").exists():
        raise SystemExit(f"{args.data}/train.csv not found: pass --data DATA_DIR")
    suffix = _suffix(args.tag)
    if args.piece == "adapt":
        out, name = run_adapt(args), f"bench_adapt_adapt{suffix}.json"
    elif args.piece == "finetune":
        out, name = run_finetune(args), f"bench_adapt_ft_{args.arm}{_suffix(_arm_tag(args))}_s{args.seed}.json"
    elif args.piece == "speed":
        out, name = run_speed(args), "bench_adapt_speed.json"
    else:
        out, name = report(args), f"bench_adapt{suffix}.json"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / name).write_text(json.dumps(out, indent=2, default=str))
    print(json.dumps({k: v for k, v in out.items() if k != "history"}, indent=2, default=str))


if __name__ == "__main__":
    main()
