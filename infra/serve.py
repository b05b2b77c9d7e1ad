"""`aperture serve`: one serve process that owns the data directory, N web processes.

The serve process (the one started from the shell):

1. takes the data directory's lock (`common.datadir`) before anything else: a second
   server on the same directory is refused with one line and exit status 1, having
   touched nothing;
2. binds the listening socket (so the public URL can follow the real port) and logs the
   public URL;
3. migrates the embedded database, then runs what must exist once per data directory:
   the local executor's supervisor (restart recovery, the worker pool) and the periodic
   cleanup;
4. starts `web_workers` web processes (spawned, like the job workers). Each serves the
   same listening socket with uvicorn; its app builds its own runtime and event hub, and
   a `SupervisorLink` instead of an executor: jobs it records are rung in to the
   supervisor over a Unix datagram socket, and its `/health` reads the supervisor's
   shared `StatusBoard`. Caches of rendered tiles are per process, so each process gets
   `1/web_workers` of the configured budgets;
5. on SIGTERM or SIGINT stops the web processes (uvicorn's graceful shutdown), then the
   executor, and gives the directory up. A web process that dies is replaced.

With the Modal executor the web processes talk to Modal themselves (its supervisor is
built to run in several replicas) and the serve process only migrates and cleans up.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import signal
import socket
import sys
import threading
import time
from multiprocessing.process import BaseProcess
from typing import Any

from common.datadir import DataDirBusy, DataDirLock
from common.settings import Settings

log = logging.getLogger("aperture.serve")

#: A web process that exits sooner than this after its start is broken, not unlucky:
#: the server stops instead of restarting it forever.
MIN_WEB_LIFE_S = 10.0
#: Seconds a web process gets to finish its requests after SIGTERM.
GRACEFUL_S = 10


def default_web_workers() -> int:
    """Half the CPUs, 1 to 8. The job workers need the other half. On a small machine one
    web process serves tiles faster than two (tests/bench/bench_tiles.py --http on 2
    busy cores: cold 3.8x and 2.6x the peer with one, 3.2x and 2.3x with two, and a worse
    p99): the rendering runs off the GIL on a thread pool, and a second process mostly
    adds its own decoded-tile cache to fill. With several, rendered tiles are shared
    through the data directory (`functions.slides.tile_files`), so warm tiles stay warm."""
    return max(1, min(8, (os.cpu_count() or 2) // 2))


def public_url_for(host: str, port: int) -> str:
    """The URL clients reach a server bound to (host, port) on. A wildcard address has no
    single answer; the machine's name is the best guess (set APERTURE_PUBLIC_URL)."""
    if host in {"0.0.0.0", "::", ""}:
        host = socket.gethostname()
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def serve(settings: Settings, *, host: str, port: int, web_workers: int | None) -> int:
    """Run the server until SIGTERM/SIGINT; the exit status."""
    try:
        lock = DataDirLock.acquire(settings.data_dir)
    except DataDirBusy as busy:
        print(f"aperture serve: {busy}", file=sys.stderr)
        return 1
    try:
        listener = _listen(host, port)
    except OSError as error:
        lock.release()
        print(f"aperture serve: cannot listen on {host}:{port}: {error.strerror}", file=sys.stderr)
        return 1
    bound_port = int(listener.getsockname()[1])
    if "public_url" not in settings.model_fields_set:
        settings = settings.model_copy(update={"public_url": public_url_for(host, bound_port)})
    processes = web_workers or settings.web_workers or default_web_workers()
    try:
        return _Server(settings, listener, processes, lock).run(host, bound_port)
    finally:
        listener.close()
        lock.release()


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)  # connections wait in the backlog until a web process accepts
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


