"""What the unit tests of several stages share: offline settings and one tiny model built from a config."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from keepfit.train.testing import all_texts, make_tiny_model

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "model", all_texts())


@pytest.fixture(scope="session")
def tiny_lm(tmp_path_factory) -> Path:
    """A random tiny Llama with a byte-level BPE tokenizer and a ChatML template (text-generation tests)."""
    from keepfit.train.testing import chat_texts, make_tiny_causal_lm

    return make_tiny_causal_lm(tmp_path_factory.mktemp("tiny-lm") / "model", chat_texts(), hidden=64)
