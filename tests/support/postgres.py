"""A real PostgreSQL for the suite: `pgserver` (a wheel with the server binaries) started
once per session in a temp dir, unless `APERTURE_TEST_DATABASE_URL` names one. Each test
that asks gets a fresh database of its own, so tests never see each other's rows."""

from __future__ import annotations

import os
import tempfile
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from common.records import normalise_url


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """URL of a maintenance database on a running PostgreSQL server."""
    given = os.environ.get("APERTURE_TEST_DATABASE_URL")
    if given:
        yield normalise_url(given)
        return
    with warnings.catch_warnings():
        # pgserver looks up a runtime dir at import; CI shells have no XDG_RUNTIME_DIR.
        warnings.simplefilter("ignore")
        import pgserver

    with tempfile.TemporaryDirectory(prefix="aperture-pg-") as directory:
        server = pgserver.get_server(Path(directory), cleanup_mode="stop")
        try:
            yield normalise_url(server.get_uri())
        finally:
            server.cleanup()


@pytest.fixture
def postgres_url(postgres_server_url: str) -> Iterator[str]:
    """A new, empty database on the test server; dropped after the test."""
    name = f"aperture_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(postgres_server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test using this runs twice: on a SQLite file and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'aperture.db'}"
    return str(request.getfixturevalue("postgres_url"))
