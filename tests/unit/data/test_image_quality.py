"""Quality checks on image rows: identity is the image's bytes (exact duplicates and conflicts by content, whatever
the file name), near-duplicates and leakage by the Hamming distance of the 64-bit perceptual hashes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import imagehash
import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageFilter

from keepfit.config import KeepfitConfig
from keepfit.data import quality
from keepfit.data.quality import (
    ConflictingLabels,
    ExactDuplicates,
    Leakage,
    NearDuplicates,
    check_leakage,
    nearest_by_phash,
    phash_bits,
    run_quality,
)
from keepfit.types import IMAGE_CLASSIFICATION


def _config(**quality_settings: object) -> KeepfitConfig:
    return KeepfitConfig.model_validate({"task": IMAGE_CLASSIFICATION, "quality": quality_settings})


def _picture(seed: int, size: int = 96) -> Image.Image:
    """A smooth random picture (blurred noise): structure a perceptual hash can see."""
    noise = np.random.default_rng(seed).integers(0, 256, size=(size // 8, size // 8, 3), dtype=np.uint8)
    return Image.fromarray(noise).resize((size, size), Image.BICUBIC).filter(ImageFilter.GaussianBlur(2))


def _save(img: Image.Image, path: Path, **kw: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **kw)
    return path


def _near_copy(source: Path, target: Path) -> Path:
    """A trimmed (1 pixel each side), downsized, JPEG re-encoded copy: other bytes, nearly the same picture."""
    img = Image.open(source)
    w, h = img.size
    return _save(img.crop((1, 1, w - 1, h - 1)).resize((72, 72), Image.LANCZOS), target, quality=85)


def _rows(root: Path, files: list[tuple[Path, str]], split: list[str] | None = None) -> pd.DataFrame:
    """The canonical image rows (the loader's contract) for files given as (path, label)."""
    out = pd.DataFrame(
        {
            "row": np.arange(1, len(files) + 1),
            "source": root.name,
            "text": [p.relative_to(root).as_posix() for p, _ in files],
            "image": [str(p) for p, _ in files],
            "image_sha": [hashlib.sha256(p.read_bytes()).hexdigest() for p, _ in files],
            "image_phash": [str(imagehash.phash(Image.open(p).convert("RGB"))) for p, _ in files],
            "label": [label for _, label in files],
        }
    )
    if split is not None:
        out["split"] = split
    return out


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "cells"
    for i in range(4):
        _save(_picture(i), root / ("crack" if i % 2 else "ok") / f"cell{i}.png")
    return root


def test_same_bytes_under_another_name_is_an_exact_duplicate(folder: Path):
    copy = folder / "ok" / "renamed.png"
    copy.write_bytes((folder / "ok" / "cell0.png").read_bytes())
    frame = _rows(folder, [(folder / "ok/cell0.png", "ok"), (folder / "crack/cell1.png", "crack"), (copy, "ok")])
    finding = ExactDuplicates().run(frame, _config())
    assert finding.flagged.tolist() == [2]
    assert finding.flag_detail == ["same image as row 1 (ok/cell0.png)"]
    assert finding.examples[0]["text"] == "ok/renamed.png" and finding.examples[0]["same_as_row"] == 1
    outcome = run_quality(frame, _config())
    assert outcome.kept["text"].tolist() == ["ok/cell0.png", "crack/cell1.png"]
    assert outcome.quarantine["reason"].tolist() == ["duplicate"]
    assert len(outcome.kept) + len(outcome.quarantine) == len(frame)


def test_the_same_image_with_two_labels_is_a_conflict_and_every_copy_goes(folder: Path):
    copy = folder / "crack" / "also_cell0.png"
    copy.write_bytes((folder / "ok" / "cell0.png").read_bytes())
    frame = _rows(folder, [(folder / "ok/cell0.png", "ok"), (folder / "crack/cell1.png", "crack"), (copy, "crack")])
    finding = ConflictingLabels().run(frame, _config())
    assert finding.flagged.tolist() == [0, 2]
    assert finding.examples[0]["labels"] == ["crack", "ok"] and finding.examples[0]["rows"] == [1, 3]
    assert "2 rows (1 images) carry conflicting labels" in finding.summary
    outcome = run_quality(frame, _config())
    assert outcome.kept["text"].tolist() == ["crack/cell1.png"]
    assert sorted(outcome.quarantine["reason"]) == ["conflicting_labels", "conflicting_labels"]


def test_a_resized_reencoded_copy_is_a_near_duplicate_and_another_picture_is_not(folder: Path):
    original = folder / "ok" / "cell0.png"
    small = _near_copy(original, folder / "ok" / "cell0_small.jpg")
    frame = _rows(folder, [(original, "ok"), (folder / "crack/cell1.png", "crack"), (small, "ok"),
                           (folder / "ok/cell2.png", "ok")])
    bits, valid = phash_bits(frame["image_phash"])
    assert valid.all()
    distance = int(np.bitwise_count(bits[0] ^ bits[2]))
    assert 1 <= distance <= 4  # the premise: the copy moves the hash, a little
    assert min(int(np.bitwise_count(bits[0] ^ bits[k])) for k in (1, 3)) > 12  # other pictures are far
    finding = NearDuplicates().run(frame, _config(near_duplicates="drop"))
    assert finding.flagged.tolist() == [2]
    assert finding.details["method"] == "phash"
    example = finding.examples[0]
    assert (example["text"], example["similar_text"], example["distance"]) == (
        "ok/cell0_small.jpg", "ok/cell0.png", distance)
    assert finding.flag_detail[0] == f"near-duplicate of row 1 (perceptual hashes {distance} of 64 bits apart)"
    # the tolerance is in bits: one bit short of the distance, the copy is another picture
    strict = NearDuplicates().run(frame, _config(image_near_duplicate_distance=distance - 1))
    assert strict.count == 0


def test_near_duplicates_are_looked_for_within_a_split_only(folder: Path):
    original = folder / "ok" / "cell0.png"
    small = _near_copy(original, folder / "ok" / "cell0_small.jpg")
    frame = _rows(folder, [(original, "ok"), (small, "ok")], split=["train", "test"])
    assert NearDuplicates().run(frame, _config()).count == 0


def test_leakage_across_splits_quarantines_the_training_copy(folder: Path):
    test_image = folder / "ok" / "cell0.png"
    near = _near_copy(test_image, folder / "ok" / "cell0_small.jpg")
    same = folder / "ok" / "cell0_again.png"
    same.write_bytes(test_image.read_bytes())
    files = [(test_image, "ok"), (near, "ok"), (same, "ok"), (folder / "crack/cell1.png", "crack"),
             (folder / "ok/cell2.png", "ok")]
    frame = _rows(folder, files, split=["test", "train", "validation", "train", "train"])
    finding = Leakage().run(frame, _config())
    assert finding.flagged.tolist() == [1, 2]
    assert finding.details["exact"] == 1 and finding.details["near"] == 1
    bits, _ = phash_bits(frame["image_phash"])
    distance = int(np.bitwise_count(bits[0] ^ bits[1]))
    assert finding.flag_detail[0] == (
        f"near-duplicate of test row 1 (ok/cell0.png), perceptual hash {distance} of 64 bits apart")
    assert finding.examples[0]["distance"] == distance and finding.examples[0]["leaks_into"] == "test"
    assert finding.flag_detail[1] == "same image as test row 1 (ok/cell0.png)"
    outcome = check_leakage(frame, _config())
    assert outcome.kept["text"].tolist() == ["ok/cell0.png", "crack/cell1.png", "ok/cell2.png"]
    assert outcome.quarantine["reason"].tolist() == ["leakage", "leakage"]
    assert outcome.quarantine["raw_text"].tolist() == ["ok/cell0_small.jpg", "ok/cell0_again.png"]


def _nearest_by_loop(bits: np.ndarray, query, index, max_distance: int, earlier_only: bool) -> dict:
    out = {}
    for q in query:
        ds = [(bin(int(bits[q]) ^ int(bits[i])).count("1"), int(i)) for i in index if not earlier_only or i < q]
        if ds and min(ds)[0] <= max_distance:
            d, i = min(ds)
            out[int(q)] = (i, 1 - d / 64)
    return out


def test_the_chunked_hamming_search_agrees_with_a_plain_loop(monkeypatch):
    rng = np.random.default_rng(7)
    base = rng.integers(0, 2**63, size=40, dtype=np.uint64)
    flips = np.uint64(1) << rng.integers(0, 64, size=40).astype(np.uint64)
    bits = np.concatenate([base, base ^ flips, rng.integers(0, 2**63, size=20, dtype=np.uint64)])
    bits[rng.permutation(len(bits))] = bits.copy()  # near pairs in any order
    monkeypatch.setattr(quality, "_PHASH_CHUNK_CELLS", 37)  # many blocks of a few query rows
    positions = np.arange(len(bits))
    within = nearest_by_phash(bits, positions, positions, 3, earlier_only=True)
    assert within == _nearest_by_loop(bits, positions, positions, 3, True) and len(within) >= 30
    query, index = positions[::3], np.setdiff1d(positions, positions[::3])
    across = nearest_by_phash(bits, query, index, 3)
    assert across == _nearest_by_loop(bits, query, index, 3, False) and len(across) >= 5


def test_malformed_hashes_take_no_part():
    bits, valid = phash_bits(pd.Series(["ffffffffffffffff", None, "xyz", "0000000000000001"]))
    assert valid.tolist() == [True, False, False, True]
    assert bits[[0, 3]].tolist() == [2**64 - 1, 1]
