"""`keepfit auto`: the race plan fits its time, the race respects the budget, and the winner is registered with a
leaderboard that says why every candidate stopped."""

from __future__ import annotations

import pytest

from keepfit.config import load_config
from keepfit.errors import ConfigError
from keepfit.registry import Registry
from keepfit.train.testing import write_tiny_project
from keepfit.tune.auto import MAX_EPOCHS, _epoch_cost, auto, check_budget, race_plan


def _cost(plan) -> float:
    return plan.racers * plan.setup_seconds + _epoch_cost(plan.racers) * plan.epochs * plan.epoch_seconds


def test_a_plan_fits_its_time_and_shrinks_with_it():
    roomy = race_plan(10_000, epoch_seconds=60, setup_seconds=20, candidates=3)
    assert roomy.racers == 3 and roomy.epochs == MAX_EPOCHS
    assert roomy.levels == [2.0, 4.0, 8.0] and roomy.survivors == [3, 2, 1]  # successive halving to one
    previous = roomy
    for seconds in (1500, 600, 300, 150, 90):
        plan = race_plan(seconds, epoch_seconds=60, setup_seconds=20, candidates=3)
        assert plan is not None and _cost(plan) <= seconds
        assert (plan.racers, plan.epochs) <= (previous.racers, previous.epochs)
        assert plan.levels[-1] == plan.epochs and plan.survivors[-1] == 1
        assert 1 / plan.evals_per_epoch <= plan.levels[0] + 1e-9  # an evaluation falls on the first rung
        previous = plan
    assert race_plan(40, epoch_seconds=60, setup_seconds=20, candidates=3) is None  # not half an epoch of one


def test_budgets_under_ten_seconds_or_without_a_unit_are_refused():
    for bad in ("5s", "10", "ten minutes"):
        with pytest.raises(ConfigError):
            check_budget(bad)
    assert check_budget("1h30m") == 5400


def test_the_race_registers_its_winner_with_a_leaderboard(tmp_path, tiny_model):
    path = write_tiny_project(tmp_path / "project", tiny_model, rows=300)
    config = load_config(path)
    lines: list[str] = []
    result = auto(config, budget="2m", config_path=path, say=lines.append)

    names = [row["candidate"] for row in result.leaderboard]
    assert sorted(names) == sorted(["head", "full-lr1.5e-4", "lora-r16", "full-lr5e-5"])
    assert [row["winner"] for row in result.leaderboard].count("yes") == 1
    assert result.leaderboard[0]["winner"] == "yes" and result.leaderboard[0]["candidate"] == result.winner
    scores = [row["validation accuracy"] for row in result.leaderboard if row["validation accuracy"] is not None]
    assert scores == sorted(scores, reverse=True)
    stopped = {row["candidate"]: row["stopped"] for row in result.leaderboard}
    assert stopped["head"] == "finished"
    assert sum(s.startswith("halved at rung") for s in stopped.values()) == result.plan.racers - 1
    assert result.race_seconds <= 120

    info = Registry.open(config).get(result.version)
    assert info.tags["keepfit.kind"] == "auto" and info.lineage.search["trial"] == result.winner
    assert result.test["accuracy"] == info.metrics["accuracy"]
    assert f"presets:\n  {result.preset}:" in path.read_text(encoding="utf-8")
    html = result.report.read_text(encoding="utf-8")
    assert "halved at rung" in html and result.winner in html


def test_the_race_stops_within_one_evaluation_of_the_budget(tmp_path, tiny_model, monkeypatch):
    import time

    import keepfit.train.loop as loop

    original = loop._loss

    def slow_loss(*args, **kwargs):  # training ten times slower than the feature pass predicts: the plan overruns
        time.sleep(0.03)
        return original(*args, **kwargs)

    monkeypatch.setattr(loop, "_loss", slow_loss)
    path = write_tiny_project(tmp_path / "project", tiny_model, rows=300, train={"epochs": 200})
    result = auto(load_config(path), budget="20s", register=False, max_epochs=200)
    stopped = [row["stopped"] for row in result.leaderboard]
    assert any("budget" in s for s in stopped), stopped  # the budget, not the schedule, ended the race
    # the race ends by the budget, plus at most the evaluation under way (an epoch here is ~0.5 s)
    assert result.race_seconds <= 20 + 2, result.race_seconds
