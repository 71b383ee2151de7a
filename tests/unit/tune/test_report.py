"""The tune report: Optuna's figures embedded, one row per trial, the selection note, strict JSON, escaping."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import matplotlib.pyplot as plt
import optuna
import pytest

from keepfit.tune import report
from keepfit.tune.report import FAILURE_ATTR, SEED_ATTR, write_tune_report

NOTE = "Trials were chosen on validation only; the test split was scored once, for the chosen configuration."


@pytest.fixture(autouse=True)
def _quiet_optuna():
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def _objective(trial: optuna.Trial) -> float:
    """Two params, three reported steps; every third trial pruned after step 1, trial 4 fails."""
    lr = trial.suggest_float("lr", 1e-5, 1e-2, log=True)
    layers = trial.suggest_int("layers", 1, 4)
    trial.set_user_attr(SEED_ATTR, 100 + trial.number)
    for step in range(3):
        trial.report(layers * 0.1 + step * 0.05 - lr, step)
        if step == 1 and trial.number % 3 == 2:
            raise optuna.TrialPruned()
    if trial.number == 4:
        trial.set_user_attr(FAILURE_ATTR, "CUDA out of memory at batch 3")
        raise ValueError("out of memory")
    return layers * 0.1 - lr


def _study(n_trials: int = 12) -> optuna.Study:
    study = optuna.create_study(storage=None, direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(_objective, n_trials=n_trials, catch=(ValueError,))
    return study


def _summary(study: optuna.Study, **extra) -> dict:
    best = study.best_trial
    return {
        "study": study.study_name,
        "storage": "postgresql://keepfit:***@127.0.0.1:5432/keepfit",
        "metric": "accuracy",
        "direction": "maximize",
        "space": {"lr": {"low": 1e-5, "high": 1e-2, "log": True}, "layers": {"low": 1, "high": 4}},
        "best_trial": best.number,
        "best_value": best.value,
        "best_params": best.params,
        "test": {"accuracy": 0.91, "macro_f1": float("nan")},
        "selection_note": NOTE,
        **extra,
    }


def _table(html: str, heading: str) -> tuple[list[str], list[list[str]]]:
    """Header and body cells of the first table after the heading that starts with ``heading``."""
    section = html.split(f"<h2>{heading}", 1)[1].split("</table>", 1)[0]
    head, body = section.split("</thead>", 1)
    rows = re.findall(r"<tr>(.*?)</tr>", body)
    return re.findall(r"<th>(.*?)</th>", head), [re.findall(r"<td>(.*?)</td>", row) for row in rows]


def test_report_has_every_figure_every_trial_and_the_note(tmp_path: Path):
    study = _study()
    style, open_before = dict(plt.rcParams), plt.get_fignums()  # another test may have left one open
    states = [t.state.name for t in study.trials]
    assert {"COMPLETE", "PRUNED", "FAIL"} <= set(states)  # the fixture exercises every branch
    path = write_tune_report(study, tmp_path, title="tune intents", summary=_summary(study))

    html = path.read_text(encoding="utf-8")
    assert path == tmp_path / "tune.html"
    assert html.count('<img src="data:image/png;base64,') == 4
    assert "could not be drawn" not in html
    assert html.index(NOTE) < html.index("<h2>Study</h2>") < html.index("<h2>Figures</h2>") < html.index("<h2>Trials")
    assert plt.get_fignums() == open_before  # every figure the report opened is closed
    assert dict(plt.rcParams) == style  # Optuna's ggplot style does not leak into later figures
    header, rows = _table(html, "Trials")
    assert header == ["trial", "state", "value", "lr", "layers", "seconds", "last step", "failure", "seed"]
    table = [dict(zip(header, row, strict=True)) for row in rows]
    assert [(r["trial"], r["state"]) for r in table] == [(str(t.number), t.state.name) for t in study.trials]
    assert [r["seed"] for r in table] == [str(100 + t.number) for t in study.trials]
    failures = ["CUDA out of memory at batch 3" if t.number == 4 else "" for t in study.trials]
    assert [r["failure"] for r in table] == failures
    assert [r["last step"] for r in table] == ["1" if s == "PRUNED" else "" for s in states]
    assert table[0]["layers"] == str(study.trials[0].params["layers"])
    assert table[0]["lr"] == f"{study.trials[0].params['lr']:.4g}"  # not rounded to 0.0000

    data = json.loads((tmp_path / "tune.json").read_text(encoding="utf-8"))
    assert [(r["number"], r["state"]) for r in data["trials"]] == [(t.number, t.state.name) for t in study.trials]
    assert [r["last_step"] for r in data["trials"]] == [1 if s == "PRUNED" else None for s in states]
    assert data["trials"][4]["failure"] == "CUDA out of memory at batch 3" and data["trials"][0]["failure"] == ""
    assert data["trials"][0]["params"] == study.trials[0].params
    assert all(r["duration_s"] >= 0 for r in data["trials"])
    assert data["summary"]["test"] == {"accuracy": 0.91, "macro_f1": None}  # NaN -> null, strict JSON
    assert data["leaderboard"] == []


def test_a_study_without_params_says_why_figures_are_missing(tmp_path: Path):
    study = optuna.create_study(storage=None)
    study.optimize(lambda trial: 0.5, n_trials=1)
    summary = {"study": "one", "best_params": {}, "test": None, "selection_note": NOTE}
    html = write_tune_report(study, tmp_path, title="one trial", summary=summary).read_text(encoding="utf-8")

    assert html.count("<img") == 1  # the optimisation history can be drawn from one completed trial
    assert "Parameter importances need at least 2 completed trials; this study has 1." in html
    assert "Parallel coordinates need a completed trial with parameters" in html
    assert "No trial reported intermediate values" in html
    assert len(_table(html, "Trials")[1]) == 1
    assert json.loads((tmp_path / "tune.json").read_text(encoding="utf-8"))["summary"]["test"] is None


def test_importances_need_a_parameter_that_varies(tmp_path: Path):
    study = optuna.create_study(storage=None)
    study.optimize(lambda trial: trial.suggest_categorical("head", ["linear"]) and 0.5, n_trials=3)
    html = write_tune_report(study, tmp_path, title="fixed", summary={}).read_text(encoding="utf-8")
    assert "need a parameter whose value varies" in html
    assert html.count("<img") == 2  # history and parallel coordinates


def test_user_strings_are_escaped(tmp_path: Path):
    study = optuna.create_study(storage=None)
    study.enqueue_trial({"head": "<script>alert(1)</script>"})
    study.optimize(lambda trial: len(trial.suggest_categorical("head", ["<script>alert(1)</script>", "b"])), 4)
    leaderboard = [
        {"candidate": "<script>x</script>", "strategy": "lora", "validation": 0.8, "seconds": 12.5,
         "stopped": "finished"},
        {"candidate": "b", "strategy": "head", "validation": math.inf, "stopped": "halved at rung 2", "extra": 1},
    ]
    summary = {"selection_note": "<b>note</b>", "space": {"head": ["<script>"]}}
    path = write_tune_report(study, tmp_path, title="<script>t</script>", summary=summary, leaderboard=leaderboard)
    html = path.read_text(encoding="utf-8")

    assert "<script>" not in html and "<b>note</b>" not in html
    assert "&lt;script&gt;t&lt;/script&gt;" in html and "&lt;b&gt;note&lt;/b&gt;" in html
    assert _table(html, "Trials")[1][0][3] == "&lt;script&gt;alert(1)&lt;/script&gt;"
    header, rows = _table(html, "Leaderboard")
    assert header == ["candidate", "strategy", "validation", "seconds", "stopped", "extra"]  # first dict's order
    assert rows == [
        ["&lt;script&gt;x&lt;/script&gt;", "lora", "0.8", "12.5", "finished", ""],
        ["b", "head", "inf", "", "halved at rung 2", "1"],
    ]
    data = json.loads((tmp_path / "tune.json").read_text(encoding="utf-8"))
    assert data["leaderboard"][1]["validation"] is None  # inf -> null


def test_a_plot_that_raises_becomes_a_sentence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    def broken(study: optuna.Study):
        plt.subplots()  # opened before failing: must still be closed
        raise RuntimeError("boom")

    figures = list(report._FIGURES)
    figures[2] = (broken, figures[2][1], "Parallel coordinates")
    monkeypatch.setattr(report, "_FIGURES", figures)
    open_before = plt.get_fignums()
    html = write_tune_report(_study(6), tmp_path, title="t", summary={}).read_text(encoding="utf-8")

    assert html.count("<img") == 3
    assert "Parallel coordinates could not be drawn: RuntimeError: boom" in html
    assert plt.get_fignums() == open_before
