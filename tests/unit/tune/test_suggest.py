"""A space's suggestions from a real Optuna study stay inside it, and make a valid training config."""

from __future__ import annotations

import optuna

from keepfit.config import config_from_mapping
from keepfit.tune import suggest, train_overrides


def test_suggestions_stay_in_the_space_and_make_valid_configs():
    cfg = config_from_mapping({"tune": {"space": {
        "lr": {"low": 1e-5, "high": 1e-3, "log": True},
        "epochs": {"low": 1, "high": 5, "step": 2},
        "batch_size": {"choices": [16, 32]},
        "strategy": {"choices": ["head", "lora", "full"]},
        "warmup_ratio": {"low": 0.0, "high": 0.2},
    }}})
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = []
    for _ in range(30):
        trial = study.ask()
        values = suggest(trial, cfg.tune.space)
        trained = train_overrides(cfg, values).train
        assert 1e-5 <= trained.lr <= 1e-3 and trained.epochs in (1, 3, 5) and trained.batch_size in (16, 32)
        assert 0 <= trained.warmup_ratio <= 0.2 and trained.strategy in ("head", "lora", "full")
        study.tell(trial, trained.lr)
        seen.append(values)
    assert set(study.trials[0].params) == {"lr", "epochs", "batch_size", "strategy", "warmup_ratio"}
    assert len({v["strategy"] for v in seen}) == 3 and len({v["epochs"] for v in seen}) == 3
    assert isinstance(seen[0]["epochs"], float) and float(seen[0]["epochs"]).is_integer()  # train.epochs is a float
