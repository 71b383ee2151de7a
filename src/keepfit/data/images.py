"""Images as data for ``task: image-classification``: the loader with its check, and the one RGB conversion.

:func:`load_images` is what :func:`keepfit.data.validate.load_and_validate` runs for image-classification. It
reads one of two layouts:

- **folder**: one subfolder per class (the label is the folder's name), images anywhere below it, walked in
  sorted order (``row`` is the 1-based position in that walk, ``source`` the folder's name). Files directly in
  the top folder are rows without a label (fine for prediction; ``missing_label`` when labels are required).
  Hidden entries (``.DS_Store``, ``._x.jpg``, ``Thumbs.db``, ``desktop.ini``, ``__MACOSX``) are skipped and
  counted in a warning; every other file is a row.
- **table**: a CSV/TSV/JSONL/Parquet file with ``data.image_column`` (paths relative to the table's folder, or
  absolute) and ``data.label_column``, plus the optional group/time/split/slice columns as for text.

Every row is opened once (the bytes are read once: they give ``image_sha`` and feed Pillow) and kept, or
quarantined with the first reason that applies, in this order (:data:`IMAGE_REASONS`):

- ``unparseable``      the table record could not be parsed (CSV field count, broken JSON line)
- ``bad_path``         the path cell is empty, not text, or holds a NUL byte or an over-long name
- ``missing_file``     no file at the path (a dangling symlink included)
- ``unreadable``       a directory, a symlink loop, not a regular file, permission denied, another read error
- ``empty_file``       0 bytes
- ``not_an_image``     an extension that is no image format (.txt, .csv), or bytes Pillow cannot identify
- ``animated``         more than one frame (animated GIF/PNG/WebP, multi-page TIFF); MPO photos are still images
- ``too_large``        more than ``data.max_image_pixels`` pixels (or Pillow's decompression-bomb guard)
- ``extreme_aspect``   long side / short side above ``data.max_aspect_ratio``
- ``too_small``        a side shorter than ``data.min_image_side`` pixels
- ``unsupported_mode`` a pixel mode with no safe RGB conversion (float, LAB, HSV, ...)
- ``truncated``        identified, but decoding fails (a cut-off JPEG or PNG, corrupt data)
- ``wrong_type``       a label cell that is a list or an object (Parquet/JSONL)
- ``missing_label``    no label (empty cell, NaN/None, or a file outside the class folders) when labels are needed
- ``unknown_label``    a label outside ``known_labels`` / ``config.labels``
- ``bad_split``        a split value other than train/validation/test

Sizes are checked before decoding, so a decompression bomb is never decoded. Duplicates are the quality stage's.
Kept images whose content is another format than the extension says (a PNG named .jpg), or whose mode is
converted to RGB (:data:`CONVERTED_MODES`), are noted in the warnings with counts and example paths.
:func:`open_rgb` (and :func:`to_rgb`) is the conversion the check, training and prediction all use.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import imagehash
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from PIL import Image, ImageOps, UnidentifiedImageError

from keepfit.config import DataConfig, KeepfitConfig
from keepfit.data.chat import Problem, optional_fields
from keepfit.data.load import KIND_BOOL, KIND_NUMBER, KIND_TEXT, DataSource, RawChunk, open_source
from keepfit.data.normalize import normalize_text
from keepfit.data.validate import (
    CheckedRows,
    ColumnRoles,
    _bad_records_table,
    _ChunkChecker,
    _did_you_mean,
    _find_column,
    _np_mask,
    _quarantine_frame,
    _show,
    slice_settings,
    suggest_label,
)
from keepfit.errors import DataError
from keepfit.types import (
    IMAGE,
    IMAGE_PHASH,
    IMAGE_SHA,
    LABEL,
    ROW,
    SOURCE,
    TEXT,
)

__all__ = [
    "CONVERTED_MODES",
    "IMAGE_EXTENSIONS",
    "IMAGE_REASONS",
    "ImageFacts",
    "inspect_image",
    "kept_image_schema",
    "load_images",
    "open_rgb",
    "resolve_image_columns",
    "to_rgb",
]

IMAGE_REASONS = (
    "unparseable",
    "bad_path",
    "missing_file",
    "unreadable",
    "empty_file",
    "not_an_image",
    "animated",
    "too_large",
    "extreme_aspect",
    "too_small",
    "unsupported_mode",
    "truncated",
    "wrong_type",
    "missing_label",
    "unknown_label",
    "bad_split",
)
# how each mode other than RGB becomes RGB (to_rgb); the check's notes quote these
CONVERTED_MODES: dict[str, str] = {
    "RGBA": "alpha composited on white",
    "RGBa": "alpha composited on white",
    "RGBX": "padding channel dropped",
    "LA": "grey with alpha composited on white",
    "La": "grey with alpha composited on white",
    "PA": "palette with alpha composited on white",
    "P": "palette expanded to RGB (a transparent colour composited on white)",
    "CMYK": "CMYK converted by Pillow's convert('RGB'), without a colour profile",
    "YCbCr": "YCbCr converted by Pillow's convert('RGB')",
    "L": "grey copied to the three channels",
    "1": "1-bit black and white expanded to RGB",
    "I;16": "16-bit grey scaled to 8 bits by its top byte (value >> 8, not stretched to its range)",
    "I;16L": "16-bit grey scaled to 8 bits by its top byte (value >> 8, not stretched to its range)",
    "I;16B": "16-bit grey scaled to 8 bits by its top byte (value >> 8, not stretched to its range)",
    "I;16N": "16-bit grey scaled to 8 bits by its top byte (value >> 8, not stretched to its range)",
    "I": "32-bit integer grey scaled by value >> 8 and clipped to 0..255",
}
_SUPPORTED_MODES = frozenset({"RGB", *CONVERTED_MODES})
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_COMMON_EXTENSIONS = (
    ".jpg", ".jpeg", ".jpe", ".jfif", ".mpo", ".png", ".apng", ".gif", ".bmp", ".dib", ".tif", ".tiff", ".webp",
    ".ppm", ".pgm", ".pbm", ".pnm", ".tga", ".ico", ".avif", ".qoi",
)  # fmt: skip
_FORMAT_OF_EXTENSION = {ext: fmt for ext, fmt in Image.registered_extensions().items() if ext in _COMMON_EXTENSIONS}
IMAGE_EXTENSIONS = frozenset(_FORMAT_OF_EXTENSION)
_SAME_FORMAT = {"MPO": "JPEG", "DIB": "BMP"}  # a camera JPEG with previews opens as MPO
_HIDDEN_NAMES = frozenset({"thumbs.db", "desktop.ini", "__macosx"})
_SPLIT_FOLDERS = frozenset({"train", "training", "val", "valid", "validation", "dev", "test", "testing"})
_HASH_SIDE = 128  # JPEGs are decoded at 1/2..1/8 scale down to this side: the perceptual hash looks at 32x32
_EXAMPLES = 3


# ------------------------------------------------------------------------------------------------ RGB


def to_rgb(img: Image.Image) -> Image.Image:
    """``img`` as 8-bit RGB, upright (EXIF orientation applied), fully decoded; the rules of CONVERTED_MODES.

    16-bit (and 32-bit integer) grey is scaled by its top byte (``>> 8``), the same for every image, so a pixel
    value means the same brightness across the data set; alpha is composited on white; palette images with a
    transparent colour go through RGBA; CMYK, YCbCr, 1-bit, grey and palette by Pillow's ``convert("RGB")``.
    """
    img = ImageOps.exif_transpose(img)
    if img.mode in _SIXTEEN_BIT:
        img = img.point(lambda v: v / 256).convert("L")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "RGBa", "LA", "La", "PA"):
        rgba = img.convert("RGBA")
        back = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(back, rgba).convert("RGB")
    return img.convert("RGB")


def open_rgb(path: str | Path) -> Image.Image:
    """The image at ``path`` as 8-bit RGB, upright, fully decoded (see :func:`to_rgb` for the conversions)."""
    with Image.open(path) as img:
        return to_rgb(img)


# ------------------------------------------------------------------------------------------------ one image


@dataclass(frozen=True)
class ImageFacts:
    """What the check learnt about one good image: hashes, format, original mode and size (pixels)."""

    sha: str
    phash: str
    format: str
    mode: str
    width: int
    height: int


def _read_bytes(path: Path, shown: str) -> bytes | Problem:
    """The file's bytes, or why they cannot be had (missing, a directory, a loop, permissions, empty)."""
    try:
        info = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        if os.path.islink(path):
            target = os.readlink(path)
            return Problem(
                "missing_file", f"{shown} is a symlink to {target}, which does not exist; fix the link or remove it"
            )
        return Problem("missing_file", f"{shown} does not exist (looked at {path}); fix the path or remove the row")
    except OSError as err:
        if err.errno == errno.ELOOP:
            return Problem(
                "unreadable", f"{shown} is a symlink loop (its links point back at themselves); fix or remove it"
            )
        if err.errno == errno.ENAMETOOLONG:
            return Problem("bad_path", f"{shown}: the path is too long for the file system; shorten it")
        return Problem("unreadable", f"{shown} cannot be read ({err.strerror}); check the file and its permissions")
    if stat.S_ISDIR(info.st_mode):
        return Problem("unreadable", f"{shown} is a directory, expected an image file; point at a file inside it")
    if not stat.S_ISREG(info.st_mode):
        return Problem("unreadable", f"{shown} is not a regular file (a pipe, socket or device); remove it")
    if info.st_size == 0:
        return Problem("empty_file", f"{shown} is empty (0 bytes); replace it with the image or remove it")
    ext = path.suffix.lower()
    if ext not in IMAGE_EXTENSIONS:
        return Problem(
            "not_an_image",
            f"{shown} has the extension {ext or '(none)'!r}, which is not an image format (expected one of "
            ".jpg, .png, .gif, .bmp, .tif, .webp, ...); remove it, or rename it if it is an image",
        )
    try:
        return path.read_bytes()
    except PermissionError:
        return Problem("unreadable", f"{shown}: permission denied; make the file readable (chmod a+r) or remove it")
    except OSError as err:
        return Problem("unreadable", f"{shown} cannot be read ({err.strerror}); check the file")


