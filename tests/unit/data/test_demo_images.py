"""The image demo's generator: seeded and reproducible, the counts it says, every planted problem really there."""

from __future__ import annotations

import hashlib
from pathlib import Path

import imagehash
import numpy as np
import pytest
import torch
from PIL import Image, UnidentifiedImageError

from keepfit.data.demo_images import (
    CARELESS_SWAP,
    MIN_PHASH_DISTANCE,
    NEAR_DUPLICATE_SCALE,
    NEW_CLASS,
    SIZE_RANGE,
    WEEK1_CLASSES,
    render_photo,
    write_image_demo,
)
from keepfit.data.images import open_rgb

torch.set_num_threads(1)

EXPECTED_PLANTED = {
    "truncated": 2,
    "not_an_image": 1,
    "empty_file": 1,
    "too_small": 1,
    "animated": 1,
    "exact_duplicates": 3,
    "conflicting_duplicates": 2,
    "near_duplicates": 1,
    "cmyk_converted": 1,
    "wrong_extension": 1,
}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return write_image_demo(tmp_path_factory.mktemp("demo") / "data", seed=0, small=True)


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _generated(demo, week: str) -> list[Path]:
    """The generated photos of a week (planted files excluded)."""
    root = demo[week]
    planted = {root / rel for rels in demo["planted_files"].values() for rel in rels} if week == "week1" else set()
    # the conflicting pair lists its original photo too: that one is a generated photo
    planted -= {root / demo["planted_files"]["conflicting_duplicates"][0]}
    return [p for p in sorted(root.rglob("*")) if p.is_file() and p not in planted]


def _phash(path: Path) -> int:
    return int(str(imagehash.phash(open_rgb(path))), 16)


def test_the_same_seed_writes_the_same_files_byte_for_byte(demo, tmp_path):
    again = write_image_demo(tmp_path / "again", seed=0, small=True)
    for week in ("week1", "week2", "careless"):
        first, second = _files(demo[week]), _files(again[week])
        assert list(first) == list(second)
        assert first == second, f"{week}: bytes differ"
    assert again["planted_files"] == demo["planted_files"]


def test_the_photos_are_drawn_from_the_generator_they_are_given():
    a = np.asarray(render_photo("dent", np.random.default_rng(1)))
    assert np.array_equal(a, np.asarray(render_photo("dent", np.random.default_rng(1))))
    b = np.asarray(render_photo("dent", np.random.default_rng(2)))
    assert a.shape != b.shape or not np.array_equal(a, b)
    with pytest.raises(ValueError, match="label must be one of"):
        render_photo("rust", np.random.default_rng(0))


def test_class_counts_per_week(demo):
    assert demo["counts"]["week1"] == dict.fromkeys(WEEK1_CLASSES, 50)
    assert demo["counts"]["week2"] == {**dict.fromkeys(WEEK1_CLASSES, 20), NEW_CLASS: 40}
    assert demo["classes_week2"] == sorted([*WEEK1_CLASSES, NEW_CLASS])
    for week in ("week1", "week2", "careless"):
        found: dict[str, int] = {}
        for path in _generated(demo, week):
            found[path.parent.name] = found.get(path.parent.name, 0) + 1
        assert found == demo["counts"][week], week
    assert not (demo["week1"] / NEW_CLASS).exists()


def test_every_planted_kind_is_there_with_its_count(demo):
    assert demo["planted"] == EXPECTED_PLANTED
    files = {kind: [demo["week1"] / rel for rel in rels] for kind, rels in demo["planted_files"].items()}
    assert {kind: len(paths) for kind, paths in files.items()} == EXPECTED_PLANTED
    for path in files["truncated"]:
        with Image.open(path) as img:  # the header reads ...
            assert img.format == "JPEG"
            with pytest.raises(OSError):
                img.load()  # ... the pixels do not
    for path in files["not_an_image"]:
        with pytest.raises(UnidentifiedImageError):
            Image.open(path)
    assert [p.stat().st_size for p in files["empty_file"]] == [0]
    for path in files["too_small"]:
        with Image.open(path) as img:
            assert img.size == (1, 1)
    for path in files["animated"]:
        with Image.open(path) as img:
            assert img.format == "GIF" and img.n_frames == 3
    for path in files["cmyk_converted"]:
        with Image.open(path) as img:
            assert (img.format, img.mode) == ("JPEG", "CMYK")
        assert open_rgb(path).mode == "RGB"
    for path in files["wrong_extension"]:
        with Image.open(path) as img:
            assert path.suffix == ".jpg" and img.format == "PNG"


