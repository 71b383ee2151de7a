"""Scores of generated answers against their references, and the evaluation of a text-generation model.

One row of :func:`score_generations` per example, columns :data:`SCORE_COLUMNS`, every value in [0, 1]:

- ``exact_match``: the answer equals the reference after NFC, stripping and collapsing runs of whitespace into
  one space (case is kept); for a JSON reference (the whole reference is one JSON object) the parsed objects are
  equal instead (key order and spacing do not matter; ``true`` is not ``1``, ``1`` equals ``1.0``).
- ``token_f1``: SQuAD's F1 of the bags of tokens: lowercase, ASCII punctuation dropped, the articles "a", "an",
  "the" dropped, split on whitespace (both empty: 1).
- ``field_match``: JSON references: the share of the reference object's top-level fields whose value the
  answer's object has equal (extra fields in the answer cost nothing here, only in ``exact_match``; an empty
  reference object scores as ``exact_match``); 0 when the answer is not one JSON object. Other references: equal
  to ``exact_match``.
- ``json_valid``: JSON references: the whole answer (stripped) parses as one JSON object (no code fence, no text
  around it; NaN/Infinity are not JSON). Other references: 1 (nothing to be valid against), so the headline
  value is 1.0 for free text.
- ``rouge_l``: ROUGE-L F-measure (Lin 2004, beta = 1): the longest common subsequence of the two token lists,
  ``F = 2 P R / (P + R)`` with ``P = LCS / len(answer)``, ``R = LCS / len(reference)``; tokens are the runs of
  word characters (``\\w+``) of the lowercased text (both empty: 1).
- ``ended``: the generation stopped with EOS within ``max_new_tokens`` (given by the caller).
- ``right``: the ``match`` score (``exact`` -> exact_match, ``field`` -> field_match, ``token_f1``, ``rouge_l``)
  is at least ``threshold``. This is "is this example right" for accuracy, flips, McNemar and the gate.

Every column is a per-example value whose mean is the metric, so intervals, slices and paired deltas come from
summed statistics (:func:`generation_stats`, :func:`generation_from_sums`) and
:func:`keepfit.evaluation.bootstrap.bootstrap_sums`, as for the classification tasks.
"""

from __future__ import annotations

import json
import re
import string
import unicodedata
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from keepfit.config import EvaluateConfig
from keepfit.errors import ConfigError, DataError
from keepfit.evaluation.evaluation import MAX_LISTED_ERRORS, EvaluationResult, _intervals, _per_slice
from keepfit.evaluation.slices import slice_masks
from keepfit.types import COMPLETION, GENERATION, PROMPT

__all__ = [
    "SCORE_COLUMNS",
    "GENERATION_METRICS",
    "MATCH_COLUMN",
    "AUTO_JSON_SHARE",
    "match_kind",
    "score_generations",
    "field_scores",
    "evaluate_generations",
    "generation_stats",
    "generation_from_sums",
    "parse_json_object",
    "exact_match",
    "token_f1",
    "rouge_l",
    "lcs_length",
    "chat_text",
]

