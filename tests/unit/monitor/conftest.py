"""Constructed streams: a reference and windows of logged predictions with known shifts (or none).

Scores are calibrated by construction: a row with top probability p is right with probability p, so the
reference's accuracy, the windows' CBPE estimates and their feedback agree unless a test shifts them.
"""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from keepfit.monitor.run import Reference
from keepfit.train.testing import sentiment_frame

LABELS = ("neg", "pos", "neu")
SHARES = (0.49, 0.49, 0.02)  # a rare label: its expected window count is below 5, so the permutation chi-square runs
START = 1_772_323_200.0  # 2026-03-01T00:00:00Z
NEW_TOPIC = ["refund", "card", "charged", "twice", "account", "blocked", "transfer", "pending", "fee", "atm"]


def calibrated_scores(rng: np.random.Generator, n: int, a: float = 6.0, b: float = 1.5) -> np.ndarray:
    """Top probabilities in [0.4, 1): 0.4 + 0.6 Beta(a, b) (mean 0.88 with the defaults)."""
    return 0.4 + 0.6 * rng.beta(a, b, n)


def make_reference(seed: int = 0, n: int = 600, abstain_below: float = 0.5) -> Reference:
    rng = np.random.default_rng(seed)
    scores = calibrated_scores(rng, n)
    return Reference(
        version="1",
        snapshot_id="snap",
        labels=LABELS,
        predicted=rng.choice(len(LABELS), size=n, p=SHARES),
        correct=rng.uniform(size=n) < scores,
        scores=scores,
        abstained=scores < abstain_below,
        texts=sentiment_frame(400, seed=1, labels=("neg", "pos"))["text"].tolist(),
    )


def make_window(
    seed: int,
    n: int = 150,
    *,
    shares=SHARES,
    score_shape: tuple[float, float] = (6.0, 1.5),
    abstain_below: float = 0.5,
    new_topic: bool = False,
    feedback_share: float = 0.4,
    accuracy_factor: float = 1.0,
    start: float = START,
    seconds: float = 3600.0,
    meta: dict | None = None,
) -> pd.DataFrame:
    """Logged rows as PredictionLog.predictions() returns them. ``accuracy_factor`` < 1 makes the truth
    disagree with the confidences (right with probability factor * p); ``new_topic`` puts unseen words in."""
    rng = np.random.default_rng(seed)
    texts = sentiment_frame(n, seed=10_000 + seed, labels=("neg", "pos"))["text"].tolist()
    if new_topic:
        texts = [" ".join(rng.choice(NEW_TOPIC, 3)) + " " + t for t in texts]
    predicted = rng.choice(len(LABELS), size=n, p=shares)
    scores = calibrated_scores(rng, n, *score_shape)
    abstained = scores < abstain_below
    probabilities = [_probabilities(j, s) for j, s in zip(predicted, scores, strict=True)]
    right = rng.uniform(size=n) < accuracy_factor * scores
    truth = [LABELS[j] if ok else LABELS[(j + 1) % len(LABELS)] for j, ok in zip(predicted, right, strict=True)]
    with_feedback = rng.uniform(size=n) < feedback_share
    return pd.DataFrame({
        "request_id": [f"r{seed}-{i}" for i in range(n)],
        "time": start + np.sort(rng.uniform(0, seconds, n)),
        "model_version": "1",
        "text": texts,
        "text_hash": "",
        "label": [None if a else LABELS[j] for j, a in zip(predicted, abstained, strict=True)],
        "score": scores,
        "abstained": abstained,
        "probabilities": probabilities,
        "latency_ms": 1.0,
        "meta": [dict(meta or {}) for _ in range(n)],
        "feedback_label": [t if f else None for t, f in zip(truth, with_feedback, strict=True)],
    })


def _probabilities(top: int, score: float) -> list[float]:
    rest = (1 - score) / (len(LABELS) - 1)
    return [score if j == top else rest for j in range(len(LABELS))]


@pytest.fixture
def streams():
    """The helpers above (test modules cannot import conftest under --import-mode=importlib)."""
    return SimpleNamespace(
        LABELS=LABELS, SHARES=SHARES, START=START, NEW_TOPIC=NEW_TOPIC, labels_of={"1": list(LABELS)},
        reference=make_reference, window=make_window, calibrated_scores=calibrated_scores,
    )
