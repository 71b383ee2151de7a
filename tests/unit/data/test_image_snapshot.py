"""Image rows after loading: snapshots copy every image into the store's content-addressed folder (the id covers
the bytes, not where the files live), and split, merge, leakage against earlier data, replay and diff work on
image rows with the image's bytes as identity."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import imagehash
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from PIL import Image, ImageFilter

from keepfit.config import KeepfitConfig
from keepfit.data.diff import diff_snapshots
from keepfit.data.merge import identity_for, leakage_against_earlier, merge_new_rows, replay_sample
from keepfit.data.snapshot import create_snapshot, load_snapshot
from keepfit.data.split import split_frame
from keepfit.errors import DataError
from keepfit.store import Store
from keepfit.types import IMAGE_CLASSIFICATION, IMAGE_SHA, SPLITS

CONFIG = KeepfitConfig.model_validate({"task": IMAGE_CLASSIFICATION})


def _picture(seed: int, size: int = 64) -> Image.Image:
    noise = np.random.default_rng(seed).integers(0, 256, size=(size // 8, size // 8, 3), dtype=np.uint8)
    return Image.fromarray(noise).resize((size, size), Image.BICUBIC).filter(ImageFilter.GaussianBlur(2))


def _folder(root: Path, n: int = 12, seed: int = 0) -> Path:
    """``n`` pictures, alternately in ``ok/`` and ``crack/``; the same seed draws the same pictures."""
    for i in range(n):
        label = "crack" if i % 2 else "ok"
        (root / label).mkdir(parents=True, exist_ok=True)
        _picture(seed * 1000 + i).save(root / label / f"cell{i:02d}.png")
    return root


def _rows(root: Path, files: list[Path] | None = None, source: str = "cells") -> pd.DataFrame:
    """The canonical image rows of the loader's contract, for the images under ``root``."""
    files = files if files is not None else sorted(root.rglob("*.png"))
    return pd.DataFrame(
        {
            "row": np.arange(1, len(files) + 1),
            "source": source,
            "text": [p.relative_to(root).as_posix() for p in files],
            "image": [str(p) for p in files],
            "image_sha": [hashlib.sha256(p.read_bytes()).hexdigest() for p in files],
            "image_phash": [str(imagehash.phash(Image.open(p).convert("RGB"))) for p in files],
            "label": [p.parent.name for p in files],
        }
    )


def _split(frame: pd.DataFrame) -> pd.DataFrame:
    n = len(frame)
    return frame.assign(split=["train"] * (n - 4) + ["validation"] * 2 + ["test"] * 2)


def _snap(frame: pd.DataFrame, store: Store, **kw: object):
    return create_snapshot(_split(frame), quarantine=None, config=CONFIG, store=store, **kw)


def test_the_same_images_from_two_folders_and_stores_get_one_id(tmp_path: Path):
    a = _snap(_rows(_folder(tmp_path / "one" / "cells")), Store.at(tmp_path / "store1"))
    b = _snap(_rows(_folder(tmp_path / "two" / "cells")), Store.at(tmp_path / "store2"))
    assert a.id == b.id
    stored = pq.read_table(a.path / "train.parquet").to_pandas()
    sha = stored["image_sha"].iat[0]
    assert stored["image"].iat[0] == f"images/{sha[:2]}/{sha}.png"  # relative to the store root
    assert a.labels == ["crack", "ok"]


def test_changing_one_images_bytes_changes_the_id(tmp_path: Path):
    root = _folder(tmp_path / "cells")
    before = _snap(_rows(root), Store.at(tmp_path / "store"))
    _picture(999).save(root / "ok" / "cell00.png")  # same path, other bytes
    after = _snap(_rows(root), Store.at(tmp_path / "store"))
    assert after.id != before.id
    assert before.train["text"].tolist() == after.train["text"].tolist()


def test_loaded_paths_exist_hold_the_recorded_bytes_and_outlive_the_originals(tmp_path: Path):
    root = _folder(tmp_path / "cells")
    store = Store.at(tmp_path / "store")
    snap = _snap(_rows(root), store)
    shutil.rmtree(root)
    loaded = load_snapshot(store, snap.id)
    rows = pd.concat([loaded.split(name) for name in SPLITS], ignore_index=True)
    assert len(rows) == 12
    for image, sha in zip(rows["image"], rows["image_sha"], strict=True):
        path = Path(image)
        assert path.is_absolute() and path.is_relative_to(store.root / "images")
        assert hashlib.sha256(path.read_bytes()).hexdigest() == sha
    assert not list((store.root / "images").rglob(".tmp-*"))
    # storing the loaded rows again (what an update does with the earlier splits) needs no original: same id
    again = create_snapshot({n: loaded.split(n) for n in SPLITS}, quarantine=None, config=CONFIG, store=store)
    assert again.id == snap.id


