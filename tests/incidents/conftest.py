"""Fixtures for incident handling: a migrated database on SQLite and on a real PostgreSQL
(a fresh database per test), a cheap password hasher, and incidents made by the real store."""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psycopg
import pytest
from argon2 import PasswordHasher
from sqlalchemy.engine import Engine, make_url

from detectors.base import Finding
from incidents.db import make_engine
from incidents.migrate import upgrade
from incidents.store import IncidentStore
from streams.models import AccessEvent, AuthEvent, LogRecord

T0 = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)
BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
]


@pytest.fixture(scope="session")
def hasher() -> PasswordHasher:
    """argon2id at its lowest cost: the same code path, fast enough for many sign-ins."""
    return PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


def _admin_url(server_url: str) -> str:
    return make_url(server_url).set(database="postgres").render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def pg_template(request: pytest.FixtureRequest) -> Iterator[str]:
    """A migrated PostgreSQL database, made once, that each test's database is copied from."""
    server = request.getfixturevalue("postgres_url")
    name = f"bw_tmpl_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(_admin_url(server), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    eng = make_engine(make_url(server).set(database=name).render_as_string(hide_password=False))
    upgrade(eng)
    eng.dispose()  # a template must have no open connections when it is copied
    yield name
    with psycopg.connect(_admin_url(server), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, made once, that each test's database is copied from."""
    path = tmp_path_factory.mktemp("template") / "bw.db"
    eng = make_engine(f"sqlite:///{path}")
    upgrade(eng)
    with eng.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    eng.dispose()
    return path


def _sqlite_copy(template: Path, tmp_path: Path) -> str:
    target = tmp_path / "bw.db"
    shutil.copyfile(template, target)
    return f"sqlite:///{target}"


@pytest.fixture(params=BACKENDS)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A migrated database, once on SQLite and once on PostgreSQL (a fresh one per test)."""
    drop: Callable[[], None] | None = None
    if request.param == "sqlite":
        url = _sqlite_copy(request.getfixturevalue("sqlite_template"), tmp_path)
    else:
        server = request.getfixturevalue("postgres_url")
        template = request.getfixturevalue("pg_template")
        name = f"bw_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(_admin_url(server), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name} TEMPLATE {template}")

        def drop() -> None:
            with psycopg.connect(_admin_url(server), autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

        url = make_url(server).set(database=name).render_as_string(hide_password=False)
    eng = make_engine(url)
    try:
        yield eng
    finally:
        eng.dispose()
        if drop is not None:
            drop()


@pytest.fixture
def sqlite_engine(sqlite_template: Path, tmp_path: Path) -> Iterator[Engine]:
    """A migrated SQLite database, for tests whose subject does not depend on the backend."""
    eng = make_engine(_sqlite_copy(sqlite_template, tmp_path))
    yield eng
    eng.dispose()


def access(
    n: int,
    *,
    actor: str = "u-hans",
    tenant: str = "t-rhein",
    actor_tenant: str | None = None,
    ip: str = "198.51.100.7",
    minutes: float = 0,
    records: int = 500,
    action: str = "export",
    start: datetime = T0,
    **extra: Any,
) -> AccessEvent:
    doc = {
        "event_id": f"a-{actor}-{n}",
        "ts": (start + timedelta(minutes=minutes)).isoformat(),
        "actor_id": actor,
        "actor_type": "customer_user",
        "actor_tenant": actor_tenant or tenant,
        "tenant_id": tenant,
        "action": action,
        "resource_type": "customer",
        "sensitivity": "personal",
        "records": records,
        "ip": ip,
        "country": "NL",
        **extra,
    }
    return AccessEvent.model_validate_json(json.dumps(doc))


def login(
    n: int, *, actor: str, ip: str, minutes: float = 0, outcome: str = "failure", tenant: str = "t-rhein"
) -> AuthEvent:
    doc = {
        "event_id": f"l-{actor}-{n}",
        "ts": (T0 + timedelta(minutes=minutes)).isoformat(),
        "actor_id": actor,
        "actor_type": "customer_user",
        "actor_tenant": tenant,
        "action": "login",
        "outcome": outcome,
        "ip": ip,
    }
    return AuthEvent.model_validate_json(json.dumps(doc))


def log_record(n: int, *, message: str, actor: str = "u-hans", minutes: float = 0, **extra: Any) -> LogRecord:
    doc = {
        "event_id": f"g-{n}",
        "ts": (T0 + timedelta(minutes=minutes)).isoformat(),
        "service": "api",
        "level": "WARNING",
        "message": message,
        "actor_id": actor,
        "tenant_id": "t-rhein",
        **extra,
    }
    return LogRecord.model_validate_json(json.dumps(doc))


def finding(
    events: list[Any],
    *,
    detector: str = "rules.bulk_export",
    actor: str | None = "u-hans",
    severity: str = "high",
    score: float = 80,
    kind: str = "bulk_export",
    tenants: tuple[str, ...] = ("t-rhein",),
    ips: tuple[str, ...] = (),
    facts: dict[str, Any] | None = None,
) -> Finding:
    ips = ips or tuple(dict.fromkeys(e.ip for e in events if getattr(e, "ip", None)))
    return Finding(
        detector=detector,
        kind=kind,
        severity=severity,  # type: ignore[arg-type]
        score=score,
        ts=events[0].ts,
        title=f"{kind} by {actor or ips[0]}",
        reasons=(f"{kind}: {len(events)} events",),
        playbook=f"check the {kind}",
        events=tuple(events),
        actor_id=actor,
        tenant_ids=tenants,
        source_ips=ips,
        facts=facts or {},
    )


@pytest.fixture
def record() -> Callable[..., list[str]]:
    """Stores findings through the real incident store; returns the ids of incidents opened."""

    def run(engine: Engine, *findings: Finding, window: timedelta = timedelta(hours=6)) -> list[str]:
        return IncidentStore(engine, window=window).record(list(findings)).opened

    return run


@pytest.fixture
def ev() -> SimpleNamespace:
    """Builders of ERP events and findings (fictional actors and documentation addresses)."""
    return SimpleNamespace(access=access, login=login, log=log_record, finding=finding, T0=T0)
