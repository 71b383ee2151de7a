"""A tiny project with two registered versions (v1 champion, v2 a second fit), and real `keepfit serve`
processes on free localhost ports."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from keepfit.train.testing import all_texts, make_tiny_model, sentiment_frame

KEEPFIT = [sys.executable, "-c", "from keepfit.cli import main; main()"]
FIT = [
    "--set", "train.lr=1e-2", "--set", "train.head_lr=null", "--set", "train.epochs=3",
    "--set", "train.precision=fp32", "--set", "train.threads=1", "--set", "evaluate.bootstrap=50",
    "--set", "train.freeze_embeddings=false",
]


def env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "MLFLOW_DISABLE_TELEMETRY": "true",
            "TOKENIZERS_PARALLELISM": "false", "KEEPFIT_DEBUG": "0", "KEEPFIT_ADMIN_TOKEN": "s3cret"}


def run(project: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([*KEEPFIT, *args], cwd=project, env=env(), capture_output=True, text=True, timeout=600)
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="session")
def served_project(tmp_path_factory) -> Path:
    """v1 (champion) and v2 of a two-label sentiment model; week1.csv is their data."""
    root = tmp_path_factory.mktemp("served")
    model = make_tiny_model(root / "tiny", all_texts())
    sentiment_frame(240, seed=1).to_csv(root / "week1.csv", index=False)
    (root / "keepfit.yaml").write_text(
        f"model:\n  name: {model}\ndata:\n  train: week1.csv\nregistry:\n  model_name: served\n"
        "serve:\n  threads: 1\n  poll_seconds: 0.3\n  max_wait_ms: 2\n"
    )
    run(root, "fit", "--quiet", *FIT)
    run(root, "fit", "--quiet", *FIT, "--set", "train.seed=7")
    return root


class Server:
    """A `keepfit serve` process; ``url`` once it is ready."""

    def __init__(self, project: Path, *args: str) -> None:
        self.project = project
        info = project / ".keepfit" / "serve" / "server.json"
        info.unlink(missing_ok=True)
        self.proc = subprocess.Popen([*KEEPFIT, "serve", "--port", "0", *args], cwd=project, env=env(),
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while not info.exists():
            self._alive_or_fail()
            if time.monotonic() > deadline:
                raise TimeoutError("keepfit serve did not bind a port within 120 s")
            time.sleep(0.05)
        self.url = json.loads(info.read_text())["url"]
        self.client = httpx.Client(base_url=self.url, timeout=30)
        while True:
            self._alive_or_fail()
            try:
                if self.client.get("/v2/health/ready").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("keepfit serve was not ready within 120 s")
            time.sleep(0.05)

    def _alive_or_fail(self) -> None:
        if self.proc.poll() is not None:
            out, err = self.proc.communicate()
            raise RuntimeError(f"keepfit serve exited with {self.proc.returncode}:\n{out[-2000:]}\n{err[-3000:]}")

    def stop(self, sig: int = signal.SIGTERM) -> tuple[int, str]:
        self.client.close()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            _, err = self.proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return self.proc.returncode, err


@pytest.fixture(scope="session")
def keepfit_cli():
    """``keepfit_cli(project, *args, check=True)`` runs the keepfit CLI in a process in ``project``."""
    return run


@pytest.fixture(scope="session")
def start_server() -> type[Server]:
    """``start_server(project, *args)`` starts a `keepfit serve` process and waits until it is ready."""
    return Server


@pytest.fixture(scope="module")
def server(served_project: Path) -> Iterator[Server]:
    srv = Server(served_project)
    yield srv
    srv.stop()
