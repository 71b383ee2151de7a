"""Quality findings on the canonical row table: duplicates, conflicts, near-duplicates, label
distribution, leakage.

Every check is a small object with one interface (:class:`QualityCheck`): ``run(frame, config) -> Finding``.
A finding says what was found (kind, count, up to five examples with row numbers and source) and which
rows the
configured action concerns; :func:`apply_finding` then drops those rows into the quarantine with a
reason, keeps
them, or raises :class:`~keepfit.errors.DataError` (action ``fail``). Dropping never loses a row: it
moves to the
quarantine, so ``in = kept + quarantined`` still holds.

Order matters and :func:`run_quality` fixes it: conflicting labels first (every copy of a text with two
answers
is quarantined, because we cannot know which answer is right), then exact duplicates (same text and
answer; the
first copy stays), then near-duplicates, then the label distribution of what is left. Leakage needs splits and
runs after splitting (:func:`check_leakage`).

Duplicate checks work within a split when the table already has one (user-given splits), so a copy in the test
split is never dropped in favour of a training copy; copies across splits are leakage.

For text-generation the same checks read the prompt where classification reads the text: an exact duplicate
has the same ``prompt`` (the whole JSON, system turn included) and the same completion, a conflict the same
prompt with different completions (reason ``conflicting_completions``), exact leakage the same prompt in two
splits; near-duplicates and near leakage compare ``text`` (the prompt's non-system turns). There is no label
distribution: the ``label_distribution`` finding reports the completion lengths instead.

For image-classification a row is its image: identity is ``image_sha`` (the file's bytes, whatever its name), so
exact duplicates, conflicts and exact leakage are found by content; near-duplicates and near leakage compare the
64-bit perceptual hashes (``image_phash``): two images are near-duplicates when the hashes differ in at most
``quality.image_near_duplicate_distance`` bits (all pairs, chunked numpy, up to ``_PHASH_PAIRS_MAX_ROWS`` rows;
above that, equal hashes only). Findings name the images by their path (``text``) and give the distance in bits.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from keepfit.config import KeepfitConfig
from keepfit.data.validate import QUARANTINE_COLUMNS
from keepfit.errors import DataError
from keepfit.types import (
    COMPLETION,
    IMAGE_PHASH,
    IMAGE_SHA,
    PROMPT,
    ROW,
    SOURCE,
    SPLIT,
    TARGET,
    TEXT,
    Task,
    is_generation,
    label_column_for,
)

__all__ = [
    "Finding",
    "QualityCheck",
    "ConflictingLabels",
    "ExactDuplicates",
    "NearDuplicates",
    "LabelDistribution",
    "Leakage",
    "QUALITY_CHECKS",
    "QualityOutcome",
    "run_quality",
    "check_leakage",
    "apply_finding",
    "answer_strings",
    "aggressive_key",
    "MAX_EXAMPLES",
]

MAX_EXAMPLES = 5
_RAW_CHARS = 300
_EVAL_ORDER = ("test", "validation")  # leakage: copies in these splits are kept, the other side is flagged


@dataclass
class Finding:
    """One quality finding.

    ``count`` is the number of rows the finding concerns (for ``label_distribution``: labels under the
    minimum);
    ``flagged`` holds the positions (0-based, into the checked frame) of the rows the action applies to, with
    one ``flag_detail`` each; ``action`` is the configured action (drop, keep, fail) or ``report`` for
    findings
    that never remove rows.
    """

    kind: str
    count: int
    action: str
    summary: str
    examples: list[dict[str, Any]] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    reason: str = ""
    flagged: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    flag_detail: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able view (without the flagged positions)."""
        return {
            "kind": self.kind,
            "count": int(self.count),
            "action": self.action,
            "summary": self.summary,
            "examples": self.examples,
            "details": self.details,
        }


@runtime_checkable
class QualityCheck(Protocol):
    """A quality check: a name, and ``run`` returning one :class:`Finding` for a canonical row table."""

    name: str

    def run(self, frame: pd.DataFrame, config: KeepfitConfig) -> Finding: ...


# ------------------------------------------------------------------------------------------------ helpers


def answer_strings(frame: pd.DataFrame, task: Task) -> pd.Series:
    """The answer of every row as a comparable string (multi-label: sorted labels joined by ``|``)."""
    column = label_column_for(task)
    if column not in frame:
        return pd.Series([""] * len(frame), index=frame.index, dtype=object)
    values = frame[column]
    if task == "multi-label":
        return values.map(lambda v: "|".join(sorted(str(x) for x in v)))
    if task == "regression":
        return values.astype(float).map(lambda v: repr(round(v, 9)))
    return values.astype(str)


def codes(values: pd.Series | np.ndarray | pa.Array) -> np.ndarray:
    """An int64 code per row: equal values get equal codes, numbered in order of first appearance
    (pyarrow dictionary encoding; missing values are one more value)."""
    if isinstance(values, pd.Series) and pd.api.types.is_numeric_dtype(values.dtype):
        return pd.factorize(values.to_numpy(), use_na_sentinel=False)[0].astype(np.int64)
    arr = values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(values, from_pandas=True)
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if len(arr) == 0:
        return np.empty(0, dtype=np.int64)
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        arr = pc.cast(arr, pa.large_string()) if not pa.types.is_dictionary(arr.type) else arr
    encoded = arr.dictionary_encode(null_encoding="encode")
    return encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)


def combine_codes(*parts: np.ndarray) -> np.ndarray:
    """One code per distinct tuple of codes, still numbered in order of first appearance."""
    out = parts[0].astype(np.int64)
    for part in parts[1:]:
        width = int(part.max()) + 1 if len(part) else 1
        out = pd.factorize(out * width + part)[0].astype(np.int64)
    return out


