"""The data check report, rendered: a rich terminal summary and a self-contained HTML page (opens offline).

Both take the JSON-able report dict that :func:`keepfit.data.check.check_data` builds
(``CheckResult.report``).
"""

from __future__ import annotations

import html
from typing import Any

from rich.console import Group, RenderableType
from rich.markup import escape
from rich.table import Table

__all__ = ["summary_renderable", "render_html"]

_REASON_HELP = {
    "duplicate": "same text and label as an earlier row",
    "conflicting_labels": "same text with different labels (all copies)",
    "near_duplicate": "nearly the same text as an earlier row",
    "leakage": "text also in a later split (train side removed)",
    "empty_text": "no text after normalisation",
    "missing_label": "no label",
    "unknown_label": "label not known (or a rare spelling variant)",
    "unparseable": "the record could not be parsed",
    "too_long": "text longer than data.max_chars (text-generation: or data.max_tokens)",
    "wrong_type": "a value of the wrong kind",
    "bad_target": "regression target not a finite number",
    "bad_multilabel": "multi-label cell that cannot be parsed",
    "bad_split": "split value not train/validation/test",
    # text-generation (keepfit.data.chat)
    "conflicting_completions": "same prompt with different completions (all copies)",
    "bad_messages": "messages not a list of {role, content} turns with text contents",
    "missing_role": "a turn without a role",
    "unknown_role": "a role other than system, user or assistant",
    "system_not_first": "a system turn after the first turn",
    "no_answer": "no user turn, or not ending with the assistant's answer to one",
    "empty_content": "an empty turn (or prompt)",
    "empty_completion": "an empty answer",
    # image-classification (keepfit.data.images)
    "missing_file": "the image path does not exist (or is a dangling link)",
    "unreadable": "the file cannot be read (permissions, a folder, a link loop)",
    "empty_file": "a file of 0 bytes",
    "not_an_image": "not an image (content Pillow cannot identify, or a non-image extension)",
    "truncated": "an image that stops before its end (cannot be decoded)",
    "too_small": "a side shorter than data.min_image_side",
    "extreme_aspect": "longer than data.max_aspect_ratio times its width (or the other way round)",
    "too_large": "more pixels than data.max_image_pixels (a decompression-bomb guard)",
    "animated": "more than one frame (animated GIF/PNG/WebP, multi-page TIFF)",
    "unsupported_mode": "a pixel mode that cannot be converted to RGB safely",
    "bad_path": "an empty image path",
}


def summary_renderable(report: dict[str, Any]) -> Group:
    """The check summary as one rich renderable (the CLI prints it): counts (in = kept + quarantined),
    quarantine reasons, findings with a first example, label distribution, split.

    What comes from the data (file names, texts, labels, answers, and the summaries and warnings that quote
    them) is escaped: rich would read ``[urgent]`` as markup and print nothing."""
    parts: list[RenderableType] = []
    n_in, kept, quarantined = report["n_in"], report["n_kept"], report["n_quarantined"]
    ok = "[green]holds[/]" if n_in == kept + quarantined else "[red]DOES NOT HOLD[/]"
    parts.append(
        f"[bold]{escape(', '.join(report.get('sources', [])))}[/]: {n_in:,} rows in = {kept:,} kept + "
        f"{quarantined:,} quarantined ({ok})"
    )
    reasons = report.get("quarantine_reasons", {})
    if reasons:
        table = Table(title="Quarantined rows by reason", title_justify="left")
        table.add_column("reason")
        table.add_column("rows", justify="right")
        table.add_column("meaning")
        for reason, count in sorted(reasons.items(), key=lambda kv: -kv[1]):
            table.add_row(escape(reason), f"{count:,}", _REASON_HELP.get(reason, ""))
        parts.append(table)
    findings = Table(title="Quality findings", title_justify="left")
    findings.add_column("check")
    findings.add_column("count", justify="right")
    findings.add_column("action")
    findings.add_column("summary / first example")
    for f in report.get("findings", []):
        first = _example_line(f["examples"][0]) if f.get("examples") else ""
        findings.add_row(
            f["kind"], f"{f['count']:,}", f["action"], escape(f["summary"] + (f"\n  e.g. {first}" if first else ""))
        )
    parts.append(findings)
    dist = report.get("label_counts") or {}
    if dist:
        table = Table(title=f"Label distribution ({len(dist)} labels)", title_justify="left")
        table.add_column("label")
        table.add_column("rows", justify="right")
        table.add_column("share", justify="right")
        total = sum(dist.values()) or 1
        shown = list(dist.items())
        if len(shown) > 15:
            shown = shown[:10] + [("...", None)] + shown[-4:]
        for label, count in shown:
            table.add_row(
                escape(label), "" if count is None else f"{count:,}", "" if count is None else f"{count / total:.1%}"
            )
        parts.append(table)
    split = report.get("split")
    if split:
        counts = ", ".join(f"{k} {v:,}" for k, v in split["counts"].items())
        parts.append(f"split ({split['method']}): {counts}")
    for warning in report.get("warnings", []):
        parts.append(f"[yellow]warning:[/] {escape(warning)}")
    return Group(*parts)


