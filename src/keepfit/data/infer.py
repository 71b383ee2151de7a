"""`keepfit init`: infer the task and the columns from a sample of a data file, and write a commented config.

The rules, applied to the first ``SAMPLE_ROWS`` records:

- **text**: among the columns of mostly non-numeric strings, the one with the longest average length
  (columns of unique space-free tokens, such as ids, are passed over while another candidate exists).
- **answer**: columns named like a label (label, category, intent, target, ...) are tried first, then the
  rest. A column of lists (JSON) or of separator-joined values whose parts repeat is **multi-label**; a
  numeric column with many distinct values is **regression**; a column with few distinct values is
  **single-label**. Two or more 0/1 columns and no label column mean multi-label with one column per label.
- **group / time / split**: by name (customer_id, session, ...; date, timestamp, ...; split) and content
  (groups repeat, times parse as dates, split values are train/validation/test).
- **text-generation** comes first: a column of conversations (lists of ``{role, content}`` objects, the chat
  shape of hosted fine-tuning services) makes ``data.messages_column``; a prompt-like column (prompt,
  instruction, question, query, input) next to an answer-like one (completion, response, output, answer) whose
  values are free text (mostly distinct, not numbers) makes ``data.prompt_column``/``data.completion_column``.
- **few-shot**: single-label text whose labels have a median of at most ``FEWSHOT_MAX_PER_LABEL`` rows (the whole
  file read) gets ``train.strategy: fewshot`` (SetFit's contrastive pairs, then the head; see BENCHMARKS.md).
- **image-classification**: a folder whose subfolders hold images (by extension: ``IMAGE_EXTENSIONS``) is the
  folder shape, one subfolder per class (``data.train`` is the folder); a table with a column whose values
  mostly end in an image extension is the table shape (``data.image_column``, the label picked as for text).

Every choice is explained in the notes, which :func:`write_config_file` puts into the YAML as comments.
"""

from __future__ import annotations

import json
import math
import os
import re
import textwrap
import typing
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import yaml
from pydantic import BaseModel

from keepfit.config import DataConfig, KeepfitConfig
from keepfit.data.load import KIND_LIST, KIND_TEXT, DataSource, open_source
from keepfit.data.normalize import MISSING_TOKENS
from keepfit.errors import ConfigError, DataError
from keepfit.types import IMAGE_CLASSIFICATION, is_image

__all__ = [
    "Inference",
    "infer",
    "infer_config",
    "write_config_file",
    "render_config_yaml",
    "SAMPLE_ROWS",
    "IMAGE_EXTENSIONS",
]

SAMPLE_ROWS = 50_000
# Few-shot is suggested up to this median of rows per label: on banking77 (bench_fewshot, BENCHMARKS.md) it beat
# head-only and full fine-tuning on the same shots at 5 and 10 per intent on every seed (10: +1.4 and +2.6 points);
# the split keeps ~80% of a label's rows for training, so 20 in the file is ~16 to train on, still few-shot ground.
FEWSHOT_MAX_PER_LABEL = 20
_NUMBER = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$")
_INTEGER = re.compile(r"^[+-]?\d+(?:\.0*)?$")
_LABEL_HINTS = (
    "label",
    "labels",
    "category",
    "categories",
    "class",
    "intent",
    "target",
    "tags",
    "tag",
    "topic",
    "sentiment",
    "y",
    "score",
    "rating",
    "stars",
    "emotion",
    "emotions",
    "classes",
)
_TEXT_HINTS = (
    "text",
    "sentence",
    "utterance",
    "query",
    "question",
    "review",
    "content",
    "body",
    "message",
    "document",
    "comment",
    "description",
    "prompt",
    "input",
)
_GROUP_HINTS = (
    "group",
    "user",
    "customer",
    "client",
    "account",
    "session",
    "conversation",
    "thread",
    "author",
    "speaker",
    "patient",
    "document_id",
    "doc_id",
    "dialog",
    "dialogue",
    "ticket",
)
_TIME_HINTS = (
    "time",
    "timestamp",
    "date",
    "datetime",
    "created",
    "created_at",
    "updated_at",
    "ts",
    "day",
    "when",
)
_PROMPT_HINTS = ("prompt", "instruction", "question", "query", "input")
_COMPLETION_HINTS = ("completion", "response", "output", "answer")
_SYSTEM_HINTS = ("system", "system_prompt", "system_message")
_SPLIT_VALUES = {"train", "training", "validation", "valid", "val", "dev", "test", "testing"}
_SEPARATORS = ("|", ";", ",")
_MAX_CLASSES = 1000
_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_./\-]*")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
_IMAGE_SHARE = 0.8  # an image column: at least this share of its sampled values end in an image extension
_PATHS_PROBED = 200  # sampled paths of an image column checked for existence (a note, not a rule)


