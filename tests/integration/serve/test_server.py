"""A real `keepfit serve` process on localhost: the endpoints, every bad request kind, feedback, metrics,
admin, hot swap under load, and SIGKILL under load with the prediction log intact."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from keepfit.serve.log import PredictionLog

pytestmark = pytest.mark.integration

ADMIN = {"Authorization": "Bearer s3cret"}


def _log(project: Path) -> PredictionLog:
    return PredictionLog(project / ".keepfit" / "serve" / "predictions.sqlite", readonly=True)


def test_endpoints_answer_and_name_the_version(server):
    c = server.client
    assert c.get("/v2/health/live").json() == {"live": True}
    assert c.get("/v2/health/ready").status_code == 200
    meta = c.get("/v2/models/served").json()
    assert meta["inputs"][0]["datatype"] == "BYTES" and meta["parameters"]["labels"] == ["neg", "pos"]
    version = meta["versions"][0]

    body = c.post("/predict", json={"texts": ["a great and lovely film", "an awful boring mess"], "top_k": 1}).json()
    assert body["model_version"] == version
    assert [p["label"] for p in body["predictions"]] == ["pos", "neg"]
    assert all(len(p["top_k"]) == 1 and 0.5 <= p["score"] <= 1 for p in body["predictions"])

    infer = c.post("/v2/models/served/infer", json={
        "id": "x", "inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": ["great", "awful"]}]}).json()
    outputs = {o["name"]: o for o in infer["outputs"]}
    assert infer["model_version"] == version and outputs["label"]["data"] == ["pos", "neg"]
    assert outputs["probabilities"]["shape"] == [2, 2]
    probs = outputs["probabilities"]["data"]
    assert abs(probs[0] + probs[1] - 1) < 1e-4 and probs[1] == outputs["score"]["data"][0]

    # what was answered is in the log, with the version and the ids the client got
    logged = _log(server.project).predictions()
    ids = [p["id"] for p in body["predictions"]] + infer["parameters"]["ids"]
    mine = logged.set_index("request_id").loc[ids]
    assert list(mine["label"]) == ["pos", "neg", "pos", "neg"] and set(mine["model_version"]) == {version}


@pytest.mark.parametrize(
    ("path", "body", "status", "words"),
    [
        ("/predict", b"not json", 400, "not valid JSON"),
        ("/predict", b"", 400, "empty"),
        ("/predict", b'{"texts": []}', 422, "empty list"),
        ("/predict", b'{"texts": "one text"}', 422, "list of strings"),
        ("/predict", b'{"texts": ["ok", 3]}', 422, "texts[1] is int"),
        ("/predict", b'{"text": ["ok"]}', 422, "Unknown field"),
        ("/predict", b'{"texts": ["ok"], "top_k": 0}', 422, "top_k"),
        ("/predict", b'{"texts": ["' + b"x" * 300 + b'"]}', 413, "characters"),
        ("/predict", b'{"texts": [' + b",".join([b'"a"'] * 20) + b"]}", 413, "20 texts"),
        ("/predict", b'{"texts": ["' + b"y" * 5000 + b'"]}', 413, "bytes"),
        ("/v2/models/other/infer", b'{"inputs": []}', 404, "Unknown model"),
        ("/v2/models/served/infer", b'{"inputs": [{"datatype": "FP32", "data": [1]}]}', 422, "BYTES"),
        ("/v2/models/served/infer", b'{"inputs": [{"datatype": "BYTES", "shape": [3], "data": ["a"]}]}', 422,
         "shape"),
        ("/feedback", b'{"request_id": "nope", "label": "pos"}', 404, "unknown request id"),
        ("/feedback", b'{"label": "pos"}', 422, "request_id"),
        ("/nowhere", b"{}", 404, "No such endpoint"),
    ],
)
def test_bad_requests_get_their_4xx_and_the_server_keeps_serving(limited_server, path, body, status, words):
    response = limited_server.client.post(path, content=body, headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    assert words in response.json()["error"]
    assert limited_server.client.post("/predict", json={"texts": ["great"]}).status_code == 200


@pytest.fixture(scope="module")
def limited_server(served_project: Path, start_server):
    limits = ["serve.max_chars_per_text=200", "serve.max_texts_per_request=10", "serve.max_body_bytes=4096"]
    srv = start_server(served_project, *[arg for limit in limits for arg in ("--set", limit)])
    yield srv
    srv.stop()


def test_feedback_is_checked_and_kept(server):
    c = server.client
    ids = [p["id"] for p in c.post("/predict", json={"texts": ["great", "awful", "fine"]}).json()["predictions"]]
    assert c.post("/feedback", json={"request_id": ids[0], "label": "pos"}).json() == {"accepted": 1}
    mixed = c.post("/feedback", json=[{"request_id": ids[1], "label": "neg"}, {"request_id": ids[2], "label": "meh"}])
    assert mixed.status_code == 422 and "unknown label 'meh'" in mixed.json()["error"]
    assert mixed.json()["accepted"] == 1
    rows = _log(server.project).feedback_rows().set_index("request_id")
    assert rows.loc[ids[0], "label"] == "pos" and rows.loc[ids[1], "label"] == "neg" and ids[2] not in rows.index


def test_metrics_and_admin(server):
    c = server.client
    c.post("/predict", json={"texts": ["great", "awful"]})
    c.post("/predict", content=b"[]")
    text = c.get("/metrics").text
    assert 'keepfit_requests_total{endpoint="/predict",status="200"}' in text
    assert 'keepfit_requests_total{endpoint="/predict",status="422"}' in text
    assert "keepfit_batch_size_bucket" in text and "keepfit_model_version 1.0" in text
    assert c.post("/admin/reload").status_code == 401
    assert c.post("/admin/reload", headers={"Authorization": "Bearer wrong"}).status_code == 403
    assert c.post("/admin/reload", headers=ADMIN, json={"ref": "v99"}).status_code == 404
    assert c.post("/admin/reload", headers=ADMIN, json={"ref": "nosuch"}).status_code == 404
    assert c.post("/predict", json={"texts": ["still here"]}).json()["model_version"] == "1"
    assert c.post("/admin/drain", headers=ADMIN).json() == {"drained": True, "in_flight": 0}
    assert c.get("/v2/health/ready").status_code == 503
    refused = c.post("/predict", json={"texts": ["x"]})
    assert refused.status_code == 503 and refused.headers["retry-after"] == "5"
    assert c.post("/admin/resume", headers=ADMIN).json() == {"ready": True}
    assert c.post("/predict", json={"texts": ["x"]}).status_code == 200


class _Load:
    """``clients`` threads, each sending one request after the other until stopped; what each saw, in order."""

    def __init__(self, url: str, clients: int) -> None:
        self.url = url
        self.seen: list[list[tuple[str, list[str]]]] = [[] for _ in range(clients)]
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client, args=(i,), daemon=True) for i in range(clients)]

    def _client(self, i: int) -> None:
        texts = ["a great lovely film", "an awful boring mess", "fine i guess"][: 1 + i % 3]
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self._stop.is_set():
                try:
                    r = client.post("/predict", json={"texts": texts})
                except httpx.HTTPError as err:
                    if not self._stop.is_set():
                        self.failures.append(f"client {i}: {type(err).__name__} {err}")
                    return
                if r.status_code != 200:
                    self.failures.append(f"client {i}: {r.status_code} {r.text[:200]}")
                    continue
                body = r.json()
                self.seen[i].append((body["model_version"], [p["id"] for p in body["predictions"]]))

    def __enter__(self) -> _Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=60)

    def wait_for(self, version: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not all(s and s[-1][0] == version for s in self.seen):
            assert time.monotonic() < deadline, f"clients never saw version {version}: {[s[-1:] for s in self.seen]}"
            time.sleep(0.05)


def test_hot_swap_under_load_fails_no_request(served_project: Path, start_server):
    from keepfit import Registry, load_config

    registry = Registry.open(load_config(served_project / "keepfit.yaml"))
    srv = start_server(served_project)
    try:
        with _Load(srv.url, clients=4) as load:
            load.wait_for("1")
            registry.promote("2", reason="test: hot swap", forced=True)
            load.wait_for("2")
            registry.rollback(reason="test: hot swap back", to="1")
            load.wait_for("1")
        assert load.failures == []
        for seen in load.seen:
            versions = [v for v, _ in seen]
            changes = [(a, b) for a, b in zip(versions, versions[1:], strict=False) if a != b]
            assert changes == [("1", "2"), ("2", "1")], versions  # each swap seen exactly once, never back and forth
        metrics = srv.client.get("/metrics").text
        assert "keepfit_model_swaps_total 2.0" in metrics
    finally:
        srv.stop()
        if registry.champion().version != "1":
            registry.rollback(reason="test: clean up", to="1")


def test_sigkill_under_load_keeps_every_acknowledged_answer(served_project: Path, start_server):
    srv = start_server(served_project)
    with _Load(srv.url, clients=3) as load:
        deadline = time.monotonic() + 60
        while sum(len(s) for s in load.seen) < 30:
            assert time.monotonic() < deadline and not load.failures, load.failures
            time.sleep(0.02)
        acknowledged = [rid for seen in load.seen for _, ids in list(seen) for rid in ids]
        code, _ = srv.stop(signal.SIGKILL)
    assert code == -signal.SIGKILL
    logged = set(_log(served_project).predictions()["request_id"])
    missing = [rid for rid in acknowledged if rid not in logged]
    assert missing == [], f"{len(missing)} of {len(acknowledged)} acknowledged answers are not in the log"
    # the killed server left a log the next one appends to
    nxt = start_server(served_project)
    try:
        assert nxt.client.post("/predict", json={"texts": ["great"]}).status_code == 200
    finally:
        nxt.stop()


def test_a_version_that_fails_to_load_leaves_the_old_one_serving(served_project: Path, tmp_path: Path, start_server):
    import shutil

    from keepfit import Registry, load_config

    project = tmp_path / "copy"
    shutil.copytree(served_project, project, ignore=shutil.ignore_patterns("server.json"))
    registry = Registry.open(load_config(project / "keepfit.yaml"))
    (registry.model_path("2") / "config.json").write_text("{ broken")
    srv = start_server(project)
    try:
        registry.promote("2", reason="test: a broken version", forced=True)
        deadline = time.monotonic() + 30
        while "keepfit_errors_total{kind=\"load\"}" not in srv.client.get("/metrics").text:
            assert time.monotonic() < deadline, "the failed load was never counted"
            time.sleep(0.1)
        answer = srv.client.post("/predict", json={"texts": ["great"]})
        assert answer.status_code == 200 and answer.json()["model_version"] == "1"
        assert srv.client.get("/v2/health/ready").status_code == 200
        forced = srv.client.post("/admin/reload", headers=ADMIN)
        assert forced.status_code == 500 and "config" in forced.json()["error"].lower()
    finally:
        srv.stop()
