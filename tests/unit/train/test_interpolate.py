"""BCWI interpolation (uniform and Fisher-weighted, of one candidate or a soup) and imprinted new-label rows, on
tiny models built from a config."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from keepfit.config import KeepfitConfig, load_config
from keepfit.errors import ConfigError, ModelError
from keepfit.train.interpolate import (
    FISHER_FLOOR,
    choose_alpha,
    diagonal_fisher,
    interpolate_candidate,
    mix_state,
    soup_states,
    write_curve,
)
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


@pytest.fixture(scope="module")
def second_candidate(two_models):
    """Another warm start from the same champion on the same rows, with another seed (for a soup)."""
    from keepfit.train import train_model

    champion, _, frame, root = two_models
    warm = snapshot_of(sentiment_frame(200, seed=4), frame, sentiment_frame(60, seed=3))
    return train_model(warm, config_for(champion, epochs=2, seed=11), root / "candidate2", init_from=champion,
                       progress=False).model_dir


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


def _states(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    old = {"w": torch.randn(4, 5, generator=g), "head": torch.randn(2, 5, generator=g), "ids": torch.arange(3)}
    new = {"w": torch.randn(4, 5, generator=g), "head": torch.randn(3, 5, generator=g), "ids": torch.arange(3) + 7}
    return old, new


def test_fisher_mix_with_equal_fishers_is_the_uniform_mix():
    old, new = _states()
    g = torch.Generator().manual_seed(1)
    fisher = {"w": torch.rand(4, 5, generator=g) * 3 + 0.1, "head": torch.rand(3, 5, generator=g) + 0.1}
    fisher_old = {"w": fisher["w"].clone(), "head": fisher["head"][:2].clone()}
    for alpha in (0.0, 0.3, 0.6, 1.0):
        weighted = mix_state(old, new, alpha, (fisher_old, fisher))
        uniform = mix_state(old, new, alpha)
        for name in ("w", "head"):
            assert torch.allclose(weighted[name], uniform[name], atol=1e-6), (alpha, name)
    assert torch.equal(mix_state(old, new, 0.3, (fisher_old, fisher))["ids"], new["ids"])


def test_fisher_mix_leans_to_the_model_with_much_larger_fisher_and_falls_back_where_both_know_nothing():
    old, new = _states()
    big, small = torch.full((4, 5), 1e4), torch.full((4, 5), 1e-3)
    towards_old = mix_state(old, new, 0.3, ({"w": big}, {"w": small}))["w"]
    towards_new = mix_state(old, new, 0.3, ({"w": small}, {"w": big}))["w"]
    uniform = mix_state(old, new, 0.3)["w"]
    assert torch.allclose(towards_old, old["w"], atol=1e-5) and not torch.allclose(uniform, old["w"], atol=1e-2)
    assert torch.allclose(towards_new, new["w"], atol=1e-5)
    # one element of the champion matters a lot, the rest not: only that element moves to the champion's value
    f_old = torch.full((4, 5), 1.0)
    f_old[0, 0] = 1e6
    mixed = mix_state(old, new, 0.3, ({"w": f_old}, {"w": torch.ones(4, 5)}))["w"]
    assert mixed[0, 0] == pytest.approx(float(old["w"][0, 0]), abs=1e-4)
    assert torch.allclose(mixed.flatten()[1:], uniform.flatten()[1:], atol=1e-6)
    # both Fishers (near) zero: the uniform mix, not 0 / 0
    zero = {"w": torch.zeros(4, 5)}
    assert torch.allclose(mix_state(old, new, 0.3, (zero, {"w": torch.full((4, 5), FISHER_FLOOR / 10)}))["w"],
                          uniform, atol=1e-6)
    # the grown head row is the candidate's whatever the Fishers say
    heads = mix_state(old, new, 0.5, ({"head": torch.full((2, 5), 1e6)}, {"head": torch.full((3, 5), 1e-6)}))
    assert torch.allclose(heads["head"][:2], old["head"], atol=1e-5) and torch.equal(heads["head"][2], new["head"][2])


def test_soup_of_identical_states_is_the_state_and_of_two_is_their_mean():
    old, new = _states()
    same = soup_states([new, {k: v.clone() for k, v in new.items()}, {k: v.clone() for k, v in new.items()}])
    assert all(torch.equal(same[k], new[k]) for k in new)
    other = {k: (v + 2 if torch.is_floating_point(v) else v + 1) for k, v in new.items()}
    mean = soup_states([new, other])
    assert torch.allclose(mean["w"], new["w"] + 1) and torch.equal(mean["ids"], new["ids"])
    with pytest.raises(ModelError, match="head is"):
        soup_states([old, {**old, "head": new["head"]}])
    with pytest.raises(ModelError, match="differ in names"):
        soup_states([old, {"w": old["w"]}])
    with pytest.raises(ModelError, match="at least one"):
        soup_states([])


def _reference_fisher(predictor, texts):
    """Per-example squared gradients the plain way (dense gradients of every parameter), scaled to mean 1."""
    from keepfit.train.batching import tokenize
    from keepfit.train.predict import clean_texts

    model = predictor.model.eval()
    total = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    for ids in tokenize(predictor.tokenizer, clean_texts(texts), predictor.max_length):
        batch = {"input_ids": torch.tensor([ids]), "attention_mask": torch.ones(1, len(ids), dtype=torch.long)}
        logp = torch.log_softmax(model(**batch).logits[0], -1)
        model.zero_grad()
        logp[logp.argmax()].backward()
        for n, p in model.named_parameters():
            total[n] += p.grad.square()
    mean = sum(float(t.sum()) for t in total.values()) / sum(t.numel() for t in total.values())
    return {n: t / mean for n, t in total.items()}


def test_diagonal_fisher_is_the_mean_squared_gradient_at_the_predicted_label(trained):
    from keepfit.train import load_predictor

    predictor = load_predictor(trained.model_dir)
    texts = sentiment_frame(12, seed=7)["text"].tolist()
    ours = diagonal_fisher(predictor, texts)
    theirs = _reference_fisher(load_predictor(trained.model_dir), texts)
    assert ours.keys() == theirs.keys()
    for name in ours:
        assert torch.allclose(ours[name], theirs[name], rtol=1e-3, atol=1e-6), name
    embedding = predictor.model.get_input_embeddings().weight
    assert embedding.requires_grad, "the embedding matrix trains again after the estimate"
    name = next(n for n, p in predictor.model.named_parameters() if p is embedding)
    used = {t for ids in predictor.tokenizer(texts)["input_ids"] for t in ids}
    unused = [t for t in range(embedding.shape[0]) if t not in used]
    assert float(ours[name][unused].abs().sum()) == 0 and float(ours[name][sorted(used)].sum()) > 0
    assert float(sum(t.sum() for t in ours.values()) / sum(t.numel() for t in ours.values())) == pytest.approx(1)


def test_fisher_interpolation_ends_at_the_champion_and_records_its_method(two_models, tmp_path):
    from keepfit.train import load_predictor

    champion, candidate, val, _ = two_models
    texts, labels = val["text"].tolist(), val["label"].tolist()
    uniform = interpolate_candidate(champion, candidate, texts, labels, tmp_path / "u", grid=(0.3,))
    fisher = interpolate_candidate(champion, candidate, texts, labels, tmp_path / "f", grid=(0.3,),
                                   method="fisher", fisher_rows=20, seed=1)
    assert fisher.method == "fisher" and uniform.method == "uniform"
    assert fisher.extra["fisher_rows"] == 20 and fisher.extra["fisher_seconds"] > 0
    assert fisher.curve[0] == uniform.curve[0], "a = 0 is the candidate either way"
    full = interpolate_candidate(champion, candidate, texts, labels, tmp_path / "f1", setting=1.0, method="fisher")
    assert "fisher_rows" not in full.extra, "no Fishers are needed when only the ends are tried"
    assert torch.allclose(load_predictor(full.model_dir).logits(texts), load_predictor(champion).logits(texts),
                          atol=1e-3)
    write_curve(fisher, tmp_path / "curve")
    saved = json.loads((tmp_path / "curve" / "interpolation.json").read_text())
    assert saved["method"] == "fisher" and saved["plot"].endswith("interpolation.png")
    assert fisher.plot is not None and fisher.plot.read_bytes()[:4] == b"\x89PNG"
    assert {"negative_flips", "positive_flips"} <= set(saved["curve"][0])


def test_soup_of_two_candidates_is_written_even_at_zero_and_holds_their_mean(two_models, second_candidate, tmp_path):
    from keepfit.train import load_predictor

    champion, candidate, val, _ = two_models
    texts, labels = val["text"].tolist(), val["label"].tolist()
    soup = interpolate_candidate(champion, [candidate, second_candidate], texts, labels, tmp_path / "soup",
                                 setting=0.0)
    assert soup.candidates == 2 and soup.alpha == 0.0 and soup.model_dir is not None
    one, two = (load_predictor(d).model.state_dict() for d in (candidate, second_candidate))
    got = load_predictor(soup.model_dir).model.state_dict()
    name = next(k for k in got if torch.is_floating_point(got[k]) and not torch.equal(one[k], two[k]))
    assert torch.allclose(got[name], (one[name] + two[name]) / 2, atol=1e-6)
    meta = json.loads((soup.model_dir / "keepfit.json").read_text())
    assert meta["interpolation"]["candidates"] == [str(candidate), str(second_candidate)]
    same = interpolate_candidate(champion, [candidate, candidate], texts, labels, tmp_path / "same", setting=0.0)
    assert torch.allclose(load_predictor(same.model_dir).logits(texts), load_predictor(candidate).logits(texts),
                          atol=1e-5), "a soup of one candidate twice is that candidate"


def test_update_config_validates_the_interpolation_and_soup_fields():
    defaults = KeepfitConfig().update
    assert (defaults.interpolate_method, defaults.fisher_rows, defaults.soup) == ("uniform", 256, 1)
    cfg = load_config(None, ["update.interpolate_method=fisher", "update.fisher_rows=64", "update.soup=3"])
    assert (cfg.update.interpolate_method, cfg.update.fisher_rows, cfg.update.soup) == ("fisher", 64, 3)
    with pytest.raises(ConfigError) as info:
        load_config(None, ["update.interpolate_method=fishr", "update.soup=0", "update.fisher_rows=0"])
    text = str(info.value)
    assert "update.interpolate_method" in text and "'uniform' or 'fisher'" in text and "fishr" in text
    assert "update.soup" in text and "update.fisher_rows" in text and len(info.value.problems) == 3
