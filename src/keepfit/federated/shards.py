"""Deal training rows to simulated clients (iid or label-skewed), and check a client's own shard.

Every row goes to exactly one client; the deal is a pure function of the seed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from keepfit.errors import DataError

__all__ = ["deal_rows", "check_shard", "MAX_DIRICHLET_DRAWS"]

MAX_DIRICHLET_DRAWS = 100  # label-skewed deals redrawn until no client is empty (tiny data: then rows are moved)


def deal_rows(
    labels: pd.Series, clients: int, method: str = "iid", *, alpha: float = 0.5, seed: int = 0
) -> list[np.ndarray]:
    """Row positions (into ``labels``) of each client, each sorted; together they hold every row exactly once.

    ``iid``: a seeded permutation cut into ``clients`` near-equal parts. ``dirichlet``: for each label, its rows
    are split between clients in shares drawn from Dirichlet(``alpha``) (Hsu et al. 2019), so a client sees few
    labels when ``alpha`` is small; draws are repeated until every client holds a row, else the largest
    clients each give one row to an empty one.
    """
    n = len(labels)
    if clients > n:
        raise DataError(
            f"Cannot deal {n} training rows to {clients} clients: expected at least one row per client. "
            "Lower federate.clients (or --clients), or add rows."
        )
    rng = np.random.default_rng(seed)
    if method == "iid":
        return [np.sort(part) for part in np.array_split(rng.permutation(n), clients)]
    if method != "dirichlet":
        raise DataError(f"Unknown shard method {method!r}: expected 'iid' or 'dirichlet'.")
    codes = pd.factorize(labels.astype(str), sort=True)[0]
    for _ in range(MAX_DIRICHLET_DRAWS):
        parts = _dirichlet_deal(codes, clients, alpha, rng)
        if min(len(p) for p in parts) > 0:
            return parts
    return _fill_empty(parts)


def _dirichlet_deal(codes: np.ndarray, clients: int, alpha: float, rng: np.random.Generator) -> list[np.ndarray]:
    owner = np.empty(len(codes), dtype=np.int64)
    for label in np.unique(codes):
        rows = rng.permutation(np.flatnonzero(codes == label))
        shares = rng.dirichlet(np.full(clients, alpha))
        cuts = (np.cumsum(shares)[:-1] * len(rows)).astype(int)
        for client, part in enumerate(np.split(rows, cuts)):
            owner[part] = client
    return [np.flatnonzero(owner == c) for c in range(clients)]


def _fill_empty(parts: list[np.ndarray]) -> list[np.ndarray]:
    parts = [p.copy() for p in parts]
    for empty in [i for i, p in enumerate(parts) if len(p) == 0]:
        largest = max(range(len(parts)), key=lambda i: len(parts[i]))
        parts[empty], parts[largest] = parts[largest][-1:], parts[largest][:-1]
    return [np.sort(p) for p in parts]


def check_shard(frame: pd.DataFrame, labels: list[str], source: str | Path) -> pd.DataFrame:
    """A client's validated rows (columns text, label), or a DataError saying what is wrong with its shard:
    no rows, or labels the federation does not know (the server's label list fixes the head's outputs)."""
    if len(frame) == 0:
        raise DataError(
            f"Shard {source} has no usable rows: expected at least one labelled row, got 0. Give this client "
            "rows (check its quarantine for rows set aside), or leave it out of the federation."
        )
    unknown = sorted(set(frame["label"].astype(str)) - set(labels))
    if unknown:
        shown = ", ".join(repr(x) for x in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
        raise DataError(
            f"Shard {source} has {len(unknown)} label(s) the federation does not know: {shown}. Expected only "
            f"the labels of the config ({len(labels)}: {', '.join(labels[:5])}{' ...' if len(labels) > 5 else ''}). "
            "Fix those rows, or add the labels to `labels:` in keepfit.yaml on the server and every client."
        )
    return frame[["text", "label"]].reset_index(drop=True)
