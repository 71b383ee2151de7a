"""The keepfit command line: parsing, printing and exit codes only. Every command calls a typed function."""

from __future__ import annotations

from keepfit.cli.app import app, main

__all__ = ["app", "main"]
