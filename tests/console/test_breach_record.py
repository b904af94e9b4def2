"""The breach register and a breach's record in the console and the JSON API: who may read and
who may decide, the CSRF token on every form and session call, the audit trail, and what a
user sees after each decision (a law-enforcement delay holds the California clocks only,
an assessment's decision, a moment moving a clock, the exports)."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from breachwatch.core.events import Tenant
from breachwatch.incidents.store import IncidentStore
from breachwatch.notifier.notices import remember_tenants
from breachwatch.storage import audit

SIERRA = {
    "tenant_id": "t-sierra",
    "name": "Sierra Foods Inc",
    "jurisdiction": "US-CA",
    "locale": "en",
    "contacts": [{"email": "privacy@sierra-foods.example", "role": "dpo"}],
    "data_subjects": 900,
}


@pytest.fixture
def breach_id(engine: Engine, client: TestClient, tokens: dict[str, str], h: SimpleNamespace) -> str:
    """A confirmed breach of HR records (social security numbers) of a California tenant."""
    events = [h.access(n, actor="u-rosa", tenant="t-sierra", resource_type="employee", records=300) for n in (1, 2)]
    store = IncidentStore(engine)
    [incident_id] = store.record([h.finding(events, actor="u-rosa", tenant_ids=("t-sierra",))]).opened
    with Session(engine) as session, session.begin():
        remember_tenants(session, [Tenant.model_validate(SIERRA | {"contacts": tuple(SIERRA["contacts"])})])
    confirmed = client.post(
        f"/api/incidents/{incident_id}/confirm-breach",
        json={"reason": "HR export reached an outside address"},
        headers=h.bearer(tokens["approver"]),
    )
    assert confirmed.status_code == 200, confirmed.text
    return incident_id


def _actions(engine: Engine, action: str) -> list[str]:
    with Session(engine) as session:
        return [r.action for r in audit.recent(session, action=action)]


# --- the API ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", [pytest.param("sqlite"), pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_a_delay_through_the_api_holds_exactly_the_california_clocks(
    client: TestClient, tokens: dict[str, str], breach_id: str, h: SimpleNamespace, engine: Engine, backend: str
) -> None:
    # Cal. Civ. Code 1798.82(c): notification "shall be delayed" at a law enforcement agency's
    # determination that it would impede a criminal investigation.
    body = {
        "agency": "Fictional County Sheriff",
        "official": "Det. R. Example",
        "form": "written",
        "requested_at": (datetime.now(UTC) - timedelta(minutes=5)).isoformat(),
        "reference": "case 2026-118",
    }
    assert (
        client.post(f"/api/incidents/{breach_id}/delays", json=body, headers=h.bearer(tokens["responder"])).status_code
        == 403
    )
    made = client.post(f"/api/incidents/{breach_id}/delays", json=body, headers=h.bearer(tokens["approver"]))
    assert made.status_code == 201, made.text
    holds = made.json()["holds"]
    # The vendor's own duty to the owner was due "immediately" after detection (24 November):
    # a request made after a deadline passed holds nothing back.
    assert {x["rule_id"] for x in holds} == {"us-ca.residents"}
    assert {x["provision"] for x in holds} == {"Cal. Civ. Code 1798.82(c)"}
    [notice] = client.get(f"/api/incidents/{breach_id}/notices", headers=h.bearer(tokens["viewer"])).json()
    assert {d["rule_id"]: d["status"] for d in notice["duties"]}["us-ca.residents"] == "paused"
    assert _actions(engine, "delay_recorded") == ["delay_recorded"]

    lifted = client.post(f"/api/delays/{made.json()['delay_id']}/lift", json={}, headers=h.bearer(tokens["approver"]))
    assert lifted.status_code == 200 and {x["rule_id"] for x in lifted.json()["restarted"]} == {"us-ca.residents"}
    again = client.post(f"/api/delays/{made.json()['delay_id']}/lift", json={}, headers=h.bearer(tokens["approver"]))
    assert again.status_code == 422 and "already lifted" in again.json()["detail"]


@pytest.mark.parametrize("backend", [pytest.param("sqlite"), pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_register_record_and_exports_by_role(
    client: TestClient, tokens: dict[str, str], breach_id: str, h: SimpleNamespace, engine: Engine, backend: str
) -> None:
    viewer, responder = h.bearer(tokens["viewer"]), h.bearer(tokens["responder"])
    [listed] = client.get("/api/register", headers=viewer).json()["entries"]
    assert (listed["incident_id"], listed["notified"]) == (breach_id, False)
    assert client.get("/api/register?notified=true", headers=viewer).json()["entries"] == []
    record = client.get(f"/api/incidents/{breach_id}/breach-record", headers=viewer).json()
    assert [m["moment"] for m in record["moments"]] == ["detected", "confirmed", "aware"]
    assert client.get("/api/incidents/nope/breach-record", headers=viewer).status_code == 404

    assert (
        client.put(f"/api/incidents/{breach_id}/breach-record", json={"facts": "x"}, headers=viewer).status_code == 403
    )
    written = client.put(
        f"/api/incidents/{breach_id}/breach-record",
        json={"facts": "HR records exported", "remedial_action": "account disabled"},
        headers=responder,
    )
    assert written.status_code == 200 and written.json()["remedial_action"] == "account disabled"

    assert client.get("/api/register/export?format=csv", headers=viewer).status_code == 403
    exported = client.get("/api/register/export?format=csv", headers=responder)
    assert exported.headers["content-type"].startswith("text/csv")
    [row] = list(csv.DictReader(io.StringIO(exported.text)))
    assert (row["incident_id"], row["jurisdiction"], row["facts"]) == (breach_id, "US-CA", "HR records exported")
    assert _actions(engine, "register.export") == ["register.export"]


def test_an_assessment_and_a_moment_through_the_api(
    client: TestClient, tokens: dict[str, str], breach_id: str, h: SimpleNamespace
) -> None:
    approver = h.bearer(tokens["approver"])
    refused = client.post(
        f"/api/incidents/{breach_id}/assessments",
        json={"tenant_id": "t-sierra", "jurisdiction": "US-CA", "owner": "customer", "decision": "no_notify"},
        headers=approver,
    )
    assert refused.status_code == 422 and "reasons" in refused.json()["detail"]
    made = client.post(
        f"/api/incidents/{breach_id}/assessments",
        json={
            "tenant_id": "t-sierra",
            "jurisdiction": "US-CA",
            "owner": "customer",
            "factors": {"acquired": {"level": "high", "note": "downloaded"}},
            "decision": "notify",
        },
        headers=approver,
    )
    assert made.status_code == 201 and made.json()["decision"] == "notify"
    naive = client.post(
        f"/api/incidents/{breach_id}/moments",
        json={"moment": "determined", "at": "2026-11-24T09:00:00"},
        headers=approver,
    )
    assert naive.status_code == 422 and "time zone" in naive.json()["detail"]


def test_a_session_needs_its_csrf_token_for_register_changes(
    client: TestClient, signed_in: Any, breach_id: str
) -> None:
    csrf = signed_in("responder")
    url = f"/api/incidents/{breach_id}/breach-record"
    assert client.put(url, json={"facts": "x"}).status_code == 403
    assert client.put(url, json={"facts": "x"}, headers={"X-CSRF-Token": csrf}).status_code == 200


# --- the pages -------------------------------------------------------------------------------------


def test_the_breach_record_page_and_its_forms(
    client: TestClient, signed_in: Any, breach_id: str, engine: Engine
) -> None:
    csrf = signed_in("approver")
    incident_page = client.get(f"/incidents/{breach_id}").text
    assert f'href="/incidents/{breach_id}/breach-record"' in incident_page
    assert "clock: discovery ← detected" in incident_page  # which moment started the clock
    page = client.get(f"/incidents/{breach_id}/breach-record")
    assert page.status_code == 200 and "Duties and their clocks" in page.text
    assert "us-ca.residents" in page.text and "Record a request to delay notice" in page.text

    forged = client.post(f"/incidents/{breach_id}/breach-record/moment", data={"moment": "determined", "at": "x"})
    assert forged.status_code == 403
    bad = client.post(
        f"/incidents/{breach_id}/breach-record/moment", data={"csrf": csrf, "moment": "determined", "at": "yesterday"}
    )
    assert bad.status_code == 422 and "is not a time like" in bad.text
    at = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    done = client.post(
        f"/incidents/{breach_id}/breach-record/moment",
        data={"csrf": csrf, "moment": "determined", "at": at, "note": "counsel"},
    )
    assert done.status_code == 303
    shown = client.get(done.headers["location"]).text
    assert "Moment recorded." in shown and "counsel" in shown

    assessed = client.post(
        f"/incidents/{breach_id}/breach-record/assessment",
        data={
            "csrf": csrf,
            "tenant_id": "t-sierra",
            "jurisdiction": "US-CA",
            "owner": "vendor",
            "factor_sensitivity": "high",
            "note_sensitivity": "social security numbers",
            "decision": "notify",
            "reasons": "",
        },
    )
    assert assessed.status_code == 303
    shown = client.get(assessed.headers["location"]).text
    assert "Assessment recorded." in shown and "social security numbers" in shown
    assert _actions(engine, "harm_assessed") == ["harm_assessed"]


def test_a_viewer_reads_the_register_but_gets_no_forms(client: TestClient, signed_in: Any, breach_id: str) -> None:
    csrf = signed_in("viewer")
    register = client.get("/register").text
    assert f"/incidents/{breach_id}/breach-record" in register and "A responder can export the register." in register
    record = client.get(f"/incidents/{breach_id}/breach-record").text
    assert re.findall(r'<form method="post" action="([^"]+)"', record) == ["/signout"]
    refused = client.post(
        f"/incidents/{breach_id}/breach-record/contacts", data={"csrf": csrf, "tenant_id": "t-sierra", "missing": 3}
    )
    assert refused.status_code == 403 and "responder" in refused.text
    assert client.get("/register/export.csv").status_code == 403


def test_the_register_exports_from_the_page(client: TestClient, signed_in: Any, breach_id: str) -> None:
    signed_in("responder")
    data = client.get("/register/export.json")
    assert data.status_code == 200 and "attachment" in data.headers["content-disposition"]
    assert data.json()["entries"][0]["incident_id"] == breach_id
    assert client.get("/register/export.xml").status_code == 404
