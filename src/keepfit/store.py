"""The project store layout (``.keepfit/`` by default): one place that knows where things live."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["Store"]


@dataclass(frozen=True)
class Store:
    """Paths inside a project store. Creating a Store creates nothing on disk."""

    root: Path

    @classmethod
    def at(cls, root: str | Path) -> Store:
        return cls(Path(root).resolve())

    @property
    def snapshots(self) -> Path:
        return self.root / "snapshots"

    def snapshot(self, snapshot_id: str) -> Path:
        return self.snapshots / snapshot_id

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    def run(self, run_id: str) -> Path:
        return self.runs / run_id

    @property
    def registry_db(self) -> Path:
        return self.root / "registry" / "mlflow.db"

    @property
    def registry_artifacts(self) -> Path:
        return self.root / "registry" / "artifacts"

    @property
    def default_registry_uri(self) -> str:
        return f"sqlite:///{self.registry_db}"

    @property
    def serve(self) -> Path:
        """What `keepfit serve` keeps: the prediction log, exported ONNX models."""
        return self.root / "serve"

    @property
    def predictions_db(self) -> Path:
        return self.serve / "predictions.sqlite"

    @property
    def feedback_batches(self) -> Path:
        """Batches `keepfit update --from-feedback` made, and the feedback cutoff it reached."""
        return self.serve / "feedback-batches"

    def export(self, version: str) -> Path:
        """Exported (ONNX) copies of one registered version."""
        return self.root / "exports" / f"v{version}"

    @property
    def tune(self) -> Path:
        """What `keepfit tune` and `keepfit auto` keep: the study database, trial runs, reports."""
        return self.root / "tune"

    @property
    def studies_db(self) -> Path:
        return self.tune / "studies.sqlite"

    @property
    def head_file(self) -> Path:
        """Holds the id of the newest snapshot (written atomically)."""
        return self.snapshots / "HEAD"
