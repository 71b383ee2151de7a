"""Named recipes, applied as config overrides before the user's own ``--set`` values.

``fast``: a demo in minutes (full fine-tuning, 2 epochs, a hot head learning rate).
``best``: the recipe aimed at >= 94.0% banking77 test accuracy with all-MiniLM-L6-v2 in <= 30 min on 2 cores
(measured 93.99%, BENCHMARKS.md): a linear-probe head start then full fine-tuning (LP-FT) of the mean-pooled
encoder at a high learning rate with frozen word embeddings, label smoothing, 8 epochs, the average of the best
three checkpoints when validation prefers it, length bucketing, bf16 where it pays, early stopping.
"""

from __future__ import annotations

from keepfit.errors import ConfigError

__all__ = ["PRESETS", "preset_overrides"]

PRESETS: dict[str, dict[str, object]] = {
    "fast": {
        "train.strategy": "full",
        "train.epochs": 2,
        "train.lr": 2e-4,
        "train.head_lr": 3e-3,
        "train.batch_size": 32,
        "train.precision": "auto",
        "train.length_bucketing": True,
    },
    "best": {
        "train.strategy": "full",
        "train.epochs": 8,
        "train.lr": 1.5e-4,
        "train.head_lr": 1e-3,
        "train.head_init": "probe",
        "train.freeze_embeddings": True,
        "train.average_checkpoints": 3,
        "train.batch_size": 32,
        "train.warmup_ratio": 0.06,
        "train.scheduler": "linear",
        "train.label_smoothing": 0.1,
        "train.precision": "auto",
        "train.length_bucketing": True,
        "train.early_stopping_patience": 3,
        "train.metric_for_best": "accuracy",
    },
}


def preset_overrides(name: str | None) -> list[str]:
    """``--set`` style overrides of preset ``name`` ([] for None)."""
    if name is None:
        return []
    if name not in PRESETS:
        raise ConfigError(f"Unknown preset {name!r}: expected one of {sorted(PRESETS)}.")
    return [f"{key}={value}" for key, value in PRESETS[name].items()]
