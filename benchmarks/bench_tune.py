"""keepfit tune and keepfit auto on banking77: does pruning pay, does tuning beat the recipes, does auto?

    python benchmarks/bench_tune.py search [DATA_DIR] [--subset 4000] [--trials 20] [--out results.json]
    python benchmarks/bench_tune.py auto [DATA_DIR] [--budget 10m] [--out results.json]

``search``: on ``--subset`` training rows (10% per label of them held out for validation) and the official test
set, side by side in one run: keepfit's defaults, ``--preset best``, a TPE study with median pruning, and the very
same trials (their values enqueued in order) without pruning. Reported: each arm's wall time, best validation
accuracy, test accuracy of what it chose (scored once), and pruning's saving of search time and its loss of best
validation accuracy.

``auto``: ``keepfit auto --budget`` on all training rows (the same 90/10 split) against keepfit's defaults on the
same rows, both scored on the official test set; the race's time against the budget; the leaderboard.

DATA_DIR (default ../shared/data/banking77) holds train.csv and test.csv with columns text, category. The model
is the packaged all-MiniLM-L6-v2. Run it alone on the machine: it measures wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

from bench_train import keepfit_split, load_data, model_path  # noqa: E402

SPACE = {
    "strategy": {"choices": ["full", "lora"]},
    "lr": {"low": 2e-5, "high": 5e-4, "log": True},
    "head_lr": {"low": 5e-4, "high": 1e-2, "log": True},
    "epochs": {"choices": [1, 2, 3, 4]},
    "batch_size": {"choices": [16, 32]},
    "warmup_ratio": {"low": 0.0, "high": 0.2},
    "weight_decay": {"low": 0.0, "high": 0.1},
    "label_smoothing": {"low": 0.0, "high": 0.2},
    "layerwise_lr_decay": {"low": 0.7, "high": 1.0},
    "lora_r": {"choices": [8, 16, 32]},
}


def project(folder: Path, train, test, tune: dict | None = None) -> Path:
    """A keepfit project over the given rows: train/validation split as bench_train splits it, test as given."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    fit_rows, validation = keepfit_split(train)
    fit_rows[["text", "label"]].to_csv(folder / "train.csv", index=False)
    validation[["text", "label"]].to_csv(folder / "validation.csv", index=False)
    test[["text", "label"]].to_csv(folder / "test.csv", index=False)
    raw = {
        "model": {"name": str(model_path())},
        "data": {"train": "train.csv", "validation": "validation.csv", "test": "test.csv"},
        "registry": {"model_name": "banking77"},
        "evaluate": {"bootstrap": 0},
        "tune": tune or {},
    }
    path = folder / "keepfit.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


def _fit(path: Path, preset: str | None) -> dict:
    from keepfit.config import load_config
    from keepfit.pipeline import fit
    from keepfit.train.presets import preset_overrides

    started = time.time()
    result = fit(load_config(path, preset_overrides(preset)), register=False)
    return {"arm": preset or "defaults", "wall_seconds": round(time.time() - started, 1),
            "best_validation_accuracy": result.train.best_metric, "test_accuracy": result.metrics["accuracy"],
            "test_macro_f1": result.metrics["macro_f1"]}


def _search_seconds(study) -> float:
    """From the first trial's start to the last trial's end."""
    starts = [t.datetime_start for t in study.trials if t.datetime_start]
    ends = [t.datetime_complete for t in study.trials if t.datetime_complete]
    return (max(ends) - min(starts)).total_seconds()


def _tune_arm(path: Path, name: str, pruner: str, trials: int, enqueue: list[dict] | None = None) -> dict:
    import optuna

    from keepfit.config import load_config
    from keepfit.tune.study import open_storage, tune

    config = load_config(path, [f"tune.pruner={pruner}", f"tune.trials={trials}"])
    if enqueue:
        study = optuna.create_study(study_name=name, storage=open_storage(config), direction="maximize")
        for params in enqueue:
            study.enqueue_trial(params)
    lines: list[str] = []
    result = tune(config, study_name=name, say=lambda line: (lines.append(line), print(line, flush=True)))
    study = optuna.load_study(study_name=name, storage=open_storage(config))
    return {
        "arm": f"tune TPE, pruner {pruner}",
        "study": name,
        "search_seconds": round(_search_seconds(study), 1),
        "wall_seconds": round(result.wall_seconds, 1),
        "counts": result.counts,
        "best_trial": result.best_trial,
        "best_params": result.best_params,
        "best_validation_accuracy": result.best_value,
        "test_accuracy": result.test.get("accuracy"),
        "test_macro_f1": result.test.get("macro_f1"),
        "trials": [{"number": t.number, "state": t.state.name, "value": t.value, "params": t.params,
                    "seconds": t.duration.total_seconds() if t.duration else None,
                    "evaluations": len(t.intermediate_values)} for t in study.trials],
        "progress": lines,
    }


