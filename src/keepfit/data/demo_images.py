"""A generated visual-inspection task with planted problems (for ``keepfit demo --task image`` and the tests).

Every photo shows one *part* (a grey disc or a rotated plate, lit from one side) on a textured background; its
class is what is wrong with it:

- ``ok``: nothing (but dust specks, a glint or a bolt hole may be there, as on every class);
- ``scratch``: a thin dark straight line across the part;
- ``dent``: a soft dark blotch with a light rim;
- ``stain``: a translucent coloured blob (rust, oil, coolant);
- ``crack`` (week 2's new class): a dark jagged line, sometimes branched.

Position, size, rotation, lighting, background texture, defect strength, noise and blur vary, all drawn from a
seeded ``numpy.random.Generator`` (one per photo, from ``(seed, week, class, index)``), so a seed always writes the
same files with the same bytes. Photos are :data:`SIZE_RANGE` pixels a side, PNG or JPEG at random.

:func:`write_image_demo` writes three image folders (``<folder>/<week>/<class>/<file>``):

- ``week1/``: :data:`WEEK1_CLASSES`, plus planted problems, counted in ``planted`` under the names the data check
  reports (``report["found_counts"]``): ``truncated`` (JPEGs cut short), ``not_an_image`` (a text file named
  .jpg), ``empty_file``, ``too_small`` (a 1x1 PNG), ``animated`` (a 3-frame GIF), ``exact_duplicates`` (the same
  bytes again under another name in the same class: copies after the first), ``conflicting_duplicates`` (one
  photo's bytes in two classes: both copies), ``near_duplicates`` (a re-encoded copy at 90 % size); and two
  files kept with a note: ``cmyk_converted`` (a CMYK JPEG) and ``wrong_extension`` (a PNG named .jpg);
- ``week2/``: new photos of the old classes and of :data:`NEW_CLASS`, no planted problems;
- ``careless/``: fresh week-2-like photos whose annotator swapped :data:`CARELESS_SWAP`: every scratch photo
  filed as dent and every dent as scratch (a file is named for what it shows: ``dent/scratch_0001.png``).
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import TypedDict

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from keepfit._io import atomic_dir

__all__ = [
    "CARELESS_SWAP",
    "ImageDemo",
    "NEW_CLASS",
    "SIZE_RANGE",
    "WEEK1_CLASSES",
    "NOTED_KINDS",
    "render_photo",
    "write_image_demo",
    "write_new_photos",
]

WEEK1_CLASSES = ("ok", "scratch", "dent", "stain")
NEW_CLASS = "crack"
CARELESS_SWAP = ("scratch", "dent")
SIZE_RANGE = (96, 128)  # each side of a generated photo, pixels (inclusive)
NEAR_DUPLICATE_SCALE = 0.9  # the near-duplicate is its original resized by this, then re-encoded as JPEG
# generated photos differ from each other in at least this many of their 64 pHash bits (the check's default
# near-duplicate distance is 4)
MIN_PHASH_DISTANCE = 8
_MAX_DRAWS = 50
# planted kinds that are kept (with a note in the check's warnings), not quarantined
NOTED_KINDS = ("cmyk_converted", "wrong_extension")

_WEEK_CODES = {"week1": 1, "week2": 2, "careless": 3, "new": 4, "planted": 9}
_ALL_CLASSES = (*WEEK1_CLASSES, NEW_CLASS)
_STAIN_COLOURS = np.array([[150, 80, 30], [140, 150, 40], [40, 80, 170], [70, 40, 80]], dtype=np.float32)
# one painted layer: a mask [h, w] in [0, 1], a value [3] and whether the value is a colour to blend over the
# pixels (True) or a brightness offset to add (False)
_Layer = tuple[np.ndarray, np.ndarray, bool]
_SUPER = 3  # masks are drawn this many times larger, then downsampled: anti-aliased edges


class ImageDemo(TypedDict):
    """What :func:`write_image_demo` wrote. ``counts``: generated photos per week and class (planted files not
    included); ``planted``: planted problems per kind (week 1); ``planted_files``: their paths relative to
    ``week1``; ``swapped``: the two classes swapped in ``careless`` and ``swapped_count`` the photos filed wrong."""

    week1: Path
    week2: Path
    careless: Path
    classes_week1: list[str]
    classes_week2: list[str]
    new_class: str
    counts: dict[str, dict[str, int]]
    planted: dict[str, int]
    planted_files: dict[str, list[str]]
    swapped: tuple[str, str]
    swapped_count: int


# ------------------------------------------------------------------------------------------------ drawing


def _upsampled_noise(rng: np.random.Generator, h: int, w: int, cell: int) -> np.ndarray:
    """Smooth noise [h, w] (about unit spread): a coarse random grid bilinearly enlarged."""
    grid = rng.normal(0.0, 1.0, (h // cell + 2, w // cell + 2)).astype(np.float32)
    img = Image.fromarray(grid, mode="F").resize((w, h), Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.float32)


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A textured background [h, w, 3] (float, 0-255): grain, mottling or machined stripes on a dull colour."""
    base = rng.uniform(35, 115) * rng.uniform(0.75, 1.25, 3)
    kind = rng.integers(3)
    if kind == 0:  # mottled
        tex = 14 * _upsampled_noise(rng, h, w, int(rng.integers(6, 20)))
    elif kind == 1:  # machined stripes
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        angle = rng.uniform(0, math.pi)
        period = rng.uniform(4, 14)
        tex = 10 * np.sin((xx * math.cos(angle) + yy * math.sin(angle)) * 2 * math.pi / period)
    else:  # grain
        tex = np.zeros((h, w), dtype=np.float32)
    tex = tex + rng.uniform(3, 9) * rng.normal(0, 1, (h, w)).astype(np.float32)
    return np.clip(base[None, None, :] + tex[:, :, None], 0, 255)


