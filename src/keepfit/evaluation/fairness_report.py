"""The report's fairness section: per fairness column, the gaps between groups and the per-group table."""

from __future__ import annotations

from typing import Any

from keepfit.evaluation._html import esc, fmt_interval, table

__all__ = ["fairness_section", "fairness_changes"]

_GAP_NAMES = {
    "accuracy_gap": "accuracy gap (highest - lowest group accuracy)",
    "demographic_parity_difference": "demographic parity difference (selection rate gap)",
    "equalized_odds_difference": "equalised odds difference (larger of the TPR and FPR gaps)",
}
_MAX_LABEL_COLUMNS = 3  # beyond this many judged labels the table shows the label of the largest parity gap


def fairness_section(section: dict[str, Any]) -> str:
    """HTML for an :func:`keepfit.evaluation.fairness.group_fairness` section (escaped; tables by ``_html``)."""
    settings = section["settings"]
    labels = settings["labels"]
    judged = ", ".join(labels) if isinstance(labels, list) else labels
    parts = [
        '<h2>Fairness: groups and gaps</h2><p class="note">'
        f"Labels judged as the selected outcome: {esc(judged)}. Gaps compare the groups with at least "
        f"{settings['min_group_rows']} rows; intervals: {esc(settings['interval'])} (a label gap's interval is "
        "that of the label named; the largest of many one-vs-rest gaps is biased up by chance).</p>"
    ]
    for column, report in section["columns"].items():
        parts.append(f"<h2>Fairness: {esc(column)}</h2>" + _gaps_table(report) + _groups_table(report))
    return "".join(parts)


def fairness_changes(changes: dict[str, dict[str, dict[str, Any]]]) -> str:
    """HTML for a comparison group's gaps between groups, old and new model (GroupComparison.fairness)."""
    rows = [
        [column, _GAP_NAMES[metric], *("" if d[k] is None else d[k] for k in ("old", "new", "delta")),
         fmt_interval(d["interval"]), d.get("label") or "",
         " - ".join(d.get("groups_new") or d.get("groups_old") or [])]
        for column, gaps in changes.items()
        for metric, d in gaps.items()
    ]
    return ("<h3>Gaps between groups (fairness columns)</h3>"
            + table(["column", "gap", "old", "new", "delta", "interval", "label", "new model's ends"], rows,
                    numeric_from=2))


def _gaps_table(report: dict[str, Any]) -> str:
    rows = []
    for metric, gap in report["gaps"].items():
        ends = gap.get("groups")
        between = f"{ends[0]} (lowest) - {ends[1]} (highest)" if ends else ""
        rows.append([_GAP_NAMES[metric], gap["value"], fmt_interval(gap["interval"]), gap.get("label") or "",
                     between])
    return table(["gap", "value", "interval", "label", "between groups"], rows)


def _groups_table(report: dict[str, Any]) -> str:
    groups = report["groups"]
    labels = list(next(iter(groups.values()))["selection_rate"])
    if len(labels) > _MAX_LABEL_COLUMNS:  # many labels: the one whose selection rate differs most
        labels = [report["gaps"]["demographic_parity_difference"].get("label") or labels[0]]
    header = ["group", "n", "accuracy", "interval", *[f"{k} ({x})" for x in labels for k in ("selection rate",
                                                                                        "FNR")], "compared"]
    rows = [
        [name, g["n"], g["accuracy"], fmt_interval(g["interval"]),
         *[v for x in labels for v in (g["selection_rate"][x], g["false_negative_rate"][x])],
         "yes" if g["compared"] else "no (too few rows)"]
        for name, g in groups.items()
    ]
    return table(header, rows)
