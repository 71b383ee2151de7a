"""A corpus of bad image inputs generated in tmp_path: each file ends kept or quarantined with its expected
reason, every path is accounted for, ``n_in == kept + quarantined``, and `keepfit data check` reports it all
without a traceback."""

from __future__ import annotations

import io
import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from keepfit.cli.app import app
from keepfit.config import KeepfitConfig
from keepfit.data.images import IMAGE_REASONS, load_images
from keepfit.data.validate import load_and_validate

KEEP = "kept"
KNOWN = ["crack", "ok"]
# small enough that a 120x120 image is too_large while 40x40 ones and the 1000x10 strip pass
CONFIG = KeepfitConfig.model_validate({"task": "image-classification", "data": {"max_image_pixels": 12_000}})
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def _noise(seed: int, size: tuple[int, int] = (40, 40)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def _encoded(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _bytes(data: bytes) -> Callable[[Path], None]:
    return lambda p: p.write_bytes(data)


def _image(img: Image.Image, fmt: str | None = None, **kw: object) -> Callable[[Path], None]:
    return lambda p: img.save(p, fmt, **kw)


def _frames(fmt: str) -> Callable[[Path], None]:
    frames = [_noise(i) for i in range(3)]
    return lambda p: frames[0].save(p, fmt, save_all=True, append_images=frames[1:])


def _symlink(target: str) -> Callable[[Path], None]:
    return lambda p: os.symlink(target, p)


def _unreadable(p: Path) -> None:
    _noise(30).save(p, "PNG")
    p.chmod(0)


def _truncated(img: Image.Image, fmt: str) -> Callable[[Path], None]:
    data = _encoded(img, fmt)
    return _bytes(data[: len(data) // 2])


# path under the image folder -> (how to make it, the expected reason or KEEP)
FOLDER_CASES: dict[str, tuple[Callable[[Path], None], str]] = {
    "crack/good.png": (_image(_noise(1)), KEEP),
    "crack/nested/good.jpg": (_image(_noise(2)), KEEP),
    "crack/truncated.jpg": (_truncated(_noise(3, (64, 64)), "JPEG"), "truncated"),
    "crack/truncated.png": (_truncated(_noise(4, (64, 64)), "PNG"), "truncated"),
    "crack/png_named.jpg": (_image(_noise(5), "PNG"), KEEP),
    "crack/empty.png": (_bytes(b""), "empty_file"),
    "crack/one_pixel.png": (_image(_noise(6, (1, 1))), "too_small"),
    "crack/grey16.png": (_image(Image.fromarray(np.full((40, 40), 50000, np.uint16))), KEEP),
    "crack/cmyk.jpg": (_image(_noise(7).convert("CMYK")), KEEP),
    "crack/palette_alpha.png": (_image(_noise(8).convert("P"), transparency=0), KEEP),
    "crack/rgba.png": (_image(_noise(9).convert("RGBA")), KEEP),
    "ok/animated.gif": (_frames("GIF"), "animated"),
    "ok/animated.png": (_frames("PNG"), "animated"),
    "ok/pages.tif": (_frames("TIFF"), "animated"),
    "ok/text.jpg": (_bytes(b"this is not a picture\n"), "not_an_image"),
    "ok/random.png": (_bytes(np.random.default_rng(0).bytes(300)), "not_an_image"),
    "ok/loop.jpg": (_symlink("loop.jpg"), "unreadable"),
    "ok/dangling.jpg": (_symlink("gone.jpg"), "missing_file"),
    "ok/strip.png": (_image(_noise(10, (1000, 10))), "extreme_aspect"),
    "ok/huge.png": (_image(_noise(11, (120, 120))), "too_large"),
    "ok/float.tif": (_image(Image.fromarray(np.full((40, 40), 0.5, np.float32))), "unsupported_mode"),
    "ok/notes.txt": (_bytes(b"annotator notes\n"), "not_an_image"),
    "scratch/good.png": (_image(_noise(12)), "unknown_label"),  # a class outside KNOWN
    "loose.png": (_image(_noise(13)), "missing_label"),  # next to the class folders, in none
    **({} if IS_ROOT else {"ok/locked.png": (_unreadable, "unreadable")}),  # root reads any file
}
HIDDEN = {".DS_Store": b"\0\0\0\1Bud1", "crack/Thumbs.db": b"x", "ok/._animated.gif": b"x"}


def _make_folder(tmp_path: Path) -> Path:
    root = tmp_path / "images"
    for rel, (make, _) in FOLDER_CASES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        make(root / rel)
    for rel, data in HIDDEN.items():
        (root / rel).write_bytes(data)
    return root


def _outcome(rows) -> dict[str, str]:
    found = {t: KEEP for t in rows.kept["text"]}
    for text, reason in zip(rows.quarantine["raw_text"], rows.quarantine["reason"], strict=True):
        assert text not in found, f"{text} counted twice"
        found[text] = reason
    return found


@pytest.fixture
def folder(tmp_path):
    root = _make_folder(tmp_path)
    yield root
    for p in root.rglob("*"):  # let pytest clean up the locked file
        if not p.is_symlink():
            p.chmod(0o755)


def test_every_folder_file_gets_its_expected_reason(folder):
    rows = load_images(folder, CONFIG, known_labels=KNOWN)
    assert _outcome(rows) == {rel: reason for rel, (_, reason) in FOLDER_CASES.items()}
    expected = Counter(r for _, r in FOLDER_CASES.values() if r != KEEP)
    assert rows.reason_counts == dict(expected)
    assert len(expected) >= 11 and set(expected) <= set(IMAGE_REASONS)
    assert rows.n_in == len(FOLDER_CASES) == len(rows.kept) + len(rows.quarantine)
    assert rows.quarantine["row"].is_unique and set(rows.quarantine["row"]).isdisjoint(rows.kept["row"])
    assert sorted([*rows.kept["row"], *rows.quarantine["row"]]) == list(range(1, rows.n_in + 1))
    assert any(f"skipped {len(HIDDEN)} hidden" in w for w in rows.warnings)
    assert any("1 PNG named .jpg" in w and "crack/png_named.jpg" in w for w in rows.warnings)
    for mode in ("CMYK", "I;16", "P", "RGBA"):
        assert any(f"in mode {mode} are converted" in w for w in rows.warnings), mode
    for rel, detail in zip(rows.quarantine["raw_text"], rows.quarantine["detail"], strict=True):
        assert rel in detail or "top folder" in detail or "known label" in detail, detail  # names the file


def test_table_of_paths_with_missing_empty_and_directory_cells(folder, tmp_path):
    (tmp_path / "images" / "dir.jpg").mkdir()
    table = tmp_path / "labels.csv"
    lines = {
        "images/crack/good.png,crack": KEEP,
        f"{folder / 'crack' / 'cmyk.jpg'},crack": KEEP,
        "images/crack/missing.png,crack": "missing_file",
        ",ok": "bad_path",
        "images/dir.jpg,ok": "unreadable",
        "images/ok/strip.png,ok": "extreme_aspect",
        "images/ok/text.jpg,ok": "not_an_image",
        "images/crack/good.png,": "missing_label",
        "images/crack/rgba.png,crak": "unknown_label",
    }
    table.write_text("image,label\n" + "\n".join(lines) + "\n")
    rows = load_and_validate(table, CONFIG, known_labels=KNOWN)
    by_row = {int(r): reason for r, reason in zip(rows.quarantine["row"], rows.quarantine["reason"], strict=True)}
    by_row |= {int(r): KEEP for r in rows.kept["row"]}
    assert by_row == {line_no: reason for line_no, reason in enumerate(lines.values(), start=2)}
    assert rows.n_in == len(lines) == len(rows.kept) + len(rows.quarantine)
    assert rows.kept["text"].tolist() == ["images/crack/good.png", "images/crack/cmyk.jpg"]
    q = rows.quarantine.set_index("row")
    assert "images/dir.jpg is a directory" in q.loc[6, "detail"]
    assert 'did you mean "crack"' in q.loc[10, "detail"]


def test_keepfit_data_check_on_the_folder_prints_the_reasons(folder, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "keepfit.yaml").write_text(
        "task: image-classification\nstore: .keepfit\ndata:\n  train: images\n  max_image_pixels: 12000\n"
    )
    result = CliRunner().invoke(app, ["data", "check", "images", "--out", str(tmp_path / "out")])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    assert result.exit_code == 0, result.output
    for reason in {r for _, r in FOLDER_CASES.values() if r not in (KEEP, "unknown_label")}:
        assert reason in result.output, reason
    assert (tmp_path / "out" / "quarantine.csv").read_text().startswith("row,source,reason,detail")
