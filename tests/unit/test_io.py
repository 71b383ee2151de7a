import os
from pathlib import Path

import pytest

from keepfit._io import atomic_dir, atomic_write_text


def test_atomic_write_replaces_whole_file(tmp_path: Path):
    target = tmp_path / "a" / "f.txt"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two"
    assert [p.name for p in target.parent.iterdir()] == ["f.txt"]


def test_atomic_dir_leaves_nothing_on_error(tmp_path: Path):
    target = tmp_path / "snap"
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "half.parquet").write_text("x")
            raise RuntimeError("killed midway")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_dir_publishes_complete_folder_and_overwrites_only_when_asked(tmp_path: Path):
    target = tmp_path / "snap"
    with atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("1")
    assert (target / "a.txt").read_text() == "1"
    with pytest.raises(FileExistsError):
        with atomic_dir(target) as tmp:
            (tmp / "a.txt").write_text("2")
    with atomic_dir(target, overwrite=True) as tmp:
        (tmp / "b.txt").write_text("2")
    assert sorted(os.listdir(target)) == ["b.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["snap"]
