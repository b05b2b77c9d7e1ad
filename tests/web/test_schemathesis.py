"""Schemathesis against the real server (`aperture serve`, real HTTP), on SQLite and on
PostgreSQL, as two users (peers: each one's objects must stay invisible to the other),
with every check, positive and negative data, all four phases (examples, coverage,
fuzzing, stateful), a fixed seed and bounded examples.

It must find nothing. A false positive gets an exclusion in `CONFIG` below, as narrow
as it can be, with its reason beside it.

Run by hand, with the same settings, against a server of your own:

    uv run st run --config-file schemathesis.toml http://127.0.0.1:8000/openapi.json
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine

from common.records import migrate
from tests.support.app import PASSWORD, LiveServer

SEED = 14
MAX_EXAMPLES = 3
#: About 80 s on two idle cores; much longer on a machine shared with other work.
ST_TIMEOUT_S = 480

#: Schemathesis' settings. Every exclusion says why it is not a bug of ours.
CONFIG = """
[auth.wfc]
path = "auth.json"
peers = ["alice", "bob"]

# The coverage phase sends every method a path does not declare; two of them show
# the 405 and its Allow header (OPTIONS is also checked against the schema's methods)
# at a fraction of the time of all seven.
[phases.coverage]
unexpected-methods = ["PATCH", "OPTIONS"]

# Stateful scenarios chain real resources (create a dataset, read it, add files...).
[phases.stateful.generation]
max-examples = 12

[generation]
# NUL is refused everywhere a string reaches the database; generating it stays on so
# that the refusal is checked (the default, made explicit).
allow-x00 = true

# Revoking the API key the run authenticates with would turn every later request into
# a 401: DELETE /auth/api-keys/{key_id} is covered by tests/web/test_auth.py instead.
[[operations]]
include-name = "DELETE /api/v1/auth/api-keys/{key_id}"
enabled = false

# Rules JSON Schema cannot state, so a schema-valid request may get a 422 (or 415)
# that says which rule it broke. Only positive_data_acceptance is relaxed, and only on
# these operations; every other check still runs on them.

# The password policy also wants 4 different characters and not the email itself.
[[operations]]
include-name = "POST /api/v1/auth/register"
checks.positive_data_acceptance.expected-statuses = [
    "2xx", "3xx", "401", "403", "404", "409", "422", "429",
]

# expires_at must lie in the future: a moving bound no schema can hold.
[[operations]]
include-name = "POST /api/v1/auth/api-keys"
checks.positive_data_acceptance.expected-statuses = [
    "2xx", "3xx", "401", "403", "404", "409", "422", "429",
]

# params are checked against the named function's own schema (GET /functions/{name}),
# which depends on `function`.
[[operations]]
include-name = "POST /api/v1/jobs"
checks.positive_data_acceptance.expected-statuses = [
    "2xx", "3xx", "401", "403", "404", "409", "422", "429",
]

# A region's bbox must have x0 < x1 and y0 < y1 (and its polygon an area): an order
# between two properties, which JSON Schema cannot state.
[[operations]]
include-name = "POST /api/v1/inference"
checks.positive_data_acceptance.expected-statuses = [
    "2xx", "3xx", "401", "403", "404", "409", "422", "429",
]

# A build needs sources in the dataset that are slides (patches) or time-lapses with
# workflow results (crops), at a resolution the slide has: the dataset's records decide,
# and the 422 names what is missing.
[[operations]]
include-name = "POST /api/v1/datasets/{dataset_id}/builds"
checks.positive_data_acceptance.expected-statuses = [
    "2xx", "3xx", "401", "403", "404", "409", "422", "429",
]

# A job id that names another function's job (a checksum job at /fitting/status/{id})
# is a well-formed id of the wrong kind of job: 422 saying which kind it is.
[[operations]]
include-name-regex = "/(fitting|workflow|merge)/(status|results|cancel)/[{]job_id[}]$"
checks.positive_data_acceptance.expected-statuses = [
    "2xx", "3xx", "401", "403", "404", "409", "422", "429",
]

# Completing an upload names the parts stored so far (and their ETags): which parts are
# stored is the upload's state, not something a schema can list.
[[operations]]
include-name = "POST /api/v1/files/uploads/{upload_id}/complete"
checks.positive_data_acceptance.expected-statuses = [
    "2xx", "3xx", "401", "403", "404", "409", "422", "429",
]

