"""The pages: sign-in with secure cookies, a CSRF-protected sign-in form and a throttle;
CSRF on every form post; role checks; what the incident page shows (and records); and
untrusted event text staying text."""

from __future__ import annotations

import dataclasses
import json
import re
from http.cookies import SimpleCookie
from types import SimpleNamespace
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from breachwatch.incidents.store import IncidentStore
from breachwatch.incidents.tables import IncidentRow
from breachwatch.storage import audit
from tests.fixtures.incident_db import login as failed_login


def _cookie_header(response: Any, name: str) -> str:
    for header in response.headers.get_list("set-cookie"):
        if header.startswith(name + "="):
            return header
    raise AssertionError(f"no {name} cookie set")


def test_sign_in_sets_a_secure_session_cookie_and_goes_where_asked(
    client: TestClient, engine: Engine, seeded: Any, h: SimpleNamespace
) -> None:
    first = client.get(f"/incidents/{seeded.bulk}")
    assert first.status_code == 303 and first.headers["location"] == f"/signin?next=%2Fincidents%2F{seeded.bulk}"
    response = h.sign_in(client, "viewer", next_=f"/incidents/{seeded.bulk}")
    assert response.status_code == 303 and response.headers["location"] == f"/incidents/{seeded.bulk}"
    header = _cookie_header(response, "__Host-bw_session")
    morsel = SimpleCookie(header)["__Host-bw_session"]
    assert morsel["httponly"] and morsel["secure"] and morsel["samesite"] == "strict" and morsel["path"] == "/"
    assert "domain=" not in header.lower()
    assert client.get(f"/incidents/{seeded.bulk}").status_code == 200
    with Session(engine) as session:
        [row] = audit.recent(session, action="signin")
        assert row.actor == "viewer" and row.detail["address"]


def test_sign_in_never_redirects_off_site(client: TestClient, h: SimpleNamespace) -> None:
    for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
        assert h.sign_in(client, "viewer", next_=target).headers["location"] == "/incidents"
        client.cookies.clear()


def test_wrong_passwords_are_refused_recorded_and_throttled(
    client: TestClient, engine: Engine, h: SimpleNamespace
) -> None:
    for _ in range(3):
        wrong = h.sign_in(client, "responder", password="not the password at all")
        assert wrong.status_code == 401 and "Wrong user name or password" in wrong.text
    blocked = h.sign_in(client, "responder")  # right password, but this address guessed this name
    assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) > 0
    assert "__Host-bw_session" not in blocked.headers.get("set-cookie", "")
    assert h.sign_in(client, "viewer").status_code == 303  # other users are not locked out
    with Session(engine) as session:
        assert len(audit.recent(session, action="signin.failed")) == 3
        assert len(audit.recent(session, action="signin.throttled")) == 1


def test_the_sign_in_form_needs_its_own_token(client: TestClient) -> None:
    response = client.post("/signin", data={"username": "admin", "password": "correct horse battery staple"})
    assert response.status_code == 400 and "expired" in response.text
    client.get("/signin")  # a cookie, but a token from elsewhere
    forged = client.post(
        "/signin",
        data={"username": "admin", "password": "correct horse battery staple", "signin_token": "made-up"},
    )
    assert forged.status_code == 400


def test_form_posts_need_the_sessions_csrf_token(client: TestClient, seeded: Any, signed_in: Any) -> None:
    csrf = signed_in("responder")
    url = f"/incidents/{seeded.bulk}/actions/acknowledge"
    assert client.post(url, data={}).status_code == 403
    assert client.post(url, data={"csrf": "forged"}).status_code == 403
    done = client.post(url, data={"csrf": csrf})
    assert done.status_code == 303 and done.headers["location"] == f"/incidents/{seeded.bulk}"
    page = client.get(done.headers["location"]).text
    assert "Acknowledged: you are handling this incident." in page and "status-acknowledged" in page
    assert "Acknowledged: you are handling" not in client.get(done.headers["location"]).text  # shown once
    assert client.post("/signout", data={}).status_code == 403
    assert client.post("/signout", data={"csrf": csrf}).status_code == 303
    assert client.get("/incidents").status_code == 303  # signed out


def test_a_viewer_sees_the_incident_but_cannot_act(
    client: TestClient, seeded: Any, signed_in: Any, engine: Engine
) -> None:
    csrf = signed_in("viewer")
    page = client.get(f"/incidents/{seeded.bulk}").text
    assert "You can look and comment but not act" in page and "/actions/acknowledge" not in page
    refused = client.post(f"/incidents/{seeded.bulk}/actions/acknowledge", data={"csrf": csrf})
    assert refused.status_code == 403 and "needs the responder role" in refused.text
    assert client.get("/audit").status_code == 403
    with Session(engine) as session:
        incident = session.get(IncidentRow, seeded.bulk)
        assert incident is not None and incident.status == "open"


