"""A real PostgreSQL for the tests of shared studies, started in a temporary folder (Debian's postgresql package,
installed here when it is missing and this process may); skipped with the reason where that is impossible."""

from __future__ import annotations

import subprocess

import pytest

from keepfit.errors import MissingExtraError
from keepfit.tune.postgres import local_postgres


def _install_postgres() -> None:
    """Install Debian's postgresql where it is missing and this process may (root with apt-get)."""
    import os
    import shutil

    from keepfit.tune.postgres import find_postgres

    if find_postgres() is not None or os.geteuid() != 0 or shutil.which("apt-get") is None:
        return
    subprocess.run(["apt-get", "install", "-y", "-q", "postgresql"], capture_output=True, timeout=600,
                   env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})


@pytest.fixture()
def postgres_url():
    pytest.importorskip("psycopg2", reason="the PostgreSQL driver (psycopg2-binary, extra tune) is not installed")
    _install_postgres()
    try:
        with local_postgres() as url:
            yield url
    except MissingExtraError as err:
        pytest.skip(f"no PostgreSQL server here: {err}")
    except subprocess.CalledProcessError as err:
        pytest.skip(f"PostgreSQL would not start here: {err.stderr or err.stdout}")
