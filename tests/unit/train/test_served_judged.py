"""What is served is what was judged: the model folder carries its temperature, thresholds and target scaling,
the predictor applies them and cleans texts as the data check does, and evaluation does not apply them twice."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from keepfit.config import EvaluateConfig
from keepfit.data.normalize import NORMALIZATION_VERSION
from keepfit.errors import ModelError
from keepfit.evaluation import apply_temperature, evaluate_outputs
from keepfit.train import load_predictor, predict_file, train_model
from keepfit.train.postprocess import POSTPROCESS_FILE, load_postprocessing, save_postprocessing
from keepfit.train.predict import clean_texts
from keepfit.train.testing import (
    FILLER,
    KEYWORDS,
    all_texts,
    config_for,
    make_tiny_model,
    sentiment_frame,
    snapshot_of,
)

EVAL = EvaluateConfig(bootstrap=0)


def _noisy(frame: pd.DataFrame, seed: int, rate: float = 0.15) -> pd.DataFrame:
    """Labels flipped at ``rate``: the model (trained on clean rows) is over-confident on these rows, so a
    temperature can be fitted on them."""
    flip = np.random.default_rng(seed).random(len(frame)) < rate
    out = frame.copy()
    out.loc[flip, "label"] = out.loc[flip, "label"].map({"neg": "pos", "pos": "neg"})
    return out


def _multi_frame(n: int, seed: int, rate: float = 0.0) -> pd.DataFrame:
    """Filler words plus one keyword of each label in a random non-empty subset of {neg, pos, neu}; at
    ``rate`` one label of the row is toggled (label noise)."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        chosen = [x for x in KEYWORDS if rng.random() < 0.5] or [str(rng.choice(list(KEYWORDS)))]
        words = list(rng.choice(FILLER, size=int(rng.integers(2, 8)))) + [str(rng.choice(KEYWORDS[x])) for x in chosen]
        rng.shuffle(words)
        labels = set(chosen)
        if rng.random() < rate:
            labels ^= {str(rng.choice(list(KEYWORDS)))}
        rows.append({"text": " ".join(words), "labels": sorted(labels or chosen)})
    return pd.DataFrame(rows)


def _class_ids(frame: pd.DataFrame, labels: list[str]) -> np.ndarray:
    return np.array([labels.index(x) for x in frame["label"]])


def _copy(folder, tmp_path):
    return shutil.copytree(folder, tmp_path / "model")


@pytest.fixture(scope="module")
def noisy(tiny_model, tmp_path_factory):
    snap = snapshot_of(sentiment_frame(200, 1), _noisy(sentiment_frame(80, 2), 12), _noisy(sentiment_frame(80, 3), 13))
    run = tmp_path_factory.mktemp("noisy") / "run"
    return snap, train_model(snap, config_for(tiny_model, epochs=3), run, progress=False)


@pytest.fixture(scope="module")
def multi(tiny_model, tmp_path_factory):
    snap = snapshot_of(_multi_frame(200, 1), _multi_frame(80, 2, 0.2), _multi_frame(80, 3, 0.2), task="multi-label")
    run = tmp_path_factory.mktemp("multi") / "run"
    return snap, train_model(snap, config_for(tiny_model, task="multi-label", epochs=4), run, progress=False)