def _geometry_problem(img: Image.Image, shown: str, data: DataConfig) -> Problem | None:
    """The rules that need only the header: frames, pixel count, aspect ratio, smallest side, mode."""
    frames = getattr(img, "n_frames", 1)
    if frames > 1 and img.format != "MPO":
        return Problem(
            "animated",
            f"{shown} has {frames} frames ({img.format}); expected a still image. Save one frame as its own file",
        )
    w, h = img.size
    if w * h > data.max_image_pixels:
        return Problem(
            "too_large",
            f"{shown} is {w}x{h} = {w * h:,} pixels, more than data.max_image_pixels={data.max_image_pixels:,}; "
            "downscale it, or raise the limit if the file is trusted",
        )
    short, long = min(w, h), max(w, h)
    if short > 0 and long / short > data.max_aspect_ratio:
        return Problem(
            "extreme_aspect",
            f"{shown} is {w}x{h}: its long side is {long / short:.1f} times its short side, more than "
            f"data.max_aspect_ratio={data.max_aspect_ratio:g}; crop it, or raise data.max_aspect_ratio",
        )
    if short < data.min_image_side:
        return Problem(
            "too_small",
            f"{shown} is {w}x{h}, a side shorter than data.min_image_side={data.min_image_side} pixels; use a "
            "larger image, or lower data.min_image_side",
        )
    if img.mode not in _SUPPORTED_MODES:
        return Problem(
            "unsupported_mode",
            f"{shown} has pixel mode {img.mode!r}, which has no safe conversion to RGB; save it as 8-bit RGB or grey",
        )
    return None


