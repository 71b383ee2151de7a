"""`write_tune_report`: tune.json plus a self-contained tune.html for one hyper-parameter study.

The page shows how the configuration was chosen (the selection note first, so nobody mistakes a validation
score for a test score), the study's settings, Optuna's own matplotlib figures, every trial and, for
``keepfit auto``, the leaderboard of candidates. Figures that cannot be drawn are replaced by a sentence saying
why; a report is never lost to a plotting problem.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # reports are written headless; set before pyplot is first imported

import matplotlib.pyplot as plt  # noqa: E402
import optuna  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from optuna.trial import FrozenTrial, TrialState  # noqa: E402
from optuna.visualization import matplotlib as optuna_plots  # noqa: E402

from keepfit._io import atomic_write_text  # noqa: E402
from keepfit.evaluation._html import esc, figure, page, table  # noqa: E402
from keepfit.evaluation._json import jsonable  # noqa: E402
from keepfit.evaluation.figures import to_data_uri  # noqa: E402

__all__ = ["write_tune_report", "TUNE_HTML", "TUNE_JSON", "FAILURE_ATTR", "SEED_ATTR"]

TUNE_HTML = "tune.html"
TUNE_JSON = "tune.json"
FAILURE_ATTR = "keepfit.failure"  # user attr: why a trial failed, set by the objective before it raises
SEED_ATTR = "keepfit.seed"  # user attr: the seed a trial trained with

log = logging.getLogger("keepfit.tune")

# a check returns None when the figure can be drawn, else the sentence the report shows in its place
_Check = Callable[[optuna.Study], str | None]
_Plot = Callable[[optuna.Study], Any]


def write_tune_report(
    study: optuna.Study,
    out_dir: Path,
    *,
    title: str,
    summary: dict[str, Any],
    leaderboard: list[dict[str, Any]] | None = None,
) -> Path:
    """Write ``out_dir/tune.html`` and ``out_dir/tune.json`` (each atomically); return the HTML path.

    ``summary`` is filled by the caller (study name, masked storage URL, metric and direction, sampler, pruner,
    search space, budget, wall seconds, best trial and value, best params, ``test`` metrics or None, and
    ``selection_note``); it is shown as given, dicts as compact JSON. ``leaderboard`` (``keepfit auto``) is one
    dict per candidate, its keys the columns in the order of the first dict. Durations are in seconds.
    tune.json holds ``{"summary", "trials", "leaderboard"}`` as strict JSON (NaN and inf become null; values
    JSON does not know, such as paths, become strings).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = _trial_rows(study)
    data = {"summary": summary, "trials": rows, "leaderboard": leaderboard or []}
    atomic_write_text(
        out_dir / TUNE_JSON,
        json.dumps(jsonable(data), indent=2, allow_nan=False, ensure_ascii=False, default=str),
    )
    sections = [
        _selection_section(summary),
        _summary_section(summary),
        _figures_section(study),
        _trials_section(rows),
    ]
    if leaderboard:
        sections.append(_leaderboard_section(leaderboard))
    return atomic_write_text(out_dir / TUNE_HTML, page(title, [s for s in sections if s]))


def _trial_rows(study: optuna.Study) -> list[dict[str, Any]]:
    """One dict per trial, in trial order: number, state, value, params, duration_s, last_step, failure, seed.

    ``value`` is what Optuna stored (for a pruned trial, its last reported intermediate value); ``last_step``
    is set for pruned trials only; ``failure`` is the ``keepfit.failure`` user attr ("" when absent); ``seed``
    is the ``keepfit.seed`` user attr (None when absent).
    """
    return [_trial_row(t) for t in study.get_trials(deepcopy=False)]


def _trial_row(t: FrozenTrial) -> dict[str, Any]:
    return {
        "number": t.number,
        "state": t.state.name,
        "value": t.value,
        "params": dict(t.params),
        "duration_s": t.duration.total_seconds() if t.duration is not None else None,
        "last_step": t.last_step if t.state == TrialState.PRUNED else None,
        "failure": str(t.user_attrs.get(FAILURE_ATTR, "")),
        "seed": t.user_attrs.get(SEED_ATTR),
    }


def _selection_section(summary: dict[str, Any]) -> str:
    """The selection note, bold, before anything else: it says which split chose the configuration."""
    note = summary.get("selection_note")
    return f"<p><strong>{esc(note)}</strong></p>" if note else ""


def _summary_section(summary: dict[str, Any]) -> str:
    rows = [[key, _cell(value)] for key, value in summary.items() if key != "selection_note"]
    return "<h2>Study</h2>" + table(["setting", "value"], rows, numeric_from=99)


