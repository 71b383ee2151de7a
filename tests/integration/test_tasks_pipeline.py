"""Multi-label and regression through the whole pipeline (files -> fit -> evaluate -> update) on a tiny model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import keepfit
from keepfit.train.testing import all_texts, make_tiny_model, sentiment_frame


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "model", all_texts())


def _config(folder: Path, model: Path, data: str, extra: str) -> keepfit.KeepfitConfig:
    (folder / "keepfit.yaml").write_text(
        f"model:\n  name: {model}\ndata:\n  train: {data}\n{extra}"
        "train:\n  lr: 0.01\n  head_lr: null\n  epochs: 6\n  precision: fp32\n  threads: 1\n"
        "  freeze_embeddings: false\n"
        "evaluate:\n  bootstrap: 100\n"
    )
    return keepfit.load_config(folder / "keepfit.yaml")


def fitted_labels(config: keepfit.KeepfitConfig) -> list[str]:
    return keepfit.Registry.open(config).get("champion").lineage.labels or []


def _served(config: keepfit.KeepfitConfig, texts: list[str], truths):
    """Serve the champion in process; /predict ``texts``, then /feedback with ``truths(predictions)``."""
    from fastapi.testclient import TestClient

    from keepfit.serve.app import create_app

    with TestClient(create_app(config)) as client:
        answer = client.post("/predict", json={"texts": texts}).json()
        ids = [p["id"] for p in answer["predictions"]]
        labels = truths(answer["predictions"])
        feedback = client.post("/feedback", json=[{"request_id": i, "label": x} for i, x in zip(ids, labels,
                                                                                                 strict=True)])
    return answer, feedback


def _multi_label(n: int, seed: int) -> pd.DataFrame:
    a, b = sentiment_frame(n, seed), sentiment_frame(n, seed + 100)
    labels = ["|".join(sorted({x, y})) for x, y in zip(a["label"], b["label"][::-1], strict=True)]
    return pd.DataFrame({"text": a["text"] + " " + b["text"], "tags": labels})


def test_multi_label_fit_and_update(tiny: Path, tmp_path: Path):
    _multi_label(300, 1).to_csv(tmp_path / "week1.csv", index=False)
    _multi_label(150, 7).to_csv(tmp_path / "week2.csv", index=False)
    config = _config(tmp_path, tiny, "week1.csv", "  label_column: tags\ntask: multi-label\n")
    fitted = keepfit.fit(config)
    assert fitted.version == "1"
    assert fitted.metrics["subset_accuracy"] > 0.7, fitted.metrics
    answer, feedback = _served(config, ["good great film", "awful bad boring"],
                               lambda a: ["|".join(fitted_labels(config)), fitted_labels(config)[0]])
    assert all(isinstance(p["labels"], list) and p["label"] == "|".join(p["labels"]) for p in answer["predictions"])
    assert feedback.status_code == 200, feedback.text
    result = keepfit.update(config, tmp_path / "week2.csv")
    assert result.decision is not None and result.candidate_version == "2"
    assert result.promoted == result.decision.passed
    assert "all" in result.comparison.groups


def test_regression_fit_evaluate_and_update(tiny: Path, tmp_path: Path):
    def frame(n: int, seed: int) -> pd.DataFrame:
        f = sentiment_frame(n, seed)
        return pd.DataFrame({"text": f["text"], "score": np.where(f["label"] == "pos", 4.5, 1.5)})

    frame(300, 1).to_csv(tmp_path / "week1.csv", index=False)
    frame(150, 7).to_csv(tmp_path / "week2.csv", index=False)
    config = _config(tmp_path, tiny, "week1.csv", "  label_column: null\n  target_column: score\ntask: regression\n")
    fitted = keepfit.fit(config)
    assert fitted.metrics["mae"] < 0.75, "a constant guess is off by 1.5"
    answer, feedback = _served(config, ["good great film", "awful bad boring"], lambda a: ["4.5", "lots"])
    values = [p["prediction"] for p in answer["predictions"]]
    assert values[0] > values[1], "the positive text gets the higher score"
    assert feedback.status_code == 422 and "not a number: 'lots'" in feedback.json()["error"]
    again = keepfit.evaluate(config, "champion", out_dir=tmp_path / "eval")
    assert again.metrics["mae"] == pytest.approx(fitted.metrics["mae"], rel=1e-5)
    result = keepfit.update(config, tmp_path / "week2.csv", force=True)
    assert result.promoted and (result.forced == (not result.decision.passed))


def test_untrainable_data_is_a_clear_error_before_any_training(tiny: Path, tmp_path: Path):
    pd.DataFrame({"text": [f"text number {i}" for i in range(40)], "label": "a"}).to_csv(
        tmp_path / "one.csv", index=False
    )
    config = _config(tmp_path, tiny, "one.csv", "")
    with pytest.raises(keepfit.DataError, match="at least two"):
        keepfit.fit(config)
    pd.DataFrame({"text": ["good film", "bad film", "nice plot"], "label": ["pos", "neg", "pos"]}).to_csv(
        tmp_path / "tiny.csv", index=False
    )
    config = _config(tmp_path, tiny, "tiny.csv", "")
    with pytest.raises(keepfit.DataError, match="Add more data"):
        keepfit.fit(config)
    assert not (tmp_path / ".keepfit" / "runs").exists() or not any((tmp_path / ".keepfit" / "runs").iterdir())
