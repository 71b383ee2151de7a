"""Shared fixtures: one SQLite registry per test module (creating it runs MLflow's migrations, ~1.5 s);
each test gets its own registered model name inside it, so tests stay independent."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")

from keepfit.config import KeepfitConfig  # noqa: E402
from keepfit.registry import Lineage  # noqa: E402


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("project") / ".keepfit"


@pytest.fixture
def config(store_dir: Path) -> KeepfitConfig:
    return KeepfitConfig(store=str(store_dir), registry={"model_name": f"m-{uuid.uuid4().hex[:8]}"})


@pytest.fixture
def registry(config: KeepfitConfig):
    from keepfit.registry import Registry

    return Registry.open(config)


def fake_model(folder: Path, weights: bytes = b"\x00\x01" * 64) -> Path:
    """A fake Hugging Face model folder: a few small files are all the registry needs."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text('{"architectures": ["BertForSequenceClassification"]}')
    (folder / "model.safetensors").write_bytes(weights)
    (folder / "tokenizer.json").write_text('{"version": "1.0"}')
    return folder


def fake_lineage(
    snapshot: str = "snap-aaaa", parent: str | None = None, labels: list[str] | None = None
) -> Lineage:
    return Lineage(
        data_snapshot=snapshot,
        parent_version=parent,
        config_hash="cfg0123456789abc",
        code_version="0.1.0+gdeadbeef",
        task="single-label",
        labels=labels if labels is not None else ["billing", "refund", "other"],
    )


@pytest.fixture
def make_model(tmp_path: Path):
    """``make_model(name, weights=...)`` writes a fake model folder under the test's tmp_path."""
    return lambda name="model", weights=b"\x00\x01" * 64: fake_model(tmp_path / name, weights)


@pytest.fixture
def make_lineage():
    return fake_lineage
