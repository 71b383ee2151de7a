"""`write_comparison_report`: compare.json and a self-contained compare.html with plots.

An update's report also shows its interpolation with the champion (BCWI: the curve and the chosen weight) and
where the time went; `rewrite_timings` refreshes the latter once later steps (registration) have run.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt

from keepfit._io import atomic_write_text
from keepfit.evaluation import figures as fg
from keepfit.evaluation._html import esc, figure, fmt_interval, page, table, text_cell
from keepfit.evaluation.fairness_report import fairness_changes
from keepfit.gate.compare import (
    OUTPUT_NEW,
    OUTPUT_OLD,
    Comparison,
    GroupComparison,
    describe_group,
    negative_flip_sentence,
)
from keepfit.gate.rules import GateDecision
from keepfit.types import is_generation

__all__ = ["write_comparison_report", "rewrite_timings", "COMPARE_JSON", "COMPARE_HTML"]

COMPARE_JSON = "compare.json"
COMPARE_HTML = "compare.html"
_LISTED_IN_HTML = 50
_TIMINGS_START, _TIMINGS_END = "<!-- keepfit:timings -->", "<!-- /keepfit:timings -->"
_STEPS = {
    "data_s": "data (merge, snapshot, diff)",
    "screen_s": "screen (the champion scores the batch)",
    "teacher_s": "teacher outputs (distillation)",
    "train_s": "training",
    "interpolate_s": "interpolation with the champion",
    "evaluate_s": "evaluation",
    "compare_s": "comparison with the champion",
    "register_s": "registration",
}


def write_comparison_report(
    comparison: Comparison,
    decision: GateDecision,
    out_dir: Path,
    *,
    title: str = "keepfit comparison",
    interpolation: Mapping[str, Any] | Any | None = None,
    timings: Mapping[str, float] | None = None,
) -> Path:
    """Write ``compare.json`` (comparison + decision) and ``compare.html`` in ``out_dir``; return the HTML.

    ``interpolation``: an update's BCWI result (``keepfit.train.interpolate.Interpolation`` or its
    ``to_dict()``): its curve, chosen weight and plot are shown. ``timings``: seconds per step (``data_s``,
    ``train_s``, ..., ``total_s``), shown with each step's share of the total. Both are optional, and both
    are also written to compare.json. A text-generation comparison lists its flips with the prompt, the
    reference and both models' answers, and judges JSON fields where classification judges classes.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    interp = _as_dict(interpolation)
    data: dict[str, Any] = {"decision": decision.to_dict(), "comparison": comparison.to_dict()}
    if interp is not None:
        data["interpolation"] = interp
    if timings:
        data["timings"] = {k: float(v) for k, v in timings.items()}
    atomic_write_text(out_dir / COMPARE_JSON, json.dumps(data, indent=2, allow_nan=False, ensure_ascii=False))
    sections = _sections(comparison, decision, _interpolation_section(interp))
    sections.append(_timings_section(timings))
    return atomic_write_text(out_dir / COMPARE_HTML, page(title, sections))


def rewrite_timings(out_dir: Path, timings: Mapping[str, float]) -> Path:
    """Replace the timings of the report in ``out_dir`` (compare.html and compare.json) with ``timings``,
    e.g. once registration, which comes after the report, has been timed. Returns the HTML."""
    out_dir = Path(out_dir)
    html_path, json_path = out_dir / COMPARE_HTML, out_dir / COMPARE_JSON
    text = html_path.read_text(encoding="utf-8")
    block = re.compile(re.escape(_TIMINGS_START) + ".*?" + re.escape(_TIMINGS_END), re.DOTALL)
    if not block.search(text):
        raise ValueError(f"{html_path} has no timings section to rewrite; write it with write_comparison_report.")
    data = json.loads(json_path.read_text(encoding="utf-8"))
    data["timings"] = {k: float(v) for k, v in timings.items()}
    atomic_write_text(json_path, json.dumps(data, indent=2, allow_nan=False, ensure_ascii=False))
    return atomic_write_text(html_path, block.sub(lambda _: _timings_section(timings), text, count=1))


def _as_dict(interpolation: Any) -> dict[str, Any] | None:
    if interpolation is None:
        return None
    if hasattr(interpolation, "to_dict"):
        return interpolation.to_dict()
    return dict(interpolation)


