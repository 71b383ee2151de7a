"""The model registry stage: model versions with lineage, aliases champion/challenger, promote and rollback.

MLflow's model registry underneath (SQLite in the project store by default, or a tracking server from
``registry.uri``). ``Registry`` is imported lazily so that ``import keepfit.registry`` (for ``Lineage``)
does not pay MLflow's import time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from keepfit.registry.events import champion_stack, previous_champion
from keepfit.registry.lineage import Lineage, ModelVersionInfo, code_version

if TYPE_CHECKING:
    from keepfit.registry.mlflow_registry import Registry

__all__ = ["Registry", "Lineage", "ModelVersionInfo", "code_version", "champion_stack", "previous_champion"]


def __getattr__(name: str) -> Any:
    if name == "Registry":
        from keepfit.registry.mlflow_registry import Registry

        return Registry
    raise AttributeError(f"module 'keepfit.registry' has no attribute {name!r}")
