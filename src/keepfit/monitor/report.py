"""The monitor's outputs: ``monitor.json`` (every figure) and ``monitor.html`` (one offline page, plots inline)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from keepfit._io import atomic_write_text
from keepfit.evaluation import _html as h
from keepfit.evaluation.figures import plt, to_data_uri
from keepfit.monitor.drift import DomainClassifierTest, LabelShift
from keepfit.monitor.run import CHECKS, Assessment, Check, MonitorReport, TimeBin

__all__ = ["write_report", "render_html", "timeline_figure", "label_share_figure", "HTML_FILE", "JSON_FILE"]

HTML_FILE = "monitor.html"
JSON_FILE = "monitor.json"
_MAX_SHARE_BARS = 30


def write_report(report: MonitorReport, out_dir: Path) -> tuple[Path, Path]:
    """Write ``monitor.html`` and ``monitor.json`` into ``out_dir`` (each atomically); returns both paths."""
    out_dir = Path(out_dir)
    json_path = atomic_write_text(
        out_dir / JSON_FILE, json.dumps(report.to_dict(), indent=2, allow_nan=False, ensure_ascii=False) + "\n"
    )
    html_path = atomic_write_text(out_dir / HTML_FILE, render_html(report))
    return html_path, json_path


def render_html(report: MonitorReport) -> str:
    """The whole page: summary, alerts, checks, plots over time, label shares, drift terms, slices."""
    ref = report.reference
    sections = [
        "<h2>Window</h2>"
        + h.table(
            ["", ""],
            [
                ["window", f"{_when(report.since)} .. {_when(report.until)}"],
                ["logged predictions", str(report.n_rows) + (" (the newest only)" if report.truncated else "")],
                ["versions that answered", ", ".join(f"v{v}: {n}" for v, n in report.versions.items()) or "none"],
                ["reference", f"v{ref['version']} ({report.ref}), snapshot {str(ref['snapshot'])[:12]}, "
                              f"{ref['n_validation']} validation rows, {ref['n_train_texts']} training texts"],
                ["feedback rows in the log", str(report.feedback_available)],
            ],
            numeric_from=2,
        ),
        _verdict_section(report),
    ]
    if report.overall is not None:
        sections.append("<h2>Checks</h2>" + _checks_table(report.overall.checks))
    if any(b.n for b in report.timeline):
        unit = "hour" if report.bin_seconds == 3600 else "day"
        sections.append("<h2>Over time</h2>" + h.figure(to_data_uri(timeline_figure(report)), f"Per {unit} (UTC)"))
    if report.overall is not None:
        sections += _detail_sections(report.overall)
    if report.slices:
        sections.append("<h2>Slices</h2>" + _slices_table(report))
    sections.append(
        "<h2>Settings</h2>" + h.table(["setting", "value"], [[k, str(v)] for k, v in report.settings.items()], 2)
    )
    return h.page(f"keepfit monitor: v{ref['version']}", sections)


def _when(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _verdict_section(report: MonitorReport) -> str:
    if report.overall is None:
        return (
            f'<p class="note">{report.n_rows} logged predictions in the window, fewer than monitor.min_rows='
            f"{report.min_rows}: no verdicts. Widen the window (--since) or wait for more traffic.</p>"
        )
    alerts = report.alerts()
    if not alerts:
        return '<p class="pass">No alert: nothing crossed a threshold.</p>'
    items = "".join(f"<li>{h.esc(line)}</li>" for line in alerts)
    suggestion = report.suggestion() or ""
    return f'<h2>Alerts</h2><ul class="fail">{items}</ul><p>{h.esc(suggestion)}</p>'


def _status_cell(check: Check | None) -> tuple[str, str]:
    if check is None:
        return ("html", "")
    if check.status == "alert":
        return ("html", '<span class="fail">ALERT</span>')
    if check.status == "skipped":
        return ("html", '<span class="note">skipped</span>')
    return ("html", '<span class="pass">ok</span>')


def _checks_table(checks: list[Check]) -> str:
    rows = [
        [c.name, h.fmt(c.value), h.fmt(c.reference), h.fmt_interval(c.interval), c.threshold, _status_cell(c), c.detail]
        for c in checks
    ]
    return h.table(["check", "value", "reference", "interval", "alert when", "status", "detail"], rows, numeric_from=1)


def _detail_sections(overall: Assessment) -> list[str]:
    out = []
    shift = overall.check("label shift").result
    if isinstance(shift, LabelShift):
        out.append("<h2>Predicted-label shares</h2>" + h.figure(to_data_uri(label_share_figure(shift)),
                                                               "Reference (validation) against the window"))
    drift = overall.check("input drift").result
    if isinstance(drift, DomainClassifierTest) and drift.terms:
        out.append(
            "<h2>Input drift: what is new</h2><p class=\"note\">Word n-grams the domain classifier finds most "
            "typical of the window, with the share of texts containing them.</p>"
            + h.table(
                ["term", "weight", "window share", "training share"],
                [[t.term, t.weight, t.window_share, t.reference_share] for t in drift.terms],
            )
        )
    return out


def _slices_table(report: MonitorReport) -> str:
    rows = []
    for part in report.slices:
        checks = {c.name: c for c in part.assessment.checks} if part.assessment else {}
        cells = [_status_cell(checks.get(name)) for name in CHECKS]
        note = "" if part.assessment else f"fewer than {report.min_rows} rows: not judged"
        rows.append([part.key, part.value, part.n, part.n_feedback, *cells, note])
    return h.table(["key", "value", "rows", "feedback", *CHECKS, "note"], rows, numeric_from=2)


def timeline_figure(report: MonitorReport):
    """Four panels over the window's bins: volume; confidence and accuracies (validation accuracy dashed);
    abstention rate; label PSI (each threshold dotted)."""
    import matplotlib.dates as mdates

    bins: list[TimeBin] = report.timeline
    starts = [datetime.fromtimestamp(b.start, timezone.utc) for b in bins]
    x = [datetime.fromtimestamp(b.start + report.bin_seconds / 2, timezone.utc) for b in bins]  # bin middles
    width = report.bin_seconds / 86_400 * 0.8
    settings, ref = report.settings, report.reference
    fig, axes = plt.subplots(4, 1, figsize=(8, 8.5), sharex=True)
    axes[0].bar(starts, [b.n for b in bins], width=width, align="edge", color="C0")
    axes[0].set_ylabel("requests")
    for key, name, style in (
        ("mean_confidence", "mean confidence", "o-"),
        ("estimated_accuracy", "estimated accuracy", "s-"),
        ("realised_accuracy", "realised accuracy", "^-"),
    ):
        axes[1].plot(x, _series(bins, key), style, markersize=3, label=name)
    if ref.get("accuracy") is not None:
        axes[1].axhline(ref["accuracy"], color="grey", linestyle="--", label="validation accuracy")
    axes[1].set_ylim(0, 1.02)
    axes[1].set_ylabel("share")
    axes[1].legend(fontsize=7, loc="lower left")
    axes[2].plot(x, _series(bins, "abstention_rate"), "o-", markersize=3, color="C3")
    axes[2].axhline(settings["abstention_rate"], color="grey", linestyle=":")
    axes[2].set_ylabel("abstention rate")
    axes[3].plot(x, _series(bins, "psi"), "o-", markersize=3, color="C4")
    axes[3].axhline(settings["psi_threshold"], color="grey", linestyle=":")
    axes[3].set_ylabel("label PSI")
    axes[3].xaxis.set_major_formatter(mdates.DateFormatter("%m-%d %H:%M"))
    fig.autofmt_xdate()
    return fig


def _series(bins: list[TimeBin], key: str) -> list[float]:
    return [np.nan if getattr(b, key) is None else float(getattr(b, key)) for b in bins]


def label_share_figure(shift: LabelShift):
    """Reference and window share per label, the labels that moved most first (at most 30)."""
    ref, win = shift.shares()
    order = np.argsort(-np.abs(win - ref), kind="stable")[:_MAX_SHARE_BARS]
    names = [shift.labels[i] for i in order]
    y = np.arange(len(order))
    fig, ax = plt.subplots(figsize=(6.5, max(2.2, 0.3 * len(order) + 1)))
    ax.barh(y - 0.2, ref[order], height=0.4, label="reference (validation)", color="C0")
    ax.barh(y + 0.2, win[order], height=0.4, label="window", color="C1")
    ax.set_yticks(y, names, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("share of predictions")
    ax.legend(fontsize=7)
    ax.set_title(f"Predicted-label shares (PSI {shift.psi:.3f})")
    return fig