def _example_line(example: dict[str, Any]) -> str:
    where = f"row {example['row']}" if "row" in example else f"rows {example.get('rows')}"
    text = example.get("text", "")
    label = example.get("label", example.get("labels", ""))
    extra = ""
    for key in ("same_as_row", "similar_to_row", "other_row"):
        if key in example:
            extra = f" ~ row {example[key]}"
    return f"{where}: {text[:70]!r} [{label}]{extra}"


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;
color:#222}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem}
td,th{border:1px solid #ddd;padding:.3rem .6rem;text-align:left;vertical-align:top}
th{background:#f4f4f4}.num{text-align:right}.ok{color:#1a7f37}.bad{color:#c62828}
.bar{background:#4a78c2;height:.8rem;display:inline-block}.warn{color:#9a6700}
code{background:#f4f4f4;padding:0 .2rem}
"""


def _e(value: Any) -> str:
    return html.escape(str(value))


def _table(
    headers: list[str], rows: list[list[Any]], numeric: set[int] | None = None, raw: set[int] | None = None
) -> str:
    """An HTML table; every cell is escaped except the columns in ``raw`` (markup made here, never data)."""
    numeric, raw = numeric or set(), raw or set()
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(
            f"<td class='num'>{_e(c)}</td>" if i in numeric else f"<td>{c if i in raw else _e(c)}</td>"
            for i, c in enumerate(r)
        )
        + "</tr>"
        for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def render_html(report: dict[str, Any], title: str = "keepfit data check") -> str:
    """A self-contained HTML page (inline CSS, no scripts or external assets) for a check report."""
    n_in, kept, quarantined = report["n_in"], report["n_kept"], report["n_quarantined"]
    holds = n_in == kept + quarantined
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{_e(title)}</title><style>{_CSS}</style>"
        f"</head><body><h1>{_e(title)}</h1>",
        f"<p>Sources: {_e(', '.join(report.get('sources', [])))} &middot; "
        f"task <code>{_e(report.get('task'))}</code>"
        + (f" &middot; snapshot <code>{_e(report['snapshot'])}</code>" if report.get("snapshot") else "")
        + "</p>",
        f"<p><b>{n_in:,}</b> rows in = <b>{kept:,}</b> kept + <b>{quarantined:,}</b> quarantined "
        f"<span class='{'ok' if holds else 'bad'}'>({'holds' if holds else 'does not hold'})</span></p>",
    ]
    reasons = report.get("quarantine_reasons", {})
    parts.append("<h2>Quarantine</h2>")
    if reasons:
        parts.append(
            _table(
                ["reason", "rows", "meaning"],
                [
                    [r, f"{c:,}", _REASON_HELP.get(r, "")]
                    for r, c in sorted(reasons.items(), key=lambda kv: -kv[1])
                ],
                {1},
            )
        )
        parts.append(
            "<p>Every quarantined row, with its original line number, is in <code>quarantine.csv</code>.</p>"
        )
    else:
        parts.append("<p>No row was quarantined.</p>")
    parts.append("<h2>Quality findings</h2>")
    parts.append(
        _table(
            ["check", "count", "action", "summary"],
            [[f["kind"], f"{f['count']:,}", f["action"], f["summary"]] for f in report.get("findings", [])],
            {1},
        )
    )
    for f in report.get("findings", []):
        if f.get("examples") and f["kind"] != "label_distribution":
            keys = list(dict.fromkeys(k for e in f["examples"] for k in e))
            parts.append(f"<h3>{_e(f['kind'])}: examples</h3>")
            parts.append(_table(keys, [[e.get(k, "") for k in keys] for e in f["examples"]]))
    dist = report.get("label_counts") or {}
    if dist:
        parts.append(f"<h2>Label distribution ({len(dist)} labels)</h2>")
        top = max(dist.values()) or 1
        total = sum(dist.values()) or 1
        rows = [
            [
                label,
                f"{count:,}",
                f"{count / total:.1%}",
                f"<span class='bar' style='width:{int(300 * count / top)}px'></span>",
            ]
            for label, count in dist.items()
        ]
        parts.append(_table(["label", "rows", "share", ""], rows, {1, 2}, raw={3}))
    split = report.get("split")
    if split:
        parts.append(f"<h2>Split ({_e(split['method'])})</h2>")
        parts.append(_table(["split", "rows"], [[k, f"{v:,}"] for k, v in split["counts"].items()], {1}))
    warnings = report.get("warnings", [])
    if warnings:
        parts.append(
            "<h2>Warnings</h2><ul>" + "".join(f"<li class='warn'>{_e(w)}</li>" for w in warnings) + "</ul>"
        )
    parts.append("</body></html>")
    return "\n".join(parts)
