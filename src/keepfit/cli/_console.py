"""Shared console and the quiet switch, so every command prints the same way."""

from __future__ import annotations

import os

from rich.console import Console

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def quiet_default() -> bool:
    """Quiet (no progress bars) under CI or when stdout is not a terminal."""
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"} or not console.is_terminal
