"""Signing in through a Supabase project with the `supabase` client, against a server on
the supabase provider. The project is a small real HTTP server this test starts: Auth's
token endpoint (password and refresh grants) minting ES256 tokens, and the JWKS the
API verifies them with, as tests/web/test_supabase_tokens.py does."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from client import Client, SupabaseLogin, Tokens
from infra.cli import main
from tests.client.conftest import start_server
from tests.support.app import LiveServer

EMAIL, PASSWORD = "scientist@lab.org", "a long supabase password"


class SupabaseProject:
    """`/auth/v1/token` and `/auth/v1/.well-known/jwks.json` on 127.0.0.1."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.user_id = str(uuid.uuid4())
        self.grants: list[str] = []
        self.refresh_tokens: set[str] = set()
        project = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path != "/auth/v1/.well-known/jwks.json":
                    return self._send(404, {"msg": "not found"})
                jwk = json.loads(ECAlgorithm.to_jwk(project.key.public_key()))
                self._send(200, {"keys": [{**jwk, "kid": "k1", "alg": "ES256", "use": "sig"}]})

            def do_POST(self) -> None:
                url = urlparse(self.path)
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                grant = parse_qs(url.query).get("grant_type", [""])[0]
                if url.path != "/auth/v1/token" or self.headers.get("apikey") != "anon-key":
                    return self._send(401, {"msg": "bad request"})
                ok = (
                    grant == "password" and (body["email"], body["password"]) == (EMAIL, PASSWORD)
                ) or (grant == "refresh_token" and body["refresh_token"] in project.refresh_tokens)
                if not ok:
                    return self._send(400, {"error": "invalid_grant", "msg": "Invalid login"})
                project.grants.append(grant)
                self._send(200, project.session())

            def _send(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def session(self) -> dict[str, Any]:
        now = int(time.time())
        claims = {
            "sub": self.user_id, "aud": "authenticated", "iss": f"{self.url}/auth/v1",
            "iat": now, "exp": now + 3600, "email": EMAIL, "role": "authenticated",
        }  # fmt: skip
        refresh = uuid.uuid4().hex
        self.refresh_tokens.add(refresh)
        user = {
            "id": self.user_id, "aud": "authenticated", "email": EMAIL, "app_metadata": {},
            "user_metadata": {}, "created_at": "2025-01-01T00:00:00Z",
        }  # fmt: skip
        return {
            "access_token": jwt.encode(claims, self.key, algorithm="ES256", headers={"kid": "k1"}),
            "refresh_token": refresh, "token_type": "bearer", "expires_in": 3600,
            "expires_at": now + 3600, "user": user,
        }  # fmt: skip

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def project() -> Iterator[SupabaseProject]:
    standin = SupabaseProject()
    yield standin
    standin.close()


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, project: SupabaseProject
) -> Iterator[LiveServer]:
    env = {"APERTURE_AUTH_PROVIDER": "supabase", "APERTURE_SUPABASE_URL": project.url}
    live = start_server(tmp_path_factory.mktemp("sb") / "data", **env)
    try:
        yield live
    finally:
        live.stop()


def test_supabase_sign_in_and_renewal(server: LiveServer, project: SupabaseProject) -> None:
    seen: list[Tokens] = []
    credential = SupabaseLogin(project.url, "anon-key", EMAIL, PASSWORD, on_tokens=seen.append)
    with Client(server.url, credential) as aperture:
        me = aperture.me()
        assert me["id"] == project.user_id and me["provider"] == "supabase"
        assert project.grants == ["password"]
        # Close to expiry: renewed through the supabase client's refresh grant.
        credential.tokens = Tokens(seen[-1].access_token, seen[-1].refresh_token, time.time() + 5)
        assert aperture.jobs().total == 0
        assert project.grants == ["password", "refresh_token"] and len(seen) == 2


def test_aperture_login_through_supabase_saves_a_refresh_token_only(
    server: LiveServer,
    project: SupabaseProject,
    private_dirs: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr("sys.stdin", _Stdin(PASSWORD + "\n"))
    login = ["login", "--url", server.url, "--email", EMAIL, "--password-stdin"]
    sb = ["--supabase-url", project.url, "--supabase-key", "anon-key"]
    assert main([*login, *sb]) == 0
    saved = private_dirs / "config" / "aperture" / "credentials.json"
    assert saved.stat().st_mode & 0o777 == 0o600
    stored = json.loads(saved.read_text())
    assert stored["auth"]["kind"] == "supabase" and PASSWORD not in saved.read_text()
    assert main(["jobs"]) == 0  # signs in again with the saved refresh token
    assert "0 of 0 jobs" in capsys.readouterr().out


class _Stdin:
    def __init__(self, text: str) -> None:
        self.text = text

    def readline(self) -> str:
        return self.text