def _decode(data: bytes, shown: str, config: DataConfig) -> ImageFacts | Problem:
    try:
        img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as err:
        return Problem("too_large", f"{shown}: {err}; downscale it, or raise data.max_image_pixels if it is trusted")
    except UnidentifiedImageError:
        return Problem(
            "not_an_image",
            f"{shown} is not an image Pillow can read (it starts with {data[:12]!r}); replace or remove it",
        )
    except Exception as err:  # Pillow's parsers raise many types on hostile headers
        return Problem("not_an_image", f"{shown}: the image header is corrupt ({err}); replace or remove it")
    with img:
        try:
            problem = _geometry_problem(img, shown, config)
        except Exception as err:  # counting frames reads the file and can hit corrupt data
            return Problem("truncated", f"{shown} cannot be decoded ({err}); re-export or remove it")
        if problem is not None:
            return problem
        fmt, mode, (w, h) = str(img.format), img.mode, img.size
        if fmt == "JPEG":
            img.draft(mode, (_HASH_SIDE, _HASH_SIDE))
        try:
            img.load()
            rgb = to_rgb(img)
        except Exception as err:  # Pillow's decoders raise OSError, ValueError, SyntaxError, ...
            return Problem(
                "truncated",
                f"{shown} is {fmt} but cannot be decoded ({err}): the file is cut off or corrupt; re-export it "
                "or remove it",
            )
    return ImageFacts(hashlib.sha256(data).hexdigest(), str(imagehash.phash(rgb)), fmt, mode, w, h)