def test_the_incident_page_explains_charts_and_records_the_view(
    client: TestClient, seeded: Any, signed_in: Any, engine: Engine
) -> None:
    signed_in("responder")
    page = client.get(f"/incidents/{seeded.bulk}")
    assert page.status_code == 200
    html = page.text
    assert "Why BreachWatch flagged this" in html and "exported 2 times in one hour" in html
    attack = html[html.index('id="attack"') :]
    attack = attack[: attack.index("</p>")]
    assert ">T1567</a> Exfiltration Over Web Service" in attack and ">T1078</a> Valid Accounts" in attack
    detected = html[html.index('id="detected"') :]
    assert "5.0 min after the first evidence" in detected[: detected.index("</div>")]
    assert "Ask the tenant&#39;s admin whether the export was expected." in html
    # A bulk export charts each export against the export limit.
    svg = re.search(r"<svg class=\"chart\".*?</svg>", html, re.S)
    assert svg is not None and 'data-bars="2"' in svg.group(0) and 'data-peak="4800"' in svg.group(0)
    assert "export limit: 20k" in svg.group(0) and svg.group(0).count('data-value="4800"') == 2
    evidence = html[html.index('id="evidence"') :]
    assert evidence.count('<td class="nowrap mono small">2026-11-24') == 3
    assert "198.51.100.7" in evidence and "4,800" in evidence and "203.0.113.50" in evidence
    assert "opened the incident" in html and "found: u-hans logged in from BR" in html
    assert page.headers["content-security-policy"].startswith("default-src 'none'")
    assert page.headers["x-frame-options"] == "DENY" and page.headers["cache-control"] == "no-store"
    with Session(engine) as session:
        [view] = audit.recent(session, action="evidence.view")
        assert (view.actor, view.subject, view.detail) == (
            "responder",
            f"incident:{seeded.bulk}",
            {"events": 3, "via": "console"},
        )
    assert "viewed the evidence (3 events, 2 times)" in client.get(f"/incidents/{seeded.bulk}").text


def test_event_text_is_shown_as_text(client: TestClient, engine: Engine, signed_in: Any, h: SimpleNamespace) -> None:
    nasty = '<img src=x onerror="alert(1)">'
    event = h.access(7, actor="u-mallory", resource_type=nasty)
    [iid] = IncidentStore(engine).record([h.finding([event], actor="u-mallory", title=f"export of {nasty}")]).opened
    signed_in("viewer")
    html = client.get(f"/incidents/{iid}").text
    assert nasty not in html
    assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in html


def test_lists_filters_silences_and_the_audit_page(
    client: TestClient, seeded: Any, signed_in: Any, engine: Engine
) -> None:
    csrf = signed_in("admin")
    listing = client.get("/incidents").text
    assert listing.index(seeded.bulk) < listing.index(seeded.other)  # high before medium
    assert seeded.bulk not in client.get("/incidents?severity=medium").text
    assert seeded.other in client.get("/incidents?q=u-ines").text
    assert "No incidents match" in client.get("/incidents?status=resolved").text

    added = client.post(
        f"/incidents/{seeded.other}/silence",
        data={"csrf": csrf, "reason": "agreed pentest of u-ines", "hours": "2", "match_actor": "1"},
    )
    assert added.status_code == 303
    page = client.get(f"/incidents/{seeded.other}").text
    assert "held back by a silence owned by <strong>admin</strong>" in page
    silences_page = client.get("/silences").text
    assert "agreed pentest of u-ines" in silences_page
    silence_id = re.search(r"/silences/([0-9a-f]+)/expire", silences_page).group(1)  # type: ignore[union-attr]
    assert client.post(f"/silences/{silence_id}/expire", data={"csrf": csrf}).status_code == 303
    bad = client.post("/silences", data={"csrf": csrf, "reason": "nothing matched"})
    assert bad.status_code == 303 and bad.headers["location"] == "/silences"
    assert "at least one of" in client.get("/silences").text

    audit_page = client.get("/audit?verify=true").text
    assert "The chain is intact" in audit_page and "silence.add" in audit_page
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET actor = 'nobody' WHERE action = 'silence.add'"))
    assert "The audit chain is broken" in client.get("/audit?verify=true").text


