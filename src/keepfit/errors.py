"""The keepfit exception hierarchy.

Library code raises these; only the CLI turns them into a message and an exit code.
Every message says what was expected, what came, and what to do.
"""

from __future__ import annotations

__all__ = [
    "KeepfitError",
    "ConfigError",
    "DataError",
    "ModelError",
    "TrainingError",
    "GateRejected",
    "RegistryError",
    "MissingExtraError",
    "LockBusy",
]


class KeepfitError(Exception):
    """Base class of every error keepfit raises on purpose (a user's mistake or a refused action)."""

    exit_code: int = 1


class ConfigError(KeepfitError):
    """The configuration is invalid. ``problems`` lists every problem found, not just the first."""

    exit_code = 2

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        self.problems = list(problems or [])
        if self.problems:
            message = message + "\n" + "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(message)


class DataError(KeepfitError):
    """Input data cannot be read or does not fit what the config expects."""

    exit_code = 3


class ModelError(KeepfitError):
    """A model cannot be found, loaded or saved."""

    exit_code = 4


class TrainingError(KeepfitError):
    """Training cannot start or continue (bad resume point, diverged loss, ...)."""

    exit_code = 5


class GateRejected(KeepfitError):
    """A candidate failed the update gate. ``reasons`` lists every failed rule."""

    exit_code = 6

    def __init__(self, message: str, reasons: list[str] | None = None) -> None:
        self.reasons = list(reasons or [])
        super().__init__(message)


class RegistryError(KeepfitError):
    """The model registry refused an action or is unreachable."""

    exit_code = 7


class MissingExtraError(KeepfitError):
    """An optional part is used without its extra installed."""

    exit_code = 8


class LockBusy(KeepfitError):
    """Another process holds the project lock (an update, a registration or a promotion is under way)."""

    exit_code = 9
