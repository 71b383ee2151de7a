"""Mean pooling: chosen for encoders that declare it, saved so plain transformers can rebuild it, kept by updates."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from keepfit.train import load_predictor, train_model
from keepfit.train.model import load_model, pooling_of, resolve_pooling
from keepfit.train.pooling import HEAD_FILE, MeanPooledClassifier, declares_mean_pooling, mean_pool
from keepfit.train.testing import all_texts, config_for, make_tiny_model, sentiment_frame, snapshot_of


@pytest.fixture(scope="module")
def mean_model(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("mean") / "model", all_texts(), mean_pooling=True)


@pytest.fixture(scope="module")
def mean_trained(mean_model, easy_snapshot, tmp_path_factory):
    run = tmp_path_factory.mktemp("mean-run") / "run"
    return train_model(easy_snapshot, config_for(mean_model, epochs=6), run, progress=False)


def test_auto_pooling_follows_what_the_folder_declares(mean_model, tiny_model):
    assert declares_mean_pooling(mean_model) and not declares_mean_pooling(tiny_model)
    assert resolve_pooling(mean_model) == "mean"
    assert resolve_pooling(tiny_model) == "cls"
    assert resolve_pooling(tiny_model, "mean") == "mean"
    assert resolve_pooling(mean_model, "cls") == "cls"


def test_mean_pool_ignores_padding():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert torch.allclose(mean_pool(hidden, mask), torch.tensor([[2.0, 3.0]]))


def test_mean_pooled_model_learns_and_reloads_the_same(mean_trained, easy_snapshot):
    folder = mean_trained.model_dir
    assert (folder / HEAD_FILE).exists()
    predictor = load_predictor(folder)
    assert isinstance(predictor.model, MeanPooledClassifier)
    assert predictor.meta["pooling"] == "mean"
    texts = easy_snapshot.test["text"].tolist()
    preds = predictor.predict(texts)
    accuracy = (np.array(preds.labels)[preds.outputs.argmax(1)] == easy_snapshot.test["label"].to_numpy()).mean()
    assert accuracy >= 0.8, accuracy
    again = load_predictor(folder)
    assert torch.allclose(predictor.logits(texts), again.logits(texts))


def test_the_model_card_recipe_rebuilds_the_logits_with_plain_transformers(mean_trained, easy_snapshot):
    from safetensors.torch import load_file
    from transformers import AutoModel, AutoTokenizer

    folder = mean_trained.model_dir
    predictor = load_predictor(folder, precision="fp32")
    texts = easy_snapshot.test["text"].tolist()[:8]
    encoder, tokenizer = AutoModel.from_pretrained(str(folder)).eval(), AutoTokenizer.from_pretrained(str(folder))
    head = load_file(str(folder / HEAD_FILE))
    batch = tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
    batch.pop("token_type_ids", None)
    with torch.no_grad():
        mask = batch["attention_mask"].unsqueeze(-1).float()
        pooled = (encoder(**batch).last_hidden_state * mask).sum(1) / mask.sum(1)
        logits = pooled @ head["weight"].T + head["bias"]
    assert torch.allclose(logits, predictor.logits(texts), atol=1e-4)
    assert "keepfit_head.safetensors" in (folder / "README.md").read_text()


def test_warm_start_keeps_mean_pooling_and_the_old_head_rows(mean_trained):
    folder = mean_trained.model_dir
    old = load_predictor(folder).model.classifier.weight.detach().clone()
    grown = load_model(folder, "single-label", ["neg", "pos", "neu"], pooling="cls")  # a keepfit model keeps its own
    assert pooling_of(grown) == "mean"
    assert grown.classifier.weight.shape[0] == 3
    assert torch.equal(grown.classifier.weight[:2], old)


@pytest.mark.parametrize("strategy", ["lora", "head"])
def test_other_strategies_train_the_mean_pooled_head(mean_model, strategy, tmp_path):
    snap = snapshot_of(sentiment_frame(120, 1), sentiment_frame(40, 2), sentiment_frame(40, 3))
    before = MeanPooledClassifier.from_folder(
        mean_model, load_model(mean_model, "single-label", ["neg", "pos"]).config, 0.1, head=False
    )
    result = train_model(snap, config_for(mean_model, epochs=2, strategy=strategy), tmp_path / "run", progress=False)
    model = load_predictor(result.model_dir).model
    assert pooling_of(model) == "mean"
    head = model.classifier.weight.detach()
    assert head.shape == before.classifier.weight.shape
    assert not torch.allclose(head, before.classifier.weight)  # a fresh head starts near 0 and was trained
    if strategy == "head":  # the encoder stayed as it was loaded
        a = dict(model.encoder_model.named_parameters())["embeddings.word_embeddings.weight"]
        b = dict(before.encoder_model.named_parameters())["embeddings.word_embeddings.weight"]
        assert torch.equal(a, b)
