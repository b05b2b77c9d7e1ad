"""pyvips, imported once, with libvips' chatter kept out of Python.

pyvips routes every GLib message of libvips to the `pyvips` logger, info and debug
included, and libvips says something at info level on every operation ("reducev: 13
point mask", "threadpool completed with 2 workers": seven lines per tile resize). Each
message is a call from a libvips thread back into Python: it takes the GIL and, with the
server's INFO logging, formats and writes a log line. Through the tile route that cost
more than the resize itself. Only warnings and errors are forwarded here; GLib's default
handler drops the rest (unless G_MESSAGES_DEBUG asks for them).
"""

from __future__ import annotations

import logging
import threading
from types import ModuleType

_lock = threading.Lock()
_quiet = False


def pyvips() -> ModuleType:
    """The pyvips module, its log handler narrowed to warnings and errors."""
    import pyvips as module

    global _quiet
    if not _quiet:
        with _lock:
            if not _quiet:
                _forward_warnings_only(module)
                _quiet = True
    return module


def one_thread_per_operation() -> None:
    """Run each libvips operation on the calling thread only (process-wide).

    For a server rendering many small tiles at once: the parallelism comes from the
    requests, and libvips' own worker threads only add a hand-off per operation (a
    255 x 255 Lanczos resize took 2.3 ms with two workers and 1.4 ms with one on two busy
    cores). Not for processes that build pyramids (`dzsave` wants every core).
    """
    pyvips().concurrency_set(1)


def _forward_warnings_only(module: ModuleType) -> None:
    flags = module.GLogLevelFlags
    wanted = (
        flags.LEVEL_WARNING
        | flags.LEVEL_CRITICAL
        | flags.LEVEL_ERROR
        | flags.FLAG_FATAL
        | flags.FLAG_RECURSION
    )
    try:
        lib, handler_id, callback = (
            module.glib_lib,
            module._log_handler_id,
            module._log_handler_cb,
        )
    except AttributeError:  # another pyvips layout: at least skip the formatting
        logging.getLogger("pyvips").setLevel(logging.WARNING)
        return
    domain = b"VIPS"
    if handler_id:
        lib.g_log_remove_handler(domain, handler_id)
    # pyvips removes the handler named by _log_handler_id at exit: keep it pointing at ours
    ours = lib.g_log_set_handler(domain, wanted, callback, module.ffi.NULL)
    setattr(module, "_log_handler_id", ours)  # noqa: B010 (a private name, said plainly)
