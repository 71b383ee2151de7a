"""Usage mistakes through the real entry point: the usage line, the problem, a hint, exit 2. A genuine bug
still says it is a bug and exits 70."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from keepfit.cli import main
from keepfit.cli._common import EXIT_CODES
from keepfit.errors import GateRejected, LockBusy

KEEPFIT = Path(sys.executable).with_name("keepfit")


def _keepfit(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200", "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1"}
    return subprocess.run([str(KEEPFIT), *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=120)


@pytest.mark.parametrize(
    ("args", "usage", "problem", "hint"),
    [
        # click words it "No such option '--bogus'.", typer >= 0.21's own copy "No such option: --bogus"
        (["evaluate", "--bogus"], "Usage: keepfit evaluate [OPTIONS]", "No such option",
         "Try 'keepfit evaluate --help' for help."),
        (["nosuchcmd"], "Usage: keepfit [OPTIONS] COMMAND [ARGS]...", "No such command 'nosuchcmd'.",
         "Try 'keepfit --help' for help."),
        (["models", "promote", "9"], "Usage: keepfit models promote [OPTIONS]", "Missing option '--reason'",
         "Try 'keepfit models promote --help' for help."),
        (["evalute"], "Usage: keepfit [OPTIONS] COMMAND [ARGS]...", "Did you mean 'evaluate'?",
         "Try 'keepfit --help' for help."),
        (["auto"], "Usage: keepfit auto [OPTIONS]", "Missing option '--budget'", "Try 'keepfit auto --help' for help."),
        (["tune", "--trials", "0"], "Usage: keepfit tune [OPTIONS]", "Invalid value for '--trials'",
         "Try 'keepfit tune --help' for help."),
    ],
)
def test_usage_mistakes_show_the_usage_and_exit_2(tmp_path, args, usage, problem, hint):
    done = _keepfit(*args, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert lines[0].startswith(usage), done.stderr
    assert hint in lines and problem in done.stderr
    assert "Internal error" not in done.stderr and "bug" not in done.stderr
    assert done.stdout == ""


def test_help_exits_0_and_lists_every_exit_code(tmp_path):
    done = _keepfit("--help", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = [line.strip() for line in done.stdout.splitlines()]
    for code, meaning in EXIT_CODES:
        assert f"{code:>3}  {meaning}".strip() in lines, (code, done.stdout)
    assert f"{GateRejected.exit_code}  the gate rejected the candidate (it stays challenger)" in lines
    assert f"{LockBusy.exit_code}  another keepfit process holds the project lock" in lines


def _run_main(monkeypatch, *args: str) -> int:
    monkeypatch.setattr(sys, "argv", ["keepfit", *args])
    with pytest.raises(SystemExit) as done:
        main()
    return done.value.code


def test_an_unexpected_exception_is_reported_as_a_bug(monkeypatch, tmp_path, capsys):
    import keepfit.pipeline

    def broken(*args, **kwargs):
        raise ZeroDivisionError("the scale [w] was zero")

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("KEEPFIT_DEBUG", raising=False)
    monkeypatch.setattr(keepfit.pipeline, "update", broken)
    assert _run_main(monkeypatch, "update", "--data", "new.csv") == 70
    err = capsys.readouterr().err
    assert "Internal error (ZeroDivisionError): the scale [w] was zero" in err  # brackets are not markup
    assert "This is a bug in keepfit" in err and "--debug" in err

    monkeypatch.setattr(sys, "argv", ["keepfit", "--debug", "update", "--data", "new.csv"])
    with pytest.raises(ZeroDivisionError):  # --debug shows the real traceback
        main()


@pytest.mark.parametrize("budget", ["10", "5s", "ten minutes"])
def test_a_budget_keepfit_cannot_read_is_one_clear_error(tmp_path, budget):
    done = _keepfit("auto", "--budget", budget, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert budget in done.stderr and ("unit" in done.stderr or "10 seconds" in done.stderr)
    assert "Traceback" not in done.stderr and "Internal error" not in done.stderr


def test_an_unknown_demo_task_names_the_ones_there_are(tmp_path):
    done = _keepfit("demo", "--task", "images", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "--task must be classification, generation or image, got 'images' (did you mean 'image'?)" in (
        done.stderr + done.stdout)
    assert not (tmp_path / "keepfit-demo").exists()
