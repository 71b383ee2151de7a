"""A warm-started candidate: train.strategy and train.epochs by default (10 passes for a head-only candidate), but
never fewer than update.min_steps optimiser steps."""

from __future__ import annotations

import pytest

from keepfit.config import load_config
from keepfit.pipeline import _candidate_config


@pytest.mark.parametrize(
    ("rows", "overrides", "strategy", "epochs"),
    [
        (10_000, [], "full", 3.0),  # train.strategy and train.epochs: 939 steps, plenty
        (10_000, ["update.train_strategy=head"], "head", 10.0),  # cached features: passes are cheap
        (10_000, ["update.train_strategy=null", "train.strategy=lora"], "lora", 3.0),
        (320, ["update.train_strategy=full"], "full", 6.0),  # 10 steps per pass: 60 steps need 6 passes
        (320, ["update.train_strategy=full", "update.min_steps=0"], "full", 3.0),
        (320, ["update.train_strategy=full", "train.grad_accum=2"], "full", 12.0),  # optimiser steps
        (10_000, ["update.epochs=3"], "full", 3.0),
    ],
)
def test_candidate_strategy_and_epochs(rows, overrides, strategy, epochs):
    config = load_config(None, ["train.batch_size=32", *overrides])
    candidate = _candidate_config(config, rows).train
    assert candidate.strategy == strategy
    assert candidate.epochs == pytest.approx(epochs)


def test_learning_rates_of_the_candidate():
    head = _candidate_config(load_config(None, ["update.train_strategy=head"]), 1000).train
    assert head.head_lr == 1e-2  # a head-only candidate's only layer learns fast
    full = _candidate_config(load_config(None, ["update.train_strategy=full", "update.lr=3e-5"]), 1000).train
    assert (full.lr, full.head_lr) == (3e-5, 2e-3)
    assert load_config(None, ["update.lr=3e-5"]).train.lr == 1e-4  # the fit's own config is untouched
