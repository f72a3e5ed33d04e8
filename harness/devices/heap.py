"""The process heap over a long call: keep large allocations out of it (glibc's fixed mmap threshold).

glibc serves an allocation above its mmap threshold (128 KiB by default) with its own mapping, returned to the
system on free, and a growing one with mremap; smaller ones come from the heap (brk), which only shrinks from its
top. The threshold is *dynamic*: freeing a mapped block raises it to that block's size (up to 32 MiB). A call frees
large buffers all the time (the capture's 10 s chunks, ≈ 1.9 MB, once spilled to disk; analysis arrays), so after
the first such free every large buffer — including the per-frame columns that grow all call long, reallocated as
they grow — lives in the heap, and each move leaves a hole that the next, larger copy cannot use. Fixing the
threshold (mallopt M_MMAP_THRESHOLD, which also turns the dynamic adjustment off) keeps them in mappings.
Not glibc (musl, macOS): nothing to do, `fix_mmap_threshold` returns False.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # <malloc.h>
THRESHOLD_BYTES = 128 * 1024  # glibc's own default, made fixed
_done: bool | None = None


def _libc():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt  # noqa: B018  (glibc only)
        return libc
    except (OSError, AttributeError):
        return None


def fix_mmap_threshold(nbytes: int = THRESHOLD_BYTES) -> bool:
    """Fix glibc's mmap threshold at `nbytes` for this process (once; later calls return the first result)."""
    global _done
    if _done is None:
        libc = _libc()
        _done = bool(libc is not None and libc.mallopt(M_MMAP_THRESHOLD, int(nbytes)) == 1)
        if not _done:
            log.info("mallopt(M_MMAP_THRESHOLD) unavailable: large buffers may stay in the heap")
    return _done


class MallInfo(ctypes.Structure):
    """glibc's `struct mallinfo2` (sizes in bytes, summed over every arena)."""

    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                "fsmblks", "uordblks", "fordblks", "keepcost")]


def mallinfo() -> MallInfo | None:
    """Heap bytes (`arena`), mapped bytes (`hblkhd`), in use (`uordblks`) and free in the heap (`fordblks`)."""
    libc = _libc()
    if libc is None or not hasattr(libc, "mallinfo2"):
        return None
    libc.mallinfo2.restype = MallInfo
    return libc.mallinfo2()
