"""keepfit: fine-tune pre-trained models and keep them current with regression-safe updates.

The public API: every CLI command is a thin layer over one of these typed functions.

    import keepfit
    config = keepfit.load_config("keepfit.yaml")
    result = keepfit.fit(config)                       # snapshot -> fine-tune -> evaluate -> register
    update = keepfit.update(config, "week2.csv")       # candidate -> paired gate -> promote or reject
"""

from __future__ import annotations

from keepfit.config import KeepfitConfig, load_config, save_config
from keepfit.data import (
    CheckResult,
    check_data,
    create_snapshot,
    diff_snapshots,
    list_snapshots,
    load_snapshot,
    snapshot_data,
    split_rows,
)
from keepfit.data.demo_data import generate_demo_data, generate_next_week
from keepfit.data.infer import infer_config, write_config_file
from keepfit.data.review import accept_reviewed, collect_label_issues, find_training_label_issues
from keepfit.data.screen import ScreenResult, screen_batch
from keepfit.data.validate import CheckedRows, load_and_validate
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
from keepfit.pipeline import (
    CompareResult,
    EvaluateResult,
    FitResult,
    UpdateResult,
    compare,
    evaluate,
    fit,
    predict,
    update,
    update_from_feedback,
)
from keepfit.registry import Lineage, ModelVersionInfo
from keepfit.types import Snapshot

__version__ = "0.1.0"


def __getattr__(name: str):
    # Registry pulls in MLflow (about a second to import): load it on first use only.
    if name in ("Registry", "ChampionMoved"):
        import keepfit.registry

        return getattr(keepfit.registry, name)
    if name in ("run_monitor", "MonitorReport"):  # scikit-learn and scipy: on first use too
        # (not "monitor": the subpackage keepfit.monitor takes that attribute once it is imported)
        from keepfit.monitor import MonitorReport, monitor

        return monitor if name == "run_monitor" else MonitorReport
    if name in ("run_tune", "TuneResult"):  # Optuna and SQLAlchemy: on first use (keepfit.tune is the subpackage)
        from keepfit.tune.study import TuneResult, tune

        return tune if name == "run_tune" else TuneResult
    if name in ("run_auto", "AutoResult"):
        from keepfit.tune.auto import AutoResult, auto

        return auto if name == "run_auto" else AutoResult
    if name in ("adapt", "AdaptResult"):  # torch and transformers: on first use
        from keepfit.train.adapt import AdaptResult, adapt

        return adapt if name == "adapt" else AdaptResult
    if name in ("federate", "FederateResult"):  # Flower and Ray (the federated extra): on first use
        from keepfit.federated.run import FederateResult, federate

        return federate if name == "federate" else FederateResult
    if name == "PredictionLog":
        from keepfit.serve.log import PredictionLog

        return PredictionLog
    raise AttributeError(f"module 'keepfit' has no attribute {name!r}")

__all__ = [
    "__version__",
    # config
    "KeepfitConfig",
    "load_config",
    "save_config",
    "infer_config",
    "write_config_file",
    # data
    "load_and_validate",
    "CheckedRows",
    "check_data",
    "CheckResult",
    "split_rows",
    "snapshot_data",
    "create_snapshot",
    "load_snapshot",
    "list_snapshots",
    "diff_snapshots",
    "Snapshot",
    "generate_demo_data",
    "generate_next_week",
    "screen_batch",
    "ScreenResult",
    "find_training_label_issues",
    "collect_label_issues",
    "accept_reviewed",
    # lifecycle
    "fit",
    "FitResult",
    "evaluate",
    "EvaluateResult",
    "predict",
    "update",
    "update_from_feedback",
    "run_monitor",
    "MonitorReport",
    "PredictionLog",
    "run_tune",
    "TuneResult",
    "run_auto",
    "AutoResult",
    "adapt",
    "AdaptResult",
    "UpdateResult",
    "federate",
    "FederateResult",
    "compare",
    "CompareResult",
    # registry
    "Registry",
    "Lineage",
    "ModelVersionInfo",
    # errors
    "KeepfitError",
    "ConfigError",
    "DataError",
    "ModelError",
    "TrainingError",
    "GateRejected",
    "RegistryError",
    "MissingExtraError",
    "LockBusy",
    "ChampionMoved",
]
