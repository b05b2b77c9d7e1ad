"""`aperture batch run | status | cancel`."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

from client import config
from client.api import AsyncClient
from client.batch import inputs as batch_inputs
from client.batch.display import LiveDisplay, PlainDisplay, summary
from client.batch.manifest import SUCCEEDED, Manifest
from client.batch.runner import BatchRunner, Display, cancel_jobs, merge, prepare, refresh
from client.errors import ApertureError, NotSignedIn


def _exit_code(manifest: Manifest) -> int:
    return 0 if manifest.entries and all(e.status == SUCCEEDED for e in manifest.entries) else 1


def _display(console: Console) -> Display:
    return LiveDisplay(console) if console.is_terminal else PlainDisplay(sys.stdout)


async def run_batch(
    client: AsyncClient, args: argparse.Namespace, display: Display, holder: list[Manifest]
) -> Manifest:
    """The whole batch; `holder` gets the manifest as soon as it exists, so an interrupt
    can still reach it."""
    params = json.loads(Path(args.params).read_text()) if args.params else {}
    if not isinstance(params, dict):
        raise ValueError(f"{args.params}: params must be a JSON object")
    manifest = await prepare(client, Path(args.manifest), args.function, params, Path(args.out))
    holder.append(manifest)
    found = await batch_inputs.resolve(args.inputs, client)
    todo = merge(manifest, found, retry_failed=args.retry_failed)
    runner = BatchRunner(
        client,
        manifest,
        display,
        concurrency=args.concurrency,
        upload_concurrency=args.upload_concurrency,
    )
    await runner.run(todo)
    return manifest


def cmd_batch_run(args: argparse.Namespace, console: Console | None = None) -> int:
    console = console or Console()
    holder: list[Manifest] = []

    async def go() -> Manifest:
        async with config.client_from_environment() as client:
            return await run_batch(client, args, _display(console), holder)

    try:
        manifest = asyncio.run(go())
    except KeyboardInterrupt:
        return _interrupted(holder, console)
    except NotSignedIn as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (ApertureError, httpx.HTTPError, OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    console.print(summary(manifest))
    return _exit_code(manifest)


def _interrupted(holder: list[Manifest], console: Console) -> int:
    """Ctrl-C: the manifest is made consistent; the user decides about submitted jobs."""
    if not holder:
        return 130
    manifest = holder[0]
    manifest.settle_interrupted()
    running = [e for e in manifest.entries if e.job_id and not e.final]
    if running and sys.stdin.isatty():
        answer = console.input(f"\nCancel the {len(running)} submitted jobs? [y/N] ")
        if answer.strip().lower() in ("y", "yes"):
            asyncio.run(_cancel(manifest))
            console.print(
                f"cancelled {len(running)} jobs; manifest {manifest.path} is up to date",
                soft_wrap=True,
            )
            return 130
    if running:
        console.print(
            f"\n{len(running)} jobs keep running. Rerun the same command to follow them, or "
            f"`aperture batch cancel {manifest.path}` to stop them.",
            soft_wrap=True,
        )
    return 130


async def _cancel(manifest: Manifest) -> int:
    async with config.client_from_environment() as client:
        return await cancel_jobs(client, manifest)


def cmd_batch_status(args: argparse.Namespace) -> int:
    manifest = Manifest.load(Path(args.manifest))

    async def go() -> None:
        async with config.client_from_environment() as client:
            await refresh(client, manifest)

    try:
        asyncio.run(go())
    except (ApertureError, httpx.HTTPError, OSError) as error:
        print(f"warning: showing the saved statuses ({error})", file=sys.stderr)
    Console().print(summary(manifest))
    return _exit_code(manifest)


def cmd_batch_cancel(args: argparse.Namespace) -> int:
    manifest = Manifest.load(Path(args.manifest))
    try:
        count = asyncio.run(_cancel(manifest))
    except (ApertureError, httpx.HTTPError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"asked {count} jobs to cancel; {manifest.path} updated")
    return 0


def register(commands: Any) -> None:
    batch = commands.add_parser(
        "batch", help="run one job per input file, resumably", description=__doc__
    ).add_subparsers(dest="batch_command", required=True)
    run = batch.add_parser("run", help="upload, submit, follow and download a batch")
    run.add_argument("--function", required=True, help="the function every input runs")
    run.add_argument("--params", help="JSON file of the parameters every job shares")
    run.add_argument(
        "--inputs",
        required=True,
        help="a glob ('data/*.nd2'), a file listing paths, or dataset:<id>",
    )
    run.add_argument("--out", required=True, help="artefacts go to OUT/<input name>/")
    run.add_argument("--manifest", required=True, help="JSON file recording progress (resumable)")
    run.add_argument("--concurrency", type=int, default=4, help="inputs in flight at once")
    run.add_argument(
        "--upload-concurrency", type=int, default=None, help="parts in flight per upload"
    )
    run.add_argument("--retry-failed", action="store_true", help="resubmit inputs that failed")
    run.set_defaults(run=cmd_batch_run)
    status = batch.add_parser("status", help="show a batch's manifest, statuses refreshed")
    status.add_argument("manifest", help="the batch's manifest (JSON)")
    status.set_defaults(run=cmd_batch_status)
    cancel = batch.add_parser("cancel", help="cancel a batch's unfinished jobs")
    cancel.add_argument("manifest", help="the batch's manifest (JSON)")
    cancel.set_defaults(run=cmd_batch_cancel)
