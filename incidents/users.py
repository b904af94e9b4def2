"""Local console users, their roles, browser sessions and API tokens.

Passwords are stored as argon2id hashes; API tokens and session ids are random 256-bit
secrets stored only as SHA-256 hashes (they are not guessable, so a slow hash buys nothing),
so a copy of the database lets nobody sign in. Roles are ordered: each includes the one
before it (viewer < responder < approver < admin). A token may instead be scoped to one tenant:
it then holds no role at all and reads only that tenant's transparency log (for the tenant's
own automation; ``Principal.tenant``).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import Boolean, ForeignKey, String, Text, delete, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from breachwatch.core.clock import utcnow
from breachwatch.storage.db import Base

ROLES: tuple[str, ...] = ("viewer", "responder", "approver", "admin")
ROLE_RANK: dict[str, int] = {r: i for i, r in enumerate(ROLES)}
USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
MIN_PASSWORD = 12
TOKEN_PREFIX = "bwt"
_TOKEN = re.compile(r"^bwt_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")


class UserRow(Base):
    """A person who may use the console or the API."""

    __tablename__ = "console_users"

    username: Mapped[str] = mapped_column(String(64), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(Text)
    email: Mapped[str | None] = mapped_column(String(320), nullable=True)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    password_changed_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiTokenRow(Base):
    """A bearer token for automation, acting as its user with the user's role."""

    __tablename__ = "api_tokens"

    token_id: Mapped[str] = mapped_column(String(16), primary_key=True)
    username: Mapped[str] = mapped_column(ForeignKey("console_users.username"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # Set: the token is the tenant's, reads only its transparency log, and has no role.
    tenant_id: Mapped[str | None] = mapped_column(String(128), nullable=True)


class ConsoleSessionRow(Base):
    """A signed-in browser. Server-side, so signing out or disabling a user ends it at once."""

    __tablename__ = "console_sessions"

    session_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    username: Mapped[str] = mapped_column(ForeignKey("console_users.username"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]


class UserError(ValueError):
    """A user, role, password or token request that cannot be carried out."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is acting: a signed-in user or a token, and the role that bounds what they may do."""

    username: str
    role: str
    via: str  # "session", "token:<token_id>" or "cli"
    tenant: str | None = None  # a tenant's token: no role, only that tenant's transparency log

    @property
    def actor(self) -> str:
        """The name the audit trail and the timeline record."""
        if self.tenant is not None:
            return f"tenant {self.tenant} (token {self.via[6:]})"
        return f"{self.username} (token {self.via[6:]})" if self.via.startswith("token:") else self.username

    def can(self, role: str) -> bool:
        return self.tenant is None and ROLE_RANK[self.role] >= ROLE_RANK[role]

    def may_read_tenant(self, tenant_id: str) -> bool:
        """Whether this principal may read ``tenant_id``'s transparency log."""
        return self.tenant == tenant_id if self.tenant is not None else self.can("viewer")


def default_hasher() -> PasswordHasher:
    """argon2id with the library's recommended cost (about 64 MiB, a few tens of ms)."""
    return PasswordHasher()


@lru_cache(maxsize=8)
def _dummy_hash(hasher: PasswordHasher) -> str:
    # Verified against when the user does not exist, so the answer takes as long either way.
    return hasher.hash(secrets.token_urlsafe(16))


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def check_role(role: str) -> str:
    if role not in ROLE_RANK:
        raise UserError(f"unknown role {role[:30]!r}; one of {', '.join(ROLES)}")
    return role


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise UserError(f"a password needs at least {MIN_PASSWORD} characters")
    if len(password) > 1024:
        raise UserError("a password may have at most 1024 characters")


def add_user(
    session: Session,
    username: str,
    role: str,
    password: str,
    *,
    email: str | None = None,
    hasher: PasswordHasher | None = None,
) -> UserRow:
    """Create a user; raises ``UserError`` for a taken or malformed name, role or password."""
    if not USERNAME.fullmatch(username):
        raise UserError("a username is 1-64 characters of a-z, 0-9, '.', '_' or '-', starting with a letter or digit")
    check_role(role)
    check_password(password)
    if email is not None and not re.fullmatch(r"[^@\s]{1,64}@[^@\s]{1,255}", email):
        raise UserError("email must look like name@domain")
    if session.get(UserRow, username) is not None:
        raise UserError(f"user {username!r} already exists")
    user = UserRow(username=username, role=role, password_hash=(hasher or default_hasher()).hash(password), email=email)
    session.add(user)
    session.flush()
    return user


def set_role(session: Session, username: str, role: str) -> UserRow:
    user = _get(session, username)
    user.role = check_role(role)
    return user


def set_password(session: Session, username: str, password: str, *, hasher: PasswordHasher | None = None) -> None:
    """Change a password and end the user's browser sessions."""
    check_password(password)
    user = _get(session, username)
    user.password_hash = (hasher or default_hasher()).hash(password)
    user.password_changed_at = utcnow()
    session.execute(delete(ConsoleSessionRow).where(ConsoleSessionRow.username == username))


def disable(session: Session, username: str) -> None:
    """Lock a user out: sessions end, tokens are revoked."""
    user = _get(session, username)
    user.disabled = True
    session.execute(delete(ConsoleSessionRow).where(ConsoleSessionRow.username == username))
    for token in session.scalars(select(ApiTokenRow).where(ApiTokenRow.username == username)):
        token.revoked_at = token.revoked_at or utcnow()


def _get(session: Session, username: str) -> UserRow:
    user = session.get(UserRow, username)
    if user is None:
        raise UserError(f"no user {username[:64]!r}")
    return user


def identity(actor: str) -> str:
    """The user an audit-trail actor names, as usernames compare: case-insensitively, and a
    token's call ("alice (token 0a1b...)") as its user."""
    name = actor.strip()
    if name.endswith(")") and " (token " in name:
        name = name.rsplit(" (token ", 1)[0]
    return name.strip().lower()


def approver(session: Session, name: str) -> UserRow:
    """The enabled user ``name`` names (case-insensitively) who may approve customer notices;
    ``UserError`` otherwise, saying why."""
    username = identity(name)
    if not username:
        raise UserError("an approver must be named")
    user = session.get(UserRow, username) if USERNAME.fullmatch(username) else None
    if user is None:
        raise UserError(
            f"no user {username[:64]!r}; approvers are console users (breachwatch users add NAME --role approver)"
        )
    if user.disabled:
        raise UserError(f"user {username!r} is disabled")
    if ROLE_RANK[user.role] < ROLE_RANK["approver"]:
        raise UserError(f"user {username!r} has the {user.role} role; approving notices needs the approver role")
    return user


def list_users(session: Session) -> list[UserRow]:
    return list(session.scalars(select(UserRow).order_by(UserRow.username)))


def authenticate(
    session: Session, username: str, password: str, *, hasher: PasswordHasher | None = None
) -> UserRow | None:
    """The user whose password this is, or None; spends the same time whether or not the user exists."""
    hasher = hasher or default_hasher()
    user = session.get(UserRow, username) if USERNAME.fullmatch(username or "") else None
    stored = user.password_hash if user is not None else _dummy_hash(hasher)
    try:
        hasher.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    if user is None or user.disabled:
        return None
    if hasher.check_needs_rehash(stored):
        # The configured cost went up since this hash was made: upgrade it now that we know the password.
        user.password_hash = hasher.hash(password)
    return user


# --- API tokens --------------------------------------------------------------------------------


def create_token(
    session: Session,
    username: str,
    name: str = "api",
    *,
    expires_in: timedelta | None = None,
    tenant_id: str | None = None,
) -> tuple[ApiTokenRow, str]:
    """A new token for ``username``: the row, and the plain token (shown once, stored hashed).
    With ``tenant_id`` it is that tenant's token, issued by ``username``: it can read only the
    tenant's transparency log, whatever the issuer's role."""
    user = _get(session, username)
    if user.disabled:
        raise UserError(f"user {username!r} is disabled")
    if tenant_id is not None and not (0 < len(tenant_id) <= 128):
        raise UserError("a tenant id has 1-128 characters")
    token_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    row = ApiTokenRow(
        token_id=token_id,
        username=username,
        name=(name or "api")[:100],
        token_hash=sha256_hex(secret),
        expires_at=utcnow() + expires_in if expires_in else None,
        tenant_id=tenant_id,
    )
    session.add(row)
    session.flush()
    return row, f"{TOKEN_PREFIX}_{token_id}_{secret}"


def revoke_token(session: Session, token_id: str) -> bool:
    row = session.get(ApiTokenRow, token_id)
    if row is None or row.revoked_at is not None:
        return False
    row.revoked_at = utcnow()
    return True


def list_tokens(session: Session, username: str | None = None) -> list[ApiTokenRow]:
    stmt = select(ApiTokenRow).order_by(ApiTokenRow.created_at)
    if username:
        stmt = stmt.where(ApiTokenRow.username == username)
    return list(session.scalars(stmt))


def authenticate_token(session: Session, token: str, *, now: datetime | None = None) -> Principal | None:
    """The principal a bearer token stands for, or None (unknown, revoked, expired, user disabled)."""
    m = _TOKEN.fullmatch(token or "")
    if m is None:
        return None
    row = session.get(ApiTokenRow, m.group(1))
    if row is None or not hmac.compare_digest(row.token_hash, sha256_hex(m.group(2))):
        return None
    now = now or utcnow()
    if row.revoked_at is not None or (row.expires_at is not None and row.expires_at <= now):
        return None
    user = session.get(UserRow, row.username)
    if user is None or user.disabled:
        return None
    row.last_used_at = now
    return Principal(user.username, user.role, f"token:{row.token_id}", tenant=row.tenant_id)


# --- browser sessions --------------------------------------------------------------------------


def start_session(session: Session, username: str, *, lifetime: timedelta) -> tuple[str, ConsoleSessionRow]:
    """A new browser session: the secret id for the cookie, and the stored row (with its CSRF token)."""
    sid = secrets.token_urlsafe(32)
    now = utcnow()
    row = ConsoleSessionRow(
        session_hash=sha256_hex(sid),
        username=username,
        csrf_token=secrets.token_urlsafe(32),
        created_at=now,
        last_seen_at=now,
        expires_at=now + lifetime,
    )
    session.add(row)
    session.flush()
    return sid, row


def resolve_session(
    session: Session, sid: str, *, idle: timedelta, now: datetime | None = None
) -> tuple[Principal, ConsoleSessionRow] | None:
    """The principal of a live browser session, or None once it expired, idled out or its user is disabled."""
    if not sid or len(sid) > 128:
        return None
    row = session.get(ConsoleSessionRow, sha256_hex(sid))
    if row is None:
        return None
    now = now or utcnow()
    user = session.get(UserRow, row.username)
    if row.expires_at <= now or row.last_seen_at + idle <= now or user is None or user.disabled:
        session.delete(row)
        return None
    # Written at most once a minute: a page load should not always be a write.
    if now - row.last_seen_at > timedelta(minutes=1):
        row.last_seen_at = now
    return Principal(user.username, user.role, "session"), row


def end_session(session: Session, sid: str) -> None:
    session.execute(delete(ConsoleSessionRow).where(ConsoleSessionRow.session_hash == sha256_hex(sid)))


def purge_sessions(session: Session, *, now: datetime | None = None) -> int:
    """Delete expired sessions; returns how many."""
    result = session.execute(delete(ConsoleSessionRow).where(ConsoleSessionRow.expires_at <= (now or utcnow())))
    return int(result.rowcount or 0)
