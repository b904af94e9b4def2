"""Fixtures for the notice workflow: a stored incident with its evidence, tenants in the
directory, settings, and a confirmation time."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from breachwatch.core.events import ACCESS, AUTH, MODEL_BY_TOPIC, Tenant
from breachwatch.core.settings import Settings, load_settings
from breachwatch.incidents.tables import EvidenceRow, FindingRow, IncidentRow
from breachwatch.notifier.notices import remember_tenants

TENANTS: dict[str, dict[str, Any]] = {
    "t-rhein": {
        "tenant_id": "t-rhein",
        "name": "Rhein Logistik GmbH",
        "jurisdiction": "DE",
        "locale": "de",
        "contacts": [
            {"name": "Hans Weber", "email": "hans.weber@rhein-logistik.example", "role": "owner"},
            {"email": "datenschutz@rhein-logistik.example", "role": "dpo"},
            {"email": "rechnung@rhein-logistik.example", "role": "billing"},
        ],
        "data_subjects": 61000,
    },
    "t-indus": {
        "tenant_id": "t-indus",
        "name": "Indus Textiles (Pvt) Ltd",
        "jurisdiction": "PK",
        "locale": "en",
        "contacts": [
            {"name": "Ayesha Khan", "email": "ayesha@indus-textiles.example", "role": "owner"},
            {"email": "security@indus-textiles.example", "role": "security", "locale": "ur"},
        ],
        "data_subjects": 5200,
    },
}


def tenant(tenant_id: str, **overrides: Any) -> Tenant:
    return Tenant.model_validate_json(json.dumps({**TENANTS[tenant_id], **overrides}))


@pytest.fixture
def directory_entry() -> Callable[..., Tenant]:
    """Builds a tenant's directory entry from ``TENANTS``; keyword arguments override fields."""
    return tenant


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(
        db_url=f"sqlite:///{tmp_path / 'notifier.db'}",
        outbox_dir=tmp_path / "outbox",
        oncall_emails="oncall-security@unisen.example",
    )


@pytest.fixture
def no_notice_files(monkeypatch: pytest.MonkeyPatch) -> None:
    """No contracts or notices file from the developer's environment leaks into a test."""
    monkeypatch.delenv("BREACHWATCH_CONTRACTS_FILE", raising=False)
    monkeypatch.delenv("BREACHWATCH_NOTICES_FILE", raising=False)


def _event(topic: str, body: dict[str, Any]) -> tuple[str, Any]:
    parsed = MODEL_BY_TOPIC[topic].model_validate_json(json.dumps(body))
    return topic, parsed


def build_takeover(
    tenant_id: str = "t-rhein",
    *,
    incident_id: str = "inc-7f3a9c21e4b05d18",
    actor: str = "u-hans",
    records: int = 48211,
    resource_type: str = "customer",
    sensitivity: str = "personal",
    facts: dict[str, Any] | None = None,
    extra_tenants: tuple[str, ...] = (),
) -> tuple[IncidentRow, list[FindingRow], list[EvidenceRow]]:
    """An account takeover (password guessing, then a login) followed by an export of one
    tenant's records, as the store keeps it."""
    opened = dt.datetime(2026, 11, 24, 2, 39, 55, tzinfo=dt.UTC)
    base = {"actor_id": actor, "actor_type": "customer_user", "actor_tenant": tenant_id, "ip": "185.220.101.5"}
    events = [
        _event(
            AUTH,
            {
                **base,
                "event_id": "l-0002",
                "ts": "2026-11-24T02:39:55Z",
                "action": "login",
                "outcome": "failure",
                "country": "NL",
            },
        ),
        _event(
            AUTH,
            {
                **base,
                "event_id": "l-0003",
                "ts": "2026-11-24T02:40:31Z",
                "action": "login",
                "outcome": "success",
                "country": "NL",
            },
        ),
        _event(
            ACCESS,
            {
                **base,
                "event_id": "a-0003",
                "ts": "2026-11-24T02:41:19Z",
                "tenant_id": tenant_id,
                "action": "export",
                "resource_type": resource_type,
                "sensitivity": sensitivity,
                "records": records,
                "bytes": 9123344,
                "country": "NL",
            },
        ),
    ]
    incident = IncidentRow(
        incident_id=incident_id,
        kind="account_takeover",
        title=f"{actor} logged in after password guessing",
        severity="critical",
        score=93.0,
        status="open",
        opened_at=opened,
        updated_at=dt.datetime(2026, 11, 24, 2, 41, 19, tzinfo=dt.UTC),
        actor_ids=[actor],
        tenant_ids=[tenant_id, *extra_tenants],
        source_ips=["185.220.101.5"],
        detectors=["rules.brute_force"],
        reasons=["10 failed logins then a success"],
        evidence_count=len(events),
        group_key=f"actor:{actor}",
        facts=dict(facts or {}),
    )
    finding = FindingRow(
        finding_id="f-0001",
        incident_id=incident_id,
        detector="rules.brute_force",
        kind="account_takeover",
        severity="critical",
        score=93.0,
        ts=opened,
        title=incident.title,
        reasons=list(incident.reasons),
        playbook="Suspend the account's sessions.",
        actor_id=actor,
        facts=dict(facts or {}),
    )
    evidence = [
        EvidenceRow(
            incident_id=incident_id,
            event_id=e.event_id,
            finding_id="f-0001",
            topic=topic,
            ts=e.ts,
            event_json=e.model_dump_json(exclude_none=True),
        )
        for topic, e in events
    ]
    return incident, [finding], evidence


@pytest.fixture
def store_incident(engine: Engine) -> Callable[..., str]:
    """Stores an account takeover of ``tenant_id`` (see ``build_takeover``) and the directory
    entries of ``tenants``; returns the incident id."""

    def store(tenant_id: str = "t-rhein", tenants: tuple[str, ...] = ("t-rhein",), **kw: Any) -> str:
        incident, findings, evidence = build_takeover(tenant_id, **kw)
        incident_id = incident.incident_id
        with Session(engine) as session, session.begin():
            session.add(incident)
            session.flush()
            session.add_all(findings)
            session.add_all(evidence)
            remember_tenants(session, [tenant(t) for t in tenants])
        return incident_id

    return store


@pytest.fixture
def takeover() -> Callable[..., tuple[IncidentRow, list[FindingRow], list[EvidenceRow]]]:
    """``build_takeover``, for tests that change the incident's rows before storing them."""
    return build_takeover
