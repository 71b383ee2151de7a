"""Named recipes, applied as config overrides before the user's own ``--set`` values.

Built in (``PRESETS``):

``fast``: a demo in minutes (full fine-tuning, 2 epochs, a hot head learning rate).
``best``: the recipe aimed at >= 94.0% banking77 test accuracy with all-MiniLM-L6-v2 in <= 30 min on 2 cores
(measured 93.99%, BENCHMARKS.md): a linear-probe head start then full fine-tuning (LP-FT) of the mean-pooled
encoder at a high learning rate with frozen word embeddings, label smoothing, 8 epochs, the average of the best
three checkpoints when validation prefers it, length bucketing, bf16 where it pays, early stopping.

A project adds its own under ``presets:`` in keepfit.yaml (``name: {train.lr: 0.0001, ...}``); ``keepfit tune``
writes its chosen configuration there (:func:`write_preset`) and tags the model it registers with
``keepfit.preset`` (:data:`PRESET_TAG`), so that ``keepfit update`` of that champion trains the same way
(:func:`champion_preset`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import yaml

from keepfit._io import atomic_write_text
from keepfit.config import config_from_mapping
from keepfit.errors import ConfigError

if TYPE_CHECKING:
    from keepfit.config import KeepfitConfig

__all__ = ["PRESETS", "PRESET_TAG", "ChampionPreset", "preset_overrides", "write_preset", "champion_preset"]

log = logging.getLogger(__name__)

# The registry tag naming the preset a model version was trained with.
PRESET_TAG = "keepfit.preset"

PRESETS: dict[str, dict[str, object]] = {
    "fast": {
        "train.strategy": "full",
        "train.epochs": 2,
        "train.lr": 2e-4,
        "train.head_lr": 3e-3,
        "train.batch_size": 32,
        "train.precision": "auto",
        "train.length_bucketing": True,
    },
    "best": {
        "train.strategy": "full",
        "train.epochs": 8,
        "train.lr": 1.5e-4,
        "train.head_lr": 1e-3,
        "train.head_init": "probe",
        "train.freeze_embeddings": True,
        "train.average_checkpoints": 3,
        "train.batch_size": 32,
        "train.warmup_ratio": 0.06,
        "train.scheduler": "linear",
        "train.label_smoothing": 0.1,
        "train.precision": "auto",
        "train.length_bucketing": True,
        "train.early_stopping_patience": 3,
        "train.metric_for_best": "accuracy",
    },
}


def preset_overrides(name: str | None, presets: Mapping[str, Mapping[str, Any]] | None = None) -> list[str]:
    """``--set`` style overrides (``train.lr=0.0001``) of preset ``name``; [] for None.

    ``presets`` are the config file's (``KeepfitConfig.presets``), looked up before the built-in ``PRESETS``.
    Each value is written as YAML, which is how ``--set`` values are read, so it comes back with its type:
    ``1e-05`` as a float (PyYAML reads a bare ``1e-05`` as a string), ``true`` as a bool, ``'yes'`` as a string.
    """
    if name is None:
        return []
    own = dict(presets or {})
    values = own.get(name, PRESETS.get(name))
    if values is None:
        raise ConfigError(
            f"Unknown preset {name!r}: expected one of the built-in presets ({', '.join(PRESETS)}) or of the config "
            f"file's presets ({', '.join(own) if own else 'it defines none'}). Check the spelling, or add the "
            "preset under presets: in keepfit.yaml (`keepfit tune` writes one there)."
        )
    return [f"{key}={_yaml_value(value)}" for key, value in values.items()]


def _yaml_value(value: Any) -> str:
    """``value`` as one line of YAML that ``yaml.safe_load`` reads back as an equal value of the same type."""
    text = yaml.safe_dump(value, default_flow_style=True, width=float("inf"), allow_unicode=True)
    return text.removesuffix("\n...\n").strip()  # a scalar document ends with an explicit end marker


def write_preset(config_path: Path, name: str, values: dict[str, Any]) -> Path:
    """Write preset ``name`` (``{"train.lr": 0.0001, ...}``) into the YAML config file, replacing a preset of
    that name; return the file's path. The file is replaced atomically, and only after the preset validated.

    Only the top-level ``presets:`` block changes: a file without one keeps every byte and gets the block
    appended; a file with one gets that block rewritten in place with every preset (the others kept, in their
    order), so the comments inside the old block are lost and those elsewhere stay. Where the block cannot be
    edited as text (a flow-style or multi-document file, a repeated key), the whole file is rewritten from its
    parsed content and every comment is lost (logged as a warning). A missing file is created with only the
    presets.
    """
    path = Path(config_path)
    # a search may hand over NumPy scalars, which YAML cannot write; .item() is their Python value
    values = {key: value.item() if hasattr(value, "item") else value for key, value in values.items()}
    config_from_mapping({"presets": {name: values}}, source=f"preset {name!r}")
    text = path.read_text(encoding="utf-8-sig") if path.exists() else ""
    raw = _config_mapping(text, path)
    wanted = {**raw, "presets": {**(raw.get("presets") or {}), name: values}}
    block = yaml.safe_dump({"presets": wanted["presets"]}, sort_keys=False, allow_unicode=True)
    edited = _replace_presets_block(text, block)
    if _safe_load(edited) != wanted:
        if text.strip():
            log.warning("%s: could not edit the presets block as text; rewrote the whole file, without its "
                        "comments", path)
        edited = yaml.safe_dump(wanted, sort_keys=False, allow_unicode=True)
    return atomic_write_text(path, edited)


def _config_mapping(text: str, path: Path) -> dict[str, Any]:
    """The parsed config file, refusing what load_config would refuse (no mapping, presets not a mapping)."""
    try:
        raw = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {err}. Fix the file, then write the preset again.") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not isinstance(raw.get("presets") or {}, dict):
        what = type(raw).__name__ if not isinstance(raw, dict) else f"presets: {type(raw['presets']).__name__}"
        raise ConfigError(f"{path} must hold a mapping of settings with presets: as a mapping, got {what}. "
                          "Fix the file, then write the preset again.")
    return raw


def _replace_presets_block(text: str, block: str) -> str:
    """``text`` with its top-level ``presets:`` entry replaced by ``block``, or ``block`` appended when it has none.

    The entry runs from its key to the end of the line of its last value; comments after that belong to what
    follows. The result is checked by the caller, so a layout this does not foresee costs comments, not data.
    """
    span = _presets_span(text)
    if span is None:
        return text + ("\n" if text and not text.endswith("\n") else "") + block
    start, end = span
    return text[:start] + block + text[end:]


def _presets_span(text: str) -> tuple[int, int] | None:
    """Character offsets of the top-level ``presets:`` entry (key line start, end of its last line), or None."""
    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return None
    if not isinstance(root, yaml.MappingNode) or root.flow_style:
        return None
    entries = [(k, v) for k, v in root.value if isinstance(k, yaml.ScalarNode) and k.value == "presets"]
    if len(entries) != 1 or entries[0][0].start_mark.column != 0:
        return None
    key, value = entries[0]
    line_end = text.find("\n", _content_end(value))
    return key.start_mark.index, len(text) if line_end < 0 else line_end + 1


def _content_end(node: yaml.Node) -> int:
    """Offset just past the last character of ``node``'s own text (a block collection's end mark lies after the
    blank and comment lines that follow it)."""
    if isinstance(node, yaml.MappingNode) and not node.flow_style and node.value:
        return _content_end(node.value[-1][1])
    if isinstance(node, yaml.SequenceNode) and not node.flow_style and node.value:
        return _content_end(node.value[-1])
    return node.end_mark.index


def _safe_load(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return None


class ChampionPreset(NamedTuple):
    """The champion's version and the name of the preset it was trained with."""

    version: str
    name: str


def champion_preset(config: KeepfitConfig) -> ChampionPreset | None:
    """The preset the champion was trained with (its registry tag ``keepfit.preset``), with its version.

    None when the project has no registry yet (nothing is created to find out), no champion, or a champion
    without the tag. Whether the config file still defines the preset is the caller's to check.
    """
    from keepfit.store import Store

    if config.registry.uri is None and not Store.at(config.store).registry_db.exists():
        return None
    from keepfit.registry import Registry

    champion = Registry.open(config).champion()
    name = champion.tags.get(PRESET_TAG) if champion is not None else None
    return ChampionPreset(champion.version, name) if champion is not None and name else None
