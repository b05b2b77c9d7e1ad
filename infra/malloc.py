"""glibc's heap settings for the long-running server process."""

from __future__ import annotations

import ctypes
import os
import sys

#: glibc's `mallopt` parameter for the number of heaps ("arenas") threads may spread over.
M_ARENA_MAX = -8
#: Heaps the server keeps: two, the value long-running threaded Python servers use.
SERVER_ARENAS = 2


def bound_malloc_arenas(arenas: int = SERVER_ARENAS) -> bool:
    """Let every thread share `arenas` glibc heaps; whether the setting took.

    The server answers requests on a pool of threads. By default glibc gives threads up
    to 8 heaps per core, and memory freed in one heap is not reused by another, so the
    process grows with the traffic's spread over threads rather than with what it holds
    (the load benchmark's 4-minute soak on 2 shared cores: +30 MiB, 650 MiB/h over the
    second half, with 16 heaps; +8 MiB, 92 MiB/h, with two). Python's own small-object
    allocator is unaffected. An operator's `MALLOC_ARENA_MAX` wins; on other C libraries
    this does nothing. Call it before the first thread starts; the processes spawned after
    it (web and job workers) get the same bound through `MALLOC_ARENA_MAX`.
    """
    if not sys.platform.startswith("linux") or "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        took = bool(libc.mallopt(M_ARENA_MAX, arenas))
    except (OSError, AttributeError):  # not glibc
        return False
    if took:  # the spawned web and job processes: glibc reads it as they start
        os.environ["MALLOC_ARENA_MAX"] = str(arenas)
    return took
