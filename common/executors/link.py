"""How web processes reach the one local executor of `aperture serve`.

The serve process runs the executor's supervisor; its web processes only record jobs in
the database and ring a doorbell: a datagram on a Unix socket pair made by the serve
process, whose receiving end the supervisor waits on beside its workers' pipes. A
datagram is one job id to pick up now or one handle to stop. The bell only makes things
fast: a submission whose datagram is lost (a full socket buffer) is still found by the
supervisor's scan of queued jobs, and a cancel by its check of jobs left `cancelling`.

The supervisor publishes its state on a `StatusBoard` (shared memory, written on every
pass of its loop), so a web process answers `/health` without asking anyone.
"""

from __future__ import annotations

import contextlib
import socket
import time
import uuid
from multiprocessing.sharedctypes import RawArray
from typing import Any

from common.executors.base import HandleState

#: A board older than this means the supervisor stopped looping.
STALE_BOARD_S = 5.0

SUBMIT = b"s"
CANCEL = b"c"


def doorbell() -> tuple[socket.socket, socket.socket]:
    """(receiving end, ringing end) of a new doorbell; the ringing end never blocks."""
    receiver, ringer = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.setblocking(False)
    ringer.setblocking(False)
    return receiver, ringer


def read_doorbell(receiver: socket.socket) -> list[tuple[bytes, bytes]]:
    """Every (kind, payload) waiting on the receiving end, without blocking."""
    messages: list[tuple[bytes, bytes]] = []
    while True:
        try:
            datagram = receiver.recv(512)
        except (BlockingIOError, InterruptedError):
            return messages
        if datagram:
            messages.append((datagram[:1], datagram[1:]))


class StatusBoard:
    """The supervisor's health in shared memory: written by one process, read by many.

    A torn read (a value from one pass beside one from the next) is harmless here.
    """

    _FIELDS = ("updated_at", "ok", "workers", "busy", "queued")

    def __init__(self) -> None:
        self._values: Any = RawArray("d", len(self._FIELDS))

    def __repr__(self) -> str:
        return f"StatusBoard({self.read()})"

    def publish(self, *, ok: bool, workers: int, busy: int, queued: int) -> None:
        self._values[:] = [time.time(), float(ok), workers, busy, queued]

    def read(self) -> dict[str, Any]:
        updated_at, ok, workers, busy, queued = list(self._values)
        fresh = time.time() - updated_at < STALE_BOARD_S
        return {
            "executor": "local",
            "ok": bool(ok) and fresh,
            "workers": int(workers),
            "busy": int(busy),
            "queued": int(queued),
            "supervisor": "serve process" if fresh else "not responding",
        }


class SupervisorLink:
    """The executor as a web process of `aperture serve` sees it (see the module
    docstring): submissions and cancels go to the serve process's supervisor."""

    name = "local"

    def __init__(self, ringer: socket.socket, board: StatusBoard) -> None:
        self._ringer = ringer
        self._board = board

    def __repr__(self) -> str:
        return f"SupervisorLink({self._board!r})"

    def start(self) -> None:
        return None

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self._ringer.close()

    def submit(self, job_id: uuid.UUID) -> str:
        self._ring(SUBMIT + job_id.bytes)
        return ""  # the supervisor claims the job under its own handle

    def poll(self, handle: str) -> HandleState:
        return HandleState.lost  # handles belong to the supervisor; read the job record

    def cancel(self, handle: str) -> None:
        self._ring(CANCEL + handle.encode())

    def health(self) -> dict[str, Any]:
        return self._board.read()

    def _ring(self, datagram: bytes) -> None:
        # Lost or refused, the supervisor's scans still find the job: never block a request.
        with contextlib.suppress(OSError):
            self._ringer.send(datagram)
