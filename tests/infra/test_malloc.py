"""The server's threads share a bounded number of glibc heaps (fragmentation across
per-thread heaps made the soak's memory climb)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")

#: Eight threads allocate and free at once, then glibc reports its heaps (malloc_info).
HEAPS_AFTER_THREADS = textwrap.dedent(
    """
    import ctypes, sys, tempfile, threading
    from infra.malloc import bound_malloc_arenas
    took = bound_malloc_arenas() if sys.argv[1] == "bounded" else False
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    libc.fopen.restype = ctypes.c_void_p
    barrier = threading.Barrier(8)
    def work():
        barrier.wait()
        blocks = [libc.malloc(4096) for _ in range(200)]
        barrier.wait()
        for block in blocks:
            libc.free(block)
    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads: t.start()
    for t in threads: t.join()
    with tempfile.NamedTemporaryFile(suffix=".xml") as out:
        handle = libc.fopen(out.name.encode(), b"w")
        libc.malloc_info(0, ctypes.c_void_p(handle))
        libc.fclose(ctypes.c_void_p(handle))
        print(took, open(out.name).read().count("<heap nr="))
    """
)


def _heaps(mode: str) -> tuple[str, int]:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    out = subprocess.run(
        [sys.executable, "-c", HEAPS_AFTER_THREADS, mode],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.split()
    return out[0], int(out[1])


def test_threads_share_two_heaps_once_bounded() -> None:
    took, heaps = _heaps("bounded")
    assert took == "True" and heaps <= 2
    # The measurement can tell: left alone, the same threads spread over more heaps.
    assert _heaps("default")[1] > 2


def test_an_operators_setting_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    from infra.malloc import bound_malloc_arenas

    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert bound_malloc_arenas() is False
