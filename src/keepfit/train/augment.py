"""Pixels for the image task: each image decoded once into a uint8 cache, then batches augmented on CPU with kornia.

Training batches are made ahead of the step by a torch DataLoader whose items are whole planned batches (so the
next batches are decoded and augmented while the current step runs); each batch's augmentation is seeded by
(seed, epoch, batch index), so a resumed run sees exactly the pixels an uninterrupted run saw, whatever the
number of workers.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from keepfit.config import AugmentConfig
from keepfit.errors import DataError

__all__ = [
    "TRAIN_MARGIN",
    "train_side",
    "square_pixels",
    "decode_square",
    "pixel_cache",
    "normalize",
    "build_augmenter",
    "augment_batch",
    "batch_seed",
    "planned_batches",
]

# Training images are stored this much larger than the model's input so random resized crops have room.
TRAIN_MARGIN = 1.14
DECODE_THREADS = 2  # Pillow releases the GIL while decoding and resizing


def train_side(image_size: int, augment: AugmentConfig) -> int:
    """Side (pixels) of the cached training images: ``round(image_size * 1.14)`` with augmentation, else
    ``image_size`` (then training sees exactly the evaluation pixels)."""
    return round(image_size * TRAIN_MARGIN) if augment.enabled else image_size


def square_pixels(image: Image.Image, side: int) -> np.ndarray:
    """uint8 [3, side, side]: the shorter side resized to ``side`` (bicubic), then the centre square."""
    w, h = image.size
    scale = side / min(w, h)
    size = (max(side, round(w * scale)), max(side, round(h * scale)))
    resized = image.resize(size, Image.Resampling.BICUBIC)
    left, top = (size[0] - side) // 2, (size[1] - side) // 2
    square = resized.crop((left, top, left + side, top + side))
    return np.asarray(square, dtype=np.uint8).transpose(2, 0, 1).copy()


def decode_square(path: str | Path, side: int) -> np.ndarray:
    """The image at ``path`` as uint8 [3, side, side] (see :func:`square_pixels`); DataError naming the path when
    it cannot be read."""
    from keepfit.data.images import open_rgb

    try:
        return square_pixels(open_rgb(path), side)
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise DataError(
            f"Cannot read image {path}: {err}. Expected a readable image file (PNG, JPEG, WebP, ...); "
            "fix or remove it, then run again."
        ) from None


def decode_many(paths: Sequence[str], side: int) -> np.ndarray:
    """uint8 [n, 3, side, side] of ``paths``, decoded on a small thread pool, in input order."""
    if not paths:
        return np.zeros((0, 3, side, side), dtype=np.uint8)
    with ThreadPoolExecutor(DECODE_THREADS) as pool:
        return np.stack(list(pool.map(lambda p: decode_square(p, side), paths)))


def _cache_key(keys: Sequence[str], side: int) -> str:
    h = hashlib.sha256(f"pixels-v1|{side}".encode())
    for key in keys:
        h.update(str(key).encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def pixel_cache(cache_dir: Path, name: str, paths: Sequence[str], side: int, keys: Sequence[str] | None = None) -> Path:
    """A ``.npy`` file of uint8 [n, 3, side, side] for ``paths`` under ``cache_dir``, written once (aside, then
    renamed) and reused while the images (``keys``: their sha256, else their paths) and ``side`` are the same.
    Open it with ``np.load(path, mmap_mode="r")``: worker processes share its pages."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"pixels-{name}-{side}-{_cache_key(keys if keys is not None else paths, side)}.npy"
    if path.exists():
        return path
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(paths), 3, side, side))
    chunk = 256
    for start in range(0, len(paths), chunk):
        out[start : start + chunk] = decode_many(list(paths[start : start + chunk]), side)
    out.flush()
    del out
    os.replace(tmp, path)
    return path


