"""The JSON API: every action works with a bearer token, every role boundary holds, nothing
answers without credentials, token use and evidence views are audited, and the OpenAPI
schema is served to authenticated callers only."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session
from starlette.routing import Mount

from breachwatch.core.settings import Settings
from breachwatch.incidents import users
from breachwatch.notifier.outbox import OutboxRow
from breachwatch.runtime.app import incident_store
from breachwatch.storage import audit

# The way in (static files are mounted apart); the health endpoints (alive, ready: nothing
# else); SendGrid's event webhook, which proves itself with SendGrid's signature instead
# (tests/console/test_webhook_mount.py); and the approver's page of an access request, whose
# credential is the link itself (tests/console/test_console_staff_access.py).
PUBLIC = {
    ("GET", "/signin"),
    ("POST", "/signin"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("POST", "/webhooks/sendgrid/events"),
    ("GET", "/access-requests/x1"),
    ("POST", "/access-requests/x1"),
}


def _routes(app: FastAPI) -> list[tuple[str, str]]:
    """Every (method, path) the application serves, with placeholders for path parameters."""
    out = []
    pending = list(app.routes)
    while pending:
        route = pending.pop(0)
        included = getattr(route, "original_router", None)
        if included is not None:  # an included router: its routes carry their full paths
            pending.extend(included.routes)
            continue
        methods = getattr(route, "methods", None)
        if isinstance(route, Mount) or not methods:
            continue
        for method in sorted(methods):
            if method == "HEAD":
                continue
            path = re.sub(r"\{action\}", "acknowledge", str(getattr(route, "path", "")))
            path = re.sub(r"\{[^}]+\}", "x1", path)
            out.append((method, path))
    return out


def test_nothing_answers_without_a_session_or_token(app: FastAPI, client: TestClient, seeded: Any) -> None:
    routes = _routes(app)
    assert len(routes) > 30
    checked = 0
    for method, path in routes:
        if (method, path) in PUBLIC:
            continue
        for headers in ({}, {"Authorization": "Bearer bwt_0000000000000000_" + "A" * 43}, {"Authorization": "Basic x"}):
            response = client.request(method, path.replace("x1", seeded.bulk), headers=headers, json={})
            if path.startswith("/api"):
                assert response.status_code == 401, (method, path, response.status_code)
                assert response.headers["www-authenticate"] == "Bearer"
            elif path.startswith("/live/"):  # the page script's polls: a plain 401, no redirect
                assert response.status_code == 401 and response.json() == {"signed_in": False}
            else:
                assert response.status_code == 303, (method, path, response.status_code)
                assert response.headers["location"].startswith("/signin")
            assert seeded.bulk not in response.text and "u-hans" not in response.text
            checked += 1
    assert checked >= 90
    # Unknown paths give nothing away either.
    assert client.get("/api/nothing-here").status_code in (401, 404)
    assert client.get("/nothing-here").status_code == 303


@pytest.mark.parametrize("backend", [pytest.param("sqlite"), pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_every_action_through_the_api(
    client: TestClient, tokens: dict[str, str], seeded: Any, engine: Engine, h: SimpleNamespace, backend: str
) -> None:
    responder, approver = h.bearer(tokens["responder"]), h.bearer(tokens["approver"])
    url = f"/api/incidents/{seeded.bulk}"

    listed = client.get("/api/incidents", headers=h.bearer(tokens["viewer"])).json()
    assert listed["total"] == 2 and listed["by_status"]["open"] == 2
    assert [i["incident_id"] for i in listed["items"]] == [seeded.bulk, seeded.other]
    assert client.get("/api/incidents?severity=medium", headers=responder).json()["total"] == 1
    assert client.get("/api/incidents?q=u-ines", headers=responder).json()["items"][0]["incident_id"] == seeded.other

    detail = client.get(url, headers=responder).json()
    assert detail["incident"]["status"] == "open" and len(detail["findings"]) == 2
    assert detail["incident"]["reasons"][0] == "exported 2 times in one hour"
    # Evidence from 02:00 to 02:05 was judged at its last event; the first finding set the time.
    assert detail["incident"]["opened_at"].startswith("2026-11-24T02:00")
    assert detail["incident"]["detected_at"].startswith("2026-11-24T02:05")

    steps = [
        ("acknowledge", None, "acknowledged"),
        ("investigate", "two exports within minutes", "investigating"),
        ("contain", "sessions revoked", "contained"),
        ("resolve", "tenant confirmed it was a data migration", "resolved"),
        ("reopen", "the migration ended yesterday", "open"),
        ("false_positive", "scheduled export after all", "false_positive"),
    ]
    for action, reason, status in steps:
        r = client.post(f"{url}/{action}", headers=responder, json={"reason": reason})
        assert r.status_code == 200, (action, r.text)
        assert r.json()["incident"]["status"] == status
    after = r.json()
    assert [t["actor"] for t in after["timeline"] if t["kind"] == "change"][-1].startswith("responder (token ")
    assert client.post(f"{url}/resolve", headers=responder, json={"reason": "x"}).status_code == 409
    assert client.post(f"{url}/contain", headers=responder, json={}).status_code == 409
    assert client.post(f"{url}/reopen", headers=responder, json={}).status_code == 409  # no reason given
    client.post(f"{url}/reopen", headers=responder, json={"reason": "not benign"}).raise_for_status()

    split = client.post(
        f"{url}/split",
        headers=responder,
        json={"finding_ids": [f["finding_id"] for f in detail["findings"][1:]], "reason": "the login is separate"},
    )
    assert split.status_code == 201 and split.json()["incident"]["kind"] == "account_takeover"
    new_id = split.json()["incident"]["incident_id"]
    merged = client.post(f"{url}/merge", headers=responder, json={"source_ids": [new_id], "reason": "same person"})
    assert merged.status_code == 200 and len(merged.json()["findings"]) == 2
    assert (
        client.post(f"{url}/merge", headers=responder, json={"source_ids": ["nope"], "reason": "x"}).status_code == 404
    )

    evidence = client.get(f"{url}/evidence", headers=responder).json()
    assert [e["event_id"] for e in evidence] == ["a-u-hans-1", "a-u-hans-2", "l-u-hans-1"]
    activity = client.get(f"{url}/activity", headers=responder).json()
    assert activity["metric"] == "records" and max(x["value"] for x in activity["hours"]) == 9600

    silence = client.post(
        "/api/silences", headers=responder, json={"reason": "pentest", "duration_minutes": 60, "actor_id": "u-ines"}
    )
    assert silence.status_code == 201
    sid = silence.json()["silence_id"]
    assert client.get(f"/api/incidents/{seeded.other}", headers=responder).json()["silenced_by"]["silence_id"] == sid
    assert [s["silence_id"] for s in client.get("/api/silences", headers=responder).json()] == [sid]
    assert client.post(f"/api/silences/{sid}/expire", headers=responder).json()["expired_at"] is not None
    assert (
        client.post("/api/silences", headers=responder, json={"reason": "x", "duration_minutes": 5}).status_code == 422
    )

    breach = client.post(f"{url}/confirm-breach", headers=approver, json={"reason": "records reached a paste site"})
    assert breach.status_code == 200 and breach.json()["breach"]["confirmed_by"].startswith("approver (token ")
    assert client.post(f"{url}/confirm-breach", headers=approver, json={"reason": "again"}).status_code == 409

    with Session(engine) as session:
        trail = audit.for_subject(session, f"incident:{seeded.bulk}")
        actions = [r.action for r in trail]
        assert actions.count("evidence.view") == 1
        assert {"incident.acknowledge", "incident.split", "incident.merge", "incident.confirm_breach"} <= set(actions)
        assert audit.verify(session).ok


@pytest.mark.parametrize("backend", [pytest.param("sqlite"), pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_a_false_positive_shows_what_it_held_back(
    client: TestClient,
    tokens: dict[str, str],
    seeded: Any,
    engine: Engine,
    settings: Settings,
    h: SimpleNamespace,
    backend: str,
) -> None:
    responder = h.bearer(tokens["responder"])
    url = f"/api/incidents/{seeded.other}"
    marked = client.post(f"{url}/false_positive", headers=responder, json={"reason": "u-ines's monthly report"})
    assert marked.status_code == 200, marked.text
    held = marked.json()["suppression"]
    assert held["suppressed_findings"] == 0
    assert datetime.fromisoformat(held["until"]) - datetime.fromisoformat(held["marked_at"]) == timedelta(days=14)

    # The pipeline's own store (paging hook included) meets u-ines's next export three days on.
    later = h.finding(
        [h.access(7, actor="u-ines", minutes=3 * 24 * 60), h.access(8, actor="u-ines", minutes=3 * 24 * 60 + 4)],
        actor="u-ines",
        detector="learned",
        score=70.0,
    )
    result = incident_store(settings, engine).record([later])
    assert result.opened == [] and result.suppressed == [later.finding_id]

    detail = client.get(url, headers=h.bearer(tokens["viewer"])).json()
    assert detail["incident"]["status"] == "false_positive"
    assert detail["suppression"]["suppressed_findings"] == 1
    assert [(f["finding_id"], f["suppressed"]) for f in detail["findings"]][-1] == (later.finding_id, True)
    assert detail["evidence_count"] == 3
    note = [t for t in detail["timeline"] if t["text"] == "held back findings of a pattern judged a false positive"]
    assert len(note) == 1 and note[0]["actor"] == "breachwatch" and "nobody was paged" in note[0]["reason"]
    assert client.get("/api/incidents?status=all", headers=responder).json()["total"] == 2
    with Session(engine) as session:
        pages = select(func.count()).select_from(OutboxRow).where(OutboxRow.message_type.like("oncall%"))
        assert session.scalar(pages) == 0
        assert audit.verify(session).ok

    # Reopened: the count stays on record, the suppression ends.
    reopened = client.post(f"{url}/reopen", headers=responder, json={"reason": "the report is not due yet"}).json()
    assert reopened["suppression"] == {"suppressed_findings": 1, "marked_at": None, "until": None}


ROLE_CASES = [
    ("viewer", "POST", "/api/incidents/{bulk}/acknowledge", {}, 403),
    ("viewer", "POST", "/api/incidents/{bulk}/resolve", {"reason": "x"}, 403),
    ("viewer", "POST", "/api/incidents/{bulk}/merge", {"source_ids": ["{other}"], "reason": "x"}, 403),
    ("viewer", "POST", "/api/incidents/{bulk}/split", {"finding_ids": ["x"], "reason": "x"}, 403),
    ("viewer", "POST", "/api/silences", {"reason": "x", "duration_minutes": 5, "kind": "k"}, 403),
    ("viewer", "POST", "/api/silences/x/expire", {}, 403),
    ("viewer", "GET", "/api/notices/x/preview", None, 403),
    ("viewer", "POST", "/api/incidents/{bulk}/confirm-breach", {"reason": "x"}, 403),
    ("responder", "POST", "/api/notices/x/approve", {}, 403),
    ("responder", "POST", "/api/notices/deliveries/x/outcome", {"arrived": True}, 403),
    ("approver", "GET", "/api/audit/verify", None, 403),
    ("viewer", "GET", "/api/incidents/{bulk}", None, 200),
    ("viewer", "GET", "/api/incidents/{bulk}/evidence", None, 200),
    ("responder", "POST", "/api/incidents/{bulk}/acknowledge", {}, 200),
    # Roles as the README states them: a responder confirms a breach, approvers approve notices.
    ("responder", "POST", "/api/incidents/{bulk}/confirm-breach", {"reason": "x"}, 200),
    ("admin", "GET", "/api/audit/verify", None, 200),
]


@pytest.mark.parametrize(("role", "method", "path", "body", "status"), ROLE_CASES)
def test_role_boundaries(
    client: TestClient,
    tokens: dict[str, str],
    seeded: Any,
    h: SimpleNamespace,
    role: str,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    status: int,
) -> None:
    path = path.format(bulk=seeded.bulk)
    if body and "source_ids" in body:
        body = {**body, "source_ids": [seeded.other]}
    response = client.request(method, path, headers=h.bearer(tokens[role]), json=body)
    assert response.status_code == status, response.text
    if status == 403:
        assert "role" in response.json()["detail"]


def test_token_use_is_audited_and_a_revoked_token_stops_working(
    client: TestClient, tokens: dict[str, str], engine: Engine, h: SimpleNamespace
) -> None:
    me = client.get("/api/me", headers=h.bearer(tokens["responder"])).json()
    assert me == {"username": "responder", "role": "responder", "via": "token"}
    token_id = tokens["responder"].split("_")[1]
    with Session(engine) as session, session.begin():
        [use] = audit.recent(session, action="token.use")
        assert (use.subject, use.detail) == (f"token:{token_id}", {"method": "GET", "path": "/api/me"})
        users.revoke_token(session, token_id)
    assert client.get("/api/me", headers=h.bearer(tokens["responder"])).status_code == 401


def test_a_session_needs_its_csrf_token_for_api_changes(
    client: TestClient, seeded: Any, signed_in: Any, engine: Engine
) -> None:
    csrf = signed_in("responder")
    url = f"/api/incidents/{seeded.bulk}/acknowledge"
    assert client.get("/api/me").json()["via"] == "session"
    assert client.post(url, json={}).status_code == 403
    assert client.post(url, json={}, headers={"X-CSRF-Token": "forged"}).status_code == 403
    assert client.post(url, json={}, headers={"X-CSRF-Token": csrf}).json()["incident"]["status"] == "acknowledged"


def test_openapi_is_served_to_authenticated_callers(
    client: TestClient, tokens: dict[str, str], h: SimpleNamespace
) -> None:
    assert client.get("/api/openapi.json").status_code == 401
    schema = client.get("/api/openapi.json", headers=h.bearer(tokens["viewer"])).json()
    assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    paths = schema["paths"]
    assert "/api/incidents/{incident_id}/{action}" in paths and "/api/incidents/{incident_id}/confirm-breach" in paths
    assert not any(p.startswith("/incidents") or p == "/signin" for p in paths)  # pages are not API
    assert client.get("/docs").status_code == 303  # no third-party docs page


def test_audit_verify_names_an_edited_row(
    client: TestClient, tokens: dict[str, str], seeded: Any, engine: Engine, h: SimpleNamespace
) -> None:
    admin = h.bearer(tokens["admin"])
    client.post(f"/api/incidents/{seeded.bulk}/acknowledge", headers=h.bearer(tokens["responder"]), json={})
    assert client.get("/api/audit/verify", headers=admin).json()["ok"]
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET actor = 'someone else' WHERE action = 'incident.acknowledge'"))
        seq = conn.execute(text("SELECT seq FROM audit_log WHERE action = 'incident.acknowledge'")).scalar_one()
    check = client.get("/api/audit/verify", headers=admin).json()
    assert not check["ok"] and check["bad_seqs"] == [seq]


def test_customer_notices_through_the_api(
    client: TestClient, tokens: dict[str, str], seeded: Any, h: SimpleNamespace
) -> None:
    url = f"/api/incidents/{seeded.bulk}"
    client.post(f"{url}/confirm-breach", headers=h.bearer(tokens["approver"]), json={"reason": "data left"})
    notices = client.get(f"{url}/notices", headers=h.bearer(tokens["viewer"])).json()
    assert [n["tenant_id"] for n in notices] == ["t-rhein"]
    notice_id = notices[0]["notice_id"]
    preview = client.get(f"/api/notices/{notice_id}/preview", headers=h.bearer(tokens["responder"])).json()
    assert preview["subject"] and preview["text"]
    approved = client.post(f"/api/notices/{notice_id}/approve", headers=h.bearer(tokens["approver"]))
    assert approved.status_code in (200, 409), approved.text  # 409: e.g. no recipient address on file
    assert client.get("/api/notices/nope/preview", headers=h.bearer(tokens["responder"])).status_code == 404
