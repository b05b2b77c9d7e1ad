"""Small built-in capabilities: `checksum` of a stored file, and `noop` for probing and
benchmarking the job machinery itself."""

from __future__ import annotations

import hashlib
import time
import uuid

from pydantic import BaseModel, ConfigDict, Field

from common.capabilities import Context, Resources, capability
from common.errors import JobCancelled


class ChecksumParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    file_id: uuid.UUID = Field(description="The stored file to hash.")


class ChecksumResult(BaseModel):
    file_id: uuid.UUID
    sha256: str
    size: int


@capability(
    "checksum",
    params=ChecksumParams,
    result=ChecksumResult,
    resources=Resources(cpu=1, memory_mib=256, timeout_s=3600, retries=1),
)
def checksum(params: ChecksumParams, ctx: Context) -> ChecksumResult:
    """SHA-256 and size of a stored file, streamed in chunks with progress reported."""
    stored = ctx.file(params.file_id)
    digest = hashlib.sha256()
    done = 0
    for chunk in ctx.objects.iter_bytes(stored.key):
        digest.update(chunk)
        done += len(chunk)
        ctx.progress(done / stored.size if stored.size else 1.0, f"{done} of {stored.size} bytes")
        if ctx.cancelled():
            raise JobCancelled()
    return ChecksumResult(file_id=stored.id, sha256=digest.hexdigest(), size=done)


class NoopParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sleep_s: float = Field(default=0.0, ge=0, le=60, description="Seconds to wait (cancellable).")


class NoopResult(BaseModel):
    slept_s: float


@capability(
    "noop",
    params=NoopParams,
    result=NoopResult,
    resources=Resources(cpu=0.25, memory_mib=128, timeout_s=120),
)
def noop(params: NoopParams, ctx: Context) -> NoopResult:
    """Does nothing (optionally waits): measures and probes the job machinery."""
    start = time.monotonic()
    while (elapsed := time.monotonic() - start) < params.sleep_s:
        if ctx.cancelled():
            raise JobCancelled()
        time.sleep(min(0.05, params.sleep_s - elapsed))
    return NoopResult(slept_s=time.monotonic() - start)