def _interpolation_section(interp: dict[str, Any] | None) -> str:
    if interp is None:
        return ""
    head = "<h2>Interpolation with the champion (BCWI)</h2>"
    curve = interp.get("curve") or []
    if not curve:
        return head + f'<p class="note">Not done: {esc(interp.get("note") or "no validation curve")}.</p>'
    alpha, method = float(interp["alpha"]), interp.get("method", "uniform")
    n_candidates = int(interp.get("candidates") or 1)
    weighting = ("each weight leaning towards the model whose predictions depend on it more (diagonal Fisher "
                 "information of both models)" if method == "fisher" else "every weight mixed alike")
    soup = f" The candidate is the average of {n_candidates} candidates trained with different seeds." \
        if n_candidates > 1 else ""
    chosen = next((p for p in curve if p["alpha"] == alpha), None)
    outcome = (
        f" At the chosen weight the champion-right rows flip {chosen['negative_flip_rate']:.1%} of the time "
        f"(at 0: {curve[0]['negative_flip_rate']:.1%}), validation accuracy {chosen['accuracy']:.1%} "
        f"(at 0: {curve[0]['accuracy']:.1%})." if chosen else ""
    )
    note = (
        f'<p class="note">Weights = a x champion + (1 - a) x candidate, {esc(method)}: {weighting}. '
        f"Chosen a = <b>{alpha:.2f}</b> on {interp.get('n_validation')} validation rows: the fewest negative "
        f"flips among the values whose accuracy is within {float(interp.get('margin', 0)):.1%} of the plain "
        f"candidate's (a = 0).{soup}{outcome}</p>"
    )
    rows = [
        [
            f"{p['alpha']:.2f}",
            p["accuracy"],
            p["negative_flip_rate"],
            p.get("negative_flips", ""),
            p.get("positive_flip_rate", ""),
            p.get("positive_flips", ""),
            "chosen" if p["alpha"] == alpha else "",
        ]
        for p in curve
    ]
    header = ["a (champion weight)", "validation accuracy", "negative flip rate (of champion-right rows)",
              "negative flips", "positive flip rate (of champion-wrong rows)", "positive flips", ""]
    plot = _png_data_uri(interp.get("plot"))
    img = figure(plot, "Validation flips of champion-right rows and accuracy against a.") if plot else ""
    return head + note + img + table(header, rows)


def _png_data_uri(path: Any) -> str | None:
    if not path or not Path(path).is_file():
        return None
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def _timings_section(timings: Mapping[str, float] | None) -> str:
    """Seconds per step and their share of the total, between markers so `rewrite_timings` can replace it."""
    if not timings:
        return ""
    parts = {k: float(v) for k, v in timings.items() if k != "total_s"}
    total = float(timings["total_s"]) if "total_s" in timings else sum(parts.values())
    rows = [[_STEPS.get(k, k), f"{v:.2f}", _share(v, total)] for k, v in parts.items()]
    untimed = total - sum(parts.values())
    if untimed > 0.01 * total and untimed > 0.05:
        rows.append(["other (not timed)", f"{untimed:.2f}", _share(untimed, total)])
    rows.append([("html", "<b>total</b>"), f"{total:.2f}", _share(total, total)])
    later = "" if "register_s" in timings else (
        '<p class="note">Registration comes after this report is written; <code>keepfit update</code> prints its '
        "time.</p>"
    )
    return (
        f"{_TIMINGS_START}<h2>Where the time went</h2>"
        + table(["step", "seconds", "share of total"], rows)
        + later
        + _TIMINGS_END
    )


def _share(seconds: float, total: float) -> str:
    return f"{seconds / total:.1%}" if total > 0 else ""


def _verdict(decision: GateDecision) -> str:
    word = '<span class="pass">PASSED</span>' if decision.passed else '<span class="fail">REJECTED</span>'
    rows = [
        [
            r.name,
            r.group or "",
            ("html", '<span class="pass">pass</span>' if r.passed else '<span class="fail">FAIL</span>')
            if not r.skipped
            else "skipped",
            ", ".join(r.failed),
            r.detail,
        ]
        for r in decision.rules
    ]
    warnings = "".join(f'<p class="fail">Warning: {esc(w)}</p>' for w in decision.warnings)
    return (
        f"<h2>Gate: {word}</h2>"
        + table(["rule", "group judged", "result", "failed for", "detail"], rows, numeric_from=99)
        + warnings
    )


