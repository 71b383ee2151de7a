"""Split properties: fractions, stratification per class, no group crossing, time order, given splits
honoured,
and the same rows with the same seed always give the same split."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from keepfit.config import KeepfitConfig
from keepfit.data.split import resolve_method, split_frame, split_rows
from keepfit.errors import DataError


def _cfg(**raw: object) -> KeepfitConfig:
    return KeepfitConfig.model_validate(raw)


def _rows(n: int = 1000, seed: int = 0, labels: tuple[str, ...] = ("a", "b", "c", "d")) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    p = np.array([0.5, 0.25, 0.15, 0.10])[: len(labels)]
    return pd.DataFrame(
        {
            "row": np.arange(2, n + 2),
            "source": "s.csv",
            "text": [f"text number {i}" for i in range(n)],
            "label": rng.choice(labels, size=n, p=p / p.sum()),
        }
    )


def _by_row(frame: pd.DataFrame) -> dict[int, str]:
    return dict(zip(frame["row"], frame["split"], strict=True))


def test_stratified_fractions_and_per_class_shares():
    frame = _rows()
    out = split_frame(frame, _cfg(split={"validation": 0.1, "test": 0.2}))
    assert out.method == "stratified"
    assert out.counts == {"train": 700, "validation": 100, "test": 200}
    overall = frame["label"].value_counts(normalize=True)
    for name in ("train", "validation", "test"):
        shares = out.frame[out.frame["split"] == name]["label"].value_counts(normalize=True)
        for label, share in overall.items():
            assert abs(shares[label] - share) < 0.02, (name, label)
    assert len(out.frame) == len(frame) and list(out.frame["row"]) == list(frame["row"])


def test_same_seed_same_split_in_any_row_order_and_other_seed_differs():
    frame = _rows()
    first = _by_row(split_rows(frame, _cfg()))
    shuffled = frame.sample(frac=1.0, random_state=3)
    assert _by_row(split_rows(shuffled, _cfg())) == first
    assert _by_row(split_rows(frame, _cfg())) == first
    assert _by_row(split_rows(frame, _cfg(split={"seed": 7}))) != first


def test_labels_too_small_to_stratify_go_to_train_with_a_warning():
    frame = pd.concat(
        [
            _rows(200),
            pd.DataFrame(
                {"row": [900, 901], "source": "s.csv", "text": ["r1", "r2"], "label": ["rare", "rare"]}
            ),
        ],
        ignore_index=True,
    )
    out = split_frame(frame, _cfg())
    assert set(out.frame[out.frame["label"] == "rare"]["split"]) == {"train"}
    assert any("rare" in w and "fewer than 3" in w for w in out.warnings)


def test_group_split_keeps_every_group_in_one_split():
    frame = _rows(600)
    frame["group"] = [f"g{i % 97}" for i in range(len(frame))]
    out = split_frame(frame, _cfg())
    assert out.method == "group"
    per_group = out.frame.groupby("group")["split"].nunique()
    assert per_group.max() == 1
    assert set(out.frame["split"]) == {"train", "validation", "test"}
    test_share = (out.frame["split"] == "test").mean()
    assert 0.03 < test_share < 0.2


def test_time_split_trains_on_the_past_and_tests_on_the_future():
    frame = _rows(100)
    days = pd.date_range("2024-01-01", periods=100, freq="D")
    frame["time"] = [str(d.date()) for d in days[np.random.default_rng(1).permutation(100)]]
    out = split_frame(frame, _cfg())
    assert out.method == "time"
    t = pd.to_datetime(out.frame["time"])
    train, val, test = (t[out.frame["split"] == s] for s in ("train", "validation", "test"))
    assert len(train) == 80 and len(val) == 10 and len(test) == 10
    assert train.max() < val.min() and val.max() < test.min()


def test_given_splits_are_honoured_as_is_and_bad_values_refused():
    frame = _rows(30)
    frame["split"] = ["train", "validation", "test"] * 10
    out = split_frame(frame, _cfg())
    assert out.method == "given" and list(out.frame["split"]) == list(frame["split"])
    frame.loc[0, "split"] = "holdout"
    with pytest.raises(DataError, match="holdout"):
        split_frame(frame, _cfg())


def test_iterative_stratification_for_multilabel():
    rng = np.random.default_rng(0)
    labels = [
        sorted(set(rng.choice(["x", "y", "z", "w"], size=rng.integers(1, 3)).tolist())) for _ in range(400)
    ]
    frame = pd.DataFrame(
        {"row": np.arange(2, 402), "source": "m", "text": [f"t{i}" for i in range(400)], "labels": labels}
    )
    out = split_frame(frame, _cfg(task="multi-label"))
    assert out.method == "iterative"
    # iterative stratification trades exact sizes for label balance: within a couple of rows
    assert all(abs(out.counts[k] - v) <= 2 for k, v in {"train": 320, "validation": 40, "test": 40}.items())
    exploded = out.frame.explode("labels")
    overall = exploded["labels"].value_counts(normalize=True)
    test_shares = exploded[exploded["split"] == "test"]["labels"].value_counts(normalize=True)
    assert all(abs(test_shares[k] - v) < 0.05 for k, v in overall.items())


def test_regression_random_split_spreads_the_target():
    frame = pd.DataFrame(
        {
            "row": np.arange(2, 502),
            "source": "r",
            "text": [f"t{i}" for i in range(500)],
            "target": np.arange(500, dtype=float),
        }
    )
    cfg = _cfg(task="regression", data={"target_column": "y"})
    out = split_frame(frame, cfg)
    assert out.method == "random" and out.counts == {"train": 400, "validation": 50, "test": 50}
    test_targets = out.frame[out.frame["split"] == "test"]["target"]
    assert test_targets.min() < 60 and test_targets.max() > 440  # quantile bins: the whole range is tested


def test_auto_resolution_order():
    frame = _rows(10)
    assert resolve_method(frame, _cfg()) == "stratified"
    assert resolve_method(frame.assign(time="2024-01-01"), _cfg()) == "time"
    assert resolve_method(frame.assign(time="2024-01-01", group="g"), _cfg()) == "group"
    assert resolve_method(frame.assign(group="g", split="train"), _cfg()) == "given"
    assert resolve_method(frame, _cfg(split={"method": "random"})) == "random"


def test_separate_validation_and_test_files_are_honoured_and_leaks_leave_train(tmp_path):
    from keepfit.data import check_files

    train = pd.DataFrame(
        {
            "text": [f"train text {i}" for i in range(40)] + ["this one leaks"],
            "label": ["a", "b"] * 20 + ["a"],
        }
    )
    test = pd.DataFrame({"text": ["this one leaks", "only in test"], "label": ["a", "b"]})
    train.to_csv(tmp_path / "train.csv", index=False)
    test.to_csv(tmp_path / "test.csv", index=False)
    result = check_files(tmp_path / "train.csv", _cfg(), test=tmp_path / "test.csv", split=True)
    kept = result.kept
    assert (kept["split"] == "test").sum() == 2 and set(kept[kept["split"] == "test"]["source"]) == {
        "test.csv"
    }
    assert (kept["split"] == "validation").sum() == 4  # 10% of the 40 training-file rows left after the leak
    leak = result.quarantine[result.quarantine["reason"] == "leakage"]
    assert leak["row"].tolist() == [42] and leak["source"].tolist() == ["train.csv"]
    assert leak["detail"].iat[0] == "same text as test row 2"
    assert result.n_in == 43 == len(kept) + len(result.quarantine)


def test_min_test_per_class_tops_up_small_classes_from_train():
    from keepfit.config import KeepfitConfig
    from keepfit.data.split import split_frame

    labels = [f"c{i % 30}" for i in range(600)]  # 20 rows per label: ~2 test rows each at 10%
    frame = pd.DataFrame({"row": range(2, 602), "source": "d.csv", "text": [f"t {i}" for i in range(600)],
                          "label": labels})
    plain = split_frame(frame, KeepfitConfig.model_validate({"split": {"method": "stratified"}})).frame
    config = KeepfitConfig.model_validate({"split": {"method": "stratified", "min_test_per_class": 5}})
    result = split_frame(frame, config)
    per_class = result.frame[result.frame["split"] == "test"].groupby("label").size()
    assert plain[plain["split"] == "test"].groupby("label").size().min() < 5
    assert per_class.min() >= 5 and len(per_class) == 30
    assert (result.frame["split"] == "validation").sum() == (plain["split"] == "validation").sum()
    assert any("min_test_per_class=5" in w for w in result.warnings)
