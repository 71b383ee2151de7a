"""Kamiran-Calders reweighing: hand-checked weights, the loss they weight, and a tiny-model fit through the loop."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from keepfit.config import KeepfitConfig
from keepfit.train.losses import task_loss
from keepfit.train.reweigh import reweighing_weights, training_row_weights
from keepfit.train.testing import config_for, sentiment_frame, snapshot_of


def test_weights_match_the_hand_computed_ratios():
    # n = 8; group a: 4 rows (3 pos, 1 neg), group b: 4 rows (1 pos, 3 neg); P(pos) = P(neg) = 1/2
    groups = np.array(list("aaaabbbb"))
    labels = np.array(["pos", "pos", "pos", "neg", "pos", "neg", "neg", "neg"])
    w = reweighing_weights([groups], labels)
    # (a, pos): 4 * 4 / (8 * 3) = 2/3; (a, neg): 4 * 4 / (8 * 1) = 2; likewise for b mirrored
    np.testing.assert_allclose(w, [2 / 3, 2 / 3, 2 / 3, 2, 2, 2 / 3, 2 / 3, 2 / 3])
    assert w.sum() == pytest.approx(8)
    # in the weighted data each group has the overall label distribution: group and label are independent
    for g in "ab":
        share = w[(groups == g) & (labels == "pos")].sum() / w[groups == g].sum()
        assert share == pytest.approx(0.5)


def test_several_columns_form_joint_groups():
    region = np.array(["n", "n", "s", "s"])
    channel = np.array(["x", "y", "x", "y"])
    labels = np.array(["p", "q", "p", "p"])
    w = reweighing_weights([region, channel], labels)
    # every (region, channel) group has one row: n_g = 1, n_gy = 1 -> w = n_y / n
    np.testing.assert_allclose(w, [3 / 4, 1 / 4, 3 / 4, 3 / 4])


def test_row_weights_weight_the_loss_and_its_gradients():
    torch.manual_seed(0)
    logits = torch.randn(4, 3, requires_grad=True)
    target = torch.tensor([0, 1, 2, 1])
    plain = task_loss(logits, target, "single-label")
    ones = task_loss(logits, target, "single-label", row_weights=torch.ones(4))
    assert ones.item() == pytest.approx(plain.item())
    weights = torch.tensor([3.0, 0.0, 0.5, 0.5])
    weighted = task_loss(logits, target, "single-label", row_weights=weights)
    per_row = torch.nn.functional.cross_entropy(logits, target, reduction="none")
    assert weighted.item() == pytest.approx(((weights * per_row).sum() / weights.sum()).item())
    (grad,) = torch.autograd.grad(weighted, logits)
    assert torch.all(grad[1] == 0) and grad[0].abs().sum() > 0  # a weight-0 row gets no gradient


def _grouped(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    """The easy task with a region column in which "south" rows are mostly negative."""
    rng = np.random.default_rng(seed)
    south = np.where(frame["label"] == "neg", rng.uniform(size=len(frame)) < 0.8, rng.uniform(size=len(frame)) < 0.2)
    return frame.assign(**{"slice:region": np.where(south, "south", "north")})


def test_a_tiny_fit_trains_with_the_weights_in_its_loss(tiny_model, tmp_path):
    from keepfit.train import train_model
    from keepfit.train.loop import _loss, build_job

    snap = snapshot_of(*(_grouped(sentiment_frame(n, s), s) for n, s in ((160, 1), (40, 2), (40, 3))))
    raw = config_for(tiny_model, epochs=2).model_dump(mode="json")
    raw["train"]["fairness_reweight"], raw["evaluate"]["fairness_columns"] = True, ["region"]
    cfg = KeepfitConfig.model_validate(raw)
    job = build_job(snap, cfg, tmp_path / "job", init_from=None, teacher=None, replay=None,
                    device=torch.device("cpu"))
    expected = training_row_weights(snap.train.reset_index(drop=True), ["region"])
    assert torch.equal(job.row_weights, expected) and job.row_weights.std() > 0.1
    rows = np.arange(32)
    logits = job.model(**job.inputs(rows)).logits
    weighted = _loss(job, logits, rows)
    job.row_weights = None
    assert abs(weighted.item() - _loss(job, logits, rows).item()) > 1e-4  # the weights reach the loss
    result = train_model(snap, cfg, tmp_path / "run", progress=False)
    assert result.model_dir.exists() and np.isfinite(result.history[-1]["train_loss"])