def test_duplicates_are_copies_of_generated_photos(demo):
    week1 = demo["week1"]
    by_sha: dict[str, list[Path]] = {}
    for path in sorted(week1.rglob("*")):
        if path.is_file() and path.stat().st_size:
            by_sha.setdefault(hashlib.sha256(path.read_bytes()).hexdigest(), []).append(path)
    copies = {tuple(p.relative_to(week1).as_posix() for p in paths) for paths in by_sha.values() if len(paths) > 1}
    assert len(copies) == 4  # three same-class copies, one photo filed under two classes
    exact = set(demo["planted_files"]["exact_duplicates"])
    conflicting = tuple(demo["planted_files"]["conflicting_duplicates"])
    for pair in copies:
        assert len(pair) == 2
        classes = {rel.split("/")[0] for rel in pair}
        if pair == tuple(sorted(conflicting)) or set(pair) == set(conflicting):
            assert classes == {"ok", "dent"}
        else:
            assert len(classes) == 1 and len(exact & set(pair)) == 1
    assert sum(len(exact & set(pair)) for pair in copies) == 3


def test_the_near_duplicate_is_close_to_its_original_and_nothing_else_is(demo):
    week1 = demo["week1"]
    near = week1 / demo["planted_files"]["near_duplicates"][0]
    photos = [p for p in _generated(demo, "week1") if p.parent == near.parent]
    distances = {p: bin(_phash(p) ^ _phash(near)).count("1") for p in photos}
    original = min(distances, key=distances.get)
    assert distances[original] <= 4 < sorted(distances.values())[1]
    assert original.read_bytes() != near.read_bytes()
    with Image.open(original) as a, Image.open(near) as b:
        assert b.size == (round(a.width * NEAR_DUPLICATE_SCALE), round(a.height * NEAR_DUPLICATE_SCALE))
    # no photo is a near-duplicate of another by chance, within a week or across the weeks
    everything = [p for week in ("week1", "week2", "careless") for p in _generated(demo, week)]
    everything += [week1 / rel for kind in ("cmyk_converted", "wrong_extension") for rel in demo["planted_files"][kind]]
    hashes = np.array([_phash(p) for p in everything], dtype=np.uint64)
    apart = np.bitwise_count(hashes[:, None] ^ hashes[None, :])
    np.fill_diagonal(apart, 64)
    assert int(apart.min()) >= MIN_PHASH_DISTANCE


def test_careless_files_two_classes_under_each_other(demo):
    a, b = CARELESS_SWAP
    assert demo["swapped"] == CARELESS_SWAP
    careless = demo["careless"]
    for folder in sorted(p for p in careless.iterdir() if p.is_dir()):
        drawn = {p.name.split("_")[0] for p in folder.iterdir()}
        assert drawn == {{a: b, b: a}.get(folder.name, folder.name)}, folder.name
    assert demo["swapped_count"] == demo["counts"]["careless"][a] + demo["counts"]["careless"][b] == 40
    # fresh photos, not week 2's filed again
    assert not set(_files(careless).values()) & set(_files(demo["week2"]).values())


def test_photos_decode_to_the_sizes_said_in_both_formats(demo):
    for week in ("week1", "week2", "careless"):
        formats = set()
        for path in _generated(demo, week):
            with Image.open(path) as img:
                formats.add((img.format, path.suffix))
                img.load()
            rgb = open_rgb(path)
            assert rgb.mode == "RGB"
            assert all(SIZE_RANGE[0] <= side <= SIZE_RANGE[1] for side in rgb.size), (path, rgb.size)
        assert formats == {("PNG", ".png"), ("JPEG", ".jpg")}, week
