"""Fixtures for the console: a migrated database (SQLite, and PostgreSQL where asked), one
user and one API token per role, incidents made by the real store, and an HTTPS test client."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psycopg
import pytest
from argon2 import PasswordHasher
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session

from breachwatch.console.app import create_app
from breachwatch.console.security import SigninThrottle
from breachwatch.core.events import AccessEvent, AuthEvent
from breachwatch.core.findings import Finding
from breachwatch.core.settings import Settings
from breachwatch.incidents import users
from breachwatch.incidents.store import IncidentStore
from breachwatch.storage.db import make_engine
from breachwatch.storage.migrate import upgrade
from tests.fixtures.sqlite import sqlite_copy

T0 = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)
PASSWORD = "correct horse battery staple"
ROLES = ("viewer", "responder", "approver", "admin")


@pytest.fixture(scope="session")
def hasher() -> PasswordHasher:
    return PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


def _admin(server: str) -> str:
    return make_url(server).set(database="postgres").render_as_string(hide_password=False)


@pytest.fixture(params=[pytest.param("sqlite", id="sqlite")])
def backend(request: pytest.FixtureRequest) -> str:
    """Which database the console runs on; tests that must pass on both override this."""
    return str(request.param)


@pytest.fixture
def engine(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if backend == "sqlite":
        eng = make_engine(sqlite_copy(request.getfixturevalue("sqlite_template"), tmp_path / "bw.db"))
        yield eng
        eng.dispose()
        return
    server = request.getfixturevalue("postgres_url")
    name = f"bw_console_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(_admin(server), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    eng = make_engine(make_url(server).set(database=name).render_as_string(hide_password=False))
    try:
        upgrade(eng)
        yield eng
    finally:
        eng.dispose()
        with psycopg.connect(_admin(server), autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        console_secret_key="fictional-console-key-for-tests-0123456789",
        console_secure_cookies=True,
        outbox_dir=tmp_path / "outbox",
    )


@pytest.fixture
def tokens(engine: Engine, hasher: PasswordHasher) -> dict[str, str]:
    """Users ``viewer``, ``responder``, ``approver`` and ``admin`` (each with that role), and a token for each."""
    out: dict[str, str] = {}
    with Session(engine) as session, session.begin():
        for role in ROLES:
            users.add_user(session, role, role, PASSWORD, email=f"{role}@unisen.example", hasher=hasher)
            out[role] = users.create_token(session, role, "tests")[1]
    return out


@pytest.fixture
def app(settings: Settings, engine: Engine, hasher: PasswordHasher, tokens: dict[str, str]) -> FastAPI:
    return create_app(settings, engine, password_hasher=hasher, throttle=SigninThrottle(per_user=5, per_address=50))


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, base_url="https://console.unisen.example", follow_redirects=False) as c:
        yield c


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def sign_in(client: TestClient, username: str, password: str = PASSWORD, next_: str = "/incidents") -> Any:
    page = client.get("/signin")
    token = re.search(r'name="signin_token" value="([^"]+)"', page.text)
    assert token is not None
    return client.post(
        "/signin",
        data={"username": username, "password": password, "signin_token": token.group(1), "next": next_},
    )


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None, "the page carries no CSRF token"
    return found.group(1)


# --- incidents, made by the real store ------------------------------------------------------------


def access(n: int, *, actor: str = "u-hans", tenant: str = "t-rhein", minutes: float = 0, **extra: Any) -> AccessEvent:
    doc = {
        "event_id": f"a-{actor}-{n}",
        "ts": (T0 + timedelta(minutes=minutes)).isoformat(),
        "actor_id": actor,
        "actor_type": "customer_user",
        "actor_tenant": tenant,
        "tenant_id": tenant,
        "action": "export",
        "resource_type": "customer",
        "sensitivity": "personal",
        "records": 4800,
        "ip": "198.51.100.7",
        "country": "NL",
        **extra,
    }
    return AccessEvent.model_validate_json(json.dumps(doc))


def login(n: int, actor: str, minutes: float = 0) -> AuthEvent:
    doc = {
        "event_id": f"l-{actor}-{n}",
        "ts": (T0 + timedelta(minutes=minutes)).isoformat(),
        "actor_id": actor,
        "actor_type": "customer_user",
        "actor_tenant": "t-rhein",
        "action": "login",
        "outcome": "success",
        "ip": "203.0.113.50",
        "country": "BR",
    }
    return AuthEvent.model_validate_json(json.dumps(doc))


def finding(events: list[Any], *, actor: str = "u-hans", **kw: Any) -> Finding:
    fields: dict[str, Any] = {
        "detector": "rules.bulk_export",
        "kind": "bulk_export",
        "severity": "high",
        "score": 84.0,
        "ts": events[0].ts,
        "title": f"{actor} exported {sum(getattr(e, 'records', 0) for e in events):,} personal records",
        "reasons": (f"exported {len(events)} times in one hour", "no export history of their own"),
        "playbook": "Ask the tenant's admin whether the export was expected.",
        "events": tuple(events),
        "actor_id": actor,
        "tenant_ids": ("t-rhein",),
        "source_ips": tuple(dict.fromkeys(e.ip for e in events)),
        "facts": {"limit": 20000},
    }
    fields.update(kw)
    return Finding(**fields)


@dataclass
class Seeded:
    bulk: str  # u-hans: two findings (an export, then a login), high
    other: str  # u-ines: one finding, medium


@pytest.fixture
def seeded(engine: Engine) -> Seeded:
    store = IncidentStore(engine)
    [bulk] = store.record(
        [
            finding([access(1), access(2, minutes=5)]),
            finding(
                [login(1, "u-hans", minutes=9)],
                detector="rules.login_anomaly",
                kind="account_takeover",
                title="u-hans logged in from BR",
                reasons=("first login from BR",),
                source_ips=("203.0.113.50",),
            ),
        ]
    ).opened
    [other] = store.record(
        [finding([access(1, actor="u-ines", minutes=60)], actor="u-ines", severity="medium", score=55)]
    ).opened
    return Seeded(bulk=bulk, other=other)


@pytest.fixture
def signed_in(client: TestClient) -> Callable[[str], str]:
    """Signs the client in as a role's user; returns the CSRF token of the first page."""

    def run(role: str) -> str:
        response = sign_in(client, role)
        assert response.status_code == 303, response.text
        return csrf_of(client.get("/incidents").text)

    return run


@pytest.fixture
def h() -> SimpleNamespace:
    """Request helpers: ``bearer(token)`` headers, ``sign_in(client, user)``, ``csrf_of(html)``;
    builders of events and findings."""
    return SimpleNamespace(bearer=bearer, sign_in=sign_in, csrf_of=csrf_of, access=access, login=login, finding=finding)
