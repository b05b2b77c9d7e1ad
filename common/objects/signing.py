"""HMAC-signed query strings for the directory backend's URLs, which the API serves.

A signed query carries its parameters, `e` (expiry, unix seconds) and `s` (base64url
HMAC-SHA256 over every other parameter). Everything the URL grants is a signed
parameter, so nothing can be added or changed without breaking the signature; in
particular `m` (the HTTP method, absent = GET) is signed, so a GET URL cannot be
turned into a PUT. Routes should call the `verify_*` helpers, which also check that
the URL was issued for that route and method, and use only the values they return.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote, urlencode

from common.errors import BadSignature

#: Domain separation: these signatures can never be confused with other HMACs made
#: from the same secret (local tokens, for example).
_CONTEXT = b"aperture/signed-url/v1\n"
_RESERVED = frozenset({"e", "s"})

#: Route paths, relative to the public URL, that serve signed directory-store URLs.
OBJECT_PATH = "/api/v1/signed/object"
PART_PATH = "/api/v1/signed/part"


def _canonical(params: Mapping[str, str]) -> bytes:
    """One unambiguous byte string per parameter set (sorted, percent-encoded)."""
    pairs = sorted(params.items())
    body = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in pairs)
    return _CONTEXT + body.encode()


def _mac(params: Mapping[str, str], key: bytes) -> str:
    digest = hmac.new(key, _canonical(params), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def sign(params: dict[str, str], *, key: bytes, expires_at: int) -> str:
    """Return the query string for `params`, valid until `expires_at` (unix seconds)."""
    if _RESERVED & params.keys():
        raise ValueError(f"parameters {sorted(_RESERVED)} are reserved for the signature")
    if not key:
        raise ValueError("an empty signing key would make every signature forgeable")
    signed = {**params, "e": str(int(expires_at))}
    return urlencode({**signed, "s": _mac(signed, key)}, quote_via=quote)


def verify(query: Mapping[str, str], *, key: bytes, now: float | None = None) -> dict[str, str]:
    """Check the signature and expiry of `query`; return its signed parameters.

    Raises BadSignature when `s` or `e` is missing or malformed, the signature does
    not match (checked in constant time), or the URL has expired.
    """
    params = {k: query[k] for k in query}
    signature, expiry = params.pop("s", None), params.get("e")
    if not signature or not expiry:
        raise BadSignature("the URL is not signed")
    if not hmac.compare_digest(signature.encode(), _mac(params, key).encode()):
        raise BadSignature("the URL's signature does not match")
    try:
        expires_at = int(expiry)
    except ValueError:
        raise BadSignature("the URL's expiry is malformed") from None
    if (time.time() if now is None else now) > expires_at:
        raise BadSignature("the signed URL has expired")
    del params["e"]
    return params


# route-level checks ---------------------------------------------------------------


@dataclass(frozen=True)
class SignedGet:
    key: str
    filename: str | None


@dataclass(frozen=True)
class SignedPart:
    key: str
    upload_id: str
    part_number: int


def _verify_shape(
    query: Mapping[str, str],
    *,
    key: bytes,
    now: float | None,
    required: set[str],
    optional: frozenset[str] = frozenset(),
) -> dict[str, str]:
    """verify() plus: exactly the parameters the route expects, nothing else."""
    params = verify(query, key=key, now=now)
    names = set(params)
    if not required <= names or names - required - optional:
        raise BadSignature("the signed URL was not issued for this request")
    return params


def verify_get_object(
    query: Mapping[str, str], *, key: bytes, now: float | None = None
) -> SignedGet:
    """For `GET /api/v1/signed/object`: the object key and optional download name."""
    params = _verify_shape(query, key=key, now=now, required={"k"}, optional=frozenset({"fn"}))
    return SignedGet(key=params["k"], filename=params.get("fn"))


def verify_put_object(query: Mapping[str, str], *, key: bytes, now: float | None = None) -> str:
    """For `PUT /api/v1/signed/object`: the object key the URL lets the caller write."""
    params = _verify_shape(query, key=key, now=now, required={"k", "m"})
    if params["m"] != "PUT":
        raise BadSignature("the signed URL was not issued for this method")
    return params["k"]


def verify_put_part(
    query: Mapping[str, str], *, key: bytes, now: float | None = None
) -> SignedPart:
    """For `PUT /api/v1/signed/part`: key, upload id and part number of the part."""
    params = _verify_shape(query, key=key, now=now, required={"k", "u", "n"})
    try:
        number = int(params["n"])
    except ValueError:
        raise BadSignature("the part number is malformed") from None
    return SignedPart(key=params["k"], upload_id=params["u"], part_number=number)
