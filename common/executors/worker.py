"""The body of a local worker process: receive job ids, run them, report back.

Started with the `spawn` method, so it shares nothing with the server but the settings
it is given; it builds its own database engine and object store.
"""

from __future__ import annotations

import logging
import signal
import uuid
from multiprocessing.connection import Connection

from common.jobs.runner import run_job
from common.runtime import Runtime
from common.settings import Settings


def worker_main(settings: Settings, conn: Connection) -> None:
    # Ctrl-C reaches the whole process group; the supervisor decides when workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=settings.log_level)
    current: list[uuid.UUID] = []

    def waiting(blocked: bool) -> None:
        if current:
            conn.send(("waiting", current[0], blocked))

    runtime = Runtime.from_settings(settings, waiting=waiting)
    try:
        conn.send(("ready", None, None))
        while True:
            message, job_id, handle = conn.recv()
            if message != "run":
                continue
            current[:] = [job_id]
            status = run_job(job_id, runtime, handle=handle)
            current.clear()
            conn.send(("done", job_id, status.value if status else None))
    except (EOFError, BrokenPipeError, ConnectionResetError):
        return  # the supervisor closed our pipe: the pool is stopping
    finally:
        runtime.close()