def test_training_saves_the_temperature_that_evaluation_fits_on_validation(noisy, tmp_path):
    snap, trained = noisy
    post = load_postprocessing(trained.model_dir)
    assert post.saved and post.task == "single-label" and post.labels == ("neg", "pos")
    assert post.temperature is not None and 0.06 < post.temperature < 19  # a fit, not a search bound
    saved = json.loads((trained.model_dir / POSTPROCESS_FILE).read_text())
    assert saved["version"] == 1 and saved["thresholds"] is None
    assert saved["text_normalization"] == NORMALIZATION_VERSION
    # evaluation of the raw model on the same validation rows fits the same temperature
    raw_dir = _copy(trained.model_dir, tmp_path)
    (raw_dir / POSTPROCESS_FILE).unlink()
    raw = load_predictor(raw_dir, precision="fp32")
    val = raw.predict(snap.validation["text"].tolist()).outputs
    test = raw.predict(snap.test["text"].tolist()).outputs
    labels = raw.labels
    result = evaluate_outputs(
        "single-label",
        labels,
        _class_ids(snap.test, labels),
        test,
        config=EVAL,
        validation=(_class_ids(snap.validation, labels), val),
    )
    assert result.calibration["temperature"] == pytest.approx(post.temperature, rel=1e-2)
    assert result.calibration["temperature_source"] == "fitted on validation (not served)"


def test_served_probabilities_equal_the_calibrated_ones_evaluation_reported(noisy, tmp_path):
    snap, trained = noisy
    folder = _copy(trained.model_dir, tmp_path)
    (folder / POSTPROCESS_FILE).unlink()
    texts, val_texts = snap.test["text"].tolist(), snap.validation["text"].tolist()
    raw = load_predictor(folder, precision="fp32")
    labels = raw.labels
    y, y_val = _class_ids(snap.test, labels), _class_ids(snap.validation, labels)
    raw_out = raw.predict(texts).outputs
    judged = evaluate_outputs(
        "single-label", labels, y, raw_out, config=EVAL, validation=(y_val, raw.predict(val_texts).outputs)
    )
    temperature = judged.calibration["temperature"]

    save_postprocessing(folder, temperature=temperature)
    preds = load_predictor(folder, precision="fp32").predict(texts)
    assert preds.temperature == pytest.approx(temperature)
    np.testing.assert_allclose(preds.outputs, apply_temperature("single-label", raw_out, temperature), atol=1e-5)
    assert (preds.outputs.argmax(1) == raw_out.argmax(1)).all()  # top-1 unchanged
    assert np.abs(preds.outputs.max(1) - raw_out.max(1)).max() > 1e-3  # the confidence did change
    assert [s[0] for s in preds.top_k_scores] == pytest.approx(preds.outputs.max(1).tolist())

    # evaluating what is served: the reported "after" is now the headline, nothing is refitted
    served = evaluate_outputs(
        "single-label",
        labels,
        y,
        preds.outputs,
        config=EVAL,
        temperature=preds.temperature,
        validation=(y_val, load_predictor(folder, precision="fp32").predict(val_texts).outputs),
    )
    cal = served.calibration
    assert cal["temperature_source"] == "served" and cal["temperature"] == pytest.approx(temperature)
    assert served.headline["ece"] == pytest.approx(judged.calibration["ece_after"], abs=1e-6)
    assert cal["ece"] == pytest.approx(judged.calibration["ece"], abs=1e-6)
    assert cal["nll_after"] == pytest.approx(judged.calibration["nll_after"], abs=1e-5)
    assert served.headline["accuracy"] == judged.headline["accuracy"]


