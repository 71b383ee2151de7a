"""`keepfit monitor` on real traffic: windows of banking77 test texts the champion never saw, without shift (its own
intents, in their usual mix) and with one (a share of requests from intents it was not trained on).

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_monitor.py --project PROJECT [--windows 8] [--rows 300]

``PROJECT``: a keepfit project whose champion was trained on part of banking77's intents (bench_gate.py caches
one: 67 of the 77). Each window is logged as the server logs it (the champion's answers, through a real
PredictionLog) and judged by :func:`keepfit.monitor.monitor` against the champion's own data, with the default
thresholds (level 0.01). The no-shift windows are disjoint samples of the in-scope test rows; the shifted ones mix
in ``--oos-share`` of rows of the unseen intents. The project is copied, never changed. Writes
benchmarks/results/bench_monitor.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def _log_window(log_path: Path, predictor, version: str, texts: list[str], now: float) -> None:
    from keepfit.serve.log import LoggedPrediction, PredictionLog

    preds = predictor.predict(texts, batch_size=64)
    abstained = preds.abstained()
    with PredictionLog(log_path) as log:
        log.record_model(version, preds.task, preds.labels)
        rows = [
            LoggedPrediction(f"r{i}", now - 60 + i * 1e-3, version, text,
                             None if out else preds.labels[int(row.argmax())], float(row.max()), row.tolist(), 5.0,
                             abstained=bool(out))
            for i, (text, row, out) in enumerate(zip(texts, preds.outputs, abstained, strict=True))
        ]
        log.append(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "banking77")
    parser.add_argument("--windows", type=int, default=8)
    parser.add_argument("--rows", type=int, default=300)
    parser.add_argument("--oos-share", type=float, default=0.25)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "bench_monitor.json")
    args = parser.parse_args(argv)
    if not (args.data / "test.csv").exists():
        print(f"no test.csv in {args.data}: pass --data FOLDER (banking77)", file=sys.stderr)
        return 2

    from keepfit import Registry, load_config
    from keepfit.monitor import monitor
    from keepfit.train.predict import Predictor

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "project"
        shutil.copytree(args.project, work, ignore=shutil.ignore_patterns("runs", "downloads", "exports", "serve"))
        cfg = load_config(work / "keepfit.yaml")
        registry = Registry.open(cfg)
        champion = registry.champion()
        predictor = Predictor(registry.model_path(champion.version))
        test = pd.read_csv(args.data / "test.csv")
        label = cfg.data.label_column if cfg.data.label_column in test else test.columns[1]
        known = test[label].astype(str).isin(predictor.labels).to_numpy()
        rng = np.random.default_rng(0)
        inside = rng.permutation(np.flatnonzero(known))
        outside = rng.permutation(np.flatnonzero(~known))
        n_oos = int(round(args.rows * args.oos_share))
        windows = []
        for w in range(args.windows):
            windows.append(("no shift", inside[w * args.rows : (w + 1) * args.rows]))
        for w in range(args.windows):
            base = rng.choice(inside, args.rows - n_oos, replace=False)
            extra = outside[(w * n_oos) % len(outside) :][:n_oos]
            windows.append((f"{args.oos_share:.0%} unseen intents", np.concatenate([base, extra])))
        results = []
        for i, (kind, rows) in enumerate(windows):
            if len(rows) < args.rows:
                continue
            log_path = Path(tmp) / f"window{i}.sqlite"
            now = time.time()
            _log_window(log_path, predictor, champion.version, test["text"].iloc[rows].astype(str).tolist(), now)
            window_cfg = cfg.model_copy(update={"serve": cfg.serve.model_copy(update={"log_path": str(log_path)})})
            report = monitor(window_cfg, since="1h", now=now)
            checks = {c.name: {"status": c.status, "value": c.value, "reference": c.reference}
                      for c in report.overall.checks}
            results.append({"window": i, "kind": kind, "rows": int(len(rows)), "checks": checks,
                            "alerts": [c.name for c in report.overall.alerts]})
            print(json.dumps({"kind": kind, "alerts": results[-1]["alerts"]}), flush=True)
    summary: dict = {}
    for kind in dict.fromkeys(r["kind"] for r in results):
        mine = [r for r in results if r["kind"] == kind]
        names = sorted({n for r in mine for n in r["checks"]})
        summary[kind] = {"windows": len(mine),
                         "alerting_windows": sum(bool(r["alerts"]) for r in mine),
                         "alerts_by_check": {n: sum(n in r["alerts"] for r in mine) for n in names}}
    out = {"command": " ".join(["benchmarks/bench_monitor.py", *(argv or sys.argv[1:])]), "summary": summary,
           "windows": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2, default=str) + "\n")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
