"""`keepfit serve`: serve the champion over HTTP, following it as updates promote and rollbacks restore."""

from __future__ import annotations

from pathlib import Path

import typer

from keepfit.cli._common import ConfigOption, SetOption, resolve_config
from keepfit.cli._console import console


def serve_command(
    host: str = typer.Option(None, "--host", help="Address to listen on (default serve.host, 127.0.0.1)."),
    port: int = typer.Option(None, "--port", min=0, max=65535, help="Port (default serve.port; 0 picks a free one)."),
    ref: str = typer.Option(None, "--ref", help="Version or alias to serve and follow (default serve.model_ref)."),
    backend: str = typer.Option(None, "--backend", help="torch or onnx (default serve.backend)."),
    config: Path = ConfigOption,
    overrides: list[str] = SetOption,
) -> None:
    """Serve the registry's champion: OIP v2 (/v2/...), /predict, /feedback, /metrics; hot swap when it moves.

    Every answer is written to the prediction log before it is sent (serve.log_path). Stop with Ctrl-C or
    SIGTERM: requests in flight are answered first."""
    from keepfit.serve.server import run_server

    extra = [f"serve.{k}={v}" for k, v in (("host", host), ("port", port), ("model_ref", ref), ("backend", backend))
             if v is not None]
    cfg = resolve_config(config, list(overrides or []) + extra)

    def ready(url: str) -> None:
        console.print(
            f"keepfit serve: {url}  (follows {cfg.serve.model_ref!r}, {cfg.serve.backend} backend; "
            f"POST {url}/predict, docs of the endpoints: keepfit serve --help)",
            markup=False,
        )

    run_server(cfg, on_ready=ready)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_command)
