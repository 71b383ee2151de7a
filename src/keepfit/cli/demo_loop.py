"""The demo's continuous loop: serve the champion, send it traffic that drifts, send feedback, monitor, update
from the feedback through the gate, and watch the server swap versions while a steady load never fails.

It drives a real `keepfit serve` process on a free localhost port, as a user's client would.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from keepfit.cli._console import console
from keepfit.config import KeepfitConfig
from keepfit.errors import KeepfitError

KEEPFIT = [sys.executable, "-c", "from keepfit.cli import main; main()"]


@dataclass
class SteadyLoad:
    """One client sending a request every ``pause`` s until stopped; counts answers, failures and the versions
    it saw, in order."""

    url: str
    texts: list[str]
    pause: float = 0.05
    answered: int = 0
    failures: list[str] = field(default_factory=list)
    versions: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> SteadyLoad:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        import httpx

        with httpx.Client(base_url=self.url, timeout=60) as client:
            i = 0
            while not self._stop.is_set():
                try:
                    r = client.post("/predict", json={"texts": [self.texts[i % len(self.texts)]],
                                                      "metadata": {"source": "steady"}})
                    if r.status_code == 200:
                        self.answered += 1
                        version = r.json()["model_version"]
                        if not self.versions or self.versions[-1] != version:
                            self.versions.append(version)
                    else:
                        self.failures.append(f"{r.status_code}: {r.text[:120]}")
                except httpx.HTTPError as err:
                    self.failures.append(f"{type(err).__name__}: {err}")
                i += 1
                self._stop.wait(self.pause)

    def wait_for(self, version: str, timeout: float = 60) -> float:
        """Seconds until the load saw ``version`` answer."""
        start = time.monotonic()
        while not (self.versions and self.versions[-1] == version):
            if time.monotonic() - start > timeout:
                raise KeepfitError(f"The demo's server did not switch to version {version} within {timeout:.0f} s.")
            time.sleep(0.05)
        return time.monotonic() - start

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)


class DemoServer:
    """`keepfit serve` for the demo project, in its own process."""

    def __init__(self, config_path: Path, store: Path) -> None:
        info = store / "serve" / "server.json"
        info.unlink(missing_ok=True)
        env = {**os.environ, "KEEPFIT_DEBUG": "0"}
        self.proc = subprocess.Popen([*KEEPFIT, "serve", "--port", "0", "--config", str(config_path)],
                                     env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.url = self._wait(info)

    def _wait(self, info: Path, timeout: float = 300) -> str:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read()[-2000:]
                raise KeepfitError(f"The demo's `keepfit serve` exited with {self.proc.returncode}: {err}")
            if info.exists():
                url = json.loads(info.read_text())["url"]
                try:
                    if httpx.get(f"{url}/v2/health/ready", timeout=5).status_code == 200:
                        return url
                except httpx.HTTPError:
                    pass
            time.sleep(0.1)
        raise KeepfitError(f"The demo's `keepfit serve` was not ready within {timeout:.0f} s.")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def declare_labels(config_path: Path, labels: list[str]) -> None:
    """Write ``labels:`` into the project's keepfit.yaml (a new intent is declared before feedback names it)."""
    import yaml

    raw = yaml.safe_load(config_path.read_text()) or {}
    raw["labels"] = labels
    config_path.write_text(yaml.safe_dump(raw, sort_keys=False))


def send_stream(url: str, frame: pd.DataFrame, text_column: str, meta_columns: list[str]) -> list[str]:
    """Send every row of ``frame`` in requests of 8 texts, each text with its ``meta_columns`` as metadata (what
    the monitor slices by, and the columns of the batch the feedback becomes); the per-text ids, in row order."""
    import httpx

    ids: list[str] = []
    with httpx.Client(base_url=url, timeout=60) as client:
        for start in range(0, len(frame), 8):
            chunk = frame.iloc[start : start + 8]
            body = {"texts": chunk[text_column].astype(str).tolist(),
                    "metadata": chunk[meta_columns].astype(str).to_dict(orient="records")}
            r = client.post("/predict", json=body)
            r.raise_for_status()
            ids += [p["id"] for p in r.json()["predictions"]]
    return ids


def post_feedback(url: str, ids: list[str], labels: list[str]) -> dict:
    import httpx

    body = [{"request_id": rid, "label": label} for rid, label in zip(ids, labels, strict=True)]
    r = httpx.post(f"{url}/feedback", json=body, timeout=60)
    return r.json()


def show_monitor(config: KeepfitConfig, folder: Path) -> list[str]:
    """Run the monitor over the log, print its summary, write its report; returns the alerts."""
    from keepfit.cli.monitor import print_summary
    from keepfit.monitor import monitor, write_report

    report = monitor(config)
    html, _ = write_report(report, folder)
    print_summary(report, console)
    console.print(f"monitor report: {html}")
    return report.alerts()