SCORE_COLUMNS = ("right", "exact_match", "token_f1", "field_match", "json_valid", "rouge_l", "ended")
# The metric each score column's mean is reported as (same order as SCORE_COLUMNS).
GENERATION_METRICS = ("accuracy", "exact_match", "token_f1", "field_match", "json_valid", "rouge_l", "eos_rate")
MATCH_COLUMN = {"exact": "exact_match", "field": "field_match", "token_f1": "token_f1", "rouge_l": "rouge_l"}
# "auto" reads the references as JSON when at least this share of them are JSON objects (a stray free-text
# answer in a JSON data set should not turn every example's score into exact string equality).
AUTO_JSON_SHARE = 0.9
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)
_WORDS = re.compile(r"\w+")
_TOL = 1e-12


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_json_object(text: str) -> dict[str, Any] | None:
    """The JSON object the whole (stripped) ``text`` is, or None when it is not exactly one JSON object."""
    stripped = str(text).strip()
    if not stripped.startswith("{"):
        return None
    try:
        value = json.loads(stripped, parse_constant=_reject_constant)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _same(a: Any, b: Any) -> bool:
    """Equal as JSON values: ``true`` is not ``1``, ``1`` equals ``1.0``, objects compare key by key."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def _normalised(text: str) -> str:
    return " ".join(unicodedata.normalize("NFC", str(text)).split())


def exact_match(reference: str, output: str) -> float:
    """1.0 when ``output`` equals ``reference`` (parsed JSON objects equal, else normalised text), else 0.0."""
    ref = parse_json_object(reference)
    if ref is not None:
        out = parse_json_object(output)
        return float(out is not None and _same(ref, out))
    return float(_normalised(reference) == _normalised(output))


def _squad_tokens(text: str) -> list[str]:
    text = unicodedata.normalize("NFC", str(text)).lower().translate(_PUNCTUATION)
    return _ARTICLES.sub(" ", text).split()


def token_f1(reference: str, output: str) -> float:
    """SQuAD token F1 (lowercase, no ASCII punctuation, no articles, whitespace tokens); both empty: 1.0."""
    ref, out = _squad_tokens(reference), _squad_tokens(output)
    if not ref or not out:
        return float(ref == out)
    same = sum((Counter(ref) & Counter(out)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(out), same / len(ref)
    return 2 * precision * recall / (precision + recall)


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence of two token sequences.

    Bit-parallel (Allison & Dix 1986; Crochemore et al. 2001): one big-integer step per token of ``a``, so a few
    hundred tokens a side cost microseconds rather than the tens of thousands of steps of the table.
    """
    if not a or not b:
        return 0
    where: dict[str, int] = {}
    for i, token in enumerate(b):
        where[token] = where.get(token, 0) | (1 << i)
    full = (1 << len(b)) - 1
    v = full
    for token in a:
        u = v & where.get(token, 0)
        v = ((v + u) | (v - u)) & full
    return len(b) - v.bit_count()


def rouge_l(reference: str, output: str) -> float:
    """ROUGE-L F-measure (beta = 1) on lowercased ``\\w+`` tokens; both empty: 1.0, one empty: 0.0."""
    ref = _WORDS.findall(unicodedata.normalize("NFC", str(reference)).lower())
    out = _WORDS.findall(unicodedata.normalize("NFC", str(output)).lower())
    if not ref or not out:
        return float(ref == out)
    lcs = lcs_length(out, ref)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(out), lcs / len(ref)
    return 2 * precision * recall / (precision + recall)


def _field_match(ref: dict[str, Any], out: dict[str, Any] | None) -> float:
    if out is None:
        return 0.0
    if not ref:
        return float(not out)
    return sum(k in out and _same(v, out[k]) for k, v in ref.items()) / len(ref)


def match_kind(references: Sequence[str], configured: str) -> str:
    """The score that decides "right": ``"auto"`` -> ``"field"`` when at least :data:`AUTO_JSON_SHARE` of the
    references are JSON objects, else ``"exact"``; any other value is returned as it is."""
    if configured != "auto":
        return configured
    if not len(references):
        return "exact"
    share = sum(parse_json_object(r) is not None for r in references) / len(references)
    return "field" if share >= AUTO_JSON_SHARE else "exact"


def score_generations(
    references: Sequence[str],
    outputs: Sequence[str],
    ended: np.ndarray | Sequence[bool],
    *,
    match: str,
    threshold: float,
) -> np.ndarray:
    """Per-example scores [n, 7] (float, columns :data:`SCORE_COLUMNS`, conventions in the module docstring).

    ``match`` is one of ``auto``, ``exact``, ``field``, ``token_f1``, ``rouge_l`` (``auto`` resolved by
    :func:`match_kind`); ``threshold`` in (0, 1]. Raises ConfigError for an unknown match, DataError for
    misaligned inputs.
    """
    refs, outs = [str(r) for r in references], _texts(outputs, len(references), "outputs")
    stopped = _flags(ended, len(refs))
    kind = match_kind(refs, match)
    if kind not in MATCH_COLUMN:
        raise ConfigError(
            f"generation match must be one of auto, {', '.join(MATCH_COLUMN)}; got {match!r}. "
            "Set evaluate.generation_match to one of them."
        )
    if not 0 < threshold <= 1:
        raise ConfigError(f"generation threshold must lie in (0, 1], got {threshold!r}; set "
                          "evaluate.generation_threshold.")
    scores = np.zeros((len(refs), len(SCORE_COLUMNS)), dtype=float)
    for i, (ref, out) in enumerate(zip(refs, outs, strict=True)):
        scores[i, 1:6] = _scores_of(ref, out)
    scores[:, 6] = stopped
    scores[:, 0] = scores[:, SCORE_COLUMNS.index(MATCH_COLUMN[kind])] >= threshold - _TOL
    return scores


