"""The project lock: one writer at a time on a store (HEAD, snapshots, registrations, promotions).

An OS file lock (``filelock``) on ``<store>/lock``: the kernel releases it when its process dies, however it
dies, so a killed update never blocks the next one. Who holds it (pid, host, what, since) is written beside it
in ``<store>/lock.holder`` so that a waiting process can say whom it waits for. The holder file is only a
message: the lock itself is the OS lock, and a stale holder file left by a killed process is overwritten.

Re-entrant within a thread: ``update`` can hold the lock while the registry it calls takes it again.
Other threads and other processes wait.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from keepfit._io import atomic_write_text
from keepfit.errors import LockBusy
from keepfit.store import Store

__all__ = ["project_lock", "lock_holder", "describe_holder", "lock_path", "DEFAULT_LOCK_TIMEOUT_S"]

log = logging.getLogger(__name__)

# How long a registry write waits for another process's registration or promotion (seconds).
DEFAULT_LOCK_TIMEOUT_S = 120.0

_LOCKS: dict[tuple[int, str], FileLock] = {}  # one FileLock per (process, lock file): its counter is the re-entry
_LOCKS_GUARD = threading.Lock()


def lock_path(store: Store) -> Path:
    """The lock file of a store."""
    return store.root / "lock"


def _holder_path(store: Store) -> Path:
    return store.root / "lock.holder"


def lock_holder(store: Store) -> dict[str, Any] | None:
    """Who holds (or last held, if it was killed) the lock: ``pid``, ``host``, ``what``, ``argv``, ``since``
    (ISO 8601 local time) and ``since_epoch`` (seconds); None when nobody wrote one."""
    try:
        holder = json.loads(_holder_path(store).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) else None


def describe_holder(holder: dict[str, Any] | None) -> str:
    """``pid 1234 on host h (keepfit update, since 10:02:11)``, or a plain phrase when nothing is known."""
    if not holder:
        return "another process (it has not said who it is yet)"
    since = str(holder.get("since", ""))
    clock = since[11:19] if len(since) >= 19 else since
    where = "" if holder.get("host") == socket.gethostname() else f" on host {holder.get('host', '?')}"
    return f"pid {holder.get('pid', '?')}{where} ({holder.get('what', '?')}, since {clock})"


def _file_lock(store: Store) -> FileLock:
    path = lock_path(store)
    key = (os.getpid(), str(path))  # a forked child must not inherit its parent's hold
    with _LOCKS_GUARD:
        lock = _LOCKS.get(key)
        if lock is None:
            path.parent.mkdir(parents=True, exist_ok=True)
            lock = _LOCKS[key] = FileLock(str(path))
    return lock


@contextlib.contextmanager
def project_lock(
    store: Store,
    what: str,
    timeout: float | None = DEFAULT_LOCK_TIMEOUT_S,
    *,
    on_wait: Callable[[str], None] | None = None,
) -> Iterator[None]:
    """Hold the store's lock for the block; re-entrant within a thread.

    ``what`` says what the holder is doing ("keepfit update"), shown to whoever waits. ``timeout`` is how many
    seconds to wait for another holder (None: as long as it takes; 0: not at all). Before waiting, the sentence
    "waiting for the lock ... held by pid 1234 (keepfit update, since 10:02:11)" is passed to ``on_wait``, or
    logged as a warning without one. Raises :class:`~keepfit.errors.LockBusy` when the wait runs out.
    """
    lock = _file_lock(store)
    _acquire(lock, store, what, timeout, on_wait)
    try:
        if lock.lock_counter == 1:
            _write_holder(store, what)
        yield
    finally:
        if lock.lock_counter == 1:
            # Removed while still held: removing it after the release could delete the next holder's file.
            with contextlib.suppress(OSError):
                _holder_path(store).unlink()
        lock.release()


def _acquire(
    lock: FileLock, store: Store, what: str, timeout: float | None, on_wait: Callable[[str], None] | None
) -> None:
    started = time.monotonic()
    try:
        lock.acquire(timeout=0)
        return
    except Timeout:
        pass
    if timeout is not None and timeout <= 0:
        raise _busy(store, what, 0.0) from None
    message = (
        f"{what}: waiting for the lock on {store.root} held by {describe_holder(lock_holder(store))}"
        + ("" if timeout is None else f" (for at most {timeout:g} s)")
    )
    if on_wait is not None:
        on_wait(message)
    else:
        log.warning("%s", message)
    try:
        lock.acquire(timeout=-1 if timeout is None else timeout)
    except Timeout:
        raise _busy(store, what, time.monotonic() - started) from None


def _busy(store: Store, what: str, waited: float) -> LockBusy:
    holder = lock_holder(store)
    waited_text = "without waiting" if waited <= 0 else f"after waiting {waited:.0f} s"
    return LockBusy(
        f"Cannot run {what}: the project store {store.root} is locked by {describe_holder(holder)}; "
        f"gave up {waited_text}. Let that run finish and try again (`keepfit models list` shows what it "
        "registered). The lock goes away by itself when its process ends, even if it is killed."
    )


def _write_holder(store: Store, what: str) -> None:
    now = time.time()
    holder = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "what": what,
        "argv": sys.argv,
        "since": datetime.fromtimestamp(now).isoformat(timespec="seconds"),
        "since_epoch": now,
    }
    with contextlib.suppress(OSError):  # the message is a courtesy; never fail a write because of it
        atomic_write_text(_holder_path(store), json.dumps(holder))
