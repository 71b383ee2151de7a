"""What changed between two data snapshots: rows added, removed and relabelled, labels new and vanished,
and the shift in the label and text-length distributions (with the tests that say how large it is).

Rows are matched by their normalised text over all splits: a text in B but not in A is added, in A but not B
removed, in both with a different answer relabelled. For text-generation rows are matched by their prompt (the
whole conversation before the answer), "relabelled" means a new completion, and there are no labels to shift.
For image-classification rows are matched by their image's bytes (``image_sha``: a renamed file is the same
row) and there is no text length to compare (``text`` holds the file's path).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Group, RenderableType
from rich.markup import escape
from rich.table import Table

from keepfit.data.quality import MAX_EXAMPLES, answer_strings, identity_column
from keepfit.types import LABEL, LABELS, ROW, SOURCE, SPLIT, SPLITS, TEXT, Snapshot, is_generation, is_image

__all__ = ["SnapshotDiff", "diff_snapshots", "diff_renderable", "diff_to_json"]


@dataclass
class SnapshotDiff:
    """The difference from snapshot ``a`` (older) to ``b`` (newer). Shares are fractions of all rows (0..1);
    text lengths are in characters."""

    a: str
    b: str
    task: str
    rows_a: int
    rows_b: int
    added: int
    removed: int
    relabelled: int
    unchanged: int
    labels_new: list[str]
    labels_vanished: list[str]
    label_shift: list[dict[str, Any]]
    label_test: dict[str, float]
    length_test: dict[str, float]
    split_counts: dict[str, dict[str, int]]
    added_examples: list[dict[str, Any]] = field(default_factory=list)
    removed_examples: list[dict[str, Any]] = field(default_factory=list)
    relabelled_examples: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_KEY = "_key"


def _rows(snapshot: Snapshot) -> pd.DataFrame:
    """One row per distinct identity (text; prompt for text-generation), indexed by it."""
    parts = []
    for name in SPLITS:
        frame = snapshot.split(name)
        parts.append(
            pd.DataFrame(
                {
                    _KEY: frame[identity_column(frame)].astype(str).to_numpy(dtype=object),
                    TEXT: frame[TEXT].astype(str).to_numpy(dtype=object),
                    "answer": answer_strings(frame, snapshot.task).to_numpy(dtype=object),
                    SPLIT: name,
                    ROW: frame[ROW].to_numpy() if ROW in frame else -1,
                    SOURCE: frame[SOURCE].astype(str).to_numpy(dtype=object) if SOURCE in frame else "",
                }
            )
        )
    out = pd.concat(parts, ignore_index=True)
    return out.drop_duplicates(_KEY, keep="first").set_index(_KEY, drop=False)


def _label_counts(snapshot: Snapshot) -> pd.Series:
    frames = [snapshot.split(n) for n in SPLITS]
    if snapshot.task == "regression" or is_generation(snapshot.task):
        return pd.Series(dtype=int)
    if snapshot.task == "multi-label":
        values = (
            pd.concat([f[LABELS].explode() for f in frames if len(f)], ignore_index=True)
            if any(len(f) for f in frames)
            else pd.Series(dtype=object)
        )
    else:
        values = pd.concat([f[LABEL] for f in frames], ignore_index=True)
    return values.dropna().astype(str).value_counts()


def _label_shift(a: Snapshot, b: Snapshot) -> tuple[list[dict[str, Any]], dict[str, float]]:
    from scipy.spatial.distance import jensenshannon
    from scipy.stats import chi2_contingency

    ca, cb = _label_counts(a), _label_counts(b)
    labels = sorted(set(ca.index) | set(cb.index))
    if not labels:
        return [], {}
    va = np.array([ca.get(x, 0) for x in labels], dtype=float)
    vb = np.array([cb.get(x, 0) for x in labels], dtype=float)
    pa_, pb_ = va / max(va.sum(), 1), vb / max(vb.sum(), 1)
    shift = [
        {
            "label": lab,
            "count_a": int(x),
            "count_b": int(y),
            "share_a": float(p),
            "share_b": float(q),
            "change": float(q - p),
        }
        for lab, x, y, p, q in zip(labels, va, vb, pa_, pb_, strict=True)
    ]
    shift.sort(key=lambda r: -abs(r["change"]))
    test: dict[str, float] = {
        "js_distance": float(jensenshannon(pa_, pb_, base=2)) if va.sum() and vb.sum() else 0.0
    }
    if va.sum() and vb.sum() and len(labels) > 1:
        chi2, p, dof, _ = chi2_contingency(np.vstack([va, vb]) + 0.0)
        test.update({"chi2": float(chi2), "chi2_p": float(p), "dof": int(dof)})
    return shift, test


def _length_test(a: Snapshot, b: Snapshot) -> dict[str, float]:
    from scipy.stats import ks_2samp

    if is_image(a.task) or is_image(b.task):
        return {}
    la = pd.concat([a.split(n)[TEXT] for n in SPLITS]).astype(str).str.len().to_numpy()
    lb = pd.concat([b.split(n)[TEXT] for n in SPLITS]).astype(str).str.len().to_numpy()
    if len(la) == 0 or len(lb) == 0:
        return {}
    ks = ks_2samp(la, lb)
    return {
        "ks": float(ks.statistic),
        "ks_p": float(ks.pvalue),
        "mean_chars_a": float(la.mean()),
        "mean_chars_b": float(lb.mean()),
        "median_chars_a": float(np.median(la)),
        "median_chars_b": float(np.median(lb)),
    }


def _examples(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [
        {
            "row": int(r[ROW]),
            "source": r[SOURCE],
            "split": r[SPLIT],
            "text": r[TEXT][:200],
            "label": r["answer"][:200],
        }
        for _, r in frame.head(MAX_EXAMPLES).iterrows()
    ]


def diff_snapshots(a: Snapshot, b: Snapshot) -> SnapshotDiff:
    """Compare snapshot ``a`` (older) with ``b`` (newer); see :class:`SnapshotDiff`."""
    ra, rb = _rows(a), _rows(b)
    in_a, in_b = rb.index.isin(ra.index), ra.index.isin(rb.index)
    added, removed = rb[~in_a], ra[~in_b]
    both = rb[in_a]
    old_answer = ra.loc[both.index, "answer"].to_numpy()
    changed = both["answer"].to_numpy() != old_answer
    relabelled = both[changed]
    relabel_examples = [
        {"text": t[:200], "old": o[:200], "new": n[:200], "split_b": s}
        for t, o, n, s in zip(
            relabelled[TEXT][:MAX_EXAMPLES],
            old_answer[changed][:MAX_EXAMPLES],
            relabelled["answer"][:MAX_EXAMPLES],
            relabelled[SPLIT][:MAX_EXAMPLES],
            strict=True,
        )
    ]
    labels_a, labels_b = set(a.labels), set(b.labels)
    shift, label_test = _label_shift(a, b)
    return SnapshotDiff(
        a=a.id,
        b=b.id,
        task=b.task,
        rows_a=len(ra),
        rows_b=len(rb),
        added=len(added),
        removed=len(removed),
        relabelled=int(changed.sum()),
        unchanged=int((~changed).sum()),
        labels_new=sorted(labels_b - labels_a),
        labels_vanished=sorted(labels_a - labels_b),
        label_shift=shift,
        label_test=label_test,
        length_test=_length_test(a, b),
        split_counts={"a": {n: len(a.split(n)) for n in SPLITS}, "b": {n: len(b.split(n)) for n in SPLITS}},
        added_examples=_examples(added),
        removed_examples=_examples(removed),
        relabelled_examples=relabel_examples,
    )


def diff_to_json(diff: SnapshotDiff) -> str:
    """The diff as a JSON document."""
    return json.dumps(diff.to_dict(), indent=2, default=str)


def _answer(value: str, limit: int = 60) -> str:
    return value if len(value) <= limit else value[: limit - 3] + "..."


def diff_renderable(diff: SnapshotDiff, max_labels: int = 10) -> Group:
    """The diff as one rich renderable (the CLI prints it): counts, label changes, the largest share shifts
    and the test statistics.

    Texts, labels and answers come from the data and are escaped: rich would read ``[urgent]`` as markup and
    print nothing. Answers are cut to 60 characters (a completion can be long)."""
    parts: list[RenderableType] = []
    parts.append(
        f"[bold]data diff[/] {diff.a[:12]} -> {diff.b[:12]}: {diff.rows_a:,} -> {diff.rows_b:,} rows"
    )
    table = Table(show_header=True, title_justify="left")
    table.add_column("change")
    table.add_column("rows", justify="right")
    table.add_column("example")
    for name, count, examples in (
        ("added", diff.added, diff.added_examples),
        ("removed", diff.removed, diff.removed_examples),
    ):
        ex = examples[0] if examples else None
        table.add_row(name, f"{count:,}", escape(f"{ex['text'][:60]!r} [{_answer(ex['label'])}]") if ex else "")
    ex = diff.relabelled_examples[0] if diff.relabelled_examples else None
    table.add_row(
        "relabelled",
        f"{diff.relabelled:,}",
        escape(f"{ex['text'][:50]!r}: {_answer(ex['old'])} -> {_answer(ex['new'])}") if ex else "",
    )
    table.add_row("unchanged", f"{diff.unchanged:,}", "")
    parts.append(table)
    if diff.labels_new:
        parts.append(f"new labels: [green]{escape(', '.join(diff.labels_new))}[/]")
    if diff.labels_vanished:
        parts.append(f"vanished labels: [red]{escape(', '.join(diff.labels_vanished))}[/]")
    if diff.label_shift:
        shift = Table(title="Label share shift (largest first)", title_justify="left")
        shift.add_column("label")
        shift.add_column("share A", justify="right")
        shift.add_column("share B", justify="right")
        shift.add_column("change", justify="right")
        for r in diff.label_shift[:max_labels]:
            shift.add_row(escape(r["label"]), f"{r['share_a']:.1%}", f"{r['share_b']:.1%}", f"{r['change']:+.1%}")
        parts.append(shift)
    lt, ln = diff.label_test, diff.length_test
    if lt:
        line = f"label distribution: Jensen-Shannon distance {lt['js_distance']:.3f}"
        if "chi2" in lt:
            line += f", chi-square {lt['chi2']:.1f} (p = {lt['chi2_p']:.3g})"
        parts.append(line)
    if ln:
        parts.append(
            f"text length: mean {ln['mean_chars_a']:.0f} -> {ln['mean_chars_b']:.0f} chars, "
            f"KS {ln['ks']:.3f} (p = {ln['ks_p']:.3g})"
        )
    return Group(*parts)