def _mask(h: int, w: int, draw, blur: float = 0.0) -> np.ndarray:
    """A [h, w] mask in [0, 1]: ``draw(ImageDraw, scale)`` paints white on a supersampled canvas."""
    canvas = Image.new("L", (w * _SUPER, h * _SUPER), 0)
    draw(ImageDraw.Draw(canvas), _SUPER)
    small = canvas.resize((w, h), Image.Resampling.BOX)
    if blur:
        small = small.filter(ImageFilter.GaussianBlur(blur))
    return np.asarray(small, dtype=np.float32) / 255.0


def _part(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, tuple[float, float], float]:
    """The part's mask [h, w], its centre (x, y) and its radius (pixels): a disc or a rotated plate."""
    radius = rng.uniform(0.28, 0.4) * min(h, w)
    cx = w / 2 + rng.uniform(-0.12, 0.12) * w
    cy = h / 2 + rng.uniform(-0.12, 0.12) * h
    if rng.random() < 0.5:

        def draw(d: ImageDraw.ImageDraw, s: int) -> None:
            d.ellipse([(cx - radius) * s, (cy - radius) * s, (cx + radius) * s, (cy + radius) * s], fill=255)

    else:
        angle = rng.uniform(0, math.pi)
        half = (radius, radius * rng.uniform(0.6, 1.0))
        corners = [(sx * half[0], sy * half[1]) for sx, sy in ((-1, -1), (1, -1), (1, 1), (-1, 1))]
        c, s_ = math.cos(angle), math.sin(angle)
        points = [(cx + x * c - y * s_, cy + x * s_ + y * c) for x, y in corners]

        def draw(d: ImageDraw.ImageDraw, s: int) -> None:
            d.polygon([(x * s, y * s) for x, y in points], fill=255)

    return _mask(h, w, draw), (cx, cy), radius


def _point_on_part(rng: np.random.Generator, centre: tuple[float, float], radius: float, reach: float):
    angle = rng.uniform(0, 2 * math.pi)
    dist = radius * reach * math.sqrt(rng.random())
    return centre[0] + dist * math.cos(angle), centre[1] + dist * math.sin(angle)


def _line_mask(h: int, w: int, points: list[tuple[float, float]], width: float, blur: float = 0.0) -> np.ndarray:
    def draw(d: ImageDraw.ImageDraw, s: int) -> None:
        d.line([(x * s, y * s) for x, y in points], fill=255, width=max(1, round(width * s)), joint="curve")

    return _mask(h, w, draw, blur)


