"""keepfit: fine-tune pre-trained models and keep them current with regression-safe updates."""

from __future__ import annotations

from keepfit.config import KeepfitConfig, load_config
from keepfit.errors import (
    ConfigError,
    DataError,
    GateRejected,
    KeepfitError,
    MissingExtraError,
    ModelError,
    RegistryError,
    TrainingError,
)
from keepfit.types import Snapshot

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "KeepfitConfig",
    "load_config",
    "Snapshot",
    "KeepfitError",
    "ConfigError",
    "DataError",
    "ModelError",
    "TrainingError",
    "GateRejected",
    "RegistryError",
    "MissingExtraError",
]
