"""Matplotlib figures for the reports, returned as ``data:image/png;base64`` URIs (offline, Agg backend)."""

from __future__ import annotations

import base64
import io
import math
from typing import Any

import matplotlib

matplotlib.use("Agg")  # reports are written headless; never open a window

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

__all__ = [
    "to_data_uri",
    "learning_curves",
    "confusion_figure",
    "reliability_figure",
    "per_class_figure",
    "regression_figure",
    "interval_figure",
    "top_confused",
]

MAX_CONFUSION_CLASSES = 20
MAX_BARS = 60
_X_KEYS = ("epoch", "step", "global_step")


def to_data_uri(fig: Figure) -> str:
    """PNG of ``fig`` as a data URI (the figure is closed)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def learning_curves(history: list[dict[str, Any]]) -> Figure | None:
    """Training loss (left axis) and validation metrics (right axis) per epoch or step; None if no numbers."""
    rows = [r for r in history if isinstance(r, dict)]
    if not rows:
        return None
    x_key = next((k for k in _X_KEYS if all(k in r for r in rows)), None)
    x = [r[x_key] for r in rows] if x_key else list(range(1, len(rows) + 1))
    numeric = [
        k for k in dict.fromkeys(k for r in rows for k in r) if any(_is_number(r.get(k)) for r in rows)
    ]
    # losses on the left; validation metrics (keys starting "val") on the right; counters and timings left out
    losses = [k for k in numeric if "loss" in k]
    others = [k for k in numeric if k.startswith("val") and "loss" not in k]
    if not losses and not others:
        return None
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for k in losses:
        ax.plot(x, [_num(r.get(k)) for r in rows], marker="o", label=k)
    ax.set_xlabel(x_key or "evaluation")
    ax.set_ylabel("loss")
    handles, names = ax.get_legend_handles_labels()
    if others:
        ax2 = ax.twinx()
        for i, k in enumerate(others):
            ax2.plot(
                x,
                [_num(r.get(k)) for r in rows],
                marker="s",
                linestyle="--",
                color=f"C{len(losses) + i}",
                label=k,
            )
        ax2.set_ylabel("validation metric")
        h2, n2 = ax2.get_legend_handles_labels()
        handles, names = handles + h2, names + n2
    ax.legend(handles, names, fontsize=8, loc="best")
    ax.set_title("Learning curves")
    return fig


def _is_number(v: Any) -> bool:
    return (
        isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and math.isfinite(v)
    )


def _num(v: Any) -> float:
    return float(v) if _is_number(v) else float("nan")


def top_confused(confusion: np.ndarray, k: int = MAX_CONFUSION_CLASSES) -> np.ndarray:
    """Indices of at most ``k`` classes in the largest off-diagonal confusions (all when C <= k)."""
    c = len(confusion)
    if c <= k:
        return np.arange(c)
    off = confusion - np.diag(np.diag(confusion))
    chosen: list[int] = []
    for flat in np.argsort(-off, axis=None, kind="stable"):
        if off.flat[flat] == 0:
            break
        for i in np.unravel_index(flat, off.shape):
            if int(i) not in chosen and len(chosen) < k:
                chosen.append(int(i))
        if len(chosen) >= k:
            break
    if len(chosen) < min(k, c):  # few confusions: fill with the least accurate classes
        recall = np.diag(confusion) / np.maximum(confusion.sum(axis=1), 1)
        chosen += [int(i) for i in np.argsort(recall, kind="stable") if int(i) not in chosen][
            : k - len(chosen)
        ]
    return np.array(sorted(chosen))


def confusion_figure(confusion: list[list[int]], labels: list[str]) -> Figure:
    """Confusion matrix (rows = truth), restricted to the most confused classes when there are many."""
    matrix = np.asarray(confusion)
    keep = top_confused(matrix)
    sub = matrix[np.ix_(keep, keep)]
    names = [labels[i] for i in keep]
    size = max(4.0, 0.42 * len(keep) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(sub, cmap="Blues")
    ax.set_xticks(range(len(keep)), names, rotation=90, fontsize=7)
    ax.set_yticks(range(len(keep)), names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if len(keep) <= 30:
        top = sub.max() if sub.size else 0
        for (i, j), v in np.ndenumerate(sub):
            if v:
                ax.text(
                    j,
                    i,
                    str(v),
                    ha="center",
                    va="center",
                    fontsize=6,
                    color="white" if v > top / 2 else "black",
                )
    title = (
        "Confusion matrix"
        if len(keep) == len(matrix)
        else f"Confusion matrix: {len(keep)} most confused classes"
    )
    ax.set_title(title)
    return fig


def reliability_figure(
    bins: list[dict],
    bins_after: list[dict] | None = None,
    ece: float | None = None,
    ece_after: float | None = None,
) -> Figure:
    """Reliability diagram: accuracy per confidence bin against the diagonal, before and after temperature."""
    fig, ax = plt.subplots(figsize=(4.8, 4.4))
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfect calibration")
    for data, label, marker in ((bins, "before", "o"), (bins_after, "after temperature", "s")):
        if not data:
            continue
        pts = [(b["confidence"], b["accuracy"]) for b in data if b["count"]]
        if pts:
            xs, ys = zip(*pts, strict=True)
            value = ece if label == "before" else ece_after
            suffix = f" (ECE {value:.3f})" if value is not None else ""
            ax.plot(xs, ys, marker=marker, label=label + suffix)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title("Reliability diagram")
    return fig


def per_class_figure(values: dict[str, float], title: str = "F1 per class", xlabel: str = "F1") -> Figure:
    """Horizontal bars, lowest first (at most :data:`MAX_BARS`, the lowest ones)."""
    items = sorted(values.items(), key=lambda kv: (np.nan_to_num(kv[1], nan=-1.0), kv[0]))[:MAX_BARS]
    fig, ax = plt.subplots(figsize=(6.5, max(2.5, 0.2 * len(items) + 1)))
    ax.barh([k for k, _ in items], [np.nan_to_num(v) for _, v in items], color="C0")
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.tick_params(axis="y", labelsize=7)
    ax.set_xlabel(xlabel)
    ax.set_title(title if len(values) <= MAX_BARS else f"{title} (lowest {MAX_BARS} of {len(values)})")
    return fig


def regression_figure(y_true: np.ndarray, pred: np.ndarray) -> Figure:
    """Predicted against true values, and the distribution of residuals."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(8, 3.6))
    a.scatter(y_true, pred, s=6, alpha=0.5)
    lo, hi = float(min(y_true.min(), pred.min())), float(max(y_true.max(), pred.max()))
    a.plot([lo, hi], [lo, hi], color="grey", linestyle=":")
    a.set_xlabel("true")
    a.set_ylabel("predicted")
    a.set_title("Predicted vs true")
    residuals = pred - y_true
    b.hist(residuals, bins=30 if np.ptp(residuals) > 1e-6 * (1 + np.abs(residuals).max()) else 1, color="C1")
    b.set_xlabel("residual (predicted - true)")
    b.set_title("Residuals")
    return fig


def interval_figure(
    rows: list[tuple],
    title: str,
    xlabel: str = "delta (new - old)",
    zero: bool = True,
) -> Figure:
    """Point estimates with interval bars, one row each (a forest plot).

    A row is ``(name, value, interval or None[, higher_is_better])``; changes for the worse are red.
    """
    rows = rows[:MAX_BARS]
    fig, ax = plt.subplots(figsize=(6.5, max(2.0, 0.28 * len(rows) + 1)))
    for i, (_, value, interval, *rest) in enumerate(rows):
        higher_is_better = rest[0] if rest else True
        color = "C3" if (value < 0) == higher_is_better and value != 0 else "C2"
        if interval is not None:
            ax.plot(interval, [i, i], color=color, linewidth=2)
        ax.plot([value], [i], marker="o", color=color)
    ax.set_yticks(range(len(rows)), [r[0] for r in rows], fontsize=7)
    ax.invert_yaxis()
    if zero:
        ax.axvline(0, color="grey", linestyle=":")
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    return fig
