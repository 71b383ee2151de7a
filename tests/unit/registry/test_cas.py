"""Compare-and-swap promotion: a candidate judged against one champion is never promoted over another,
and every registry write holds the project lock (checked with real processes racing)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from keepfit.errors import LockBusy, RegistryError
from keepfit.lock import project_lock
from keepfit.registry import ChampionMoved, Registry
from keepfit.store import Store


@pytest.fixture
def three(registry, make_model, make_lineage):
    """Version 1 champion; versions 2 and 3 candidates trained from it (2 is the challenger)."""
    registry.register(make_model("a"), metrics={"accuracy": 0.8}, lineage=make_lineage("s1"), alias="champion")
    registry.register(make_model("b"), metrics={"accuracy": 0.9}, lineage=make_lineage("s2", parent="1"),
                      alias="challenger")
    registry.register(make_model("c"), metrics={"accuracy": 0.7}, lineage=make_lineage("s3", parent="1"))
    return registry


def _state(registry: Registry) -> tuple[dict[str, str], list[dict], list[tuple[str, str]]]:
    return registry._aliases(), registry.history(), [(i.version, i.status) for i in registry.list()]


def test_promotes_when_the_champion_is_still_the_expected_one(three):
    info = three.promote("2", reason="gate passed", expected_champion="v1")
    assert info.aliases == ["champion"]
    assert three.history()[0]["previous"] == "1"


def test_refuses_when_the_champion_moved_and_changes_nothing(three):
    three.promote("3", reason="someone else's update", expected_champion="1")
    before = _state(three)
    with pytest.raises(ChampionMoved) as caught:
        three.promote("2", reason="gate passed", expected_champion="1")
    err = caught.value
    assert (err.candidate, err.expected, err.actual) == ("2", "1", "3")
    assert isinstance(err, RegistryError) and err.exit_code == RegistryError.exit_code
    message = str(err)
    assert "moved from 1 to 3 while version 2 was being judged against 1" in message
    assert "keepfit compare 3 2" in message and "keepfit update" in message
    assert _state(three) == before
    assert three.get("2").status == "challenger"


def test_none_means_no_champion_yet(registry, make_model, make_lineage):
    first = registry.register(make_model("a"), metrics={}, lineage=make_lineage(), alias="champion",
                              expected_champion=None)
    assert first.aliases == ["champion"]
    with pytest.raises(ChampionMoved, match=f"Version {first.version} became champion"):
        registry.register(make_model("b"), metrics={}, lineage=make_lineage("s2"), alias="champion",
                          expected_champion=None)
    # the second version is registered (complete), just not promoted
    assert [(i.version, i.aliases) for i in registry.list()] == [(first.version, ["champion"]), ("2", [])]


def test_writes_wait_for_the_lock_and_give_up_clearly(three):
    taken, release = threading.Event(), threading.Event()

    def hold():
        with project_lock(three.store, "keepfit update", timeout=0):
            taken.set()
            release.wait(30)

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert taken.wait(30)
        three.lock_timeout = 0.2
        before = _state(three)
        for write in (lambda: three.promote("2", reason="x"), lambda: three.set_challenger("3", reasons=[]),
                      lambda: three.rollback(reason="x", to="3")):
            with pytest.raises(LockBusy, match="keepfit update"):
                write()
        assert _state(three) == before
    finally:
        release.set()
        thread.join(30)


_RACER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from keepfit.config import KeepfitConfig
    from keepfit.registry import ChampionMoved, Registry

    store, name, version, ready, go = sys.argv[1:]
    registry = Registry.open(KeepfitConfig(store=store, registry={"model_name": name}))
    Path(ready).write_text("ready")
    while not Path(go).exists():
        time.sleep(0.005)
    try:
        registry.promote(version, reason=f"racer {version}", expected_champion="1")
        print(json.dumps({"version": version, "won": True}))
    except ChampionMoved as err:
        print(json.dumps({"version": version, "won": False, "message": str(err)}))
    """
)


def test_two_processes_promoting_against_the_same_champion_one_wins(three, config, tmp_path):
    script, go = tmp_path / "racer.py", tmp_path / "go"
    script.write_text(_RACER)
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1"}
    racers = []
    for version in ("2", "3"):
        ready = tmp_path / f"ready-{version}"
        args = [sys.executable, str(script), str(config.store), three.name, version, str(ready), str(go)]
        racers.append((ready, subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                               text=True)))
    deadline = time.monotonic() + 120
    while not all(ready.exists() for ready, _ in racers):
        for _, proc in racers:
            assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.monotonic() < deadline, "the racers never got ready"
        time.sleep(0.05)
    go.write_text("go")
    results = []
    for _, proc in racers:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-2000:]
        results.append(json.loads(out.strip().splitlines()[-1]))

    winners = [r["version"] for r in results if r["won"]]
    losers = [r for r in results if not r["won"]]
    assert len(winners) == 1 and len(losers) == 1, results
    (winner,), (loser,) = winners, losers
    assert f"moved from 1 to {winner} while version {loser['version']} was being judged against 1" in (
        loser["message"]
    )
    assert three.champion().version == winner
    promotions = [e for e in three.history() if e["action"] == "promote"]
    assert [(e["version"], e["previous"]) for e in promotions] == [(winner, "1"), ("1", None)]
    statuses = dict((i.version, i.status) for i in three.list())
    assert statuses["1"] == "archived" and statuses[winner] == "champion"
    assert statuses[loser["version"]] in ("challenger", "candidate")
    assert Store.at(config.store).root.joinpath("lock.holder").exists() is False


def test_a_moved_project_finds_its_versions_and_files(tmp_path, make_model, make_lineage):
    """Renaming the project folder: the registry (named in the config) lists the version and reads its files
    from the new place; new registrations write there too, not into the old folder."""
    from keepfit.config import KeepfitConfig

    old, new = tmp_path / "before", tmp_path / "after"
    first = Registry.open(KeepfitConfig(store=str(old / ".keepfit"), registry={"model_name": "moving"}))
    first.register(make_model("a"), metrics={"accuracy": 0.5}, lineage=make_lineage(), alias="champion")
    old.rename(new)
    moved = Registry.open(KeepfitConfig(store=str(new / ".keepfit"), registry={"model_name": "moving"}))
    assert [(i.version, i.aliases) for i in moved.list()] == [("1", ["champion"])]
    path = moved.model_path("1")
    assert path.is_relative_to(new) and (path / "model.safetensors").is_file()
    second = moved.register(make_model("b"), metrics={}, lineage=make_lineage("s2"))
    assert moved.model_path(second.version).is_relative_to(new)
    assert not old.exists()
