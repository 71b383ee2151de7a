"""The registered model's default name, derived from a project folder (light: no MLflow import).

`keepfit init` writes this name into keepfit.yaml, so the registry follows the project when its folder is
renamed or copied; the registry falls back to it (with a warning) for configs that do not name a model.
"""

from __future__ import annotations

import re

__all__ = ["model_name_from_folder"]

_NAME_OK = re.compile(r"[^A-Za-z0-9_.\- ]+")


def model_name_from_folder(folder_name: str) -> str:
    """A valid MLflow model name from a folder's name: other characters become "-" ("My Project!" ->
    "My Project"); "keepfit-model" when nothing is left."""
    return _NAME_OK.sub("-", folder_name).strip("-. ") or "keepfit-model"
