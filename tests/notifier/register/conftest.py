"""Fixtures for the breach register: confirmed breaches of tenants in several jurisdictions,
stored as the incident store keeps them."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from breachwatch.core.events import Tenant
from breachwatch.core.settings import Settings, load_settings
from breachwatch.notifier.notices import on_breach_confirmed, remember_tenants
from tests.notifier.notices.conftest import TENANTS, build_takeover

DETECTED = dt.datetime(2026, 11, 24, 2, 41, tzinfo=dt.UTC)
CONFIRMED = dt.datetime(2026, 11, 24, 9, 0, tzinfo=dt.UTC)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(
        db_url=f"sqlite:///{tmp_path / 'notifier.db'}",
        outbox_dir=tmp_path / "outbox",
        oncall_emails="oncall-security@unisen.example",
    )


@pytest.fixture(autouse=True)
def notices_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    """No contracts file; the notices file is what the test writes (empty until then)."""
    monkeypatch.delenv("BREACHWATCH_CONTRACTS_FILE", raising=False)
    monkeypatch.delenv("BREACHWATCH_NOTICES_FILE", raising=False)

    def write(text: str) -> None:
        (tmp_path / "notices.toml").write_text(text, encoding="utf-8")
        monkeypatch.setenv("BREACHWATCH_NOTICES_FILE", str(tmp_path / "notices.toml"))

    return write


def directory(tenant_id: str, *, like: str = "t-rhein", **fields: Any) -> Tenant:
    """A directory entry like ``like``'s in ``TENANTS`` under ``tenant_id``, fields overridden."""
    return Tenant.model_validate_json(json.dumps({**TENANTS[like], "tenant_id": tenant_id, **fields}))


@pytest.fixture
def breach(engine: Engine, settings: Settings) -> Callable[..., str]:
    """Stores an incident of ``entry``'s tenant, detected at ``detected``, and confirms it at
    ``confirmed``; returns the incident id."""

    def run(
        entry: Tenant,
        *,
        incident_id: str = "inc-7f3a9c21e4b05d18",
        detected: dt.datetime = DETECTED,
        confirmed: dt.datetime = CONFIRMED,
        **kw: Any,
    ) -> str:
        incident, findings, evidence = build_takeover(entry.tenant_id, incident_id=incident_id, **kw)
        findings[0].detected_at = detected
        findings[0].finding_id = f"f-{incident_id}"  # several breaches in one store
        for row in evidence:
            row.finding_id = findings[0].finding_id
        with Session(engine) as session, session.begin():
            session.add(incident)
            session.flush()
            session.add_all(findings)
            session.add_all(evidence)
            remember_tenants(session, [entry])
        with Session(engine) as session, session.begin():
            on_breach_confirmed(
                session,
                incident_id,
                confirmed_by="approver-bo",
                confirmed_at=confirmed,
                settings=settings,
                now=confirmed,
            )
        return incident_id

    return run
