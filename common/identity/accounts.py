"""Local accounts: register, login (throttled), refresh-token rotation with reuse
detection, sessions, and resolving a verified token to a live principal."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from common.errors import Conflict, InvalidInput, NotFound, RateLimited, Unauthorized
from common.identity import passwords, tokens
from common.identity.audit import Audit
from common.identity.principal import Principal
from common.records import AuthSession, RefreshToken, User, insert_unique, transaction
from common.records.types import utcnow
from common.settings import Settings
from common.text import check_label, is_email

#: One answer for "no such account" and "wrong password", so accounts cannot be probed.
BAD_LOGIN = "the email or password is wrong"


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    session_id: uuid.UUID
    token_type: str = "bearer"


@dataclass(frozen=True)
class Client:
    """Where a request came from, for sessions, throttling and the audit log."""

    ip: str | None = None
    user_agent: str | None = None


def normalise_email(email: str) -> str:
    email = email.strip().lower()
    if not is_email(email):
        raise InvalidInput(
            "that is not an email address (name@domain.tld, without spaces, control or "
            "bidirectional-override characters)"
        )
    return email


class Accounts:
    def __init__(self, db: sessionmaker[Session], settings: Settings, audit: Audit) -> None:
        self.db = db
        self.settings = settings
        self.audit = audit

    # accounts ------------------------------------------------------------------------

    def create_user(
        self, email: str, password: str, *, role: str = "user", display_name: str | None = None
    ) -> User:
        email = normalise_email(email)
        passwords.check_policy(password, email=email)
        if display_name is not None:
            check_label(display_name, "the display name")
        now = utcnow()
        user = User(
            id=uuid.uuid4(),
            email=email,
            password_hash=passwords.hash_password(password),
            role=role,
            is_active=True,
            display_name=display_name,
            provider="local",
            created_at=now,
            updated_at=now,
        )
        insert_unique(self.db, user, "an account with that email exists")
        return user

    def user(self, user_id: uuid.UUID) -> User:
        with self.db() as session:
            user = session.get(User, user_id)
        if user is None:
            raise NotFound(f"no user with id {user_id}")
        return user

    def users(self, *, limit: int, offset: int) -> tuple[list[User], int]:
        with self.db() as session:
            total = session.scalar(select(func.count(User.id))) or 0
            rows = session.scalars(
                select(User).order_by(User.created_at, User.id).limit(limit).offset(offset)
            ).all()
        return list(rows), total

    def update_user(self, user_id: uuid.UUID, changes: dict[str, object]) -> User:
        """Apply the given fields (email, password, role, display_name, is_active)."""
        values = dict(changes)
        if "email" in values:
            values["email"] = normalise_email(str(values["email"]))
        if values.get("display_name") is not None:
            check_label(str(values["display_name"]), "the display name")
        if "password" in values:
            password = str(values.pop("password"))
            passwords.check_policy(password, email=str(values.get("email") or ""))
            values["password_hash"] = passwords.hash_password(password)
        values["updated_at"] = utcnow()
        try:
            with transaction(self.db) as session:
                user = session.scalar(
                    update(User).where(User.id == user_id).values(**values).returning(User),
                    execution_options={"synchronize_session": False},
                )
        except IntegrityError:
            raise Conflict("an account with that email exists") from None
        if user is None:
            raise NotFound(f"no user with id {user_id}")
        return user

    def check_password(self, user_id: uuid.UUID, password: str) -> None:
        if not passwords.verify_password(self.user(user_id).password_hash, password):
            raise Unauthorized("the current password is wrong")

    # login and tokens ----------------------------------------------------------------

    def login(self, email: str, password: str, client: Client) -> TokenPair:
        subject = email.strip().lower()[:320]
        self._throttle(subject, client)
        with self.db() as session:
            user = session.scalar(select(User).where(User.email == subject))
        if (
            not passwords.verify_password(user.password_hash if user else None, password)
            or user is None
            or not user.is_active
        ):
            self.audit.record(
                "auth.login_failed",
                actor=user.id if user else None,
                subject=subject,
                client_ip=client.ip,
            )
            raise Unauthorized(BAD_LOGIN)
        with transaction(self.db) as session:
            session.execute(update(User).where(User.id == user.id).values(last_login_at=utcnow()))
        pair = self._open_session(user, client)
        self.audit.record(
            "auth.login",
            actor=user.id,
            target_type="session",
            target_id=pair.session_id,
            client_ip=client.ip,
        )
        return pair

    def _throttle(self, subject: str, client: Client) -> None:
        window = timedelta(seconds=self.settings.login_window_s)
        per_account = self.audit.count_recent("auth.login_failed", within=window, subject=subject)
        per_ip = (
            self.audit.count_recent("auth.login_failed", within=window, client_ip=client.ip)
            if client.ip
            else 0
        )
        if (
            per_account >= self.settings.login_max_failures_per_account
            or per_ip >= self.settings.login_max_failures_per_ip
        ):
            raise RateLimited(
                "too many failed logins; try again later",
                retry_after_s=self.settings.login_window_s,
            )

    def _open_session(self, user: User, client: Client) -> TokenPair:
        now = utcnow()
        record = AuthSession(
            id=uuid.uuid4(),
            owner_id=user.id,
            user_agent=(client.user_agent or "")[:512] or None,
            client_ip=client.ip,
            created_at=now,
            last_used_at=now,
            expires_at=now + timedelta(seconds=self.settings.refresh_token_ttl_s),
        )
        refresh = tokens.new_refresh_token()
        with transaction(self.db) as session:
            session.add(record)
            session.flush()
            session.add(
                RefreshToken(
                    token_hash=tokens.sha256_hex(refresh), session_id=record.id, created_at=now
                )
            )
        return self._pair(user, record.id, refresh)

    def _pair(self, user: User, session_id: uuid.UUID, refresh: str) -> TokenPair:
        ttl = self.settings.access_token_ttl_s
        access = tokens.mint_access_token(
            key=self.settings.signing_key,
            public_url=self.settings.public_url,
            user_id=user.id,
            email=user.email,
            role=user.role,
            session_id=session_id,
            ttl_s=ttl,
        )
        return TokenPair(
            access_token=access, refresh_token=refresh, expires_in=ttl, session_id=session_id
        )

    def refresh(self, refresh_token: str, client: Client) -> TokenPair:
        """Rotate: the presented token is spent and a new one issued in the same session.
        Presenting a spent token again revokes the session (someone copied it)."""
        token_hash = tokens.sha256_hex(refresh_token)
        now = utcnow()
        with transaction(self.db) as session:
            spent = session.scalar(
                update(RefreshToken)
                .where(RefreshToken.token_hash == token_hash, RefreshToken.used_at.is_(None))
                .values(used_at=now)
                .returning(RefreshToken.session_id)
            )
            if spent is None:
                reused = session.scalar(
                    select(RefreshToken.session_id).where(RefreshToken.token_hash == token_hash)
                )
            else:
                reused = None
            record = session.get(AuthSession, spent or reused) if (spent or reused) else None
            if record is not None and reused is not None:
                self._revoke(session, record.id, "refresh-token-reuse")
        if record is None:
            raise Unauthorized("the refresh token is not valid")
        if reused is not None:
            self.audit.record(
                "auth.refresh_reuse",
                actor=record.owner_id,
                target_type="session",
                target_id=record.id,
                client_ip=client.ip,
            )
            raise Unauthorized("the refresh token was already used; the session is revoked")
        user = self.user(record.owner_id)
        if record.revoked_at is not None or record.expires_at <= now or not user.is_active:
            raise Unauthorized("the session has ended")
        fresh = tokens.new_refresh_token()
        with transaction(self.db) as session:
            session.add(
                RefreshToken(
                    token_hash=tokens.sha256_hex(fresh), session_id=record.id, created_at=now
                )
            )
            session.execute(
                update(AuthSession).where(AuthSession.id == record.id).values(last_used_at=now)
            )
        return self._pair(user, record.id, fresh)

    # sessions ------------------------------------------------------------------------

    def sessions(self, user_id: uuid.UUID) -> list[AuthSession]:
        with self.db() as session:
            return list(
                session.scalars(
                    select(AuthSession)
                    .where(
                        AuthSession.owner_id == user_id,
                        AuthSession.revoked_at.is_(None),
                        AuthSession.expires_at > utcnow(),
                    )
                    .order_by(AuthSession.created_at.desc())
                )
            )

    def revoke_session(self, user_id: uuid.UUID, session_id: uuid.UUID, reason: str) -> None:
        with transaction(self.db) as session:
            record = session.get(AuthSession, session_id)
            if record is None or record.owner_id != user_id:
                raise NotFound(f"no session with id {session_id}")
            self._revoke(session, session_id, reason)

    @staticmethod
    def _revoke(session: Session, session_id: uuid.UUID, reason: str) -> None:
        session.execute(
            update(AuthSession)
            .where(AuthSession.id == session_id, AuthSession.revoked_at.is_(None))
            .values(revoked_at=utcnow(), revoked_reason=reason)
        )

    # resolving tokens ----------------------------------------------------------------

    def principal_from_local_token(self, token: str, *, via: str) -> Principal:
        claims = tokens.verify_access_token(
            token, key=self.settings.signing_key, public_url=self.settings.public_url
        )
        try:
            user_id, session_id = uuid.UUID(claims["sub"]), uuid.UUID(claims["session_id"])
        except ValueError:
            raise Unauthorized("the access token is invalid") from None
        with self.db() as session:
            row = session.execute(
                select(User, AuthSession)
                .join(AuthSession, AuthSession.owner_id == User.id)
                .where(User.id == user_id, AuthSession.id == session_id)
            ).one_or_none()
        if row is None or not row.User.is_active or row.AuthSession.revoked_at is not None:
            raise Unauthorized("the session has ended or the account is deactivated")
        return Principal(
            id=user_id, role=row.User.role, email=row.User.email, session_id=session_id, via=via
        )
