"""Data snapshots: the cleaned, split data of one version, stored under its content hash.

A snapshot folder ``<store>/snapshots/<sha256>/`` holds ``train.parquet``, ``validation.parquet``,
``test.parquet``, ``quarantine.parquet`` and ``quarantine.csv`` (for people), ``report.json``, ``report.html``
and ``meta.json`` (task, labels, counts, config hash, sources, created time, parent). The folder is
written with
:func:`keepfit._io.atomic_dir`, so a kill mid-write leaves nothing half-made. The id is a SHA-256 over the
canonical content (every row of every split and of the quarantine, in an order-independent way), so the same
data always gets the same id and snapshotting it again reuses the folder. ``snapshots/HEAD`` names the newest.

Image rows (image-classification) are stored with their images: every distinct image is copied once into the
store's content-addressed folder ``<store>/images/<sha[:2]>/<sha><suffix>`` (checked against its recorded
SHA-256 while it is copied), and the parquet files hold ``image`` as that path relative to the store root. So
the id depends on the images' bytes (``image_sha``) and not on where the store or the user's files live, and the
snapshot stays usable when the originals move or vanish. Reading turns ``image`` back into an absolute path.
The quarantine keeps the paths the rows came with (its images are not copied).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)
import pyarrow.parquet as pq

from keepfit._io import atomic_dir, atomic_write_text
from keepfit.config import KeepfitConfig, config_hash
from keepfit.data.report import render_html
from keepfit.data.validate import QUARANTINE_COLUMNS
from keepfit.errors import DataError
from keepfit.store import Store
from keepfit.types import IMAGE, IMAGE_SHA, LABEL, LABELS, SPLIT, SPLITS, Snapshot, Task, is_generation

__all__ = [
    "SnapshotInfo",
    "create_snapshot",
    "load_snapshot",
    "set_head",
    "ancestors",
    "list_snapshots",
    "resolve_snapshot_id",
    "content_hash",
    "FORMAT_VERSION",
]

FORMAT_VERSION = 1
_FILES = (
    "train.parquet",
    "validation.parquet",
    "test.parquet",
    "quarantine.parquet",
    "quarantine.csv",
    "report.json",
    "report.html",
    "meta.json",
)


@dataclass(frozen=True)
class SnapshotInfo:
    """One line of ``keepfit data list``: id, when, counts, parent."""

    id: str
    created: str
    task: str
    counts: dict[str, int]
    parent: str | None
    sources: list[str]


# ------------------------------------------------------------------------------------------------ hashing


def _column_hash(col: pd.Series, name: str) -> np.ndarray:
    """A uint64 hash per value that depends on the value only (not on the dtype that holds it)."""
    if name == LABELS:
        col = col.map(lambda v: "\x1f".join(sorted(str(x) for x in v)))
    elif pd.api.types.is_bool_dtype(col) or pd.api.types.is_numeric_dtype(col):
        return pd.util.hash_array(col.to_numpy(dtype=np.float64, na_value=np.nan))
    elif not (pd.api.types.is_string_dtype(col) or pd.api.types.is_object_dtype(col)):
        col = col.astype(str)
    try:
        arr = pa.array(col, from_pandas=True)
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks()
        arr = pa.compute.cast(arr, pa.large_string())
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        arr = pa.array(col.map(lambda v: None if v is None or v is pd.NA else str(v)), type=pa.large_string())
    encoded = arr.dictionary_encode(null_encoding="encode")
    # hash each distinct value once, then spread: equal to hashing every row, at a fraction of the cost
    uniques = np.asarray(encoded.dictionary.to_pylist(), dtype=object)
    uniques[pd.isna(uniques)] = "\x00<NA>"
    unique_hash = pd.util.hash_array(uniques, categorize=False)
    return unique_hash[encoded.indices.to_numpy(zero_copy_only=False)]


def _frame_digest(frame: pd.DataFrame) -> bytes:
    """SHA-256 over the sorted per-row hashes: the same rows give the same digest in any order."""
    digest = hashlib.sha256()
    names = sorted(map(str, frame.columns))
    digest.update(json.dumps(names).encode())
    if len(frame):
        rows = np.zeros(len(frame), dtype=np.uint64)
        with np.errstate(over="ignore"):
            for name in names:
                rows = rows * np.uint64(0x100000001B3) ^ _column_hash(frame[name], name)
        digest.update(np.sort(rows).tobytes())
    digest.update(str(len(frame)).encode())
    return digest.digest()


def content_hash(
    frames: dict[str, pd.DataFrame], quarantine: pd.DataFrame, task: Task, labels: list[str]
) -> str:
    """The snapshot id: SHA-256 (hex) over task, labels, and the canonical content of every split and the
    quarantine."""
    digest = hashlib.sha256()
    digest.update(json.dumps({"format": FORMAT_VERSION, "task": task, "labels": list(labels)}).encode())
    for name in SPLITS:
        digest.update(name.encode())
        digest.update(_frame_digest(frames[name].drop(columns=[SPLIT], errors="ignore")))
    digest.update(b"quarantine")
    digest.update(_frame_digest(quarantine[[c for c in QUARANTINE_COLUMNS if c in quarantine]]))
    return digest.hexdigest()


# ------------------------------------------------------------------------------------------------ images

IMAGES_DIR = "images"
_COPY_CHUNK = 1 << 20


def image_key(sha: str, original: str | Path) -> str:
    """The store path of an image, relative to the store root: ``images/<sha[:2]>/<sha><suffix>`` (POSIX)."""
    return f"{IMAGES_DIR}/{sha[:2]}/{sha}{Path(str(original)).suffix.lower()}"


def _copy_verified(source: Path, target: Path, sha: str) -> None:
    """Copy ``source`` to ``target`` atomically (a temporary file in the same folder, then ``os.replace``),
    checking the bytes against ``sha`` on the way: a file changed since it was checked must not enter the
    store under the old hash. (A copy, not a hard link: editing the original in place must not change the
    snapshot.)"""
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out, source.open("rb") as f:
            while chunk := f.read(_COPY_CHUNK):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != sha:
            raise DataError(
                f"{source} changed since it was checked: its SHA-256 is {digest.hexdigest()[:12]}..., the check "
                f"recorded {sha[:12]}.... Run the data check again (or restore the file), then snapshot."
            )
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _store_images(frames: dict[str, pd.DataFrame], store: Store) -> dict[str, pd.DataFrame]:
    """Copy every distinct image of the split rows into the store (skipping those already there with the right
    size) and return the frames with ``image`` as the store path relative to the store root."""
    rows = pd.concat([f[[IMAGE, IMAGE_SHA]] for f in frames.values() if IMAGE in f], ignore_index=True)
    keys: dict[tuple[str, str], str] = {}
    for original, sha in rows.drop_duplicates().itertuples(index=False):
        key = image_key(sha, original)
        keys[(original, sha)] = key
        source, target = Path(original), store.root / key
        if target.exists() and (not source.exists() or target.stat().st_size == source.stat().st_size):
            continue  # stored before (an earlier snapshot's row points here already, or an original deleted since)
        if not source.exists():
            raise DataError(
                f"Image {source} (SHA-256 {sha[:12]}...) is gone and is not in the store either; expected the file "
                "the data check read. Restore it, or run the data check again without it."
            )
        _copy_verified(source, target, sha)
    return {
        name: frame.assign(**{IMAGE: [keys[(o, s)] for o, s in zip(frame[IMAGE], frame[IMAGE_SHA], strict=True)]})
        if IMAGE in frame
        else frame
        for name, frame in frames.items()
    }


def _absolute_images(frame: pd.DataFrame, store_root: Path) -> pd.DataFrame:
    """``image`` as an absolute path under the store root (parquet holds it relative to the root)."""
    if IMAGE not in frame:
        return frame
    return frame.assign(**{IMAGE: [str(store_root / rel) for rel in frame[IMAGE].astype(str)]})


# ------------------------------------------------------------------------------------------------ writing


def _as_frames(frames: dict[str, pd.DataFrame] | pd.DataFrame) -> dict[str, pd.DataFrame]:
    if isinstance(frames, pd.DataFrame):
        if SPLIT not in frames:
            raise DataError(
                "create_snapshot needs split rows: expected a 'split' column or a dict of splits."
            )
        return {name: frames[frames[SPLIT] == name].reset_index(drop=True) for name in SPLITS}
    if not frames:
        raise DataError("create_snapshot got no splits; expected train, validation and test tables.")
    empty = next(iter(frames.values())).iloc[0:0]
    return {name: frames.get(name, empty).reset_index(drop=True) for name in SPLITS}


def _labels_of(frames: dict[str, pd.DataFrame], task: Task, config: KeepfitConfig) -> list[str]:
    if task == "regression" or is_generation(task):
        return []
    if config.labels:
        return list(config.labels)
    seen: set[str] = set()
    for frame in frames.values():
        if task == "multi-label" and LABELS in frame:
            seen.update(str(x) for v in frame[LABELS] for x in v)
        elif LABEL in frame:
            seen.update(frame[LABEL].astype(str).unique())
    return sorted(seen)


def _write_parquet(frame: pd.DataFrame, path: Path) -> None:
    table = pa.Table.from_pandas(frame.reset_index(drop=True), preserve_index=False)
    pq.write_table(table, path)


def _normal_quarantine(quarantine: pd.DataFrame | None) -> pd.DataFrame:
    if quarantine is None or len(quarantine) == 0:
        return pd.DataFrame(
            {c: pd.Series([], dtype="int64" if c == "row" else object) for c in QUARANTINE_COLUMNS}
        )
    out = quarantine.reindex(columns=QUARANTINE_COLUMNS).copy()
    out["row"] = pd.to_numeric(out["row"], errors="coerce").fillna(-1).astype("int64")
    for c in QUARANTINE_COLUMNS[1:]:
        out[c] = out[c].astype(object).where(out[c].notna(), "").astype(str)
    return out.sort_values(["source", "row"], kind="stable").reset_index(drop=True)


def _head(store: Store) -> str | None:
    if store.head_file.exists():
        value = store.head_file.read_text(encoding="utf-8").strip()
        return value or None
    return None


def create_snapshot(
    frames: dict[str, pd.DataFrame] | pd.DataFrame,
    *,
    quarantine: pd.DataFrame | None,
    config: KeepfitConfig,
    store: Store,
    parent: str | None = None,
    report: dict[str, Any] | None = None,
    sources: list[str] | None = None,
    labels: list[str] | None = None,
    move_head: bool = True,
) -> Snapshot:
    """Store split rows (a dict of train/validation/test tables, or one table with a ``split`` column) and
    their quarantine as a snapshot; returns it. Identical content reuses the existing folder.

    ``parent`` defaults to the current HEAD (when it differs). HEAD is moved to the new snapshot atomically,
    unless ``move_head`` is false (an update moves HEAD itself once the snapshot proved trainable).
    """
    split_frames = _as_frames(frames)
    if any(IMAGE in f for f in split_frames.values()):
        split_frames = _store_images(split_frames, store)
    task: Task = config.task
    quarantine = _normal_quarantine(quarantine)
    labels = list(labels) if labels is not None else _labels_of(split_frames, task, config)
    snapshot_id = content_hash(split_frames, quarantine, task, labels)
    folder = store.snapshot(snapshot_id)
    head = _head(store)
    if parent is None and head != snapshot_id:
        parent = head
    if not folder.exists():
        report = dict(report or {})
        counts = {name: len(split_frames[name]) for name in SPLITS}
        counts["quarantine"] = len(quarantine)
        report.update({"snapshot": snapshot_id, "snapshot_counts": counts})
        n_kept = sum(counts[name] for name in SPLITS)
        report.setdefault("n_kept", n_kept)
        report.setdefault("n_quarantined", len(quarantine))
        report.setdefault("n_in", report["n_kept"] + report["n_quarantined"])
        report.setdefault("task", task)
        report.setdefault("sources", list(sources or []))
        meta = {
            "id": snapshot_id,
            "format": FORMAT_VERSION,
            "created": datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z"),
            "task": task,
            "labels": labels,
            "counts": counts,
            "config_hash": config_hash(config),
            "sources": list(sources if sources is not None else report.get("sources", [])),
            "parent": parent,
        }
        try:
            with atomic_dir(folder) as tmp:
                for name in SPLITS:
                    _write_parquet(split_frames[name], tmp / f"{name}.parquet")
                _write_parquet(quarantine, tmp / "quarantine.parquet")
                quarantine.to_csv(tmp / "quarantine.csv", index=False)
                (tmp / "report.json").write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")
                (tmp / "report.html").write_text(
                    render_html(report, title=f"keepfit snapshot {snapshot_id[:12]}"), encoding="utf-8"
                )
                (tmp / "meta.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
        except FileExistsError:
            pass  # written meanwhile by another process: same content, same id
    if move_head:
        set_head(store, snapshot_id)
    return load_snapshot(store, snapshot_id)


def set_head(store: Store, snapshot_id: str) -> None:
    """Point HEAD at an existing snapshot (atomically)."""
    if not (store.snapshot(snapshot_id) / "meta.json").exists():
        raise DataError(f"Cannot move HEAD to {snapshot_id[:12]}: no such snapshot in {store.snapshots}.")
    atomic_write_text(store.head_file, snapshot_id + "\n")


def ancestors(store: Store, snapshot_id: str) -> list[str]:
    """``snapshot_id`` and its parents, newest first (stops at a missing parent)."""
    chain, current = [], snapshot_id
    while current and current not in chain and (store.snapshot(current) / "meta.json").exists():
        chain.append(current)
        current = _meta(store, current).get("parent")
    return chain


# ------------------------------------------------------------------------------------------------ reading


def _ids(store: Store) -> list[str]:
    if not store.snapshots.exists():
        return []
    return sorted(
        p.name
        for p in store.snapshots.iterdir()
        if p.is_dir() and not p.name.startswith(".") and (p / "meta.json").exists()
    )


def _meta(store: Store, snapshot_id: str) -> dict[str, Any]:
    return json.loads((store.snapshot(snapshot_id) / "meta.json").read_text(encoding="utf-8"))


def resolve_snapshot_id(store: Store, ref: str = "HEAD") -> str:
    """A full snapshot id from ``HEAD``, ``HEAD~N`` (N parents back), a full id or a unique prefix."""
    ref = ref.strip()
    ids = _ids(store)
    if ref.upper().startswith("HEAD"):
        head = _head(store)
        if head is None:
            raise DataError(f"No snapshot yet in {store.snapshots}: run `keepfit data snapshot` first.")
        back = ref[4:]
        steps = int(back[1:]) if back.startswith("~") and back[1:].isdigit() else (0 if not back else -1)
        if steps < 0:
            raise DataError(
                f"Snapshot reference {ref!r} not understood: expected HEAD, HEAD~N, an id or a prefix."
            )
        current = head
        for _ in range(steps):
            parent = _meta(store, current).get("parent")
            if not parent:
                raise DataError(
                    f"{ref}: snapshot {current[:12]} has no parent. `keepfit data list` shows them all."
                )
            current = parent
        return current
    matches = [i for i in ids if i.startswith(ref.lower())] if ref else []
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise DataError(
            f"No snapshot {ref!r} in {store.snapshots} (have {len(ids)}: "
            f"{', '.join(i[:12] for i in ids[:5])}{'...' if len(ids) > 5 else ''}). Run `keepfit data list`."
        )
    raise DataError(f"Snapshot prefix {ref!r} is ambiguous ({len(matches)} match); give more characters.")


def _read_parquet(path: Path, task: Task, store: Store) -> pd.DataFrame:
    """One split of a snapshot of ``store``, image paths made absolute."""
    frame = pq.read_table(path).to_pandas()
    if task == "multi-label" and LABELS in frame:
        frame[LABELS] = frame[LABELS].map(lambda v: [str(x) for x in v] if v is not None else [])
    return _absolute_images(frame, store.root.resolve())


def load_snapshot(store: Store, ref: str = "HEAD") -> Snapshot:
    """Read a snapshot (``HEAD``, ``HEAD~N``, an id or a unique prefix) into a
    :class:`keepfit.types.Snapshot`."""
    snapshot_id = resolve_snapshot_id(store, ref)
    folder = store.snapshot(snapshot_id)
    missing = [name for name in _FILES if not (folder / name).exists()]
    if missing:
        raise DataError(
            f"Snapshot {snapshot_id[:12]} at {folder} is incomplete (missing {missing}); "
            "delete the folder and run `keepfit data snapshot` again."
        )
    meta = _meta(store, snapshot_id)
    task: Task = meta["task"]
    return Snapshot(
        id=snapshot_id,
        path=folder,
        task=task,
        labels=list(meta["labels"]),
        train=_read_parquet(folder / "train.parquet", task, store),
        validation=_read_parquet(folder / "validation.parquet", task, store),
        test=_read_parquet(folder / "test.parquet", task, store),
        quarantine=pq.read_table(folder / "quarantine.parquet").to_pandas(),
        report=json.loads((folder / "report.json").read_text(encoding="utf-8")),
        parent=meta.get("parent"),
    )


def list_snapshots(store: Store) -> list[SnapshotInfo]:
    """Every snapshot in the store, oldest first."""
    infos = []
    for snapshot_id in _ids(store):
        meta = _meta(store, snapshot_id)
        infos.append(
            SnapshotInfo(
                snapshot_id,
                meta.get("created", ""),
                meta.get("task", ""),
                dict(meta.get("counts", {})),
                meta.get("parent"),
                list(meta.get("sources", [])),
            )
        )
    return sorted(infos, key=lambda i: (i.created, i.id))
