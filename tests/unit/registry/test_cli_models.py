"""`keepfit models ...` through typer's CliRunner (and once through the real entry point)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient
from typer.testing import CliRunner

from keepfit.cli import app
from keepfit.config import load_config
from keepfit.errors import RegistryError
from keepfit.registry import Registry
from keepfit.store import Store

runner = CliRunner()


@pytest.fixture
def project(store_dir: Path, tmp_path: Path, make_model, make_lineage) -> Path:
    """A keepfit.yaml naming the module's store, with versions 1 (champion), 2 and 3 (rejected challenger)."""
    path = tmp_path / "keepfit.yaml"
    name = f"cli-{uuid.uuid4().hex[:8]}"
    path.write_text(yaml.safe_dump({"store": str(store_dir), "registry": {"model_name": name}}))
    registry = Registry.open(load_config(path))
    registry.register(make_model("a"), metrics={"accuracy": 0.81}, lineage=make_lineage("snap-one"),
                      alias="champion")
    registry.register(make_model("b"), metrics={"accuracy": 0.86},
                      lineage=make_lineage("snap-two", parent="1"))
    registry.register(make_model("c"), metrics={"accuracy": 0.70},
                      lineage=make_lineage("snap-three", parent="1"), alias="challenger")
    registry.set_challenger("3", reasons=["negative flip rate 4.0% > 2.0%"])
    return path


def _aliases(path: Path) -> dict[str, str]:
    config = load_config(path)
    uri = Store.at(config.store).default_registry_uri
    model = MlflowClient(tracking_uri=uri, registry_uri=uri).get_registered_model(config.registry.model_name)
    return {alias: str(version) for alias, version in model.aliases.items()}


def _invoke(*args: str):
    return runner.invoke(app, list(args), env={"COLUMNS": "200"})


def test_list_and_show(project):
    result = _invoke("models", "list", "--config", str(project))
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if "snap-" in line]
    assert len(lines) == 3
    assert "champion" in lines[0] and "0.8100" in lines[0]
    assert "candidate" in lines[1] and "v1" in lines[1]
    assert "challenger" in lines[2] and "rejected" in lines[2]

    shown = _invoke("models", "show", "v3", "--config", str(project))
    assert shown.exit_code == 0, shown.output
    assert "snap-three" in shown.output and "negative flip rate 4.0% > 2.0%" in shown.output
    assert "billing" in shown.output and "0.7000" in shown.output


def test_promote_history_and_rollback_move_the_mlflow_alias(project):
    why = "better on the new intents"
    result = _invoke("models", "promote", "2", "--reason", why, "--config", str(project))
    assert result.exit_code == 0, result.output
    assert "Promoted version 2" in result.output and "was version 1" in result.output
    assert _aliases(project) == {"champion": "2", "challenger": "3"}

    history = _invoke("models", "history", "--config", str(project))
    assert history.exit_code == 0
    rows = [line for line in history.output.splitlines() if "promote" in line or "challenger" in line]
    assert "better on the new intents" in rows[0]  # newest first

    back = _invoke("models", "rollback", "--reason", "support complaints", "--config", str(project))
    assert back.exit_code == 0, back.output
    assert "version 1 is champion again" in back.output
    assert _aliases(project) == {"champion": "1", "challenger": "3"}
    again = _invoke("models", "rollback", "--reason", "again", "--config", str(project))
    assert isinstance(again.exception, RegistryError) and "no previous champion" in str(again.exception)


def test_promoting_a_rejected_version_needs_force_and_is_recorded(project):
    refused = _invoke("models", "promote", "challenger", "--reason", "ship it", "--config", str(project))
    assert isinstance(refused.exception, RegistryError)
    assert "--force" in str(refused.exception) and "negative flip rate" in str(refused.exception)
    assert _aliases(project)["champion"] == "1"
    forced = _invoke("models", "promote", "challenger", "--reason", "ship it", "--force",
                     "--config", str(project))
    assert forced.exit_code == 0, forced.output
    assert _aliases(project) == {"champion": "3"}
    assert Registry.open(load_config(project)).get("3").promotion["forced"] is True


def test_empty_registry_says_what_to_do(store_dir, tmp_path):
    path = tmp_path / "keepfit.yaml"
    name = f"e-{uuid.uuid4().hex[:8]}"
    path.write_text(yaml.safe_dump({"store": str(store_dir), "registry": {"model_name": name}}))
    listed = _invoke("models", "list", "--config", str(path))
    assert listed.exit_code == 0 and "Run `keepfit fit` to register one" in listed.output
    history = _invoke("models", "history", "--config", str(path))
    assert history.exit_code == 0 and "No promotions or rollbacks recorded yet" in history.output


def test_unknown_version_lists_the_versions(project):
    result = _invoke("models", "show", "v9", "--config", str(project))
    assert isinstance(result.exception, RegistryError)
    assert "Versions that exist: 1, 2, 3" in str(result.exception)


def test_real_entry_point_is_quiet_and_exits_with_the_registry_code(tmp_path):
    """A fresh store through the installed `keepfit` command: no MLflow/alembic log lines, one clear error."""
    path = tmp_path / "keepfit.yaml"
    path.write_text(yaml.safe_dump({"store": str(tmp_path / ".keepfit"), "registry": {"model_name": "fresh"}}))
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1", "COLUMNS": "200"}
    code = "from keepfit.cli import main; main()"
    done = subprocess.run([sys.executable, "-c", code, "models", "show", "champion", "--config", str(path)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == RegistryError.exit_code
    assert done.stderr.strip().startswith("RegistryError:"), done.stderr
    assert "keepfit fit" in done.stderr
    assert "INFO" not in done.stderr and "alembic" not in done.stderr.lower()
    assert "Traceback" not in done.stderr


def test_init_names_the_model_so_a_renamed_project_keeps_its_versions(tmp_path, make_model, make_lineage):
    project = tmp_path / "Support Bot!"
    project.mkdir()
    rows = [f"please refund order {i},refund" if i % 2 else f"where is parcel {i},shipping" for i in range(40)]
    (project / "train.csv").write_text("text,label\n" + "\n".join(rows) + "\n")
    made = _invoke("init", str(project / "train.csv"), "--out", str(project / "keepfit.yaml"))
    assert made.exit_code == 0, made.output
    assert "registered as Support Bot (registry.model_name)" in made.output
    config = load_config(project / "keepfit.yaml")
    assert config.registry.model_name == "Support Bot"
    Registry.open(config).register(make_model("a"), metrics={"accuracy": 0.9}, lineage=make_lineage(),
                                   alias="champion")

    renamed = project.rename(tmp_path / "bot-v2")
    listed = _invoke("models", "list", "--config", str(renamed / "keepfit.yaml"))
    assert listed.exit_code == 0, listed.output
    (line,) = [line for line in listed.output.splitlines() if "snap-aaaa" in line]
    assert "champion" in line
    registry = Registry.open(load_config(renamed / "keepfit.yaml"))
    assert registry.name == "Support Bot"
    assert registry.model_path("champion").is_relative_to(renamed)


def test_a_config_without_a_model_name_falls_back_to_the_folder_with_a_warning(tmp_path, caplog):
    from keepfit.config import KeepfitConfig
    from keepfit.registry.mlflow_registry import model_name_for

    with caplog.at_level("WARNING", logger="keepfit.registry.mlflow_registry"):
        assert model_name_for(KeepfitConfig(store=str(tmp_path / "shop" / ".keepfit"))) == "shop"
    (record,) = caplog.records
    assert "registry.model_name is not set" in record.getMessage()
    assert "model_name: shop" in record.getMessage()
