"""The console's staff-access parts: a tenant's own token reads its transparency log and nothing
else; staff file access requests through the API; the approver decides on the page the e-mail
links to, with no account, once, and only with the form that page served."""

from __future__ import annotations

import logging
import re
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from breachwatch.core.clock import utcnow
from breachwatch.core.settings import Settings
from breachwatch.incidents import users
from breachwatch.notifier.outbox import OutboxRow
from breachwatch.privacy import approvals, transparency
from breachwatch.storage import audit
from tests.fixtures.staff_access import (
    PUBLIC_URL,
    justified,
    remember,
    staff_access,
    staff_settings,
    tenant,
    unjustified,
)

APPROVER = "ciso@rhein.example"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return staff_settings(tmp_path)


@pytest.fixture
def tenant_token(engine: Engine, tokens: dict[str, str]) -> str:
    with Session(engine) as session, session.begin():
        return users.create_token(session, "admin", "rhein transparency", tenant_id="t-rhein")[1]


@pytest.fixture
def logged(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        transparency.record_staff_accesses(
            session,
            [
                staff_access(1, justified(), action="export", records=1200),
                staff_access(2, unjustified(), minutes=30),
                staff_access(1, justified(), tenant="t-fjord"),
            ],
        )


def test_a_tenant_token_reads_its_own_log_and_nothing_else(
    client: TestClient, tenant_token: str, logged: None, h: SimpleNamespace
) -> None:
    mine = client.get("/api/tenants/t-rhein/transparency", headers=h.bearer(tenant_token))
    assert mine.status_code == 200
    entries = mine.json()["entries"]
    assert [(e["staff"], e["records"], e["justified"]) for e in entries] == [
        ("Bilal Example", 1200, True),
        ("Bilal Example", 3, False),
    ]
    assert entries[1]["ticket_id"] is None and "no ticket for tenant t-rhein" in entries[1]["reason"]
    other = client.get("/api/tenants/t-fjord/transparency", headers=h.bearer(tenant_token))
    assert other.status_code == 403 and "only tenant t-rhein's log" in other.json()["detail"]
    for path in ("/api/incidents", "/api/me", "/api/audit/verify", "/api/access-requests?tenant_id=t-fjord"):
        assert client.get(path, headers=h.bearer(tenant_token)).status_code == 403, path
    csv_body = client.get("/api/tenants/t-rhein/transparency?format=csv", headers=h.bearer(tenant_token)).text
    assert csv_body.splitlines()[0].startswith("ts,staff,") and len(csv_body.splitlines()) == 3


def test_pages_of_the_log_and_who_may_read_it(
    client: TestClient, tokens: dict[str, str], logged: None, h: SimpleNamespace, engine: Engine
) -> None:
    first = client.get("/api/tenants/t-rhein/transparency?limit=1", headers=h.bearer(tokens["viewer"])).json()
    rest = client.get(
        "/api/tenants/t-rhein/transparency", params={"after": first["next"]}, headers=h.bearer(tokens["viewer"])
    ).json()
    assert [e["records"] for e in first["entries"] + rest["entries"]] == [1200, 3] and rest["next"] is None
    assert client.get("/api/tenants/t-rhein/transparency").status_code == 401
    with Session(engine) as session:
        reads = [r.actor for r in audit.for_subject(session, "tenant:t-rhein") if r.action == "transparency.read"]
    assert reads == ["viewer (token " + reads[0].split("token ")[1]] * 2


def test_the_console_page_shows_the_log(client: TestClient, signed_in: object, logged: None) -> None:
    signed_in("viewer")  # type: ignore[operator]
    page = client.get("/tenants/t-rhein/transparency?only=unjustified")
    assert page.status_code == 200 and "no ticket for tenant t-rhein" in page.text and "1,200" not in page.text


# --- requests and the approver's page ----------------------------------------------------------------


def _opt_in(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        remember(session, tenant("t-rhein"))
        approvals.require_approval(session, "t-rhein", [APPROVER], "cli:admin")


def _file(client: TestClient, token: str, **change: object) -> object:
    now = utcnow()
    body = {
        "tenant_id": "t-rhein",
        "staff_ids": ["st-bilal"],
        "staff_names": {"st-bilal": "Bilal Example"},
        "purpose": "support_on_request",
        "ticket_id": "SUP-4411",
        "reason": "Customer asked us to fix invoice rounding",
        "starts_at": (now + timedelta(hours=1)).isoformat(),
        "ends_at": (now + timedelta(hours=4)).isoformat(),
        "request_id": "AR-7",
        **change,
    }
    return client.post("/api/access-requests", json=body, headers={"Authorization": f"Bearer {token}"})


def _link(engine: Engine) -> str:
    with Session(engine) as session:
        [mail] = session.scalars(select(OutboxRow).where(OutboxRow.recipient == APPROVER))
    [path] = re.findall(re.escape(PUBLIC_URL) + r"(/access-requests/[A-Za-z0-9._-]+)", mail.body_text)
    return path


def test_staff_file_a_request_and_the_approver_is_asked(
    client: TestClient, tokens: dict[str, str], engine: Engine
) -> None:
    assert _file(client, tokens["responder"]).status_code == 409  # t-rhein does not require approval yet
    _opt_in(engine)
    assert _file(client, tokens["viewer"]).status_code == 403
    filed = _file(client, tokens["responder"])
    assert filed.status_code == 201 and filed.json()["state"] == "pending"
    assert "/access-requests/" in _link(engine)
    assert _file(client, tokens["responder"], purpose="curiosity").status_code == 422


def test_the_approver_decides_once_on_the_page(
    client: TestClient, tokens: dict[str, str], tenant_token: str, engine: Engine, h: SimpleNamespace
) -> None:
    _opt_in(engine)
    _file(client, tokens["responder"])
    path = _link(engine)
    page = client.get(path)
    assert page.status_code == 200 and "Bilal Example" in page.text and 'value="approve"' in page.text
    assert (
        page.headers["referrer-policy"] == "no-referrer"
        and "default-src 'none'" in page.headers["content-security-policy"]
    )
    client.get(path)  # looking twice (a mail scanner, a second tab) decides nothing
    form = re.search(r'name="form" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    done = client.post(path, data={"decision": "approve", "form": form, "comment": "go ahead"})
    assert done.status_code == 200 and "Approved by ciso@rhein.example" in done.text
    again = client.post(path, data={"decision": "deny", "form": form})
    assert again.status_code == 409 and 'data-state="approved"' in again.text
    state = client.get("/api/access-requests/AR-7", headers=h.bearer(tenant_token)).json()
    assert (state["state"], state["decided_by"], state["comment"]) == ("approved", APPROVER, "go ahead")
    # The tenant ends it early with its own token.
    revoked = client.post("/api/access-requests/AR-7/revoke", headers=h.bearer(tenant_token))
    assert revoked.status_code == 200 and revoked.json()["state"] == "revoked"
    assert 'data-state="revoked"' in client.get(path).text
    trail = client.get("/api/access-requests/AR-7/audit", headers=h.bearer(tokens["approver"])).json()
    assert [t["action"] for t in trail] == ["access_request.file", "access_request.approve", "access_request.revoke"]


def test_a_post_without_the_pages_form_decides_nothing(
    client: TestClient, tokens: dict[str, str], engine: Engine
) -> None:
    _opt_in(engine)
    _file(client, tokens["responder"])
    path = _link(engine)
    blind = client.post(path, data={"decision": "approve", "form": "0" * 64})  # another site's form
    assert blind.status_code == 403 and 'data-state="stale_form"' in blind.text
    page = client.get(path)
    form = re.search(r'name="form" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    cross = client.post(path, data={"decision": "approve", "form": form}, headers={"Origin": "https://evil.example"})
    assert cross.status_code == 403
    with Session(engine) as session:
        assert approvals.get(session, "AR-7").state == "pending"
    denied = client.post(path, data={"decision": "deny", "form": form})
    assert denied.status_code == 200 and "Denied by ciso@rhein.example" in denied.text


def test_a_tampered_link_shows_nothing_of_the_request(
    client: TestClient, tokens: dict[str, str], engine: Engine
) -> None:
    _opt_in(engine)
    _file(client, tokens["responder"])
    path = _link(engine)
    tampered = path[:-3] + ("xyz" if not path.endswith("xyz") else "abc")
    page = client.get(tampered)
    assert page.status_code == 400 and "This link cannot be used" in page.text and "Bilal" not in page.text


def test_the_access_log_never_shows_a_link(client: TestClient, tokens: dict[str, str], engine: Engine) -> None:
    _opt_in(engine)
    _file(client, tokens["responder"])
    path = _link(engine)
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("1.2.3.4", "GET", path, "1.1", 200),
        None,
    )
    for f in logging.getLogger("uvicorn.access").filters:
        f.filter(record)
    assert record.getMessage() == '1.2.3.4 - "GET /access-requests/[link] HTTP/1.1" 200'