def first_positions(code: np.ndarray) -> np.ndarray:
    """For codes numbered by first appearance: position of the first row of every code (index = code)."""
    if len(code) == 0:
        return np.empty(0, dtype=np.int64)
    previous_max = np.maximum.accumulate(np.concatenate([[-1], code[:-1]]))
    return np.flatnonzero(code > previous_max)


# Derived columns a caller may carry through the checks so that each is computed once per check run (see
# add_derived_columns); the checks compute them when absent. Never stored.
TEXT_CODE, NEAR_KEY = "_text_code", "_near_key"


def identity_column(frame: pd.DataFrame) -> str:
    """The column that says two rows ask the same thing: the image's SHA-256 (image-classification: the same
    bytes under another name are the same row), the prompt (text-generation: the whole conversation before the
    answer, system turn included) where the table has one, else the text."""
    if IMAGE_SHA in frame:
        return IMAGE_SHA
    return PROMPT if PROMPT in frame else TEXT


def text_codes(frame: pd.DataFrame) -> np.ndarray:
    """Codes of the identity column (text; prompt for text-generation), numbered by first appearance here."""
    if TEXT_CODE in frame:
        return pd.factorize(frame[TEXT_CODE].to_numpy())[0].astype(np.int64)
    return codes(frame[identity_column(frame)])


def add_derived_columns(frame: pd.DataFrame, config: KeepfitConfig) -> pd.DataFrame:
    """The frame with the text codes (and, above the near-duplicate row limit, the normalised keys) added."""
    out = frame.assign(**{TEXT_CODE: codes(frame[identity_column(frame)])})
    if _frame_near_method(frame, config) == "normalised_key":
        out[NEAR_KEY] = pd.Series(pd.arrays.ArrowExtensionArray(_key_array(frame[TEXT])), index=out.index)
    return out


def drop_derived_columns(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns=[TEXT_CODE, NEAR_KEY], errors="ignore")


def _near_keys(frame: pd.DataFrame) -> pa.Array:
    if NEAR_KEY in frame:
        arr = pa.array(frame[NEAR_KEY], from_pandas=True)
        return arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    return _key_array(frame[TEXT])


def _partition(frame: pd.DataFrame) -> np.ndarray:
    """Codes of the split of each row when the table has one (duplicates are looked for within a split)."""
    if SPLIT in frame:
        return codes(frame[SPLIT].astype(object))
    return np.zeros(len(frame), dtype=np.int64)


def _where(frame: pd.DataFrame, pos: int) -> str:
    row = frame[ROW].iat[pos]
    source = frame[SOURCE].iat[pos] if SOURCE in frame else ""
    return f"row {int(row)}" + (f" of {source}" if source else "")


def _example(frame: pd.DataFrame, pos: int, answers: pd.Series, **extra: Any) -> dict[str, Any]:
    out = {
        "row": int(frame[ROW].iat[pos]),
        "source": str(frame[SOURCE].iat[pos]) if SOURCE in frame else "",
        "text": str(frame[TEXT].iat[pos])[:200],
        "label": str(answers.iat[pos])[:200],
    }
    if SPLIT in frame:
        out["split"] = str(frame[SPLIT].iat[pos])
    out.update(extra)
    return out


def _near_detail(method: str, other_row: int, similarity: float) -> str:
    """The quarantine detail of a near-duplicate: which row it resembles, and how closely."""
    if method == "minhash":
        how = f"Jaccard {similarity:.2f} with row {other_row}"
    elif method in ("phash", "phash_equal"):
        how = f"perceptual hashes {distance_from_similarity(similarity)} of 64 bits apart"
    else:
        how = f"same normalised text as row {other_row}"
    return f"near-duplicate of row {other_row} ({how})"


def _closeness(method: str, similarity: float) -> dict[str, Any]:
    """How close a near match is, for an example: the similarity, and for images the distance in bits."""
    out: dict[str, Any] = {"similarity": round(similarity, 3)}
    if method in ("phash", "phash_equal"):
        out["distance"] = distance_from_similarity(similarity)
    return out


def _action_word(action: str) -> str:
    return {"drop": "dropped to the quarantine", "keep": "kept", "fail": "fail"}.get(action, action)


def _key_array(texts: pd.Series) -> pa.Array:
    arr = pa.array(texts, from_pandas=True)
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    arr = pc.utf8_lower(pc.cast(arr, pa.large_string()))
    arr = pc.replace_substring_regex(arr, pattern=r"[\W\d_]+", replacement=" ")
    return pc.utf8_trim_whitespace(arr)


def aggressive_key(texts: pd.Series) -> np.ndarray:
    """Lowercase, strip punctuation and digits, collapse spaces: the cheap near-duplicate key (vectorised)."""
    return np.asarray(_key_array(texts).to_numpy(zero_copy_only=False), dtype=object)


_WORD = re.compile(r"\w+")


def _shingles(text: str) -> set[str]:
    """Word bigrams of the lowercased text (unigrams for one-word texts)."""
    tokens = _WORD.findall(text.lower())
    if len(tokens) < 2:
        return set(tokens)
    return {f"{a} {b}" for a, b in zip(tokens, tokens[1:], strict=False)}


def _jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


