"""What a batch shows while it runs: on a terminal a live `rich` display (an overall bar,
then one row per input in flight with its status and progress from the job's events);
elsewhere plain lines, one per change of status, that log files and CI keep readably."""

from __future__ import annotations

import time
from typing import IO

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from client.batch.manifest import FINAL, PENDING, SUCCEEDED, Entry, Manifest

MAX_ROWS = 20


def _done(manifest: Manifest) -> tuple[int, int, int]:
    """(ended, succeeded, failed or cancelled) over the whole manifest."""
    ended = [e for e in manifest.entries if e.final]
    ok = sum(e.status == SUCCEEDED for e in ended)
    return len(ended), ok, len(ended) - ok


class LiveDisplay:
    """The rich display; `console` may be a recording console (tests)."""

    def __init__(self, console: Console | None = None, *, refresh_per_second: float = 4) -> None:
        self.console = console or Console()
        self.manifest: Manifest | None = None
        self.started = time.monotonic()
        self._live = Live(
            console=self.console,
            get_renderable=self.render,
            refresh_per_second=refresh_per_second,
            transient=False,
        )

    def start(self, manifest: Manifest) -> None:
        self.manifest = manifest
        self.started = time.monotonic()
        self._live.start()

    def changed(self, entry: Entry) -> None:
        self._live.refresh()

    def progressed(self, entry: Entry) -> None:
        pass  # the live display redraws on its own schedule

    def stop(self) -> None:
        self._live.stop()

    def render(self) -> RenderableType:
        if self.manifest is None:
            return Text("")
        manifest = self.manifest
        total = len(manifest.entries)
        ended, ok, bad = _done(manifest)
        active = [e for e in manifest.entries if not e.final and e.status != PENDING]
        elapsed = time.strftime("%M:%S", time.gmtime(time.monotonic() - self.started))
        head = Table.grid(padding=(0, 1))
        head.add_row(
            Text(f"{manifest.function}", style="bold"),
            ProgressBar(total=max(total, 1), completed=ended, width=40),
            Text(
                f"{ended}/{total} done · {ok} ok · {bad} failed · {len(active)} active · {elapsed}"
            ),
        )
        rows = Table(box=None, padding=(0, 1), show_header=bool(active))
        for column in ("input", "status", "progress", "job", "message"):
            rows.add_column(column, no_wrap=column != "message", overflow="ellipsis")
        for entry in active[:MAX_ROWS]:
            rows.add_row(
                entry.name,
                entry.status,
                ProgressBar(total=1.0, completed=entry.progress, width=20),
                (entry.job_id or "")[:8],
                entry.message or "",
            )
        if len(active) > MAX_ROWS:
            rows.add_row(f"... and {len(active) - MAX_ROWS} more", "", "", "", "")
        return Group(head, rows)


class PlainDisplay:
    """One line per change of status (no progress chatter)."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.manifest: Manifest | None = None

    def start(self, manifest: Manifest) -> None:
        self.manifest = manifest
        ended, _, _ = _done(manifest)
        line = f"{manifest.function}: {len(manifest.entries)} inputs, {ended} already done"
        print(line, file=self.stream, flush=True)

    def changed(self, entry: Entry) -> None:
        if self.manifest is None:
            return
        ended, _, _ = _done(self.manifest)
        detail = f" ({entry.error})" if entry.error else ""
        job = f" job {entry.job_id}" if entry.job_id and entry.status not in FINAL else ""
        print(
            f"[{ended}/{len(self.manifest.entries)}] {entry.name}: {entry.status}{job}{detail}",
            file=self.stream,
            flush=True,
        )

    def progressed(self, entry: Entry) -> None:
        pass

    def stop(self) -> None:
        pass


def summary(manifest: Manifest) -> Table:
    """The table a batch ends with: every input, its outcome, and why it failed."""
    table = Table(title=f"{manifest.function} batch: {manifest.path}")
    for column in ("input", "status", "job", "detail"):
        table.add_column(column, overflow="fold")
    for entry in manifest.entries:
        if entry.error:
            detail = f"{entry.stage}: {entry.error}" if entry.stage else entry.error
        elif entry.status == SUCCEEDED:
            count = len(entry.artefacts)
            detail = f"{count} file{'' if count == 1 else 's'} in {entry.name}/"
        else:
            detail = ""
        style = "green" if entry.status == SUCCEEDED else "red" if entry.final else "yellow"
        table.add_row(entry.name, Text(entry.status, style=style), entry.job_id or "", detail)
    counts = manifest.counts()
    table.caption = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    return table