def search(args: argparse.Namespace) -> dict:
    train, test = load_data(Path(args.data), args.subset)
    tune = {"space": SPACE, "sampler": "tpe", "seed": 0, "startup_trials": 5, "warmup_evals": 1}
    path = project(Path(args.work) / "search", train, test, tune)
    # two validation evaluations per epoch in every arm: the pruner's reports
    cfg = yaml.safe_load(path.read_text())
    cfg["train"] = {"evals_per_epoch": 2}
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    arms = [_fit(path, None), _fit(path, "best")]
    pruned = _tune_arm(path, "pruned", "median", args.trials)
    same = [t["params"] for t in pruned["trials"]]
    unpruned = _tune_arm(path, "unpruned", "none", args.trials, enqueue=same)
    arms += [pruned, unpruned]
    saving = 1 - pruned["search_seconds"] / unpruned["search_seconds"]
    loss = unpruned["best_validation_accuracy"] - pruned["best_validation_accuracy"]
    return {
        "arms": arms,
        "pruning": {"search_time_saved": round(saving, 4), "best_validation_loss_points": round(100 * loss, 2),
                    "targets": {"time_saved_at_least": 0.40, "loss_at_most_points": 0.5}},
        "tuned_vs_best_preset_test_points": round(100 * (pruned["test_accuracy"] - arms[1]["test_accuracy"]), 2),
        "rows": {"train": int(len(train) * 0.9), "test": len(test)},
    }


def auto_arm(args: argparse.Namespace) -> dict:
    from keepfit.config import load_config
    from keepfit.tune.auto import auto

    train, test = load_data(Path(args.data), None)
    path = project(Path(args.work) / "auto", train, test)
    defaults = _fit(path, None)
    lines: list[str] = []
    result = auto(load_config(path), budget=args.budget, say=lambda line: (lines.append(line), print(line,
                                                                                                   flush=True)))
    return {
        "arms": [defaults, {
            "arm": f"auto --budget {args.budget}",
            "budget_seconds": result.budget_seconds,
            "race_seconds": round(result.race_seconds, 1),
            "wall_seconds": round(result.wall_seconds, 1),
            "winner": result.winner,
            "best_validation_accuracy": result.validation,
            "test_accuracy": result.test.get("accuracy"),
            "test_macro_f1": result.test.get("macro_f1"),
            "leaderboard": result.leaderboard,
            "plan": None if result.plan is None else result.plan.__dict__,
            "progress": lines,
        }],
        "frozen_embeddings_logistic_regression_anchor": 0.930,
        "rows": {"train": int(len(train) * 0.9), "test": len(test)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["search", "auto"])
    parser.add_argument("data", nargs="?", default="../shared/data/banking77")
    parser.add_argument("--subset", type=int, default=4000)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--budget", default="10m")
    parser.add_argument("--work", default="benchmarks/.cache/bench_tune")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if not (Path(args.data) / "train.csv").exists():
        sys.exit(f"{args.data}/train.csv not found: pass the banking77 folder (train.csv, test.csv).")
    started = time.time()
    body = search(args) if args.mode == "search" else auto_arm(args)
    body.update({"command": " ".join(sys.argv), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
                 "total_seconds": round(time.time() - started, 1)})
    out = Path(args.out or f"benchmarks/results/bench_tune_{args.mode}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(body, indent=2, default=str))
    print(json.dumps({k: v for k, v in body.items() if k != "arms"}, indent=2, default=str))
    for arm in body["arms"]:
        print({k: v for k, v in arm.items() if k not in ("trials", "progress", "leaderboard")})


if __name__ == "__main__":
    main()