def _scratch(rng, h, w, centre, radius) -> list[_Layer]:
    x, y = _point_on_part(rng, centre, radius, 0.4)
    angle, length = rng.uniform(0, math.pi), radius * rng.uniform(0.8, 1.5)
    dx, dy = math.cos(angle) * length / 2, math.sin(angle) * length / 2
    mask = _line_mask(h, w, [(x - dx, y - dy), (x + dx, y + dy)], rng.uniform(1.2, 2.2))
    return [(mask, np.full(3, -rng.uniform(60, 110), dtype=np.float32), False)]


def _crack(rng, h, w, centre, radius) -> list[_Layer]:
    x, y = _point_on_part(rng, centre, radius, 0.5)
    heading = rng.uniform(0, 2 * math.pi)
    points = [(x, y)]
    for _ in range(int(rng.integers(6, 11))):
        heading += rng.uniform(-1.1, 1.1)
        step = radius * rng.uniform(0.1, 0.2)
        x, y = x + step * math.cos(heading), y + step * math.sin(heading)
        points.append((x, y))
    mask = _line_mask(h, w, points, rng.uniform(0.8, 1.8))
    if rng.random() < 0.4:  # a branch from somewhere along the crack
        bx, by = points[int(rng.integers(1, len(points) - 1))]
        branch = [(bx, by)]
        for _ in range(3):
            heading += rng.uniform(-1.4, 1.4)
            bx, by = bx + radius * 0.12 * math.cos(heading), by + radius * 0.12 * math.sin(heading)
            branch.append((bx, by))
        mask = np.maximum(mask, _line_mask(h, w, branch, 0.9))
    return [(mask, np.full(3, -rng.uniform(55, 105), dtype=np.float32), False)]


def _dent(rng, h, w, centre, radius) -> list[_Layer]:
    x, y = _point_on_part(rng, centre, radius, 0.6)
    rx, ry = radius * rng.uniform(0.18, 0.34), radius * rng.uniform(0.15, 0.28)

    def blob(ox: float, oy: float):
        def draw(d: ImageDraw.ImageDraw, s: int) -> None:
            d.ellipse([(x + ox - rx) * s, (y + oy - ry) * s, (x + ox + rx) * s, (y + oy + ry) * s], fill=255)

        return draw

    shade = _mask(h, w, blob(0, 0), blur=rng.uniform(1.5, 3.0))
    light = math.copysign(rx * 0.35, rng.uniform(-1, 1))
    rim = _mask(h, w, blob(light, -abs(light)), blur=2.0)
    return [
        (shade, np.full(3, -rng.uniform(50, 90), dtype=np.float32), False),
        (np.clip(rim - shade, 0, 1), np.full(3, rng.uniform(10, 30), dtype=np.float32), False),
    ]


def _stain(rng, h, w, centre, radius) -> list[_Layer]:
    x, y = _point_on_part(rng, centre, radius, 0.55)
    blobs = [
        (x + rng.normal(0, radius * 0.1), y + rng.normal(0, radius * 0.1), radius * rng.uniform(0.12, 0.28))
        for _ in range(int(rng.integers(2, 5)))
    ]

    def draw(d: ImageDraw.ImageDraw, s: int) -> None:
        for bx, by, r in blobs:
            d.ellipse([(bx - r) * s, (by - r * 0.8) * s, (bx + r) * s, (by + r * 0.8) * s], fill=255)

    mask = _mask(h, w, draw, blur=rng.uniform(1.0, 2.0)) * rng.uniform(0.5, 0.8)
    colour = _STAIN_COLOURS[int(rng.integers(len(_STAIN_COLOURS)))] * rng.uniform(0.8, 1.2)
    return [(mask, colour, True)]  # a colour over the part, not an offset


_DEFECTS = {"scratch": _scratch, "crack": _crack, "dent": _dent, "stain": _stain}


