"""`write_evaluation_report`: evaluation.json plus a self-contained report.html with embedded figures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from keepfit._io import atomic_write_text
from keepfit.evaluation import figures as fg
from keepfit.evaluation._html import esc, figure, fmt, fmt_interval, page, table, text_cell, thumbnail
from keepfit.evaluation._json import jsonable
from keepfit.evaluation.evaluation import EvaluationResult
from keepfit.evaluation.fairness_report import fairness_section
from keepfit.types import is_generation, is_single_label

__all__ = ["write_evaluation_report", "EVALUATION_JSON", "REPORT_HTML"]

EVALUATION_JSON = "evaluation.json"
REPORT_HTML = "report.html"


def write_evaluation_report(
    result: EvaluationResult,
    out_dir: Path,
    *,
    history: list[dict] | None = None,
    title: str = "keepfit evaluation",
) -> Path:
    """Write ``evaluation.json`` and ``report.html`` into ``out_dir`` (each atomically); return the HTML path.

    ``history`` is the per-epoch (or per-evaluation) training log: dicts with ``epoch`` or ``step`` and
    numeric values; keys containing "loss" are drawn as loss curves, keys starting with "val" as validation
    metrics.
    The HTML embeds its figures as base64 PNG and references nothing outside itself. A text-generation result
    (:func:`keepfit.evaluation.generation.evaluate_generations`) shows its headline, per-field table, slices and
    the wrong answers (prompt, reference, output, score); it has no confusion or calibration.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = result.to_dict()
    if history:
        data["history"] = jsonable(history)
    atomic_write_text(
        out_dir / EVALUATION_JSON, json.dumps(data, indent=2, allow_nan=False, ensure_ascii=False)
    )
    html_text = page(title, _sections(result, history or []))
    return atomic_write_text(out_dir / REPORT_HTML, html_text)


def _sections(result: EvaluationResult, history: list[dict]) -> list[str]:
    generation = is_generation(result.task)
    what = _generation_note(result.settings) if generation else f"{len(result.labels)} labels"
    out = [
        f'<p class="note">{esc(result.task)}, {result.n} examples, {esc(what)}. '
        f"Intervals: {int(result.settings.get('confidence', 0.95) * 100)}% percentile bootstrap, "
        f"{result.settings.get('bootstrap')} resamples, seed {result.settings.get('seed')}.</p>"
    ]
    out.append(
        "<h2>Headline metrics</h2>"
        + table(
            ["metric", "value", "interval"],
            [
                [name, value, fmt_interval(result.intervals.get(name))]
                for name, value in result.headline.items()
                if not name.startswith("open_set.")  # in their own section below
            ],
        )
    )
    figs = _figures(result, history)
    if figs:
        out.append("<h2>Figures</h2>" + "".join(figure(uri, caption) for uri, caption in figs))
    if result.calibration:
        out.append(_calibration_section(result.calibration))
    if result.open_set:
        out.append(_open_set_section(result.open_set))
    if result.per_class and generation:
        out.append(
            "<h2>Per field</h2>"
            '<p class="note">Per top-level field of the JSON references: the share of the rows whose reference '
            "has the field that the answer got right (n: those rows).</p>"
            + table(["field", "accuracy", "n"], [[k, r["accuracy"], r["n"]] for k, r in result.per_class.items()])
        )
    elif result.per_class:
        keys = [
            k
            for k in ("precision", "recall", "f1", "support", "threshold")
            if k in next(iter(result.per_class.values()))
        ]
        out.append(
            "<h2>Per class</h2>"
            + table(
                ["label", *keys], [[name, *[row[k] for k in keys]] for name, row in result.per_class.items()]
            )
        )
    for name, values in result.per_slice.items():
        metrics = [k for k in next(iter(values.values()), {}) if k not in ("n", "interval")]
        unit = " (characters)" if name == "length_chars" else ""
        out.append(
            f"<h2>Slice: {esc(name)}{unit}</h2>"
            + table(
                ["value", "n", *metrics, "interval"],
                [
                    [value, row["n"], *[row[k] for k in metrics], fmt_interval(row.get("interval"))]
                    for value, row in values.items()
                ],
            )
        )
    if result.fairness:
        out.append(fairness_section(result.fairness))
    if result.confused:
        out.append(_confused_section(result))
    if result.errors and generation:
        out.append(_generation_errors(result))
    elif result.errors:
        keys = [k for k in result.errors[0] if k != "index"]
        out.append(
            "<h2>Largest errors</h2>"
            + table(
                ["row", *keys],
                [[e["index"], *[_error_cell(k, e) for k in keys]] for e in result.errors],
                numeric_from=99,
            )
        )
    return out


def _confused_section(result: EvaluationResult) -> str:
    rows = [
        [pair["true"], pair["predicted"], pair["count"],
         ("html", "".join(thumbnail(path, name) for path, name in zip(pair["images"], pair["names"], strict=True)))]
        for pair in result.confused
    ]
    return ("<h2>Most confused classes</h2><p class=\"note\">The class pairs with the most mistakes (truth, what "
            "the model said), with some of the images it got wrong.</p>"
            + table(["true", "predicted", "mistakes", "images"], rows, numeric_from=2))


