"""What a registered model version is made of (lineage) and what the registry says about it.

Plain values, no MLflow import: the pipeline builds a :class:`Lineage` and the registry turns it into tags
(``keepfit.lineage.*``) on the MLflow run and on the model version, and back.
"""

from __future__ import annotations

import functools
import json
import subprocess
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["Lineage", "ModelVersionInfo", "code_version", "LINEAGE_TAG_PREFIX", "LABELS_IN_ARTIFACT"]

LINEAGE_TAG_PREFIX = "keepfit.lineage."
# Written instead of the label list when it does not fit in a tag; the list is then in lineage.json.
LABELS_IN_ARTIFACT = "@lineage.json"


@dataclass(frozen=True)
class Lineage:
    """Where a model version came from: enough to say exactly what it was trained on and with what.

    ``data_snapshot`` is the snapshot's content hash, ``parent_version`` the registry version it was
    warm-started from (None for a fit from the pre-trained model), ``config_hash`` the resolved config's hash,
    ``code_version`` the keepfit version plus git commit when known, ``labels`` the head's labels in order.
    """

    data_snapshot: str
    parent_version: str | None
    config_hash: str
    code_version: str
    task: str
    labels: list[str] = field(default_factory=list)
    # a tuned model: {"study": name, "trial": number, "space": tune.space, "params": the trial's values}
    search: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Lineage:
        parent = data.get("parent_version")
        return cls(
            data_snapshot=str(data.get("data_snapshot", "")),
            parent_version=None if parent in (None, "") else str(parent),
            config_hash=str(data.get("config_hash", "")),
            code_version=str(data.get("code_version", "")),
            task=str(data.get("task", "")),
            labels=[str(x) for x in data.get("labels") or []],
            search=_search(data.get("search")),
        )

    def to_tags(self, max_value_chars: int) -> dict[str, str]:
        """Tags ``keepfit.lineage.<field>``; labels as JSON, or a pointer to lineage.json when too long."""
        labels = json.dumps(self.labels, ensure_ascii=False)
        tags = {
            "data_snapshot": self.data_snapshot,
            "config_hash": self.config_hash,
            "code_version": self.code_version,
            "task": self.task,
            "labels": labels if len(labels) <= max_value_chars else LABELS_IN_ARTIFACT,
            "num_labels": str(len(self.labels)),
        }
        if self.parent_version is not None:
            tags["parent_version"] = self.parent_version
        if self.search is not None:
            search = json.dumps(self.search, sort_keys=True, default=str)
            if len(search) > max_value_chars:  # the space of a very wide search: name the study and trial only
                search = json.dumps({k: self.search.get(k) for k in ("study", "trial")}, default=str)
            tags["search"] = search
        return {LINEAGE_TAG_PREFIX + k: v for k, v in tags.items()}

    @classmethod
    def from_tags(cls, tags: dict[str, str]) -> Lineage:
        """Read back :meth:`to_tags`. Labels kept in the artifact come back empty (the caller loads them)."""
        prefix = LINEAGE_TAG_PREFIX
        raw = {k.removeprefix(prefix): v for k, v in tags.items() if k.startswith(prefix)}
        labels_text = raw.get("labels", "[]")
        labels = [] if labels_text == LABELS_IN_ARTIFACT else json.loads(labels_text)
        return cls.from_dict({**raw, "labels": labels})


def _search(value: Any) -> dict[str, Any] | None:
    if value in (None, ""):
        return None
    return json.loads(value) if isinstance(value, str) else dict(value)


@dataclass(frozen=True)
class ModelVersionInfo:
    """One registered model version as keepfit sees it.

    ``status`` is champion, challenger, candidate (registered, never promoted), archived (a former champion),
    rolled-back (a champion that was rolled back) or rejected (a former challenger). ``gate`` holds
    ``{"decision": ..., "reasons": [...]}`` when a gate decided about it; ``promotion`` who promoted it,
    when and why. ``created`` is ISO 8601 UTC; ``source`` the artifact URI of the model folder.
    """

    version: str
    aliases: list[str]
    lineage: Lineage
    metrics: dict[str, float]
    status: str
    gate: dict[str, Any] | None
    created: str
    source: str
    run_id: str | None
    name: str = ""
    promotion: dict[str, Any] | None = None
    tags: dict[str, str] = field(default_factory=dict)


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """The keepfit version, plus ``+g<commit>`` when run from a git checkout (``0.1.0+g1a2b3c4d5e6f``)."""
    try:
        version = metadata.version("keepfit")
    except metadata.PackageNotFoundError:
        version = "unknown"
    commit = _git_commit()
    return f"{version}+g{commit}" if commit else version


def _git_commit() -> str | None:
    # Only the checkout keepfit itself lives in (src layout), never an unrelated repository around a venv.
    root = Path(__file__).resolve().parents[3]
    if not ((root / ".git").exists() and (root / "src" / "keepfit").is_dir()):
        return None
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
            capture_output=True, text=True, timeout=5, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and commit else None
