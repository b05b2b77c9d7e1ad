"""The user verbs of the `aperture` command: they talk to a server over HTTP with the
client, and import nothing from the server's packages.

`register(commands)` adds them to the `aperture` parser (infra/cli.py).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import httpx

from client import config
from client.api import AsyncClient
from client.auth import ApiKey, Credential, PasswordLogin, SupabaseLogin, Tokens
from client.batch import command as batch_command
from client.errors import ApertureError, NotSignedIn
from client.models import Job, JobEvent

USER_VERBS = ("login", "upload", "submit", "jobs", "download", "cancel", "batch")


def run_async(work: Callable[[AsyncClient], Coroutine[Any, Any, int]]) -> int:
    """Run `work` with the configured client; client errors become one line and exit 1."""

    async def go() -> int:
        async with config.client_from_environment() as client:
            return await work(client)

    try:
        return asyncio.run(go())
    except NotSignedIn as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (ApertureError, httpx.HTTPError, OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


# login ---------------------------------------------------------------------------------


def cmd_login(args: argparse.Namespace) -> int:
    url = args.url.rstrip("/")
    tokens: list[Tokens] = []
    credential: Credential
    if args.api_key_stdin:
        auth: dict[str, Any] = {"kind": "api_key", "key": sys.stdin.readline().strip()}
        credential = ApiKey(auth["key"])
    elif args.email:
        password = sys.stdin.readline().rstrip("\n") if args.password_stdin else getpass.getpass()
        if args.supabase_url:
            auth = {
                "kind": "supabase",
                "supabase_url": args.supabase_url,
                "supabase_key": args.supabase_key,
                "email": args.email,
            }
            credential = SupabaseLogin(
                args.supabase_url, args.supabase_key, args.email, password, on_tokens=tokens.append
            )
        else:
            auth = {"kind": "password", "email": args.email}
            credential = PasswordLogin(args.email, password, on_tokens=tokens.append)
    else:
        print(
            "error: give --email (with --password-stdin or a prompt) or --api-key-stdin",
            file=sys.stderr,
        )
        return 2

    async def check() -> dict[str, Any]:
        async with AsyncClient(url, credential) as client:
            return await client.me()

    try:
        me = asyncio.run(check())
    except (ApertureError, httpx.HTTPError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if tokens:
        auth["refresh_token"] = tokens[-1].refresh_token
    path = config.save({"url": url, "auth": auth})
    print(f"signed in to {url} as {me.get('email') or me['id']} (saved in {path})")
    return 0


# one-off verbs ---------------------------------------------------------------------------


def cmd_upload(args: argparse.Namespace) -> int:
    async def work(client: AsyncClient) -> int:
        for path in args.files:
            result = await client.upload(
                path, force=args.force, dataset_id=args.dataset, concurrency=args.concurrency
            )
            how = "already stored" if result.skipped else f"{result.sent_bytes} bytes sent"
            print(f"{result.file.id}  {result.file.name}  ({how})")
        return 0

    return run_async(work)


def _read_params(path: str | None) -> dict[str, Any]:
    if path is None:
        return {}
    text = sys.stdin.read() if path == "-" else Path(path).read_text()
    params = json.loads(text)
    if not isinstance(params, dict):
        raise ValueError(f"{path}: params must be a JSON object")
    return params


def _print_event(event: JobEvent) -> None:
    if event.kind == "log" and event.message:
        print(f"  log: {event.message}")
    elif event.kind == "status":
        print(f"  {event.status}")
    elif event.progress is not None:
        message = f" {event.message}" if event.message else ""
        print(f"  {event.progress:6.1%}{message}")


def _outcome(job: Job) -> int:
    reason = f": {job.error.type}: {job.error.message}" if job.error else ""
    print(f"{job.id} {job.status}{reason}")
    if job.result is not None:
        print(json.dumps(job.result, indent=1))
    return 0 if job.status == "succeeded" else 1


def cmd_submit(args: argparse.Namespace) -> int:
    async def work(client: AsyncClient) -> int:
        job = await client.submit(args.function, _read_params(args.params), name=args.name)
        print(f"{job.id} {job.status}")
        if not args.wait:
            return 0
        return _outcome(await client.wait(job.id, on_event=_print_event))

    return run_async(work)


def _job_line(job: Job) -> str:
    when = job.created_at.strftime("%Y-%m-%d %H:%M:%S") if job.created_at else ""
    name = job.name or ""
    return f"{job.id}  {job.status:<10} {job.progress:6.1%}  {job.function:<16} {when}  {name}"


def cmd_jobs(args: argparse.Namespace) -> int:
    async def work(client: AsyncClient) -> int:
        seen: dict[str, tuple[str, float]] = {}
        while True:
            page = await client.jobs(status=args.status, limit=args.limit)
            for job in page.items:
                if seen.get(job.id) != (job.status, job.progress):
                    seen[job.id] = (job.status, job.progress)
                    print(_job_line(job), flush=True)
            if not args.watch:
                print(f"{len(page.items)} of {page.total} jobs")
                return 0
            await asyncio.sleep(args.interval)

    try:
        return run_async(work)
    except KeyboardInterrupt:
        return 0


def cmd_download(args: argparse.Namespace) -> int:
    async def work(client: AsyncClient) -> int:
        job = await client.job(args.job_id)
        for path in await client.download_artefacts(job, Path(args.out)):
            print(path)
        return 0

    return run_async(work)


def cmd_cancel(args: argparse.Namespace) -> int:
    async def work(client: AsyncClient) -> int:
        job = await client.cancel(args.job_id)
        print(f"{job.id} {job.status}")
        return 0

    return run_async(work)


# the parser ------------------------------------------------------------------------------


def _add(commands: Any, name: str, run: Callable[[argparse.Namespace], int], help: str) -> Any:
    parser = commands.add_parser(name, help=help, description=help)
    parser.set_defaults(run=run)
    return parser


def register(commands: Any) -> None:
    """Add the user verbs to the `aperture` command's subparsers."""
    login = _add(commands, "login", cmd_login, "sign in to a server and save the credential")
    login.add_argument("--url", required=True, help="the server, e.g. https://aperture.example")
    login.add_argument("--email", help="a local account's email (password login)")
    login.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    login.add_argument("--api-key-stdin", action="store_true", help="read an API key from stdin")
    login.add_argument("--supabase-url", help="sign in through this Supabase project")
    login.add_argument("--supabase-key", help="the Supabase project's anon (publishable) key")

    upload = _add(commands, "upload", cmd_upload, "upload files (skips ones already stored)")
    upload.add_argument("files", nargs="+", type=Path, help="files to upload")
    upload.add_argument("--force", action="store_true", help="upload even if already stored")
    upload.add_argument("--dataset", help="put the files in this dataset")
    upload.add_argument("--concurrency", type=int, default=8, help="parts in flight at once")

    submit = _add(commands, "submit", cmd_submit, "submit a job")
    submit.add_argument("function", help="a function from GET /functions, e.g. metadata")
    submit.add_argument("--params", help="a JSON file of parameters ('-': stdin)")
    submit.add_argument("--name", help="a name for the job")
    submit.add_argument("--wait", action="store_true", help="follow it to its end")

    jobs = _add(commands, "jobs", cmd_jobs, "list your jobs")
    jobs.add_argument("--status", help="only jobs in this status (queued, running, ...)")
    jobs.add_argument("--limit", type=int, default=50, help="how many, newest first")
    jobs.add_argument("--watch", action="store_true", help="keep printing changes (Ctrl-C ends)")
    jobs.add_argument("--interval", type=float, default=2.0, help=argparse.SUPPRESS)

    download = _add(commands, "download", cmd_download, "download a job's artefacts")
    download.add_argument("job_id", help="the job whose artefacts to fetch")
    download.add_argument("--out", required=True, help="folder to write them into")

    cancel = _add(commands, "cancel", cmd_cancel, "cancel a job")
    cancel.add_argument("job_id", help="the job to cancel")

    batch_command.register(commands)
