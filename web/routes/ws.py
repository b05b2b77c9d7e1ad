"""WebSocket pushes of job updates (`/ws/jobs`): one message per job event."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, WebSocket, WebSocketDisconnect
from starlette.concurrency import run_in_threadpool

from common.errors import ApertureError
from common.jobs.models import JobEventRecord
from web.auth import authenticate
from web.deps import get_ws_state
from web.state import AppState

router = APIRouter(tags=["jobs"])


@router.websocket("/ws/jobs")
async def stream_jobs(
    websocket: WebSocket,
    state: Annotated[AppState, Depends(get_ws_state)],
    job_id: Annotated[uuid.UUID | None, Query()] = None,
) -> None:
    """Push `{"type": "job.event", "event": {...}}` for each change of the caller's jobs
    (or of one job with `?job_id=`). Authenticate with a bearer header, an API key, the
    session cookie, or `?access_token=` (browsers cannot set headers on WebSockets)."""
    try:
        user = await run_in_threadpool(
            authenticate, websocket, state.identity, allow_query_token=True
        )
    except ApertureError as error:
        await websocket.close(code=1008, reason=error.message[:120])
        return

    def accepts(event: JobEventRecord) -> bool:
        return user.may_see(event.owner_id) and (job_id is None or event.job_id == job_id)

    await websocket.accept()
    async with state.hub.subscribe(accepts) as queue:
        receiver = asyncio.create_task(_drain(websocket))
        try:
            while True:
                getter = asyncio.create_task(queue.get())
                done, _ = await asyncio.wait(
                    {getter, receiver}, return_when=asyncio.FIRST_COMPLETED
                )
                if receiver in done:  # the client went away
                    getter.cancel()
                    return
                event = getter.result()
                if event is None:
                    await websocket.close(code=1001)
                    return
                await websocket.send_json(
                    {"type": "job.event", "event": event.model_dump(mode="json")}
                )
        except WebSocketDisconnect:
            return
        finally:
            receiver.cancel()
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect):
                await receiver


async def _drain(websocket: WebSocket) -> None:
    """Read (and ignore) client messages until it disconnects."""
    with contextlib.suppress(WebSocketDisconnect):
        while True:
            await websocket.receive_text()
