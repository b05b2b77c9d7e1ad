"""The host process as the CPU solver wants it: BLAS on one thread while it runs, and
glibc keeping freed array buffers."""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
from functools import cache
from typing import Any


def one_blas_thread(on_cpu: bool) -> Any:
    """One BLAS thread while the solver runs on the CPU: its own threads (`workers`) are
    its parallelism, and a multi-threaded BLAS under each of them (OpenBLAS's default,
    a thread per core) only oversubscribes the cores: measured 1.5x the CPU time."""
    if not on_cpu:
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


@cache
def tune_malloc() -> None:
    """Keep freed array buffers in the heap (glibc only, once per process).

    The solver's temporaries are a few hundred kB each. By default glibc serves such
    sizes with fresh `mmap`s, so every temporary pays page faults on first touch, which
    costs more than the arithmetic on it (measured 3x on the maturation kernel). Raising
    the mmap and trim thresholds makes them ordinary, reused heap blocks.
    """
    if not sys.platform.startswith("linux") or os.environ.get("APERTURE_NO_MALLOC_TUNING"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        libc.mallopt(m_trim_threshold, 256 << 20)
        libc.mallopt(m_mmap_threshold, 64 << 20)
    except (OSError, AttributeError):  # not glibc: nothing to tune
        return