@dataclass
class _Profile:
    """What a column's sample looks like."""

    name: str
    values: list[str]  # non-missing values, stripped
    n: int  # sample size (records)
    kinds: np.ndarray | None

    @property
    def filled(self) -> int:
        return len(self.values)

    @property
    def distinct(self) -> int:
        return len(set(self.values))

    def share(self, predicate: Any) -> float:
        return sum(1 for v in self.values if predicate(v)) / max(self.filled, 1)

    @property
    def avg_len(self) -> float:
        return sum(len(v) for v in self.values) / max(self.filled, 1)

    @property
    def numeric(self) -> bool:
        return self.filled > 0 and self.share(lambda v: bool(_NUMBER.match(v))) >= 0.95

    @property
    def integers(self) -> bool:
        return self.numeric and self.share(lambda v: bool(_INTEGER.match(v))) >= 0.95

    @property
    def is_list(self) -> bool:
        if self.kinds is not None and self.filled and np.mean(self.kinds == KIND_LIST) >= 0.5:
            return True
        return self.filled > 0 and self.share(_is_json_list) >= 0.9

    @property
    def binary(self) -> bool:
        return self.filled > 0 and set(v.lower() for v in self.values) <= {
            "0",
            "1",
            "true",
            "false",
            "0.0",
            "1.0",
        }


def _is_json_list(value: str) -> bool:
    if not value.startswith("["):
        return False
    try:
        return isinstance(json.loads(value), list)
    except json.JSONDecodeError:
        return False


def _hinted(name: str, hints: tuple[str, ...]) -> int | None:
    """The position of the first hint the column name matches (whole name or a _-separated part)."""
    low = name.strip().casefold()
    parts = set(re.split(r"[\s_\-.]+", low))
    for i, hint in enumerate(hints):
        if low == hint or hint in parts or (len(hint) > 3 and low.endswith(hint)):
            return i
    return None


# --------------------------------------------------------------------------------------------------- sampling


def _sample(src: DataSource, rows: int) -> tuple[dict[str, _Profile], int]:
    columns: dict[str, list[pa.Array]] = {c: [] for c in src.columns}
    kinds: dict[str, list[np.ndarray]] = {c: [] for c in src.columns}
    taken = 0
    for chunk in src.chunks():
        take = min(len(chunk), rows - taken)
        for name in src.columns:
            columns[name].append(chunk.columns[name].slice(0, take))
            k = chunk.kinds.get(name)
            kinds[name].append(k[:take] if k is not None else np.zeros(take, dtype=np.int8))
        taken += take
        if taken >= rows:
            break
    if taken == 0:
        raise DataError(f"{src.name}: no readable data rows to infer a config from (columns: {src.columns}).")
    profiles = {}
    for name in src.columns:
        values = [v for arr in columns[name] for v in arr.to_pylist()]
        k = np.concatenate(kinds[name]) if kinds[name] else np.zeros(0, dtype=np.int8)
        filled = [
            (v.strip(), int(code))
            for v, code in zip(values, k, strict=True)
            if v is not None and v.strip() not in MISSING_TOKENS
        ]
        profiles[name] = _Profile(
            name,
            [v for v, _ in filled],
            taken,
            np.array([c for _, c in filled], dtype=np.int8) if filled else None,
        )
    return profiles, taken


# --------------------------------------------------------------------------------------------------- choices


def _pick_text(profiles: dict[str, _Profile], notes: list[str]) -> str:
    candidates = [
        p
        for p in profiles.values()
        if p.filled
        and not p.numeric
        and not p.is_list
        and (p.kinds is None or np.mean(p.kinds == KIND_TEXT) >= 0.9)
    ]
    if not candidates:
        raise DataError(
            f"No column holds text: columns {list(profiles)} are numbers, lists or empty. keepfit needs a "
            "column of text; pass --text-column NAME if it is there."
        )
    wordy = [
        p
        for p in candidates
        if p.share(lambda v: " " in v) >= 0.3 or _hinted(p.name, _TEXT_HINTS) is not None
    ]
    pool = wordy or candidates
    best = max(pool, key=lambda p: (p.avg_len, _hinted(p.name, _TEXT_HINTS) is not None))
    notes.append(
        f"text column: {best.name!r}, the column with the longest texts (average {best.avg_len:.0f} "
        "characters)"
    )
    return best.name


def _multilabel_separator(p: _Profile) -> str | None:
    """A separator that splits the values into a small vocabulary of repeating parts, if there is one."""
    for sep in _SEPARATORS:
        if p.share(lambda v, s=sep: s in v) < 0.05:
            continue
        parts = [x.strip() for v in p.values for x in v.split(sep)]
        vocab = set(parts)
        if "" in vocab or not vocab:
            continue
        if len(vocab) <= _MAX_CLASSES and len(vocab) < p.distinct and max(len(x) for x in vocab) <= 60:
            return sep
    return None


