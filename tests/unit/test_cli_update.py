"""`keepfit update` and `keepfit compare` for automation: exit codes and `--json` (one JSON document on stdout,
nothing else), through the real entry point with the pipeline replaced by a fake result."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

import keepfit.pipeline
from keepfit.cli import main
from keepfit.errors import DataError, GateRejected, RegistryError
from keepfit.pipeline import CompareResult, UpdateResult

FLIPS = "negative flip rate on the earlier test set 4.1% > 2.0% (12 of 293 previously right)"


def _rule(name, group, passed, value, threshold, detail, skipped=False):
    return SimpleNamespace(name=name, group=group, passed=passed, value=value, threshold=threshold,
                           detail=detail, skipped=skipped)


def _decision(passed: bool):
    rules = [
        _rule("non_inferiority", "earlier test set", True, -0.004, -0.02, "delta -0.4 points, lower end -1.1"),
        _rule("max_negative_flip_rate", "earlier test set", passed, 0.041 if not passed else 0.01, 0.02,
              FLIPS if not passed else "1.0% within 2.0%"),
        _rule("new_label_recall", "new test set", True, float("nan"), 0.5, "no new labels", skipped=True),
    ]
    return SimpleNamespace(passed=passed, group="all", rules=rules, reasons=[] if passed else [FLIPS])


def _result(tmp_path: Path, *, passed: bool, promoted: bool, forced: bool = False, **extra) -> UpdateResult:
    decision = _decision(passed)
    return UpdateResult(
        snapshot_id="snapabc123", diff=None, candidate_version="5",
        champion_version="5" if promoted else "4", promoted=promoted, forced=forced,
        reasons=list(decision.reasons), report=tmp_path / "comparison" / "compare.html", run_dir=tmp_path,
        decision=decision, timings={"train_s": 12.5, "total_s": 20.0}, **extra,
    )


@pytest.fixture
def run(monkeypatch, tmp_path, capsys):
    """``run(fake_update, *args)`` -> (exit code, stdout, stderr) of `keepfit update ...` with ``fake_update``."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "200")

    def invoke(fake, *args: str, target: str = "update"):
        def noisy(*a, **kw):
            print("library noise on stdout")  # what a chatty dependency might do
            if isinstance(fake, Exception):
                raise fake
            return fake

        monkeypatch.setattr(keepfit.pipeline, target, noisy)
        monkeypatch.setattr(sys, "argv", ["keepfit", *args])
        with pytest.raises(SystemExit) as done:
            main()
        out = capsys.readouterr()
        return done.value.code, out.out, out.err

    return invoke


def test_rejected_update_prints_the_table_and_reasons_and_exits_6(run, tmp_path):
    code, out, _ = run(_result(tmp_path, passed=False, promoted=False), "update", "--data", "new.csv")
    assert code == GateRejected.exit_code == 6
    assert "max_negative_flip_rate" in out and "FAIL" in out and "earlier test set" in out
    assert "Rejected: version 5 stays challenger; champion is still version 4." in out
    assert f"  - {FLIPS}" in out


def test_promoted_update_exits_0(run, tmp_path):
    code, out, _ = run(_result(tmp_path, passed=True, promoted=True), "update", "--data", "new.csv")
    assert code == 0 and "Promoted version 5 to champion." in out


def test_json_update_prints_only_the_document_and_still_exits_6(run, tmp_path):
    fake = _result(tmp_path, passed=False, promoted=False, pending=True, warnings=["3 classes too small"])
    code, out, err = run(fake, "update", "--data", "new.csv", "--json")
    assert code == 6
    doc = json.loads(out)  # the whole of stdout is one JSON document
    assert doc["decision"] == "rejected" and doc["promoted"] is False and doc["forced"] is False
    assert (doc["candidate_version"], doc["champion_version"], doc["judged_against"]) == ("5", "4", "4")
    assert doc["exit_code"] == 6 and doc["reasons"] == [FLIPS]
    assert doc["snapshot_id"] == "snapabc123" and doc["pending"] is True
    assert doc["warnings"] == ["3 classes too small"]
    assert doc["report"] == str(tmp_path / "comparison" / "compare.html")
    assert doc["timings"] == {"train_s": 12.5, "total_s": 20.0}
    flips = doc["rules"][1]
    assert flips == {"name": "max_negative_flip_rate", "group": "earlier test set", "passed": False,
                     "skipped": False, "value": 0.041, "threshold": 0.02, "detail": FLIPS}
    assert doc["rules"][2]["value"] is None and doc["rules"][2]["skipped"] is True  # NaN is not JSON
    assert "library noise on stdout" in err and "Rejected" in err and "max_negative_flip_rate" in err


def test_json_forced_promotion_exits_0(run, tmp_path):
    code, out, _ = run(_result(tmp_path, passed=False, promoted=True, forced=True), "update", "-d", "x.csv",
                       "--force", "--json")
    doc = json.loads(out)
    assert code == 0 and doc["decision"] == "rejected" and doc["promoted"] is True and doc["forced"] is True
    assert doc["champion_version"] == "5"


def test_gate_passed_but_champion_moved_exits_with_the_registry_code(run, tmp_path):
    code, out, _ = run(_result(tmp_path, passed=True, promoted=False), "update", "-d", "x.csv", "--json")
    doc = json.loads(out)
    assert code == RegistryError.exit_code and doc["decision"] == "passed" and doc["promoted"] is False


def test_json_error_is_a_document_too(run):
    failure = DataError("new.csv brings nothing to train on. Add new labelled rows.")
    code, out, err = run(failure, "update", "--data", "new.csv", "--json")
    assert code == DataError.exit_code
    doc = json.loads(out)
    assert doc["error"] == {"type": "DataError", "message": str(failure), "exit_code": 3}
    assert "DataError: new.csv brings nothing to train on" in err


def test_json_compare_exits_0_whatever_the_verdict(run, tmp_path):
    fake = CompareResult(comparison=None, decision=_decision(False), report=tmp_path / "compare.html")
    code, out, err = run(fake, "compare", "4", "5", "--json", target="compare")
    assert code == 0
    doc = json.loads(out)
    assert (doc["command"], doc["a"], doc["b"], doc["decision"]) == ("compare", "4", "5", "rejected")
    assert [r["name"] for r in doc["rules"]] == ["non_inferiority", "max_negative_flip_rate", "new_label_recall"]
    assert "would be rejected" in err