def test_multi_label_folder_predicts_with_its_saved_thresholds(multi, tmp_path):
    snap, trained = multi
    folder = _copy(trained.model_dir, tmp_path)
    post = load_postprocessing(folder)
    assert post.thresholds is not None and len(post.thresholds) == 3
    assert all(0.05 <= t <= 0.95 for t in post.thresholds)
    texts = snap.test["text"].tolist()
    before = load_predictor(folder, precision="fp32").predict(texts)
    np.testing.assert_allclose(before.thresholds, post.thresholds)

    # move the first label's threshold to the median of its probabilities: about half the rows predict it
    p = before.outputs[:, 0]
    cut = float(np.median(p))
    save_postprocessing(folder, thresholds=dict(zip(before.labels, [cut, *post.thresholds[1:]], strict=True)))
    after = load_predictor(folder, precision="fp32").predict(texts)
    np.testing.assert_allclose(after.outputs, before.outputs, atol=1e-6)  # probabilities are untouched
    assert after.thresholds[0] == pytest.approx(cut)
    assert after.decisions()[:, 0].sum() == (p >= cut).sum()
    assert (after.decisions()[:, 0] != before.decisions()[:, 0]).any()

    src, out = tmp_path / "in.csv", tmp_path / "out.csv"
    snap.test[["text"]].to_csv(src, index=False)
    predict_file(folder, src, out)  # at the machine's own precision, so compare with a predictor at it
    p_auto = load_predictor(folder).predict(texts).outputs[:, 0]
    written = pd.read_csv(out, keep_default_na=False)
    assert written["label"].str.split("|").apply(lambda xs: before.labels[0] in xs).tolist() == list(p_auto >= cut)

    # evaluation uses the served thresholds, even with validation outputs that would tune others
    y = np.array([[lab in row for lab in after.labels] for row in snap.test["labels"]], dtype=int)
    result = evaluate_outputs(
        "multi-label",
        after.labels,
        y,
        after.outputs,
        config=EVAL,
        thresholds=after.thresholds,
        validation=(y, after.outputs),
    )
    assert result.thresholds[after.labels[0]] == pytest.approx(cut)
    assert result.settings["threshold_source"] == "served"
    assert [after.labels[0] in row for row in result.predicted] == list(p >= cut)


def test_regression_scaling_round_trips(tiny_model, tmp_path):
    def frame(n, seed):
        f = sentiment_frame(n, seed)
        return pd.DataFrame({"text": f["text"], "target": np.where(f["label"] == "pos", 110.0, 90.0)})

    snap = snapshot_of(frame(80, 1), frame(30, 2), frame(30, 3), task="regression")
    trained = train_model(snap, config_for(tiny_model, task="regression", epochs=1), tmp_path / "run", progress=False)
    post = load_postprocessing(trained.model_dir)
    assert post.target_mean == pytest.approx(100.0, abs=2.0) and post.target_std == pytest.approx(10.0, abs=1.0)
    assert post.temperature is None and post.thresholds is None
    meta = json.loads((trained.model_dir / "keepfit.json").read_text())
    assert (post.target_mean, post.target_std) == (meta["target_mean"], meta["target_std"])

    texts = snap.test["text"].tolist()
    predictor = load_predictor(trained.model_dir, precision="fp32")
    base = predictor.predict(texts).outputs
    np.testing.assert_allclose(
        base, predictor.logits(texts).reshape(-1).numpy() * post.target_std + post.target_mean, rtol=1e-6
    )
    save_postprocessing(trained.model_dir, target_mean=post.target_mean + 10.0, target_std=post.target_std * 2)
    moved = load_predictor(trained.model_dir, precision="fp32").predict(texts).outputs
    np.testing.assert_allclose(moved, (base - post.target_mean) * 2 + post.target_mean + 10.0, rtol=1e-5)


def test_old_folder_without_the_file_loads_with_defaults_and_a_note(multi, tmp_path, caplog):
    snap, trained = multi
    folder = _copy(trained.model_dir, tmp_path)
    (folder / POSTPROCESS_FILE).unlink()
    with caplog.at_level(logging.WARNING, logger="keepfit.train"):
        predictor = load_predictor(folder, precision="fp32")
    assert POSTPROCESS_FILE in caplog.text and "0.5 thresholds" in caplog.text
    texts = snap.test["text"].tolist()[:10]
    preds = predictor.predict(texts)
    assert preds.temperature is None and preds.thresholds.tolist() == [0.5, 0.5, 0.5]
    np.testing.assert_allclose(preds.outputs, torch.sigmoid(predictor.logits(texts)).numpy(), atol=1e-6)
    assert not predictor.postprocessing.saved


