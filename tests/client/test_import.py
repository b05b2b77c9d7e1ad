"""The client is a light library: importing it loads nothing from the server's packages
and none of their heavy dependencies."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FORBIDDEN = (
    "common",
    "web",
    "functions",
    "infra",
    "numpy",
    "scipy",
    "sqlalchemy",
    "fastapi",
    "starlette",
    "pydantic",
    "boto3",
    "supabase",
)


def _modules_after(statement: str) -> set[str]:
    code = f"import json, sys\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    return {name.split(".")[0] for name in json.loads(out.stdout.splitlines()[-1])}


def test_importing_the_client_loads_no_server_module_or_heavy_library() -> None:
    loaded = _modules_after("import client; from client import Client, AsyncClient")
    assert "client" in loaded and "httpx" in loaded
    assert loaded.isdisjoint(FORBIDDEN), sorted(loaded & set(FORBIDDEN))


def test_the_user_verbs_load_no_server_module_either() -> None:
    loaded = _modules_after("import client.cli, client.batch.command, client.config")
    assert loaded.isdisjoint(FORBIDDEN), sorted(loaded & set(FORBIDDEN))
