"""BCWI interpolation and imprinted new-label rows, on tiny models built from a config."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from keepfit.train.interpolate import choose_alpha, interpolate_candidate, mix_state
from keepfit.train.testing import config_for, sentiment_frame, snapshot_of


def test_mix_state_mixes_shared_rows_and_keeps_new_rows_and_integer_buffers():
    old = {"w": torch.zeros(2, 3), "head": torch.zeros(2, 4), "ids": torch.arange(3), "gone": torch.ones(1)}
    new = {"w": torch.ones(2, 3), "head": torch.ones(3, 4), "ids": torch.arange(3) + 5, "extra": torch.ones(2)}
    mixed = mix_state(old, new, 0.25)
    assert torch.allclose(mixed["w"], torch.full((2, 3), 0.75))
    assert torch.allclose(mixed["head"][:2], torch.full((2, 4), 0.75)) and torch.equal(mixed["head"][2], torch.ones(4))
    assert torch.equal(mixed["ids"], new["ids"]) and torch.equal(mixed["extra"], new["extra"])
    assert set(mixed) == set(new)


def test_choose_alpha_takes_the_fewest_flips_within_the_accuracy_margin():
    curve = [
        {"alpha": 0.0, "accuracy": 0.90, "negative_flip_rate": 0.05},
        {"alpha": 0.2, "accuracy": 0.897, "negative_flip_rate": 0.03},
        {"alpha": 0.4, "accuracy": 0.894, "negative_flip_rate": 0.03},
        {"alpha": 0.6, "accuracy": 0.88, "negative_flip_rate": 0.01},  # fewest flips, but too much accuracy lost
    ]
    assert choose_alpha(curve, margin=0.005) == 0.2
    assert choose_alpha(curve, margin=0.05) == 0.6
    assert choose_alpha(curve, margin=0.0) == 0.0


@pytest.fixture(scope="module")
def two_models(trained, tmp_path_factory):
    from keepfit.train import train_model

    root = tmp_path_factory.mktemp("bcwi")
    champion = trained.model_dir
    frame, more = sentiment_frame(60, seed=2), sentiment_frame(200, seed=4)
    warm = snapshot_of(more, frame, sentiment_frame(60, seed=3))
    candidate = train_model(warm, config_for(champion, epochs=2, seed=3), root / "candidate", init_from=champion,
                            progress=False).model_dir
    return champion, candidate, frame, root


def test_alpha_one_serves_the_champion_and_auto_writes_a_loadable_folder(two_models):
    from keepfit.train import load_predictor

    champion, candidate, val, root = two_models
    texts, labels = val["text"].tolist(), val["label"].tolist()
    full = interpolate_candidate(champion, candidate, texts, labels, root / "a1", setting=1.0)
    assert full.alpha == 1.0 and full.model_dir is not None
    ours = load_predictor(full.model_dir).logits(texts)
    theirs = load_predictor(champion).logits(texts)
    assert torch.allclose(ours, theirs, atol=1e-3), "all weight on the champion is the champion"
    auto = interpolate_candidate(champion, candidate, texts, labels, root / "auto")
    assert [p["alpha"] for p in auto.curve] == sorted(p["alpha"] for p in auto.curve) and auto.curve[0]["alpha"] == 0
    base = auto.curve[0]["accuracy"]
    chosen = next(p for p in auto.curve if p["alpha"] == auto.alpha)
    assert chosen["accuracy"] >= base - auto.margin - 1e-9
    assert chosen["negative_flip_rate"] == min(
        p["negative_flip_rate"] for p in auto.curve if p["accuracy"] >= base - auto.margin - 1e-9
    )
    if auto.model_dir is not None:
        assert (auto.model_dir / "keepfit_postprocess.json").exists()


def test_new_label_rows_start_at_their_examples(trained, tmp_path):
    """Imprinting: before any step, the grown row already prefers its own label's training rows."""
    from keepfit.train import load_predictor, train_model
    from keepfit.train.model import head_linear

    champion = trained.model_dir
    week2 = sentiment_frame(210, seed=2, labels=("neg", "pos", "neu"))
    snap = snapshot_of(week2[:150], week2[150:180], week2[180:], labels=["neg", "pos", "neu"])
    # a vanishing learning rate: what the new row knows after training is what it started with
    config = config_for(champion, epochs=1, lr=1e-12, head_lr=1e-12)
    run = train_model(snap, config, tmp_path / "v2", init_from=champion, progress=False)
    predictor = load_predictor(run.model_dir)
    neu = week2[week2["label"] == "neu"]["text"].tolist()
    assert predictor.labels == ["neg", "pos", "neu"]
    share = float((predictor.logits(neu).argmax(-1) == 2).float().mean())
    assert share > 0.5, f"only {share:.0%} of the new label's rows go to its imprinted row"
    head = head_linear(predictor.model).weight.detach()
    assert not torch.allclose(head[2], head[:2].mean(dim=0)), "the new row is not the average of the old ones"
    assert float(np.linalg.norm(head[2].numpy())) == pytest.approx(float(head[:2].norm(dim=1).mean()), rel=0.05)