def test_bad_or_foreign_post_processing_is_refused_with_the_fix(multi, noisy, tmp_path):
    _, trained = multi
    folder = _copy(trained.model_dir, tmp_path)
    with pytest.raises(ModelError, match="positive finite"):
        save_postprocessing(folder, temperature=0.0)
    with pytest.raises(ModelError, match="missing"):
        save_postprocessing(folder, thresholds={"neg": 0.4})
    with pytest.raises(ModelError, match="strictly between 0 and 1"):
        save_postprocessing(folder, thresholds=[0.4, 0.5, 1.0])
    with pytest.raises(ModelError, match="multi-label models only"):
        save_postprocessing(noisy[1].model_dir, thresholds=[0.4, 0.6])
    body = json.loads((folder / POSTPROCESS_FILE).read_text())
    (folder / POSTPROCESS_FILE).write_text(json.dumps(body | {"labels": ["a", "b"]}))
    with pytest.raises(ModelError, match="belongs to another model"):
        load_predictor(folder)
    (folder / POSTPROCESS_FILE).write_text(json.dumps(body | {"version": 99}))
    with pytest.raises(ModelError, match="Upgrade keepfit"):
        load_predictor(folder)


MESSY = "the MOVIE\u0007 was  re\u0301ally\u200b  great\t\n"  # control char, NFD accent, zero-width space, runs


def test_a_messy_text_predicts_as_its_cleaned_form(tmp_path):
    # a tokenizer that only lowercases: without the cleaning, the messy text would tokenize differently
    folder = make_tiny_model(tmp_path / "plain", [*all_texts(), "réally"], bert_normalizer=False)
    predictor = load_predictor(folder, precision="fp32")
    clean = clean_texts([MESSY])[0]
    assert clean == "the MOVIE was r\u00e9ally great"
    raw_ids = predictor.tokenizer(MESSY)["input_ids"]
    assert raw_ids != predictor.tokenizer(clean)["input_ids"]  # so the assertion below can fail
    out = predictor.predict([MESSY, clean]).outputs
    np.testing.assert_array_equal(out[0], out[1])

    src, dst = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    pd.DataFrame({"text": [MESSY, clean]}).to_json(src, orient="records", lines=True, force_ascii=False)
    predict_file(folder, src, dst)
    written = pd.read_json(dst, lines=True)
    assert written["text"].tolist() == [MESSY, clean]  # the input column comes back as it was given
    assert written["score"][0] == written["score"][1] and written["label"][0] == written["label"][1]


def test_cleaning_is_the_data_checks_own(tmp_path):
    from keepfit.config import KeepfitConfig
    from keepfit.data import check_data

    texts = [MESSY, " caf\u0065\u0301  au\u00a0lait ", "tab\there\x00and\x1fthere", "plain text"]
    src = tmp_path / "rows.csv"
    pd.DataFrame({"text": texts, "label": ["a", "b", "a", "b"]}).to_csv(src, index=False)
    config = KeepfitConfig.model_validate({"task": "single-label", "model": {"name": "x"}})
    kept = check_data(src, config).kept
    assert kept["text"].tolist() == clean_texts(texts)


def test_head_only_strategy_trains_at_head_lr(tiny_model, easy_snapshot, tmp_path, monkeypatch):
    import keepfit.train.loop as loop

    made = []

    def spy(model, config, **kw):
        made.append((model, loop_build(model, config, **kw)))
        return made[-1][1]

    loop_build = loop.build_optimizer
    monkeypatch.setattr(loop, "build_optimizer", spy)
    config = config_for(tiny_model, strategy="head", lr=1e-4, head_lr=3e-2, epochs=1)
    train_model(easy_snapshot, config, tmp_path / "run", progress=False)
    ((model, optimizer),) = made
    assert type(model).__name__ == "HeadModel"
    assert {g["initial_lr"] for g in optimizer.param_groups} == {3e-2}
    trained = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert trained == {id(p) for p in model.parameters()}