def _distractors(rng, h, w, centre, radius) -> list[_Layer]:
    """What any class may show: dust specks, a light glint, a bolt hole at the centre (so no single cue gives a
    class away)."""
    layers = []
    if rng.random() < 0.4:
        specks = [_point_on_part(rng, centre, radius, 1.2) for _ in range(int(rng.integers(2, 7)))]

        def draw(d: ImageDraw.ImageDraw, s: int) -> None:
            for sx, sy in specks:
                d.ellipse([(sx - 0.8) * s, (sy - 0.8) * s, (sx + 0.8) * s, (sy + 0.8) * s], fill=255)

        layers.append((_mask(h, w, draw), np.full(3, -rng.uniform(30, 70), dtype=np.float32), False))
    if rng.random() < 0.25:
        x, y = _point_on_part(rng, centre, radius, 0.5)
        angle, length = rng.uniform(0, math.pi), radius * rng.uniform(0.4, 0.9)
        dx, dy = math.cos(angle) * length / 2, math.sin(angle) * length / 2
        glint = _line_mask(h, w, [(x - dx, y - dy), (x + dx, y + dy)], 2.5, blur=1.2)
        layers.append((glint, np.full(3, rng.uniform(25, 50), dtype=np.float32), False))
    if rng.random() < 0.2:
        cx, cy = centre
        r = radius * 0.09

        def hole(d: ImageDraw.ImageDraw, s: int) -> None:
            d.ellipse([(cx - r) * s, (cy - r) * s, (cx + r) * s, (cy + r) * s], fill=255)

        layers.append((_mask(h, w, hole), np.full(3, -90, dtype=np.float32), False))
    return layers


def _apply(pixels: np.ndarray, mask: np.ndarray, value: np.ndarray, *, blend: bool) -> np.ndarray:
    """Paint one layer: with ``blend`` a translucent colour over what is there, else a brightness offset."""
    if blend:
        return pixels * (1 - mask[:, :, None]) + value[None, None, :] * mask[:, :, None]
    return pixels + mask[:, :, None] * value[None, None, :]


def render_photo(label: str, rng: np.random.Generator) -> Image.Image:
    """One RGB photo of a part showing ``label`` (one of ``WEEK1_CLASSES`` or ``NEW_CLASS``), each side in
    :data:`SIZE_RANGE`. Everything random comes from ``rng``."""
    if label not in _ALL_CLASSES:
        raise ValueError(f"label must be one of {', '.join(_ALL_CLASSES)}, got {label!r}")
    w, h = (int(v) for v in rng.integers(SIZE_RANGE[0], SIZE_RANGE[1] + 1, 2))
    pixels = _background(rng, h, w)
    part, centre, radius = _part(rng, h, w)
    # the part: grey, lit from one side (a linear gradient), with a faint grain of its own
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    light = rng.uniform(0, 2 * math.pi)
    gradient = ((xx - centre[0]) * math.cos(light) + (yy - centre[1]) * math.sin(light)) / radius
    grey = rng.uniform(125, 200) + rng.uniform(10, 30) * gradient + 4 * rng.normal(0, 1, (h, w))
    metal = np.repeat(grey[:, :, None], 3, axis=2) * rng.uniform(0.95, 1.05, 3)
    pixels = pixels * (1 - part[:, :, None]) + metal * part[:, :, None]
    layers = _distractors(rng, h, w, centre, radius)
    if label in _DEFECTS:
        strength = rng.uniform(0.7, 1.0)  # some defects are fainter
        layers += [(m * strength * part, v, blend) for m, v, blend in _DEFECTS[label](rng, h, w, centre, radius)]
    for mask, value, blend in layers:
        pixels = _apply(pixels, mask, value, blend=blend)
    gain, noise = rng.uniform(0.75, 1.25), rng.uniform(2, 10)
    pixels = pixels * gain + noise * rng.normal(0, 1, pixels.shape)
    img = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), mode="RGB")
    if rng.random() < 0.3:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.4, 0.9)))
    return img


# ------------------------------------------------------------------------------------------------ encoding


