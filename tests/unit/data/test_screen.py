"""The batch screen on synthetic champions: swaps and relabels found with their counts, clean batches left alone."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from keepfit.data.screen import LABEL_ISSUE, apply_screen, screen_batch
from keepfit.data.validate import QUARANTINE_COLUMNS
from keepfit.errors import DataError

K = 12
LABELS = [f"intent_{i:02d}" for i in range(K)]


def champion_probs(true: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A champion right ~90% of the time with realistic confidences: most rows confident, its errors mostly on
    a confusable neighbour class (i -> i + 1) and some of them confident too."""
    n = len(true)
    logits = rng.normal(0.0, 1.0, size=(n, K))
    logits[np.arange(n), true] += rng.normal(5.0, 1.5, size=n)
    logits[np.arange(n), (true + 1) % K] += rng.normal(1.5, 1.5, size=n)
    logits *= 1.3
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True)


def rows_of(given: np.ndarray) -> pd.DataFrame:
    n = len(given)
    return pd.DataFrame(
        {
            "row": np.arange(2, n + 2),
            "source": "batch.csv",
            "text": [f"ticket number {i}" for i in range(n)],
            "label": [LABELS[g] for g in given],
            "group": [f"C{i % 40}" for i in range(n)],
        }
    )


def world(seed: int, n_val: int = 600, n_batch: int = 600):
    rng = np.random.default_rng(seed)
    val_true = rng.integers(0, K, size=n_val)
    batch_true = rng.integers(0, K, size=n_batch)
    return rng, val_true, champion_probs(val_true, rng), batch_true


@pytest.mark.parametrize("seed", range(5))
def test_a_clean_batch_gets_few_flags_and_no_block(seed):
    rng, val_true, val_probs, true = world(seed)
    probs = champion_probs(true, rng)
    accuracy = (probs.argmax(axis=1) == true).mean()
    assert 0.85 < accuracy < 0.95  # the champion really is ~90% right, so ~10% of rows disagree with it

    result = screen_batch(rows_of(true), LABELS, probs, val_true=val_true, val_probs=val_probs)

    assert result.blocks == []
    assert len(result.flagged) / len(true) < 0.02
    assert result.kept.sum() == len(true) - len(result.flagged)
    if len(result.flagged) == 0:
        assert result.summary.startswith("no label issues")


def _swapped(seed: int, a: int = 3, b: int = 7, n_each: int = 50):
    rng, val_true, val_probs, true = world(seed)
    true = np.concatenate([true, np.full(n_each, a), np.full(n_each, b)])
    given = np.concatenate([true[: -2 * n_each], np.full(n_each, b), np.full(n_each, a)])
    probs = champion_probs(true, rng)
    return rows_of(given), probs, val_true, val_probs, true, given


@pytest.mark.parametrize("seed", range(5))
def test_two_swapped_labels_are_reported_as_that_pair_with_both_counts(seed):
    rows, probs, val_true, val_probs, true, given = _swapped(seed)
    result = screen_batch(rows, LABELS, probs, val_true=val_true, val_probs=val_probs)

    by_name = {b.name: b for b in result.blocks}
    assert set(by_name) == {"intent_03->intent_07", "intent_07->intent_03"}
    for block in by_name.values():
        assert block.kind == "swap"
        assert 40 <= block.count <= 55  # ~45 of the 50 swapped rows (the champion is right on ~90%) + a few
        assert block.expected < 5  # what its validation confusion predicts
        assert len(block.examples) == 3
    swapped = np.arange(len(given)) >= len(given) - 100
    flagged = ~result.kept
    assert flagged[swapped].mean() > 0.8
    assert flagged[~swapped].mean() < 0.02  # the clean part of the batch is left alone
    assert "'intent_03' and 'intent_07' look swapped" in result.summary or \
        "'intent_07' and 'intent_03' look swapped" in result.summary


def test_block_rows_are_flagged_even_when_unsure_but_rows_the_champion_agrees_with_stay():
    rows, probs, val_true, val_probs, true, given = _swapped(0)
    n = len(rows)
    # the last rows are intent_07 labelled intent_03: one the champion only leans on (0.45 for intent_07 vs 0.40
    # for the given intent_03), one it agrees with the given label
    unsure, agrees = n - 1, n - 2
    assert given[unsure] == 3 and true[unsure] == 7
    probs[unsure] = 0.15 / (K - 2)
    probs[unsure, 7], probs[unsure, 3] = 0.45, 0.40
    probs[agrees] = 0.05 / (K - 1)
    probs[agrees, given[agrees]] = 0.95
    result = screen_batch(rows, LABELS, probs, val_true=val_true, val_probs=val_probs)

    assert not result.kept[unsure] and result.kept[agrees]
    row = result.flagged.set_index("row").loc[int(rows["row"].iat[unsure])]
    assert row["reason"] == "block" and row["block"] == "intent_03->intent_07"
    assert row["suspected_label"] == "intent_07" and row["confidence"] == pytest.approx(0.45)
    assert result.min_confidence > 0.45  # on its own this row would not have been flagged


