"""Capabilities for the client tests, loaded into their servers beside
tests.support.capabilities: a job that makes artefacts, and a slow, cancellable one that
takes a file (a batch input)."""

from __future__ import annotations

import time
import uuid

from pydantic import BaseModel, ConfigDict, Field

from common.capabilities import Context, capability
from common.errors import JobCancelled


class FileParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    file_id: uuid.UUID
    seconds: float = Field(default=0.0, ge=0, le=60)
    copies: int = Field(default=1, ge=0, le=5)


class Made(BaseModel):
    source_file_id: uuid.UUID
    report_file_id: uuid.UUID | None = None
    copy_file_ids: list[uuid.UUID] = Field(default_factory=list)


@capability("test.artefacts", params=FileParams, result=Made)
def artefacts(params: FileParams, ctx: Context) -> Made:
    """Writes a report and `copies` reversed copies of its input as new files."""
    stored = ctx.file(params.file_id)
    data = ctx.objects.get_bytes(stored.key)
    ctx.log(f"read {len(data)} bytes")
    report = ctx.save_file("report.txt", f"{stored.name} {len(data)}\n".encode())
    copies = [ctx.save_file(f"copy-{i}.txt", data[::-1]) for i in range(params.copies)]
    ctx.progress(1.0, "written")
    return Made(
        source_file_id=stored.id, report_file_id=report.id, copy_file_ids=[c.id for c in copies]
    )


@capability("test.slowfile", params=FileParams, result=Made)
def slow_file(params: FileParams, ctx: Context) -> Made:
    """Waits `seconds` (cancellable), reporting progress."""
    stored = ctx.file(params.file_id)
    start = time.monotonic()
    while (elapsed := time.monotonic() - start) < params.seconds:
        if ctx.cancelled():
            raise JobCancelled()
        ctx.progress(elapsed / params.seconds, f"{elapsed:.1f} s")
        time.sleep(0.05)
    return Made(source_file_id=stored.id)