def _encode(img: Image.Image, fmt: str, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    if fmt == "JPEG":
        img.save(buf, format="JPEG", quality=quality)
    else:
        img.save(buf, format=fmt, compress_level=1)  # fast: these PNGs are written by the hundred
    return buf.getvalue()


def _write(path: Path, data: bytes) -> Path:
    """A plain write: every file goes into a week's temporary folder, renamed into place whole (atomic_dir)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


class _Distinct:
    """The perceptual hashes of the photos kept so far. A new photo within MIN_PHASH_DISTANCE bits of one of them
    is drawn again: near-duplicates are planted on purpose, never made by chance."""

    def __init__(self) -> None:
        self._hashes = np.empty(0, dtype=np.uint64)

    def accepts(self, data: bytes) -> bool:
        import imagehash

        with Image.open(io.BytesIO(data)) as img:
            new = np.uint64(int(str(imagehash.phash(img.convert("RGB"))), 16))
        if len(self._hashes) and int(np.bitwise_count(self._hashes ^ new).min()) < MIN_PHASH_DISTANCE:
            return False
        self._hashes = np.append(self._hashes, new)
        return True


def _photo_file(label: str, rng: np.random.Generator, distinct: _Distinct) -> tuple[bytes, str]:
    """A photo's bytes and its extension (half PNG, half JPEG at quality 75-95), distinct from earlier ones."""
    for _ in range(_MAX_DRAWS):
        img = render_photo(label, rng)
        if rng.random() < 0.5:
            data, ext = _encode(img, "PNG"), ".png"
        else:
            data, ext = _encode(img, "JPEG", int(rng.integers(75, 96))), ".jpg"
        if distinct.accepts(data):
            return data, ext
    raise ValueError(f"no {label} photo {MIN_PHASH_DISTANCE} bits away from the earlier ones in {_MAX_DRAWS} draws")


def _rng(seed: int, week: str, label: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, _WEEK_CODES[week], _ALL_CLASSES.index(label), index])


def _write_week(root: Path, week: str, counts: dict[str, int], seed: int, distinct: _Distinct) -> dict[str, list[Path]]:
    """Write ``counts[label]`` photos per class under ``root/<label>/``; their paths per class."""
    written: dict[str, list[Path]] = {}
    for label, n in counts.items():
        written[label] = []
        for i in range(n):
            data, ext = _photo_file(label, _rng(seed, week, label, i), distinct)
            written[label].append(_write(root / label / f"{label}_{i + 1:04d}{ext}", data))
    return written


# ------------------------------------------------------------------------------------------------ planting