def test_an_image_changed_since_the_check_is_refused_before_anything_is_written(tmp_path: Path):
    root = _folder(tmp_path / "cells")
    rows = _rows(root)
    _picture(12345).save(root / "crack" / "cell01.png")  # edited after the check recorded its hash
    store = Store.at(tmp_path / "store")
    with pytest.raises(DataError, match=r"cell01.png changed since it was checked"):
        _snap(rows, store)
    assert not store.snapshots.exists() or not any(store.snapshots.iterdir())
    assert not list((store.root / "images").rglob(".tmp-*"))


def test_a_stratified_split_of_image_rows_spreads_every_label(tmp_path: Path):
    frame = _rows(_folder(tmp_path / "cells", n=40))
    result = split_frame(frame, CONFIG)
    assert result.method == "stratified"
    counts = result.frame.groupby(["split", "label"]).size()
    assert all(counts[(name, label)] >= 1 for name in SPLITS for label in ("ok", "crack"))
    assert len(result.frame) == 40


def test_new_images_are_matched_to_earlier_ones_by_their_bytes(tmp_path: Path):
    store = Store.at(tmp_path / "store")
    old = _snap(_rows(_folder(tmp_path / "week1" / "cells")), store)
    assert identity_for(IMAGE_CLASSIFICATION) == IMAGE_SHA
    week2 = tmp_path / "week2"
    (week2 / "ok").mkdir(parents=True)
    (week2 / "crack").mkdir()
    ok_images = old.train.loc[old.train["label"] == "ok", "image"].tolist()
    renamed = week2 / "ok" / "renamed.png"
    renamed.write_bytes(Path(ok_images[0]).read_bytes())  # an earlier ok image under another name
    relabelled = week2 / "crack" / "was_ok.png"
    relabelled.write_bytes(Path(ok_images[1]).read_bytes())  # an earlier ok image, now called crack
    fresh = week2 / "ok" / "new.png"
    _picture(777).save(fresh)
    new = _rows(week2, [renamed, relabelled, fresh], source="week2")
    merged = merge_new_rows(old, new)
    assert merged.new_rows["text"].tolist() == ["ok/new.png"]
    assert merged.duplicates["reason"].tolist() == ["duplicate_of_earlier", "conflicts_with_earlier"]
    assert "same image (same bytes) and label" in merged.duplicates["detail"].iat[0]
    assert "this image is an earlier train row labelled ok, here crack" in merged.duplicates["detail"].iat[1]


def test_a_new_near_copy_of_an_earlier_test_image_is_kept_out_of_training(tmp_path: Path):
    store = Store.at(tmp_path / "store")
    old = _snap(_rows(_folder(tmp_path / "week1" / "cells")), store)
    earlier = {name: old.split(name) for name in SPLITS}
    test_image = Path(old.test["image"].iat[0])
    week2 = tmp_path / "week2"
    (week2 / "ok").mkdir(parents=True)
    img = Image.open(test_image)
    img.crop((1, 1, img.width - 1, img.height - 1)).resize((48, 48)).save(week2 / "ok" / "near.jpg", quality=85)
    _picture(4242).save(week2 / "ok" / "other.png")
    new = _rows(week2, [week2 / "ok" / "near.jpg", week2 / "ok" / "other.png"], source="week2").assign(
        split="train"
    )
    kept, quarantined = leakage_against_earlier(earlier, new, CONFIG)
    assert kept["text"].tolist() == ["ok/other.png"]
    assert quarantined["reason"].tolist() == ["leakage"]
    assert "nearly copies an earlier test row" in quarantined["detail"].iat[0]
    assert old.test["text"].iat[0] in quarantined["detail"].iat[0]


def test_replay_and_diff_work_on_image_snapshots(tmp_path: Path):
    store = Store.at(tmp_path / "store")
    a = _snap(_rows(_folder(tmp_path / "week1" / "cells", n=20)), store)
    replay = replay_sample(a.train, 6, IMAGE_CLASSIFICATION, seed=0)
    assert len(replay) == 6 and set(replay["label"]) == {"ok", "crack"}
    # b: the same images, one relabelled, one gone, one renamed (same bytes: not a new row)
    rows = pd.concat([a.split(n) for n in SPLITS], ignore_index=True).drop(columns="split")
    rows.loc[0, "label"] = "crack" if rows.loc[0, "label"] == "ok" else "ok"
    rows.loc[1, "text"] = "ok/renamed.png"
    b = _snap(rows.iloc[:-1].reset_index(drop=True), store)
    diff = diff_snapshots(a, b)
    assert (diff.added, diff.removed, diff.relabelled) == (0, 1, 1)
    assert diff.length_test == {}  # ``text`` is a path: no text length to compare
