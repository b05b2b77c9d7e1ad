"""Signed webhooks between Aperture and external inference services.

Both directions carry `X-Aperture-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret,
"<t>.<raw body>")>` (Stripe's scheme): the timestamp is signed with the body, so a
captured request cannot be replayed outside the tolerance window, and a repeated event
inside it is caught by its `event_id`. Signatures are compared in constant time.

A service's shared secret must be recoverable (Aperture computes HMACs with it), so it
is stored sealed: Fernet (AES-128-CBC + HMAC-SHA256) under a key derived from the app's
secret key with HKDF, never in clear and never returned by the API.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import TYPE_CHECKING

from common.errors import ApertureError, Unauthorized

HEADER = "X-Aperture-Signature"
#: A signature older or newer than this (seconds) is refused: replays outside it fail.
TOLERANCE_S = 300
#: Where services report (under the public URL); the web route is mounted here.
CALLBACK_PATH = "/api/v1/inference/webhook/callback"
_SEAL_INFO = b"aperture/inference-service-secret/v1"

if TYPE_CHECKING:
    from cryptography.fernet import Fernet


class BadWebhookSignature(Unauthorized):
    code = "bad-webhook-signature"
    default_message = "the webhook's signature is missing, wrong or expired"


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """Hex HMAC-SHA256 of ``"<timestamp>.<body>"`` under `secret`."""
    message = str(int(timestamp)).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, *, now: float | None = None) -> str:
    """The `X-Aperture-Signature` value for `body`, stamped now."""
    timestamp = int(time.time() if now is None else now)
    return f"t={timestamp},v1={signature(secret, timestamp, body)}"


def parse(header: str | None) -> tuple[int, list[str]]:
    """The timestamp and the v1 signatures of a header (several while a secret rotates).

    Raises
    ------
    BadWebhookSignature
        No header, or one without a timestamp or a v1 signature.
    """
    if not header:
        raise BadWebhookSignature(f"no {HEADER} header")
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1" and value:
            signatures.append(value.strip())
    if timestamp is None or not signatures:
        raise BadWebhookSignature(f"{HEADER} needs t=<unix seconds>,v1=<hex HMAC-SHA256>")
    return timestamp, signatures


def check_fresh(timestamp: int, *, now: float | None = None) -> None:
    """Refuse a timestamp outside the tolerance window (before looking at the body)."""
    skew = abs((time.time() if now is None else now) - timestamp)
    if skew > TOLERANCE_S:
        raise BadWebhookSignature(
            f"the signature's timestamp is {int(skew)} s away from now "
            f"(at most {TOLERANCE_S} s allowed)"
        )


def verify(secret: str, header: str | None, body: bytes, *, now: float | None = None) -> None:
    """Check `header` signs `body` with `secret` within the window; else BadWebhookSignature."""
    timestamp, signatures = parse(header)
    check_fresh(timestamp, now=now)
    expected = signature(secret, timestamp, body).encode()
    # every candidate is compared, so timing does not tell which one matched
    matched = [hmac.compare_digest(expected, s.encode()) for s in signatures]
    if not any(matched):
        raise BadWebhookSignature("the webhook's signature does not match")


# sealed secrets -------------------------------------------------------------------------


def _fernet(app_key: bytes) -> Fernet:
    from cryptography.fernet import Fernet
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_SEAL_INFO).derive(app_key)
    return Fernet(base64.urlsafe_b64encode(derived))


def seal(secret: str, app_key: bytes) -> str:
    """`secret` encrypted under a key derived from the app's secret key."""
    return str(_fernet(app_key).encrypt(secret.encode()).decode("ascii"))


def unseal(sealed: str, app_key: bytes) -> str:
    """The secret `seal` sealed; ApertureError if the app's secret key has changed."""
    from cryptography.fernet import InvalidToken

    try:
        return str(_fernet(app_key).decrypt(sealed.encode("ascii")).decode())
    except InvalidToken:
        raise ApertureError(
            "the service's secret cannot be unsealed: APERTURE_SECRET_KEY changed since it "
            "was registered; register the service again"
        ) from None