# The uploaded file's name and bytes decide whether its type is accepted (415); a
# multipart schema describes the part, not its file name or content.
[[operations]]
include-name = "POST /api/v1/files"
checks.positive_data_acceptance.expected-statuses = [
    "2xx", "3xx", "401", "403", "404", "409", "415", "429",
]
"""


def _user(client: httpx.Client, name: str) -> dict[str, str]:
    """Register `name`, make an API key, and leave one object of each kind to find."""
    email = f"{name}-{uuid.uuid4().hex[:8]}@example.org"
    assert client.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD})
    login = client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    client.cookies.clear()
    bearer = {"Authorization": f"Bearer {login.json()['access_token']}"}
    key = client.post("/api/v1/auth/api-keys", json={"name": "schemathesis"}, headers=bearer)
    assert key.status_code == 201, key.text
    headers = {"X-API-Key": key.json()["key"]}
    uploaded = client.post(
        "/api/v1/files", files={"file": ("notes.txt", b"hello\n")}, headers=headers
    ).json()
    dataset = client.post(
        "/api/v1/datasets", json={"name": f"{name}'s", "tags": ["t"]}, headers=headers
    ).json()
    client.post(
        f"/api/v1/datasets/{dataset['id']}/files",
        json={"file_ids": [uploaded["id"]]},
        headers=headers,
    )
    job = client.post(
        "/api/v1/jobs",
        json={"function": "checksum", "params": {"file_id": uploaded["id"]}},
        headers=headers,
    )
    assert job.status_code == 202, job.text
    return {"name": name, "key": key.json()["key"]}


def _command(server: LiveServer, workdir: Path) -> list[str]:
    """Seed the two users and write schemathesis' settings; the command that runs it."""
    with server.client() as client:
        users = [_user(client, "alice"), _user(client, "bob")]
    auth = {
        "auth": [
            {"name": u["name"], "fixedHeaders": [{"name": "X-API-Key", "value": u["key"]}]}
            for u in users
        ]
    }
    (workdir / "auth.json").write_text(json.dumps(auth))
    (workdir / "schemathesis.toml").write_text(CONFIG)
    return [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(workdir / "schemathesis.toml"),
        "run",
        f"{server.url}/openapi.json",
        "--checks",
        "all",
        "--mode",
        "all",
        "--phases",
        "examples,coverage,fuzzing,stateful",
        "--seed",
        str(SEED),
        "--max-examples",
        str(MAX_EXAMPLES),
        # One worker: Python 3.11's `ast` keeps its recursion counter per process, and
        # Hypothesis parses sources (lambda descriptions) from each worker thread at
        # once, which fails with "AST constructor recursion depth mismatch"
        # (CPython gh-106905, fixed in 3.12). The two engines run in parallel instead.
        "--workers",
        "1",
        "--no-color",
        "--request-timeout",
        "20",
    ]


def _server(engine: str, workdir: Path, request: pytest.FixtureRequest) -> LiveServer:
    """`aperture serve` with the built-in functions only, as a user runs it."""
    # Import roots with a file in them: POST /files/import reaches path resolution
    # (otherwise every import is the same 403, imports being off).
    root = workdir / "imports"
    root.mkdir()
    (root / "notes.txt").write_text("hello\n")
    env: dict[str, str] = {
        "APERTURE_EXTRA_CAPABILITIES": "[]",
        "APERTURE_IMPORT_ROOTS": json.dumps([str(root)]),
    }
    if engine == "postgres":
        url = str(request.getfixturevalue("postgres_url"))
        database = create_engine(url)
        migrate(database)
        database.dispose()
        env["APERTURE_DATABASE_URL"] = url
    return LiveServer(workdir / "data", env=env)


@pytest.mark.slow
@pytest.mark.timeout(ST_TIMEOUT_S + 120)
def test_schemathesis_finds_nothing_on_sqlite_and_postgres(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    runs: dict[str, tuple[LiveServer, subprocess.Popen[str], Path]] = {}
    try:
        for engine in ("sqlite", "postgres"):
            workdir = tmp_path / engine
            workdir.mkdir()
            server = _server(engine, workdir, request).start(workers=1)
            command = _command(server, workdir)
            print(engine, " ".join(command[2:]))
            log = workdir / "schemathesis.log"
            with log.open("w") as out:
                process = subprocess.Popen(
                    command, cwd=workdir, stdout=out, stderr=subprocess.STDOUT, text=True
                )
            runs[engine] = (server, process, log)
        for engine, (_, process, log) in runs.items():
            process.wait(timeout=ST_TIMEOUT_S)
            output = log.read_text()
            summary = output[output.rfind("SUMMARY") :] if "SUMMARY" in output else output[-4000:]
            print(f"--- {engine}\n{summary}")
        for engine, (_, process, log) in runs.items():
            assert process.returncode == 0, f"{engine}:\n{log.read_text()[-20000:]}"
    finally:
        for server, process, _ in runs.values():
            if process.poll() is None:
                process.kill()
            server.stop()
