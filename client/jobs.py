"""Following a job: its events by Server-Sent Events, by polling its event log where
SSE does not get through (a buffering proxy, a dropped stream), and its final record."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
from httpx_sse import EventSource, SSEError

from client.errors import ServerError
from client.models import Job, JobEvent
from client.transport import Transport

EventCallback = Callable[[JobEvent], None]
JOBS = "/api/v1/jobs"
#: Server-Sent Events: no read timeout (the server pings every 15 s).
SSE_TIMEOUT = httpx.Timeout(30.0, read=60.0)


async def job(t: Transport, job_id: str) -> Job:
    return Job.from_json(await t.json("GET", f"{JOBS}/{job_id}"))


async def stream_events(t: Transport, job_id: str, after: int = 0) -> AsyncIterator[JobEvent]:
    """The job's events after seq `after`, live, ending after its final status."""
    headers = {"Last-Event-ID": str(after)} if after else None
    async with t.stream(
        "GET", f"{JOBS}/{job_id}/events", headers=headers, timeout=SSE_TIMEOUT
    ) as response:
        async for sse in EventSource(response).aiter_sse():
            if sse.data:
                yield JobEvent.from_json(json.loads(sse.data))


async def logged_events(t: Transport, job_id: str, after: int = 0) -> list[JobEvent]:
    """The job's event log after seq `after` (one page), as polling reads it."""
    rows = await t.json("GET", f"{JOBS}/{job_id}/logs", params={"after": after, "limit": 5000})
    return [JobEvent.from_json(row) for row in rows]


async def wait(
    t: Transport,
    job_id: str,
    *,
    timeout: float | None = None,
    on_event: EventCallback | None = None,
    poll_interval: float = 1.0,
    use_sse: bool = True,
) -> Job:
    """The job's final record. Events go to `on_event` in order, each once, whether they
    came by SSE or by polling. TimeoutError after `timeout` seconds."""
    follower = _Follower(t, job_id, on_event)
    async with asyncio.timeout(timeout):
        if use_sse and await follower.by_sse():
            return await job(t, job_id)
        return await follower.by_polling(poll_interval)


class _Follower:
    def __init__(self, t: Transport, job_id: str, on_event: EventCallback | None) -> None:
        self.t = t
        self.job_id = job_id
        self.on_event = on_event
        self.after = 0

    def _deliver(self, event: JobEvent) -> bool:
        if event.seq <= self.after:
            return False
        self.after = event.seq
        if self.on_event is not None:
            self.on_event(event)
        return event.final

    async def by_sse(self, attempts: int = 3) -> bool:
        """True once the final status came by SSE; False if the stream keeps failing
        (or ends early) and polling should take over. Each reconnection resumes after
        the last event seen."""
        for _ in range(attempts):
            try:
                async for event in stream_events(self.t, self.job_id, self.after):
                    if self._deliver(event):
                        return True
            except (httpx.TransportError, SSEError, ServerError):
                await asyncio.sleep(0.2)
                continue
            if (await job(self.t, self.job_id)).done:
                return False  # ended without its final event: polling collects the rest
        return False

    async def by_polling(self, interval: float) -> Job:
        started = time.monotonic()
        while True:
            for event in await logged_events(self.t, self.job_id, self.after):
                self._deliver(event)
            record = await job(self.t, self.job_id)
            if record.done:
                for event in await logged_events(self.t, self.job_id, self.after):
                    self._deliver(event)
                return record
            # Quick first checks for short jobs, then the configured interval.
            await asyncio.sleep(min(interval, 0.05 * 2 ** min((time.monotonic() - started), 5)))


def job_from_submission(response: httpx.Response) -> dict[str, Any] | None:
    """The job record in a submission's answer, if it has one (201 or 200 with the body;
    202 may carry only a Location)."""
    try:
        body = response.json()
    except ValueError:
        return None
    if isinstance(body, dict) and "id" in body and "status" in body and "function" in body:
        return body
    return None