def inspect_image(path: str | Path, data: DataConfig, *, shown: str | None = None) -> ImageFacts | Problem:
    """Open the image at ``path`` once and say what it is (:class:`ImageFacts`) or why it cannot be used.

    ``data`` gives the limits (min_image_side, max_aspect_ratio, max_image_pixels); ``shown`` is how details
    name the file (its path as the user wrote it). The rules and their order: see the module docstring.
    """
    p = Path(path)
    shown = shown or str(path)
    raw = _read_bytes(p, shown)
    if isinstance(raw, Problem):
        return raw
    return _decode(raw, shown, data)


# ------------------------------------------------------------------------------------------------ folder layout


@dataclass(frozen=True)
class _FolderWalk:
    """The candidate files of an image folder, sorted, with what was skipped."""

    files: list[str]  # POSIX paths relative to the folder
    classes: list[str]
    hidden: list[str]
    unlisted: list[str]  # folders that could not be listed
    empty_classes: list[str]


def _is_hidden(name: str) -> bool:
    return name.startswith(".") or name.casefold() in _HIDDEN_NAMES


def _walk(root: Path) -> _FolderWalk:
    """Every non-hidden file below ``root`` (symlinks included, followed into folders once), sorted."""
    files: list[str] = []
    hidden: list[str] = []
    unlisted: list[str] = []
    seen: set[tuple[int, int]] = set()

    def visit(folder: Path, prefix: str) -> None:
        try:
            info = folder.stat()
            entries = list(os.scandir(folder))
        except OSError as err:
            unlisted.append(f"{prefix or '.'} ({err.strerror})")
            return
        if (info.st_dev, info.st_ino) in seen:  # a folder symlink back up the tree
            return
        seen.add((info.st_dev, info.st_ino))
        for entry in entries:
            rel = prefix + entry.name
            if _is_hidden(entry.name):
                hidden.append(rel)
            elif _is_folder(entry):
                visit(Path(entry.path), rel + "/")
            else:
                files.append(rel)

    visit(root, "")
    files.sort()
    classes = sorted({f.split("/", 1)[0] for f in files if "/" in f})
    top_folders = sorted(e.name for e in os.scandir(root) if not _is_hidden(e.name) and _is_folder(e))
    empty = [c for c in top_folders if c not in classes]
    return _FolderWalk(files, classes, sorted(hidden), unlisted, empty)


