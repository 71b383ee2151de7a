"""Resident memory of a training process: give freed heap pages back to the operating system.

Batches of different lengths allocate activations of different sizes every step; glibc's allocator keeps the
freed pages mapped (fragmentation), so a process's resident size creeps up step after step although the live
tensors stay the same. ``malloc_trim(0)`` returns them; it takes a few milliseconds, so the loop calls it every
:data:`TRIM_EVERY_STEPS` steps and after each evaluation. Nothing happens where glibc is absent.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

__all__ = ["TRIM_EVERY_STEPS", "release_free_memory"]

TRIM_EVERY_STEPS = 25


@functools.cache
def _libc():
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


def release_free_memory() -> bool:
    """Return the heap's free pages to the OS; True when it could (glibc)."""
    libc = _libc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True
