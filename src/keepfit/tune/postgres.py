"""A throwaway PostgreSQL server in a folder, on a free local port: for the tests of studies shared by several
`keepfit tune --worker` processes, and for trying distributed tuning on one machine.

It uses Debian's ``postgresql`` package (``initdb`` and ``pg_ctl`` on PATH or under /usr/lib/postgresql/*/bin).
PostgreSQL refuses to run as root, so under root the server runs as the ``postgres`` user the package creates.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from keepfit.errors import MissingExtraError

__all__ = ["local_postgres", "find_postgres"]


def find_postgres() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl``, or None when PostgreSQL's server is not installed."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(os.path.realpath(on_path)).parent
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_server_user(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    if shutil.which("runuser") is None:
        raise MissingExtraError("PostgreSQL cannot run as root and runuser is missing to start it as 'postgres'.")
    return ["runuser", "-u", "postgres", "--", *command]


@contextlib.contextmanager
def local_postgres() -> Iterator[str]:
    """Start a PostgreSQL server with its data in a new temporary folder (under the system's temp folder, which
    the ``postgres`` user can reach); yields its SQLAlchemy URL (database ``postgres``, user ``keepfit``, no
    password, 127.0.0.1 only), then stops it and removes the folder. Raises MissingExtraError when the server
    binaries are not installed (``apt-get install postgresql``)."""
    bin_dir = find_postgres()
    if bin_dir is None:
        raise MissingExtraError("PostgreSQL's server is not installed (no initdb): apt-get install postgresql.")
    folder = Path(tempfile.mkdtemp(prefix="keepfit-pg-"))
    try:
        if os.geteuid() == 0:
            shutil.chown(folder, "postgres", "postgres")
        with _server(bin_dir, folder) as url:
            yield url
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def _server(bin_dir: Path, folder: Path) -> Iterator[str]:
    data = folder / "data"
    port = _free_port()
    run = dict(check=True, capture_output=True, text=True, timeout=120)
    subprocess.run(_as_server_user([str(bin_dir / "initdb"), "-D", str(data), "-U", "keepfit", "--auth=trust",
                                    "--no-sync"]), **run)
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
    pg_ctl = [str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(folder / "server.log"), "-w"]
    subprocess.run(_as_server_user([*pg_ctl, "-o", options, "start"]), **run)
    try:
        yield f"postgresql+psycopg2://keepfit@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(_as_server_user([*pg_ctl, "-m", "fast", "stop"]), check=False, capture_output=True, timeout=120)