_CLASS_NOTE = (
    "old/new: recall (F1 for multi-label) per class, rate of right rows per slice. "
    "flips: rows the old model got right that the new one gets wrong; p: exact McNemar, one-sided "
    "(candidate worse), and Holm-adjusted across the classes and slices with a discordant pair. detectable: "
    "the fewest flips (share of the class's rows) the gate rejects for sure; none: too few rows to protect "
    "it."
)
_FIELD_NOTE = (
    "old/new: per JSON field, the share of the rows whose reference has the field that the answer gets right; "
    "per slice, the share of right answers. flips: rows right before (the field, or the answer) that are wrong "
    "now; p: exact McNemar, one-sided (candidate worse), and Holm-adjusted across the fields and slices with a "
    "discordant pair. detectable: the fewest flips (share of the rows) the gate rejects for sure; none: too few "
    "rows to protect it."
)


def _class_checks(decision: GateDecision, generation: bool = False) -> str:
    """The per-class/per-slice checks of the judged group, with the smallest drop each could detect."""
    if not decision.classes:
        return ""
    rows = [
        [
            f"{u['kind']} {u['name']}",
            u["n"],
            u["old"],
            u["new"],
            u["old_right"],
            u["old_right_new_wrong"],
            u["old_wrong_new_right"],
            u["p_value"],
            u["p_holm"],
            "none" if u["detectable_flips"] is None else f"{u['detectable_flips']} ({u['detectable_drop']:.0%})",
            ("html", '<span class="fail">' + esc(", ".join(u["failed_by"])) + "</span>") if u["failed_by"] else "",
        ]
        for u in decision.classes
    ]
    return (
        f"<h2>{'Fields' if generation else 'Classes'} and slices of {esc(describe_group(decision.group))}</h2>"
        f'<p class="note">{_FIELD_NOTE if generation else _CLASS_NOTE}</p>'
        + table(
            ["field / slice" if generation else "class / slice", "n", "old", "new", "old right", "flips", "fixed",
             "p", "p (Holm)", "detectable", "failed by"],
            rows,
        )
    )


def _sections(c: Comparison, decision: GateDecision, interpolation: str = "") -> list[str]:
    s = c.settings
    out = [
        f'<p class="note">{esc(c.task)}, {c.n} paired examples. Deltas are new - old; intervals are '
        f"{int(s.get('confidence', 0.95) * 100)}% paired percentile bootstrap "
        f"({s.get('bootstrap')} resamples, "
        f"seed {s.get('seed')}, the same resamples for both models).</p>",
        _verdict(decision),
        _class_checks(decision, is_generation(c.task)),
        interpolation,
    ]
    figs = [
        (fg.to_data_uri(_metric_forest(c)), "Metric deltas per group with paired intervals."),
        (fg.to_data_uri(_flip_bars(c)), "Examples fixed and broken per group (McNemar's discordant pairs)."),
    ]
    g = c.groups.get(decision.group) or next(iter(c.groups.values()))
    if g.per_class:
        rows = sorted(
            (
                (n, r["delta"], _tuple(r["interval"]))
                for n, r in g.per_class.items()
                if r["delta"] == r["delta"]
            ),
            key=lambda t: t[1],
        )
        unit = "field" if is_generation(c.task) else "class"
        figs.append(
            (
                fg.to_data_uri(fg.interval_figure(rows, f"{s.get('class_metric')} per {unit} ({g.name})")),
                f"Per-{unit} deltas, worst first.",
            )
        )
    slice_rows = sorted(
        (
            (f"{k}={v}", r["delta"], _tuple(r["interval"]))
            for k, vals in g.per_slice.items()
            for v, r in vals.items()
        ),
        key=lambda t: t[1],
    )
    if slice_rows:
        figs.append(
            (
                fg.to_data_uri(
                    fg.interval_figure(slice_rows, f"{s.get('slice_metric')} per slice ({g.name})")
                ),
                "Per-slice deltas, worst first.",
            )
        )
    out.append("<h2>Figures</h2>" + "".join(figure(uri, cap) for uri, cap in figs))
    for group in c.groups.values():
        out.append(_group_section(c, group))
    return out


def _tuple(interval):
    return tuple(interval) if interval else None


def _metric_forest(c: Comparison):
    rows = [
        (f"{name}: {metric}", d["delta"], _tuple(d["interval"]), d["higher_is_better"])
        for name, g in c.groups.items()
        for metric, d in g.deltas.items()
    ]
    return fg.interval_figure(rows, "Metric deltas (new - old)")


