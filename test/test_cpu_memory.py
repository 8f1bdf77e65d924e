"""engine.cpu_memory: after keep_freed_memory(), a frame-sized block comes from the heap (and
stays there once freed) instead of a fresh mapping. Each case runs in its own interpreter,
since the setting is process-wide."""

import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="a glibc malloc setting")

PROBE = """
import ctypes, sys
import numpy as np
from human3r_ros.engine.cpu_memory import keep_freed_memory

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
if sys.argv[1] == "keep":
    assert keep_freed_memory()
block = np.ones(80 << 20, dtype=np.uint8)  # like the dense head's 75 MB maps
info = libc.mallinfo2()
del block
after = libc.mallinfo2()
print(info.hblkhd >> 20, info.arena >> 20, after.arena >> 20)
"""


def probe(mode: str) -> tuple[int, int, int]:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
    return tuple(int(v) for v in out.stdout.split())


def test_large_blocks_come_from_the_kept_heap():
    mapped, _, _ = probe("default")
    assert mapped >= 80  # glibc's default: its own mapping, unmapped again on free
    mapped, heap, heap_after_free = probe("keep")
    assert mapped < 80 and heap >= 80
    assert heap_after_free >= 80  # freed, not trimmed: the next frame reuses warm pages