def test_incidents_one_finding_ties_together_are_linked_on_both_pages(
    client: TestClient, engine: Engine, signed_in: Any, h: SimpleNamespace
) -> None:
    """Two takeovers from one network stored before the credential stuffing that explains
    them: the stuffing joins the earlier, and each page points to the other."""
    store = IncidentStore(engine)
    t = [h.login(n, f"u-{n}", minutes=n) for n in (1, 2)]
    [first] = store.record([h.finding([t[0]], actor="u-1", kind="account_takeover")]).opened
    [second] = store.record([h.finding([t[1]], actor="u-2", kind="account_takeover")]).opened
    spray = [h.login(10 + n, f"u-{n}", minutes=0.5) for n in range(12)]
    stuffing = h.finding(spray, actor=None, kind="credential_stuffing", title="credential stuffing from 203.0.113.50")
    assert store.record([stuffing]).updated == [first]
    signed_in("responder")
    for page_of, other in ((first, second), (second, first)):
        html = client.get(f"/incidents/{page_of}").text
        related = html[html.index('id="related"') :]
        assert re.search(rf"correlated with</span>\s*<a class=\"mono\" href=\"/incidents/{other}\">", related), page_of
        assert "linked a correlated incident" in html and "Merge them if they are one attack." in html
        # The merge form offers the other one.
        assert f'name="source_ids" class="mono" value="{other}"' in html
    csrf = h.csrf_of(client.get(f"/incidents/{first}").text)
    merged = client.post(
        f"/incidents/{first}/merge", data={"csrf": csrf, "source_ids": second, "reason": "one campaign"}
    )
    assert merged.status_code == 303
    # Merged (closed): no longer offered.
    assert 'name="source_ids" class="mono" value=""' in client.get(f"/incidents/{first}").text


def test_merge_and_split_from_the_page(client: TestClient, seeded: Any, signed_in: Any, engine: Engine) -> None:
    csrf = signed_in("responder")
    page = client.get(f"/incidents/{seeded.bulk}").text
    finding_ids = re.findall(r'name="finding_id" value="([0-9a-f]+)"', page)
    assert len(finding_ids) == 2
    no_reason = client.post(f"/incidents/{seeded.bulk}/split", data={"csrf": csrf, "finding_id": finding_ids[1]})
    assert no_reason.status_code == 303 and "split needs a reason" in client.get(no_reason.headers["location"]).text
    split = client.post(
        f"/incidents/{seeded.bulk}/split",
        data={"csrf": csrf, "finding_id": finding_ids[1], "reason": "separate login"},
    )
    new_id = split.headers["location"].split("/")[2].split("?")[0]
    assert split.status_code == 303 and new_id != seeded.bulk
    merged = client.post(
        f"/incidents/{seeded.bulk}/merge",
        data={"csrf": csrf, "source_ids": f"{new_id}, {seeded.other}", "reason": "one attacker"},
    )
    assert merged.status_code == 303
    with Session(engine) as session:
        statuses = {i: session.get(IncidentRow, i).status for i in (seeded.bulk, new_id, seeded.other)}  # type: ignore[union-attr]
    assert statuses == {seeded.bulk: "open", new_id: "resolved", seeded.other: "resolved"}


def test_confirming_a_breach_and_the_customer_notices(
    client: TestClient, seeded: Any, signed_in: Any, engine: Engine
) -> None:
    csrf = signed_in("approver")
    no_reason = client.post(f"/incidents/{seeded.bulk}/breach", data={"csrf": csrf, "reason": ""})
    assert no_reason.status_code == 303
    assert "confirm breach needs a reason" in client.get(no_reason.headers["location"]).text
    done = client.post(
        f"/incidents/{seeded.bulk}/breach", data={"csrf": csrf, "reason": "records reached a paste site"}
    )
    assert done.status_code == 303
    page = client.get(done.headers["location"]).text
    assert (
        "Breach confirmed. The awareness time is recorded." in page and "<strong>Confirmed</strong> by approver" in page
    )
    notice_id = re.search(r"/notices/([^/]+)/preview\?incident=", page).group(1)  # type: ignore[union-attr]
    preview = client.get(f"/notices/{notice_id}/preview?incident={seeded.bulk}")
    assert preview.status_code == 200 and "Notice preview" in preview.text
    framed = client.get(f"/notices/{notice_id}/preview.html")
    assert framed.status_code == 200 and "sandbox" in framed.headers["content-security-policy"]
    approve = client.post(f"/notices/{notice_id}/approve", data={"csrf": csrf, "incident_id": seeded.bulk})
    assert approve.status_code in (303, 409)  # 409 when the directory has no recipient for the tenant
    with Session(engine) as session:
        assert [r.action for r in audit.recent(session, action="notice.preview")] == ["notice.preview"]


