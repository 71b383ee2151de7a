"""A crash during registration leaves no half-made version: exceptions clean up, kills are swept."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest
from mlflow import MlflowClient
from mlflow.entities import ViewType

from keepfit.errors import RegistryError
from keepfit.registry import Registry
from keepfit.registry import mlflow_registry as mr
from keepfit.store import Store


def _plain_client(config) -> MlflowClient:
    uri = Store.at(config.store).default_registry_uri
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _versions(client: MlflowClient, name: str) -> list:
    return client.search_model_versions(f"name = '{name}'")


def _runs(client: MlflowClient, registry) -> list:
    return client.search_runs([registry.experiment_id], run_view_type=ViewType.ALL)


def _run_folder(run) -> Path:
    return Path(run.info.artifact_uri.removeprefix("file://")).parent


def test_exception_while_logging_artifacts_removes_run_and_files(registry, config, make_model, make_lineage,
                                                                 tmp_path, monkeypatch):
    evaluation = tmp_path / "evaluation"
    evaluation.mkdir()
    (evaluation / "report.html").write_text("<html></html>")
    real = registry.client.log_artifacts
    calls = []

    def fail_on_second_folder(run_id, local_dir, artifact_path=None):
        calls.append(artifact_path)
        if len(calls) == 2:
            raise OSError("No space left on device")
        return real(run_id, local_dir, artifact_path)

    monkeypatch.setattr(registry.client, "log_artifacts", fail_on_second_folder)
    with pytest.raises(OSError, match="No space left"):
        registry.register(make_model(), metrics={"accuracy": 0.9}, lineage=make_lineage(),
                          evaluation_dir=evaluation, alias="champion")
    assert calls == ["model", "evaluation"]  # the model folder was fully written before the failure

    client = _plain_client(config)
    assert _versions(client, registry.name) == []
    (run,) = _runs(client, registry)
    assert (run.info.status, run.info.lifecycle_stage) == ("FAILED", "deleted")
    assert not _run_folder(run).exists()
    assert registry.list() == [] and registry.champion() is None


def test_exception_after_the_version_was_created_deletes_the_version(registry, config, make_model,
                                                                     make_lineage, monkeypatch):
    real = registry.client.set_terminated

    def crash_on_finish(run_id, status=None, end_time=None):
        if status == "FINISHED":
            raise KeyboardInterrupt  # Ctrl-C at the worst moment
        return real(run_id, status, end_time)

    monkeypatch.setattr(registry.client, "set_terminated", crash_on_finish)
    with pytest.raises(KeyboardInterrupt):
        registry.register(make_model(), metrics={"accuracy": 0.9}, lineage=make_lineage())
    client = _plain_client(config)
    assert _versions(client, registry.name) == []
    assert all(r.info.lifecycle_stage == "deleted" for r in _runs(client, registry))

    monkeypatch.undo()
    info = registry.register(make_model("again"), metrics={"accuracy": 0.9}, lineage=make_lineage())
    # MLflow never reuses a deleted version's number
    assert info.version == "2" and [i.version for i in registry.list()] == ["2"]


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _half_made(client: MlflowClient, registry, owner: dict, model_dir: Path, start_time: int | None = None):
    """What a registering process leaves when killed after creating the version: a RUNNING run + version."""
    run = client.create_run(
        registry.experiment_id, start_time=start_time,
        tags={mr.REGISTRATION: "true", mr.OWNER: json.dumps(owner)},
    )
    client.log_artifacts(run.info.run_id, str(model_dir), "model")
    mv = client.create_model_version(registry.name, f"{run.info.artifact_uri}/model", run.info.run_id,
                                     await_creation_for=0)
    return run, str(mv.version)


def test_sweep_removes_versions_whose_process_died(registry, config, make_model):
    client = _plain_client(config)
    here = {"host": mr.socket.gethostname()}
    dead_run, dead_version = _half_made(client, registry, {**here, "pid": _dead_pid(), "started": 0.0},
                                        make_model("dead"))
    alive = {**here, "pid": os.getpid(), "started": psutil.Process().create_time()}
    live_run, live_version = _half_made(client, registry, alive, make_model("live"))
    remote = {"host": "another-host", "pid": 1, "started": 0.0}
    old_run, old_version = _half_made(client, registry, remote, make_model("old"),
                                      start_time=int((time.time() - 2 * mr.STALE_AFTER_S) * 1000))
    fresh_run, fresh_version = _half_made(client, registry, remote, make_model("fresh"))

    assert len(_versions(client, registry.name)) == 4  # visible to MLflow ...
    assert registry.list() == []  # ... but never to keepfit
    with pytest.raises(RegistryError, match="half-made"):
        registry.get(dead_version)

    Registry.open(config)  # the startup sweep
    left = {str(mv.version) for mv in _versions(client, registry.name)}
    assert left == {live_version, fresh_version}
    assert client.get_run(dead_run.info.run_id).info.lifecycle_stage == "deleted"
    assert client.get_run(old_run.info.run_id).info.lifecycle_stage == "deleted"
    assert not _run_folder(dead_run).exists()
    assert client.get_run(live_run.info.run_id).info.status == "RUNNING"


_CHILD = textwrap.dedent(
    """
    import pathlib, sys, time
    from mlflow import MlflowClient
    import mlflow.store.artifact.local_artifact_repo as lar
    from keepfit.config import KeepfitConfig
    from keepfit.registry import Lineage, Registry

    store, name, model, marker, where = sys.argv[1:6]

    def stall():
        pathlib.Path(marker).write_text("stalled")
        time.sleep(120)

    def copy_one_file_then_stall(src, dst):
        first = sorted(pathlib.Path(src).iterdir())[0]
        pathlib.Path(dst).mkdir(parents=True, exist_ok=True)
        (pathlib.Path(dst) / first.name).write_bytes(first.read_bytes())
        stall()

    real_terminate = MlflowClient.set_terminated

    def stall_before_finish(self, run_id, status=None, end_time=None):
        if status == "FINISHED":
            stall()
        return real_terminate(self, run_id, status, end_time)

    if where == "artifacts":
        lar.shutil_copytree_without_file_permissions = copy_one_file_then_stall
    else:
        MlflowClient.set_terminated = stall_before_finish
    registry = Registry.open(KeepfitConfig(store=store, registry={"model_name": name}))
    registry.register(pathlib.Path(model), metrics={"accuracy": 0.5},
                      lineage=Lineage("snap", None, "cfg", "0.1.0", "single-label", ["a", "b"]))
    """
)


@pytest.mark.parametrize("where", ["artifacts", "finish"])
def test_sigkill_during_registration_leaves_no_version(registry, config, make_model, make_lineage, tmp_path,
                                                       where):
    script, marker = tmp_path / "child.py", tmp_path / "stalled"
    script.write_text(_CHILD)
    model = make_model("model")
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1"}
    child = subprocess.Popen(
        [sys.executable, str(script), str(config.store), registry.name, str(model), str(marker), where],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert child.poll() is None, child.communicate()[1].decode()[-2000:]
            assert time.monotonic() < deadline, "the child never reached the kill point"
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stdout.close()
        child.stderr.close()

    client = _plain_client(config)
    (run,) = _runs(client, registry)
    assert run.info.status == "RUNNING"  # exactly what a kill leaves
    if where == "artifacts":
        assert _versions(client, registry.name) == []  # no version can point at partial artifacts
        copied = list((_run_folder(run) / "artifacts" / "model").iterdir())
        assert len(copied) == 1  # the kill really happened halfway through the folder
    else:
        (half,) = _versions(client, registry.name)
        assert half.run_id == run.info.run_id
        assert registry.list() == []  # keepfit never shows it, even before the sweep

    Registry.open(config)  # the startup sweep
    assert _versions(client, registry.name) == []
    assert client.get_run(run.info.run_id).info.lifecycle_stage == "deleted"
    assert not _run_folder(run).exists()
    info = registry.register(model, metrics={"accuracy": 0.5}, lineage=make_lineage())
    assert [i.version for i in registry.list()] == [info.version]
    assert sorted(p.name for p in registry.model_path(info.version).iterdir()) == [
        "config.json", "model.safetensors", "tokenizer.json"
    ]