def _generation_note(settings: dict[str, Any]) -> str:
    match, threshold = settings.get("match"), settings.get("threshold")
    return (
        f"an answer is right when its {match} score is at least {threshold} (accuracy, slices); answers are "
        f"generated up to {settings.get('max_new_tokens')} new tokens; eos_rate is the share that ended "
        "before the limit"
    )


def _generation_errors(result: EvaluationResult) -> str:
    """The wrong answers, lowest score first: the prompt as chat text, the reference and what was generated."""
    rows = [
        [e["index"], text_cell(e.get("prompt", "")), text_cell(e["reference"]), text_cell(e["output"]), e["score"],
         "yes" if e.get("ended") else "no (cut at the limit)"]
        for e in result.errors
    ]
    return (
        f"<h2>Largest errors</h2><p class=\"note\">The {len(rows)} wrong answers with the lowest "
        f"{esc(result.settings.get('match'))} score, lowest first.</p>"
        + table(["row", "prompt", "reference", "output", "score", "ended"], rows, numeric_from=99)
    )


def _error_cell(key: str, error: dict[str, Any]) -> Any:
    if key == "image" and error.get("image"):
        return ("html", thumbnail(error["image"], str(error.get("text", ""))))
    return _cell(error.get(key))


def _cell(value: Any) -> Any:
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return fmt(value) if isinstance(value, float) else value


def _calibration_section(c: dict[str, Any]) -> str:
    rows = [["ECE", c["ece"], c.get("ece_after")], ["NLL (nats)", c["nll"], c.get("nll_after")]]
    temp = c.get("temperature")
    source = c.get("temperature_source")
    if temp is not None and source == "served":
        note = (f"Temperature saved with the model and applied to what it serves: T = {temp:.3f}; "
                "'before' is the raw model.")
    elif temp is not None:
        note = f"Temperature fitted on validation: T = {temp:.3f} (reported only; the model serves 'before')."
    else:
        note = "No temperature: none saved with the model and no validation outputs given."
    return (
        f'<h2>Calibration</h2><p class="note">{esc(note)} Confidence unit: {esc(c["unit"])}; '
        f"{c['n_bins']} equal-width bins.</p>" + table(["", "before", "after temperature"], rows)
    )


def _open_set_section(o: dict[str, Any]) -> str:
    """The threshold and what abstaining costs and catches on these rows."""
    threshold, oos = o.get("abstain_threshold"), o.get("out_of_scope_label")
    notes = [
        f"The model abstains when its top calibrated probability is below {threshold:.4f}"
        if threshold is not None
        else "No abstain threshold saved with the model: it never abstains for low confidence"
    ]
    if oos is not None:
        notes.append(f"predicting the out-of-scope label '{oos}' counts as abstaining")
    if o.get("note"):
        notes.append(o["note"])
    rows = [
        ["in-scope rows answered (share)", o["answered_share"]],
        ["accuracy on answered rows", o["answered_accuracy"]],
    ]
    if "oos_recall" in o:
        rows += [
            ["out-of-scope recall (out-of-scope rows rejected)", o["oos_recall"]],
            ["in-scope accuracy (in-scope rows answered right / in-scope rows)", o["in_scope_accuracy"]],
            ["out-of-scope precision (out-of-scope rows among the rejected)", o["oos_precision"]],
        ]
    rows += [
        ["in-scope rows", o["n_in_scope"]],
        ["out-of-scope rows", o["n_out_of_scope"]],
        ["rows abstained on", o["n_abstained"]],
    ]
    return f'<h2>Open-set</h2><p class="note">{esc("; ".join(notes))}.</p>' + table(["", "value"], rows)


def _figures(result: EvaluationResult, history: list[dict]) -> list[tuple[str, str]]:
    figs: list[tuple[str, str]] = []
    curves = fg.learning_curves(history) if history else None
    if curves is not None:
        figs.append((fg.to_data_uri(curves), "Training loss and validation metrics per evaluation."))
    if is_single_label(result.task) and result.confusion:
        figs.append(
            (
                fg.to_data_uri(fg.confusion_figure(result.confusion, result.labels)),
                "Confusion matrix (rows: true label, columns: predicted label).",
            )
        )
    if result.calibration:
        c = result.calibration
        figs.append(
            (
                fg.to_data_uri(
                    fg.reliability_figure(c["bins"], c.get("bins_after"), c["ece"], c.get("ece_after"))
                ),
                "Reliability diagram: accuracy against confidence per bin.",
            )
        )
    if result.per_class and is_generation(result.task):
        share = {name: row["accuracy"] for name, row in result.per_class.items()}
        figs.append(
            (
                fg.to_data_uri(fg.per_class_figure(share, "Right per field", "share of rows with the field")),
                "Share of rows whose answer has the reference's value, per JSON field, lowest first.",
            )
        )
    elif result.per_class:
        f1 = {name: row["f1"] for name, row in result.per_class.items()}
        figs.append((fg.to_data_uri(fg.per_class_figure(f1)), "F1 per class, lowest first."))
    if result.task == "regression" and result.truth is not None:
        figs.append(
            (
                fg.to_data_uri(
                    fg.regression_figure(np.asarray(result.truth), np.asarray(result.predicted, dtype=float))
                ),
                "Predicted against true values, and residuals.",
            )
        )
    return figs