def test_a_responder_confirms_and_another_user_approves(
    client: TestClient, seeded: Any, signed_in: Any, engine: Engine
) -> None:
    from breachwatch.core.events import Tenant
    from breachwatch.notifier.notices import remember_tenants

    rhein = {
        "tenant_id": "t-rhein",
        "name": "Rhein Logistik GmbH",
        "jurisdiction": "DE",
        "locale": "de",
        "contacts": [{"email": "datenschutz@rhein-logistik.example", "role": "dpo"}],
    }
    with Session(engine) as session, session.begin():
        remember_tenants(session, [Tenant.model_validate_json(json.dumps(rhein))])
    csrf = signed_in("responder")
    done = client.post(f"/incidents/{seeded.bulk}/breach", data={"csrf": csrf, "reason": "records left the tenant"})
    assert done.status_code == 303
    page = client.get(done.headers["location"]).text
    assert "<strong>Confirmed</strong> by responder" in page and "/approve" not in page  # a responder cannot approve
    notice_id = re.search(r"/notices/([^/]+)/preview\?incident=", page).group(1)  # type: ignore[union-attr]

    # The regulator-report draft can be previewed too, sandboxed like the notice.
    preview = client.get(f"/notices/{notice_id}/preview?incident={seeded.bulk}").text
    assert "Regulator-report draft" in preview and "preview.html?part=regulator_draft" in preview
    draft = client.get(f"/notices/{notice_id}/preview.html?part=regulator_draft")
    assert draft.status_code == 200 and "Entwurf zu Ihrer Verwendung" in draft.text
    assert "sandbox" in draft.headers["content-security-policy"]

    client.cookies.clear()  # the responder leaves; an approver signs in
    csrf = signed_in("approver")
    approve = client.post(f"/notices/{notice_id}/approve", data={"csrf": csrf, "incident_id": seeded.bulk})
    assert approve.status_code == 303 and approve.headers["location"] == f"/incidents/{seeded.bulk}"
    page = client.get(approve.headers["location"]).text
    assert "Notice approved: its messages are sealed and queued." in page and "Approved by approver" in page


def test_an_actors_risk_ledger_page_and_api(
    client: TestClient, engine: Engine, signed_in: Any, h: SimpleNamespace, tokens: dict[str, str]
) -> None:
    from breachwatch.incidents.ledger import RiskPolicy

    store = IncidentStore(engine, risk=RiskPolicy())
    for n, (kind, minutes) in enumerate((("slow_exfiltration", 0), ("account_takeover", 60), ("dormant_account", 120))):
        f = h.finding([h.access(40 + n, minutes=minutes)], kind=kind, score=50)
        store.record([dataclasses.replace(f, signal=True, dedup_key=f"s{n}")])
    signed_in("viewer")
    page = client.get("/actors/u-hans/risk")
    assert page.status_code == 200
    ledger = page.text[page.text.index('id="ledger"') :]
    assert "Risk 7" in ledger and "of 100" in ledger and ledger.count("<tr><td") == 3
    assert "Slow exfiltration" in ledger or "slow exfiltration" in ledger
    doc = client.get("/api/actors/u-hans/risk", headers=h.bearer(tokens["viewer"])).json()
    assert doc["threshold"] == 100.0 and [c["source"] for c in doc["contributions"]] == [
        "dormant_account",
        "account_takeover",
        "slow_exfiltration",
    ]
    assert doc["contributions"][0]["points"] == 25.0 and doc["incidents"] == []
    assert client.get("/api/actors/u-nobody/risk", headers=h.bearer(tokens["viewer"])).json()["contributions"] == []


def test_the_incident_page_counts_a_runs_logins_across_every_partitions_share(
    client: TestClient, engine: Engine, signed_in: Any, seeded: Any, h: SimpleNamespace
) -> None:
    """Two partitions each report their share of one address's run (their own accounts) under
    one finding id: the page counts the whole run from the evidence. An incident without
    failed logins has no such line."""
    shares = []
    for part in range(2):
        fails = [
            failed_login(100 * part + i, actor=f"u-share{part}-{i % 4}", ip=f"192.0.2.{50 + i % 2}", minutes=i / 10)
            for i in range(12)
        ]
        share = h.finding(fails, actor=None, kind="credential_stuffing", title="credential stuffing from 192.0.2.50")
        shares.append(dataclasses.replace(share, dedup_key="192.0.2.50|2026-11-24"))
    taken = failed_login(99, actor="u-share0-1", ip="192.0.2.50", minutes=3, outcome="success")
    shares[1] = dataclasses.replace(shares[1], events=(*shares[1].events, taken))
    [iid] = IncidentStore(engine).record(shares).opened
    signed_in("viewer")
    text = re.sub(r"<[^>]+>", "", client.get(f"/incidents/{iid}").text)
    assert "Logins across all stored evidence: 24 failed, against 8 accounts from 2 addresses; 1 successful." in text
    assert 'id="logins"' not in client.get(f"/incidents/{seeded.bulk}").text
