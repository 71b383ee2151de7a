"""Slices: named subsets of the evaluated rows, from ``slice:<name>`` columns and text-length bins.

Text length is measured in **characters** of the canonical (normalised) ``text`` column: it needs no
tokenizer, is what a user sees, and stays the same across models. ``length_bins=[32, 64, 128]`` gives the
slices ``<=32``, ``33-64``, ``65-128`` and ``>128`` under the name ``length_chars``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from keepfit.errors import DataError
from keepfit.types import IMAGE, SLICE_PREFIX, TEXT

__all__ = ["LENGTH_SLICE", "MISSING", "length_bin_names", "slice_masks"]

LENGTH_SLICE = "length_chars"
MISSING = "(missing)"


def length_bin_names(edges: list[int]) -> list[str]:
    """Readable names of the length bins defined by sorted upper edges (characters)."""
    edges = sorted(set(int(e) for e in edges))
    names, lo = [], 0
    for e in edges:
        names.append(f"<={e}" if lo == 0 else f"{lo + 1}-{e}")
        lo = e
    names.append(f">{lo}" if edges else "all")
    return names


def _length_slices(texts: pd.Series, edges: list[int]) -> dict[str, np.ndarray]:
    edges = sorted(set(int(e) for e in edges))
    lengths = texts.fillna("").astype(str).str.len().to_numpy()
    which = np.searchsorted(np.asarray(edges), lengths, side="left")  # length == edge falls in the lower bin
    return {name: which == i for i, name in enumerate(length_bin_names(edges))}


def slice_masks(
    frame: pd.DataFrame | None,
    n: int,
    length_bins: list[int] | None = None,
    extra: dict[str, np.ndarray] | None = None,
) -> dict[str, dict[str, np.ndarray]]:
    """Boolean masks [n] per slice name and value: ``slice:<name>`` columns, length bins, ``extra``.

    Empty masks are left out. ``frame`` must have exactly ``n`` rows, aligned with the evaluated arrays.
    """
    out: dict[str, dict[str, np.ndarray]] = {}
    if frame is not None:
        if len(frame) != n:
            raise DataError(
                f"The frame has {len(frame)} rows but {n} examples were evaluated; pass the rows "
                "that produced the outputs, in the same order."
            )
        for column in frame.columns:
            if not str(column).startswith(SLICE_PREFIX):
                continue
            values = frame[column].astype(object).where(frame[column].notna(), MISSING).astype(str).to_numpy()
            out[str(column)[len(SLICE_PREFIX) :]] = {v: values == v for v in sorted(set(values))}
        if TEXT in frame.columns and IMAGE not in frame.columns and length_bins:  # an image's text is its path
            out[LENGTH_SLICE] = _length_slices(frame[TEXT], length_bins)
    if extra:
        out["group"] = {name: np.asarray(mask, dtype=bool) for name, mask in extra.items()}
    return {name: {v: m for v, m in values.items() if m.any()} for name, values in out.items()}
