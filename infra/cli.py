"""The `aperture` command: serve the API, migrate the database, operator tasks, and the
user verbs of the Python client (client/cli.py)."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from common.settings import Settings

if TYPE_CHECKING:
    from common.runtime import Runtime


class CommandError(Exception):
    """A user's mistake a command found (a bad value, a missing folder): `main` prints
    it as one line and exits 1, without a traceback."""


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Help that shows each option's default (when it has a meaningful one)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        shown = not (action.default is None or action.default is False) and (
            action.default != argparse.SUPPRESS
        )
        if shown and action.option_strings and "%(default)" not in text:
            text += " (default: %(default)s)"
        return text


class _Parser(argparse.ArgumentParser):
    """Every (sub)command's parser: defaults in --help, and a usage mistake reported as
    one line (argparse's own answer is a usage block, then the error)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def at_least(low: int) -> Callable[[str], int]:
    """An argparse type: an integer no smaller than `low`."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


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
    from infra.malloc import bound_malloc_arenas
    from infra.serve import serve

    bound_malloc_arenas()  # before any thread or web process exists
    settings = _settings(workers=args.workers)
    configure_logging(settings.log_format, settings.log_level)
    return serve(settings, host=args.host, port=args.port, web_workers=args.web_workers)


def cmd_migrate(args: argparse.Namespace) -> int:
    from alembic.util import CommandError as AlembicError
    from sqlalchemy.exc import SQLAlchemyError

    from common.records import make_engine, migrate

    settings = _settings()
    engine = make_engine(settings.resolved_database_url)
    try:
        migrate(engine, args.revision)
    except AlembicError as error:  # an unknown revision, a broken migration history
        raise CommandError(f"cannot migrate to {args.revision!r}: {error}") from None
    except SQLAlchemyError as error:
        raise CommandError(f"cannot reach the database: {error.__class__.__name__}") from None
    finally:
        engine.dispose()
    print(f"database at revision {args.revision}: {engine.url.render_as_string()}")
    return 0


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    if not sys.stdin.isatty():
        raise CommandError(
            "no terminal to ask for the password on: pipe it in with --password-stdin"
        )
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

    try:
        paths = write_timelapse(
            args.out, fovs=args.fovs, frames=args.frames, size=args.size, seed=args.seed
        )
    except (ValueError, OSError) as error:
        raise CommandError(str(error)) from None
    for path in paths:
        print(path)
    return 0


#: What `demo-data slide` writes: a TIFF (SVS is TIFF with Aperio's description).
SLIDE_SUFFIXES = (".svs", ".tif", ".tiff")


def _slide_out(name: str) -> Path:
    """Where a demo slide goes, refused with one line when it cannot be a slide there."""
    out = Path(name)
    if out.suffix.lower() not in SLIDE_SUFFIXES:
        raise CommandError(
            f"{out.name}: a slide is written as {', '.join(SLIDE_SUFFIXES)} (a pyramidal TIFF)"
        )
    if not out.parent.is_dir():
        raise CommandError(f"folder {out.parent} does not exist")
    return out


def cmd_demo_slide(args: argparse.Namespace) -> int:
    from functions.slides.synthetic import write_synthetic_slide

    out = _slide_out(args.out)
    try:
        write_synthetic_slide(
            out,
            width=args.width,
            height=args.height,
            tile=args.tile,
            levels=args.levels,
            seed=args.seed,
        )
    except (ValueError, OSError) as error:
        raise CommandError(str(error)) from None
    print(out)
    return 0


def cmd_demo_he_slide(args: argparse.Namespace) -> int:
    from functions.inference.synthetic import write_he_slide

    out = _slide_out(args.out)
    try:
        paths = write_he_slide(out, width=args.width, height=args.height, seed=args.seed)
    except (ValueError, OSError) as error:
        raise CommandError(str(error)) from None
    for path in paths:
        print(path)
    return 0


_GROUPS = """\
server commands (run where the server runs):
  serve, migrate, users, demo-data, cleanup
user commands (talk to a server over HTTP; `aperture login` first, or APERTURE_URL):
  login, upload, submit, jobs, download, cancel, batch
"""


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="aperture", description=__doc__, epilog=_GROUPS)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the API server (embedded defaults)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on")
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
    mig.add_argument("--revision", default="head", help="the migration to bring the database to")
    mig.set_defaults(run=cmd_migrate)

    users = commands.add_parser("users", help="manage accounts").add_subparsers(
        dest="users_command", required=True, metavar="COMMAND"
    )
    create = users.add_parser("create", help="create an account (there is no default one)")
    create.add_argument("--email", required=True, help="the account's email (its login)")
    create.add_argument("--admin", action="store_true", help="give it the admin role")
    create.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from standard input instead of prompting on the terminal",
    )
    create.set_defaults(run=cmd_users_create)

    clean = commands.add_parser(
        "cleanup",
        help="abort stale multipart uploads, purge deleted "
        "files and expired tmp/ objects; prints the report as JSON",
    )
    clean.add_argument(
        "--upload-expiry-s",
        type=int,
        default=None,
        help="abort uploads started longer ago (default: APERTURE_UPLOAD_EXPIRY_S)",
    )
    clean.add_argument(
        "--tmp-ttl-s",
        type=int,
        default=None,
        help="delete tmp/ objects older than this (default: APERTURE_TMP_TTL_S)",
    )
    clean.set_defaults(run=cmd_cleanup)

    demo = commands.add_parser(
        "demo-data", help="write synthetic data with ground truth"
    ).add_subparsers(dest="demo_command", required=True, metavar="KIND")
    timelapse = demo.add_parser("timelapse", help="multi-FOV OME-TIFF time-lapse + truth JSON")
    timelapse.add_argument("out", help="output folder (created if missing)")
    timelapse.add_argument("--fovs", type=at_least(1), default=4, help="fields of view")
    timelapse.add_argument("--frames", type=at_least(1), default=60, help="frames per FOV")
    timelapse.add_argument("--size", type=at_least(64), default=512, help="frame side in pixels")
    timelapse.add_argument("--seed", type=int, default=0, help="equal seeds give equal data")
    timelapse.set_defaults(run=cmd_demo_timelapse)
    slide = demo.add_parser(
        "slide",
        help="SVS-like pyramidal JPEG TIFF",
        description="A synthetic whole-slide image. The default size takes seconds; ask "
        "for a big one with e.g. --width 100000 --height 80000 --levels 5.",
    )
    slide.add_argument("out", help="output file: .svs, .tif or .tiff (its folder must exist)")
    slide.add_argument("--width", type=at_least(1), default=8_000, help="level-0 width (px)")
    slide.add_argument("--height", type=at_least(1), default=6_000, help="level-0 height (px)")
    slide.add_argument("--tile", type=at_least(16), default=256, help="tile side, a multiple of 16")
    slide.add_argument("--levels", type=at_least(1), default=4, help="pyramid levels, 4x apart")
    slide.add_argument("--seed", type=int, default=0, help="equal seeds give equal slides")
    slide.set_defaults(run=cmd_demo_slide)
    he = demo.add_parser("he-slide", help="H&E-like pyramidal SVS at 0.5 um/px + nuclei truth JSON")
    he.add_argument("out", help="output file, e.g. he.svs (truth: he.truth.json beside it)")
    he.add_argument("--width", type=int, default=20_000, help="level-0 width in pixels")
    he.add_argument("--height", type=int, default=20_000, help="level-0 height in pixels")
    he.add_argument("--seed", type=int, default=0, help="random seed (same seed, same slide)")
    he.set_defaults(run=cmd_demo_he_slide)

    from client.cli import register as register_user_verbs  # the client's own verbs

    register_user_verbs(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except CommandError as error:
        words = [args.command, getattr(args, "users_command", None)]
        words.append(getattr(args, "demo_command", None))
        command = " ".join(w for w in words if w)
        print(f"aperture {command}: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
