"""The event hub: one poller of `job_events` fanning new events out to SSE and WebSocket
subscribers in this process.

Workers run in other processes (or Modal containers), so the database is where their
events meet. One query per tick serves every subscriber, and only while anyone listens.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool

from common.jobs.models import JobEventRecord
from common.jobs.queries import JobQueries

log = logging.getLogger("aperture.hub")

#: Rows re-read behind the highest id seen. On PostgreSQL ids come from a sequence and
#: can commit out of order; re-reading a window (and skipping ids already sent) keeps
#: a late commit from being missed.
LOOKBACK = 256
POLL_S = 0.05  # a client waiting on SSE hears of a job's end 25 ms later on average
QUEUE_SIZE = 1000


@dataclass(eq=False)
class _Subscriber:
    accepts: Callable[[JobEventRecord], bool]
    queue: asyncio.Queue[JobEventRecord | None]


class EventHub:
    def __init__(self, queries: JobQueries, *, poll_s: float = POLL_S) -> None:
        self.queries = queries
        self.poll_s = poll_s
        self._subscribers: set[_Subscriber] = set()
        self._high = 0
        self._start = 0  # events up to here existed before the hub: history, not news
        self._seen: set[int] = set()
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    async def start(self) -> None:
        self._high = self._start = await run_in_threadpool(self.queries.last_event_id)
        self._task = asyncio.create_task(self._run(), name="event-hub")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for subscriber in self._subscribers:
            subscriber.queue.put_nowait(None)

    @contextlib.asynccontextmanager
    async def subscribe(
        self, accepts: Callable[[JobEventRecord], bool]
    ) -> AsyncIterator[asyncio.Queue[JobEventRecord | None]]:
        """A queue receiving every later event that `accepts`; None means the hub stopped."""
        subscriber = _Subscriber(accepts, asyncio.Queue(QUEUE_SIZE))
        self._subscribers.add(subscriber)
        self._wake.set()
        try:
            yield subscriber.queue
        finally:
            self._subscribers.discard(subscriber)

    async def _run(self) -> None:
        while True:
            if not self._subscribers:
                self._wake.clear()
                await self._wake.wait()
            try:
                events = await run_in_threadpool(
                    self.queries.events_since, max(self._high - LOOKBACK, 0)
                )
                self._publish(events)
            except Exception:
                log.warning("event hub poll failed", exc_info=True)
            await asyncio.sleep(self.poll_s)

    def _publish(self, events: list[JobEventRecord]) -> None:
        for event in events:
            if event.id <= self._start or event.id in self._seen:
                continue
            self._seen.add(event.id)
            self._high = max(self._high, event.id)
            for subscriber in list(self._subscribers):
                if subscriber.accepts(event):
                    if subscriber.queue.full():  # a stalled client loses its oldest news
                        subscriber.queue.get_nowait()
                    subscriber.queue.put_nowait(event)
        floor = self._high - LOOKBACK
        self._seen = {i for i in self._seen if i > floor}
