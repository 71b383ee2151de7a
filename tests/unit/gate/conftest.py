"""Constructed paired predictions with known flips."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest


def probs_for(pred: np.ndarray, n_labels: int, confidence: float = 0.8) -> np.ndarray:
    """Probabilities whose argmax is ``pred`` (one row per example)."""
    pred = np.asarray(pred)
    p = np.full((len(pred), n_labels), (1 - confidence) / max(n_labels - 1, 1))
    p[np.arange(len(pred)), pred] = confidence
    return p


def wrong_label(y: np.ndarray, n_labels: int, rng: np.random.Generator) -> np.ndarray:
    """A label different from ``y`` for every row."""
    return (y + rng.integers(1, n_labels, len(y))) % n_labels


def paired(n: int = 600, n_labels: int = 5, seed: int = 0, old_accuracy: float = 0.9):
    """Truth, the old model's predictions (about ``old_accuracy`` right), a slice frame, and an rng."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % n_labels
    rng.shuffle(y)
    old = np.where(rng.uniform(size=n) < old_accuracy, y, wrong_label(y, n_labels, rng))
    frame = pd.DataFrame(
        {"text": [f"example {i}" for i in range(n)], "slice:source": rng.choice(["web", "app", "mail"], n)}
    )
    return y, old, frame, rng


@pytest.fixture
def kit():
    """The helpers above (test modules cannot import conftest under --import-mode=importlib)."""
    return SimpleNamespace(probs_for=probs_for, wrong_label=wrong_label, paired=paired)
