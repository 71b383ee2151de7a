"""`write_comparison_report`: compare.json and a self-contained compare.html with plots."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt

from keepfit._io import atomic_write_text
from keepfit.evaluation import figures as fg
from keepfit.evaluation._html import esc, figure, fmt_interval, page, table
from keepfit.gate.compare import Comparison, GroupComparison, describe_group, negative_flip_sentence
from keepfit.gate.rules import GateDecision

__all__ = ["write_comparison_report", "COMPARE_JSON", "COMPARE_HTML"]

COMPARE_JSON = "compare.json"
COMPARE_HTML = "compare.html"
_LISTED_IN_HTML = 50


def write_comparison_report(
    comparison: Comparison, decision: GateDecision, out_dir: Path, *, title: str = "keepfit comparison"
) -> Path:
    """Write ``compare.json`` (comparison + decision) and ``compare.html`` in ``out_dir``; return the HTML."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = {"decision": decision.to_dict(), "comparison": comparison.to_dict()}
    atomic_write_text(out_dir / COMPARE_JSON, json.dumps(data, indent=2, allow_nan=False, ensure_ascii=False))
    return atomic_write_text(out_dir / COMPARE_HTML, page(title, _sections(comparison, decision)))


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


def _class_checks(decision: GateDecision) -> str:
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
        f"<h2>Classes and slices of {esc(describe_group(decision.group))}</h2>"
        '<p class="note">old/new: recall (F1 for multi-label) per class, rate of right rows per slice. '
        "flips: rows the old model got right that the new one gets wrong; p: exact McNemar, one-sided "
        "(candidate worse), and Holm-adjusted across the classes and slices with a discordant pair. detectable: "
        "the fewest flips (share of the class's rows) the gate rejects for sure; none: too few rows to protect "
        "it.</p>"
        + table(
            ["class / slice", "n", "old", "new", "old right", "flips", "fixed", "p", "p (Holm)", "detectable",
             "failed by"],
            rows,
        )
    )


def _sections(c: Comparison, decision: GateDecision) -> list[str]:
    s = c.settings
    out = [
        f'<p class="note">{esc(c.task)}, {c.n} paired examples. Deltas are new - old; intervals are '
        f"{int(s.get('confidence', 0.95) * 100)}% paired percentile bootstrap "
        f"({s.get('bootstrap')} resamples, "
        f"seed {s.get('seed')}, the same resamples for both models).</p>",
        _verdict(decision),
        _class_checks(decision),
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
        figs.append(
            (
                fg.to_data_uri(fg.interval_figure(rows, f"{s.get('class_metric')} per class ({g.name})")),
                "Per-class deltas, worst first.",
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
        parts.append(
            f"<h3>Per class ({esc(c.settings.get('class_metric'))})</h3>"
            + table(
                ["label", "n", "old", "new", "delta", "interval"],
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
    for title, flips in (
        ("Negative flips (old right, new wrong)", g.negative_flips),
        ("Positive flips (old wrong, new right)", g.positive_flips),
    ):
        if flips:
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


def _cell(value):
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return f"{value:.4g}" if isinstance(value, float) else value
