"""``tune.space`` as Optuna suggestions, and the training config a trial's values make.

The space is validated with the config (:func:`keepfit.config.space_problems`), so here every range is known to
be searchable: a ``step`` makes a discrete range (integers when the training setting is an integer), ``log`` a log
scale, ``choices`` a categorical.
"""

from __future__ import annotations

from typing import Any

from keepfit.config import KeepfitConfig, ParamSpace, TrainConfig

__all__ = ["suggest", "train_overrides", "is_int_setting", "DEFAULT_SPACE"]

# Searched when tune.space is empty: the settings that moved banking77 accuracy most in keepfit's own
# exploration (learning rates, schedule length, warm-up, regularisation), in ranges that train stably.
DEFAULT_SPACE: dict[str, dict[str, Any]] = {
    "lr": {"low": 1e-5, "high": 5e-4, "log": True},
    "head_lr": {"low": 5e-4, "high": 1e-2, "log": True},
    "epochs": {"choices": [2, 3, 4, 6]},
    "warmup_ratio": {"low": 0.0, "high": 0.2},
    "weight_decay": {"low": 0.0, "high": 0.1},
    "label_smoothing": {"low": 0.0, "high": 0.2},
}


def is_int_setting(name: str) -> bool:
    """Whether train.<name> holds an integer (a range of it is searched in integers)."""
    annotation = TrainConfig.model_fields[name].annotation
    return annotation is int or (getattr(annotation, "__args__", None) or ()) == (int, type(None))


def suggest(trial: Any, space: dict[str, ParamSpace]) -> dict[str, Any]:
    """One value per searched setting, asked of the Optuna ``trial`` (recorded in the study under its name)."""
    values: dict[str, Any] = {}
    for name, spec in space.items():
        if spec.choices is not None:
            values[name] = trial.suggest_categorical(name, list(spec.choices))
        elif is_int_setting(name):
            step = int(spec.step or 1)
            values[name] = trial.suggest_int(name, int(spec.low), int(spec.high), step=step, log=spec.log)
        else:
            values[name] = trial.suggest_float(name, float(spec.low), float(spec.high), step=spec.step, log=spec.log)
    return values


def train_overrides(config: KeepfitConfig, values: dict[str, Any]) -> KeepfitConfig:
    """``config`` with a trial's ``values`` set on ``train`` (validated like any config)."""
    train = TrainConfig.model_validate({**config.train.model_dump(), **values})
    return config.model_copy(update={"train": train})
