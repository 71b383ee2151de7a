"""Running the app under uvicorn on a socket bound here (port 0 picks a free one), with the address written to
``<store>/serve/server.json`` for scripts (the demo, tests) and removed on a clean stop."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable
from pathlib import Path

from keepfit._io import atomic_write_text
from keepfit.config import KeepfitConfig
from keepfit.errors import ConfigError, MissingExtraError
from keepfit.store import Store

__all__ = ["run_server", "server_file", "check_extra"]


def check_extra() -> None:
    """Raise MissingExtraError when the ``serve`` extra is not installed."""
    missing = []
    for module in ("fastapi", "uvicorn", "prometheus_client"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise MissingExtraError(
            f"`keepfit serve` needs {', '.join(missing)}, which are not installed. "
            "Install the serve extra: pip install 'keepfit[serve]'."
        )


def server_file(config: KeepfitConfig) -> Path:
    return Store.at(config.store).serve / "server.json"


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say they are TCP, and without it
    # Nagle's algorithm and delayed ACKs add ~40 ms to every small response
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise ConfigError(
            f"Cannot listen on {host}:{port}: {err.strerror}. Pick another port with --port (0 picks a free one) "
            "or stop the process using it."
        ) from None
    sock.listen(2048)
    return sock


def run_server(config: KeepfitConfig, *, on_ready: Callable[[str], None] | None = None) -> None:
    """Serve until SIGINT/SIGTERM (uvicorn finishes the requests in flight first); ``on_ready(url)`` is called
    once the socket is bound, before the first version is loaded."""
    check_extra()
    import uvicorn

    from keepfit.serve.app import create_app

    sock = _bind(config.serve.host, config.serve.port)
    host, port = sock.getsockname()[:2]
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}"
    app = create_app(config)
    info = server_file(config)
    info.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(info, json.dumps({"url": url, "port": port, "pid": os.getpid()}) + "\n")
    if on_ready is not None:
        on_ready(url)
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=30, lifespan="on")
    )
    try:
        server.run(sockets=[sock])
    finally:
        with_pid = json.loads(info.read_text()) if info.exists() else {}
        if with_pid.get("pid") == os.getpid():
            info.unlink(missing_ok=True)
