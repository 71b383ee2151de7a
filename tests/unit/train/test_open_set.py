"""Open-set rejection in the train stage: the abstain threshold is chosen on in-scope validation rows, saved with
the model, read back, checked, and applied by the predictor."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
import torch

from keepfit.errors import ModelError
from keepfit.evaluation.open_set import choose_abstain_threshold
from keepfit.train import load_predictor, train_model
from keepfit.train.interpolate import interpolate_candidate
from keepfit.train.postprocess import POSTPROCESS_FILE, fit_postprocessing, load_postprocessing, save_postprocessing
from keepfit.train.predict import Predictions, prediction_columns
from keepfit.train.testing import config_for, sentiment_frame, snapshot_of

LABELS = ["a", "b", "oos"]


def _folder(tmp_path, task: str = "single-label", labels: list[str] = LABELS):
    """A model folder as far as post-processing reads one: its keepfit.json."""
    (tmp_path / "keepfit.json").write_text(json.dumps({"task": task, "labels": labels}))
    return tmp_path


def _top(logits: torch.Tensor, temperature: float | None) -> np.ndarray:
    return torch.softmax(logits / (temperature or 1.0), dim=-1).max(dim=-1).values.numpy()


def test_the_threshold_answers_exactly_the_target_share_of_distinct_scores():
    scores = np.random.default_rng(0).permutation(np.linspace(0.40, 0.99, 100))
    t = choose_abstain_threshold(scores, 0.95)
    assert int((scores >= t).sum()) == 95
    assert int((scores >= choose_abstain_threshold(scores, 0.5)).sum()) == 50
    # 0.951 of 100 rows is 95.1: at least that many means 96
    assert int((scores >= choose_abstain_threshold(scores, 0.951)).sum()) == 96


def test_ties_answer_at_least_the_target_and_edge_cases_never_abstain():
    scores = np.array([0.9] * 90 + [0.6] * 10)
    assert choose_abstain_threshold(scores, 0.9) == 0.9
    assert choose_abstain_threshold(scores, 0.95) == 0.6  # 95 rows need the 0.6 ones, so all 100 are answered
    assert choose_abstain_threshold(scores, 1.0) is None
    assert choose_abstain_threshold(np.zeros(0), 0.95) is None
    saturated = choose_abstain_threshold(np.ones(20, dtype=np.float32), 0.95)
    assert saturated < 1 and (np.ones(20, dtype=np.float32) >= saturated).all()


def test_fit_chooses_on_in_scope_rows_only():
    # 100 in-scope rows, confident to different degrees, and 30 out-of-scope rows the model is unsure about
    strength = torch.linspace(0.5, 5.0, 100)
    in_scope = torch.stack([strength, torch.zeros(100), torch.zeros(100)], dim=1)
    in_targets = torch.zeros(100, dtype=torch.long)
    in_targets[::7] = 1  # some wrong rows, so that the temperature is determined
    unsure = torch.tensor([[0.2, 0.1, 0.15]]).repeat(30, 1)
    logits = torch.cat([in_scope, unsure])
    targets = torch.cat([in_targets, torch.full((30,), 2)])

    post = fit_postprocessing("single-label", LABELS, logits, targets, out_of_scope_label="oos")
    assert post.out_of_scope_label == "oos" and post.in_scope_recall == 0.95
    assert int((_top(in_scope, post.temperature) >= post.abstain_threshold).sum()) == 95
    # counted over all 130 rows the unsure out-of-scope rows would have lowered it below every in-scope row
    blind = fit_postprocessing("single-label", LABELS, logits, targets)
    assert blind.out_of_scope_label is None
    assert (_top(in_scope, blind.temperature) >= blind.abstain_threshold).all()
    strict = fit_postprocessing("single-label", LABELS, logits, targets, in_scope_recall=0.8, out_of_scope_label="oos")
    assert int((_top(in_scope, strict.temperature) >= strict.abstain_threshold).sum()) == 80


def test_no_threshold_for_other_tasks_no_rows_recall_one_or_an_unknown_label(caplog):
    logits = torch.randn(40, 3, generator=torch.Generator().manual_seed(0))
    targets = torch.randint(0, 3, (40,), generator=torch.Generator().manual_seed(1))
    assert fit_postprocessing("single-label", LABELS, logits, targets, in_scope_recall=1.0).abstain_threshold is None
    assert fit_postprocessing("single-label", LABELS, logits[:0], targets[:0]).abstain_threshold is None
    multi = fit_postprocessing("multi-label", LABELS, logits, (logits > 0).int())
    assert multi.abstain_threshold is None and multi.thresholds is not None
    regression = fit_postprocessing("regression", [], logits[:, :1], logits[:, 0], out_of_scope_label="oos")
    assert regression.abstain_threshold is None and regression.out_of_scope_label is None
    unknown = fit_postprocessing("single-label", LABELS, logits, targets, out_of_scope_label="none")
    assert unknown.out_of_scope_label is None and unknown.abstain_threshold is not None
    assert "'none' is not one of the model's labels" in caplog.text


def test_threshold_and_label_round_trip_through_the_file(tmp_path):
    folder = _folder(tmp_path)
    save_postprocessing(folder, abstain_threshold=0.62, in_scope_recall=0.9, out_of_scope_label="oos")
    post = load_postprocessing(folder)
    assert (post.abstain_threshold, post.in_scope_recall, post.out_of_scope_label) == (0.62, 0.9, "oos")
    save_postprocessing(folder, temperature=1.5)  # other values leave the open-set ones as saved
    again = load_postprocessing(folder)
    assert (again.temperature, again.abstain_threshold, again.out_of_scope_label) == (1.5, 0.62, "oos")
    save_postprocessing(folder, abstain_threshold=0.7)  # set by hand: not chosen for a recall
    assert load_postprocessing(folder).in_scope_recall is None


def test_a_file_without_the_open_set_fields_loads_without_abstaining(tmp_path):
    folder = _folder(tmp_path)
    old = {"version": 1, "task": "single-label", "labels": LABELS, "temperature": 1.3, "thresholds": None,
           "target_mean": 0.0, "target_std": 1.0, "text_normalization": 1, "fitted_on": "validation split"}
    (folder / POSTPROCESS_FILE).write_text(json.dumps(old))
    post = load_postprocessing(folder)
    assert post.temperature == 1.3
    assert (post.abstain_threshold, post.in_scope_recall, post.out_of_scope_label) == (None, None, None)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("abstain_threshold", 1.0, "strictly between 0 and 1"),
        ("abstain_threshold", 0, "strictly between 0 and 1"),
        ("abstain_threshold", "0.5", "strictly between 0 and 1"),
        ("abstain_threshold", True, "strictly between 0 and 1"),
        ("in_scope_recall", 1.5, "share in (0, 1]"),
        ("out_of_scope_label", "other", "must be one of the labels"),
    ],
)
def test_bad_open_set_values_in_the_file_are_refused(tmp_path, field, value, message):
    folder = _folder(tmp_path)
    body = {"version": 1, "task": "single-label", "labels": LABELS, field: value}
    (folder / POSTPROCESS_FILE).write_text(json.dumps(body))
    with pytest.raises(ModelError, match=re.escape(message)):
        load_postprocessing(folder)


def test_saving_open_set_values_for_another_task_or_out_of_range_is_refused(tmp_path):
    (tmp_path / "multi").mkdir()
    with pytest.raises(ModelError, match="single-label models only"):
        save_postprocessing(_folder(tmp_path / "multi", task="multi-label"), abstain_threshold=0.5)
    with pytest.raises(ModelError, match="strictly between 0 and 1"):
        save_postprocessing(_folder(tmp_path), abstain_threshold=float("nan"))
    assert not (tmp_path / POSTPROCESS_FILE).exists(), "nothing is written when a value is refused"


def _preds(outputs, task="single-label", **open_set) -> Predictions:
    outputs = np.asarray(outputs, dtype=float)
    return Predictions(task, LABELS, outputs, 1.0, **open_set)


def test_predictions_abstain_below_the_threshold_and_on_the_out_of_scope_label():
    outputs = [[0.70, 0.20, 0.10], [0.45, 0.40, 0.15], [0.10, 0.10, 0.80], [0.30, 0.50, 0.20]]
    both = _preds(outputs, abstain_threshold=0.5, out_of_scope_label="oos")
    assert both.abstained().tolist() == [False, True, True, False]
    assert _preds(outputs, abstain_threshold=0.5).abstained().tolist() == [False, True, False, False]
    assert _preds(outputs, out_of_scope_label="oos").abstained().tolist() == [False, False, True, False]
    assert not _preds(outputs).abstained().any()
    multi = _preds(outputs, task="multi-label", abstain_threshold=0.5)
    assert multi.abstained().shape == (4,) and not multi.abstained().any()
    assert len(_preds(np.zeros((0, 3)), abstain_threshold=0.5).abstained()) == 0
    columns = prediction_columns(both)
    assert columns["abstained"] == [False, True, True, False]
    assert columns["label"] == ["a", "a", "oos", "b"], "the label column keeps the best guess"
    assert "abstained" not in prediction_columns(multi)


def _with_neutral(n: int, seed: int, noise: float = 0.0) -> pd.DataFrame:
    """Three keyword labels; at ``noise`` neg and pos swap, so that validation determines a temperature (the
    model would separate clean rows perfectly and saturate)."""
    frame = sentiment_frame(n, seed, ("neg", "pos", "neu"))
    flip = (np.random.default_rng(seed).random(n) < noise) & (frame["label"] != "neu")
    frame.loc[flip, "label"] = frame.loc[flip, "label"].map({"neg": "pos", "pos": "neg"})
    return frame


@pytest.fixture(scope="module")
def open_set_fit(tiny_model, tmp_path_factory):
    """The tiny model fitted on three labels, "neu" declared out of scope."""
    snap = snapshot_of(_with_neutral(150, 1), _with_neutral(120, 2, noise=0.15), _with_neutral(60, 3))
    config = config_for(tiny_model, epochs=6)
    config = config.model_copy(update={"data": config.data.model_copy(update={"out_of_scope_label": "neu"})})
    run = tmp_path_factory.mktemp("open_set") / "run"
    return snap, config, train_model(snap, config, run, progress=False)


def test_a_fit_saves_a_threshold_chosen_on_in_scope_validation_rows(open_set_fit):
    snap, _, trained = open_set_fit
    saved = json.loads((trained.model_dir / POSTPROCESS_FILE).read_text())
    assert saved["out_of_scope_label"] == "neu" and saved["in_scope_recall"] == 0.95
    assert 0 < saved["abstain_threshold"] < 1
    preds = load_predictor(trained.model_dir, precision="fp32").predict(snap.validation["text"].tolist())
    assert preds.abstain_threshold == saved["abstain_threshold"] and preds.out_of_scope_label == "neu"
    in_scope = (snap.validation["label"] != "neu").to_numpy()
    answered = preds.outputs[in_scope].max(axis=1) >= preds.abstain_threshold
    assert answered.sum() == pytest.approx(np.ceil(0.95 * in_scope.sum()), abs=1)  # re-batched forward: ~1e-6 apart
    assert not answered.all(), "the threshold bites: the least confident in-scope rows abstain"
    predicted_neu = preds.outputs.argmax(axis=1) == preds.labels.index("neu")
    assert predicted_neu.any() and preds.abstained()[predicted_neu].all()


def test_interpolation_refits_the_threshold_for_the_candidates_settings(open_set_fit, tmp_path):
    snap, _, trained = open_set_fit
    val = snap.validation
    result = interpolate_candidate(
        trained.model_dir, trained.model_dir, val["text"].tolist(), val["label"].tolist(), tmp_path / "mix",
        setting=0.5,
    )
    post = load_postprocessing(result.model_dir)
    assert post.out_of_scope_label == "neu" and post.in_scope_recall == 0.95
    assert post.abstain_threshold == pytest.approx(load_postprocessing(trained.model_dir).abstain_threshold, rel=1e-2)


def test_the_fits_evaluation_reports_the_open_set_of_the_served_model(open_set_fit, tmp_path):
    from keepfit.pipeline import _evaluate_model

    snap, config, trained = open_set_fit
    result = _evaluate_model(config, trained.model_dir, snap, tmp_path / "evaluation").result
    preds = load_predictor(trained.model_dir).predict(snap.test["text"].tolist())
    abstained, oos = preds.abstained(), (snap.test["label"] == "neu").to_numpy()
    assert result.open_set["abstain_threshold"] == preds.abstain_threshold
    assert result.headline["open_set.oos_recall"] == pytest.approx(abstained[oos].mean())
    assert result.headline["open_set.answered_share"] == pytest.approx(1 - abstained[~oos].mean())
    saved = json.loads((tmp_path / "evaluation" / "evaluation.json").read_text())
    key = "open_set.in_scope_accuracy"
    assert saved["headline"][key] == pytest.approx(result.headline[key])
