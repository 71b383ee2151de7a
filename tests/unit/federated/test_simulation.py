"""A two-client Flower simulation (a SuperLink's simulation runtime, Ray) on a tiny model: the server's average
is the example-weighted mean of what the clients sent, only weights and counts reach it, the result registers
and predicts, and with a champion the federated model goes through the gate."""

from __future__ import annotations

import importlib.util

import numpy as np
import pandas as pd
import pytest

import keepfit
from keepfit.registry import Registry
from keepfit.train.testing import sentiment_frame, write_tiny_project

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("flwr") is None or importlib.util.find_spec("ray") is None,
    reason="needs the federated extra (flwr[simulation])",
)
HEAD = {"linear.weight": [2, 32], "linear.bias": [2]}


@pytest.fixture(scope="module")
def project(tiny_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("federation")
    path = write_tiny_project(folder, tiny_model, rows=160, train={"head_lr": 0.05},
                              federate={"clients": 2, "rounds": 2, "local_epochs": 2})
    config = keepfit.load_config(path)
    return config.model_copy(update={"store": str(folder / ".keepfit"), "data": config.data.model_copy(
        update={"train": str(folder / "rows.csv")})})


@pytest.fixture(scope="module")
def first(project):
    result = keepfit.federate(project, keep_weights=True)
    return result, result.averages


def test_the_average_is_the_example_weighted_mean_of_what_clients_sent(first):
    result, averages = first
    assert sorted(averages) == [1, 2] and sorted(result.replies) == [1, 2]
    for server_round, replies in result.replies.items():
        assert len(replies) == 2
        counts = np.array([n for n, _ in replies], dtype=float)
        assert sorted(counts) == sorted(result.clients)  # each client weighs with its own rows
        for name in HEAD:
            expected = sum(n * w[name] for n, w in replies) / counts.sum()
            np.testing.assert_allclose(averages[server_round][name], expected, rtol=1e-5, atol=1e-7)
        assert not np.allclose(replies[0][1]["linear.weight"], replies[1][1]["linear.weight"])


def test_the_server_receives_only_weights_and_counts(first):
    result, _ = first
    for r in result.rounds:
        assert r["clients"] == r["sampled"] == 2 and r["failures"] == 0
        assert r["examples"] == sum(result.clients)
        for reply in r["received"]:
            assert reply == {
                "arrays": {"kind": "ArrayRecord", "arrays": HEAD},
                "metrics": {"kind": "MetricRecord", "keys": ["num-examples", "train-loss"]},
            }
        assert 0 < r["bytes_up"] <= 2 * (2 * 32 + 2) * 4 + 2 * 512  # two heads' float32 values, small framing


def test_the_federated_model_registers_as_champion_and_predicts(first, project, tmp_path):
    result, _ = first
    assert result.version == "1" and result.promoted and result.judged_against is None
    assert 0 <= result.metrics["accuracy"] <= 1 and result.report.exists()
    assert (result.run_dir / "federation.json").exists() and (result.model_dir / "config.json").exists()
    rows = sentiment_frame(12, 21)
    rows[["text"]].to_csv(tmp_path / "in.csv", index=False)
    keepfit.predict(project, "champion", tmp_path / "in.csv", tmp_path / "out.csv")
    out = pd.read_csv(tmp_path / "out.csv")
    assert len(out) == 12 and set(out["label"]) <= {"neg", "pos"}


def test_with_a_champion_the_rounds_start_from_it_and_the_gate_judges(first, project):
    strict = project.model_copy(update={"gate": project.gate.model_copy(update={"improvement": "shown"})})
    second = keepfit.federate(strict, rounds=1)
    registry = Registry.open(strict)
    assert second.version == "2" and second.judged_against == "1"
    assert registry.get("2").lineage.parent_version == "1"
    assert (second.run_dir / "comparison").exists()
    # a tiny task where nothing improves significantly: the gate keeps the champion, the candidate stays challenger
    assert not second.promoted and second.reasons and second.champion_version == "1"
    assert registry.champion().version == "1" and registry.challenger().version == "2"