def _plant_week1(root: Path, photos: dict[str, list[Path]], seed: int, distinct: _Distinct) -> dict[str, list[str]]:
    """Add week 1's planted files next to its photos; the relative paths of each kind."""
    rng = np.random.default_rng([seed, _WEEK_CODES["planted"]])
    files: dict[str, list[str]] = {}
    counter = iter(range(1, 10_000))

    def put(kind: str, label: str, ext: str, data: bytes) -> None:
        path = root / label / f"{label}_x{next(counter):03d}{ext}"
        _write(path, data)
        files.setdefault(kind, []).append(path.relative_to(root).as_posix())

    def fresh(label: str) -> Image.Image:
        """A new photo (for the files that are kept: distinct from the others)."""
        for _ in range(_MAX_DRAWS):
            img = render_photo(label, rng)
            if distinct.accepts(_encode(img, "PNG")):
                return img
        raise ValueError(f"no {label} photo {MIN_PHASH_DISTANCE} bits away from the earlier ones")

    labels = list(photos)
    for _ in range(2):  # a JPEG cut short: its header reads, its pixels do not
        whole = _encode(fresh("ok"), "JPEG", 90)
        put("truncated", str(rng.choice(labels)), ".jpg", whole[: len(whole) // 2])
    put("not_an_image", "scratch", ".jpg", b"Camera 3 export log\nframe 0412 skipped: exposure\n")
    put("empty_file", "dent", ".png", b"")
    put("too_small", "ok", ".png", _encode(Image.new("RGB", (1, 1), (128, 128, 128)), "PNG"))
    frames = [fresh("stain").resize((100, 100)) for _ in range(3)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=120, loop=0)
    put("animated", "stain", ".gif", buf.getvalue())

    # copies of photos already written: distinct originals for each kind
    originals = {label: list(rng.permutation(len(paths))) for label, paths in photos.items()}
    for label in ("ok", "scratch", "stain"):  # the same bytes under another name, same class
        original = photos[label][originals[label].pop()]
        put("exact_duplicates", label, original.suffix, original.read_bytes())
    source = photos["ok"][originals["ok"].pop()]  # one photo filed under two classes
    put("conflicting_duplicates", "dent", source.suffix, source.read_bytes())
    files["conflicting_duplicates"].insert(0, source.relative_to(root).as_posix())
    with Image.open(photos["dent"][originals["dent"].pop()]) as original:
        near = original.convert("RGB").resize(
            (round(original.width * NEAR_DUPLICATE_SCALE), round(original.height * NEAR_DUPLICATE_SCALE)),
            Image.Resampling.LANCZOS,
        )
    put("near_duplicates", "dent", ".jpg", _encode(near, "JPEG", 80))

    put("cmyk_converted", "scratch", ".jpg", _encode(fresh("scratch").convert("CMYK"), "JPEG", 90))
    put("wrong_extension", "stain", ".jpg", _encode(fresh("stain"), "PNG"))
    return files


def _planted_counts(files: dict[str, list[str]]) -> dict[str, int]:
    """Counts as the check reports them: exact duplicates count the copies after the first (here every planted
    file is one), conflicting duplicates every copy (the original is listed too)."""
    return {kind: len(paths) for kind, paths in files.items()}


def _write_careless(root: Path, counts: dict[str, int], seed: int, distinct: _Distinct) -> int:
    """Fresh week-2-like photos with the two classes of CARELESS_SWAP filed under each other; photos misfiled."""
    a, b = CARELESS_SWAP
    swapped = 0
    for label, n in counts.items():
        filed = {a: b, b: a}.get(label, label)
        for i in range(n):
            data, ext = _photo_file(label, _rng(seed, "careless", label, i), distinct)
            # named for what the photo shows, filed where the annotator put it: "dent/scratch_0001.png"
            _write(root / filed / f"{label}_{i + 1:04d}{ext}", data)
            swapped += filed != label
    return swapped


def write_image_demo(folder: str | Path, *, seed: int = 0, small: bool = False) -> ImageDemo:
    """Write ``week1/``, ``week2/`` and ``careless/`` image folders under ``folder`` (replacing any there).

    Week 1 holds 100 photos per class of ``WEEK1_CLASSES`` (50 with ``small``) plus the planted files; week 2 40
    per old class and 80 of ``NEW_CLASS`` (20 and 40 with ``small``); careless as many as week 2. The same
    ``seed`` writes the same files, byte for byte. Returns what was written and planted (see ImageDemo).
    """
    folder = Path(folder)
    per_class, per_old, per_new = (50, 20, 40) if small else (100, 40, 80)
    week1_counts = dict.fromkeys(WEEK1_CLASSES, per_class)
    week2_counts = {**dict.fromkeys(WEEK1_CLASSES, per_old), NEW_CLASS: per_new}
    roots = {week: folder / week for week in ("week1", "week2", "careless")}
    distinct = _Distinct()
    with atomic_dir(roots["week1"], overwrite=True) as tmp:
        photos = _write_week(tmp, "week1", week1_counts, seed, distinct)
        planted_files = _plant_week1(tmp, photos, seed, distinct)
    with atomic_dir(roots["week2"], overwrite=True) as tmp:
        _write_week(tmp, "week2", week2_counts, seed, distinct)
    with atomic_dir(roots["careless"], overwrite=True) as tmp:
        swapped = _write_careless(tmp, week2_counts, seed, distinct)
    return ImageDemo(
        week1=roots["week1"],
        week2=roots["week2"],
        careless=roots["careless"],
        classes_week1=list(WEEK1_CLASSES),
        classes_week2=sorted(week2_counts),
        new_class=NEW_CLASS,
        counts={"week1": week1_counts, "week2": week2_counts, "careless": dict(week2_counts)},
        planted=_planted_counts(planted_files),
        planted_files=planted_files,
        swapped=CARELESS_SWAP,
        swapped_count=swapped,
    )


def write_new_photos(folder: str | Path, per_class: int = 2, *, seed: int = 100) -> list[tuple[Path, str]]:
    """Write ``per_class`` fresh photos of every class (week 2's five) straight into ``folder``, with no class
    subfolders: the layout of images to predict. Returns each photo's path and the class it shows."""
    folder = Path(folder)
    distinct = _Distinct()
    shown: list[tuple[Path, str]] = []
    with atomic_dir(folder, overwrite=True) as tmp:
        for label in _ALL_CLASSES:
            for i in range(per_class):
                data, ext = _photo_file(label, _rng(seed, "new", label, i), distinct)
                name = f"photo_{len(shown) + 1:03d}{ext}"
                _write(tmp / name, data)
                shown.append((folder / name, label))
    return shown
