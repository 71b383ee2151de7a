"""ONNX Runtime (fp32 and dynamic int8) against PyTorch eager fp32 on all-MiniLM-L6-v2: agreement, flips, size, speed.

The model is the packaged all-MiniLM-L6-v2 with keepfit's mean-pooled head fitted as a logistic regression on its
frozen embeddings (so the labels it agrees on are real decisions, not the near-ties of a random head): on
banking77's train.csv (a sample) when present, else on the even rows of test.csv. Parity is measured on the
(other) test rows, speed on the first 256 of them at batch 1 and batch 32, every engine with the same threads,
through ``keepfit.train.onnx_export.check_export`` (the code path of ``keepfit export``).

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_onnx.py [--data ../shared/data/banking77] [--threads 2]
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


def _rows(data: Path, train_rows: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    test = pd.read_csv(data / "test.csv")
    if (data / "train.csv").exists():
        train = pd.read_csv(data / "train.csv").sample(n=train_rows, random_state=0)
        return train, test
    return test.iloc[::2], test.iloc[1::2]


def _fitted_folder(folder: Path, train: pd.DataFrame) -> Path:
    """all-MiniLM-L6-v2 with its mean-pooled head set to a logistic regression on the frozen embeddings."""
    import torch
    from sklearn.linear_model import LogisticRegression

    from keepfit.train.batching import tokenize
    from keepfit.train.export import export_model
    from keepfit.train.inference import sorted_forward
    from keepfit.train.model import load_model, load_tokenizer, resolve_model_path
    from keepfit.train.pooling import mean_pool

    source = resolve_model_path("all-MiniLM-L6-v2")
    labels = sorted(set(train["category"]))
    model = load_model(source, "single-label", labels).eval()
    tokenizer = load_tokenizer(source)
    ids = tokenize(tokenizer, train["text"].astype(str).tolist(), 128)

    def pooled(batch):
        return mean_pool(model.encoder_model(**batch).last_hidden_state, batch["attention_mask"])

    features = sorted_forward(ids, tokenizer.pad_token_id or 0, 64, pooled).numpy()
    y = np.array([labels.index(v) for v in train["category"]])
    probe = LogisticRegression(C=10.0, max_iter=2000).fit(features, y)
    with torch.no_grad():
        model.classifier.weight.copy_(torch.from_numpy(probe.coef_).float())
        model.classifier.bias.copy_(torch.from_numpy(probe.intercept_).float())
    meta = {"task": "single-label", "labels": labels, "pooling": "mean", "max_length": 128}
    return export_model(model, tokenizer, folder, meta, card="")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/banking77"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--train-rows", type=int, default=2000, help="Sample of train.csv for the head.")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/bench_onnx.json"))
    args = parser.parse_args(argv)
    if not (args.data / "test.csv").exists():
        print(f"no test.csv in {args.data}: pass --data FOLDER", file=sys.stderr)
        return 2

    import torch

    from keepfit.train.onnx_export import check_export, export_onnx

    torch.set_num_threads(args.threads)
    train, test = _rows(args.data, args.train_rows)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        folder = _fitted_folder(Path(tmp) / "model", train)
        head_s = time.perf_counter() - start
        start = time.perf_counter()
        export = export_onnx(folder, Path(tmp) / "onnx", int8=True)
        export_s = time.perf_counter() - start
        check = check_export(folder, export, test["text"].astype(str).tolist(), test["category"].tolist(),
                             texts_source="banking77 test", threads=args.threads)

    print(f"all-MiniLM-L6-v2 + logistic-regression head on {len(train)} rows ({head_s:.0f} s); "
          f"export + int8 {export_s:.1f} s; parity on {len(test)} test rows; {args.threads} threads\n")
    print("| engine | size MB | agreement | negative flips | accuracy | ms/text, batch 1 | texts/s, batch 32 |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for b in check.backends:
        p = b.parity
        size = f"{b.size_mb:.1f}" if b.size_mb else "-"
        agree = f"{p.agreement:.2%}" if p else "-"
        flips = f"{p.negative_flips} ({p.negative_flip_rate:.2%})" if p else "-"
        accuracy = p.other_accuracy if p else check.backends[1].parity.reference_accuracy
        print(f"| {b.name} | {size} | {agree} | {flips} | {accuracy:.2%} | {b.speed.ms_per_text_batch1:.2f} "
              f"| {b.speed.texts_per_second:.0f} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    body = {"threads": args.threads, "train_rows": len(train), "test_rows": len(test), "export_s": export_s,
            "backends": [b.to_dict() for b in check.backends]}
    args.out.write_text(json.dumps(body, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