def _flip_bars(c: Comparison):
    names = list(c.groups)
    fixed = [c.groups[n].mcnemar["old_wrong_new_right"] for n in names]
    broken = [c.groups[n].mcnemar["old_right_new_wrong"] for n in names]
    fig, ax = plt.subplots(figsize=(6, 3))
    x = range(len(names))
    ax.bar([i - 0.2 for i in x], fixed, width=0.4, color="C2", label="fixed (old wrong, new right)")
    ax.bar([i + 0.2 for i in x], broken, width=0.4, color="C3", label="broken (old right, new wrong)")
    ax.set_xticks(list(x), names)
    ax.set_ylabel("examples")
    ax.legend(fontsize=8)
    ax.set_title("Flips")
    return fig


def _group_section(c: Comparison, g: GroupComparison) -> str:
    mc = g.mcnemar
    parts = [f"<h2>Group: {esc(g.name)} ({g.n} examples)</h2>"]
    parts.append(
        table(
            ["metric", "old", "new", "delta", "interval"],
            [[k, d["old"], d["new"], d["delta"], fmt_interval(d["interval"])] for k, d in g.deltas.items()],
        )
    )
    right = mc.get("old_right", mc["both_right"] + mc["old_right_new_wrong"])
    parts.append(
        f'<p class="note">{esc(negative_flip_sentence(mc["old_right_new_wrong"], g.n, right, g.name))}; '
        f"positive flip rate {g.positive_flip_rate:.4f} ({mc['old_wrong_new_right']} fixed); McNemar exact "
        f"p = {mc['p_value']:.4g}."
        + (f" ECE {g.calibration['ece_old']:.4f} -> {g.calibration['ece_new']:.4f}." if g.calibration else "")
        + "</p>"
    )
    if g.per_class:
        rows = sorted(
            g.per_class.items(), key=lambda kv: kv[1]["delta"] if kv[1]["delta"] == kv[1]["delta"] else 9.0
        )
        unit = "field" if is_generation(c.task) else "class"
        parts.append(
            f"<h3>Per {unit} ({esc(c.settings.get('class_metric'))})</h3>"
            + table(
                ["field" if unit == "field" else "label", "n", "old", "new", "delta", "interval"],
                [[k, r["n"], r["old"], r["new"], r["delta"], fmt_interval(r["interval"])] for k, r in rows],
            )
        )
    for name, values in g.per_slice.items():
        parts.append(
            f"<h3>Slice {esc(name)} ({esc(c.settings.get('slice_metric'))})</h3>"
            + table(
                ["value", "n", "old", "new", "delta", "interval"],
                [
                    [v, r["n"], r["old"], r["new"], r["delta"], fmt_interval(r["interval"])]
                    for v, r in values.items()
                ],
            )
        )
    if g.fairness:
        parts.append(fairness_changes(g.fairness))
    for title, flips in (
        ("Negative flips (old right, new wrong)", g.negative_flips),
        ("Positive flips (old wrong, new right)", g.positive_flips),
    ):
        if flips and is_generation(c.task):
            parts.append(_generation_flips(title, flips[:_LISTED_IN_HTML]))
        elif flips:
            keys = [k for k in ("text", "true", "old", "new") if k in flips[0]]
            shown = flips[:_LISTED_IN_HTML]
            parts.append(
                f"<h3>{title}: first {len(shown)}</h3>"
                + table(
                    ["row", *keys],
                    [[f["index"], *[_cell(f[k]) for k in keys]] for f in shown],
                    numeric_from=99,
                )
            )
    return "".join(parts)


def _generation_flips(title: str, flips: list[dict[str, Any]]) -> str:
    """Flipped answers: the prompt as chat text, the reference, the old and the new answer, both scores."""
    texts = [k for k in ("prompt", "reference", OUTPUT_OLD, OUTPUT_NEW) if k in flips[0]]
    header = {"prompt": "prompt", "reference": "reference", OUTPUT_OLD: "old output", OUTPUT_NEW: "new output"}
    rows = [[f["index"], *[text_cell(f[k]) for k in texts], f["score_old"], f["score_new"]] for f in flips]
    return f"<h3>{title}: first {len(flips)}</h3>" + table(
        ["row", *[header[k] for k in texts], "old score", "new score"], rows, numeric_from=len(texts) + 1
    )


def _cell(value):
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return f"{value:.4g}" if isinstance(value, float) else value
