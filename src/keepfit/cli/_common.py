"""Options and helpers shared by commands: config loading with --set overrides."""

from __future__ import annotations

from pathlib import Path

import typer

from keepfit.config import CONFIG_FILENAME, KeepfitConfig, load_config

ConfigOption = typer.Option(None, "--config", "-c", help=f"Config file (default: ./{CONFIG_FILENAME} if present).")
SetOption = typer.Option(None, "--set", help="Override a setting, e.g. --set train.lr=3e-5 (repeatable).")
QuietOption = typer.Option(False, "--quiet", "-q", help="No progress bars (for CI and logs).")


def resolve_config(config: Path | None, overrides: list[str] | None) -> KeepfitConfig:
    """Load the named config, else ./keepfit.yaml when present, else the defaults; then apply overrides."""
    path = config
    if path is None and Path(CONFIG_FILENAME).exists():
        path = Path(CONFIG_FILENAME)
    return load_config(path, overrides or [])