def _scores_of(reference: str, output: str) -> tuple[float, float, float, float, float]:
    """exact_match, token_f1, field_match, json_valid, rouge_l of one answer."""
    ref = parse_json_object(reference)
    f1, rouge = token_f1(reference, output), rouge_l(reference, output)
    if ref is None:
        exact = float(_normalised(reference) == _normalised(output))
        return exact, f1, exact, 1.0, rouge
    out = parse_json_object(output)
    exact = float(out is not None and _same(ref, out))
    return exact, f1, _field_match(ref, out), float(out is not None), rouge


def _texts(values: Sequence[str], n: int, what: str) -> list[str]:
    texts = list(values)
    if len(texts) != n:
        raise DataError(
            f"{what}: expected {n} generated answers (one per reference, same order), got {len(texts)}."
        )
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise DataError(
            f"{what}: generated answers must be strings; rows {bad[:10]} hold "
            f"{type(texts[bad[0]]).__name__}. Decode the generated tokens to text first."
        )
    return texts


def _flags(ended: np.ndarray | Sequence[bool], n: int) -> np.ndarray:
    flags = np.asarray(ended)
    if flags.shape != (n,):
        raise DataError(
            f"ended: expected one flag per example (shape [{n}]), got shape {list(flags.shape)}; pass whether "
            "each generation stopped with EOS within max_new_tokens."
        )
    return flags.astype(bool).astype(float)


def field_scores(references: Sequence[str], outputs: Sequence[str]) -> dict[str, np.ndarray]:
    """Per top-level field of the JSON references (in order of first appearance): [n] floats, 1.0 where the
    answer's object has the reference's value, 0.0 where not (or the answer is not an object), NaN where the
    row's reference lacks the field (or is not a JSON object)."""
    refs = [parse_json_object(r) for r in references]
    outs = [parse_json_object(o) for o in _texts(outputs, len(refs), "outputs")]
    names = list(dict.fromkeys(k for ref in refs if ref is not None for k in ref))
    table = {name: np.full(len(refs), np.nan) for name in names}
    for i, (ref, out) in enumerate(zip(refs, outs, strict=True)):
        for k, v in (ref or {}).items():
            table[k][i] = float(out is not None and k in out and _same(v, out[k]))
    return table


