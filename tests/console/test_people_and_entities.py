"""People and places: assigning (audited), comments with @mentions and the "mine" list, the
playbook's tasks; actor, tenant and network pages; search by id, e-mail, address and network;
sortable, paginated lists with a priority; the audit page's filters."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from breachwatch.core.events import AuthEvent
from breachwatch.incidents import people
from breachwatch.incidents.store import IncidentStore
from breachwatch.storage import audit

T0 = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)


def test_assign_reassign_comment_mention_and_the_mine_list(
    client: TestClient, seeded: Any, signed_in: Any, engine: Engine, tokens: dict[str, str], h: SimpleNamespace
) -> None:
    csrf = signed_in("responder")
    url = f"/incidents/{seeded.bulk}"
    # Acknowledging an incident nobody holds takes it.
    client.post(f"{url}/actions/acknowledge", data={"csrf": csrf})
    page = client.get(url).text
    assert re.search(r'id="assignee"><strong>responder</strong>', page)
    moved = client.post(f"{url}/assign", data={"csrf": csrf, "assignee": "approver", "reason": "shift change"})
    assert moved.status_code == 303 and moved.headers["location"] == f"{url}#people"
    assert "Assigned to approver." in client.get(url).text
    refused = client.post(f"{url}/assign", data={"csrf": csrf, "assignee": "nobody-here"})
    assert "no console user" in client.get(refused.headers["location"]).text
    client.post(f"{url}/comments", data={"csrf": csrf, "body": "@viewer please check the tenant's ticket; cc @ghost"})
    page = client.get(url).text
    assert "please check the tenant&#39;s ticket" in page and "mentions viewer</span>" in page
    with Session(engine) as session:
        rows = audit.for_subject(session, f"incident:{seeded.bulk}")
        trail = [(r.action, r.detail.get("assignee"), r.detail.get("previous")) for r in rows]
        assert ("incident.assign", "responder", None) in trail and ("incident.assign", "approver", "responder") in trail
        assert people.mine(session, "viewer") == {seeded.bulk}  # mentioned
        assert people.mine(session, "approver") == {seeded.bulk}  # assigned
        assert people.mine(session, "responder") == set()
    # The "mine" list, in the page and the API.
    mine_page = client.get("/incidents?mine=1").text  # the responder handed it over
    assert "My incidents" in mine_page and "No incidents match" in mine_page
    mine = client.get("/api/incidents?mine=true", headers=h.bearer(tokens["viewer"])).json()
    assert [i["incident_id"] for i in mine["items"]] == [seeded.bulk]
    detail = client.get(f"/api{url}", headers=h.bearer(tokens["viewer"])).json()
    assert detail["assignee"] == "approver" and detail["comments"][0]["mentions"] == ["viewer"]


def test_the_playbook_becomes_a_checklist(
    client: TestClient, engine: Engine, signed_in: Any, h: SimpleNamespace
) -> None:
    playbook = "Ask the tenant's admin whether the export was expected; if not, revoke the actor's sessions."
    [iid] = IncidentStore(engine).record([h.finding([h.access(1)], playbook=playbook)]).opened
    csrf = signed_in("responder")
    page = client.get(f"/incidents/{iid}").text
    ids = re.findall(rf"/incidents/{iid}/tasks/([0-9a-f]+)", page)
    assert len(ids) == 2 and "(0 of 2 done)" in page
    assert "If not, revoke the actor&#39;s sessions." in page
    client.post(f"/incidents/{iid}/tasks/{ids[1]}", data={"csrf": csrf, "done": "1"})
    page = client.get(f"/incidents/{iid}").text
    assert "(1 of 2 done)" in page and "ticked a task" in page
    client.post(f"/incidents/{iid}/tasks/{ids[1]}", data={"csrf": csrf, "done": "0"})
    assert "(0 of 2 done)" in client.get(f"/incidents/{iid}").text


def test_a_viewer_may_comment_but_not_assign(client: TestClient, seeded: Any, signed_in: Any) -> None:
    csrf = signed_in("viewer")
    url = f"/incidents/{seeded.bulk}"
    assert client.post(f"{url}/assign", data={"csrf": csrf, "assignee": "viewer"}).status_code == 403
    assert client.post(f"{url}/comments", data={"csrf": csrf, "body": "looks like the migration"}).status_code == 303
    assert "looks like the migration" in client.get(url).text


def failed_login(n: int, actor: str, ip: str) -> AuthEvent:
    doc = {
        "event_id": f"f-{actor}-{n}",
        "ts": (T0 + timedelta(seconds=20 * n)).isoformat(),
        "actor_id": actor,
        "actor_type": "customer_user",
        "actor_tenant": "t-rhein",
        "action": "login",
        "outcome": "failure",
        "ip": ip,
        "country": "QA",
        "user_agent": "python-requests/2.31",
    }
    return AuthEvent.model_validate_json(json.dumps(doc))


def test_entity_pages_link_everything_and_search_finds_them(
    client: TestClient, engine: Engine, seeded: Any, signed_in: Any, h: SimpleNamespace
) -> None:
    spray = [failed_login(n, f"u-{n}", "192.0.2.77") for n in range(12)]
    stuffing = h.finding(spray, actor=None, kind="credential_stuffing", title="credential stuffing from 192.0.2.77")
    [net_incident] = IncidentStore(engine).record([stuffing]).opened
    signed_in("viewer")
    page = client.get(f"/incidents/{seeded.bulk}").text
    for href in ("/actors/u-hans", "/tenants/t-rhein", "/networks/198.51.100.7", "/networks/203.0.113.50"):
        assert f'href="{href}"' in page, href
    actor = client.get("/actors/u-hans").text
    assert seeded.bulk in actor and "Recent activity" in actor and "4,800" in actor and "Risk: " in actor
    tenant = client.get("/tenants/t-rhein").text
    assert seeded.bulk in tenant and seeded.other in tenant and "Customer notices" in tenant
    network = client.get("/networks/192.0.2.0/24").text
    assert net_incident in network and seeded.bulk not in network and "192.0.2.77" in network
    assert seeded.bulk in client.get("/networks/203.0.113.0/24").text
    # Search: an id, an address, a network, an e-mail of a console user, words.
    assert client.get(f"/search?q={seeded.bulk}").headers["location"] == f"/incidents/{seeded.bulk}"
    assert client.get("/search?q=u-ines").headers["location"] == "/actors/u-ines"
    assert client.get("/search?q=192.0.2.0/24").headers["location"] == "/networks/192.0.2.0/24"
    assert client.get("/search?q=198.51.100.7").headers["location"] == "/networks/198.51.100.7"
    assert "console user" in client.get("/search?q=approver@unisen.example").text
    assert client.get("/search?q=exported").headers["location"] == "/incidents?status=all&q=exported"
    # The list's own filter understands networks.
    listed = client.get("/incidents?q=198.51.100.0/24").text
    assert seeded.bulk in listed and net_incident not in listed


def test_lists_sort_page_and_rank_beyond_severity(
    client: TestClient, engine: Engine, signed_in: Any, h: SimpleNamespace
) -> None:
    store = IncidentStore(engine)
    ids = []
    for n, (records, sensitivity) in enumerate([(500, "internal"), (90_000, "payment"), (20_000, "personal")]):
        event = h.access(n, actor=f"u-{n}", records=records, sensitivity=sensitivity)
        title = f"u-{n} exported {records:,} {sensitivity} records"
        [iid] = store.record(
            [h.finding([event], actor=f"u-{n}", severity="critical", score=90, title=title, facts={"records": records})]
        ).opened
        ids.append(iid)
    signed_in("viewer")
    listing = client.get("/incidents").text
    # Same severity and score: the payment export with the most records ranks first.
    assert listing.index(ids[1]) < listing.index(ids[2]) < listing.index(ids[0])
    by_title = client.get("/incidents?sort=title&order=asc").text
    assert by_title.index(ids[0]) < by_title.index(ids[1]) < by_title.index(ids[2])
    assert 'aria-sort="ascending"' in by_title
    first = client.get("/incidents?per_page=10&sort=title&order=asc").text
    assert "page 1 of 1" in first
    # Relative times carry the absolute time on hover.
    stamp = r'<time datetime="2026-11-24T02:\d\d:00\+00:00" title="2026-11-24 02:\d\d UTC">\d+ days ago</time>'
    assert re.search(stamp, listing)


def test_the_audit_page_filters_by_user_action_and_day(client: TestClient, seeded: Any, signed_in: Any) -> None:
    csrf = signed_in("admin")
    client.post(f"/incidents/{seeded.bulk}/actions/acknowledge", data={"csrf": csrf})
    only = client.get("/audit?who=admin&action=incident.acknowledge").text
    assert "1 row match" in only and "incident.acknowledge" in only
    assert "0 rows match" in client.get("/audit?who=admin&since=2001-01-01&until=2001-01-02").text
    assert f'href="/incidents/{seeded.bulk}"' in only  # subjects link to their pages
