"""Regression-safe update on banking77, side by side in one run.

Phases: version 1 is fitted on part of the training data with a subset of the intents; the update brings the
rest, including intents never seen. Compared on the official banking77 test set:

- plain continued fine-tuning: warm start from version 1 on the new data only (no replay, no distillation)
- keepfit update: warm start + stratified replay + focal distillation (the defaults)
- full retraining on everything, from the pre-trained model
- the noise floor: negative flip rate between two full retrains that differ only in their seed

Reported: accuracy on old and new intents, negative flip rate against version 1 on the old intents' test rows,
wall time. Usage:

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_update.py [--data ../shared/data/banking77] \\
        [--old-intents 60] [--epochs 3] [--out benchmarks/out/update.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from keepfit import pipeline
from keepfit.config import load_config
from keepfit.registry import Registry
from keepfit.train import load_predictor


def _split_phases(data: Path, old_intents: int, v1_fraction: float, seed: int):
    train = pd.read_csv(data / "train.csv")
    test = pd.read_csv(data / "test.csv")
    rng = np.random.default_rng(seed)
    intents = sorted(train["category"].unique())
    old = set(rng.choice(intents, size=old_intents, replace=False).tolist())
    is_old = train["category"].isin(old)
    in_v1 = is_old & (rng.random(len(train)) < v1_fraction)
    return train[in_v1], train[~in_v1], test, old


def _scores(model_dir: Path, test: pd.DataFrame, old: set[str]) -> dict[str, np.ndarray]:
    preds = load_predictor(model_dir).predict(test["text"].tolist(), batch_size=128)
    labels = np.array(preds.labels)
    predicted = labels[preds.outputs.argmax(axis=1)]
    return {"right": predicted == test["category"].to_numpy(), "old": test["category"].isin(old).to_numpy()}


def _row(name: str, s: dict[str, np.ndarray], base: dict[str, np.ndarray] | None, wall: float) -> dict:
    old = s["old"]
    row = {
        "system": name,
        "acc_all": float(s["right"].mean()),
        "acc_old_intents": float(s["right"][old].mean()),
        "acc_new_intents": float(s["right"][~old].mean()) if (~old).any() else float("nan"),
        "wall_s": wall,
    }
    if base is not None:
        row["nfr_vs_v1_old_intents"] = float((base["right"][old] & ~s["right"][old]).mean())
        row["pfr_vs_v1_old_intents"] = float((~base["right"][old] & s["right"][old]).mean())
    return row


def _project(root: Path, name: str, v1: Path, overrides: list[str]):
    """A project folder whose config trains on the version-1 rows."""
    folder = root / name
    folder.mkdir()
    (folder / "keepfit.yaml").write_text(
        f"store: .keepfit\ndata:\n  train: {v1}\n  text_column: text\n  label_column: category\n"
    )
    return load_config(folder / "keepfit.yaml", overrides)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/banking77"))
    parser.add_argument("--old-intents", type=int, default=60)
    parser.add_argument("--v1-fraction", type=float, default=0.6)
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], help="extra config overrides for every run")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/update.json"))
    args = parser.parse_args(argv)
    if not (args.data / "train.csv").exists():
        print(f"banking77 not found at {args.data}: pass --data FOLDER with train.csv and test.csv", file=sys.stderr)
        return 2

    v1_rows, new_rows, test, old = _split_phases(args.data, args.old_intents, args.v1_fraction, args.seed)
    common = [f"train.epochs={args.epochs}", "gate.max_negative_flip_rate=1.0", *args.set]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        v1_csv, new_csv = root / "v1.csv", root / "new.csv"
        v1_rows.to_csv(v1_csv, index=False)
        new_rows.to_csv(new_csv, index=False)

        systems = {
            "plain continued fine-tuning": ["update.replay_ratio=0", "update.distill=false"],
            "keepfit update": [],
            "full retraining (seed A)": ["update.strategy=retrain"],
            "full retraining (seed B)": ["update.strategy=retrain", f"train.seed={args.seed + 1}"],
        }
        base_config = _project(root, "project", v1_csv, common)
        t0 = time.perf_counter()
        fitted = pipeline.fit(base_config)
        base = _scores(fitted.model_dir, test, old)
        rows.append(_row("version 1 (old intents only)", base, None, time.perf_counter() - t0))
        registry = Registry.open(base_config)
        retrains = {}
        for name, extra in systems.items():
            config = load_config(root / "project" / "keepfit.yaml", common + extra)
            t0 = time.perf_counter()
            result = pipeline.update(config, new_csv, force=True)
            wall = time.perf_counter() - t0
            scores = _scores(pipeline.resolve_model(config, result.candidate_version), test, old)
            rows.append(_row(name, scores, base, wall))
            if name.startswith("full retraining"):
                retrains[name] = scores
            registry.rollback(reason=f"benchmark: back to version 1 after {name}")
        a, b = retrains.values()
        noise = float((a["right"] & ~b["right"]).mean())

    print("| system | acc all | acc old intents | acc new intents | NFR vs v1 (old intents) | wall s |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        nfr = f"{100 * r['nfr_vs_v1_old_intents']:.2f}%" if "nfr_vs_v1_old_intents" in r else "-"
        print(
            f"| {r['system']} | {100 * r['acc_all']:.2f}% | {100 * r['acc_old_intents']:.2f}% | "
            f"{100 * r['acc_new_intents']:.2f}% | {nfr} | {r['wall_s']:.0f} |"
        )
    print(f"\nnoise floor: NFR between two full retrains differing only in seed: {100 * noise:.2f}%")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"rows": rows, "noise_floor_nfr": noise, "args": vars(args)}, default=str, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
