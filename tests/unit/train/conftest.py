"""Easy synthetic data and one shared fine-tune for the train stage's tests."""

from __future__ import annotations

import pytest

from keepfit.train.testing import config_for, sentiment_frame, snapshot_of
from keepfit.types import Snapshot

# tiny_model: tests/unit/conftest.py


@pytest.fixture(scope="session")
def easy_snapshot() -> Snapshot:
    return snapshot_of(sentiment_frame(200, 1), sentiment_frame(60, 2), sentiment_frame(60, 3))


@pytest.fixture(scope="session")
def trained(tiny_model, easy_snapshot, tmp_path_factory):
    """One full fine-tune of the tiny model on the easy task, shared by the output tests."""
    from keepfit.train import train_model

    run = tmp_path_factory.mktemp("run") / "run"
    return train_model(easy_snapshot, config_for(tiny_model, epochs=8), run, progress=False)
