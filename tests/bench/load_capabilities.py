"""A capability for the load benchmarks, loaded into `aperture serve` through
`APERTURE_EXTRA_CAPABILITIES`: it waits for a go signal (an object the benchmark puts
in the store once its subscribers are connected), then writes `ticks` log lines at a
steady pace, so SSE subscribers have a known stream of live events to receive."""

from __future__ import annotations

import time

from pydantic import BaseModel, ConfigDict, Field

from common.capabilities import Context, capability


class TicksParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    go_key: str | None = Field(default=None, description="Start once this object exists.")
    wait_s: float = Field(default=600.0, ge=0, le=3600, description="Longest wait for it.")
    ticks: int = Field(default=10, ge=0, le=10_000)
    interval_s: float = Field(default=0.1, ge=0, le=10)


class TicksResult(BaseModel):
    ticks: int


@capability("bench.ticks", params=TicksParams, result=TicksResult)
def ticks(params: TicksParams, ctx: Context) -> TicksResult:
    """Wait for `go_key` (at most `wait_s`), then log `ticks` lines `interval_s` apart."""
    deadline = time.monotonic() + params.wait_s
    while params.go_key and not ctx.objects.exists(params.go_key):
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    for n in range(params.ticks):
        ctx.log(f"tick {n}")
        time.sleep(params.interval_s)
    return TicksResult(ticks=params.ticks)