def _cell(value: Any) -> str:
    """A table cell's text: numbers at 4 significant digits, containers as compact JSON, None as "none"."""
    if value is None:
        return "none"
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(jsonable(value), separators=(",", ":"), ensure_ascii=False, default=str)
    if isinstance(value, float):
        return f"{value:.4g}"  # significant digits, so a learning rate of 3e-05 does not print as 0.0000
    return str(value)


def _trials_section(rows: list[dict[str, Any]]) -> str:
    params = list(dict.fromkeys(name for row in rows for name in row["params"]))
    with_seed = any(row["seed"] is not None for row in rows)
    header = ["trial", "state", "value", *params, "seconds", "last step", "failure"] + (["seed"] if with_seed else [])
    body = []
    for row in rows:
        cells = [row["number"], row["state"], _trial_cell(row["value"])]
        cells += [_trial_cell(row["params"].get(name)) for name in params]
        cells += [_trial_cell(row["duration_s"]), _trial_cell(row["last_step"]), row["failure"]]
        if with_seed:
            cells.append(_trial_cell(row["seed"]))
        body.append(cells)
    return (
        f"<h2>Trials ({len(rows)})</h2>"
        '<p class="note">For a pruned trial, value is the last intermediate value it reported, at the step shown.'
        "</p>" + table(header, body, numeric_from=99)
    )


def _trial_cell(value: Any) -> str:
    """``_cell`` of a trial's value, blank where the trial has none (not reached, not suggested, no seed)."""
    return "" if value is None else _cell(value)


def _leaderboard_section(leaderboard: list[dict[str, Any]]) -> str:
    keys = list(dict.fromkeys(key for entry in leaderboard for key in entry))
    body = [[_cell(entry[key]) if key in entry else "" for key in keys] for entry in leaderboard]
    return "<h2>Leaderboard</h2>" + table(keys, body, numeric_from=99)


def _figures_section(study: optuna.Study) -> str:
    parts = [_figure_or_reason(study, plot, check, caption) for plot, check, caption in _FIGURES]
    return "<h2>Figures</h2>" + "".join(parts)


def _figure_or_reason(study: optuna.Study, plot: _Plot, check: _Check, caption: str) -> str:
    """The figure as an embedded PNG, or one sentence saying why it is not there."""
    reason = check(study)
    if reason is None:
        try:
            return figure(_png_uri(study, plot), caption)
        except Exception as exc:  # a plotting bug must not cost the report; the page says what happened
            log.warning("tune report: %s could not be drawn: %s", caption, exc)
            reason = f"{caption} could not be drawn: {type(exc).__name__}: {exc}"
    return f'<p class="note">{esc(reason)}</p>'


def _png_uri(study: optuna.Study, plot: _Plot) -> str:
    """One Optuna plot as a PNG data URI; every figure it opened is closed and matplotlib's style is left as it
    was, also when it raises."""
    before = set(plt.get_fignums())
    try:
        # Optuna's plots switch the global style to ggplot; rc_context puts it back for every later figure
        with matplotlib.rc_context(), warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return to_data_uri(_figure_of(plot(study)))
    finally:
        for number in set(plt.get_fignums()) - before:
            plt.close(number)


def _figure_of(axes: Any) -> Figure:
    """The figure behind what an Optuna plot returns (one Axes, or an array of them)."""
    first = axes.flat[0] if hasattr(axes, "flat") else axes
    return first.figure


def _completed(study: optuna.Study) -> list[FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def _history_check(study: optuna.Study) -> str | None:
    return None if _completed(study) else "No trial completed, so there is no optimisation history to draw."


def _importance_check(study: optuna.Study) -> str | None:
    completed = _completed(study)
    if len(completed) < 2:
        return f"Parameter importances need at least 2 completed trials; this study has {len(completed)}."
    names = {name for t in completed for name in t.params}
    if not any(len({t.params.get(name) for t in completed}) > 1 for name in names):
        return "Parameter importances need a parameter whose value varies across completed trials; none does."
    return None


def _parallel_check(study: optuna.Study) -> str | None:
    if any(t.params for t in _completed(study)):
        return None
    return "Parallel coordinates need a completed trial with parameters; there is none."


def _intermediate_check(study: optuna.Study) -> str | None:
    if any(t.intermediate_values for t in study.get_trials(deepcopy=False)):
        return None
    return "No trial reported intermediate values, so there are no learning curves to draw."


_FIGURES: list[tuple[_Plot, _Check, str]] = [
    (optuna_plots.plot_optimization_history, _history_check, "Optimisation history: value per trial and best so far."),
    (optuna_plots.plot_param_importances, _importance_check, "Parameter importances over the completed trials."),
    (optuna_plots.plot_parallel_coordinate, _parallel_check, "Parallel coordinates of the completed trials."),
    (optuna_plots.plot_intermediate_values, _intermediate_check, "Intermediate values reported per trial."),
]
