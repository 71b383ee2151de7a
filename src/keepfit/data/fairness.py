"""The groups of ``evaluate.fairness_columns``: read off a canonical table, checked before any work is done.

A fairness column travels from the data file to the snapshot as a ``slice:<name>`` column (see
:func:`keepfit.data.validate.slice_settings`), so it is also reported as a slice; an empty cell is the group
``(missing)``. Gaps between groups need at least two groups: a column that is not carried or holds one value is a
DataError saying what to do.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from keepfit.errors import DataError
from keepfit.types import SLICE_PREFIX

__all__ = ["MISSING_GROUP", "fairness_groups"]

MISSING_GROUP = "(missing)"


def fairness_groups(frame: pd.DataFrame, columns: Sequence[str], *, where: str) -> dict[str, np.ndarray]:
    """Per fairness column, the group of every row of ``frame``: ``{column: values [n] of str}``.

    ``where`` names the rows in messages (a file, a snapshot's split). Raises DataError when a column is not
    carried by ``frame`` or holds a single group.
    """
    out: dict[str, np.ndarray] = {}
    for name in columns:
        column = SLICE_PREFIX + name
        if column not in frame.columns:
            carried = sorted(str(c)[len(SLICE_PREFIX) :] for c in frame.columns if str(c).startswith(SLICE_PREFIX))
            raise DataError(
                f"{where}: evaluate.fairness_columns names {name!r}, expected as a column of the data, but these "
                f"rows do not carry it (group and slice columns carried: {carried or 'none'}). Add the column to "
                f"the data file or fix the name in keepfit.yaml; a snapshot made before the column was configured "
                "lacks it: run `keepfit data snapshot` again."
            )
        values = frame[column].astype(object).where(frame[column].notna(), MISSING_GROUP).astype(str).to_numpy()
        groups = np.unique(values)
        if len(groups) < 2:
            only = repr(str(groups[0])) if len(groups) else "nothing"
            raise DataError(
                f"{where}: fairness column {name!r} holds one group only ({only} on all {len(values)} rows); gaps "
                f"between groups need at least two. Add rows of other groups, or remove {name!r} from "
                "evaluate.fairness_columns."
            )
        out[name] = values
    return out
