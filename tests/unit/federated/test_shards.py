"""Dealing rows to simulated clients (iid, label-skewed) and checking a client's own shard."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from keepfit.errors import DataError
from keepfit.federated import check_shard, deal_rows


def _labels(n: int, k: int = 6, seed: int = 0) -> pd.Series:
    return pd.Series(np.random.default_rng(seed).choice([f"l{i}" for i in range(k)], size=n))


@pytest.mark.parametrize("method", ["iid", "dirichlet"])
def test_every_row_goes_to_exactly_one_client_and_the_deal_is_seeded(method):
    labels = _labels(500)
    parts = deal_rows(labels, 5, method, alpha=0.3, seed=7)
    together = np.concatenate(parts)
    assert len(parts) == 5 and all(len(p) > 0 for p in parts)
    assert len(together) == 500 and np.array_equal(np.sort(together), np.arange(500))
    again = deal_rows(labels, 5, method, alpha=0.3, seed=7)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again, strict=True))
    other = deal_rows(labels, 5, method, alpha=0.3, seed=8)
    assert not all(np.array_equal(a, b) for a, b in zip(parts, other, strict=True))


def test_iid_shards_are_near_equal_and_dirichlet_shards_are_label_skewed():
    labels = _labels(3000, k=10)
    iid = deal_rows(labels, 5, "iid", seed=0)
    assert max(len(p) for p in iid) - min(len(p) for p in iid) <= 1

    def top_label_share(parts):  # mean over clients of the share of its most common label
        return np.mean([labels.iloc[p].value_counts(normalize=True).iloc[0] for p in parts])

    skewed = deal_rows(labels, 5, "dirichlet", alpha=0.1, seed=0)
    assert top_label_share(iid) < 0.15  # 10 balanced labels: about 0.1 each
    assert top_label_share(skewed) > 0.3


def test_tiny_skewed_deals_still_give_every_client_a_row():
    labels = pd.Series(["a"] * 3 + ["b"] * 3)
    parts = deal_rows(labels, 5, "dirichlet", alpha=0.01, seed=1)
    assert all(len(p) >= 1 for p in parts)
    assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(6))


def test_more_clients_than_rows_is_a_data_error():
    with pytest.raises(DataError, match=r"Cannot deal 3 training rows to 4 clients.*Lower federate.clients"):
        deal_rows(_labels(3), 4)


def test_a_shard_without_rows_or_with_unknown_labels_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match=r"no usable rows: expected at least one labelled row, got 0"):
        check_shard(pd.DataFrame({"text": [], "label": []}), ["neg", "pos"], tmp_path / "s.csv")
    rows = pd.DataFrame({"text": ["good", "meh", "bad"], "label": ["pos", "meh", "neg"]})
    with pytest.raises(DataError, match=r"1 label\(s\) the federation does not know: 'meh'.*Expected only"):
        check_shard(rows, ["neg", "pos"], "s.csv")
    kept = check_shard(rows.iloc[[0, 2]], ["neg", "pos"], "s.csv")
    assert kept["label"].tolist() == ["pos", "neg"]
