"""The `aperture` command: serve the API, migrate the database, operator tasks, and the
user verbs of the Python client (client/cli.py)."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from common.settings import Settings

if TYPE_CHECKING:
    from common.runtime import Runtime


def _settings(**overrides: Any) -> Settings:
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


@contextlib.contextmanager
def _runtime() -> Iterator[Runtime]:
    """The configured runtime for one command; the embedded database is migrated first."""
    from common.records import migrate
    from common.runtime import Runtime

    runtime = Runtime.from_settings(_settings())
    try:
        if runtime.settings.database_url is None:
            migrate(runtime.engine)
        yield runtime
    finally:
        runtime.close()


def cmd_serve(args: argparse.Namespace) -> int:
    """The API server: see `infra.serve` for its processes."""
    from common.logs import configure_logging
    from infra.serve import serve

    settings = _settings(workers=args.workers)
    configure_logging(settings.log_format, settings.log_level)
    return serve(settings, host=args.host, port=args.port, web_workers=args.web_workers)


def cmd_migrate(args: argparse.Namespace) -> int:
    from common.records import make_engine, migrate

    settings = _settings()
    engine = make_engine(settings.resolved_database_url)
    try:
        migrate(engine, args.revision)
    finally:
        engine.dispose()
    print(f"database at revision {args.revision}: {engine.url.render_as_string()}")
    return 0


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    import getpass

    first = getpass.getpass("Password: ")
    if getpass.getpass("Repeat password: ") != first:
        raise SystemExit("the passwords differ")
    return first


def cmd_users_create(args: argparse.Namespace) -> int:
    from common.errors import ApertureError
    from common.identity import Identity

    with _runtime() as runtime:
        identity = Identity.from_runtime(runtime)
        try:
            user = identity.accounts.create_user(
                args.email, _read_password(args), role="admin" if args.admin else "user"
            )
        except ApertureError as error:
            print(f"error: {error.message}", file=sys.stderr)
            return 1
        identity.audit.record(
            "user.created",
            actor=None,
            target_type="user",
            target_id=user.id,
            via="cli",
            role=user.role,
        )
        print(f"created {user.role} {user.email} ({user.id})")
        return 0


def cmd_cleanup(args: argparse.Namespace) -> int:
    from functions.cleanup import run_cleanup

    with _runtime() as runtime:
        report = run_cleanup(
            runtime, upload_expiry_s=args.upload_expiry_s, tmp_ttl_s=args.tmp_ttl_s
        )
    print(report.model_dump_json())
    return 1 if report.errors else 0


def cmd_demo_timelapse(args: argparse.Namespace) -> int:
    from functions.microscopy.synthetic import write_timelapse

    paths = write_timelapse(
        args.out, fovs=args.fovs, frames=args.frames, size=args.size, seed=args.seed
    )
    print(f"wrote {paths}")
    return 0


def cmd_demo_slide(args: argparse.Namespace) -> int:
    from functions.slides.synthetic import write_synthetic_slide

    write_synthetic_slide(
        args.out,
        width=args.width,
        height=args.height,
        tile=args.tile,
        levels=args.levels,
        seed=args.seed,
    )
    print(f"wrote {args.out}")
    return 0


_GROUPS = """\
server commands (run where the server runs):
  serve, migrate, users, demo-data, cleanup
user commands (talk to a server over HTTP; `aperture login` first, or APERTURE_URL):
  login, upload, submit, jobs, download, cancel, batch
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aperture",
        description=__doc__,
        epilog=_GROUPS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the API server (embedded defaults)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--workers",
        type=int,
        default=None,
        help="local worker processes (default: APERTURE_WORKERS or 2)",
    )
    serve.add_argument(
        "--web-workers",
        type=int,
        default=None,
        help="web processes (default: APERTURE_WEB_WORKERS, or half the CPUs, 1 to 8)",
    )
    serve.set_defaults(run=cmd_serve)

    mig = commands.add_parser("migrate", help="apply database migrations")
    mig.add_argument("--revision", default="head")
    mig.set_defaults(run=cmd_migrate)

    users = commands.add_parser("users", help="manage accounts").add_subparsers(
        dest="users_command", required=True
    )
    create = users.add_parser("create", help="create an account (there is no default one)")
    create.add_argument("--email", required=True)
    create.add_argument("--admin", action="store_true", help="give it the admin role")
    create.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from standard input instead of prompting",
    )
    create.set_defaults(run=cmd_users_create)

    clean = commands.add_parser(
        "cleanup",
        help="abort stale multipart uploads, purge deleted "
        "files and expired tmp/ objects; prints the report as JSON",
    )
    clean.add_argument(
        "--upload-expiry-s", type=int, default=None, help="default: APERTURE_UPLOAD_EXPIRY_S"
    )
    clean.add_argument("--tmp-ttl-s", type=int, default=None, help="default: APERTURE_TMP_TTL_S")
    clean.set_defaults(run=cmd_cleanup)

    demo = commands.add_parser(
        "demo-data", help="write synthetic data with ground truth"
    ).add_subparsers(dest="demo_command", required=True)
    timelapse = demo.add_parser("timelapse", help="multi-FOV OME-TIFF time-lapse + truth JSON")
    timelapse.add_argument("out", help="output folder")
    timelapse.add_argument("--fovs", type=int, default=4)
    timelapse.add_argument("--frames", type=int, default=60)
    timelapse.add_argument("--size", type=int, default=512)
    timelapse.add_argument("--seed", type=int, default=0)
    timelapse.set_defaults(run=cmd_demo_timelapse)
    slide = demo.add_parser("slide", help="SVS-like pyramidal JPEG TIFF")
    slide.add_argument("out", help="output file, e.g. out.svs")
    slide.add_argument("--width", type=int, default=50_000)
    slide.add_argument("--height", type=int, default=40_000)
    slide.add_argument("--tile", type=int, default=256)
    slide.add_argument("--levels", type=int, default=4)
    slide.add_argument("--seed", type=int, default=0)
    slide.set_defaults(run=cmd_demo_slide)

    from client.cli import register as register_user_verbs  # the client's own verbs

    register_user_verbs(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
