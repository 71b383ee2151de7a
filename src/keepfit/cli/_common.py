"""Options and helpers shared by commands: config loading with --set overrides, and the exit codes."""

from __future__ import annotations

from pathlib import Path

import typer

from keepfit.config import CONFIG_FILENAME, KeepfitConfig, load_config
from keepfit.errors import (
    ConfigError,
    DataError,
    GateRejected,
    KeepfitError,
    LockBusy,
    MissingExtraError,
    ModelError,
    RegistryError,
    TrainingError,
)

INTERNAL_ERROR = 70  # EX_SOFTWARE in sysexits.h: a bug in keepfit
INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C
MONITOR_ALERT = 10  # `keepfit monitor --fail-on-alert` found a check over its threshold

# The one list of exit codes: `keepfit --help` shows it and the README repeats it. The codes of errors come
# from the error classes themselves, so the two cannot drift apart.
EXIT_CODES: list[tuple[int, str]] = [
    (0, "done (for `keepfit update`: the candidate was promoted)"),
    (KeepfitError.exit_code, "a keepfit error not listed below"),
    (ConfigError.exit_code, "usage mistake (unknown command or option, missing argument) or invalid config"),
    (DataError.exit_code, "the data cannot be read or does not fit the config"),
    (ModelError.exit_code, "a model cannot be found, loaded or saved"),
    (TrainingError.exit_code, "training cannot start or continue"),
    (GateRejected.exit_code, "the gate rejected the candidate (it stays challenger)"),
    (RegistryError.exit_code, "the registry refused an action (also: the champion moved during an update)"),
    (MissingExtraError.exit_code, "an optional extra is not installed"),
    (LockBusy.exit_code, "another keepfit process holds the project lock"),
    (MONITOR_ALERT, "the monitor raised an alert (--fail-on-alert)"),
    (INTERNAL_ERROR, "internal error: a bug in keepfit (re-run with --debug and report it)"),
    (INTERRUPTED, "interrupted (Ctrl-C)"),
]


def exit_codes_epilog() -> str:
    """The exit codes as the root --help's epilog, one line each.

    Paragraphs (blank-line separated): typer < 0.21 (which the ``federated`` extra's flwr pins) joins single
    line breaks of an epilog into one paragraph; later typers keep them."""
    return "Exit codes:\n\n" + "\n\n".join(f"{code:>3}  {meaning}" for code, meaning in EXIT_CODES)


ConfigOption = typer.Option(None, "--config", "-c", help=f"Config file (default: ./{CONFIG_FILENAME} if present).")
SetOption = typer.Option(None, "--set", help="Override a setting, e.g. --set train.lr=3e-5 (repeatable).")
QuietOption = typer.Option(False, "--quiet", "-q", help="No progress bars (for CI and logs).")


def resolve_config(config: Path | None, overrides: list[str] | None) -> KeepfitConfig:
    """Load the named config, else ./keepfit.yaml when present, else the defaults; then apply overrides."""
    path = config
    if path is None and Path(CONFIG_FILENAME).exists():
        path = Path(CONFIG_FILENAME)
    return load_config(path, overrides or [])
