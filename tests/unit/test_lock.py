"""The project lock: re-entrant in a thread, exclusive across threads and processes, says who holds it,
and a holder killed with SIGKILL does not block the next process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from keepfit.errors import KeepfitError, LockBusy
from keepfit.lock import lock_holder, project_lock
from keepfit.store import Store

_HOLDER = """
import sys, time
from pathlib import Path
from keepfit.lock import project_lock
from keepfit.store import Store

with project_lock(Store.at(sys.argv[1]), "keepfit update (test child)"):
    Path(sys.argv[2]).write_text("held")
    time.sleep(120)
"""


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store.at(tmp_path / "project" / ".keepfit")


@pytest.fixture
def child(store: Store, tmp_path: Path):
    """A separate process holding the lock (it sleeps until killed); yields the Popen once the lock is held."""
    script, marker = tmp_path / "hold.py", tmp_path / "held"
    script.write_text(_HOLDER)
    proc = subprocess.Popen([sys.executable, str(script), str(store.root), str(marker)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
        assert time.monotonic() < deadline, "the child never took the lock"
        time.sleep(0.05)
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=30)
    proc.stdout.close()
    proc.stderr.close()


def test_reentrant_in_a_thread_and_the_holder_file_names_the_outer_holder(store):
    with project_lock(store, "keepfit update", timeout=0):
        with project_lock(store, "registering a model version", timeout=0):
            holder = lock_holder(store)
        assert lock_holder(store) == holder  # leaving the inner block keeps the outer hold and its record
    assert holder["pid"] == os.getpid() and holder["what"] == "keepfit update"
    assert lock_holder(store) is None  # released: nobody holds it
    with project_lock(store, "again", timeout=0):  # and it can be taken again
        assert lock_holder(store)["what"] == "again"


def test_another_thread_waits(store):
    taken, release = threading.Event(), threading.Event()

    def hold():
        with project_lock(store, "thread holder", timeout=0):
            taken.set()
            release.wait(30)

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert taken.wait(30)
        with pytest.raises(LockBusy, match="thread holder"):
            with project_lock(store, "main thread", timeout=0):
                pass
    finally:
        release.set()
        thread.join(30)
    with project_lock(store, "main thread", timeout=0):
        assert lock_holder(store)["what"] == "main thread"


def test_a_waiting_process_says_who_holds_it_and_times_out_clearly(store, child):
    said: list[str] = []
    started = time.monotonic()
    with pytest.raises(LockBusy) as caught:
        with project_lock(store, "keepfit models promote", timeout=0.5, on_wait=said.append):
            pass
    assert time.monotonic() - started >= 0.5  # it did wait
    (waiting,) = said
    assert f"held by pid {child.pid} (keepfit update (test child), since " in waiting
    message = str(caught.value)
    assert f"pid {child.pid}" in message and "keepfit update (test child)" in message
    assert "try again" in message
    assert isinstance(caught.value, KeepfitError) and caught.value.exit_code == 9


def test_a_holder_killed_with_sigkill_releases_the_lock(store, child):
    with pytest.raises(LockBusy):
        with project_lock(store, "first try", timeout=0):
            pass
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    assert lock_holder(store)["pid"] == child.pid  # the killed holder's note is still there...
    started = time.monotonic()
    with project_lock(store, "after the kill", timeout=10):  # ...but the OS lock went with the process
        assert lock_holder(store)["pid"] == os.getpid()
    assert time.monotonic() - started < 5
