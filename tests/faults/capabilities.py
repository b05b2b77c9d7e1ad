"""A capability for fault tests, loaded into `aperture serve` through
`APERTURE_EXTRA_CAPABILITIES`: it writes a result file slowly, so a test can kill its
worker in the middle of the write."""

from __future__ import annotations

import io
import os
import time

from pydantic import BaseModel, ConfigDict, Field

from common.capabilities import Context, Resources, capability


class SlowResultParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    size_kib: int = Field(default=4096, ge=1)
    chunk_kib: int = Field(default=128, ge=1)
    delay_s: float = Field(default=0.05, ge=0)


class SlowResultResult(BaseModel):
    file_id: str
    attempt_pid: int


def result_bytes(size_kib: int) -> bytes:
    """The content every attempt writes (a test recomputes it to check the stored file)."""
    line = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ!?\n"  # 64 bytes
    return (line * 16)[:1024] * size_kib


class _Slow(io.RawIOBase):
    """Reads `data` a chunk at a time, pausing before each chunk."""

    def __init__(self, data: bytes, chunk: int, delay_s: float) -> None:
        self.data, self.chunk, self.delay_s, self.offset = data, chunk, delay_s, 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        time.sleep(self.delay_s)
        step = self.chunk if size < 0 else min(size, self.chunk)
        piece = self.data[self.offset : self.offset + step]
        self.offset += len(piece)
        return piece


@capability(
    "faults.slow_result",
    params=SlowResultParams,
    result=SlowResultResult,
    resources=Resources(retries=1),
)
def slow_result(params: SlowResultParams, ctx: Context) -> SlowResultResult:
    """Writes a result file of `size_kib` KiB, `chunk_kib` at a time with a pause: the
    first attempt slowly (a test kills it mid-write), a retry at once."""
    marker = f"tmp/faults/{os.environ.get('APERTURE_FAULTS_RUN', 'run')}/started"
    first = not ctx.objects.exists(marker)
    if first:
        ctx.objects.put_bytes(marker, b"1")
    ctx.progress(0.1, f"writing pid={os.getpid()}")
    data = result_bytes(params.size_kib)
    source = _Slow(data, params.chunk_kib * 1024, params.delay_s if first else 0.0)
    stored = ctx.save_file("result.txt", source)  # type: ignore[arg-type]
    return SlowResultResult(file_id=str(stored.id), attempt_pid=os.getpid())
