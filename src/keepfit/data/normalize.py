"""Text normalisation on Arrow arrays: Unicode NFC, control characters removed, whitespace collapsed, trimmed.

Vectorised with ``pyarrow.compute``; the expensive steps (NFC, regex replacement) run only on the values that
need them: most texts are plain ASCII with single spaces, and a cheap scan finds the rest. NFC itself runs in
Python on the non-ASCII values, because pyarrow's ``utf8_normalize`` decomposes instead (pyarrow 25.0.1).
"""

from __future__ import annotations

import unicodedata
from typing import NamedTuple

import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["Normalized", "normalize_text", "MISSING_TOKENS", "NORMALIZATION_VERSION"]

# Saved with every model (keepfit_postprocess.json) so serving can tell it cleans texts as training did.
# Bump it whenever normalize_text changes what it returns for some input.
NORMALIZATION_VERSION = 2

# Removed outright: C0/C1 control characters that are not whitespace, zero-width space, byte-order mark.
_CONTROL = r"[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f\x{200B}\x{FEFF}]"
# Collapsed to one space: ASCII whitespace, NEL and the Unicode space separators.
_SPACE = r"[\t\n\x0b\x0c\r \x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}]+"
# A value needs the regex pass when it holds any character of either class other than a lone ASCII space.
_NEEDS_WORK = (
    r"[\x00-\x1f\x7f-\x9f\x{A0}\x{1680}\x{2000}-\x{200B}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}\x{FEFF}]|  "
)

# Label cells that spreadsheet and pandas users mean as "no value".
MISSING_TOKENS: frozenset[str] = frozenset(
    {"", "nan", "NaN", "NAN", "None", "null", "NULL", "<NA>", "N/A", "#N/A"}
)


class Normalized(NamedTuple):
    """A normalised string array (same length, nulls kept) and how many values held NUL bytes."""

    values: pa.Array
    n_nul: int


def _as_string(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if arr.type != pa.string():
        arr = arr.cast(pa.string())
    return arr


def _nfc(arr: pa.Array) -> pa.Array:
    """NFC in Python: pyarrow 25's utf8_normalize returns decomposed text for every form ('é' -> 'e\u0301').

    Only non-ASCII values come here, and most are already NFC, which ``is_normalized`` confirms quickly.
    """
    values = arr.to_pylist()
    return pa.array(
        [
            v if v is None or unicodedata.is_normalized("NFC", v) else unicodedata.normalize("NFC", v)
            for v in values
        ],
        pa.string(),
    )


def normalize_text(arr: pa.Array | pa.ChunkedArray) -> Normalized:
    """Normalise a string array of length N: NFC, controls removed, whitespace runs -> one space, trimmed.

    Returns an array of length N (nulls stay null) and the count of values that contained NUL bytes.
    """
    arr = _as_string(arr)
    n_nul = 0
    if len(arr) == 0:
        return Normalized(arr, 0)
    needs = pc.fill_null(pc.match_substring_regex(arr, _NEEDS_WORK), False)
    if pc.any(needs).as_py():
        subset = arr.filter(needs)
        n_nul = int(pc.sum(pc.match_substring(subset, "\x00")).as_py() or 0)
        subset = pc.replace_substring_regex(subset, _CONTROL, "")
        subset = pc.replace_substring_regex(subset, _SPACE, " ")
        arr = pc.replace_with_mask(arr, needs, subset)
    # NFC last: a control character removed between a letter and its combining accent must not leave the pair
    # decomposed (cleaning a cleaned text again must change nothing)
    not_ascii = pc.invert(pc.fill_null(pc.string_is_ascii(arr), True))
    if pc.any(not_ascii).as_py():
        arr = pc.replace_with_mask(arr, not_ascii, _nfc(arr.filter(not_ascii)))
    return Normalized(pc.utf8_trim_whitespace(arr), n_nul)
