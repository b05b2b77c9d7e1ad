"""Password hashing (argon2id) and the minimum password policy."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from common.errors import InvalidInput

MIN_LENGTH = 10
MAX_LENGTH = 256

_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters
#: Verified against when the account does not exist, so both answers take as long.
_DUMMY_HASH = _hasher.hash("not a real password, only for timing")


def check_policy(password: str, *, email: str | None = None) -> None:
    if len(password) < MIN_LENGTH:
        raise InvalidInput(f"the password must have at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise InvalidInput(f"the password must have at most {MAX_LENGTH} characters")
    if len(set(password)) < 4:
        raise InvalidInput("the password must use at least 4 different characters")
    if email and password.lower() == email.lower():
        raise InvalidInput("the password must not be the email address")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True if `password` matches; a missing hash still costs one verification."""
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False
