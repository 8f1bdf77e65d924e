"""Process CPU memory: keep what a frame frees for the next frame; read the resident size.

Keeping: let the process keep the CPU memory a frame frees, so the next frame reuses the same pages.

glibc hands every allocation above its mmap threshold (32 MiB at most) a fresh mapping and
unmaps it on free; the kernel then zero-fills each page of the next mapping on first touch. A
672S frame allocates dozens of such tensors (the dense head's maps are 75 MB each at 512x288),
which costs ~14 ms per 75 MB here, ~0.3 s per frame. Serving them from the heap, and not trimming
the heap, makes every frame after the first reuse warm pages. The resident size stays at the
frame's peak, which the process reaches on every frame anyway.
"""

from __future__ import annotations

import ctypes
import os

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8
_NEVER_TRIM = 2**31 - 1  # mallopt takes an int


def keep_freed_memory() -> bool:
    """Configure glibc's malloc as above; False (and nothing changed) where libc is not glibc."""
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # only glibc has it (and mallopt's parameters mean this there)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    # one arena: threads' own arenas map large blocks regardless of M_MMAP_MAX
    return bool(mallopt(_M_MMAP_MAX, 0) and mallopt(_M_TRIM_THRESHOLD, _NEVER_TRIM) and mallopt(_M_ARENA_MAX, 1))


def resident_mb() -> float | None:
    """This process's resident memory in MiB (Linux /proc), None where it cannot be read."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):
        return None
