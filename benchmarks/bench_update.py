"""Regression-safe update on a phased intent data set (banking77 by default), side by side in one run.

Phases: version 1 is fitted on part of the training data with a subset of the intents; the update brings the
rest, including intents never seen. Every system is a real ``keepfit update`` from version 1 in the same project
(rolled back to version 1 after each), so data handling, the screen, the teacher pass, evaluation, comparison and
registration are in every wall time. Compared on the data set's own test file:

- plain continued fine-tuning: warm start from version 1 on the new data only (no replay, distillation, BCWI)
- the previous default update: 3 epochs, 3 replayed earlier rows per new row, focal distillation, BCWI
- the default update (whatever ``keepfit update`` does with no settings)
- full retraining on everything from the pre-trained model, with two seeds (their flips are the noise floor)
- optional extra points (``--variant NAME=KEY=VALUE,KEY=VALUE``) for the trade-off curve

Reported per system: accuracy on all, old and new intents; negative flip rate (NFR) against version 1 on the old
intents' test rows (the earlier test set); wall time, its share of a full retrain, and where it went. Usage:

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_update.py [--data ../shared/data/banking77] \\
        [--text-column text] [--label-column category] [--old-intents 60] [--out FILE.json] [--plot FILE.png]
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

PREVIOUS_DEFAULT = [
    "update.epochs=3", "update.replay_ratio=3.0", "update.replay=random", "update.distill=true",
    "update.interpolate=auto",
]
PLAIN = ["update.replay_ratio=0", "update.distill=false", "update.interpolate=off", "update.screen=keep"]


def _split_phases(train: pd.DataFrame, label: str, old_intents: int, v1_fraction: float, seed: int):
    rng = np.random.default_rng(seed)
    intents = sorted(train[label].unique())
    old = set(rng.choice(intents, size=min(old_intents, len(intents) - 1), replace=False).tolist())
    is_old = train[label].isin(old)
    in_v1 = is_old & (rng.random(len(train)) < v1_fraction)
    return train[in_v1], train[~in_v1], old


def _scores(model_dir: Path, test: pd.DataFrame, text: str, label: str, old: set[str]) -> dict[str, np.ndarray]:
    preds = load_predictor(model_dir).predict(test[text].astype(str).tolist(), batch_size=128)
    predicted = np.array(preds.labels)[preds.outputs.argmax(axis=1)]
    return {
        "right": predicted == test[label].astype(str).to_numpy(),
        "old": test[label].isin(old).to_numpy(),
        "predicts_new_intent": ~pd.Series(predicted).isin(old).to_numpy(),
    }


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
        flipped = base["right"][old] & ~s["right"][old]
        row["nfr_vs_v1_old_intents"] = float(flipped.mean())
        # flips to an intent version 1 never knew: a new, confusable intent took the row (even a retrain does this)
        row["nfr_into_new_intents"] = float((flipped & s["predicts_new_intent"][old]).mean())
        row["pfr_vs_v1_old_intents"] = float((~base["right"][old] & s["right"][old]).mean())
    return row


def _project(root: Path, v1: Path, text: str, label: str, overrides: list[str]):
    folder = root / "project"
    folder.mkdir()
    (folder / "keepfit.yaml").write_text(
        f"store: .keepfit\ndata:\n  train: {v1}\n  text_column: {text}\n  label_column: {label}\n"
    )
    return load_config(folder / "keepfit.yaml", overrides)


def _variant(spec: str) -> tuple[str, list[str]]:
    name, _, settings = spec.partition("=")
    if not settings:
        raise SystemExit(f"--variant {spec!r}: expected NAME=KEY=VALUE[,KEY=VALUE...]")
    return name, [s for s in settings.split(",") if s]


def _plot(rows: list[dict], retrain_wall: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for r in rows:
        if "nfr_vs_v1_old_intents" not in r:
            continue
        share = 100 * r["wall_s"] / retrain_wall
        left.scatter(share, 100 * r["nfr_vs_v1_old_intents"])
        left.annotate(r["system"], (share, 100 * r["nfr_vs_v1_old_intents"]), fontsize=7)
        right.scatter(100 * r["nfr_vs_v1_old_intents"], 100 * r["acc_all"])
        right.annotate(r["system"], (100 * r["nfr_vs_v1_old_intents"], 100 * r["acc_all"]), fontsize=7)
    left.axhline(0.5, color="grey", linestyle=":")
    left.axvline(20, color="grey", linestyle=":")
    left.set_xlabel("wall time, % of a full retrain (seed A)")
    left.set_ylabel("NFR on the earlier test rows, %")
    right.set_xlabel("NFR on the earlier test rows, %")
    right.set_ylabel("accuracy, all test rows, %")
    fig.suptitle("keepfit update: flips vs time vs accuracy (dotted: targets)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/banking77"))
    parser.add_argument("--text-column", default="text")
    parser.add_argument("--label-column", default="category")
    parser.add_argument("--old-intents", type=int, default=60)
    parser.add_argument("--v1-fraction", type=float, default=0.6)
    parser.add_argument("--epochs", type=float, default=3, help="epochs of version 1 and of the full retrains")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], help="extra config overrides for every run")
    parser.add_argument("--variant", action="append", default=[], help="NAME=KEY=VALUE,KEY=VALUE: an extra point")
    parser.add_argument("--skip", action="append", default=[], help="leave out a system by name")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/update.json"))
    parser.add_argument("--plot", type=Path, default=None)
    args = parser.parse_args(argv)
    text, label = args.text_column, args.label_column
    if not (args.data / "train.csv").exists():
        print(f"no train.csv in {args.data}: pass --data FOLDER with train.csv and test.csv", file=sys.stderr)
        return 2
    train, test = pd.read_csv(args.data / "train.csv"), pd.read_csv(args.data / "test.csv")
    v1_rows, new_rows, old = _split_phases(train, label, args.old_intents, args.v1_fraction, args.seed)
    common = [f"train.epochs={args.epochs}", "gate.max_negative_flip_rate=1.0", *args.set]
    systems = {
        "plain continued fine-tuning": PLAIN,
        "previous default update": PREVIOUS_DEFAULT,
        "default update": [],
        **dict(_variant(v) for v in args.variant),
        "full retraining (seed A)": ["update.strategy=retrain"],
        "full retraining (seed B)": ["update.strategy=retrain", f"train.seed={args.seed + 1}"],
    }
    systems = {k: v for k, v in systems.items() if k not in args.skip}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        v1_csv, new_csv = root / "v1.csv", root / "new.csv"
        v1_rows.to_csv(v1_csv, index=False)
        new_rows.to_csv(new_csv, index=False)
        base_config = _project(root, v1_csv, text, label, common)
        t0 = time.perf_counter()
        fitted = pipeline.fit(base_config)
        base = _scores(fitted.model_dir, test, text, label, old)
        rows.append(_row("version 1 (old intents only)", base, None, time.perf_counter() - t0))
        registry = Registry.open(base_config)
        retrains = {}
        for name, extra in systems.items():
            config = load_config(root / "project" / "keepfit.yaml", common + extra)
            t0 = time.perf_counter()
            result = pipeline.update(config, new_csv, force=True)
            wall = time.perf_counter() - t0
            scores = _scores(pipeline.resolve_model(config, result.candidate_version), test, text, label, old)
            row = _row(name, scores, base, wall)
            row["settings"] = extra
            row["timings"] = dict(result.timings)
            interp = result.interpolation
            row["bcwi_alpha"] = interp.alpha if interp is not None else None
            rows.append(row)
            print(json.dumps(row), flush=True)
            if name.startswith("full retraining"):
                retrains[name] = scores
            registry.rollback(reason=f"benchmark: back to version 1 after {name}")
    noise = None
    if len(retrains) == 2:
        a, b = retrains.values()
        noise = float((a["right"] & a["old"] & ~b["right"]).sum() / max(a["old"].sum(), 1))
    retrain_wall = next((r["wall_s"] for r in rows if r["system"] == "full retraining (seed A)"), None)
    print("| system | acc all | acc old intents | acc new intents | NFR vs v1 (old intents) | wall s | % of retrain |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        nfr = f"{100 * r['nfr_vs_v1_old_intents']:.2f}%" if "nfr_vs_v1_old_intents" in r else "-"
        share = f"{100 * r['wall_s'] / retrain_wall:.0f}%" if retrain_wall and "settings" in r else "-"
        r["wall_share_of_retrain"] = r["wall_s"] / retrain_wall if retrain_wall else None
        print(
            f"| {r['system']} | {100 * r['acc_all']:.2f}% | {100 * r['acc_old_intents']:.2f}% | "
            f"{100 * r['acc_new_intents']:.2f}% | {nfr} | {r['wall_s']:.0f} | {share} |"
        )
    if noise is not None:
        print(f"\nnoise floor: NFR between two full retrains differing only in seed (old intents): {100 * noise:.2f}%")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"rows": rows, "noise_floor_nfr": noise, "args": vars(args)}, default=str, indent=2))
    if args.plot and retrain_wall:
        _plot(rows, retrain_wall, args.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
