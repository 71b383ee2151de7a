"""Tiny models and easy synthetic data for the train stage's tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from keepfit.train.testing import all_texts, config_for, make_tiny_model, sentiment_frame, snapshot_of
from keepfit.types import Snapshot

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "model", all_texts())


@pytest.fixture(scope="session")
def easy_snapshot() -> Snapshot:
    return snapshot_of(sentiment_frame(200, 1), sentiment_frame(60, 2), sentiment_frame(60, 3))


@pytest.fixture(scope="session")
def trained(tiny_model, easy_snapshot, tmp_path_factory):
    """One full fine-tune of the tiny model on the easy task, shared by the output tests."""
    from keepfit.train import train_model

    run = tmp_path_factory.mktemp("run") / "run"
    return train_model(easy_snapshot, config_for(tiny_model, epochs=8), run, progress=False)