def _classify_answer(p: _Profile) -> tuple[str, dict[str, Any]] | None:
    """The task a column would make as the answer, with the settings it needs; None if it cannot be one."""
    if not p.filled or p.distinct < 2:
        return None
    if p.is_list:
        return "multi-label", {"label_column": p.name}
    if p.numeric and not (p.integers and p.distinct <= 20):
        if p.distinct >= 10:
            return "regression", {"target_column": p.name, "label_column": None}
        return None
    if p.distinct <= min(_MAX_CLASSES, max(2, p.filled // 2)) or p.distinct <= 20:
        return "single-label", {"label_column": p.name}
    sep = _multilabel_separator(p)
    if sep is not None:
        return "multi-label", {"label_column": p.name, "label_separator": sep}
    return None


def _pick_answer(
    profiles: dict[str, _Profile], text: str, reserved: set[str], notes: list[str]
) -> tuple[str, dict[str, Any]]:
    others = [p for name, p in profiles.items() if name != text and name not in reserved]
    # separator-joined values also pass as single-label when they repeat; check them first
    for p in others:
        if _hinted(p.name, _LABEL_HINTS) is not None and not p.numeric:
            sep = _multilabel_separator(p)
            if sep is not None and p.share(lambda v, s=sep: s in v) >= 0.05:
                notes.append(f"task: multi-label, labels in {p.name!r} joined by {sep!r}")
                return "multi-label", {"label_column": p.name, "label_separator": sep}
    ranked = sorted(
        others,
        key=lambda p: (_hinted(p.name, _LABEL_HINTS) is None, _hinted(p.name, _LABEL_HINTS) or 0, p.distinct),
    )
    hinted = [p for p in ranked if _hinted(p.name, _LABEL_HINTS) is not None]
    binary = [p for p in others if p.binary and _hinted(p.name, _LABEL_HINTS) is None]
    if not hinted and len(binary) >= 2:
        names = [p.name for p in binary]
        notes.append(f"task: multi-label, one 0/1 column per label: {names}")
        return "multi-label", {"label_columns": names, "label_column": None}
    for p in ranked:
        found = _classify_answer(p)
        if found is None:
            continue
        task, settings = found
        if task == "regression":
            notes.append(
                f"task: regression, target {p.name!r} is numeric with {p.distinct} distinct values in the "
                "sample"
            )
        elif task == "multi-label":
            notes.append(f"task: multi-label, {p.name!r} holds lists of labels")
        else:
            why = (
                (
                    f"{p.distinct} distinct integers, treated as classes; to predict a number set task: "
                    f"regression and data.target_column: {p.name}"
                )
                if p.numeric
                else f"{p.distinct} distinct values"
            )
            notes.append(f"task: single-label, label column {p.name!r} ({why})")
        return task, settings
    named = [p for p in hinted if p.filled and not p.numeric]
    if named:
        p = named[0]
        notes.append(
            f"task: single-label, label column {p.name!r} by its name, although the sample holds only "
            f"{p.distinct} distinct value(s): a classifier needs at least two labels, so add rows of other labels"
        )
        return "single-label", {"label_column": p.name}
    raise DataError(
        f"Could not tell which column holds the labels: columns {list(profiles)} (text: {text!r}). Expected "
        "a column with few distinct values (single-label), lists (multi-label) or numbers (regression). "
        "Pass --label-column NAME (or --target-column NAME for regression)."
    )


def _pick_group(profiles: dict[str, _Profile], taken: set[str], notes: list[str]) -> str | None:
    for p in sorted(profiles.values(), key=lambda p: _hinted(p.name, _GROUP_HINTS) or 0):
        if p.name in taken or _hinted(p.name, _GROUP_HINTS) is None or not p.filled:
            continue
        if p.distinct < p.filled:
            notes.append(
                f"group column: {p.name!r} (by its name; {p.distinct} groups in the sample); rows of one "
                "group stay in one split"
            )
            return p.name
    return None


def _pick_time(profiles: dict[str, _Profile], taken: set[str], notes: list[str]) -> str | None:
    import pandas as pd

    for p in profiles.values():
        if p.name in taken or _hinted(p.name, _TIME_HINTS) is None or not p.filled:
            continue
        probe = pd.Series(p.values[:500])
        parsed = pd.to_datetime(probe, errors="coerce", format="mixed") if not p.numeric else probe
        if p.numeric or parsed.notna().mean() >= 0.9:
            notes.append(f"time column: {p.name!r} (by its name; values parse as times)")
            return p.name
    return None


def _pick_split(profiles: dict[str, _Profile], taken: set[str], notes: list[str]) -> str | None:
    for p in profiles.values():
        if p.name in taken or not p.filled:
            continue
        values = {v.lower() for v in p.values}
        if p.name.strip().casefold() in ("split", "fold", "partition", "subset") and values <= _SPLIT_VALUES:
            notes.append(f"split column: {p.name!r} holds {sorted(values)}; those splits are used as given")
            return p.name
    return None


def _json_items(p: _Profile, limit: int = 200) -> list[Any]:
    """The sample's values parsed as JSON lists (the others left out)."""
    out = []
    for v in p.values[:limit]:
        if v.startswith("["):
            try:
                value = json.loads(v)
            except json.JSONDecodeError:
                continue
            if isinstance(value, list):
                out.append(value)
    return out


def _turn_share(p: _Profile, keys: tuple[str, str]) -> float:
    """The share of sampled values that are lists of objects holding both ``keys`` (a conversation)."""
    lists = _json_items(p)
    good = sum(1 for v in lists if v and all(isinstance(m, dict) and keys[0] in m and keys[1] in m for m in v))
    return good / max(min(p.filled, 200), 1)


def _pick_messages(profiles: dict[str, _Profile], wanted: str | None) -> str | None:
    """The column of conversations: lists of {role, content} in at least 90% of the sampled rows."""
    found = [p.name for p in profiles.values() if p.filled and p.is_list and _turn_share(p, ("role", "content")) >= 0.9]
    if wanted in found:
        return wanted
    return found[0] if found else None


def _sharegpt_column(profiles: dict[str, _Profile]) -> str | None:
    return next(
        (p.name for p in profiles.values() if p.filled and p.is_list and _turn_share(p, ("from", "value")) >= 0.9),
        None,
    )


def _free_text(p: _Profile) -> bool:
    """Mostly distinct non-numeric values: answers a model writes, not classes it picks."""
    return p.filled > 0 and not p.numeric and p.distinct > 2 and p.distinct >= 0.5 * p.filled


def _pick_prompt_completion(profiles: dict[str, _Profile]) -> tuple[str, str] | None:
    def ranked(hints: tuple[str, ...]) -> list[_Profile]:
        named = [p for p in profiles.values() if p.filled and _hinted(p.name, hints) is not None]
        return sorted(named, key=lambda p: (_hinted(p.name, hints), p.name))

    for prompt in ranked(_PROMPT_HINTS):
        if prompt.numeric:
            continue
        for completion in ranked(_COMPLETION_HINTS):
            if completion.name == prompt.name:
                continue
            exact = prompt.name.casefold() == "prompt" and completion.name.casefold() == "completion"
            if exact or _free_text(completion):
                return prompt.name, completion.name
    return None


def _generation_settings(
    profiles: dict[str, _Profile], notes: list[str], required: bool
) -> tuple[dict[str, Any], set[str]] | None:
    """The data settings of a text-generation config, and the columns they use; None when neither shape is
    there (a DataError when ``required``, i.e. --task text-generation)."""
    settings: dict[str, Any] = {"label_column": None}
    messages = _pick_messages(profiles, DataConfig.model_fields["messages_column"].default)
    table = None if messages else _pick_prompt_completion(profiles)
    if messages:
        settings["messages_column"] = messages
        notes.append(
            f"task: text-generation, chat shape: {messages!r} holds conversations (lists of {{role, content}}); "
            "the last assistant turn of each is the answer to learn"
        )
    elif table:
        settings["prompt_column"], settings["completion_column"] = table
        notes.append(f"task: text-generation, prompt column {table[0]!r} and completion column {table[1]!r}")
        unused = [p for p in profiles if p not in table and _hinted(p, _PROMPT_HINTS) is not None]
        if unused:
            notes.append(
                f"prompt column: {table[0]!r}; {unused} also read like prompt parts but are not used: join them "
                "into the prompt column if they carry context"
            )
    else:
        sharegpt = _sharegpt_column(profiles)
        if sharegpt or required:
            hint = (
                f" Column {sharegpt!r} holds turns as {{from, value}} (ShareGPT): write them as {{role, content}} "
                "with roles user/assistant."
                if sharegpt
                else ""
            )
            raise DataError(
                f"No text-generation columns found: expected a column of conversations (lists of "
                f"{{role, content}}) or a prompt column (prompt, instruction, question) next to an answer column "
                f"(completion, response, output, answer); columns: {list(profiles)}.{hint}"
            )
        return None
    used = {v for v in settings.values() if isinstance(v, str)}
    system = next((p for p in profiles if p.strip().casefold() in _SYSTEM_HINTS and p not in used), None)
    if system:
        settings["system_column"] = system
        notes.append(f"system column: {system!r}, a system prompt placed before each conversation")
        used.add(system)
    return settings, used


def _label_note(p: _Profile, task: str, settings: dict[str, Any]) -> tuple[str, list[str]]:
    if task == "multi-label" and settings.get("label_columns"):
        names = list(settings["label_columns"])
        return f"labels ({len(names)}, one column each): {', '.join(names)}", names
    if task == "multi-label":
        sep = settings.get("label_separator", "|")
        counts: dict[str, int] = {}
        for v in p.values:
            items = json.loads(v) if _is_json_list(v) else v.split(sep)
            for x in items:
                counts[str(x).strip()] = counts.get(str(x).strip(), 0) + 1
    else:
        counts = {}
        for v in p.values:
            counts[v] = counts.get(v, 0) + 1
    shown = sorted(counts, key=lambda k: (-counts[k], k))
    listed = ", ".join(f"{k} ({counts[k]})" for k in shown[:100])
    more = f", ... and {len(shown) - 100} more" if len(shown) > 100 else ""
    return f"labels found in the sample ({len(shown)}, with counts): {listed}{more}", shown


def _few_per_label(p: _Profile, notes: list[str]) -> bool:
    """Whether the labels of ``p`` (the whole file) have so few rows that few-shot training fits; says why in
    ``notes``."""
    _, counts = np.unique(np.array(p.values, dtype=object), return_counts=True)
    if len(counts) < 2 or np.median(counts) > FEWSHOT_MAX_PER_LABEL:
        return False
    short = int((counts < 3).sum())
    notes.append(
        f"train.strategy: fewshot (a median of {np.median(counts):g} rows per label, at most "
        f"{FEWSHOT_MAX_PER_LABEL}: contrastive pairs of the examples tune the encoder before the head learns, "
        "more accurate than full fine-tuning on so few rows; BENCHMARKS.md)"
        + (f"; {short} label(s) have fewer than 3 rows: few-shot needs 2 per label left for training after the "
           "split, so add examples of them" if short else "")
    )
    return True


def _given_answer(
    profiles: dict[str, _Profile], label_column: str | None, target_column: str | None, task: str | None
) -> tuple[str, dict[str, Any]]:
    if target_column or task == "regression":
        return "regression", {"target_column": target_column or label_column, "label_column": None}
    assert label_column is not None
    found = _classify_answer(profiles[label_column])
    if task == "multi-label" or (task is None and found is not None and found[0] == "multi-label"):
        settings: dict[str, Any] = {"label_column": label_column}
        sep = _multilabel_separator(profiles[label_column])
        if sep and not profiles[label_column].is_list:
            settings["label_separator"] = sep
        return "multi-label", settings
    return "single-label", {"label_column": label_column}


@dataclass(frozen=True)
class Inference:
    """What `keepfit init` found: the config, the notes explaining it, and the labels seen (most frequent "
    "first)."""

    config: KeepfitConfig
    notes: list[str]
    labels: list[str]


def infer_config(
    path: str | Path,
    *,
    text_column: str | None = None,
    label_column: str | None = None,
    target_column: str | None = None,
    task: str | None = None,
    sample_rows: int = SAMPLE_ROWS,
) -> tuple[KeepfitConfig, list[str]]:
    """Infer a config for the data at ``path`` from its first ``sample_rows`` records.

    Returns the config (labels left empty, so later data may bring new labels) and the notes that explain each
    choice. Explicit arguments win over inference. Raises DataError when the file cannot be read or no text or
    label column can be found.
    """
    found = infer(
        path,
        text_column=text_column,
        label_column=label_column,
        target_column=target_column,
        task=task,
        sample_rows=sample_rows,
    )
    return found.config, found.notes


def infer(
    path: str | Path,
    *,
    text_column: str | None = None,
    label_column: str | None = None,
    target_column: str | None = None,
    task: str | None = None,
    sample_rows: int = SAMPLE_ROWS,
) -> Inference:
    """Infer a config for the data at ``path`` from its first ``sample_rows`` records.

    Like :func:`infer_config`, and also returns the labels seen in the sample.
    """
    if Path(path).is_dir() and task in (None, IMAGE_CLASSIFICATION):
        classes = _class_folders(Path(path))
        if classes:
            return _image_folder_inference(Path(path), classes)
        if task == IMAGE_CLASSIFICATION:
            raise DataError(
                f"{path} holds no images in subfolders; expected one subfolder per class with image files "
                f"({', '.join(IMAGE_EXTENSIONS)}), or a table (CSV/Parquet) with a column of image paths."
            )
    src = open_source(path)
    profiles, taken = _sample(src, sample_rows)
    notes = [
        f"inferred from the first {taken:,} rows of {Path(path).name} ({src.format}"
        + (f", delimiter {src.delimiter!r}" if src.delimiter not in (None, ",") else "")
        + ")"
    ]
    for name, wanted in (("text", text_column), ("label", label_column), ("target", target_column)):
        if wanted and wanted not in profiles:
            raise DataError(
                f"--{name}-column {wanted!r} is not a column of {src.name}; columns: {list(profiles)}."
            )
    data: dict[str, Any] = {"train": str(path)}
    if src.encoding not in ("utf-8", "utf_8"):
        data["encoding"] = src.encoding
        notes.append(f"encoding: {src.encoding} (detected; UTF-8 is the default)")
    if task in (None, IMAGE_CLASSIFICATION) and not (text_column or target_column):
        image_column = _pick_image_column(profiles)
        if image_column is not None:
            return _image_table_inference(Path(path), profiles, data, notes, image_column, label_column)
        if task == IMAGE_CLASSIFICATION:
            raise DataError(
                f"{src.name} has no column of image paths: expected one whose values mostly end in "
                f"{', '.join(IMAGE_EXTENSIONS)} (columns: {list(profiles)}). Add such a column, or point keepfit "
                "init at a folder with one subfolder of images per class."
            )
    explicit = bool(text_column or label_column or target_column)
    if task == "text-generation" or (task is None and not explicit):
        generation = _generation_settings(profiles, notes, required=task == "text-generation")
        if generation is not None:
            return _generation_inference(profiles, data, notes, *generation)
    text = text_column or _pick_text(profiles, notes)
    if text_column:
        notes.append(f"text column: {text!r} (given)")
    data["text_column"] = text
    if label_column or target_column:
        inferred_task, settings = _given_answer(profiles, label_column, target_column, task)
        notes.append(f"task: {inferred_task}, answer column {label_column or target_column!r} (given)")
    else:
        split_guess = _pick_split(profiles, {text}, [])
        group_guess = {p for p in profiles if _hinted(p, _GROUP_HINTS) is not None}
        time_guess = {p for p in profiles if _hinted(p, _TIME_HINTS) is not None and p not in _LABEL_HINTS}
        reserved = {x for x in (split_guess,) if x} | group_guess | time_guess
        inferred_task, settings = _pick_answer(profiles, text, reserved, notes)
    if task and task != inferred_task:
        notes.append(f"task: {task} (given; the data suggested {inferred_task})")
        inferred_task = task
    data.update(settings)
    used = {
        text,
        *(v for v in settings.values() if isinstance(v, str)),
        *(settings.get("label_columns") or []),
    }
    split_col = _pick_split(profiles, used, notes)
    if split_col:
        data["split_column"] = split_col
        used.add(split_col)
    group = _pick_group(profiles, used, notes)
    if group:
        data["group_column"] = group
        used.add(group)
    time_col = _pick_time(profiles, used, notes)
    if time_col:
        data["time_column"] = time_col
    answer = settings.get("label_column") or settings.get("target_column")
    labels: list[str] = []
    if inferred_task != "regression":
        note, labels = _label_note(profiles[answer] if answer else profiles[text], inferred_task, settings)
        notes.append(note)
    long_share = np.mean([len(v) > 20_000 for v in profiles[text].values]) if profiles[text].filled else 0.0
    if long_share > 0:
        notes.append(
            f"{long_share:.1%} of the sample texts are longer than data.max_chars=20,000 and would be "
            "quarantined; raise data.max_chars to keep them"
        )
    raw: dict[str, Any] = {"task": inferred_task, "data": data}
    if split_col:
        raw["split"] = {"method": "given"}
    if inferred_task == "single-label" and answer and taken < sample_rows and _few_per_label(profiles[answer], notes):
        raw["train"] = {"strategy": "fewshot"}
    try:
        config = KeepfitConfig.model_validate(raw)
    except Exception as err:  # pydantic ValidationError: report as a config problem
        raise ConfigError(f"The inferred config is not valid ({err}). Pass the columns explicitly.") from None
    return Inference(config, notes, labels)


def _generation_inference(
    profiles: dict[str, _Profile], data: dict[str, Any], notes: list[str], settings: dict[str, Any], used: set[str]
) -> Inference:
    """The text-generation config: the shape's columns, and the usual split/group/time columns."""
    data.update(settings)
    split_col = _pick_split(profiles, used, notes)
    if split_col:
        data["split_column"] = split_col
        used.add(split_col)
    group = _pick_group(profiles, used, notes)
    if group:
        data["group_column"] = group
        used.add(group)
    time_col = _pick_time(profiles, used, notes)
    if time_col:
        data["time_column"] = time_col
    raw: dict[str, Any] = {"task": "text-generation", "data": data}
    if split_col:
        raw["split"] = {"method": "given"}
    try:
        config = KeepfitConfig.model_validate(raw)
    except Exception as err:  # pydantic ValidationError: report as a config problem
        raise ConfigError(f"The inferred config is not valid ({err}). Pass the columns explicitly.") from None
    return Inference(config, notes, [])


# --------------------------------------------------------------------------------------------------- images


def _is_image_name(name: str) -> bool:
    return name.strip().lower().endswith(IMAGE_EXTENSIONS)


def _count_images(folder: Path) -> int:
    """Image files (by extension) at any depth under ``folder``, hidden folders skipped."""
    n = 0
    for _, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        n += sum(_is_image_name(f) for f in files)
    return n


def _class_folders(folder: Path) -> dict[str, int]:
    """Image files under each visible subfolder of ``folder``, by subfolder name; subfolders without images
    are left out."""
    counts = {sub.name: _count_images(sub) for sub in sorted(folder.iterdir()) if sub.is_dir()
              and not sub.name.startswith(".")}
    return {name: n for name, n in counts.items() if n}


def _image_folder_inference(folder: Path, classes: dict[str, int]) -> Inference:
    """image-classification from a folder of class subfolders: ``data.train`` is the folder."""
    loose = sum(_is_image_name(p.name) for p in folder.iterdir() if p.is_file())
    notes = [
        f"task: image-classification, {folder.name}/ holds images in {len(classes)} subfolder(s), one per class "
        f"({sum(classes.values()):,} image files by extension: {', '.join(IMAGE_EXTENSIONS)})"
    ]
    if len(classes) < 2:
        notes.append("only one class subfolder: a classifier needs at least two, so add a subfolder per class")
    if loose:
        notes.append(f"{loose} image(s) lie directly in {folder.name}/, outside any class subfolder, and have no label")
    if set(c.lower() for c in classes) <= _SPLIT_VALUES:
        notes.append(
            f"the subfolders are named like splits ({', '.join(classes)}) but are read as classes; point "
            "data.train (and data.validation / data.test) at the split folders instead"
        )
    shown = sorted(classes, key=lambda k: (-classes[k], k))
    listed = ", ".join(f"{k} ({classes[k]})" for k in shown[:100])
    more = f", ... and {len(shown) - 100} more" if len(shown) > 100 else ""
    notes.append(f"labels found (the subfolders, {len(shown)}, with image counts): {listed}{more}")
    config = _validated({"task": IMAGE_CLASSIFICATION, "data": {"train": str(folder)}})
    return Inference(config, notes, shown)


def _pick_image_column(profiles: dict[str, _Profile]) -> str | None:
    """The column whose sampled values mostly name image files (the most such values wins)."""
    shares = {name: p.share(_is_image_name) for name, p in profiles.items() if p.filled}
    found = [name for name, share in shares.items() if share >= _IMAGE_SHARE]
    return max(found, key=lambda n: (shares[n], profiles[n].filled)) if found else None


def _image_table_inference(
    path: Path,
    profiles: dict[str, _Profile],
    data: dict[str, Any],
    notes: list[str],
    image_column: str,
    label_column: str | None,
) -> Inference:
    """image-classification from a table of image paths: ``data.image_column`` and the label column."""
    p = profiles[image_column]
    probe = p.values[:_PATHS_PROBED]
    found = sum((path.parent / v).is_file() or Path(v).is_file() for v in probe)
    notes.append(
        f"image column: {image_column!r} ({p.share(_is_image_name):.0%} of its values end in an image extension; "
        f"{found} of the first {len(probe)} name existing files, paths relative to {path.name}'s folder)"
    )
    if label_column:
        answer_task, settings = _given_answer(profiles, label_column, None, "single-label")
    else:
        split_guess = _pick_split(profiles, {image_column}, [])
        reserved = {x for x in (split_guess,) if x} | {n for n in profiles if _hinted(n, _GROUP_HINTS) is not None}
        answer_task, settings = _pick_answer(profiles, image_column, reserved, [])
    if answer_task != "single-label" or not settings.get("label_column"):
        raise DataError(
            f"{path.name}: image-classification takes one label per image, but the label column looks like "
            f"{answer_task} ({settings}). Pass --label-column NAME for the column holding each image's class."
        )
    answer = settings["label_column"]
    notes.insert(1, f"task: image-classification, label column {answer!r} ({profiles[answer].distinct} distinct "
                 "values" + (", given)" if label_column else ")"))
    data.update({"image_column": image_column, "label_column": answer})
    used = {image_column, answer}
    split_col = _pick_split(profiles, used, notes)
    if split_col:
        data["split_column"] = split_col
        used.add(split_col)
    group = _pick_group(profiles, used, notes)
    if group:
        data["group_column"] = group
    note, labels = _label_note(profiles[answer], "single-label", settings)
    notes.append(note)
    raw: dict[str, Any] = {"task": IMAGE_CLASSIFICATION, "data": data}
    if split_col:
        raw["split"] = {"method": "given"}
    return Inference(_validated(raw), notes, labels)


def _validated(raw: dict[str, Any]) -> KeepfitConfig:
    try:
        return KeepfitConfig.model_validate(raw)
    except Exception as err:  # pydantic ValidationError: report as a config problem
        raise ConfigError(f"The inferred config is not valid ({err}). Pass the columns explicitly.") from None


# --------------------------------------------------------------------------------------------------- writing


_SECTION_HELP = {
    "data": "Where the data is and which columns mean what (paths are relative to this file).",
    "quality": "What `keepfit data check` does with each finding: drop, keep or fail.",
    "split": "How the kept rows become train, validation and test (seeded, reproducible).",
    "model": "The pre-trained model to fine-tune: a local folder or a name in the Hugging Face cache.",
    "train": "The fine-tuning recipe.",
    "evaluate": "What evaluation reports.",
    "gate": "The update gate: a candidate replaces the champion only if every rule passes.",
    "update": "How `keepfit update` builds a candidate from the champion.",
    "registry": "Where model versions are registered (MLflow; SQLite inside the store when empty).",
    "tune": "`keepfit tune`: the search space (empty: keepfit's default space), sampler, pruner, budget, storage.",
}
_TOP_HELP = {
    "store": "Project store: data snapshots, runs, checkpoints, registry.",
    "task": "single-label | multi-label | regression | text-generation | image-classification",
    "labels": "Known labels. Empty: taken from the data. Listed: any other label is quarantined as unknown.",
}


def _yaml_scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isinf(value) or math.isnan(value):
            return {True: ".inf", False: "-.inf"}[value > 0] if math.isinf(value) else ".nan"
        text = repr(value)
        if "e" in text and "." not in text.split("e")[0]:
            mantissa, exponent = text.split("e")
            text = f"{mantissa}.0e{exponent if exponent[0] in '+-' else '+' + exponent}"
        return text
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_yaml_scalar(v) for v in value) + "]"
    if isinstance(value, dict):  # a flow mapping, e.g. gate.groups
        return "{" + ", ".join(f"{_yaml_scalar(str(k))}: {_yaml_scalar(v)}" for k, v in value.items()) + "}"
    text = str(value)
    if _PLAIN.fullmatch(text) and yaml.safe_load(text) == text:
        return text
    return json.dumps(text, ensure_ascii=False)


def _choices(annotation: Any) -> str:
    """'a | b | c' for a Literal field (possibly Optional), else ''."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is typing.Literal:
        return " | ".join(str(a) for a in args)
    for arg in args:
        if typing.get_origin(arg) is typing.Literal:
            return _choices(arg)
    return ""


def _section_lines(section: BaseModel, notes_for: dict[str, str], indent: str = "  ") -> list[str]:
    lines = []
    for name, info in type(section).model_fields.items():
        value = getattr(section, name)
        if isinstance(value, BaseModel):  # a nested section (train.augment)
            lines.append(f"{indent}{name}:" + (f"  # {info.description}" if info.description else ""))
            lines += _section_lines(value, {}, indent + "  ")
            continue
        choices = _choices(info.annotation)
        comment = notes_for.get(name) or " ".join(
            x for x in (choices and f"{choices}.", info.description) if x
        )
        line = f"{indent}{name}: {_yaml_scalar(value)}"
        lines.append(f"{line}  # {comment}" if comment else line)
    return lines


def render_config_yaml(
    config: KeepfitConfig, notes: list[str], base: Path | None = None, label_names: list[str] | None = None
) -> str:
    """The commented YAML text of ``config``; ``data`` paths are written relative to ``base`` when given.

    ``label_names`` (the labels seen in the sample) are written as a commented-out ``labels:`` list.
    """
    d = config.data
    if base is not None:
        paths = {k: getattr(d, k) for k in ("train", "validation", "test") if getattr(d, k)}
        d = d.model_copy(update={k: _relative(v, base) for k, v in paths.items()})
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    out = [
        f"# keepfit.yaml, written by `keepfit init` on {stamp}. Review it, then run `keepfit data check`.",
        "# Every setting has a default; delete a line to use the default. How the data was read:",
        *[f"#   - {n}" for n in notes if not n.startswith("labels ")],
        "",
    ]
    for name in ("store", "task", "labels"):
        value = getattr(config, name)
        if name == "store":
            value = _relative(value, base) if base is not None and Path(value).is_absolute() else value
        out.append(f"{name}: {_yaml_scalar(value)}  # {_TOP_HELP[name]}")
    for note in (n for n in notes if n.startswith("labels ")):
        out += ["# " + line for line in textwrap.wrap(note, 108)]
    if config.task != "regression" and label_names:
        out.append("# To quarantine any other label as unknown, list the labels (uncomment and edit):")
        out += [
            "# " + line
            for line in textwrap.wrap("labels: " + _yaml_scalar(label_names), 108, subsequent_indent="  ")
        ]
    column_notes = {
        "text_column": _note_for(notes, "text column"),
        "label_column": _note_for(notes, "task:") if config.task != "text-generation" else None,
        "group_column": _note_for(notes, "group column"),
        "time_column": _note_for(notes, "time column"),
        "split_column": _note_for(notes, "split column"),
        "messages_column": _note_for(notes, "task: text-generation, chat"),
        "prompt_column": _note_for(notes, "task: text-generation, prompt"),
        "system_column": _note_for(notes, "system column"),
        "image_column": _note_for(notes, "image column"),
    }
    if is_image(config.task) and "image_column" not in config.data.model_fields_set:  # the folder shape
        column_notes["train"] = "a folder of images, one subfolder per class (the subfolder names are the labels)"
        column_notes["label_column"] = None
    for name, help_text in _SECTION_HELP.items():
        section = d if name == "data" else getattr(config, name)
        out += ["", f"# {help_text}", f"{name}:"]
        notes_for = {k: v for k, v in column_notes.items() if v} if name == "data" else {}
        if name == "train" and _note_for(notes, "train.strategy"):
            notes_for = {"strategy": _note_for(notes, "train.strategy")}
        out += _section_lines(section, notes_for)
    return "\n".join(out) + "\n"


def _note_for(notes: list[str], prefix: str) -> str | None:
    return next((n for n in notes if n.startswith(prefix)), None)


def _relative(value: str, base: Path) -> str:
    absolute = Path(value).resolve()
    try:
        relative = os.path.relpath(absolute, base.resolve())
    except ValueError:  # another drive on Windows
        return str(absolute)
    # next to the config (or close by) reads best relative; far away, the absolute path is clearer
    return str(absolute) if relative.startswith(os.path.join("..", "..", "..")) else relative


def with_model_name(config: KeepfitConfig, config_path: str | Path) -> KeepfitConfig:
    """``config`` with ``registry.model_name`` filled in from the project folder (the folder holding the store,
    as seen from ``config_path``) when it is empty, so the registry follows the project when it is renamed or
    copied."""
    from keepfit.registry.naming import model_name_from_folder

    if config.registry.model_name:
        return config
    project = (Path(config_path).parent / config.store).resolve().parent
    registry = config.registry.model_copy(update={"model_name": model_name_from_folder(project.name)})
    return config.model_copy(update={"registry": registry})


def write_config_file(
    config: KeepfitConfig,
    notes: list[str],
    path: str | Path,
    force: bool = False,
    *,
    label_names: list[str] | None = None,
) -> Path:
    """Write the commented config atomically; refuse to replace an existing file unless ``force``.

    ``label_names`` are written as a commented-out ``labels:`` list the user can enable. An empty
    ``registry.model_name`` is written as the project folder's name (see :func:`with_model_name`).
    """
    from keepfit._io import atomic_write_text
    from keepfit.config import load_config

    target = Path(path)
    if target.exists() and not force:
        raise ConfigError(
            f"{target} already exists; expected a new path. Pass --force to overwrite it, or --out "
            "OTHER.yaml."
        )
    config = with_model_name(config, target)
    text = render_config_yaml(config, notes, base=target.parent, label_names=label_names)
    atomic_write_text(target, text)
    load_config(target)  # what we wrote must read back; a failure here is a bug worth surfacing
    return target
