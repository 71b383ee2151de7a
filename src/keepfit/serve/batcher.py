"""Adaptive micro-batching: the texts of concurrent requests share one forward pass.

Requests are queued from the event loop; one worker thread takes them in arrival order and answers them in
batches of at most ``max_batch_size`` texts (a single larger request is one batch of its own). After the first
request of a batch, the worker takes what is already queued and then waits at most ``max_wait_ms`` for more,
but only while the batch is smaller than the previous one: a lone client (previous batch of one) never waits,
while under load the clients answered by the last batch are given the moment they need to send again. The
forward pass runs outside the event loop (torch releases the GIL), so the server keeps accepting meanwhile.

Each batch is answered by the one version the slot holds when the batch starts, written to the prediction
log in one transaction, and only then handed back: an answer a client received is on disk.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from keepfit.serve.log import LoggedPrediction, PredictionLog
from keepfit.serve.runtime import Answer, ModelSlot, ServedModel

__all__ = ["MicroBatcher", "Answered", "NotReady", "Draining"]


class NotReady(Exception):
    """No version is loaded yet (no champion in the registry)."""


class Draining(Exception):
    """The server is draining: it finishes what it has and takes nothing new."""


@dataclass(frozen=True)
class Answered:
    """The answers to one request: its id, one id per text (what feedback names), the version that answered."""

    request_id: str
    ids: list[str]
    version: str
    answers: list[Answer]
    labels: list[str]
    task: str
    latency_ms: float


@dataclass
class _Job:
    texts: list[str]
    top_k: int
    meta: list[dict[str, Any]]
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    enqueued: float = field(default_factory=time.perf_counter)
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex[:20])


_STOP = object()


class MicroBatcher:
    """Queue + worker thread. ``await submit(texts, top_k, meta)`` gives :class:`Answered`."""

    def __init__(
        self,
        slot: ModelSlot,
        log: PredictionLog,
        *,
        max_batch_size: int,
        max_wait_ms: float,
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        self.slot = slot
        self.log = log
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000
        self._on_batch = on_batch
        self._queue: queue.Queue[Any] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._last_batch = 1
        self._carry: _Job | None = None  # a job that did not fit the last batch leads the next one
        self.in_flight = 0
        self.draining = False

    # -- the event loop's side ---------------------------------------------------------------------------------

    async def submit(
        self, texts: list[str], *, top_k: int, meta: list[dict[str, Any]] | None = None
    ) -> Answered:
        """Answer ``texts`` (``meta``: one metadata object per text, logged with it)."""
        if self.draining:
            raise Draining()
        if self.slot.current is None:
            raise NotReady()
        loop = asyncio.get_running_loop()
        job = _Job(texts, top_k, meta or [{} for _ in texts], loop.create_future(), loop)
        self.in_flight += 1
        try:
            self._queue.put(job)
            return await job.future
        finally:
            self.in_flight -= 1

    async def drain(self, timeout: float = 60.0) -> int:
        """Take no new requests and wait (at most ``timeout`` s) for the queued ones; returns those left."""
        self.draining = True
        deadline = time.monotonic() + timeout
        while self.in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return self.in_flight

    # -- the worker thread ---------------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._work, name="keepfit-batcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Answer what is queued, then end the worker."""
        self._queue.put(_STOP)
        if self._thread is not None:
            self._thread.join(timeout=60)

    def _work(self) -> None:
        while True:
            first, self._carry = (self._carry, None) if self._carry is not None else (self._queue.get(), None)
            if first is _STOP:
                return
            jobs, stop = self._gather(first)
            self._answer(jobs)
            if stop:
                return

    def _gather(self, first: _Job) -> tuple[list[_Job], bool]:
        """``first`` and the jobs that join its batch; True when the stop marker was reached."""
        jobs, size = [first], len(first.texts)
        deadline = time.perf_counter() + self.max_wait_s
        while size < self.max_batch_size:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                remaining = deadline - time.perf_counter()
                if size >= self._last_batch or remaining <= 0:
                    break
                try:
                    job = self._queue.get(timeout=remaining)
                except queue.Empty:
                    break
            if job is _STOP:
                return jobs, True
            if size + len(job.texts) > self.max_batch_size:
                self._carry = job
                break
            jobs.append(job)
            size += len(job.texts)
        return jobs, False

    def _answer(self, jobs: list[_Job]) -> None:
        model = self.slot.current
        jobs = [j for j in jobs if not j.future.done()]  # a client that went away is not answered
        if not jobs:
            return
        size = sum(len(j.texts) for j in jobs)
        self._last_batch = max(1, size)
        start = time.perf_counter()
        try:
            if model is None:
                raise NotReady()
            texts = [t for j in jobs for t in j.texts]
            answers = model.answer(texts, top_k=max(j.top_k for j in jobs), batch_size=self.max_batch_size)
            results = self._log(model, jobs, answers)
        except Exception as err:  # the jobs' clients get the error; the worker goes on
            for job in jobs:
                job.loop.call_soon_threadsafe(_fail, job.future, err)
            return
        if self._on_batch is not None:
            self._on_batch(size, time.perf_counter() - start)
        for job, result in zip(jobs, results, strict=True):
            job.loop.call_soon_threadsafe(_resolve, job.future, result)

    def _log(self, model: ServedModel, jobs: list[_Job], answers: list[Answer]) -> list[Answered]:
        now, done = time.time(), time.perf_counter()
        self.log.record_model(model.version, model.task, model.labels)
        rows, results, at = [], [], 0
        for job in jobs:
            mine = answers[at : at + len(job.texts)]
            at += len(job.texts)
            ids = [f"{job.request_id}-{i}" for i in range(len(job.texts))]
            latency = (done - job.enqueued) * 1000
            for rid, text, answer, meta in zip(ids, job.texts, mine, job.meta, strict=True):
                rows.append(
                    LoggedPrediction(
                        rid, now, model.version, text, answer.label, answer.score, answer.probabilities,
                        latency, abstained=answer.abstained, meta=meta,
                    )
                )
            results.append(Answered(job.request_id, ids, model.version, mine, model.labels, model.task, latency))
        self.log.append(rows)
        return results


def _resolve(future: asyncio.Future, value: Answered) -> None:
    if not future.done():
        future.set_result(value)


def _fail(future: asyncio.Future, err: Exception) -> None:
    if not future.done():
        future.set_exception(err)
