"""Checkpoints you can trust: atomic folders holding everything needed to continue bitwise.

A checkpoint is ``checkpoints/step-N-eE-bB/`` with the trainable weights (safetensors), optimiser and
scheduler states, RNG states (python, numpy, torch) and the position in the data (epoch, batch within
the epoch, the epoch's batch order). Folders appear only complete (written aside, then renamed). The
newest one and the best one (``checkpoints/best``, weights only) are kept.
"""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from keepfit._io import atomic_dir, atomic_write_text
from keepfit.errors import TrainingError

__all__ = [
    "TrainState",
    "save_checkpoint",
    "load_checkpoint",
    "latest_checkpoint",
    "save_best",
    "load_best",
    "save_ranked",
    "average_ranked",
    "rng_state",
    "set_rng_state",
    "trainable_state",
]

WEIGHTS = "model.safetensors"


@dataclass
class TrainState:
    """Where training is: next comes ``batch_order[batch]`` of ``epoch``; ``step`` counts optimiser steps."""

    epoch: int = 0
    batch: int = 0
    step: int = 0
    best_metric: float | None = None
    best_epoch: float | None = None
    stale_evals: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    precision: str = "fp32"
    batch_order: list[list[int]] = field(default_factory=list)
    samples_seen: int = 0
    loss_sum: float = 0.0  # training loss since the last evaluation (for the learning curve)
    loss_count: int = 0
    train_seconds: float = 0.0


def rng_state() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def trainable_state(model: nn.Module, everything: bool) -> dict[str, torch.Tensor]:
    """All weights (full, head) or only the trained ones (LoRA: the frozen rest reloads as it was)."""
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    return {
        n: t.detach().contiguous().clone()
        for n, t in model.state_dict().items()
        if everything or n in trainable
    }


def _step_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.glob("step-*") if (p / "state.json").exists())


def save_checkpoint(
    root: Path, model: nn.Module, optimizer, scheduler, state: TrainState, *, everything: bool, rank: int = 0
) -> Path:
    """Write ``root/step-N`` atomically, then remove older step folders. Returns the new folder."""
    path = root / f"step-{state.step:08d}-e{state.epoch}-b{state.batch}"
    with atomic_dir(path, overwrite=True) as tmp:
        save_file(trainable_state(model, everything), str(tmp / WEIGHTS))
        torch.save(
            {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, tmp / "optim.pt"
        )
        torch.save(rng_state(), tmp / f"rng-{rank}.pt")
        (tmp / "state.json").write_text(json.dumps(asdict(state)), encoding="utf-8")
    for old in _step_dirs(root):
        if old != path:
            shutil.rmtree(old, ignore_errors=True)
    return path


def latest_checkpoint(root: Path) -> Path | None:
    dirs = _step_dirs(root)
    return dirs[-1] if dirs else None


def load_checkpoint(path: Path, model: nn.Module, optimizer, scheduler, *, rank: int = 0) -> TrainState:
    """Restore weights, optimiser, scheduler and RNG states from ``path``; return where to continue."""
    try:
        weights = load_file(str(path / WEIGHTS))
        missing = model.load_state_dict(weights, strict=False)
        if missing.unexpected_keys:
            raise TrainingError(
                f"Checkpoint {path} holds weights this model lacks ({missing.unexpected_keys[:3]}...): "
                "it was written with other settings. Resume with the config saved in the run folder."
            )
        optim = torch.load(path / "optim.pt", weights_only=False)
        optimizer.load_state_dict(optim["optimizer"])
        scheduler.load_state_dict(optim["scheduler"])
        set_rng_state(torch.load(path / f"rng-{rank}.pt", weights_only=False))
        return TrainState(**json.loads((path / "state.json").read_text(encoding="utf-8")))
    except (OSError, KeyError, ValueError) as err:
        raise TrainingError(
            f"Checkpoint {path} cannot be read ({err}). Delete it to resume from the one before, "
            "or start the run again without --resume."
        ) from None


def save_best(root: Path, model: nn.Module, metric: float, epoch: float, *, everything: bool) -> None:
    """Weights of the best evaluation so far, in ``root/best`` (replaced atomically)."""
    with atomic_dir(root / "best", overwrite=True) as tmp:
        save_file(trainable_state(model, everything), str(tmp / WEIGHTS))
        atomic_write_text(tmp / "best.json", json.dumps({"metric": metric, "epoch": epoch}))


def load_best(root: Path, model: nn.Module) -> bool:
    """Load ``root/best`` weights into ``model`` when present."""
    path = root / "best" / WEIGHTS
    if not path.exists():
        return False
    model.load_state_dict(load_file(str(path)), strict=False)
    return True


def save_ranked(
    root: Path, model: nn.Module, metric: float, epoch: float, *, keep: int, lower_is_better: bool, everything: bool
) -> None:
    """Keep the weights of the ``keep`` best evaluations in ``root/top`` (for checkpoint averaging)."""
    top = root / "top"
    top.mkdir(parents=True, exist_ok=True)
    index_path = top / "index.json"
    index = json.loads(index_path.read_text(encoding="utf-8")) if index_path.exists() else []
    name = f"e{epoch:.4f}.safetensors"
    index = [e for e in index if e["file"] != name] + [{"file": name, "metric": metric, "epoch": epoch}]
    index.sort(key=lambda e: (e["metric"] if lower_is_better else -e["metric"], -e["epoch"]))
    kept, dropped = index[:keep], index[keep:]
    if any(e["file"] == name for e in kept):
        save_file(trainable_state(model, everything), str(top / name))
    atomic_write_text(index_path, json.dumps(kept))
    for entry in dropped:
        (top / entry["file"]).unlink(missing_ok=True)


def average_ranked(root: Path) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]] | None:
    """The uniform average of the weights kept by :func:`save_ranked` and their entries; None for fewer than 2."""
    top = root / "top"
    index_path = top / "index.json"
    if not index_path.exists():
        return None
    entries = [e for e in json.loads(index_path.read_text(encoding="utf-8")) if (top / e["file"]).exists()]
    if len(entries) < 2:
        return None
    total: dict[str, torch.Tensor] = {}
    for entry in entries:
        for name, value in load_file(str(top / entry["file"])).items():
            if torch.is_floating_point(value):
                total[name] = total.get(name, 0) + value.double() / len(entries)
            else:
                total.setdefault(name, value)
    return {k: v.float() if torch.is_floating_point(v) else v for k, v in total.items()}, entries
