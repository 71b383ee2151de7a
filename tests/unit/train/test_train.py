"""Training: convergence, strategies, tasks, run folder, warm start and distillation."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from keepfit.errors import ModelError
from keepfit.train import load_predictor, resolve_model_path, train_model
from keepfit.train.losses import focal_distillation_loss, task_loss
from keepfit.train.model import head_linear, load_model
from keepfit.train.testing import config_for, sentiment_frame, snapshot_of


def _accuracy(model_dir, frame: pd.DataFrame) -> float:
    preds = load_predictor(model_dir, precision="fp32").predict(frame["text"].tolist())
    return float((np.array(preds.labels)[preds.outputs.argmax(1)] == frame["label"].to_numpy()).mean())


def test_full_fine_tuning_learns_an_easy_task(trained, easy_snapshot):
    assert _accuracy(trained.model_dir, easy_snapshot.test) >= 0.9  # chance is 0.5
    assert trained.best_metric >= 0.9
    assert trained.labels == ["neg", "pos"]
    assert trained.padding_overhead < 1.3


def test_run_folder_layout(trained):
    run = trained.run_dir
    assert (run / "config.yaml").exists() and (run / "train.log").read_text()
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 8 and json.loads(lines[-1])["epoch"] == 8.0
    assert "validation_accuracy" in json.loads(lines[0])
    steps = list((run / "checkpoints").glob("step-*"))
    assert len(steps) == 1 and (run / "checkpoints" / "best" / "model.safetensors").exists()
    best = load_file(str(run / "checkpoints" / "best" / "model.safetensors"))
    exported = load_file(str(trained.model_dir / "model.safetensors"))
    assert torch.equal(best["classifier.weight"], exported["classifier.weight"])


def test_lora_trains_and_exports_plain_weights(tiny_model, easy_snapshot, tmp_path):
    result = train_model(
        easy_snapshot,
        config_for(tiny_model, strategy="lora", epochs=15, lr=1e-2),
        tmp_path / "run",
        progress=False,
    )
    weights = load_file(str(result.model_dir / "model.safetensors"))
    assert not any("lora" in k for k in weights), "adapters must be merged into the exported weights"
    base = load_file(str(tiny_model / "model.safetensors"))
    key = "encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(weights[f"bert.{key}"], base[key]), "LoRA must change the query projection"
    assert torch.equal(
        weights["bert.encoder.layer.0.attention.self.key.weight"],
        base["encoder.layer.0.attention.self.key.weight"],
    )
    # a random tiny encoder is a poor base for low-rank updates; well above chance (0.5, n=60) is the bar
    assert _accuracy(result.model_dir, easy_snapshot.test) >= 0.7


def test_head_only_freezes_encoder_and_caches_features(trained, easy_snapshot, tmp_path):
    # head-only needs an encoder that already separates the classes: start from the fine-tuned tiny model
    cfg = config_for(trained.model_dir, strategy="head", epochs=3, lr=1e-2)
    result = train_model(easy_snapshot, cfg, tmp_path / "run", progress=False)
    before = load_file(str(trained.model_dir / "model.safetensors"))
    after = load_file(str(result.model_dir / "model.safetensors"))
    encoder = [k for k in before if not k.startswith("classifier")]
    assert all(torch.equal(before[k], after[k]) for k in encoder)
    assert not torch.equal(before["classifier.weight"], after["classifier.weight"])
    assert len(list((tmp_path / "run" / "cache").glob("features-*.safetensors"))) == 2
    assert _accuracy(result.model_dir, easy_snapshot.test) >= 0.9


def test_regression_standardises_and_predicts_in_original_units(tiny_model, tmp_path):
    def frame(n, seed):
        f = sentiment_frame(n, seed)
        return pd.DataFrame({"text": f["text"], "target": np.where(f["label"] == "pos", 110.0, 90.0)})

    snap = snapshot_of(frame(200, 1), frame(60, 2), frame(60, 3), task="regression")
    result = train_model(
        snap, config_for(tiny_model, task="regression", epochs=8), tmp_path / "run", progress=False
    )
    meta = json.loads((result.model_dir / "keepfit.json").read_text())
    assert meta["task"] == "regression" and meta["target_mean"] == pytest.approx(100.0, abs=1.0)
    preds = load_predictor(result.model_dir, precision="fp32").predict(snap.test["text"].tolist())
    assert preds.outputs.shape == (60,)
    assert (
        np.mean(np.abs(preds.outputs - snap.test["target"].to_numpy())) < 5.0
    )  # a constant guess is off by 10
    assert result.metric_name == "r2" and result.best_metric > 0.5


def test_multi_label_learns_keyword_sets(tiny_model, tmp_path):
    def frame(n, seed):
        a, b = sentiment_frame(n, seed), sentiment_frame(n, seed + 100)
        texts = a["text"] + " " + b["text"]
        return pd.DataFrame(
            {
                "text": texts,
                "labels": [sorted({x, y}) for x, y in zip(a["label"], b["label"][::-1], strict=True)],
            }
        )

    snap = snapshot_of(frame(240, 1), frame(60, 2), frame(60, 3), task="multi-label")
    result = train_model(
        snap, config_for(tiny_model, task="multi-label", epochs=10), tmp_path / "run", progress=False
    )
    preds = load_predictor(result.model_dir, precision="fp32").predict(snap.test["text"].tolist())
    assert preds.outputs.shape == (60, 2) and preds.task == "multi-label"
    truth = np.array([[lab in row for lab in preds.labels] for row in snap.test["labels"]])
    assert ((preds.outputs >= 0.5) == truth).mean() >= 0.85


def test_missing_model_says_how_to_get_it():
    with pytest.raises(ModelError, match="huggingface-cli download"):
        resolve_model_path("no-such-org/no-such-model-xyz")


def test_grown_head_keeps_old_rows_bitwise(trained):
    labels = ["neg", "pos", "neu"]
    model = load_model(trained.model_dir, "single-label", labels)
    old = load_file(str(trained.model_dir / "model.safetensors"))
    layer = head_linear(model)
    assert layer.out_features == 3 and model.config.id2label[2] == "neu"
    assert torch.equal(layer.weight[:2], old["classifier.weight"])
    assert torch.equal(layer.bias[:2], old["classifier.bias"])
    with pytest.raises(ModelError, match="must come first"):
        load_model(trained.model_dir, "single-label", ["pos", "neg", "neu"])


def test_warm_start_with_new_label_replay_and_distillation(trained, tmp_path):
    labels3 = ("neg", "pos", "neu")
    new_train = sentiment_frame(90, 11, labels3)
    snap = snapshot_of(
        new_train,
        sentiment_frame(60, 12, labels3),
        sentiment_frame(60, 13, labels3),
        labels=["neg", "neu", "pos"],
    )
    replay = sentiment_frame(60, 14)
    result = train_model(
        snap,
        config_for(trained.model_dir, epochs=24, lr=3e-3),
        tmp_path / "run",
        init_from=trained.model_dir,
        teacher=trained.model_dir,
        replay=replay,
        progress=False,
    )
    assert result.labels == ["neg", "pos", "neu"]  # old labels first, in their order
    meta = json.loads((result.model_dir / "keepfit.json").read_text())
    assert meta["replay_rows"] == 60 and meta["teacher"] == str(trained.model_dir)
    old_rows = snap.test[snap.test["label"] != "neu"]
    assert _accuracy(result.model_dir, old_rows) >= 0.95  # what the old model knew is kept
    assert _accuracy(result.model_dir, snap.test) >= 0.8  # and the new label is learnt


def test_distillation_weight_zero_is_plain_cross_entropy():
    torch.manual_seed(0)
    logits, teacher = torch.randn(8, 3), torch.randn(8, 2)
    target = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    correct = teacher.argmax(-1) == target
    ce = task_loss(logits, target, "single-label")
    distill = focal_distillation_loss(logits[:, :2], teacher, correct, "single-label")
    assert torch.equal(ce + 0.0 * distill, ce)
    assert ce == pytest.approx(torch.nn.functional.cross_entropy(logits, target).item())
    # KL is zero when the student matches the teacher, positive otherwise
    assert focal_distillation_loss(teacher, teacher, correct, "single-label").item() == pytest.approx(
        0, abs=1e-6
    )
    assert distill.item() > 0


def test_focal_weight_counts_examples_the_teacher_got_right():
    student = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    teacher = torch.tensor([[4.0, 0.0], [0.0, 0.0]])  # row 0 differs from the student, row 1 does not
    right_first = focal_distillation_loss(
        student, teacher, torch.tensor([True, False]), "single-label", alpha=1.0, beta=5.0
    )
    right_second = focal_distillation_loss(
        student, teacher, torch.tensor([False, True]), "single-label", alpha=1.0, beta=5.0
    )
    assert right_first > right_second  # the row the teacher got right dominates the loss


def test_no_output_when_quiet(tiny_model, easy_snapshot, tmp_path, capfd):
    train_model(easy_snapshot, config_for(tiny_model, epochs=1), tmp_path / "run", progress=False)
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_early_stopping_stops_when_validation_stalls(tiny_model, easy_snapshot, tmp_path):
    config = config_for(tiny_model, epochs=10, lr=1e-12, warmup_ratio=0.0, early_stopping_patience=2)
    result = train_model(easy_snapshot, config, tmp_path / "run", progress=False)
    assert len(result.history) == 3  # the first eval sets the best, two more without improvement stop the run
    assert result.best_epoch == 1.0


def test_accumulation_sampling_and_weights_options_train(tiny_model, easy_snapshot, tmp_path):
    skewed = pd.concat(
        [
            easy_snapshot.train[easy_snapshot.train["label"] == "neg"],
            easy_snapshot.train[easy_snapshot.train["label"] == "pos"].head(20),
        ],
        ignore_index=True,
    )
    snap = snapshot_of(skewed, easy_snapshot.validation, easy_snapshot.test)
    over = train_model(
        snap,
        config_for(tiny_model, epochs=1, imbalance="oversample", batch_size=10, grad_accum=2),
        tmp_path / "over",
        progress=False,
    )
    assert over.history[-1]["samples_seen"] == 200  # 100 neg + 20 pos oversampled to 100
    assert over.history[-1]["step"] == 10  # 20 batches of 10, two per optimiser step
    under = train_model(
        snap, config_for(tiny_model, epochs=1, imbalance="undersample"), tmp_path / "under", progress=False
    )
    assert under.history[-1]["samples_seen"] == 40
    weighted = train_model(
        snap,
        config_for(
            tiny_model,
            epochs=1,
            imbalance="class_weights",
            label_smoothing=0.1,
            optimizer="sgd",
            scheduler="cosine",
        ),
        tmp_path / "w",
        progress=False,
    )
    assert weighted.history[-1]["samples_seen"] == 120


def test_multi_label_and_regression_warm_starts_with_a_teacher(tiny_model, tmp_path):
    base = sentiment_frame(80, 1)
    multi = pd.DataFrame({"text": base["text"], "labels": [[x] for x in base["label"]]})
    snap = snapshot_of(multi, multi.head(20), multi.head(20), task="multi-label")
    first = train_model(
        snap, config_for(tiny_model, task="multi-label", epochs=1), tmp_path / "m1", progress=False
    )
    grown = pd.concat([multi, pd.DataFrame({"text": ["okay fine film"] * 4, "labels": [["neu"]] * 4})])
    snap2 = snapshot_of(grown, multi.head(20), multi.head(20), task="multi-label")
    second = train_model(
        snap2,
        config_for(tiny_model, task="multi-label", epochs=1),
        tmp_path / "m2",
        init_from=first.model_dir,
        teacher=first.model_dir,
        progress=False,
    )
    assert second.labels == ["neg", "pos", "neu"]
    assert "teacher" in (tmp_path / "m2" / "train.log").read_text()

    reg = pd.DataFrame({"text": base["text"], "target": np.where(base["label"] == "pos", 3.0, 1.0)})
    rsnap = snapshot_of(reg, reg.head(20), reg.head(20), task="regression")
    r1 = train_model(
        rsnap, config_for(tiny_model, task="regression", epochs=1), tmp_path / "r1", progress=False
    )
    r2 = train_model(
        rsnap,
        config_for(tiny_model, task="regression", epochs=1),
        tmp_path / "r2",
        init_from=r1.model_dir,
        teacher=r1.model_dir,
        progress=False,
    )
    assert r2.labels == [] and r2.task == "regression"