def _is_folder(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:  # a symlink loop: a candidate file, reported as unreadable
        return False


def _folder_chunk(root: Path, require_answer: bool) -> tuple[RawChunk, _FolderWalk]:
    """The folder as one chunk of (path, label) records, so the table's checker serves both layouts."""
    walk = _walk(root)
    loose = [f for f in walk.files if "/" not in f]
    if not walk.files:
        raise DataError(
            f"{root} holds no files (hidden ones aside). Expected the image-folder layout: one subfolder per "
            f"class holding its images ({root.name}/<class>/0001.png)."
            + (f" Empty class folders: {walk.empty_classes[:10]}." if walk.empty_classes else "")
        )
    if require_answer and not walk.classes:
        raise DataError(
            f"{root}: expected the image-folder layout, one subfolder per class holding its images "
            f"({root.name}/<class>/0001.png), but found {len(loose)} file(s) directly in the folder "
            f"({', '.join(loose[:3])}) and no class subfolders. Move each image into the folder of its class, "
            "or use a table (CSV) with image and label columns."
        )
    splits = [c for c in walk.classes if c.casefold() in _SPLIT_FOLDERS]
    if len(walk.classes) >= 2 and len(splits) == len(walk.classes):
        raise DataError(
            f"{root}: the subfolders {walk.classes} look like splits, not classes. Point data.train at "
            f"{root / splits[0]} (one subfolder per class inside), and data.validation / data.test at the others."
        )
    labels = [f.split("/", 1)[0] if "/" in f else None for f in walk.files]
    n = len(walk.files)
    chunk = RawChunk(
        {IMAGE: pa.array(walk.files, pa.string()), LABEL: pa.array(labels, pa.string())},
        {IMAGE: None, LABEL: None},
        np.arange(1, n + 1, dtype=np.int64),
    )
    return chunk, walk


def _walk_warnings(name: str, walk: _FolderWalk) -> list[str]:
    out: list[str] = []
    if walk.hidden:
        out.append(
            f"{name}: skipped {len(walk.hidden)} hidden file(s)/folder(s) (names starting with '.', Thumbs.db, "
            f"desktop.ini, __MACOSX), e.g. {', '.join(walk.hidden[:_EXAMPLES])}"
        )
    if walk.unlisted:
        out.append(
            f"{name}: {len(walk.unlisted)} folder(s) could not be listed and their images were not checked: "
            f"{', '.join(walk.unlisted[:_EXAMPLES])}. Fix their permissions"
        )
    if walk.empty_classes:
        out.append(
            f"{name}: {len(walk.empty_classes)} class folder(s) hold no files and are no label: "
            f"{', '.join(walk.empty_classes[:_EXAMPLES])}"
        )
    return out


# ------------------------------------------------------------------------------------------------ table layout


def resolve_image_columns(
    src: DataSource, config: KeepfitConfig, *, require_answer: bool = True
) -> tuple[ColumnRoles, list[str]]:
    """Map data.image_column, data.label_column and the optional columns to the table's; DataError naming every
    missing one (with a did-you-mean) and the columns found."""
    d = config.data
    warnings: list[str] = []
    problems: list[str] = []

    def find(key: str, name: str | None, required: bool) -> str | None:
        if not name:
            return None
        found, warning = _find_column(name, src.columns)
        if warning:
            warnings.append(f"{src.name}: {warning}")
        if found is None and required:
            setting = key if "." in key else f"data.{key}"
            problems.append(f"{setting} is {name!r}, which is not a column{_did_you_mean(name, src.columns)}")
        return found

    roles = ColumnRoles(
        text=find("image_column", d.image_column, True) or "",
        label=find("label_column", d.label_column, require_answer),
        group=find("group_column", d.group_column, True),
        time=find("time_column", d.time_column, True),
        split=find("split_column", d.split_column, True),
        slices={name: col for name, key in slice_settings(config).items() if (col := find(key, name, True))},
    )
    if problems:
        raise DataError(
            f"{src.name}: image-classification expects a column of image paths and a label column; "
            + "; ".join(problems)
            + f". Columns found: {src.columns}. Set the names in keepfit.yaml (data.image_column, "
            "data.label_column) or pass --set data.image_column=NAME; or point at a folder with one subfolder "
            "per class."
        )
    kind = src.column_types.get(roles.text)
    if kind is not None and not any(k in kind.lower() for k in ("string", "utf8")):
        raise DataError(
            f"{src.name}: column {roles.text!r} (data.image_column) holds {kind}, expected image paths (text). "
            "Images stored inside a table are not read; save them as files and list their paths."
        )
    return roles, warnings


# ------------------------------------------------------------------------------------------------ checker


@dataclass(frozen=True)
class _Located:
    index: int
    shown: str
    path: Path


class _ImageChecker(_ChunkChecker):
    """The image rules on one chunk (a table's, or the folder's one); the split/slice columns and the quarantine
    bookkeeping are the text checker's own."""

    def __init__(
        self,
        config: KeepfitConfig,
        roles: ColumnRoles,
        known: list[str] | None,
        source: str,
        *,
        root: Path,
        folder: bool,
        require_answer: bool,
    ) -> None:
        super().__init__(config, roles, known, source)
        self.root = root
        self.folder = folder
        self.require_answer = require_answer
        self.backslashes = 0
        self.kept_facts: list[tuple[str, ImageFacts]] = []

    def check(self, chunk: RawChunk) -> tuple[pa.Table, list[pa.Table]]:
        n = len(chunk)
        self.alive = np.ones(n, dtype=bool)
        self.quarantined: list[pa.Table] = []
        self.chunk = chunk
        self.raw_text = chunk.columns[self.roles.text] if n else pa.array([], pa.string())
        label_col = self.roles.label
        self.raw_label = chunk.columns[label_col] if n and label_col else pa.nulls(n, pa.string())
        if chunk.unparseable:
            self.quarantined.append(_bad_records_table(chunk, self.source))
        schema = kept_image_schema(self.roles)
        if n == 0:
            return schema.empty_table(), self.quarantined
        shown, paths, facts = self._images(chunk)
        label = self._labels(chunk)
        extra = self._extra_columns(chunk)
        keep = np.flatnonzero(self.alive)
        kept_facts = [facts[i] for i in keep]
        good = [f for f in kept_facts if f is not None]  # every alive row passed the image rules
        self.kept_facts += [(shown[i], f) for i, f in zip(keep, kept_facts, strict=True) if f is not None]
        mask = pa.array(self.alive)
        table = pa.table(
            {
                ROW: pa.array(chunk.rows[keep], pa.int64()),
                SOURCE: pa.array([self.source] * len(keep), pa.string()),
                TEXT: pa.array([shown[i] for i in keep], pa.string()),
                IMAGE: pa.array([paths[i] for i in keep], pa.string()),
                IMAGE_SHA: pa.array([f.sha for f in good], pa.string()),
                IMAGE_PHASH: pa.array([f.phash for f in good], pa.string()),
                LABEL: label.filter(mask),
                **{name: arr.filter(mask) for name, arr in extra.items()},
            }
        )
        return table.cast(schema), self.quarantined

    def _images(self, chunk: RawChunk) -> tuple[list[str], list[str], list[ImageFacts | None]]:
        """Locate and inspect every row's image; quarantine the bad ones (one reason each, grouped by reason)."""
        n = len(chunk)
        cells = self.raw_text.to_pylist()
        kinds = chunk.kinds.get(self.roles.text)
        shown = [_show(c) if c is not None else "" for c in cells]
        paths = [""] * n
        outcome: list[ImageFacts | Problem | None] = [None] * n
        todo: list[_Located] = []
        for i, cell in enumerate(cells):
            located = self._locate(i, cell, int(kinds[i]) if kinds is not None else KIND_TEXT)
            if isinstance(located, Problem):
                outcome[i] = located
            else:
                todo.append(located)
                shown[i], paths[i] = located.shown, os.path.abspath(located.path)
        for loc in todo:  # one thread: a pool of 2 measured no faster on small images (hashing holds the GIL)
            outcome[loc.index] = inspect_image(loc.path, self.config.data, shown=loc.shown)
        problems: dict[str, list[tuple[int, str]]] = {}
        for i, found in enumerate(outcome):
            if isinstance(found, Problem):
                problems.setdefault(found.reason, []).append((i, found.detail))
        for reason in IMAGE_REASONS:
            if reason in problems:
                mask = np.zeros(n, dtype=bool)
                mask[[i for i, _ in problems[reason]]] = True
                self._reject(mask, reason, [d for _, d in problems[reason]])
        return shown, paths, [f if isinstance(f, ImageFacts) else None for f in outcome]

    def _locate(self, index: int, cell: str | None, kind: int) -> _Located | Problem:
        """The file a path cell names: relative to the table's folder (or the image folder), or absolute."""
        if cell is None or not cell.strip():
            return Problem("bad_path", "the image path is empty; fill in the path of the image or remove the row")
        if kind != KIND_TEXT:
            return Problem("bad_path", f"the image path is {_show(cell)} (not text); expected a file path")
        if "\x00" in cell:
            return Problem("bad_path", f"the image path {_show(cell)!r} holds a NUL byte; fix the path")
        cell = cell.strip()
        path = self.root / cell
        if "\\" in cell and not os.path.lexists(path) and os.path.lexists(self.root / cell.replace("\\", "/")):
            cell = cell.replace("\\", "/")  # a table written on Windows
            path = self.root / cell
            self.backslashes += 1
        shown = Path(cell).as_posix()
        if Path(cell).is_absolute() and Path(cell).is_relative_to(self.root):
            shown = Path(cell).relative_to(self.root).as_posix()
        return _Located(index, shown, path)

    def _labels(self, chunk: RawChunk) -> pa.Array:
        """The label column: missing, wrong-kind and unknown labels quarantined; None where none is needed."""
        n = len(chunk)
        if self.roles.label is None:
            return pa.nulls(n, pa.string())
        kinds = chunk.kinds.get(self.roles.label)
        wrong = self._wrong_kinds(kinds, (KIND_TEXT, KIND_NUMBER, KIND_BOOL))
        if (wrong & self.alive).any() and kinds is not None:
            self._reject(wrong, "wrong_type", self._kind_details(wrong, kinds, self.raw_label, "label", "one label"))
        norm, _ = normalize_text(self.raw_label)
        null, token = self._missing_label_mask(norm)
        if self.require_answer:
            self._reject(null, "missing_label", [self._no_label_detail(i) for i in np.flatnonzero(null & self.alive)])
            values = pc.take(norm, pa.array(np.flatnonzero(token & self.alive))).to_pylist()
            self._reject(token, "missing_label", [f'label is "{v}", which reads as a missing value' for v in values])
        missing = null | token
        if self.known is not None:
            unknown = ~_np_mask(pc.is_in(norm, value_set=self.known_set)) & ~missing & self.alive
            values = pc.take(norm, pa.array(np.flatnonzero(unknown))).to_pylist()
            self._reject(unknown, "unknown_label", [self._unknown_detail(v) for v in values])
        return pc.if_else(pa.array(missing), pa.scalar(None, pa.string()), norm)

    def _no_label_detail(self, i: int) -> str:
        if self.folder:
            return (
                f"{self.raw_text[i].as_py()} sits directly in the top folder, not in a class folder; move it into "
                "the folder of its class"
            )
        return "label is empty"

    def _unknown_detail(self, value: str) -> str:
        assert self.known is not None
        guess = suggest_label(value, self.known)
        hint = f' (did you mean "{guess}"?)' if guess else f" ({len(self.known)} known labels)"
        fix = "Rename the class folder" if self.folder else "Fix the row"
        return f'label "{value}" is not a known label{hint}. {fix} or add the label to labels: in keepfit.yaml'


def kept_image_schema(roles: ColumnRoles) -> pa.Schema:
    """The Arrow schema of kept image rows (the canonical columns of :mod:`keepfit.types`)."""
    fields = [
        pa.field(ROW, pa.int64()),
        pa.field(SOURCE, pa.string()),
        pa.field(TEXT, pa.string()),
        pa.field(IMAGE, pa.string()),
        pa.field(IMAGE_SHA, pa.string()),
        pa.field(IMAGE_PHASH, pa.string()),
        pa.field(LABEL, pa.string()),
    ]
    return pa.schema(fields + optional_fields(roles))


# ------------------------------------------------------------------------------------------------ notes


def _examples(items: list[str]) -> str:
    return ", ".join(items[:_EXAMPLES]) + (", ..." if len(items) > _EXAMPLES else "")


def _notes(source: str, kept: list[tuple[str, ImageFacts]]) -> list[str]:
    """Warnings on kept images: content in another format than the extension says, and converted modes."""
    out: list[str] = []
    mismatched: dict[str, list[str]] = {}
    for shown, facts in kept:
        ext = Path(shown).suffix.lower()
        named = _SAME_FORMAT.get(_FORMAT_OF_EXTENSION.get(ext, ""), _FORMAT_OF_EXTENSION.get(ext, ""))
        actual = _SAME_FORMAT.get(facts.format, facts.format)
        if named and actual != named:
            mismatched.setdefault(f"{facts.format} named {ext}", []).append(shown)
    if mismatched:
        total = sum(len(v) for v in mismatched.values())
        kinds = "; ".join(f"{len(v)} {k} (e.g. {_examples(v)})" for k, v in sorted(mismatched.items()))
        out.append(
            f"{source}: {total} image(s) hold another format than their extension says: {kinds}. They are read "
            "by their content; rename them to silence this note"
        )
    modes: dict[str, list[str]] = {}
    for shown, facts in kept:
        if facts.mode != "RGB":
            modes.setdefault(facts.mode, []).append(shown)
    for mode, shown_paths in sorted(modes.items()):
        out.append(
            f"{source}: {len(shown_paths)} image(s) in mode {mode} are converted to RGB: {CONVERTED_MODES[mode]} "
            f"(e.g. {_examples(shown_paths)})"
        )
    return out


# ------------------------------------------------------------------------------------------------ entry point


def load_images(
    path: str | Path,
    config: KeepfitConfig,
    *,
    known_labels: list[str] | None = None,
    require_answer: bool = True,
) -> CheckedRows:
    """Read an image folder (one subfolder per class) or a table of image paths, and keep or quarantine every
    image (rules: module docstring). ``n_in == len(kept) + len(quarantine)``.

    ``known_labels`` (else ``config.labels``) turns other labels into ``unknown_label`` rows;
    ``require_answer=False`` keeps images without a label (label None: files directly in the folder, a table
    without the label column). Raises DataError for problems of the whole input only (missing path, no class
    folders, missing columns, no rows).
    """
    p = Path(path)
    if not p.exists():
        raise DataError(
            f"{p} does not exist. Expected an image folder (one subfolder per class) or a table (CSV/Parquet) "
            "with image and label columns; check data.train in keepfit.yaml, or the argument."
        )
    if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS:
        raise DataError(
            f"{p} is one image. Point at the folder holding one subfolder per class, or at a table (CSV) with "
            "image and label columns."
        )
    known = list(known_labels) if known_labels is not None else (list(config.labels) if config.labels else None)
    chunks: Iterable[RawChunk]
    if p.is_dir():
        chunk, walk = _folder_chunk(p, require_answer)
        roles = ColumnRoles(text=IMAGE, label=LABEL if walk.classes else None)
        chunks, warnings, late_warnings = [chunk], _walk_warnings(p.name, walk), []
        source, root = p.name, Path(os.path.abspath(p))
    else:
        src = open_source(p, config)
        roles, warnings = resolve_image_columns(src, config, require_answer=require_answer)
        chunks, late_warnings = src.chunks(roles.read_columns), src.warnings  # the reader adds warnings as it goes
        source, root = src.name, Path(os.path.abspath(p)).parent
    checker = _ImageChecker(config, roles, known, source, root=root, folder=p.is_dir(), require_answer=require_answer)
    schema = kept_image_schema(roles)
    kept_parts: list[pa.Table] = []
    quarantine_parts: list[pa.Table] = []
    n_in = 0
    for chunk in chunks:
        n_in += len(chunk) + len(chunk.unparseable)
        kept, quarantined = checker.check(chunk)
        kept_parts.append(kept)
        quarantine_parts.extend(quarantined)
    if n_in == 0:
        raise DataError(f"{source}: no data rows. Expected at least one image path after the header.")
    warnings += late_warnings
    if checker.backslashes:
        warnings.append(f"{source}: {checker.backslashes} path(s) used '\\' as separator; read as '/'")
    warnings += _notes(source, checker.kept_facts)
    kept_table = pa.concat_tables(kept_parts).combine_chunks() if kept_parts else schema.empty_table()
    frame = kept_table.to_pandas()
    if config.labels or known is not None:  # as validate._labels: the configured labels, else the known ones
        labels = list(config.labels or known or [])
    else:
        labels = sorted(str(x) for x in frame[LABEL].dropna().unique())
    return CheckedRows(frame, _quarantine_frame(quarantine_parts), n_in, labels, warnings, source)
