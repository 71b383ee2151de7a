"""Length-sorted batched forward passes in input order; the bf16 decision measured on this machine."""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable

import numpy as np
import torch

from keepfit.train.batching import collate

__all__ = ["sorted_forward", "autocast", "choose_precision", "bf16_speedup", "cpu_bf16_units"]


def autocast(precision: str, device: str = "cpu") -> contextlib.AbstractContextManager:
    """bf16 autocast (weights stay fp32) when ``precision`` is bf16, else nothing."""
    if precision == "bf16":
        return torch.autocast(device_type=device, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@functools.cache
def bf16_speedup(size: int = 768, rounds: int = 7) -> float:
    """fp32 time / bf16-autocast time of a square matmul on this CPU (2-4 on CPUs with AMX/AVX512-BF16).

    fp32 and bf16 runs alternate and the best of ``rounds`` is kept for each, so load from other processes on
    a shared machine affects both sides alike.
    """
    a, b = torch.randn(size, size), torch.randn(size, size)

    def once(precision: str) -> float:
        start = time.perf_counter()
        with autocast(precision):
            for _ in range(4):
                a @ b
        return time.perf_counter() - start

    once("bf16"), once("fp32")  # warm-up: kernels, caches
    fp32, bf16 = float("inf"), float("inf")
    for _ in range(rounds):
        fp32 = min(fp32, once("fp32"))
        bf16 = min(bf16, once("bf16"))
    return fp32 / bf16


@functools.cache
def cpu_bf16_units() -> bool | None:
    """Whether the CPU has bf16 matrix units (AMX-BF16 or AVX512-BF16, the kernels oneDNN runs bf16 autocast
    on), from ``/proc/cpuinfo``'s flags; None where the file does not tell (not Linux)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return bf16_units_in(f.read())
    except OSError:
        return None


def bf16_units_in(cpuinfo: str) -> bool | None:
    """:func:`cpu_bf16_units` of a ``/proc/cpuinfo`` text (None when it has no ``flags`` line)."""
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines() if line.startswith("flags")), None)
    if flags is None:
        return None
    return "amx_bf16" in flags or "avx512_bf16" in flags


def choose_precision(setting: str, device: str = "cpu") -> str:
    """fp32 or bf16. ``auto``: bf16 on a GPU that supports it, or on a CPU with bf16 matrix units (its flags;
    where they cannot be read, where a matmul measures 1.3x faster in bf16). The flags, not the measurement,
    decide where they can: timed under another process's load the measurement swung from 2.5x to 0.6x on this
    project's machine, so a model loaded during traffic (a server's hot swap) could get either precision."""
    if setting != "auto":
        return setting
    if device == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    units = cpu_bf16_units()
    if units is not None:
        return "bf16" if units else "fp32"
    return "bf16" if bf16_speedup() >= 1.3 else "fp32"


def sorted_forward(
    ids: list[list[int]],
    pad_id: int,
    batch_size: int,
    forward: Callable[[dict[str, torch.Tensor]], torch.Tensor],
    *,
    precision: str = "fp32",
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """``forward`` over all rows in length-sorted batches under inference_mode; rows back in input order.

    Returns float32 [n, ...]: whatever ``forward`` returns per batch, concatenated.
    """
    n = len(ids)
    order = np.argsort(np.array([len(x) for x in ids]), kind="stable")
    outs = []
    dev = torch.device(device)
    with torch.inference_mode(), autocast(precision, dev.type):
        for start in range(0, n, batch_size):
            rows = order[start : start + batch_size]
            batch = {k: v.to(dev) for k, v in collate(ids, rows, pad_id).items()}
            outs.append(forward(batch).float().cpu())
    if not outs:
        return torch.zeros((0,))
    stacked = torch.cat(outs)
    result = torch.empty_like(stacked)
    result[torch.from_numpy(order)] = stacked
    return result
