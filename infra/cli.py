"""The `aperture` command: serve the API, migrate the database, and operator tasks."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from common.settings import Settings


def _settings(**overrides: Any) -> Settings:
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from common.logs import configure_logging
    from web.app import create_app

    settings = _settings(workers=args.workers)
    configure_logging(settings.log_format, settings.log_level)
    app = create_app(settings)
    uvicorn.run(app, host=args.host, port=args.port, log_config=None,
                timeout_graceful_shutdown=10)
    return 0


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aperture", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the API server (embedded defaults)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=None,
                       help="local worker processes (default: APERTURE_WORKERS or 2)")
    serve.set_defaults(run=cmd_serve)

    mig = commands.add_parser("migrate", help="apply database migrations")
    mig.add_argument("--revision", default="head")
    mig.set_defaults(run=cmd_migrate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