_PRIME = np.uint64((1 << 31) - 1)
# LSH banding: 12 bands of 5 rows. A pair with Jaccard J becomes a candidate with probability
# 1 - (1 - J**5)**12: 0.999 at 0.85, 0.93 at 0.7, 0.32 at 0.5; every candidate is then checked exactly.
_BANDS, _BAND_ROWS = 12, 5
_WINDOW = 8  # within one LSH bucket, a row is compared with at most this many earlier rows per band


def minhash_signatures(
    sets: list[set[str]], num_perm: int = _BANDS * _BAND_ROWS, seed: int = 1
) -> np.ndarray:
    """MinHash signatures, shape (len(sets), num_perm), uint32, computed for all sets at once with numpy.

    Each shingle is hashed once (pandas' SipHash, stable across runs) and permuted by ``(a*x + b) mod p``
    with ``p = 2**31 - 1``, as datasketch's MinHash does; a row's signature is the minimum per permutation.
    Empty sets get ``p``. (datasketch builds one Python object per row: ~20x slower for the same estimate.)
    """
    lengths = np.fromiter((len(x) for x in sets), dtype=np.int64, count=len(sets))
    signatures = np.full((len(sets), num_perm), _PRIME, dtype=np.uint64)
    if lengths.sum() == 0:
        return signatures.astype(np.uint32)
    flat = np.fromiter((x for one in sets for x in one), dtype=object, count=int(lengths.sum()))
    hashed = pd.util.hash_array(flat, categorize=False) % _PRIME
    rng = np.random.RandomState(seed)
    a = rng.randint(1, int(_PRIME), size=num_perm).astype(np.uint64)
    b = rng.randint(0, int(_PRIME), size=num_perm).astype(np.uint64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    nonempty = lengths > 0
    segment_starts = starts[nonempty]
    for k in range(num_perm):
        permuted = (a[k] * hashed + b[k]) % _PRIME
        signatures[nonempty, k] = np.minimum.reduceat(permuted, segment_starts)
    return signatures.astype(np.uint32)


def _band_keys(signatures: np.ndarray, partition: np.ndarray) -> np.ndarray:
    """One bucket key per row and band, shape (rows, bands); rows of different partitions never share one."""
    keys = np.empty((len(signatures), _BANDS), dtype=np.uint64)
    salt = partition.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    for band in range(_BANDS):
        block = pd.DataFrame(signatures[:, band * _BAND_ROWS : (band + 1) * _BAND_ROWS])
        keys[:, band] = pd.util.hash_pandas_object(block, index=False).to_numpy() ^ salt
    return keys


class _MinHashLSH:
    """MinHash signatures + LSH banding over all texts of a frame, vectorised with numpy; candidates are
    confirmed with the exact Jaccard of their word-bigram sets, so the LSH only decides which pairs get
    compared."""

    def __init__(self, texts: list[str], partition: np.ndarray, threshold: float) -> None:
        self.threshold = threshold
        self.sets = [_shingles(t) for t in texts]
        self.keys = _band_keys(minhash_signatures(self.sets), partition)

    def _best(self, query: np.ndarray, other: np.ndarray) -> dict[int, tuple[int, float]]:
        """Verified pairs: for each query position its most similar candidate (ties: the earliest)."""
        if len(query) == 0:
            return {}
        pairs = np.unique(np.stack([query, other], axis=1), axis=0)
        best: dict[int, tuple[int, float]] = {}
        for q, o in pairs.tolist():
            sim = _jaccard(self.sets[q], self.sets[o])
            if sim >= self.threshold and (q not in best or sim > best[q][1]):
                best[q] = (o, sim)
        return best

    def earlier_matches(self, positions: np.ndarray) -> dict[int, tuple[int, float]]:
        """Rows (among ``positions``) nearly the same as an earlier row among ``positions``."""
        positions = positions[[bool(self.sets[p]) for p in positions]] if len(positions) else positions
        later, earlier = [], []
        for band in range(_BANDS):
            key = self.keys[positions, band]
            order = np.lexsort((positions, key))
            sorted_key, sorted_pos = key[order], positions[order]
            for d in range(1, _WINDOW + 1):
                same = sorted_key[d:] == sorted_key[:-d]
                later.append(sorted_pos[d:][same])
                earlier.append(sorted_pos[:-d][same])
        if not later:
            return {}
        return self._best(np.concatenate(later), np.concatenate(earlier))

    def cross_matches(self, query: np.ndarray, index: np.ndarray) -> dict[int, tuple[int, float]]:
        """Query rows nearly the same as some index row."""
        index = index[[bool(self.sets[p]) for p in index]] if len(index) else index
        query = query[[bool(self.sets[p]) for p in query]] if len(query) else query
        if len(index) == 0 or len(query) == 0:
            return {}
        found_q, found_i = [], []
        for band in range(_BANDS):
            uniq, first = np.unique(self.keys[index, band], return_index=True)
            qk = self.keys[query, band]
            at = np.minimum(np.searchsorted(uniq, qk), len(uniq) - 1)
            hit = uniq[at] == qk
            found_q.append(query[hit])
            found_i.append(index[first[at[hit]]])
        return self._best(np.concatenate(found_q), np.concatenate(found_i))


def _near_method(n_rows: int, config: KeepfitConfig) -> str:
    return "minhash" if n_rows <= config.quality.near_duplicate_max_rows else "normalised_key"


def _frame_near_method(frame: pd.DataFrame, config: KeepfitConfig) -> str:
    """How near-duplicates are found in this table: perceptual hashes for images (``phash``: all pairs within
    the distance; ``phash_equal``: equal hashes only, above the row limit), else the text methods."""
    if IMAGE_PHASH in frame:
        limit = min(config.quality.near_duplicate_max_rows, _PHASH_PAIRS_MAX_ROWS)
        return "phash" if len(frame) <= limit else "phash_equal"
    return _near_method(len(frame), config)


def _near_how(method: str, config: KeepfitConfig) -> str:
    """The method in words, for summaries."""
    q = config.quality
    return {
        "minhash": f"MinHash/LSH, Jaccard >= {q.near_duplicate_threshold} on word bigrams",
        "normalised_key": "normalised key (lowercase, no punctuation or digits), used above "
        f"{q.near_duplicate_max_rows:,} rows",
        "phash": f"perceptual hash, at most {q.image_near_duplicate_distance} of 64 bits apart",
        "phash_equal": "equal perceptual hashes, used above "
        f"{min(q.near_duplicate_max_rows, _PHASH_PAIRS_MAX_ROWS):,} images",
    }[method]


# ------------------------------------------------------------------------------------------------ images

# all-pairs Hamming distances cost n^2/2 popcounts: ~0.7 s at 20k images (one core); above that only equal
# hashes are matched
_PHASH_PAIRS_MAX_ROWS = 20_000
_PHASH_CHUNK_CELLS = 1_000_000  # query rows x index rows per block of the distance matrix (~9 MB at once)
_PHASH_BITS = 64
_HEX16 = r"[0-9a-fA-F]{16}"


def phash_bits(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """The 64-bit perceptual hashes (16 hex digits each) as uint64, and which rows have a well-formed one."""
    text = values.astype(object).where(values.notna(), "").astype(str)
    valid = text.str.fullmatch(_HEX16).to_numpy(dtype=bool)
    bits = np.zeros(len(text), dtype=np.uint64)
    if valid.any():
        raw = bytes.fromhex("".join(text.to_numpy(dtype=object)[valid].tolist()))
        bits[valid] = np.frombuffer(raw, dtype=">u8").astype(np.uint64)
    return bits, valid


def similarity_from_distance(distance: int) -> float:
    """The Hamming distance of two 64-bit hashes as a similarity in [0, 1] (1 = equal hashes)."""
    return 1.0 - distance / _PHASH_BITS


def distance_from_similarity(similarity: float) -> int:
    """The inverse of :func:`similarity_from_distance`: bits apart."""
    return int(round((1.0 - similarity) * _PHASH_BITS))


def nearest_by_phash(
    bits: np.ndarray, query: np.ndarray, index: np.ndarray, max_distance: int, *, earlier_only: bool = False
) -> dict[int, tuple[int, float]]:
    """For each query position, the index position whose hash is nearest (ties: the earliest), when at most
    ``max_distance`` bits apart: ``{query: (index, similarity)}``.

    ``query`` and ``index`` must be sorted. ``earlier_only`` only lets a row match index rows before it (the
    within-table search, where ``query`` is ``index``). The distance matrix is built in blocks of about
    ``_PHASH_CHUNK_CELLS`` cells (xor, then numpy's popcount).
    """
    if len(query) == 0 or len(index) == 0:
        return {}
    step = max(1, _PHASH_CHUNK_CELLS // len(index))
    out: dict[int, tuple[int, float]] = {}
    for start in range(0, len(query), step):
        q = query[start : start + step]
        # rows after the block's last query row can never be "earlier": leave them out of the block
        candidates = index[: np.searchsorted(index, q[-1])] if earlier_only else index
        if len(candidates) == 0:
            continue
        distance = np.bitwise_count(bits[q][:, None] ^ bits[candidates][None, :])
        if earlier_only:  # only the block's last columns can be at or after a query row
            tail = int(np.searchsorted(candidates, q[0]))
            distance[:, tail:][candidates[None, tail:] >= q[:, None]] = _PHASH_BITS + 1
        best = distance.argmin(axis=1)  # the first minimum: the earliest index row among equally near ones
        best_distance = distance[np.arange(len(q)), best]
        near = best_distance <= max_distance
        for pos, other, d in zip(q[near].tolist(), candidates[best[near]].tolist(), best_distance[near].tolist(),
                                 strict=True):
            out[pos] = (other, similarity_from_distance(int(d)))
    return out


def equal_by_phash(
    bits: np.ndarray, query: np.ndarray, index: np.ndarray, *, partition: np.ndarray | None = None
) -> dict[int, tuple[int, float]]:
    """Query positions whose hash equals that of an index row (the first such): the near-duplicate search above
    the all-pairs limit. With ``partition`` (within one table: ``query`` is ``index``, sorted), an earlier row
    of the same partition."""
    if partition is not None:
        key = combine_codes(pd.factorize(bits[query])[0].astype(np.int64), partition[query].astype(np.int64))
        first = first_positions(key)[key]
        later = np.flatnonzero(first != np.arange(len(query)))
        return {int(query[i]): (int(query[first[i]]), 1.0) for i in later}
    key = pd.factorize(bits[np.concatenate([index, query])])[0].astype(np.int64)
    found = _first_index_by_code(key, np.arange(len(index)), int(key.max()) + 1)[key[len(index) :]]
    hit = found >= 0
    return {int(p): (int(index[f]), 1.0) for p, f in zip(query[hit], found[hit], strict=True)}


# ------------------------------------------------------------------------------------------------ the checks


class ConflictingLabels:
    """Same text, different answers: every copy is flagged (reason ``conflicting_labels``)."""

    name = "conflicting_duplicates"

    def run(self, frame: pd.DataFrame, config: KeepfitConfig) -> Finding:
        action = config.quality.conflicting_duplicates
        answers = answer_strings(frame, config.task)
        generation = is_generation(config.task)
        reason = "conflicting_completions" if generation else "conflicting_labels"
        what, answer = ("prompts", "completions") if generation else ("texts", "labels")
        if IMAGE_SHA in frame:
            what = "images"
        text_code = text_codes(frame)
        pair = combine_codes(text_code, codes(answers))
        distinct_pairs = first_positions(pair)
        n_answers = np.bincount(
            text_code[distinct_pairs], minlength=int(text_code.max()) + 1 if len(frame) else 0
        )
        flagged = np.flatnonzero(n_answers[text_code] > 1) if len(frame) else np.empty(0, dtype=np.int64)
        if len(flagged) == 0:
            return Finding(self.name, 0, action, f"no {what[:-1]} carries two different {answer}", reason=reason)
        shown = 200 if generation else None  # a completion can be long; a label never is
        sub = pd.DataFrame(
            {
                "code": text_code[flagged],
                "text": frame[TEXT].iloc[flagged].to_numpy(dtype=object),
                "answer": [str(a)[:shown] for a in answers.iloc[flagged].to_numpy(dtype=object)],
                "row": frame[ROW].iloc[flagged].to_numpy(),
            }
        )
        per_text = sub.groupby("code", sort=False).agg(
            text=("text", "first"), answers=("answer", lambda s: sorted(set(s))), rows=("row", list)
        )
        details_by_code = {
            c: f"{answer} "
            + ", ".join(repr(a) for a in r.answers)
            + " on rows "
            + ", ".join(str(x) for x in r.rows[:6])
            for c, r in per_text.iterrows()
        }
        flag_detail = [details_by_code[c] for c in sub["code"]]
        examples = []
        for _, r in per_text.head(MAX_EXAMPLES).iterrows():
            examples.append(
                {
                    "text": str(r.text)[:200],
                    "labels": list(r.answers),
                    "rows": [int(x) for x in r.rows[:10]],
                    "source": str(frame[SOURCE].iat[int(flagged[0])]) if SOURCE in frame else "",
                }
            )
        n_texts = len(per_text)
        summary = (
            f"{len(flagged)} rows ({n_texts} {what}) carry conflicting {answer}; "
            f"{_action_word(action)}"
            + (f" (all copies: which {answer[:-1]} is right is unknown)" if action == "drop" else "")
        )
        return Finding(
            self.name,
            len(flagged),
            action,
            summary,
            examples,
            {what: n_texts},
            reason=reason,
            flagged=flagged,
            flag_detail=flag_detail,
        )


class ExactDuplicates:
    """Same text and same answer (within a split): every copy after the first is flagged (``duplicate``)."""

    name = "exact_duplicates"

    def run(self, frame: pd.DataFrame, config: KeepfitConfig) -> Finding:
        action = config.quality.exact_duplicates
        answers = answer_strings(frame, config.task)
        key = combine_codes(text_codes(frame), codes(answers), _partition(frame))
        first_pos = first_positions(key)[key]
        flagged = np.flatnonzero(first_pos != np.arange(len(frame)))
        if len(flagged) == 0:
            return Finding(self.name, 0, action, "no exact duplicates", reason="duplicate")
        firsts = first_pos[flagged]
        first_rows = frame[ROW].to_numpy()[firsts]
        flag_detail = [f"same as row {int(r)}" for r in first_rows]
        if IMAGE_SHA in frame:  # the same bytes may come under another name: say which file it copies
            first_names = frame[TEXT].to_numpy(dtype=object)[firsts]
            flag_detail = [
                f"same image as row {int(r)} ({str(n)[:80]})" for r, n in zip(first_rows, first_names, strict=True)
            ]
        examples = [
            _example(frame, int(p), answers, same_as_row=int(frame[ROW].iat[int(f)]))
            for p, f in zip(flagged[:MAX_EXAMPLES], firsts[:MAX_EXAMPLES], strict=True)
        ]
        n_texts = len(np.unique(key[flagged]))
        what = "prompts with the same completion" if is_generation(config.task) else "texts"
        if IMAGE_SHA in frame:
            what = "images (same bytes) with the same label"
        summary = f"{len(flagged)} exact duplicate rows (copies of {n_texts} {what}); {_action_word(action)}"
        return Finding(
            self.name,
            len(flagged),
            action,
            summary,
            examples,
            {"texts": n_texts},
            reason="duplicate",
            flagged=flagged,
            flag_detail=flag_detail,
        )


class NearDuplicates:
    """Texts nearly the same as an earlier one (within a split): MinHash/LSH on word bigrams up to
    ``quality.near_duplicate_max_rows`` rows, an aggressively normalised key above that. Images: perceptual
    hashes at most ``quality.image_near_duplicate_distance`` bits apart."""

    name = "near_duplicates"

    def run(self, frame: pd.DataFrame, config: KeepfitConfig) -> Finding:
        action = config.quality.near_duplicates
        method = _frame_near_method(frame, config)
        answers = answer_strings(frame, config.task)
        if method == "minhash":
            pairs = self._minhash(frame, config.quality.near_duplicate_threshold)
        elif method in ("phash", "phash_equal"):
            pairs = self._phash(frame, config.quality.image_near_duplicate_distance, method)
        else:
            pairs = self._by_key(frame)
        flagged = np.array(sorted(pairs), dtype=np.int64)
        rows = frame[ROW].to_numpy()
        flag_detail = [_near_detail(method, int(rows[pairs[p][0]]), pairs[p][1]) for p in flagged]
        examples = [
            _example(
                frame,
                int(p),
                answers,
                similar_to_row=int(rows[pairs[int(p)][0]]),
                similar_text=str(frame[TEXT].iat[pairs[int(p)][0]])[:200],
                similar_label=str(answers.iat[pairs[int(p)][0]]),
                **_closeness(method, pairs[int(p)][1]),
            )
            for p in flagged[:MAX_EXAMPLES]
        ]
        how = _near_how(method, config)
        summary = (
            f"{len(flagged)} near-duplicate rows ({how}); {_action_word(action)}"
            if len(flagged)
            else f"no near-duplicates ({how})"
        )
        return Finding(
            self.name,
            len(flagged),
            action,
            summary,
            examples,
            {"method": method},
            reason="near_duplicate",
            flagged=flagged,
            flag_detail=flag_detail,
        )

    @staticmethod
    def _minhash(frame: pd.DataFrame, threshold: float) -> dict[int, tuple[int, float]]:
        part = _partition(frame)
        lsh = _MinHashLSH(frame[TEXT].astype(str).tolist(), part, threshold)
        # exact copies are the exact-duplicate check's business: only the first row of each text takes part
        firsts = first_positions(combine_codes(text_codes(frame), part))
        return lsh.earlier_matches(firsts)

    @staticmethod
    def _phash(frame: pd.DataFrame, max_distance: int, method: str) -> dict[int, tuple[int, float]]:
        part = _partition(frame)
        bits, valid = phash_bits(frame[IMAGE_PHASH])
        # exact copies (same bytes) are the exact-duplicate check's business: the first of each image takes part
        firsts = first_positions(combine_codes(text_codes(frame), part))
        firsts = firsts[valid[firsts]]
        if method == "phash_equal":
            return equal_by_phash(bits, firsts, firsts, partition=part)
        pairs: dict[int, tuple[int, float]] = {}
        for code in np.unique(part[firsts]):  # within a split: each split's images among themselves
            own = firsts[part[firsts] == code]
            pairs.update(nearest_by_phash(bits, own, own, max_distance, earlier_only=True))
        return pairs

    @staticmethod
    def _by_key(frame: pd.DataFrame) -> dict[int, tuple[int, float]]:
        keys = _near_keys(frame)
        part = _partition(frame)
        key_code = combine_codes(codes(keys), part)
        text_code = combine_codes(text_codes(frame), part)
        n = np.arange(len(frame))
        first_of_key = first_positions(key_code)[key_code]
        first_of_text = first_positions(text_code)[text_code]
        nonempty = pc.not_equal(keys, "").to_numpy(zero_copy_only=False)
        hits = np.flatnonzero((first_of_key != n) & (first_of_text == n) & nonempty)
        return {int(p): (int(first_of_key[p]), 1.0) for p in hits}


class LabelDistribution:
    """Label counts, the largest/smallest ratio, and labels under ``quality.min_examples_per_label``."""

    name = "label_distribution"

    def run(self, frame: pd.DataFrame, config: KeepfitConfig) -> Finding:
        if config.task == "regression":
            return self._target(frame)
        if is_generation(config.task):
            return self._completion_lengths(frame)
        column = label_column_for(config.task)
        values = frame[column].explode() if config.task == "multi-label" else frame[column]
        counts = values.dropna().astype(str).value_counts()
        for label in config.labels or []:
            if label not in counts.index:
                counts[label] = 0
        counts = counts.sort_values(ascending=False, kind="stable")
        minimum = config.quality.min_examples_per_label
        small = {str(k): int(v) for k, v in counts.items() if v < minimum}
        positive = counts[counts > 0]
        ratio = float(positive.iloc[0] / positive.iloc[-1]) if len(positive) else 0.0
        imbalanced = ratio > config.quality.imbalance_warn_ratio
        parts = [f"{len(counts)} labels, largest/smallest = {ratio:.1f}"]
        if imbalanced:
            parts.append(f"imbalanced (above {config.quality.imbalance_warn_ratio:g})")
        if small:
            parts.append(
                f"{len(small)} label(s) with fewer than {minimum} examples: "
                + ", ".join(f"{k} ({v})" for k, v in list(small.items())[:MAX_EXAMPLES])
            )
        total = int(counts.sum())
        details = {
            "counts": {str(k): int(v) for k, v in counts.items()},
            "shares": {str(k): (float(v) / total if total else 0.0) for k, v in counts.items()},
            "ratio": ratio,
            "imbalanced": bool(imbalanced),
            "below_minimum": small,
        }
        examples = [{"label": k, "count": v} for k, v in list(small.items())[:MAX_EXAMPLES]]
        return Finding(self.name, len(small), "report", "; ".join(parts), examples, details)

    @staticmethod
    def _target(frame: pd.DataFrame) -> Finding:
        values = frame[TARGET].astype(float) if TARGET in frame else pd.Series([], dtype=float)
        q = values.quantile([0.0, 0.25, 0.5, 0.75, 1.0]).tolist() if len(values) else [0.0] * 5
        details = {
            "n": len(values),
            "mean": float(values.mean()) if len(values) else 0.0,
            "std": float(values.std()) if len(values) > 1 else 0.0,
            "quantiles": dict(zip(["min", "q25", "median", "q75", "max"], map(float, q), strict=True)),
        }
        summary = f"target: median {q[2]:.4g}, range {q[0]:.4g} to {q[4]:.4g}"
        return Finding("label_distribution", 0, "report", summary, [], details)

    @staticmethod
    def _completion_lengths(frame: pd.DataFrame) -> Finding:
        """text-generation has no labels: the length of the answers (characters) stands in for their spread."""
        values = frame[COMPLETION].astype(str).str.len() if COMPLETION in frame else pd.Series([], dtype=float)
        q = values.quantile([0.0, 0.25, 0.5, 0.75, 0.95, 1.0]).tolist() if len(values) else [0.0] * 6
        details = {
            "n": len(values),
            "unit": "characters",
            "mean": float(values.mean()) if len(values) else 0.0,
            "quantiles": dict(zip(["min", "q25", "median", "q75", "q95", "max"], map(float, q), strict=True)),
        }
        summary = (
            f"completion length: median {q[2]:.0f} characters, 95% within {q[4]:.0f}, range {q[0]:.0f} to "
            f"{q[5]:.0f} (no labels: text-generation)"
        )
        return Finding("label_distribution", 0, "report", summary, [], details)


class Leakage:
    """Texts shared between splits (exact, or near-duplicate): the training-side copy is flagged, never
    the test
    copy (validation copies are flagged when they leak into test)."""

    name = "leakage"

    def run(self, frame: pd.DataFrame, config: KeepfitConfig) -> Finding:
        action = config.quality.leakage
        if SPLIT not in frame:
            return Finding(
                self.name,
                0,
                action,
                "no splits yet; leakage is checked after splitting",
                reason="leakage",
                details={"exact": 0, "near": 0},
            )
        method = _frame_near_method(frame, config)
        answers = answer_strings(frame, config.task)
        splits = frame[SPLIT].astype(object).to_numpy(dtype=object)
        matcher = _CrossMatcher(frame, method, config.quality.near_duplicate_threshold,
                                config.quality.image_near_duplicate_distance)
        partner = np.full(len(frame), -1, dtype=np.int64)
        similarity = np.zeros(len(frame))
        for i, index_split in enumerate(_EVAL_ORDER):
            query_splits = ["train", *_EVAL_ORDER[i + 1 :]]
            index_pos = np.flatnonzero(splits == index_split)
            query_pos = np.flatnonzero(np.isin(splits, query_splits) & (partner < 0))
            if len(index_pos) and len(query_pos):
                matcher.match(query_pos, index_pos, partner, similarity)
        flagged = np.flatnonzero(partner >= 0)
        rows = frame[ROW].to_numpy()
        same = matcher.text_code[flagged] == matcher.text_code[partner[flagged]]
        exact = int(same.sum())
        flag_detail = [
            _leak_detail(frame, o, str(splits[o]), s, float(similarity[p]))
            for p, s, o in zip(flagged.tolist(), same.tolist(), partner[flagged].tolist(), strict=True)
        ]
        examples = [
            _example(
                frame,
                int(p),
                answers,
                leaks_into=str(splits[partner[p]]),
                other_row=int(rows[partner[p]]),
                other_text=str(frame[TEXT].iat[int(partner[p])])[:200],
                **_closeness(method, float(similarity[p])),
            )
            for p in flagged[:MAX_EXAMPLES]
        ]
        details = {"exact": exact, "near": int(len(flagged) - exact), "method": method}
        summary = (
            f"{len(flagged)} rows leak across splits ({exact} exact, {len(flagged) - exact} near); "
            f"{_action_word(action)}" + (" from the training side" if action == "drop" else "")
            if len(flagged)
            else "no leakage between splits"
        )
        return Finding(
            self.name,
            len(flagged),
            action,
            summary,
            examples,
            details,
            reason="leakage",
            flagged=flagged,
            flag_detail=flag_detail,
        )


def _leak_detail(frame: pd.DataFrame, other: int, other_split: str, same: bool, similarity: float) -> str:
    """The quarantine detail of a leaking row: the row of the other split it copies; images also name that
    image, and how many bits apart a near copy is."""
    where = f"{other_split} row {int(frame[ROW].iat[other])}"
    if IMAGE_SHA in frame:
        named = f"{where} ({str(frame[TEXT].iat[other])[:80]})"
        if same:
            return f"same image as {named}"
        return f"near-duplicate of {named}, perceptual hash {distance_from_similarity(similarity)} of 64 bits apart"
    if same:
        return ("same prompt as " if PROMPT in frame else "same text as ") + where
    return f"near-duplicate of {where}"


def _first_index_by_code(code: np.ndarray, index_pos: np.ndarray, size: int) -> np.ndarray:
    """For every code: the first index position holding it, or -1."""
    out = np.full(size, -1, dtype=np.int64)
    sub = code[index_pos]
    uniq, first = np.unique(sub, return_index=True)
    out[uniq] = index_pos[first]
    return out


class _CrossMatcher:
    """Finds, for query rows, an index row with the same text or a near-duplicate text (vectorised where
    it can)."""

    def __init__(self, frame: pd.DataFrame, method: str, threshold: float, max_distance: int = 4) -> None:
        self.frame, self.method, self.threshold, self.max_distance = frame, method, threshold, max_distance
        self.text_code = text_codes(frame)
        self._key_code: np.ndarray | None = None
        self._lsh: _MinHashLSH | None = None
        self._keys_nonempty: np.ndarray | None = None
        self._phash: tuple[np.ndarray, np.ndarray] | None = None

    def _keys(self) -> tuple[np.ndarray, np.ndarray]:
        if self._key_code is None:
            keys = _near_keys(self.frame)
            self._key_code = codes(keys)
            self._keys_nonempty = pc.not_equal(keys, "").to_numpy(zero_copy_only=False)
        return self._key_code, self._keys_nonempty  # type: ignore[return-value]

    def match(
        self, query_pos: np.ndarray, index_pos: np.ndarray, partner: np.ndarray, similarity: np.ndarray
    ) -> None:
        """Fill ``partner``/``similarity`` of the query rows that match an index row."""
        size = int(self.text_code.max()) + 1
        found = _first_index_by_code(self.text_code, index_pos, size)[self.text_code[query_pos]]
        hit = found >= 0
        partner[query_pos[hit]] = found[hit]
        similarity[query_pos[hit]] = 1.0
        rest = query_pos[~hit]
        if len(rest) == 0:
            return
        if self.method in ("phash", "phash_equal"):
            self._match_phash(rest, index_pos, partner, similarity)
            return
        if self.method == "minhash":
            if self._lsh is None:
                self._lsh = _MinHashLSH(
                    self.frame[TEXT].astype(str).tolist(), np.zeros(len(self.frame), np.int64), self.threshold
                )
            for pos, (other, sim) in self._lsh.cross_matches(rest, index_pos).items():
                partner[pos], similarity[pos] = other, sim
            return
        key_code, nonempty = self._keys()
        usable = index_pos[nonempty[index_pos]]
        found = _first_index_by_code(key_code, usable, int(key_code.max()) + 1)[key_code[rest]]
        hit = (found >= 0) & nonempty[rest]
        partner[rest[hit]] = found[hit]
        similarity[rest[hit]] = 1.0

    def _match_phash(
        self, query: np.ndarray, index: np.ndarray, partner: np.ndarray, similarity: np.ndarray
    ) -> None:
        if self._phash is None:
            self._phash = phash_bits(self.frame[IMAGE_PHASH])
        bits, valid = self._phash
        query, index = query[valid[query]], np.sort(index[valid[index]])
        if self.method == "phash_equal":
            found = equal_by_phash(bits, query, index)
        else:
            found = nearest_by_phash(bits, query, index, self.max_distance)
        for pos, (other, sim) in found.items():
            partner[pos], similarity[pos] = other, sim


QUALITY_CHECKS: tuple[QualityCheck, ...] = (
    ConflictingLabels(),
    ExactDuplicates(),
    NearDuplicates(),
    LabelDistribution(),
)


# ---------------------------------------- applying them


def _quarantine_rows(frame: pd.DataFrame, finding: Finding, answers: pd.Series) -> pd.DataFrame:
    pos = finding.flagged
    return pd.DataFrame(
        {
            "row": frame[ROW].to_numpy()[pos].astype(np.int64),
            "source": frame[SOURCE].iloc[pos].to_numpy(dtype=object) if SOURCE in frame else "",
            "reason": finding.reason,
            "detail": np.asarray(finding.flag_detail, dtype=object),
            "raw_text": [str(t)[:_RAW_CHARS] for t in frame[TEXT].to_numpy()[pos]],
            "raw_label": answers.iloc[pos].to_numpy(dtype=object),
        },
        columns=QUARANTINE_COLUMNS,
    )


def _failure(finding: Finding) -> DataError:
    shown = "; ".join(
        f"row {e['row']}: {e.get('text', '')[:60]!r}"
        if "row" in e
        else f"{e.get('text', '')[:60]!r} rows {e.get('rows')}"
        for e in finding.examples
    )
    return DataError(
        f"quality check {finding.kind} is set to fail and found {finding.count} row(s): {finding.summary}. "
        f"Examples: {shown}. Fix the data, or set quality.{_config_key(finding.kind)} to drop or keep."
    )


def _config_key(kind: str) -> str:
    return {
        "conflicting_duplicates": "conflicting_duplicates",
        "exact_duplicates": "exact_duplicates",
        "near_duplicates": "near_duplicates",
        "leakage": "leakage",
    }.get(kind, kind)


def apply_finding(frame: pd.DataFrame, finding: Finding, task: Task) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Carry out a finding's action: returns (kept rows, quarantined rows with reason and detail).

    ``drop`` moves the flagged rows to the quarantine; ``keep`` and ``report`` change nothing; ``fail`` raises
    DataError with the counts and examples when anything was flagged.
    """
    empty = pd.DataFrame(columns=QUARANTINE_COLUMNS)
    if finding.count == 0 or len(finding.flagged) == 0:
        return frame, empty
    if finding.action == "fail":
        raise _failure(finding)
    if finding.action != "drop":
        return frame, empty
    quarantined = _quarantine_rows(frame, finding, answer_strings(frame, task))
    keep = np.ones(len(frame), dtype=bool)
    keep[finding.flagged] = False
    return frame[keep].reset_index(drop=True), quarantined


@dataclass
class QualityOutcome:
    """Rows kept after the quality checks, the rows they quarantined, and the findings (in order)."""

    kept: pd.DataFrame
    quarantine: pd.DataFrame
    findings: list[Finding]


def run_quality(
    frame: pd.DataFrame, config: KeepfitConfig, checks: Iterable[QualityCheck] = QUALITY_CHECKS
) -> QualityOutcome:
    """Run the checks in order on a canonical row table, applying each one's action before the next runs."""
    quarantined = []
    findings = []
    kept = frame.reset_index(drop=True)
    for check in checks:
        finding = check.run(kept, config)
        kept, dropped = apply_finding(kept, finding, config.task)
        findings.append(finding)
        if len(dropped):
            quarantined.append(dropped)
    quarantine = (
        pd.concat(quarantined, ignore_index=True) if quarantined else pd.DataFrame(columns=QUARANTINE_COLUMNS)
    )
    return QualityOutcome(kept, quarantine, findings)


def check_leakage(frame: pd.DataFrame, config: KeepfitConfig) -> QualityOutcome:
    """The leakage check on a split table (with a ``split`` column), with its action applied."""
    return run_quality(frame, config, checks=(Leakage(),))
