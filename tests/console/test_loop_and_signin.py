"""The on-call loop without friction, and a sign-in that cannot be turned against the team:
links to the console in every page sent, messages after a redirect (never text from the URL),
forms kept across a lapsed session, the approved notice's place in the outbox, plain words,
bulk actions and live refresh; the throttle, trusted proxies and bidirectional text."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session
from starlette.requests import Request

from breachwatch.console.context import ConsoleContext
from breachwatch.console.security import SigninThrottle
from breachwatch.core.events import LogRecord, Tenant
from breachwatch.core.findings import Finding
from breachwatch.core.settings import Settings
from breachwatch.incidents.store import IncidentStore
from breachwatch.incidents.tables import IncidentRow
from breachwatch.notifier.notices.directory import remember_tenants
from breachwatch.notifier.outbox import OutboxRow
from breachwatch.notifier.paging import escalation
from breachwatch.runtime import app as composition

SAME_SITE = {"sec-fetch-site": "same-origin"}


def test_every_page_sent_links_to_the_incident(engine: Engine, settings: Settings, h: SimpleNamespace) -> None:
    linked = settings.model_copy(update={"console_url": "https://breachwatch.unisen.example/"})
    store = IncidentStore(engine, on_new_incident=composition.incident_hooks(linked))
    [iid] = store.record([h.finding([h.access(1)])]).opened
    later = datetime.now(UTC) + timedelta(hours=1)
    escalation.run_once(engine, linked, escalation.default_policy(linked), now=later)
    with Session(engine) as session:
        messages = list(session.scalars(select(OutboxRow).where(OutboxRow.incident_id == iid)))
    kinds = {m.message_type for m in messages}
    assert {"oncall_alert", escalation.PAGE_TYPE} <= kinds, kinds
    for m in messages:
        assert f"https://breachwatch.unisen.example/incidents/{iid}" in m.body_text, m.message_type


def test_messages_come_from_the_server_never_from_the_url(
    client: TestClient, seeded: Any, signed_in: Any, h: SimpleNamespace
) -> None:
    signed_in("responder")
    page = client.get(f"/incidents/{seeded.bulk}?error=Call+0900+now&done=acknowledge").text
    assert "Call 0900 now" not in page and "alert-error" not in page and "Acknowledged" not in page


def test_a_form_posted_after_the_session_lapsed_is_offered_again(
    client: TestClient, seeded: Any, engine: Engine, h: SimpleNamespace
) -> None:
    url = f"/incidents/{seeded.bulk}/actions/resolve"
    form = {"csrf": "from-the-old-session", "reason": "tenant confirmed the migration"}
    kept = client.post(url, data=form, headers=SAME_SITE)
    assert kept.status_code == 303 and kept.headers["location"] == "/signin?next=%2Fpending"
    signed = h.sign_in(client, "responder", next_="/pending")
    assert signed.headers["location"] == "/pending"
    offer = client.get("/pending").text
    assert f"Resolve incident {seeded.bulk}" in offer and "tenant confirmed the migration" in offer
    assert "from-the-old-session" not in offer
    sent = client.post(url, data={"csrf": h.csrf_of(offer), "reason": "tenant confirmed the migration"})
    assert sent.status_code == 303
    with Session(engine) as session:
        assert session.get(IncidentRow, seeded.bulk).status == "resolved"  # type: ignore[union-attr]
    assert client.get("/pending").headers["location"] == "/incidents"  # offered once
    # Opened as a page (a bookmark of the form's address): back to the incident, not a 405.
    assert client.get(url).headers["location"] == f"/incidents/{seeded.bulk}"


def test_a_form_from_another_site_is_not_kept(client: TestClient, seeded: Any) -> None:
    url = f"/incidents/{seeded.bulk}/actions/resolve"
    planted = client.post(url, data={"reason": "x"}, headers={"sec-fetch-site": "cross-site"})
    assert planted.headers["location"].startswith("/signin?next=%2Fincidents%2F")
    assert "bw_pending" not in planted.headers.get("set-cookie", "")


def test_the_approved_notice_says_where_it_is_and_warns_when_nothing_sends(
    client: TestClient, seeded: Any, signed_in: Any, engine: Engine, h: SimpleNamespace
) -> None:
    rhein = Tenant.model_validate_json(
        json.dumps(
            {
                "tenant_id": "t-rhein",
                "name": "Rhein Logistik GmbH",
                "jurisdiction": "DE",
                "locale": "de",
                "contacts": [{"email": "security@rhein.example", "role": "security"}],
                "data_subjects": 40000,
            }
        )
    )
    with Session(engine) as session, session.begin():
        remember_tenants(session, [rhein])
    csrf = signed_in("responder")  # a responder confirms the breach, as the README says
    client.post(f"/incidents/{seeded.bulk}/breach", data={"csrf": csrf, "reason": "records reached a paste site"})
    page = client.get(f"/incidents/{seeded.bulk}").text
    assert "<strong>Confirmed</strong> by responder" in page and "approves notices" in page
    assert "/approve" not in page  # a responder cannot approve
    client.cookies.clear()
    csrf = signed_in("approver")
    page = client.get(f"/incidents/{seeded.bulk}").text
    assert "draft: 0 of 1 approval" in page
    notice_id = page.split("/notices/")[1].split("/")[0]
    client.post(f"/notices/{notice_id}/approve", data={"csrf": csrf, "incident_id": seeded.bulk})
    page = client.get(f"/incidents/{seeded.bulk}").text
    assert "waiting in the outbox: the running service sends it" in page
    assert f'/notices/{notice_id}/approve"' not in page  # the button left with the state
    with Session(engine) as session, session.begin():
        session.execute(update(OutboxRow).values(next_attempt_at=datetime.now(UTC) - timedelta(minutes=10)))
    assert "no BreachWatch service seems to be running" in client.get(f"/incidents/{seeded.bulk}").text


def test_plain_words_folded_reasons_and_the_raw_event(
    client: TestClient, engine: Engine, signed_in: Any, h: SimpleNamespace
) -> None:
    event = h.access(1, country="QA", user_agent="curl/8.5.0")
    reasons = (
        "exported 2 times in one hour",
        "exported 3 times in one hour",
        "tenants: a, b and c",
        "tenants: c, a and b",
    )
    [iid] = IncidentStore(engine).record([h.finding([event], reasons=reasons)]).opened
    signed_in("viewer")
    page = client.get(f"/incidents/{iid}").text
    why = page[page.index('<ul class="reasons">') : page.index("What to do")]
    assert why.count("<li>") == 2 and "exported 3 times in one hour" in why and "more reason" not in why
    evidence = page[page.index('id="evidence"') :]
    assert "Qatar" in evidence and "curl/8.5.0" in evidence and '"user_agent": "curl/8.5.0"' in evidence


def test_bulk_actions_and_live_versions(client: TestClient, seeded: Any, signed_in: Any, engine: Engine) -> None:
    csrf = signed_in("responder")
    before = client.get(f"/live/incidents/{seeded.bulk}").json()["version"]
    listed = client.get("/live/incidents").json()["version"]
    client.get(f"/incidents/{seeded.bulk}")  # looking changes nothing the page shows
    assert client.get(f"/live/incidents/{seeded.bulk}").json()["version"] == before
    done = client.post(
        "/incidents/bulk",
        data={"csrf": csrf, "action": "acknowledge", "incident_id": [seeded.bulk, seeded.other], "back": "/incidents"},
    )
    assert done.status_code == 303 and "2 incidents acknowledged." in client.get("/incidents").text
    assert client.get(f"/live/incidents/{seeded.bulk}").json()["version"] != before
    assert client.get("/live/incidents").json()["version"] != listed
    refused = client.post(
        "/incidents/bulk", data={"csrf": csrf, "action": "resolve", "incident_id": [seeded.bulk], "back": "/incidents"}
    )
    assert "0 resolved; 1 not changed" in client.get(refused.headers["location"]).text
    with Session(engine) as session:
        assert {session.get(IncidentRow, i).status for i in (seeded.bulk, seeded.other)} == {"acknowledged"}  # type: ignore[union-attr]


def test_the_silence_form_matches_the_incidents_own_network(
    client: TestClient, engine: Engine, signed_in: Any, h: SimpleNamespace
) -> None:
    spray = [h.login(n, f"u-{n}", minutes=n / 10) for n in range(12)]
    stuffing = h.finding(spray, actor=None, kind="credential_stuffing", title="credential stuffing from 203.0.113.50")
    [iid] = IncidentStore(engine).record([stuffing]).opened
    csrf = signed_in("responder")
    page = client.get(f"/incidents/{iid}").text
    assert 'name="match_ip" value="1" checked> network 203.0.113.0/24' in page
    assert 'name="match_actor" value="1" checked' not in page
    client.post(f"/incidents/{iid}/silence", data={"csrf": csrf, "reason": "agreed test", "match_ip": "1"})
    assert "ip = 203.0.113.0/24" in client.get("/silences").text


def test_event_text_cannot_reorder_the_page(
    client: TestClient, engine: Engine, signed_in: Any, h: SimpleNamespace
) -> None:
    doc = {
        "event_id": "log-1",
        "ts": "2026-11-24T02:00:00Z",
        "service": "billing",
        "level": "ERROR",
        "message": "user \u202etxt.exe renamed",
        "actor_id": "u-hans",
        "tenant_id": "t-rhein",
    }
    record = LogRecord.model_validate_json(json.dumps(doc))
    title = "burst on billing: user \u202etxt.exe renamed"
    finding = Finding(
        detector="logs.error_burst",
        kind="error_burst",
        severity="high",
        score=86.0,
        ts=record.ts,
        title=title,
        reasons=("a new error message on billing",),
        playbook="Read the service's new error messages.",
        events=(record,),
        actor_id="u-hans",
        tenant_ids=("t-rhein",),
    )
    [iid] = IncidentStore(engine).record([finding]).opened
    signed_in("viewer")
    page = client.get(f"/incidents/{iid}").text
    assert "\u202e" not in page and "user [U+202E]txt.exe renamed" in page


# --- the throttle -------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_parallel_guesses_are_counted_before_any_password_is_checked() -> None:
    throttle = SigninThrottle()
    allowed: list[bool] = []
    start = threading.Barrier(30)

    def guess() -> None:
        start.wait()
        allowed.append(throttle.reserve("oncall", "198.51.100.9") is None)

    threads = [threading.Thread(target=guess) for _ in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert allowed.count(True) == 3  # the free attempts of one address at one name


def test_a_flood_slows_the_team_for_a_minute_at_most() -> None:
    clock = Clock()
    throttle = SigninThrottle(clock=clock)
    # Anonymous failures behind one shared address (a proxy, compose's port) ...
    for n in range(200):
        throttle.reserve(f"guess-{n}", "10.0.0.1")
        clock.now += 0.01
    wait = throttle.reserve("amara", "10.0.0.1")
    assert wait is not None and wait <= 60
    clock.now += wait
    assert throttle.reserve("amara", "10.0.0.1") is None  # ... then the teammate signs in
    # Guesses at the person on call, from many addresses: they wait a minute at most.
    for n in range(100):
        throttle.reserve("oncall", f"203.0.113.{n}")
        clock.now += 0.01
    wait = throttle.reserve("oncall", "192.0.2.1")
    assert wait is not None and wait <= 60
    clock.now += wait
    assert throttle.reserve("oncall", "192.0.2.1") is None
    throttle.succeeded("oncall", "192.0.2.1")
    assert throttle.reserve("oncall", "192.0.2.1") is None


def _request(peer: str, forwarded: str | None) -> Request:
    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded else []
    return Request({"type": "http", "method": "GET", "path": "/", "headers": headers, "client": (peer, 5000)})


def test_forwarded_addresses_are_believed_only_from_trusted_proxies(settings: Settings, engine: Engine) -> None:
    plain = ConsoleContext(settings, engine)
    assert plain.client_address(_request("127.0.0.1", "203.0.113.9")) == "127.0.0.1"
    proxied = ConsoleContext(settings.model_copy(update={"console_trusted_proxies": ("10.0.0.0/8",)}), engine)
    assert proxied.client_address(_request("10.0.0.5", "203.0.113.9, 10.0.0.4")) == "203.0.113.9"
    assert proxied.client_address(_request("198.51.100.1", "203.0.113.9")) == "198.51.100.1"
    # A client cannot slip an address in front of what the proxy appended.
    assert proxied.client_address(_request("10.0.0.5", "1.2.3.4, 203.0.113.9")) == "203.0.113.9"
