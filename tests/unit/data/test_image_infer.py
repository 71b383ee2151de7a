"""`keepfit init` on images: a folder of class subfolders, or a table with a column of image paths, makes an
image-classification config that loads back."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from keepfit.config import KeepfitConfig, load_config
from keepfit.data.infer import infer, render_config_yaml, write_config_file
from keepfit.errors import DataError
from keepfit.types import IMAGE_CLASSIFICATION


def _image(path: Path, colour: tuple[int, int, int] = (200, 40, 40)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 40), colour).save(path)
    return path


def _class_folder(root: Path) -> Path:
    for i in range(3):
        _image(root / "crack" / f"c{i}.png")
    for i in range(2):
        _image(root / "ok" / "batch1" / f"o{i}.jpg")  # images deeper down count for their class
    (root / "notes").mkdir(parents=True)
    (root / "notes" / "readme.txt").write_text("no images here")
    (root / ".cache").mkdir()
    _image(root / ".cache" / "thumb.png")  # hidden folders are not classes
    return root


def test_a_folder_of_class_subfolders_is_image_classification(tmp_path: Path):
    root = _class_folder(tmp_path / "cells")
    found = infer(root)
    assert found.config.task == IMAGE_CLASSIFICATION
    assert Path(found.config.data.train) == root
    assert found.labels == ["crack", "ok"]  # most images first
    assert found.config.model.name == "efficientnet-lite0"
    assert "2 subfolder(s), one per class (5 image files" in found.notes[0]
    assert any(n.startswith("labels found (the subfolders, 2, with image counts): crack (3), ok (2)")
               for n in found.notes)


def test_the_written_config_loads_back_with_the_folder_relative_to_it(tmp_path: Path):
    root = _class_folder(tmp_path / "data" / "cells")
    found = infer(root)
    text = render_config_yaml(found.config, found.notes, base=tmp_path, label_names=found.labels)
    assert "task: image-classification" in text
    assert "train: data/cells  # a folder of images, one subfolder per class" in text
    target = write_config_file(found.config, found.notes, tmp_path / "keepfit.yaml", label_names=found.labels)
    loaded = load_config(target)
    assert loaded.task == IMAGE_CLASSIFICATION
    assert Path(loaded.data.train).resolve() == root.resolve()
    assert KeepfitConfig.model_validate(loaded.model_dump()).task == IMAGE_CLASSIFICATION


def test_a_table_with_a_column_of_image_paths_is_image_classification(tmp_path: Path):
    rows = []
    for i in range(30):
        label = ["scratch", "dent", "clean"][i % 3]
        rows.append({"id": i, "file": f"imgs/{label}_{i}.PNG", "defect": label, "note": f"shot {i}"})
        _image(tmp_path / "imgs" / f"{label}_{i}.PNG")
    rows[0]["file"] = "imgs/missing.txt"  # mostly, not all
    table = tmp_path / "parts.csv"
    pd.DataFrame(rows).to_csv(table, index=False)
    found = infer(table)
    assert found.config.task == IMAGE_CLASSIFICATION
    assert (found.config.data.image_column, found.config.data.label_column) == ("file", "defect")
    assert sorted(found.labels) == ["clean", "dent", "scratch"]
    image_note = next(n for n in found.notes if n.startswith("image column"))
    assert "97% of its values end in an image extension; 29 of the first 30 name existing files" in image_note
    target = write_config_file(found.config, found.notes, tmp_path / "keepfit.yaml")
    loaded = load_config(target)
    assert (loaded.task, loaded.data.image_column, loaded.data.label_column) == (IMAGE_CLASSIFICATION, "file",
                                                                                 "defect")
    assert "image_column: file  # image column: 'file'" in target.read_text()


def test_a_given_label_column_is_used_for_an_image_table(tmp_path: Path):
    rows = [{"path": f"p{i}.jpg", "kind": "ab"[i % 2], "grade": "xyz"[i % 3]} for i in range(12)]
    table = tmp_path / "t.parquet"
    pd.DataFrame(rows).to_parquet(table)
    found = infer(table, label_column="grade")
    assert (found.config.task, found.config.data.label_column) == (IMAGE_CLASSIFICATION, "grade")


def test_text_tables_and_image_less_folders_stay_what_they_were(tmp_path: Path):
    rows = [{"text": f"please help with order {i} today", "label": "ab"[i % 2]} for i in range(20)]
    pd.DataFrame(rows).to_csv(tmp_path / "t.csv", index=False)
    assert infer(tmp_path / "t.csv").config.task == "single-label"
    empty = tmp_path / "nothing"
    (empty / "a").mkdir(parents=True)
    (empty / "a" / "x.txt").write_text("x")
    with pytest.raises(DataError, match="holds no images in subfolders"):
        infer(empty, task=IMAGE_CLASSIFICATION)
    with pytest.raises(DataError, match="has no column of image paths"):
        infer(tmp_path / "t.csv", task=IMAGE_CLASSIFICATION)
