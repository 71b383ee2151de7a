"""The exported folder: plain transformers loads it and predicts what keepfit predicts; predict_file."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from keepfit.errors import DataError
from keepfit.train import load_predictor, predict_file


def test_plain_transformers_loads_the_folder_and_agrees(trained, easy_snapshot):
    """Plain transformers gives the same logits; keepfit serves them through the saved temperature."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from keepfit.train.postprocess import load_postprocessing

    folder = trained.model_dir
    model = AutoModelForSequenceClassification.from_pretrained(str(folder)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    assert model.config.id2label == {0: "neg", 1: "pos"} and model.config.label2id == {"neg": 0, "pos": 1}
    assert model.config.problem_type == "single_label_classification"
    texts = easy_snapshot.test["text"].tolist()[:20]
    meta = json.loads((folder / "keepfit.json").read_text())
    with torch.no_grad():
        batch = tokenizer(
            texts, padding=True, truncation=True, max_length=meta["max_length"], return_tensors="pt"
        )
        temperature = load_postprocessing(folder).temperature or 1.0
        hf = torch.softmax(model(**batch).logits / temperature, -1).numpy()
    ours = load_predictor(folder, precision="fp32").predict(texts).outputs
    np.testing.assert_allclose(ours, hf, atol=1e-5)
    assert meta["data_snapshot"] == easy_snapshot.id and meta["labels"] == ["neg", "pos"]
    card = (folder / "README.md").read_text()
    assert easy_snapshot.id in card and meta["config_hash"] in card and "validation_accuracy" in card


def test_predictions_are_in_input_order_and_top_k_sorted(trained, easy_snapshot):
    predictor = load_predictor(trained.model_dir, precision="fp32")
    texts = easy_snapshot.test["text"].tolist()
    together = predictor.predict(texts, batch_size=7, top_k=2)
    one_by_one = np.vstack([predictor.predict([t]).outputs for t in texts[:10]])
    np.testing.assert_allclose(together.outputs[:10], one_by_one, atol=1e-5)
    assert together.outputs.shape == (60, 2) and np.allclose(together.outputs.sum(1), 1.0, atol=1e-5)
    assert all(s[0] >= s[1] for s in together.top_k_scores)
    assert together.texts_per_second > 0


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_predict_file_writes_columns_in_input_order(trained, easy_snapshot, tmp_path, suffix):
    frame = easy_snapshot.test.rename(columns={"text": "message"}).assign(id=range(60))
    src = tmp_path / f"in{suffix}"
    {
        ".csv": lambda p: frame.to_csv(p, index=False),
        ".jsonl": lambda p: frame.to_json(p, orient="records", lines=True),
        ".parquet": lambda p: frame.to_parquet(p, index=False),
    }[suffix](src)
    out = tmp_path / f"out{suffix}"
    report = predict_file(trained.model_dir, src, out, text_column="message", top_k=2)
    result = {
        ".csv": pd.read_csv,
        ".jsonl": lambda p: pd.read_json(p, lines=True),
        ".parquet": pd.read_parquet,
    }[suffix](out)
    assert report.rows == 60 and report.texts_per_second > 0
    assert [int(x) for x in result["id"]] == list(range(60))
    assert "label" in result.columns and "predicted_label" in result.columns  # the input's label is kept
    expected = load_predictor(trained.model_dir).predict(frame["message"].tolist())
    assert list(result["predicted_label"]) == [expected.labels[i] for i in expected.outputs.argmax(1)]
    top = [json.loads(x) for x in result["top_k"]]
    assert all(len(t) == 2 and t[0][0] == lab for t, lab in zip(top, result["predicted_label"], strict=True))
    assert np.allclose(result["score"], [t[0][1] for t in top], atol=1e-5)


def test_predict_file_names_a_missing_text_column(trained, easy_snapshot, tmp_path):
    src = tmp_path / "in.csv"
    easy_snapshot.test.to_csv(src, index=False)
    with pytest.raises(DataError, match="--text-column"):
        predict_file(trained.model_dir, src, tmp_path / "out.csv", text_column="body")
