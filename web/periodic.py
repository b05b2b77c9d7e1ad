"""Housekeeping the server runs on a timer: the `cleanup` pass (expired uploads, deleted
files' bytes, old temporary objects). Idempotent and safe beside other runs."""

from __future__ import annotations

import asyncio
import logging

from starlette.concurrency import run_in_threadpool

from common.runtime import Runtime
from functions.cleanup import run_cleanup

log = logging.getLogger("aperture.periodic")


async def cleanup_forever(runtime: Runtime, interval_s: float) -> None:
    """Run cleanup every `interval_s` seconds (the first run one interval after start)."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            report = await run_in_threadpool(run_cleanup, runtime)
            log.info("cleanup", extra={"report": report.model_dump()})
        except Exception:  # the next round tries again; the server keeps serving
            log.exception("cleanup failed")
