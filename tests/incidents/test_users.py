"""Local users: argon2 password hashes, roles, API tokens stored only as hashes, and
server-side browser sessions that end on sign-out, idling, expiry or disabling."""

from __future__ import annotations

from datetime import timedelta

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from breachwatch.core.clock import utcnow
from breachwatch.incidents import users
from breachwatch.incidents.users import ApiTokenRow, ConsoleSessionRow, UserError, UserRow

PASSWORD = "correct horse battery staple"


def test_passwords_are_argon2_hashes_and_check_out(engine: Engine, hasher: PasswordHasher) -> None:
    with Session(engine) as session, session.begin():
        users.add_user(session, "ada", "responder", PASSWORD, email="ada@unisen.example", hasher=hasher)
    with Session(engine) as session:
        row = session.get(UserRow, "ada")
        assert row is not None and row.password_hash.startswith("$argon2id$") and PASSWORD not in row.password_hash
        assert users.authenticate(session, "ada", PASSWORD, hasher=hasher) is not None
        assert users.authenticate(session, "ada", PASSWORD + "!", hasher=hasher) is None
        assert users.authenticate(session, "nobody", PASSWORD, hasher=hasher) is None
        assert users.authenticate(session, "Robert'); DROP TABLE--", PASSWORD, hasher=hasher) is None


def test_bad_users_are_refused(sqlite_engine: Engine, hasher: PasswordHasher) -> None:
    with Session(sqlite_engine) as session, session.begin():
        users.add_user(session, "ada", "viewer", PASSWORD, hasher=hasher)
        for name, role, password, message in [
            ("ada", "viewer", PASSWORD, "already exists"),
            ("Ada Lovelace", "viewer", PASSWORD, "username"),
            ("bob", "superuser", PASSWORD, "unknown role"),
            ("bob", "viewer", "short", "at least 12"),
        ]:
            with pytest.raises(UserError, match=message):
                users.add_user(session, name, role, password, hasher=hasher)


def test_roles_include_the_ones_below() -> None:
    approver = users.Principal("grace", "approver", "session")
    assert approver.can("viewer") and approver.can("responder") and approver.can("approver")
    assert not approver.can("admin")
    assert not users.Principal("vic", "viewer", "session").can("responder")


def test_a_stronger_hash_setting_upgrades_the_stored_hash_at_sign_in(
    sqlite_engine: Engine, hasher: PasswordHasher
) -> None:
    stronger = PasswordHasher(time_cost=2, memory_cost=2048, parallelism=1)
    with Session(sqlite_engine) as session, session.begin():
        users.add_user(session, "ada", "viewer", PASSWORD, hasher=hasher)
    with Session(sqlite_engine) as session, session.begin():
        assert users.authenticate(session, "ada", PASSWORD, hasher=stronger) is not None
    with Session(sqlite_engine) as session:
        row = session.get(UserRow, "ada")
        assert row is not None and "m=2048,t=2" in row.password_hash


def test_tokens_are_stored_hashed_and_stop_working_when_revoked(engine: Engine, hasher: PasswordHasher) -> None:
    with Session(engine) as session, session.begin():
        users.add_user(session, "bot", "responder", PASSWORD, hasher=hasher)
        row, token = users.create_token(session, "bot", "ticketing sync")
        token_id = row.token_id
    assert token.startswith("bwt_")
    with Session(engine) as session, session.begin():
        stored = session.scalars(select(ApiTokenRow)).one()
        assert token.split("_")[-1] not in stored.token_hash and len(stored.token_hash) == 64
        principal = users.authenticate_token(session, token)
        assert principal is not None and (principal.username, principal.role) == ("bot", "responder")
        assert principal.actor == f"bot (token {token_id})"
        assert users.authenticate_token(session, token[:-1] + ("A" if token[-1] != "A" else "B")) is None
        assert users.authenticate_token(session, "Bearer nonsense") is None
        assert users.revoke_token(session, token_id)
    with Session(engine) as session:
        assert users.authenticate_token(session, token) is None


def test_expired_tokens_and_disabled_users_are_refused(sqlite_engine: Engine, hasher: PasswordHasher) -> None:
    with Session(sqlite_engine) as session, session.begin():
        users.add_user(session, "bot", "viewer", PASSWORD, hasher=hasher)
        _, short = users.create_token(session, "bot", expires_in=timedelta(hours=1))
        _, long = users.create_token(session, "bot")
    with Session(sqlite_engine) as session, session.begin():
        assert users.authenticate_token(session, short, now=utcnow() + timedelta(hours=2)) is None
        assert users.authenticate_token(session, long) is not None
        users.disable(session, "bot")
    with Session(sqlite_engine) as session:
        assert users.authenticate_token(session, long) is None
        assert users.authenticate(session, "bot", PASSWORD, hasher=hasher) is None


def test_sessions_end_on_sign_out_idle_and_password_change(sqlite_engine: Engine, hasher: PasswordHasher) -> None:
    idle = timedelta(hours=2)
    with Session(sqlite_engine) as session, session.begin():
        users.add_user(session, "ada", "admin", PASSWORD, hasher=hasher)
        sid, row = users.start_session(session, "ada", lifetime=timedelta(hours=12))
        other, _ = users.start_session(session, "ada", lifetime=timedelta(hours=12))
        assert len(row.csrf_token) >= 32
    with Session(sqlite_engine) as session, session.begin():
        found = users.resolve_session(session, sid, idle=idle)
        assert found is not None and found[0].username == "ada" and found[0].role == "admin"
        assert users.resolve_session(session, sid, idle=idle, now=utcnow() + timedelta(hours=3)) is None
    with Session(sqlite_engine) as session, session.begin():
        assert users.resolve_session(session, sid, idle=idle) is None  # idled out, and deleted
        assert users.resolve_session(session, other, idle=idle) is not None
        users.set_password(session, "ada", "another long passphrase", hasher=hasher)
    with Session(sqlite_engine) as session:
        assert users.resolve_session(session, other, idle=idle) is None
        assert session.scalars(select(ConsoleSessionRow)).all() == []
