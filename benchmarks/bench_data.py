"""Benchmark: check + split + snapshot of a generated 1M-row CSV against a plain pandas baseline.

Each contender runs in its own child process, so its peak RSS (``ru_maxrss``) is its own:

- ``keepfit``: load + validate with quarantine -> quality findings (conflicts, exact and near duplicates,
  label distribution) -> split -> leakage -> Parquet snapshot (``keepfit.data.check_files`` +
  ``create_snapshot``)
- ``pandas``: ``pd.read_csv`` + ``drop_duplicates(["text", "label"])`` (no validation, no split, no output)

Usage::

    .venv/bin/python benchmarks/bench_data.py [--rows 1000000] [--json benchmarks/results/bench_data.json]

Prints a markdown table and writes JSON. Target: keepfit >= 100k rows/s with peak RSS < 2 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def generate_csv(path: Path, n_rows: int, seed: int = 0) -> dict[str, int]:
    """A support-ticket-like CSV: text, label (20 classes), customer_id, channel; with planted exact
    duplicates
    (2%), conflicting duplicates (0.5%) and empty texts (0.1%)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    # letter-only pseudo-words: digits would vanish from the near-duplicate key and make every text alike
    vocab = np.array(
        ["".join(rng.choice(letters, size=rng.integers(3, 9))) for _ in range(5000)], dtype=object
    )
    labels = np.array(["".join(rng.choice(letters, size=6)) for _ in range(20)], dtype=object)
    n_dup, n_conf, n_empty = n_rows // 50, n_rows // 200, n_rows // 1000
    n_base = n_rows - n_dup - n_conf
    label_idx = rng.integers(0, 20, size=n_base)
    # the label's own word makes the task learnable; the other words are noise
    words = vocab[rng.integers(0, 5000, size=(n_base, 7))]
    texts = np.array(
        [f"{labels[k]} " + " ".join(w) for k, w in zip(label_idx, words, strict=True)], dtype=object
    )
    lab = labels[label_idx]
    dup = rng.choice(n_base, size=n_dup, replace=False)
    conf = rng.choice(n_base, size=n_conf, replace=False)
    conf_labels = labels[(label_idx[conf] + 1) % 20]
    all_texts = np.concatenate([texts, texts[dup], texts[conf]])
    all_labels = np.concatenate([lab, lab[dup], conf_labels])
    all_texts[rng.choice(n_base, size=n_empty, replace=False)] = ""
    order = rng.permutation(n_rows)
    table = pa.table(
        {
            "text": pa.array(all_texts[order], type=pa.string()),
            "label": pa.array(all_labels[order], type=pa.string()),
            "customer_id": pa.array([f"C{c}" for c in rng.integers(0, n_rows // 4, size=n_rows)]),
            "channel": pa.array(rng.choice(np.array(["email", "chat", "phone"], dtype=object), size=n_rows)),
        }
    )
    pacsv.write_csv(table, path)
    return {"rows": n_rows, "exact_duplicates": n_dup, "conflict_copies": n_conf, "empty_text": n_empty}


_KEEPFIT = r"""
import json, resource, sys, time
t0 = time.perf_counter()
from keepfit.config import KeepfitConfig
from keepfit.data import check_files, create_snapshot
from keepfit.store import Store
import sklearn.model_selection, scipy.stats  # noqa: imported before the clock starts, like any warm process
path, store = sys.argv[1], sys.argv[2]
cfg = KeepfitConfig.model_validate({"store": store, "data": {"train": path, "group_column": "customer_id",
                                    "slice_columns": ["channel"]}})
t_import = time.perf_counter() - t0
t1 = time.perf_counter()
result = check_files(path, cfg, split=True)
t2 = time.perf_counter()
snap = create_snapshot(result.kept, quarantine=result.quarantine, config=cfg, store=Store.at(store),
                       report=result.report, sources=result.sources, labels=result.labels)
t3 = time.perf_counter()
print(json.dumps({"seconds": t3 - t1, "check_s": t2 - t1, "snapshot_s": t3 - t2, "import_s": t_import,
                  "stages": result.timings, "n_in": result.n_in, "kept": len(result.kept),
                  "quarantined": len(result.quarantine), "reasons": result.report["quarantine_reasons"],
                  "near_method": result.finding("near_duplicates").details["method"],
                  "split": result.report["split"], "snapshot": snap.id[:12],
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

_PANDAS = r"""
import json, resource, sys, time
import pandas as pd
t1 = time.perf_counter()
frame = pd.read_csv(sys.argv[1])
deduped = frame.drop_duplicates(["text", "label"])
t2 = time.perf_counter()
print(json.dumps({"seconds": t2 - t1, "n_in": len(frame), "kept": len(deduped),
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _run_child(code: str, *args: str) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "DO_NOT_TRACK": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, check=False
    )
    if proc.returncode != 0:
        raise SystemExit(f"child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "bench_data.json")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="keepfit-bench-data-") as tmp:
        csv = Path(tmp) / "tickets.csv"
        t0 = time.perf_counter()
        planted = generate_csv(csv, args.rows)
        gen_s = time.perf_counter() - t0
        size_mb = csv.stat().st_size / 2**20
        pandas = _run_child(_PANDAS, str(csv))
        keepfit = _run_child(_KEEPFIT, str(csv), str(Path(tmp) / "store"))

    rows = args.rows
    table = [
        "| contender | what it does | seconds | rows/s | peak RSS (MB) |",
        "|---|---|---:|---:|---:|",
        f"| pandas baseline | read_csv + drop_duplicates | {pandas['seconds']:.2f} | "
        f"{rows / pandas['seconds']:,.0f} | {pandas['peak_rss_mb']:,.0f} |",
        "| keepfit | validate + quarantine + dedup/conflicts/near-dups + split + leakage + Parquet snapshot "
        f"| {keepfit['seconds']:.2f} | {rows / keepfit['seconds']:,.0f} | {keepfit['peak_rss_mb']:,.0f} |",
    ]
    print(
        f"\n{rows:,} rows, {size_mb:.0f} MB CSV (generated in {gen_s:.1f} s); {platform.processor() or ''} "
        f"{os.cpu_count()} cores\n"
    )
    print("\n".join(table))
    print(
        f"\nkeepfit stages (s): check {keepfit['check_s']:.2f} "
        + " ".join(f"{k} {v:.2f}" for k, v in keepfit["stages"].items())
        + f", snapshot {keepfit['snapshot_s']:.2f}; near-duplicates by {keepfit['near_method']}"
    )
    print(f"keepfit kept {keepfit['kept']:,}, quarantined {keepfit['quarantined']:,}: {keepfit['reasons']}")
    print(f"planted: {planted}")
    target = rows / keepfit["seconds"] >= 100_000 and keepfit["peak_rss_mb"] < 2048
    print(f"target (>= 100k rows/s, peak RSS < 2 GB): {'met' if target else 'NOT met'}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "rows": rows,
                "csv_mb": size_mb,
                "planted": planted,
                "pandas": pandas,
                "keepfit": keepfit,
                "target_met": bool(target),
                "cpu_count": os.cpu_count(),
            },
            indent=2,
        )
    )
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