def normalize(pixels: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """float [B, 3, S, S] in channels_last memory: uint8 (or [0, 1] float) pixels minus ``mean``, over ``std``."""
    x = pixels.float() / 255.0 if pixels.dtype == torch.uint8 else pixels.float()
    m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return ((x - m) / s).contiguous(memory_format=torch.channels_last)


def build_augmenter(augment: AugmentConfig, image_size: int) -> nn.Module | None:
    """kornia transforms of ``augment`` (random resized crop to ``image_size``, flips, rotation, colour jitter),
    on float [B, 3, S, S] in [0, 1]; None when augmentation is off."""
    if not augment.enabled:
        return None
    import kornia.augmentation as K

    steps: list[nn.Module] = [
        K.RandomResizedCrop((image_size, image_size), scale=augment.crop_scale, ratio=augment.crop_ratio)
    ]
    if augment.hflip > 0:
        steps.append(K.RandomHorizontalFlip(p=augment.hflip))
    if augment.vflip > 0:
        steps.append(K.RandomVerticalFlip(p=augment.vflip))
    if augment.rotation > 0:
        steps.append(K.RandomRotation(augment.rotation, p=1.0))
    jitter = (augment.brightness, augment.contrast, augment.saturation, augment.hue)
    if any(v > 0 for v in jitter):
        steps.append(K.ColorJitter(*jitter, p=1.0))
    return nn.Sequential(*steps)


def batch_seed(seed: int, epoch: int, index: int) -> int:
    """The augmentation seed of batch ``index`` of ``epoch`` (independent of workers and of resuming)."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1, dtype=np.uint64)[0] >> 1)


def augment_batch(
    pixels: np.ndarray | torch.Tensor,
    augmenter: nn.Module | None,
    seed: int,
    mean: Sequence[float],
    std: Sequence[float],
) -> torch.Tensor:
    """Model input float [B, 3, size, size] (channels_last) from cached uint8 pixels: augmented with torch's RNG
    seeded by ``seed`` (kornia samples from the global RNG; it is forked, so the caller's RNG is untouched),
    then normalised. Without an augmenter: normalised only."""
    x = torch.as_tensor(np.asarray(pixels)).float() / 255.0
    if augmenter is not None:
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(seed)
            x = augmenter(x).clamp_(0.0, 1.0)
    return normalize(x, mean, std)


class _PlannedBatches(torch.utils.data.Dataset):
    """Item i = the model inputs of planned batch ``start + i`` (the memmap is opened in each process)."""

    def __init__(self, pixels: Path, plan: list[list[int]], start: int, epoch: int, seed: int,
                 augment: AugmentConfig, image_size: int, mean: Sequence[float], std: Sequence[float]) -> None:
        self.pixels, self.plan, self.start, self.epoch, self.seed = pixels, plan, start, epoch, seed
        self.augment, self.image_size, self.mean, self.std = augment, image_size, list(mean), list(std)
        self._array: np.ndarray | None = None
        self._augmenter: nn.Module | None = None

    def __len__(self) -> int:
        return max(0, len(self.plan) - self.start)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        if self._array is None:
            self._array = np.load(self.pixels, mmap_mode="r")
            self._augmenter = build_augmenter(self.augment, self.image_size)
        index = self.start + i
        rows = np.asarray(self.plan[index], dtype=np.int64)
        seed = batch_seed(self.seed, self.epoch, index)
        return {"pixel_values": augment_batch(self._array[rows], self._augmenter, seed, self.mean, self.std)}


def planned_batches(
    pixels: Path,
    plan: list[list[int]],
    start: int,
    epoch: int,
    *,
    seed: int,
    augment: AugmentConfig,
    image_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    workers: int,
    device: torch.device | str = "cpu",
) -> Iterator[dict[str, torch.Tensor]]:
    """The inputs of ``plan[start:]`` in order, made ``workers`` processes ahead (0: in this process).

    The loader gets its own generator, so making it leaves torch's global RNG (dropout, drop-connect) as it was:
    a resumed run draws the same dropout masks as an uninterrupted one."""
    dataset = _PlannedBatches(pixels, plan, start, epoch, seed, augment, image_size, mean, std)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=None,
        shuffle=False,
        num_workers=workers,
        prefetch_factor=2 if workers else None,
        persistent_workers=False,
        generator=torch.Generator().manual_seed(batch_seed(seed, epoch, 2**31)),
    )
    dev = torch.device(device)
    for batch in loader:
        yield {k: v.to(dev) for k, v in batch.items()}