class _Server:
    """The serve process's state: the runtime, the executor, the web processes."""

    def __init__(
        self, settings: Settings, listener: socket.socket, web_workers: int, lock: DataDirLock
    ) -> None:
        self.settings = settings
        self.listener = listener
        self.web_workers = web_workers
        self.lock = lock
        self.stopping = threading.Event()
        self.context = mp.get_context("spawn")

    def __repr__(self) -> str:
        return f"_Server(web_workers={self.web_workers}, public_url={self.settings.public_url!r})"

    def run(self, host: str, port: int) -> int:
        from common.executors.link import StatusBoard, doorbell
        from common.records import migrate
        from common.runtime import Runtime

        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: self.stopping.set())
        runtime = Runtime.from_settings(self.settings)
        executor: Any = None
        receiver, ringer = doorbell()
        board = StatusBoard()
        local = self.settings.executor == "local"
        web = _WebProcesses(
            self.context,
            _per_process(self.settings, self.web_workers),
            self.listener,
            (ringer, board) if local else None,
        )
        try:
            if self.settings.database_url is None:
                migrate(runtime.engine)
            # The web processes first: they are what a user waits for, and a job they
            # record before the supervisor runs waits in the doorbell's buffer.
            web.start(self.web_workers)
            if local:
                from common.executors.local import LocalExecutor

                executor = LocalExecutor(runtime, owner=self.lock, doorbell=receiver, board=board)
                executor.start()
            cleanup = threading.Thread(target=self._cleanup, args=(runtime,), daemon=True)
            cleanup.start()
            log.info(
                "aperture serving at %s (listening on %s:%s, %d web processes)",
                self.settings.public_url,
                host,
                port,
                self.web_workers,
                extra={
                    "public_url": self.settings.public_url,
                    "listen": f"{host}:{port}",
                    "web_workers": self.web_workers,
                    "executor": self.settings.executor,
                    "workers": self.settings.workers,
                    "data_dir": str(self.settings.data_dir.resolve()),
                },
            )
            return web.watch(self.stopping)
        finally:
            self.stopping.set()
            web.stop()
            if executor is not None:
                executor.stop()
            receiver.close()
            ringer.close()
            runtime.close()

    def _cleanup(self, runtime: Any) -> None:
        """The periodic cleanup pass, once per server (not once per web process)."""
        from functions.cleanup import run_cleanup

        interval = self.settings.cleanup_interval_s
        if interval <= 0:
            return
        while not self.stopping.wait(interval):
            try:
                report = run_cleanup(runtime)
                log.info("cleanup", extra={"report": report.model_dump()})
            except Exception:  # the next round tries again; the server keeps serving
                log.exception("cleanup failed")


class _WebProcesses:
    """The web processes: started, replaced when one dies, stopped on a signal."""

    def __init__(
        self, context: Any, settings: Settings, listener: socket.socket, link: Any
    ) -> None:
        self.context = context
        self.settings = settings
        self.listener = listener
        self.link = link
        self.started: dict[BaseProcess, float] = {}

    def __repr__(self) -> str:
        return f"_WebProcesses({len(self.started)})"

    def start(self, count: int = 1) -> None:
        for _ in range(count):
            process = self.context.Process(
                target=web_process_main,
                args=(self.settings, self.listener, self.link),
                name="aperture-web",
            )
            process.start()
            self.started[process] = time.monotonic()

    def watch(self, stopping: threading.Event) -> int:
        """Replace any web process that dies until `stopping`; the exit status (1 when
        one died at once after its start: broken, not unlucky)."""
        while not stopping.wait(0.2):
            for process, since in list(self.started.items()):
                if process.is_alive():
                    continue
                del self.started[process]
                lived = time.monotonic() - since
                log.error(
                    "web process %s exited with code %s after %.1f s",
                    process.pid,
                    process.exitcode,
                    lived,
                )
                if lived < MIN_WEB_LIFE_S:
                    return 1
                self.start()
        return 0

    def stop(self) -> None:
        _stop_all(list(self.started))
        self.started.clear()


def _per_process(settings: Settings, web_workers: int) -> Settings:
    """Settings for one web process: the tile caches' budgets shared among them all."""
    tiles = settings.tiles
    shared = tiles.model_copy(
        update={
            "cache_bytes": tiles.cache_bytes // web_workers,
            "decoded_cache_bytes": tiles.decoded_cache_bytes // web_workers,
        }
    )
    return settings.model_copy(update={"tiles": shared})


def _stop_all(processes: list[BaseProcess]) -> None:
    for process in processes:
        if process.is_alive() and process.pid:
            os.kill(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + GRACEFUL_S + 5
    for process in processes:
        process.join(timeout=max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join(timeout=2)


def web_process_main(
    settings: Settings, listener: socket.socket, link: tuple[socket.socket, Any] | None
) -> None:
    """One web process: the app on the shared listening socket, until SIGTERM."""
    import uvicorn

    from common.executors.link import SupervisorLink
    from common.logs import configure_logging
    from functions.slides.vips import one_thread_per_operation
    from web.app import create_app

    configure_logging(settings.log_format, settings.log_level)
    one_thread_per_operation()  # tiles render one per request thread; jobs run elsewhere
    executor = None
    if link is not None:
        ringer, board = link
        executor = lambda _runtime: SupervisorLink(ringer, board)  # noqa: E731
    app = create_app(settings, migrate_on_start=False, executor=executor, housekeeping=False)
    config = uvicorn.Config(
        app, log_config=None, timeout_graceful_shutdown=GRACEFUL_S, access_log=False
    )
    # uvicorn's signal handlers stop it gracefully: on Ctrl-C (the whole process group
    # gets SIGINT) and on the serve process's SIGTERM.
    uvicorn.Server(config).run(sockets=[listener])
