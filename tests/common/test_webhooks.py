"""Webhook signatures (HMAC-SHA256 over "<t>.<body>", a 5-minute window, constant-time
comparison) and sealed service secrets."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from common.errors import ApertureError
from common.webhooks import (
    TOLERANCE_S,
    BadWebhookSignature,
    parse,
    seal,
    sign,
    unseal,
    verify,
)

SECRET = "shared secret of a service"
BODY = b'{"task_id": "t", "event_id": "e", "status": "started"}'
NOW = 1_900_000_000


def test_a_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    header = sign(SECRET, BODY, now=NOW)
    expected = hmac.new(SECRET.encode(), f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert header == f"t={NOW},v1={expected}"
    verify(SECRET, header, BODY, now=NOW + TOLERANCE_S)  # the window's edge is inside


@pytest.mark.parametrize(
    ("header", "body", "secret", "now", "words"),
    [
        (None, BODY, SECRET, NOW, "no X-Aperture-Signature"),
        ("", BODY, SECRET, NOW, "no X-Aperture-Signature"),
        ("v1=abc", BODY, SECRET, NOW, "needs t="),
        (f"t={NOW}", BODY, SECRET, NOW, "needs t="),
        ("t=soon,v1=abc", BODY, SECRET, NOW, "needs t="),
        (sign(SECRET, BODY, now=NOW), BODY + b" ", SECRET, NOW, "does not match"),
        (sign(SECRET, BODY, now=NOW), BODY, "another secret", NOW, "does not match"),
        (sign(SECRET, BODY, now=NOW), BODY, SECRET, NOW + TOLERANCE_S + 1, "away from now"),
        (sign(SECRET, BODY, now=NOW), BODY, SECRET, NOW - TOLERANCE_S - 1, "away from now"),
    ],
)
def test_bad_signatures_are_refused(
    header: str | None, body: bytes, secret: str, now: int, words: str
) -> None:
    with pytest.raises(BadWebhookSignature, match=words):
        verify(secret, header, body, now=now)


def test_any_of_several_signatures_may_match() -> None:
    good = sign(SECRET, BODY, now=NOW).split(",")[1]
    verify(SECRET, f"t={NOW},v1={'0' * 64},{good}", BODY, now=NOW)
    assert parse(f"t={NOW}, v1=aa ,v1=bb") == (NOW, ["aa", "bb"])


def test_secrets_are_sealed_under_the_app_key() -> None:
    key = b"k" * 48
    sealed = seal(SECRET, key)
    assert SECRET not in sealed and seal(SECRET, key) != sealed  # random IV
    assert unseal(sealed, key) == SECRET
    with pytest.raises(ApertureError, match="APERTURE_SECRET_KEY changed"):
        unseal(sealed, b"another app key of enough length......")
