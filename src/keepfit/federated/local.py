"""One federation member's model: its rows become a training job (the same ``build_job`` as `keepfit fit`), and
each round trains the job's small trainable part with the same ``fit_loop``, starting from the global weights.

The server builds one too, on its validation rows, to score each round's average and to export the model folder.
Only the trainable part's weights (head, or LoRA adapters and head) and counts ever leave a member.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from keepfit.config import KeepfitConfig
from keepfit.errors import TrainingError
from keepfit.train.job import Job
from keepfit.types import Snapshot

__all__ = ["Member", "member_config", "build_member", "trainable_weights", "set_weights", "train_round"]


@dataclass
class Member:
    """A client's (or the server's) training job and the accelerator its loop runs under."""

    job: Job
    accelerator: Any
    base_model: Path
    seed: int  # a round's batch order: seed + round


def member_config(config: KeepfitConfig) -> KeepfitConfig:
    """The training config of local rounds: federate.train_strategy, federate.local_epochs per round,
    federate.lr where set; no early stopping, checkpoint averaging or fairness reweighing inside a round; one
    torch thread unless train.threads says otherwise (simulated clients share the machine)."""
    fc, tc = config.federate, config.train
    changes: dict[str, Any] = {
        "strategy": fc.train_strategy,
        "epochs": fc.local_epochs,
        "head_init": "random",  # the server's initial weights replace any local head start
        "early_stopping_patience": None,
        "average_checkpoints": 1,
        "evals_per_epoch": 1,
        "threads": tc.threads or 1,
        "seed": fc.seed,
        "fairness_reweight": False,  # a shard holds text and label only: no group columns to weigh by
    }
    if fc.lr is not None:
        changes["head_lr" if fc.train_strategy == "head" else "lr"] = fc.lr
    return config.model_copy(update={"train": tc.model_copy(update=changes)})


def build_member(
    config: KeepfitConfig, rows: pd.DataFrame, labels: list[str], base_model: Path, work_dir: Path,
    *, validation: pd.DataFrame | None = None,
) -> Member:
    """A member training on ``rows`` (text, label) over ``labels`` from ``base_model`` (the champion's folder, or
    the pre-trained model). ``validation``: rows its job scores (the server's; clients have none)."""
    from accelerate import Accelerator

    from keepfit.train.loop import build_job

    cfg = member_config(config)
    torch.set_num_threads(cfg.train.threads)
    work_dir.mkdir(parents=True, exist_ok=True)
    empty = rows.iloc[0:0]
    snapshot = Snapshot(
        id=f"federate-{work_dir.name}", path=work_dir, task=config.task, labels=list(labels), train=rows,
        validation=empty if validation is None else validation, test=empty, quarantine=pd.DataFrame(),
    )
    accelerator = Accelerator(cpu=True)
    job = build_job(snapshot, cfg, work_dir, init_from=base_model, teacher=None, replay=None,
                    device=accelerator.device)
    if job.labels != list(labels):
        raise TrainingError(
            f"The model {base_model} gives the head {len(job.labels)} labels {job.labels[:5]}..., expected the "
            f"federation's {len(labels)} labels {list(labels)[:5]}.... Start every member from the same model."
        )
    return Member(job=job, accelerator=accelerator, base_model=Path(base_model), seed=cfg.train.seed)


def trainable_weights(member: Member) -> dict[str, torch.Tensor]:
    """The weights a member shares: its trainable parameters by name (float32, on the CPU)."""
    return {n: p.detach().float().cpu().clone() for n, p in member.job.model.named_parameters() if p.requires_grad}


def set_weights(member: Member, weights: dict[str, torch.Tensor]) -> None:
    """Load shared weights into the member's trainable part; every trainable name must come, with its shape."""
    own = dict(member.job.model.named_parameters())
    expected = {n for n, p in own.items() if p.requires_grad}
    if set(weights) != expected:
        raise TrainingError(
            f"Weights for {sorted(expected)[:4]}... expected, got {sorted(weights)[:4]}... "
            f"({len(weights)} vs {len(expected)} arrays): server and client must train the same part "
            "(federate.train_strategy) of the same model."
        )
    with torch.no_grad():
        for name, value in weights.items():
            if tuple(value.shape) != tuple(own[name].shape):
                raise TrainingError(
                    f"Weight {name}: expected shape {tuple(own[name].shape)}, got {tuple(value.shape)}. Server and "
                    "client must use the same model and labels."
                )
            own[name].copy_(value.to(own[name].dtype))


def _proximal_loss(job: Job, anchor: dict[str, torch.Tensor], mu: float):
    """The task loss plus FedProx's (mu/2) * ||w - w_global||^2 over the trainable weights (Li et al. 2020)."""
    from keepfit.train.losses import task_loss

    params = [(p, anchor[n]) for n, p in job.model.named_parameters() if p.requires_grad]
    tc = job.config.train

    def loss(logits: torch.Tensor, rows) -> torch.Tensor:
        target = job.train.targets[torch.from_numpy(rows)].to(logits.device)
        base = task_loss(logits, target, job.task, class_weights=job.weights, label_smoothing=tc.label_smoothing)
        drift = sum(((p.float() - w) ** 2).sum() for p, w in params)
        return base + (mu / 2) * drift

    return loss


def train_round(
    member: Member, weights: dict[str, torch.Tensor], *, server_round: int, mu: float = 0.0
) -> tuple[dict[str, torch.Tensor], int, dict[str, float]]:
    """Train the member's trainable part for its local epochs from the global ``weights``.

    Returns the new weights, the number of training examples (the averaging weight) and metrics (mean
    training loss of the round's last epoch). ``mu`` > 0 adds FedProx's proximal term."""
    from keepfit.train.loop import fit_loop, seed_everything

    job = member.job
    seed_everything(member.seed + server_round)  # dropout and batch order: the same round repeats exactly
    set_weights(member, weights)
    tc = job.config.train
    job.config = job.config.model_copy(update={"train": tc.model_copy(update={"seed": member.seed + server_round})})
    anchor = {n: w.detach().float().clone() for n, w in weights.items()}
    job.loss_fn = _proximal_loss(job, anchor, mu) if mu > 0 else None
    state = fit_loop(job, member.accelerator, resume=False, progress=False)
    last = state.history[-1] if state.history else {}
    return trainable_weights(member), len(job.train.ids), {"train-loss": float(last.get("train_loss", float("nan")))}
