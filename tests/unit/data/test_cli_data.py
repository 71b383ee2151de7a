"""`keepfit data check|snapshot|list|diff` through the real typer app."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from keepfit.cli import app
from keepfit.data.demo_data import write_demo_files
from keepfit.errors import DataError

runner = CliRunner()


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    files = write_demo_files(tmp_path / "data", small=True)
    config = tmp_path / "keepfit.yaml"
    config.write_text(
        "store: .keepfit\n"
        "data:\n  train: data/week1.csv\n  label_column: intent\n  group_column: customer_id\n"
        "  slice_columns: [channel]\n"
    )
    return tmp_path, files, config


def test_data_check_without_a_config_infers_columns_and_writes_outputs(project):
    root, files, config = project
    config.unlink()
    out = root / "check-out"
    result = runner.invoke(app, ["data", "check", str(files.week1), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"{files.week1_rows:,} rows in" in result.output and "(holds)" in result.output
    assert "conflicting_duplicates" in result.output
    report = json.loads((out / "report.json").read_text())
    assert report["found_counts"]["exact_duplicates"] == files.planted_week1["exact_duplicates"]
    assert (out / "quarantine.csv").read_text().startswith("row,source,reason,detail")
    page = (out / "report.html").read_text()
    assert "<html>" in page and "Quality findings" in page
    assert "http" not in page and "<script" not in page and "<link" not in page  # opens offline


def test_data_check_with_explicit_columns(project):
    root, files, config = project
    result = runner.invoke(
        app,
        [
            "data",
            "check",
            str(files.week1),
            "--config",
            str(config),
            "--label-column",
            "intent",
            "--text-column",
            "text",
        ],
    )
    assert result.exit_code == 0, result.output
    assert (root / ".keepfit" / "checks" / "week1" / "report.json").exists()


def test_snapshot_list_and_diff(project):
    root, files, config = project
    first = runner.invoke(app, ["data", "snapshot", "--config", str(config)])
    assert first.exit_code == 0, first.output
    assert "snapshot " in first.output and "report.html" in first.output
    again = runner.invoke(app, ["data", "snapshot", "--config", str(config)])
    first_id = first.output.split("snapshot ")[-1].split()[0]
    assert first_id in again.output  # same data, same id
    second = runner.invoke(
        app, ["data", "snapshot", "--config", str(config), "--set", "data.train=data/week2.csv"]
    )
    assert second.exit_code == 0, second.output
    listed = runner.invoke(app, ["data", "list", "--config", str(config)])
    assert listed.exit_code == 0 and "(HEAD)" in listed.output and first_id[:12] in listed.output
    diff = runner.invoke(app, ["data", "diff", "HEAD~1", "HEAD", "--config", str(config)])
    assert diff.exit_code == 0, diff.output
    assert "new labels: crypto_payment" in diff.output and "relabelled" in diff.output
    as_json = runner.invoke(app, ["data", "diff", first_id[:10], "HEAD", "--config", str(config), "--json"])
    assert json.loads(as_json.output)["labels_new"] == ["crypto_payment"]


def test_diff_without_snapshots_is_a_clear_error(project):
    _, _, config = project
    result = runner.invoke(app, ["data", "diff", "--config", str(config)])
    assert result.exit_code != 0
    assert isinstance(result.exception, DataError) and "keepfit data snapshot" in str(result.exception)
