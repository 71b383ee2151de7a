"""Real separate processes over localhost: `keepfit federate server` and two `keepfit federate client`s, each
client with its own shard file; the federated model is registered, and every process ends by itself."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from keepfit.train.testing import all_texts, make_tiny_model, sentiment_frame, write_tiny_project

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(importlib.util.find_spec("flwr") is None, reason="needs the federated extra (flwr)"),
]
KEEPFIT = [sys.executable, "-c", "from keepfit.cli import main; main()"]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "model", all_texts())


def _env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1",
            "TOKENIZERS_PARALLELISM": "false", "KEEPFIT_DEBUG": "0"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_server_and_two_client_processes_federate_and_register(tiny_model, tmp_path: Path):
    write_tiny_project(tmp_path, tiny_model, rows=120, federate={"rounds": 2, "connect_timeout": 60})
    sentiment_frame(40, 5).to_csv(tmp_path / "shard0.csv", index=False)
    sentiment_frame(30, 6).to_csv(tmp_path / "shard1.csv", index=False)
    address = f"127.0.0.1:{_free_port()}"
    run = dict(cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    server = subprocess.Popen([*KEEPFIT, "federate", "server", "--clients", "2", "--address", address], **run)
    clients = [subprocess.Popen([*KEEPFIT, "federate", "client", "--data", f"shard{i}.csv", "--server", address,
                                 "--work-dir", f"client{i}"], **run) for i in range(2)]
    try:
        out, err = server.communicate(timeout=400)
        done = [c.communicate(timeout=120) for c in clients]
    finally:
        for proc in (server, *clients):
            if proc.poll() is None:
                proc.kill()
    assert server.returncode == 0, err
    assert "Registered version 1 (champion)" in out
    for proc, (c_out, c_err), rows in zip(clients, done, (40, 30), strict=True):
        assert proc.returncode == 0, c_err
        assert f"Trained 2 round(s) on {rows} rows" in c_out
    ledger = json.loads(next((tmp_path / ".keepfit" / "runs").glob("*-federate-*/federation.json")).read_text())
    assert [(r["clients"], r["examples"]) for r in ledger["rounds"]] == [(2, 70), (2, 70)]
