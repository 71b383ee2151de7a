"""A fairness column that is missing from the data, or holds one group, stops `keepfit data check` and
`keepfit fit` before any work: exit code 3 (DataError), the fix in the message, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from keepfit.train.testing import sentiment_frame, write_tiny_project

KEEPFIT = Path(sys.executable).parent / "keepfit"


def _keepfit(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200", "HF_HUB_OFFLINE": "1", "MLFLOW_DISABLE_TELEMETRY": "true",
           "DO_NOT_TRACK": "1"}
    return subprocess.run([str(KEEPFIT), *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


@pytest.fixture
def project(tiny_model, tmp_path) -> Path:
    config = write_tiny_project(tmp_path, tiny_model, rows=120)
    frame = sentiment_frame(120, 1)
    frame["region"] = np.where(np.arange(120) % 3 == 0, "south", "north")
    frame["country"] = "de"
    frame.to_csv(tmp_path / "rows.csv", index=False)
    return config


def _refused(done: subprocess.CompletedProcess, *needles: str) -> None:
    out = done.stdout + done.stderr
    assert done.returncode == 3, out
    assert "Traceback" not in out
    for needle in needles:
        assert needle in out, out


@pytest.mark.parametrize(("column", "needles"), [
    ("regoin", ("evaluate.fairness_columns is 'regoin', which is not a column", "did you mean 'region'")),
    ("country", ("fairness column 'country' holds one group only", "remove 'country' from evaluate.fairness_columns")),
])
def test_data_check_refuses_a_missing_or_single_group_column(project, column, needles):
    done = _keepfit("data", "check", "rows.csv", "--config", str(project),
                    "--set", f"evaluate.fairness_columns=[{column}]", cwd=project.parent)
    _refused(done, *needles)


def test_fit_refuses_before_training(project):
    done = _keepfit("fit", "--config", str(project), "--quiet", "--set", "evaluate.fairness_columns=[country]",
                    cwd=project.parent)
    _refused(done, "fairness column 'country' holds one group only")
    assert not list((project.parent / ".keepfit" / "runs").glob("*-fit-*"))  # no run was started
    # a snapshot made before the column was configured does not carry it
    made = _keepfit("data", "snapshot", "--config", str(project), cwd=project.parent)
    assert made.returncode == 0, made.stdout + made.stderr
    done = _keepfit("fit", "--config", str(project), "--quiet", "--snapshot", "HEAD",
                    "--set", "evaluate.fairness_columns=[region]", cwd=project.parent)
    _refused(done, "names 'region'", "run `keepfit data snapshot` again")
