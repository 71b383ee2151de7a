"""Optimisers and schedules: AdamW (fused where it helps) or SGD with momentum; warm-up, then linear/cosine.

Weight decay is not applied to biases and normalisation weights; layer-wise learning-rate decay scales the
learning rate down by ``decay`` per layer from the head towards the embeddings (for image classifiers, per
backbone block or stage: :func:`image_layer_depth`).
"""

from __future__ import annotations

import re

import torch
from torch import nn

from keepfit.config import TrainConfig
from keepfit.train.head import HeadModel

__all__ = ["param_groups", "build_optimizer", "build_scheduler", "layer_depth", "image_layer_depth"]

_LAYER = re.compile(r"\.(?:layer|layers|block|h)\.(\d+)\.")
# image backbones' layers: EfficientNet's blocks, ResNet/ConvNeXt stages, ViT layers (the first match counts)
_IMAGE_LAYER = re.compile(r"\.(?:_blocks|stages|layer)\.(\d+)\.")
_IMAGE_STEM = ("embed", "._conv_stem.", "net._bn0.")


def _no_decay(name: str, param: nn.Parameter) -> bool:
    lowered = name.lower()
    return (
        param.ndim < 2
        or lowered.endswith("bias")
        or "layernorm" in lowered
        or "layer_norm" in lowered
        or "norm." in lowered
    )


def layer_depth(name: str, n_layers: int) -> int:
    """0 for embeddings, i+1 for transformer layer i, n_layers+1 for everything after (pooler, head)."""
    if "embed" in name:
        return 0
    match = _LAYER.search(name)
    return int(match.group(1)) + 1 if match else n_layers + 1


def image_layer_depth(name: str, n_layers: int) -> int:
    """:func:`layer_depth` for an image classifier: 0 for the stem (ResNet's embedder, ViT's embeddings,
    EfficientNet's first conv), i+1 for block or stage i, n_layers+1 for the rest (last conv, pooler, head)."""
    match = _IMAGE_LAYER.search(name)
    if match:
        return int(match.group(1)) + 1
    return 0 if any(part in name for part in _IMAGE_STEM) else n_layers + 1


def _image_layers(model: nn.Module) -> int:
    found = [_IMAGE_LAYER.search(name) for name, _ in model.named_parameters()]
    return max((int(m.group(1)) + 1 for m in found if m), default=0)


def _is_head(model: nn.Module, name: str) -> bool:
    prefix = getattr(model, "base_model_prefix", "")
    return not (prefix and (name.startswith(prefix + ".") or f".{prefix}." in name))


def param_groups(model: nn.Module, config: TrainConfig) -> list[dict]:
    """Optimiser groups keyed by (learning rate, weight decay); frozen parameters are left out.

    The output layer (and the pooler/classifier around it) learns at ``head_lr`` (``lr`` when unset); with
    the head-only strategy the trained module is the output layer alone, so all of it learns at ``head_lr``.
    """
    if getattr(model, "is_image_classifier", False):  # head.*, and blocks or stages below the top
        n_layers, depth = _image_layers(model), image_layer_depth
        is_head = lambda name: name.startswith("head.")  # noqa: E731
    else:
        n_layers = int(getattr(model.config, "num_hidden_layers", 0) or 0) if hasattr(model, "config") else 0
        head_only, depth = isinstance(model, HeadModel), layer_depth
        is_head = lambda name: head_only or (hasattr(model, "config") and _is_head(model, name))  # noqa: E731
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if is_head(name):
            lr = config.head_lr or config.lr
        else:
            lr = config.lr
            if config.layerwise_lr_decay and n_layers:
                lr *= config.layerwise_lr_decay ** (n_layers + 1 - depth(name, n_layers))
        decay = 0.0 if _no_decay(name, param) else config.weight_decay
        groups.setdefault((lr, decay), []).append(param)
    return [{"params": ps, "lr": lr, "weight_decay": wd} for (lr, wd), ps in groups.items()]
    n_layers = int(getattr(model.config, "num_hidden_layers", 0) or 0) if hasattr(model, "config") else 0
    head_only = isinstance(model, HeadModel)
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if head_only or (hasattr(model, "config") and _is_head(model, name)):
            lr = config.head_lr or config.lr
        else:
            lr = config.lr
            if config.layerwise_lr_decay and n_layers:
                lr *= config.layerwise_lr_decay ** (n_layers + 1 - layer_depth(name, n_layers))
        decay = 0.0 if _no_decay(name, param) else config.weight_decay
        groups.setdefault((lr, decay), []).append(param)
    return [{"params": ps, "lr": lr, "weight_decay": wd} for (lr, wd), ps in groups.items()]


def build_optimizer(model: nn.Module, config: TrainConfig, *, fused: bool = True) -> torch.optim.Optimizer:
    """AdamW (fused kernel on CPU/GPU when available: one pass over all parameters) or SGD with momentum."""
    groups = param_groups(model, config)
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum)
    try:
        return torch.optim.AdamW(groups, lr=config.lr, fused=fused)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(groups, lr=config.lr, foreach=True)


def build_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, total_steps: int):
    """Warm-up over ``warmup_ratio`` of ``total_steps`` optimiser steps, then linear, cosine or constant."""
    from transformers import get_scheduler

    name = {"linear": "linear", "cosine": "cosine", "constant": "constant_with_warmup"}[config.scheduler]
    warmup = int(round(config.warmup_ratio * total_steps))
    return get_scheduler(name, optimizer, num_warmup_steps=warmup, num_training_steps=max(total_steps, 1))
