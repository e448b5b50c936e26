"""Process-level settings that make CPU inference faster.

On a small CPU machine glibc's default allocator returns large blocks to the system
after every batch and page-faults them back in on the next one; a batch-64 forward of
EfficientNet-Lite0 then spends more than half its time in page faults (DESIGN.md).
``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=100000000000`` in the environment fixes it,
but must be set before Python starts; ``mallopt`` sets the same two knobs in a running
process. Only the CLI and spyglass's own workers call this: a library must not change
its host process behind the user's back.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

__all__ = ["allocator_setting", "tune_allocator"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_tuned = False


def tune_allocator() -> bool:
    """Keep freed memory in the process (glibc only); return whether it took effect."""
    global _tuned
    if _tuned:
        return True
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = mallopt(_M_MMAP_MAX, 0) == 1
    # The largest int mallopt takes; the environment form uses 1e11, the same intent.
    ok = mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1 and ok
    _tuned = ok
    return ok


def allocator_setting() -> str:
    """A one-line description of the allocator setting in force, for benchmark reports."""
    env = os.environ.get("MALLOC_MMAP_MAX_") == "0" and "MALLOC_TRIM_THRESHOLD_" in os.environ
    if env:
        return "tuned (MALLOC_MMAP_MAX_=0, MALLOC_TRIM_THRESHOLD_ set in the environment)"
    if _tuned:
        return "tuned (mallopt in process)"
    return "glibc default"
