"""An update asks the champion about the same rows several times: inside logits_cache it computes each once."""

from __future__ import annotations

import torch

from keepfit.train import load_predictor
from keepfit.train.predict import Predictor, logits_cache


def _counting(monkeypatch) -> list[int]:
    calls: list[int] = []
    original = Predictor._forward

    def counted(self, cleaned, batch_size):
        calls.append(len(cleaned))
        return original(self, cleaned, batch_size)

    monkeypatch.setattr(Predictor, "_forward", counted)
    return calls


def test_each_text_is_computed_once_across_predictors_of_the_folder(trained, easy_snapshot, monkeypatch):
    texts = easy_snapshot.test["text"].tolist()
    plain = load_predictor(trained.model_dir).logits(texts)
    calls = _counting(monkeypatch)
    with logits_cache(trained.model_dir):
        first = load_predictor(trained.model_dir).logits(texts[:20])
        again = load_predictor(trained.model_dir).logits(texts)  # another instance: 20 rows known already
        repeated = load_predictor(trained.model_dir).logits(texts[5:10] + texts[5:10])
    assert calls == [20, len(set(texts)) - len(set(texts[:20]))]
    assert torch.allclose(first, plain[:20]) and torch.allclose(again, plain)
    assert torch.allclose(repeated, torch.cat([plain[5:10], plain[5:10]]))
    load_predictor(trained.model_dir).logits(texts[:3])  # the scope is closed: computed again
    assert calls[-1] == 3


def test_other_folders_are_not_cached_so_changed_weights_show(trained, tiny_model, easy_snapshot, tmp_path):
    import shutil

    copy = shutil.copytree(trained.model_dir, tmp_path / "candidate")
    texts = easy_snapshot.test["text"].tolist()[:10]
    with logits_cache(trained.model_dir):
        candidate = load_predictor(copy)
        before = candidate.logits(texts)
        with torch.no_grad():
            for p in candidate.model.parameters():
                p.mul_(0.5)
        assert not torch.allclose(before, candidate.logits(texts))
