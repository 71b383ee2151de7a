"""Recipe options of the best preset: checkpoint averaging and frozen word embeddings."""

from __future__ import annotations

import json

import torch
from safetensors.torch import load_file
from torch import nn

from keepfit.train import load_predictor, train_model
from keepfit.train.checkpoint import WEIGHTS, average_ranked, save_ranked
from keepfit.train.model import input_embeddings
from keepfit.train.testing import config_for


def test_save_ranked_keeps_the_best_n_and_averages_them(tmp_path):
    model = nn.Linear(2, 1, bias=False)
    for epoch, (metric, value) in enumerate([(0.5, 1.0), (0.9, 2.0), (0.7, 3.0), (0.8, 4.0)], start=1):
        with torch.no_grad():
            model.weight.fill_(value)
        save_ranked(tmp_path, model, metric, float(epoch), keep=2, lower_is_better=False, everything=True)
    kept = json.loads((tmp_path / "top" / "index.json").read_text())
    assert [e["epoch"] for e in kept] == [2.0, 4.0]
    assert sorted(p.name for p in (tmp_path / "top").glob("*.safetensors")) == ["e2.0000.safetensors",
                                                                                "e4.0000.safetensors"]
    weights, entries = average_ranked(tmp_path)
    assert len(entries) == 2
    assert torch.allclose(weights["weight"], torch.full((1, 2), 3.0))  # (2 + 4) / 2


def test_lower_is_better_metrics_rank_the_other_way(tmp_path):
    model = nn.Linear(1, 1)
    for epoch, loss in enumerate([0.3, 0.1, 0.2], start=1):
        save_ranked(tmp_path, model, loss, float(epoch), keep=1, lower_is_better=True, everything=True)
    assert [e["epoch"] for e in json.loads((tmp_path / "top" / "index.json").read_text())] == [2.0]
    assert average_ranked(tmp_path) is None  # one kept: nothing to average


def test_average_of_the_best_checkpoints_is_used_only_when_validation_says_so(tiny_model, easy_snapshot, tmp_path):
    config = config_for(tiny_model, epochs=3, evals_per_epoch=2, average_checkpoints=3)
    result = train_model(easy_snapshot, config, tmp_path / "run", progress=False)
    meta = json.loads((result.model_dir / "keepfit.json").read_text())
    info = meta["checkpoint_average"]
    assert len(info["epochs"]) == 3
    assert info["used"] == (info["validation"]["average"] >= info["validation"]["best single"])
    exported = load_predictor(result.model_dir).model.state_dict()["classifier.weight"]
    checkpoints = tmp_path / "run" / "checkpoints"
    chosen = (average_ranked(checkpoints)[0] if info["used"] else load_file(str(checkpoints / "best" / WEIGHTS)))
    assert torch.allclose(exported, chosen["classifier.weight"])


def test_frozen_word_embeddings_stay_as_loaded(tiny_model, easy_snapshot, tmp_path):
    from keepfit.train.model import load_model

    before = input_embeddings(load_model(tiny_model, "single-label", ["neg", "pos"])).weight.detach().clone()
    config = config_for(tiny_model, epochs=2, freeze_embeddings=True)
    result = train_model(easy_snapshot, config, tmp_path / "run", progress=False)
    model = load_predictor(result.model_dir).model
    assert torch.equal(input_embeddings(model).weight, before)
    layer = dict(model.named_parameters())["bert.encoder.layer.0.attention.self.query.weight"]
    original = dict(load_model(tiny_model, "single-label", ["neg", "pos"]).named_parameters())
    assert not torch.equal(layer, original["bert.encoder.layer.0.attention.self.query.weight"])


def test_a_probed_head_predicts_before_the_encoder_has_learnt_anything(easy_snapshot, tmp_path):
    import numpy as np

    from keepfit.train.testing import all_texts, make_tiny_model

    tiny_model = make_tiny_model(tmp_path / "mean", all_texts(), mean_pooling=True)

    def accuracy(head_init: str) -> float:
        # one step at a negligible learning rate: whatever the model knows, its head knew at the start
        config = config_for(tiny_model, epochs=0.05, lr=1e-9, head_lr=1e-9, head_init=head_init, warmup_ratio=0.0)
        result = train_model(easy_snapshot, config, tmp_path / head_init, progress=False)
        preds = load_predictor(result.model_dir).predict(easy_snapshot.test["text"].tolist())
        return float((np.array(preds.labels)[preds.outputs.argmax(1)] == easy_snapshot.test["label"]).mean())

    probed, random = accuracy("probe"), accuracy("random")
    assert probed >= 0.75, probed
    assert probed > random + 0.1, (probed, random)
