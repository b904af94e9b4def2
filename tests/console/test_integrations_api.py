"""The console's side of the integrations: an incident's OCSF record from the API, and the
PagerDuty webhook receiver (signature checked, each delivery once, acknowledgements and
resolutions applied through the lifecycle and audited, nothing revealed to the unsigned)."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from breachwatch.console.app import create_app
from breachwatch.console.security import SigninThrottle
from breachwatch.core.settings import Settings
from breachwatch.incidents import lifecycle
from breachwatch.incidents.tables import IncidentRow
from breachwatch.notifier.outbox import OutboxRow
from breachwatch.notifier.paging.inbound import InboundDeliveryRow
from breachwatch.storage import audit
from tests.fixtures.ocsf_schema import ocsf_errors

OLD_SECRET = "pd-fictional-signing-secret-old-1f8e"
NEW_SECRET = "pd-fictional-signing-secret-new-7c2a"
PATH = "/webhooks/pagerduty"


@pytest.fixture
def paged(tmp_path, engine: Engine, hasher, tokens) -> Iterator[TestClient]:
    settings = Settings(
        console_secret_key="fictional-console-key-for-tests-0123456789",
        outbox_dir=tmp_path / "outbox",
        pagerduty_routing_key="R0UT1NGKEYF1CT10NAL0000000000001",
        pagerduty_webhook_secret=f"{OLD_SECRET}, {NEW_SECRET}",
    )
    app = create_app(settings, engine, password_hasher=hasher, throttle=SigninThrottle(per_user=5, per_address=50))
    with TestClient(app, base_url="https://testserver") as client:
        yield client


def _event(kind: str, incident_key: str, agent: str | None = "Ada Example", event_id: str = "01EV") -> bytes:
    event: dict[str, Any] = {
        "id": event_id,
        "event_type": kind,
        "resource_type": "incident",
        "occurred_at": "2026-11-24T02:30:00.000Z",
        "agent": {"id": "PUSER01", "type": "user_reference", "summary": agent} if agent else None,
        "data": {
            "id": "Q1FICT",
            "type": "incident",
            "number": 417,
            "status": kind.split(".")[1],
            "incident_key": incident_key,
        },
    }
    return json.dumps({"event": event}).encode()


def _deliver(client: TestClient, body: bytes, delivery: str, secret: str = NEW_SECRET, signature: str | None = None):
    sig = signature or "v1=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    headers = {"X-PagerDuty-Signature": sig, "X-Webhook-Id": delivery, "Content-Type": "application/json"}
    return client.post(PATH, content=body, headers=headers)


def _status(engine: Engine, incident_id: str) -> str:
    with Session(engine) as session:
        row = session.get(IncidentRow, incident_id)
        assert row is not None
        return row.status


def test_the_api_serves_an_incidents_ocsf_record(client, seeded, tokens, h) -> None:
    response = client.get(f"/api/incidents/{seeded.bulk}/ocsf", headers=h.bearer(tokens["viewer"]))
    assert response.status_code == 200
    record = response.json()
    assert ocsf_errors(record) == []
    assert record["finding_info"]["uid"] == seeded.bulk and record["activity_id"] == 2
    assert {a["technique"]["uid"] for a in record["finding_info"]["attacks"]} >= {"T1078", "T1213"}
    assert client.get("/api/incidents/nope/ocsf", headers=h.bearer(tokens["viewer"])).status_code == 404
    assert client.get(f"/api/incidents/{seeded.bulk}/ocsf").status_code == 401


def test_an_acknowledgement_in_pagerduty_acknowledges_here_once_and_is_audited(paged, engine, seeded) -> None:
    body = _event("incident.acknowledged", seeded.bulk)
    assert _deliver(paged, body, "wh-1").status_code == 202
    assert _deliver(paged, body, "wh-1").status_code == 202  # PagerDuty retried the delivery
    assert _status(engine, seeded.bulk) == "acknowledged"
    with Session(engine) as session:
        [entry] = [e for e in lifecycle.history(session, seeded.bulk) if e.action == "acknowledge"]
        assert entry.actor == "pagerduty:Ada Example"
        assert entry.reason == "acknowledged in pagerduty (incident 417) by Ada Example"
        trail = session.scalars(select(audit.AuditRow).where(audit.AuditRow.action == "incident.acknowledge")).all()
        assert [a.actor for a in trail] == ["pagerduty:Ada Example"]
        [delivery] = session.scalars(select(InboundDeliveryRow)).all()
        assert (delivery.delivery_id, delivery.outcome) == ("wh-1", "acknowledged")
        # The change goes on to the other systems like any other (here the OCSF topic).
        assert session.scalars(
            select(OutboxRow).where(OutboxRow.channel == "ocsf", OutboxRow.message_type == "incident.acknowledged")
        ).all()


def test_a_resolution_signed_with_the_rotated_secret_resolves(paged, engine, seeded) -> None:
    body = _event("incident.resolved", seeded.bulk, event_id="02EV")
    assert _deliver(paged, body, "wh-2", secret=OLD_SECRET).status_code == 202
    assert _status(engine, seeded.bulk) == "resolved"
    again = _event("incident.acknowledged", seeded.bulk, event_id="03EV")
    assert _deliver(paged, again, "wh-3").status_code == 202  # too late: recorded, not applied
    assert _status(engine, seeded.bulk) == "resolved"
    with Session(engine) as session:
        outcome = session.get(InboundDeliveryRow, ("pagerduty", "wh-3")).outcome
        assert outcome.startswith("not applied: cannot acknowledge an incident that is resolved")


@pytest.mark.parametrize(
    "signature",
    ["", "v1=" + "0" * 64, "v0=abc", "v1=" + hmac.new(b"another-secret", b"{}", hashlib.sha256).hexdigest()],
)
def test_an_unsigned_or_forged_delivery_is_refused_and_changes_nothing(paged, engine, seeded, signature) -> None:
    body = _event("incident.resolved", seeded.bulk)
    response = _deliver(paged, body, "wh-9", signature=signature or " ")
    assert (response.status_code, response.content) == (401, b"")
    assert _status(engine, seeded.bulk) == "open"
    with Session(engine) as session:
        assert session.scalars(select(InboundDeliveryRow)).all() == []


def test_the_answer_says_nothing_about_which_incidents_exist(paged, engine, seeded) -> None:
    known = _deliver(paged, _event("incident.triggered", seeded.bulk), "wh-4")
    unknown = _deliver(paged, _event("incident.acknowledged", "no-such-incident"), "wh-5")
    foreign = _deliver(paged, _event("incident.resolved", "a-key-another-tool-paged-with"), "wh-6")
    assert {(r.status_code, r.content) for r in (known, unknown, foreign)} == {(202, b"")}
    assert _status(engine, seeded.bulk) == "open"
    assert _deliver(paged, b"not json", "wh-7").status_code == 400


def test_without_a_secret_there_is_no_receiver(client, seeded) -> None:
    body = _event("incident.resolved", seeded.bulk)
    response = _deliver(client, body, "wh-8")
    assert response.status_code == 303 and response.headers["location"].startswith("/signin")
