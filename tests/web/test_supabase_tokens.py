"""The Supabase provider: tokens minted here with keys served from a local JWKS endpoint
(ES256, RS256) and with a legacy secret (HS256); every bad token is refused."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi.testclient import TestClient
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from tests.support.app import make_settings
from web.app import create_app

SECRET = "legacy-jwt-secret-with-at-least-32-characters"


class JwksServer:
    """Serves `/auth/v1/.well-known/jwks.json` on 127.0.0.1, counting fetches."""

    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = []
        self.fetches = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path != "/auth/v1/.well-known/jwks.json":
                    self.send_error(404)
                    return
                server.fetches += 1
                body = json.dumps({"keys": server.keys}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def add(self, public_key: Any, kid: str, alg: str) -> None:
        algorithm = ECAlgorithm if alg == "ES256" else RSAAlgorithm
        jwk = json.loads(algorithm.to_jwk(public_key))
        self.keys.append({**jwk, "kid": kid, "alg": alg, "use": "sig"})

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def jwks() -> Iterator[JwksServer]:
    server = JwksServer()
    yield server
    server.close()


@pytest.fixture(scope="module")
def keys(jwks: JwksServer) -> dict[str, Any]:
    ec_key = ec.generate_private_key(ec.SECP256R1())
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwks.add(ec_key.public_key(), "ec-1", "ES256")
    jwks.add(rsa_key.public_key(), "rsa-1", "RS256")
    return {"ES256": ec_key, "RS256": rsa_key}


@pytest.fixture(scope="module")
def supabase(
    tmp_path_factory: pytest.TempPathFactory, jwks: JwksServer, keys: dict[str, Any]
) -> Iterator[TestClient]:
    settings = make_settings(
        tmp_path_factory.mktemp("sb") / "data",
        workers=1,
        auth_provider="supabase",
        supabase_url=jwks.url,
        supabase_jwt_secret=SECRET,
        supabase_jwks_cooldown_s=0.5,
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


def _claims(jwks: JwksServer, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "sub": str(uuid.uuid4()),
        "aud": "authenticated",
        "iss": f"{jwks.url}/auth/v1",
        "iat": now,
        "exp": now + 300,
        "email": f"{uuid.uuid4().hex[:6]}@lab.org",
        "role": "authenticated",
        "app_metadata": {"provider": "email"},
    }
    claims.update(overrides)
    return claims


def _me(client: TestClient, token: str) -> Any:
    return client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})


@pytest.mark.parametrize(("alg", "kid"), [("ES256", "ec-1"), ("RS256", "rsa-1")])
def test_asymmetric_tokens_from_the_jwks(
    supabase: TestClient, jwks: JwksServer, keys: dict[str, Any], alg: str, kid: str
) -> None:
    claims = _claims(jwks, app_metadata={"role": "admin"})
    token = jwt.encode(claims, keys[alg], algorithm=alg, headers={"kid": kid})
    me = _me(supabase, token)
    assert me.status_code == 200, me.text
    assert me.json()["id"] == claims["sub"] and me.json()["email"] == claims["email"]
    assert me.json()["role"] == "admin" and me.json()["provider"] == "supabase"


def test_legacy_hs256_with_the_project_secret(supabase: TestClient, jwks: JwksServer) -> None:
    claims = _claims(jwks)
    me = _me(supabase, jwt.encode(claims, SECRET, algorithm="HS256"))
    assert me.status_code == 200 and me.json()["role"] == "user"


def test_keys_are_cached_and_refetched_for_an_unknown_kid(
    supabase: TestClient, jwks: JwksServer, keys: dict[str, Any]
) -> None:
    token = jwt.encode(_claims(jwks), keys["ES256"], algorithm="ES256", headers={"kid": "ec-1"})
    assert _me(supabase, token).status_code == 200
    before = jwks.fetches
    assert _me(supabase, token).status_code == 200
    assert jwks.fetches == before  # cached
    rotated = ec.generate_private_key(ec.SECP256R1())
    jwks.add(rotated.public_key(), "ec-2", "ES256")
    fresh = jwt.encode(_claims(jwks), rotated, algorithm="ES256", headers={"kid": "ec-2"})
    time.sleep(0.6)  # past the refetch cooldown
    assert _me(supabase, fresh).status_code == 200
    assert jwks.fetches == before + 1
    unknown = jwt.encode(_claims(jwks), rotated, algorithm="ES256", headers={"kid": "made-up"})
    for _ in range(5):
        _refused(supabase, unknown)
    assert jwks.fetches <= before + 2  # unknown kids cannot force a fetch per request


def _refused(client: TestClient, token: str) -> str:
    response = _me(client, token)
    assert response.status_code == 401, response.text
    return str(response.json()["detail"]).lower()


def test_bad_tokens_are_refused(
    supabase: TestClient, jwks: JwksServer, keys: dict[str, Any]
) -> None:
    ec_key = keys["ES256"]

    def sign(**overrides: Any) -> str:
        return jwt.encode(
            _claims(jwks, **overrides), ec_key, algorithm="ES256", headers={"kid": "ec-1"}
        )

    assert "audience" in _refused(supabase, sign(aud="anon"))
    assert "issuer" in _refused(supabase, sign(iss="https://evil.example/auth/v1"))
    assert "expired" in _refused(supabase, sign(exp=int(time.time()) - 10))
    unsigned = jwt.encode(_claims(jwks), None, algorithm="none")
    assert "'none'" in _refused(supabase, unsigned)
    other = ec.generate_private_key(ec.SECP256R1())
    forged = jwt.encode(_claims(jwks), other, algorithm="ES256", headers={"kid": "ec-1"})
    assert "invalid" in _refused(supabase, forged)
    _refused(
        supabase,
        jwt.encode(_claims(jwks), "wrong-secret-but-long-enough-xxxxxxxx", algorithm="HS256"),
    )
    _refused(supabase, jwt.encode(_claims(jwks, sub="not-a-uuid"), SECRET, algorithm="HS256"))


def test_algorithm_confusion_is_refused(
    supabase: TestClient, jwks: JwksServer, keys: dict[str, Any]
) -> None:
    """An HS256 token whose 'secret' is the RSA public key (which attackers can read)."""
    public_pem = (
        keys["RS256"]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    header = jwt.utils.base64url_encode(
        json.dumps({"alg": "HS256", "kid": "rsa-1", "typ": "JWT"}).encode()
    )
    payload = jwt.utils.base64url_encode(json.dumps(_claims(jwks)).encode())
    import hashlib
    import hmac

    signing_input = header + b"." + payload
    signature = jwt.utils.base64url_encode(
        hmac.new(public_pem, signing_input, hashlib.sha256).digest()
    )
    _refused(supabase, (signing_input + b"." + signature).decode())


def test_register_and_login_belong_to_supabase(supabase: TestClient) -> None:
    body = {"email": "a@b.org", "password": "correct horse battery"}
    assert supabase.post("/api/v1/auth/register", json=body).status_code == 404
    assert supabase.post("/api/v1/auth/login", json=body).status_code == 404


def test_without_a_jwt_secret_hs256_is_refused(tmp_path: Path, jwks: JwksServer) -> None:
    settings = make_settings(
        tmp_path / "data", workers=1, auth_provider="supabase", supabase_url=jwks.url
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        assert "'hs256'" in _refused(client, jwt.encode(_claims(jwks), SECRET, algorithm="HS256"))
