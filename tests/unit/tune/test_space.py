"""`tune.space` in keepfit.yaml: a bad search space gets one error that lists every problem."""

from __future__ import annotations

import pytest

from keepfit.config import config_from_mapping
from keepfit.errors import ConfigError


def _problems(space: dict, **tune) -> list[str]:
    with pytest.raises(ConfigError) as err:
        config_from_mapping({"tune": {"space": space, **tune}})
    return err.value.problems


def test_every_problem_of_a_space_is_listed_at_once():
    problems = _problems({
        "lr": {"low": 1e-3, "high": 1e-5, "log": True},
        "train.epochs": {"low": 1, "high": 3},
        "label_smoothing": {"low": 0, "high": 1.5},
        "weight_decay": {"low": -1, "high": 1, "log": True},
        "strategy": {"choices": ["head", "deep"]},
        "dropout": {"low": 0.1, "high": 0.1},
        "batch_size": {"choices": []},
        "seed": {"choices": [1, 2]},
        "warmup_ratio": {"low": 0.0},
    })
    expected = [
        "tune.space.lr: low 0.001 is above high 1e-05",
        "tune.space.train.epochs: not a setting a search can vary (write 'epochs', without 'train.')",
        "tune.space.label_smoothing: the value 1.5 is not a valid train.label_smoothing",
        "tune.space.weight_decay: a log scale needs low > 0, got -1.0",
        "tune.space.strategy: the value 'deep' is not a valid train.strategy",
        "tune.space.dropout: the range [0.1, 0.1] is empty",
        "tune.space.batch_size: choices is empty",
        "tune.space.seed: not a setting a search can vary",
        "tune.space.warmup_ratio: a range needs both low and high",
    ]
    for words in expected:
        assert any(p.startswith(words) for p in problems), (words, problems)
    assert len(problems) == len(expected) + 1  # weight_decay's -1 is also refused by train.weight_decay itself


def test_a_good_space_loads():
    cfg = config_from_mapping({"tune": {"space": {
        "lr": {"low": 1e-5, "high": 1e-3, "log": True},
        "epochs": {"low": 1, "high": 4, "step": 1},
        "strategy": {"choices": ["head", "lora", "full"]},
    }}})
    assert set(cfg.tune.space) == {"lr", "epochs", "strategy"} and cfg.tune.space["lr"].log


def test_the_grid_sampler_needs_finite_choices():
    problems = _problems({"lr": {"low": 1e-5, "high": 1e-3, "log": True}}, sampler="grid")
    assert problems == ["tune.space.lr: the grid sampler needs choices (or a step)"]
