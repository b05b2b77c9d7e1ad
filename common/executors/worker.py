"""The body of a local worker process: receive job ids, run them, report back.

Started with the `spawn` method, so it shares nothing with the server but the settings
it is given; it builds its own database engine and object store. Everything a job needs
is imported before the worker says it is ready (the capability modules, through the
runtime), so a job handed to a ready worker starts at once.
"""

from __future__ import annotations

import logging
import signal
import threading
import uuid
from multiprocessing.connection import Connection
from typing import Any

from common.jobs.runner import run_job
from common.runtime import Runtime
from common.settings import Settings


def worker_main(settings: Settings, conn: Connection) -> None:
    # Ctrl-C reaches the whole process group; the supervisor decides when workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=settings.log_level)
    current: list[uuid.UUID] = []
    sending = threading.Lock()  # a capability may spawn children from its own threads

    def send(message: str, job_id: uuid.UUID | None, value: Any) -> None:
        with sending:
            conn.send((message, job_id, value))

    def waiting(blocked: bool) -> None:
        if current:
            send("waiting", current[0], blocked)

    def submit(job_id: uuid.UUID) -> None:
        """A child (or a retry) is queued: the supervisor hands it out now rather than
        at its next scan."""
        send("submit", job_id, None)

    runtime = Runtime.from_settings(settings, waiting=waiting, submit=submit)
    try:
        send("ready", None, None)
        while True:
            message, job_id, handle = conn.recv()
            if message != "run":
                continue
            current[:] = [job_id]
            status = run_job(job_id, runtime, handle=handle)
            current.clear()
            send("done", job_id, status.value if status else None)
    except (EOFError, BrokenPipeError, ConnectionResetError):
        return  # the supervisor closed our pipe: the pool is stopping, or we retire
    finally:
        runtime.close()