def generation_stats(scores: np.ndarray, fields: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """Per-example statistics [n, 1 + 7 + 2F]: one, the score columns, then per field (``fields`` from
    :func:`field_scores`) whether the reference has it and whether the answer has it right."""
    scores = np.asarray(scores, dtype=float)
    columns = [np.ones((len(scores), 1)), scores]
    if fields:
        table = np.column_stack(list(fields.values()))
        columns += [np.isfinite(table).astype(float), np.nan_to_num(table, nan=0.0)]
    return np.hstack(columns)


def generation_from_sums(sums: np.ndarray, n_fields: int = 0) -> dict[str, np.ndarray]:
    """Metrics from summed :func:`generation_stats` (any leading shape): :data:`GENERATION_METRICS` and, per
    field, ``field_accuracy_per_class`` (share of rows having the field that got it right; NaN without rows)
    and ``support_per_class`` (rows having the field)."""
    one = sums[..., 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        out = {name: np.where(one > 0, sums[..., 1 + j] / one, np.nan) for j, name in enumerate(GENERATION_METRICS)}
        start = 1 + len(SCORE_COLUMNS)
        has, right = sums[..., start : start + n_fields], sums[..., start + n_fields : start + 2 * n_fields]
        out["field_accuracy_per_class"] = np.where(has > 0, right / np.where(has > 0, has, 1), np.nan)
    out["support_per_class"] = has
    return out


def chat_text(prompt: str) -> str:
    """A prompt (JSON list of ``{"role", "content"}`` messages) as readable text, one ``role: content`` block per
    message; text that is not such a list is returned as it is."""
    try:
        messages = json.loads(prompt)
    except (TypeError, ValueError):
        return str(prompt)
    if not isinstance(messages, list) or not all(isinstance(x, dict) for x in messages):
        return str(prompt)
    return "\n".join(f"{x.get('role', '?')}: {x.get('content', '')}" for x in messages)


def evaluate_generations(
    frame: pd.DataFrame,
    outputs: list[str],
    ended: np.ndarray,
    config: EvaluateConfig,
    *,
    seed: int = 0,
) -> EvaluationResult:
    """Evaluate generated answers against ``frame[completion]`` (canonical text-generation rows, in order).

    ``outputs``: the decoded answers [n]; ``ended``: bool [n], the generation stopped with EOS within
    ``config.max_new_tokens``. Right = the ``config.generation_match`` score >= ``config.generation_threshold``.
    Headline: :data:`GENERATION_METRICS` (means of the score columns), each with a percentile bootstrap
    interval; per slice (``slice:<name>`` columns, text-length bins) the right rate; per class: per top-level
    field of JSON references {accuracy, n} (empty for free text); errors: the wrong answers, lowest score first.
    Raises DataError when the frame lacks the completion column, is empty or does not align with ``outputs``.
    """
    references = _references(frame)
    n = len(references)
    outputs = _texts(outputs, n, "outputs")
    match = match_kind(references, config.generation_match)
    scores = score_generations(references, outputs, ended, match=match, threshold=config.generation_threshold)
    stats = generation_stats(scores)
    headline = {k: float(v) for k, v in generation_from_sums(stats.sum(axis=0)).items() if k in GENERATION_METRICS}
    masks = slice_masks(frame, n, config.length_bins)
    settings = {
        "bootstrap": config.bootstrap,
        "confidence": config.confidence,
        "seed": seed,
        "length_bins": list(config.length_bins),
        "length_unit": "characters",
        "match": match,
        "match_configured": config.generation_match,
        "threshold": config.generation_threshold,
        "max_new_tokens": config.max_new_tokens,
        "json_references": int(sum(parse_json_object(r) is not None for r in references)),
    }
    return EvaluationResult(
        task=GENERATION,
        labels=[],
        n=n,
        headline=headline,
        intervals=_intervals(GENERATION, stats, generation_from_sums, config, seed),
        per_class=_per_field(references, outputs) if match_kind(references, "auto") == "field" else {},
        per_slice=_per_slice(GENERATION, stats, generation_from_sums, masks, config, seed),
        confusion=None,
        calibration=None,
        thresholds=None,
        predicted=list(outputs),
        top_k=None,
        settings=settings,
        errors=_worst_answers(frame, references, outputs, scores, match),
    )


def _references(frame: pd.DataFrame) -> list[str]:
    if COMPLETION not in frame.columns:
        raise DataError(
            f"text-generation evaluation needs the {COMPLETION!r} column (the reference answers); the frame has "
            f"{sorted(map(str, frame.columns))}. Pass canonical rows of a text-generation snapshot."
        )
    if len(frame) == 0:
        raise DataError("Nothing to evaluate: the frame has 0 rows. Evaluate on a split with at least one row.")
    return ["" if v is None or v != v else str(v) for v in frame[COMPLETION].tolist()]


def _per_field(references: list[str], outputs: list[str]) -> dict[str, dict[str, float]]:
    table = field_scores(references, outputs)
    return {
        name: {"accuracy": float(np.nanmean(values)), "n": int(np.isfinite(values).sum())}
        for name, values in table.items()
    }


def _worst_answers(
    frame: pd.DataFrame, references: list[str], outputs: list[str], scores: np.ndarray, match: str
) -> list[dict[str, Any]]:
    """The wrong answers, lowest ``match`` score first (ties in row order), at most MAX_LISTED_ERRORS."""
    score = scores[:, SCORE_COLUMNS.index(MATCH_COLUMN[match])]
    wrong = np.flatnonzero(scores[:, 0] == 0)
    order = wrong[np.argsort(score[wrong], kind="stable")][:MAX_LISTED_ERRORS]
    prompts = frame[PROMPT].tolist() if PROMPT in frame.columns else None
    return [
        {
            "index": int(i),
            "prompt": chat_text(prompts[i]) if prompts is not None else "",
            "reference": references[i],
            "output": outputs[i],
            "score": float(score[i]),
            "ended": bool(scores[i, 6]),
        }
        for i in order
    ]
