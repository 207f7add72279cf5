"""Keep freed memory in the process instead of handing it back to the kernel (glibc only).

Why: a decoding worker allocates and frees the same multi-MB arrays for every clip, and glibc's
defaults make each clip pay again in page faults (docs/performance.md). Only processes fusemix owns
call this (``LatentCache.build``'s workers): a library should not change its importer's allocator.
"""
from __future__ import annotations

import ctypes
import ctypes.util

# mallopt parameter numbers, from glibc's <malloc.h>
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD_MAX = 32 << 20  # glibc's ceiling for M_MMAP_THRESHOLD on 64-bit builds
TOP_PAD = 64 << 20  # grow the heap in large steps: fewer brk calls, pages stay in place
NEVER_TRIM = (1 << 31) - 1  # mallopt takes an int; 2 GiB of free heap top is "never" here


def _glibc_mallopt():
    """glibc's ``mallopt``, or None on other C libraries (musl, macOS, Windows)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        gnu_get_libc_version = libc.gnu_get_libc_version  # glibc only: the check that it is glibc
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return None
    gnu_get_libc_version.restype = ctypes.c_char_p
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return mallopt


def keep_freed_memory() -> bool:
    """Blocks up to 32 MiB from the heap, grown in 64 MiB steps and never trimmed (the peak stays held
    until exit). False where the C library is not glibc or refuses a setting."""
    mallopt = _glibc_mallopt()
    if mallopt is None:
        return False
    ok = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX) == 1
    ok = mallopt(M_TRIM_THRESHOLD, NEVER_TRIM) == 1 and ok
    return mallopt(M_TOP_PAD, TOP_PAD) == 1 and ok


__all__ = ["keep_freed_memory"]