def test_a_one_way_block_is_a_suspected_relabel():
    rng, val_true, val_probs, true = world(11)
    true = np.concatenate([true, np.full(40, 5)])
    given = np.concatenate([true[:-40], np.full(40, 9)])  # an annotator filed forty intent_05 rows as intent_09
    result = screen_batch(rows_of(given), LABELS, champion_probs(true, rng), val_true=val_true, val_probs=val_probs)

    assert [(b.name, b.kind) for b in result.blocks] == [("intent_09->intent_05", "relabel")]
    assert result.blocks[0].count >= 32
    assert "rows labelled 'intent_09' look relabelled from 'intent_05'" in result.summary


def test_a_confidently_wrong_single_row_is_flagged_on_its_own():
    rng, val_true, val_probs, true = world(3)
    probs = champion_probs(true, rng)
    given = true.copy()
    given[0] = (true[0] + 6) % K
    probs[0] = 0.001 / (K - 1)
    probs[0, true[0]] = 0.999
    result = screen_batch(rows_of(given), LABELS, probs, val_true=val_true, val_probs=val_probs)

    first = result.flagged[result.flagged["row"] == 2]
    assert first[["reason", "suspected_label"]].values.tolist() == [["confident", LABELS[true[0]]]]


def test_reviewed_rows_are_never_flagged():
    rows, probs, val_true, val_probs, _, _ = _swapped(2)
    swapped = rows.tail(100)
    reviewed = set(zip(swapped["text"], swapped["label"], strict=True))
    result = screen_batch(rows, LABELS, probs, val_true=val_true, val_probs=val_probs, reviewed=reviewed)

    assert result.blocks == []
    assert result.kept[-100:].all()


def test_quarantine_rows_are_canonical_and_nothing_is_lost():
    rows, probs, val_true, val_probs, _, _ = _swapped(4)
    result = screen_batch(rows, LABELS, probs, val_true=val_true, val_probs=val_probs)

    kept, quarantine = apply_screen(rows, result, "quarantine")
    assert list(quarantine.columns) == QUARANTINE_COLUMNS
    assert len(kept) + len(quarantine) == len(rows)
    assert set(quarantine["reason"]) == {LABEL_ISSUE}
    in_block = quarantine[quarantine["detail"].str.contains("suspected swap")]
    assert len(in_block) >= 80
    assert "keepfit data review" in in_block["detail"].iat[0]
    assert set(kept["text"]).isdisjoint(quarantine["raw_text"])
    assert "group" in result.flagged.columns  # passthrough, so an accepted row can be written back whole

    everything, nothing = apply_screen(rows, result, "keep")
    assert len(everything) == len(rows) and len(nothing) == 0
    with pytest.raises(DataError, match="refused by the screen.*look swapped"):
        apply_screen(rows, result, "fail")


def test_fail_mode_lets_a_clean_batch_through():
    rng, val_true, val_probs, true = world(1)
    rows = rows_of(true)
    result = screen_batch(rows, LABELS, champion_probs(true, rng), val_true=val_true, val_probs=val_probs)
    kept, quarantine = apply_screen(rows, result, "fail")
    assert len(kept) + len(quarantine) == len(rows) and len(kept) >= 0.98 * len(rows)


def test_to_dict_is_json_ready():
    import json

    rows, probs, val_true, val_probs, _, _ = _swapped(0)
    report = screen_batch(rows, LABELS, probs, val_true=val_true, val_probs=val_probs).to_dict()
    assert json.loads(json.dumps(report))["blocks"][0]["kind"] == "swap"
    assert report["n_in_blocks"] >= 80


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r, p, vt, vp: (r.assign(label="brand_new"), p, vt, vp), "not among the champion's 12 labels"),
        (lambda r, p, vt, vp: (r, p[:, :5], vt, vp), r"probs has shape \(600, 5\), expected \(600, 12\)"),
        (lambda r, p, vt, vp: (r, p, vt[:0], vp[:0]), "needs the champion's validation truth"),
        (lambda r, p, vt, vp: (r.drop(columns=["source"]), p, vt, vp), "lack the canonical columns"),
        (lambda r, p, vt, vp: (r, -p, vt, vp), "negative or non-finite"),
    ],
)
def test_bad_inputs_are_clear_errors(change, message):
    rng, val_true, val_probs, true = world(0)
    args = change(rows_of(true), champion_probs(true, rng), val_true, val_probs)
    with pytest.raises(DataError, match=message):
        screen_batch(args[0], LABELS, args[1], val_true=args[2], val_probs=args[3])
