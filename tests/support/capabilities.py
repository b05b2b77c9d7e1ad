"""Capabilities that misbehave on purpose, loaded into test servers through
`APERTURE_EXTRA_CAPABILITIES` to exercise failure handling of the real executor."""

from __future__ import annotations

import ctypes
import os
import signal
import time

from pydantic import BaseModel, ConfigDict, Field

from common.capabilities import Context, Resources, capability
from common.errors import InvalidInput


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seconds: float = 0.0
    children: int = Field(default=0, ge=0, le=50)
    exit_code: int = 3
    #: test.fanout: spawn the children only once this object exists (the test's go).
    go_key: str | None = None


class Result(BaseModel):
    value: int = 0
    children: list[str] = Field(default_factory=list)


@capability("test.exit", params=Params, result=Result)
def exit_hard(params: Params, ctx: Context) -> Result:
    """Ends the worker process without unwinding, as a crash in C code would."""
    ctx.log("about to exit")
    os._exit(params.exit_code)


@capability("test.segfault", params=Params, result=Result)
def segfault(params: Params, ctx: Context) -> Result:
    """Dereferences NULL."""
    ctypes.string_at(0)
    return Result()


@capability("test.fail", params=Params, result=Result)
def fail(params: Params, ctx: Context) -> Result:
    """Raises a domain error."""
    raise InvalidInput("this input is refused on purpose")


@capability("test.fail.retried", params=Params, result=Result, resources=Resources(retries=1))
def fail_retried(params: Params, ctx: Context) -> Result:
    """Raises a domain error on every attempt (it has one retry)."""
    raise InvalidInput("this input is refused on every attempt")


@capability("test.bug", params=Params, result=Result)
def bug(params: Params, ctx: Context) -> Result:
    """Raises an unexpected exception."""
    return Result(value=1 // 0)


@capability("test.flaky", params=Params, result=Result, resources=Resources(retries=1))
def flaky(params: Params, ctx: Context) -> Result:
    """Crashes its first attempt only (a marker object remembers)."""
    marker = f"test/flaky/{ctx.job_id}"
    if not ctx.objects.exists(marker):
        ctx.objects.put_bytes(marker, b"crashed once")
        os._exit(9)
    return Result(value=2)


@capability("test.stubborn", params=Params, result=Result)
def stubborn(params: Params, ctx: Context) -> Result:
    """Ignores cancellation: only a hard kill stops it."""
    time.sleep(params.seconds)
    return Result()


@capability("test.freeze", params=Params, result=Result)
def freeze(params: Params, ctx: Context) -> Result:
    """Stops its own process (heartbeat thread included), like a hung machine."""
    os.kill(os.getpid(), signal.SIGSTOP)
    return Result()


@capability("test.slow", params=Params, result=Result, resources=Resources(timeout_s=1))
def slow(params: Params, ctx: Context) -> Result:
    """Outlives its 1 s timeout."""
    time.sleep(params.seconds)
    return Result()


@capability("test.fanout", params=Params, result=Result)
def fanout(params: Params, ctx: Context) -> Result:
    """Spawns `children` noop jobs (once `go_key` exists, if given) and waits for them."""
    while params.go_key is not None and not ctx.objects.exists(params.go_key):
        time.sleep(0.01)
    ids = [ctx.spawn("noop", {"sleep_s": params.seconds}) for _ in range(params.children)]
    outcomes = ctx.gather(ids)
    ctx.progress(1.0, "children done")
    return Result(
        value=sum(o.status == "succeeded" for o in outcomes), children=[str(i) for i in ids]
    )
