"""Open-set rejection on real traffic with unknown intents: a banking77 champion trained without some intents
meets the test rows of those intents, which belong to no label it knows.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_open_set.py --project PROJECT \\
        [--data ../shared/data/banking77] [--recalls 0.99,0.95,0.90,0.80]

``PROJECT``: a keepfit project whose champion was trained on part of banking77's intents (bench_gate.py caches
one: 62 of the 77). The abstain threshold is chosen on the champion's own validation split (its snapshot) for each
target in-scope recall, exactly as `keepfit fit` chooses it (``evaluation.open_set.choose_abstain_threshold`` on
the calibrated top probability); it is then judged on all 3,080 banking77 test rows it never saw: rows of known
intents are in scope, rows of the held-out intents out of scope. Writes benchmarks/results/bench_open_set.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "banking77")
    parser.add_argument("--recalls", default="0.99,0.95,0.90,0.80")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "bench_open_set.json")
    args = parser.parse_args(argv)
    if not (args.data / "test.csv").exists():
        print(f"no test.csv in {args.data}: pass --data FOLDER (banking77)", file=sys.stderr)
        return 2

    from keepfit import Registry, load_config
    from keepfit.data import load_snapshot
    from keepfit.evaluation.open_set import abstentions, choose_abstain_threshold
    from keepfit.store import Store
    from keepfit.train.predict import Predictor

    cfg = load_config(args.project / "keepfit.yaml")
    registry = Registry.open(cfg)
    champion = registry.champion()
    predictor = Predictor(registry.model_path(champion.version), precision="fp32")
    snapshot = load_snapshot(Store.at(cfg.store), champion.lineage.data_snapshot)
    text, label = cfg.data.text_column, cfg.data.label_column
    validation = predictor.predict(snapshot.validation[text].astype(str).tolist()).outputs
    test = pd.read_csv(args.data / "test.csv")
    truth = test[label if label in test else test.columns[1]].astype(str).to_numpy()
    probs = predictor.predict(test["text"].astype(str).tolist()).outputs
    known = np.isin(truth, predictor.labels)
    index = {name: i for i, name in enumerate(predictor.labels)}
    right = np.array([known[i] and probs[i].argmax() == index[truth[i]] for i in range(len(truth))])
    rows = []
    for recall in [float(x) for x in args.recalls.split(",")]:
        threshold = choose_abstain_threshold(validation.max(axis=1), recall)
        abstained = abstentions(probs, threshold)
        answered_in = ~abstained & known
        rows.append({
            "target_in_scope_recall": recall,
            "threshold": threshold,
            "in_scope_answered_share": float(answered_in.sum() / known.sum()),
            "in_scope_accuracy": float((right & ~abstained).sum() / known.sum()),
            "answered_accuracy_in_scope": float((right & ~abstained).sum() / max(answered_in.sum(), 1)),
            "oos_recall": float((abstained & ~known).sum() / max((~known).sum(), 1)),
            "oos_precision": float((abstained & ~known).sum() / max(abstained.sum(), 1)),
        })
        print(json.dumps(rows[-1]), flush=True)
    result = {
        "command": " ".join(["benchmarks/bench_open_set.py", *(argv or sys.argv[1:])]),
        "champion": champion.version,
        "known_labels": len(predictor.labels),
        "test_rows": int(len(truth)),
        "in_scope_rows": int(known.sum()),
        "out_of_scope_rows": int((~known).sum()),
        "in_scope_accuracy_without_abstaining": float(right.sum() / known.sum()),
        "validation_rows": int(len(validation)),
        "points": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
