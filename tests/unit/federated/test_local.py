"""A member's local round: only the trainable part is shared, FedProx's proximal term holds it near the global
weights, and mismatched weights are refused."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from keepfit.config import KeepfitConfig
from keepfit.errors import TrainingError
from keepfit.federated.local import build_member, set_weights, train_round, trainable_weights
from keepfit.train.testing import config_for, sentiment_frame


@pytest.fixture(scope="module")
def member(tiny_model, tmp_path_factory):
    config = config_for(tiny_model, head_lr=0.05)
    return build_member(config, sentiment_frame(48, 3), ["neg", "pos"], tiny_model, tmp_path_factory.mktemp("c0"))


def _drift(new: dict, old: dict) -> float:
    return float(sum(((new[k] - old[k]) ** 2).sum() for k in old))


def test_only_the_head_is_shared_and_a_round_reports_its_examples(member):
    start = trainable_weights(member)
    assert sorted(start) == ["linear.bias", "linear.weight"] and start["linear.weight"].shape == (2, 32)
    new, n, metrics = train_round(member, start, server_round=1)
    assert n == 48 and set(metrics) == {"train-loss"} and metrics["train-loss"] > 0
    assert sorted(new) == sorted(start) and _drift(new, start) > 0


def test_the_proximal_term_changes_the_local_update(member):
    start = {k: v + 0.01 for k, v in trainable_weights(member).items()}
    plain, _, _ = train_round(member, start, server_round=2)
    again, _, _ = train_round(member, start, server_round=2)
    prox, _, _ = train_round(member, start, server_round=2, mu=50.0)
    assert _drift(plain, again) == 0  # same round, same start: the same update (so the difference is mu's)
    assert 0 < _drift(prox, start) < 0.5 * _drift(plain, start)


def test_weights_for_another_part_or_shape_are_refused(member):
    start = trainable_weights(member)
    with pytest.raises(TrainingError, match=r"must train the same part"):
        set_weights(member, {"linear.weight": start["linear.weight"]})
    with pytest.raises(TrainingError, match=r"expected shape \(2, 32\), got \(3, 32\)"):
        set_weights(member, {**start, "linear.weight": torch.zeros(3, 32)})


def test_member_config_trains_the_configured_part_for_the_local_epochs(tiny_model):
    from keepfit.federated.local import member_config

    config = KeepfitConfig.model_validate({"model": {"name": str(tiny_model)}, "train": {"strategy": "full"},
                                           "federate": {"train_strategy": "lora", "local_epochs": 2, "lr": 3e-4}})
    train = member_config(config).train
    assert (train.strategy, train.epochs, train.lr, train.threads) == ("lora", 2, 3e-4, 1)


def test_lora_members_share_adapters_and_head_and_the_average_exports_as_a_model_folder(tiny_model, tmp_path):
    from keepfit.federated.flower import Ledger
    from keepfit.federated.run import export_average, server_member
    from keepfit.train import load_predictor
    from keepfit.train.testing import snapshot_of

    config = config_for(tiny_model).model_copy(update={"federate": KeepfitConfig().federate.model_copy(
        update={"train_strategy": "lora"})})
    snap = snapshot_of(sentiment_frame(40, 1), sentiment_frame(16, 2), sentiment_frame(16, 3))
    server, labels = server_member(config, snap, tiny_model, tmp_path)
    client = build_member(config, sentiment_frame(32, 4), labels, tiny_model, tmp_path / "c")
    shared = trainable_weights(server)
    assert any("lora_A" in n for n in shared) and any("classifier" in n for n in shared)
    assert not any("word_embeddings" in n for n in shared)  # the frozen encoder never travels
    new, n, _ = train_round(client, shared, server_round=1)
    ledger = Ledger(final=new)
    trained = export_average(server, snap, ledger, tmp_path)
    predictor = load_predictor(trained.model_dir)
    assert predictor.labels == ["neg", "pos"]
    assert predictor.predict(["a good film", "a bad film"]).outputs.shape == (2, 2)


@pytest.mark.skipif(importlib.util.find_spec("flwr") is None, reason="needs the federated extra (flwr)")
@pytest.mark.parametrize(("name", "fraction", "per_round"), [("fedavg", 1.0, 5), ("fedprox", 0.5, 3)])
def test_the_server_uses_flowers_own_strategy(name, fraction, per_round):
    from flwr.serverapp.strategy import FedAvg, FedProx

    from keepfit.federated.flower import Ledger, make_strategy

    config = KeepfitConfig.model_validate({"federate": {"strategy": name, "mu": 0.3, "fraction": fraction}})
    strategy = make_strategy(config, 5, Ledger())
    assert isinstance(strategy, FedProx if name == "fedprox" else FedAvg)
    assert (strategy.min_train_nodes, strategy.min_available_nodes, strategy.fraction_evaluate) == (
        per_round, per_round, 0)
    assert getattr(strategy, "proximal_mu", 0.0) == (0.3 if name == "fedprox" else 0.0)
