"""The micro-batcher's scheduling: concurrent requests share a pass, a lone client never waits, an oversized
request is a batch of its own, a failing pass fails only its own requests, and answers are logged first."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from keepfit.serve.batcher import MicroBatcher, NotReady
from keepfit.serve.log import PredictionLog
from keepfit.serve.runtime import Answer, ModelSlot


class _EchoModel:
    """Answers each text with its own length as the label after ``delay`` s per pass; records pass sizes.
    (A stand-in for the model: these tests are about when passes happen, not what they compute.)"""

    task = "single-label"
    labels = ["short", "long"]
    backend = "torch"

    def __init__(self, version: str = "1", delay: float = 0.05, fail_on: str | None = None) -> None:
        self.version, self.delay, self.fail_on = version, delay, fail_on
        self.passes: list[int] = []

    def answer(self, texts: list[str], *, top_k: int, batch_size: int) -> list[Answer]:
        self.passes.append(len(texts))
        time.sleep(self.delay)
        if self.fail_on in texts:
            raise RuntimeError("model exploded")
        return [Answer(str(len(t)), 1.0, [1.0, 0.0], [(str(len(t)), 1.0)]) for t in texts]


def _batcher(tmp_path: Path, model, **kw) -> tuple[MicroBatcher, PredictionLog]:
    slot = ModelSlot()
    if model is not None:
        slot.set(model)
    log = PredictionLog(tmp_path / "log.sqlite")
    batcher = MicroBatcher(slot, log, max_batch_size=kw.get("max_batch_size", 16), max_wait_ms=kw.get("wait", 5))
    batcher.start()
    return batcher, log


def test_concurrent_requests_share_passes_and_answers_stay_in_order(tmp_path: Path):
    model = _EchoModel(delay=0.05)
    batcher, log = _batcher(tmp_path, model)

    async def main():
        return await asyncio.gather(*(batcher.submit(["x" * i, "y" * (i + 1)], top_k=1) for i in range(1, 13)))

    results = asyncio.run(main())
    batcher.stop()
    assert [[a.label for a in r.answers] for r in results] == [[str(i), str(i + 1)] for i in range(1, 13)]
    assert sum(model.passes) == 24 and len(model.passes) < 12 and max(model.passes) <= 16
    assert log.count() == 24 and len({i for r in results for i in r.ids}) == 24


def test_a_lone_client_never_waits_for_company(tmp_path: Path):
    batcher, _ = _batcher(tmp_path, _EchoModel(delay=0.0), wait=500)

    async def main():
        times = []
        for _ in range(5):
            start = time.perf_counter()
            await batcher.submit(["hello"], top_k=1)
            times.append(time.perf_counter() - start)
        return times

    times = asyncio.run(main())
    batcher.stop()
    assert max(times) < 0.25, times  # a 500 ms wait would show


def test_an_oversized_request_is_a_pass_of_its_own(tmp_path: Path):
    model = _EchoModel(delay=0.02)
    batcher, _ = _batcher(tmp_path, model, max_batch_size=4)

    async def main():
        return await asyncio.gather(batcher.submit(["a"] * 10, top_k=1), batcher.submit(["b"], top_k=1))

    big, small = asyncio.run(main())
    batcher.stop()
    assert len(big.answers) == 10 and len(small.answers) == 1 and 10 in model.passes


def test_a_failing_pass_fails_its_requests_and_the_worker_goes_on(tmp_path: Path):
    model = _EchoModel(delay=0.0, fail_on="boom")
    batcher, log = _batcher(tmp_path, model)

    async def main():
        with pytest.raises(RuntimeError, match="exploded"):
            await batcher.submit(["boom"], top_k=1)
        return await batcher.submit(["fine"], top_k=1)

    assert asyncio.run(main()).answers[0].label == "4"
    batcher.stop()
    assert log.count() == 1  # the failed pass logged nothing


def test_no_model_is_not_ready_and_a_swap_takes_effect_between_passes(tmp_path: Path):
    batcher, _ = _batcher(tmp_path, None)
    with pytest.raises(NotReady):
        asyncio.run(batcher.submit(["x"], top_k=1))
    old, new = _EchoModel("1", delay=0.1), _EchoModel("2", delay=0.0)
    batcher.slot.set(old)

    async def main():
        first = asyncio.ensure_future(batcher.submit(["a"], top_k=1))
        await asyncio.sleep(0.03)  # the pass of version 1 is running
        threading.Thread(target=batcher.slot.set, args=(new,)).start()
        await asyncio.sleep(0.01)
        return await first, await batcher.submit(["b"], top_k=1)

    a, b = asyncio.run(main())
    batcher.stop()
    assert (a.version, b.version) == ("1", "2") and batcher.slot.swaps == 1
