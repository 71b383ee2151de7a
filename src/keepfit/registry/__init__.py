"""The model registry stage: model versions with lineage, aliases champion/challenger, promote and rollback.

MLflow's model registry underneath (SQLite in the project store by default, or a tracking server from
``registry.uri``). ``Registry`` and ``ChampionMoved`` are imported lazily so that ``import keepfit.registry`` (for
``Lineage``) does not pay MLflow's import time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from keepfit.registry.events import champion_stack, previous_champion
from keepfit.registry.lineage import Lineage, ModelVersionInfo, code_version

if TYPE_CHECKING:
    from keepfit.registry.mlflow_registry import ChampionMoved, Registry

__all__ = [
    "Registry", "ChampionMoved", "Lineage", "ModelVersionInfo", "code_version", "champion_stack", "previous_champion"
]


def __getattr__(name: str) -> Any:
    if name in ("Registry", "ChampionMoved"):
        from keepfit.registry import mlflow_registry

        return getattr(mlflow_registry, name)
    raise AttributeError(f"module 'keepfit.registry' has no attribute {name!r}")
