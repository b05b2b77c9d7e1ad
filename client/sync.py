"""`Client`: the blocking face of `AsyncClient`.

There is one implementation, the async one. `Client` owns a private event loop running
in a daemon thread and hands each call's coroutine to it, the way Modal's client
(synchronicity) does. So a sync caller gets the same parallel uploads, SSE and retries,
it works the same from a thread, a notebook or a script with its own running loop, and
nothing is written twice. Callbacks (`progress`, `on_event`) run on that loop's thread.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from concurrent.futures import Future
from pathlib import Path
from types import TracebackType
from typing import Any, Concatenate, ParamSpec, TypeVar

from client.api import AsyncClient
from client.auth import Credential

P = ParamSpec("P")
R = TypeVar("R")


class _LoopThread:
    """An event loop in a daemon thread; `run` blocks the caller until a coroutine ends."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="aperture-client", daemon=True
        )
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, R]) -> R:
        future: Future[R] = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()  # Ctrl-C in the caller stops the work too
            raise

    def close(self) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=10)
        self.loop.close()


def _blocking(
    method: Callable[Concatenate[AsyncClient, P], Awaitable[R]],
) -> Callable[Concatenate[Client, P], R]:
    @functools.wraps(method)
    def call(self: Client, *args: P.args, **kwargs: P.kwargs) -> R:
        async def go() -> R:
            return await method(self._async, *args, **kwargs)

        return self._loop.run(go())

    return call


def _blocking_iter(
    method: Callable[Concatenate[AsyncClient, P], AsyncIterator[R]],
) -> Callable[Concatenate[Client, P], Iterator[R]]:
    @functools.wraps(method)
    def call(self: Client, *args: P.args, **kwargs: P.kwargs) -> Iterator[R]:
        iterator = method(self._async, *args, **kwargs)

        async def step() -> tuple[bool, R | None]:
            try:
                return True, await iterator.__anext__()
            except StopAsyncIteration:
                return False, None

        try:
            while True:
                more, item = self._loop.run(step())
                if not more:
                    return
                yield item  # type: ignore[misc]
        finally:
            self._loop.run(iterator.aclose())  # type: ignore[attr-defined]

    return call


class Client:
    """A typed, blocking client of the Aperture HTTP API (see `AsyncClient`).

    >>> with Client("http://127.0.0.1:8000", ApiKey(key)) as aperture:  # doctest: +SKIP
    ...     file = aperture.upload("stack.nd2").file
    ...     job = aperture.run("metadata", {"file_id": file.id})
    """

    def __init__(
        self,
        url: str,
        credential: Credential | None = None,
        *,
        timeout: float = 60.0,
        part_concurrency: int = 8,
        state_dir: Path | None = None,
        retries: int = 3,
    ) -> None:
        self._loop = _LoopThread()
        self._async = AsyncClient(
            url,
            credential,
            timeout=timeout,
            part_concurrency=part_concurrency,
            state_dir=state_dir,
            retries=retries,
        )

    def __repr__(self) -> str:
        return f"Client({self.url!r}, {self._async.transport.credential!r})"

    @property
    def url(self) -> str:
        return self._async.url

    @property
    def aio(self) -> AsyncClient:
        """The async client underneath (its coroutines run on this client's loop only)."""
        return self._async

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if not self._loop.loop.is_closed():
            self._loop.run(self._async.aclose())
            self._loop.close()

    me = _blocking(AsyncClient.me)
    create_api_key = _blocking(AsyncClient.create_api_key)
    functions = _blocking(AsyncClient.functions)
    function = _blocking(AsyncClient.function)
    check_params = _blocking(AsyncClient.check_params)
    upload = _blocking(AsyncClient.upload)
    import_path = _blocking(AsyncClient.import_path)
    find_file = _blocking(AsyncClient.find_file)
    file = _blocking(AsyncClient.file)
    files = _blocking(AsyncClient.files)
    dataset_files = _blocking(AsyncClient.dataset_files)
    download = _blocking(AsyncClient.download)
    submit = _blocking(AsyncClient.submit)
    job = _blocking(AsyncClient.job)
    jobs = _blocking(AsyncClient.jobs)
    cancel = _blocking(AsyncClient.cancel)
    wait = _blocking(AsyncClient.wait)
    run = _blocking(AsyncClient.run)
    download_artefacts = _blocking(AsyncClient.download_artefacts)
    events = _blocking_iter(AsyncClient.events)
    logs = _blocking_iter(AsyncClient.logs)
