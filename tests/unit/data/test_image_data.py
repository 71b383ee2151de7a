"""The image loader (keepfit.data.images): both layouts, the canonical kept columns, open_rgb's conversions,
prediction folders and the whole-input DataErrors. Tiny images built here, so each test takes milliseconds."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from keepfit.config import KeepfitConfig
from keepfit.data.images import CONVERTED_MODES, IMAGE_REASONS, load_images, open_rgb
from keepfit.data.validate import QUARANTINE_COLUMNS, load_and_validate
from keepfit.errors import DataError

IMG = KeepfitConfig.model_validate({"task": "image-classification"})
KEPT_COLUMNS = ["row", "source", "text", "image", "image_sha", "image_phash", "label"]


def _noise(seed: int, size: tuple[int, int] = (40, 40)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def _scene(kind: int, side: int = 128) -> Image.Image:
    """A smooth picture (gradients and a disc), so a resized copy keeps its perceptual hash."""
    y, x = np.mgrid[0:side, 0:side] / side
    if kind == 0:
        grey = 200 * x * (1 - y) + 40 * ((x - 0.6) ** 2 + (y - 0.3) ** 2 < 0.05)
    else:
        grey = 220 * np.abs(np.sin(3 * np.pi * y)) * x + 30
    rgb = np.stack([grey, grey * 0.8, 255 - grey], axis=-1)
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))


def _save(img: Image.Image, path: Path, fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, fmt)
    return path


def _folder(tmp_path: Path) -> Path:
    root = tmp_path / "cells"
    _save(_noise(1), root / "crack" / "b.png")
    _save(_noise(2), root / "crack" / "a.png")
    _save(_noise(3), root / "crack" / "deep" / "c.png")
    _save(_noise(4), root / "ok" / "d.jpg")
    return root


def test_folder_layout_gives_the_canonical_columns(tmp_path):
    root = _folder(tmp_path)
    rows = load_and_validate(root, IMG)
    kept = rows.kept
    assert list(kept.columns) == KEPT_COLUMNS
    assert kept["text"].tolist() == ["crack/a.png", "crack/b.png", "crack/deep/c.png", "ok/d.jpg"]
    assert kept["row"].tolist() == [1, 2, 3, 4]
    assert set(kept["source"]) == {"cells"}
    assert kept["label"].tolist() == ["crack", "crack", "crack", "ok"]
    assert kept["image"].tolist() == [str((root / t).absolute()) for t in kept["text"]]
    for image, sha in zip(kept["image"], kept["image_sha"], strict=True):
        assert sha == hashlib.sha256(Path(image).read_bytes()).hexdigest()
    assert all(len(h) == 16 and int(h, 16) >= 0 for h in kept["image_phash"])
    assert rows.labels == ["crack", "ok"] and rows.n_in == 4 and rows.source == "cells"
    assert list(rows.quarantine.columns) == QUARANTINE_COLUMNS and rows.quarantine.empty


def test_phash_is_equal_for_a_resized_copy_and_differs_for_another_picture(tmp_path):
    root = tmp_path / "pics"
    _save(_scene(0), root / "a" / "big.png")
    _save(_scene(0).resize((64, 64), Image.Resampling.LANCZOS), root / "a" / "small.png")
    _save(_scene(1), root / "b" / "other.png")
    kept = load_images(root, IMG).kept.set_index("text")
    assert kept.loc["a/big.png", "image_phash"] == kept.loc["a/small.png", "image_phash"]
    assert kept.loc["a/big.png", "image_sha"] != kept.loc["a/small.png", "image_sha"]
    distance = bin(int(kept.loc["a/big.png", "image_phash"], 16) ^ int(kept.loc["b/other.png", "image_phash"], 16))
    assert distance.count("1") > 10


def test_table_layout_with_relative_and_absolute_paths_split_and_slice(tmp_path):
    root = _folder(tmp_path)
    meta = tmp_path / "meta"
    inside = _save(_noise(5), meta / "imgs" / "e.png")
    table = meta / "labels.csv"
    table.write_text(
        "image,label,split,camera\n"
        "imgs/e.png,crack,train,left\n"
        f"{root / 'ok' / 'd.jpg'},ok,test,right\n"  # absolute, outside the table's folder
        f"{inside},ok,val,\n"  # absolute, inside it
        "../cells/crack/a.png,crack,test,left\n"
    )
    cfg = KeepfitConfig.model_validate(
        {"task": "image-classification", "data": {"split_column": "split", "slice_columns": ["camera"]}}
    )
    rows = load_and_validate(table, cfg)
    kept = rows.kept
    assert list(kept.columns) == [*KEPT_COLUMNS, "split", "slice:camera"]
    assert kept["row"].tolist() == [2, 3, 4, 5] and set(kept["source"]) == {"labels.csv"}
    assert kept["text"].tolist() == ["imgs/e.png", (root / "ok" / "d.jpg").as_posix(), "imgs/e.png",
                                     "../cells/crack/a.png"]
    assert kept["image"].tolist() == [str(inside), str(root / "ok" / "d.jpg"), str(inside),
                                      str(root / "crack" / "a.png")]
    assert kept["split"].tolist() == ["train", "test", "validation", "test"]
    assert kept["slice:camera"].tolist() == ["left", "right", "(missing)", "left"]
    assert kept["image_sha"].iloc[0] == kept["image_sha"].iloc[2] == hashlib.sha256(inside.read_bytes()).hexdigest()
    assert rows.labels == ["crack", "ok"]


def test_parquet_table_with_bad_labels_and_known_labels(tmp_path):
    _folder(tmp_path)
    table = tmp_path / "t.parquet"
    pq.write_table(
        pa.table(
            {
                "path": ["cells/crack/a.png", "cells/crack/b.png", "cells/ok/d.jpg", "cells/crack/deep/c.png"],
                "label": ["crack", None, "Crack ", "nan"],
            }
        ),
        table,
    )
    cfg = KeepfitConfig.model_validate({"task": "image-classification", "data": {"image_column": "path"}})
    rows = load_images(table, cfg, known_labels=["crack", "ok"])
    assert rows.kept["text"].tolist() == ["cells/crack/a.png"]
    assert rows.labels == ["crack", "ok"]
    q = rows.quarantine.set_index("row")
    assert q["reason"].to_dict() == {2: "missing_label", 3: "unknown_label", 4: "missing_label"}
    assert 'did you mean "crack"' in q.loc[3, "detail"]
    assert rows.n_in == len(rows.kept) + len(rows.quarantine) == 4


def test_a_png_named_jpg_is_kept_with_a_note(tmp_path):
    root = tmp_path / "imgs"
    _save(_noise(1), root / "a" / "really_png.jpg", "PNG")
    _save(_noise(2), root / "a" / "fine.jpg")
    rows = load_images(root, IMG)
    assert rows.kept["text"].tolist() == ["a/fine.jpg", "a/really_png.jpg"]
    note = [w for w in rows.warnings if "another format than their extension" in w]
    assert len(note) == 1 and "1 PNG named .jpg" in note[0] and "a/really_png.jpg" in note[0]


def test_converted_modes_are_kept_and_noted(tmp_path):
    root = tmp_path / "modes"
    base = _noise(7)
    _save(base.convert("CMYK"), root / "x" / "cmyk.jpg")
    _save(base.convert("P"), root / "x" / "palette.png")
    _save(Image.fromarray(np.full((40, 40), 40000, np.uint16)), root / "x" / "grey16.png")
    _save(base.convert("RGBA"), root / "x" / "alpha.png")
    _save(base.convert("L"), root / "x" / "grey.png")
    rows = load_images(root, IMG)
    assert len(rows.kept) == 5 and rows.quarantine.empty
    for mode in ("CMYK", "P", "I;16", "RGBA", "L"):
        line = next(w for w in rows.warnings if f"in mode {mode} are converted" in w)
        assert CONVERTED_MODES[mode] in line


def test_open_rgb_converts_each_mode_to_the_documented_pixels(tmp_path):
    def rgb(img: Image.Image, name: str) -> np.ndarray:
        out = open_rgb(_save(img, tmp_path / name))
        assert out.mode == "RGB"
        return np.asarray(out)

    cmyk = Image.new("CMYK", (2, 1))
    cmyk.putpixel((0, 0), (0, 0, 0, 0))
    cmyk.putpixel((1, 0), (0, 0, 0, 255))
    assert rgb(cmyk, "c.tif")[0].tolist() == [[255, 255, 255], [0, 0, 0]]

    grey16 = Image.fromarray(np.array([[0, 256, 40000, 65535]], dtype=np.uint16))
    assert rgb(grey16, "g.png")[0, :, 0].tolist() == [0, 1, 156, 255]  # value >> 8

    rgba = Image.new("RGBA", (3, 1))
    for x, px in enumerate([(255, 0, 0, 255), (255, 0, 0, 0), (0, 0, 0, 128)]):
        rgba.putpixel((x, 0), px)
    out = rgb(rgba, "a.png")[0].tolist()
    assert out[0] == [255, 0, 0] and out[1] == [255, 255, 255] and all(126 <= v <= 128 for v in out[2])

    palette = Image.new("P", (2, 1))
    palette.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    palette.putpixel((0, 0), 0)
    palette.putpixel((1, 0), 1)
    assert rgb(palette, "p.png")[0].tolist() == [[10, 20, 30], [200, 100, 50]]
    palette.info["transparency"] = 1
    assert rgb(palette, "pt.png")[0].tolist() == [[10, 20, 30], [255, 255, 255]]

    assert rgb(Image.new("L", (1, 1), 77), "l.png")[0, 0].tolist() == [77, 77, 77]
    assert rgb(Image.new("1", (1, 1), 1), "one.png")[0, 0].tolist() == [255, 255, 255]

    tall = Image.new("RGB", (4, 2), (1, 2, 3))
    exif = tall.getexif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to view
    tall.save(tmp_path / "o.jpg", exif=exif)
    assert open_rgb(tmp_path / "o.jpg").size == (2, 4)


def test_prediction_folder_without_classes_keeps_unlabelled_rows(tmp_path):
    root = tmp_path / "incoming"
    _save(_noise(1), root / "b.png")
    _save(_noise(2), root / "a.png")
    rows = load_images(root, IMG, require_answer=False)
    assert rows.kept["text"].tolist() == ["a.png", "b.png"]
    assert rows.kept["label"].isna().all() and rows.labels == []
    assert list(rows.kept.columns) == KEPT_COLUMNS


def test_loose_files_next_to_class_folders_need_a_label_only_for_training(tmp_path):
    root = _folder(tmp_path)
    _save(_noise(9), root / "loose.png")
    trained = load_images(root, IMG)
    q = trained.quarantine
    assert q["reason"].tolist() == ["missing_label"] and "not in a class folder" in q["detail"].iloc[0]
    predicted = load_images(root, IMG, require_answer=False)
    assert len(predicted.kept) == 5 and predicted.quarantine.empty
    assert pd.isna(predicted.kept.set_index("text").loc["loose.png", "label"])


def test_unknown_class_folder_with_known_labels(tmp_path):
    root = _folder(tmp_path)
    _save(_noise(8), root / "crak" / "x.png")
    rows = load_images(root, IMG, known_labels=["crack", "ok"])
    q = rows.quarantine
    assert q["reason"].tolist() == ["unknown_label"] and q["raw_text"].tolist() == ["crak/x.png"]
    assert 'did you mean "crack"' in q["detail"].iloc[0] and "Rename the class folder" in q["detail"].iloc[0]
    assert rows.labels == ["crack", "ok"]


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (lambda t: t / "nowhere", ["does not exist", "image folder"]),
        (lambda t: _save(_noise(1), t / "flat" / "a.png").parent, ["one subfolder per class", "a.png", "no class"]),
        (lambda t: _save(_noise(1), t / "one.png"), ["is one image"]),
        (lambda t: (t / "empty").mkdir() or t / "empty", ["holds no files"]),
        (
            lambda t: _save(_noise(1), t / "ds" / "train" / "a" / "x.png").parents[2]
            if _save(_noise(2), t / "ds" / "val" / "a" / "y.png")
            else None,
            ["look like splits", "data.train"],
        ),
    ],
    ids=["missing folder", "no class subfolders", "a single image", "empty folder", "split folders"],
)
def test_whole_input_problems_raise_data_error(tmp_path, build, expected):
    with pytest.raises(DataError) as err:
        load_and_validate(build(tmp_path), IMG)
    for part in expected:
        assert part in str(err.value)


def test_table_without_the_image_column_says_what_it_found(tmp_path):
    table = tmp_path / "t.csv"
    table.write_text("images,label\na.png,x\n")
    with pytest.raises(DataError) as err:
        load_and_validate(table, IMG)
    message = str(err.value)
    assert "data.image_column is 'image'" in message and "did you mean 'images'" in message
    assert "Columns found: ['images', 'label']" in message


def test_reasons_are_exported_in_rule_order():
    assert IMAGE_REASONS.index("missing_file") < IMAGE_REASONS.index("truncated")
    assert {"too_small", "extreme_aspect", "too_large", "animated", "unsupported_mode", "bad_path"} <= set(
        IMAGE_REASONS
    )
