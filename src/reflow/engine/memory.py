"""How a process running sync runs allocates Arrow buffers.

Arrow's default allocator (mimalloc or jemalloc) keeps freed blocks of every batch
mapped for reuse, and glibc keeps freed large blocks on its heap: a run's resident
memory ends up ~60 MB above what its batches need at any one time (bench/, 300k rows:
peak 312 MB -> 250 MB). Batches are allocated once and freed whole, so they go to the
system allocator, and glibc maps blocks of 128 KiB and more on their own, returning
them to the kernel when freed.

``set_memory_pool`` below reaches what pyarrow's Python layer allocates; Arrow's C++
code (casts, concatenation, Parquet) takes its pool from ``ARROW_DEFAULT_MEMORY_POOL``,
which ``reflow/__init__.py`` sets before pyarrow is imported.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading

import pyarrow as pa

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
_LARGE = 128 * 1024
_lock = threading.Lock()
_done = False


def return_freed_memory() -> None:
    """Set the policy above for this process (once; later calls do nothing)."""
    global _done
    with _lock:
        if _done:
            return
        _done = True
        pa.set_memory_pool(pa.system_memory_pool())
        name = ctypes.util.find_library("c")
        try:
            libc = ctypes.CDLL(name or "libc.so.6")
            mallopt = libc.mallopt
        except (OSError, AttributeError):  # not glibc: its own defaults apply
            return
        mallopt(_M_MMAP_THRESHOLD, _LARGE)
        mallopt(_M_TRIM_THRESHOLD, _LARGE)
        # A run's threads (read-ahead, commits, drivers) would each get a heap of
        # their own, each keeping freed memory; two heaps are enough for them.
        mallopt(_M_ARENA_MAX, 2)
