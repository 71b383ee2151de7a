"""The app on a project with no champion yet: alive, not ready, and every answer says what to do."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from keepfit.config import KeepfitConfig
from keepfit.errors import ConfigError
from keepfit.serve.app import create_app
from keepfit.serve.server import _bind


def test_no_champion_yet_is_not_ready_and_says_what_to_do(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("KEEPFIT_ADMIN_TOKEN", raising=False)
    config = KeepfitConfig.model_validate({"store": str(tmp_path / ".keepfit"), "registry": {"model_name": "empty"}})
    with TestClient(create_app(config)) as client:
        assert client.get("/v2/health/live").json() == {"live": True}
        assert client.get("/v2/health/ready").status_code == 503
        refused = client.post("/predict", json={"texts": ["hello"]})
        assert refused.status_code == 503 and "keepfit fit" in refused.json()["error"]
        assert client.get("/v2/models/empty").status_code == 503
        assert client.get("/v2/models/other").status_code == 404
        assert client.post("/admin/reload").status_code == 404  # no admin token configured: the endpoints are off
        assert client.get("/predict").status_code == 405


def test_a_busy_port_is_a_clear_config_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=f"Cannot listen on 127.0.0.1:{port}.*--port"):
            _bind("127.0.0.1", port)
