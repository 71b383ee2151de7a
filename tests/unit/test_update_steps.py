"""A warm-started candidate: one pass by default, but never fewer than update.min_steps optimiser steps."""

from __future__ import annotations

import pytest

from keepfit.config import load_config
from keepfit.pipeline import _candidate_config


@pytest.mark.parametrize(
    ("rows", "overrides", "epochs"),
    [
        (10_000, [], 1.0),  # 313 steps in one pass: the default pass is enough
        (320, [], 6.0),  # 10 steps per pass: 60 steps need 6 passes
        (320, ["update.min_steps=0"], 1.0),
        (320, ["train.grad_accum=2"], 12.0),  # optimiser steps, not batches
        (10_000, ["update.epochs=2"], 2.0),
        (10_000, ["update.epochs=null", "train.epochs=3"], 3.0),
    ],
)
def test_candidate_epochs(rows, overrides, epochs):
    config = load_config(None, ["train.batch_size=32", *overrides])
    assert _candidate_config(config, rows).train.epochs == pytest.approx(epochs)


def test_update_lr_replaces_the_training_lr_only_for_the_candidate():
    config = load_config(None, ["update.lr=3e-5"])
    assert _candidate_config(config, 1000).train.lr == 3e-5
    assert config.train.lr == 1e-4
