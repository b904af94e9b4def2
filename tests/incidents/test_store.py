"""Findings become incidents once: correlation, idempotency, evidence caps, checkpoints."""

from __future__ import annotations

import dataclasses
import itertools
import json
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from breachwatch.core.events import AccessEvent, AuthEvent
from breachwatch.core.findings import Finding
from breachwatch.incidents.lifecycle import SYSTEM, IncidentEventRow, IncidentLinkRow
from breachwatch.incidents.store import IncidentStore
from breachwatch.incidents.tables import EvidenceRow, FindingRow, IncidentRow
from breachwatch.storage.db import make_engine
from tests.fixtures.sqlite import sqlite_copy

T0 = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)


def access(n: int, actor: str = "u-hans", ip: str = "198.51.100.7", minutes: float = 0) -> AccessEvent:
    doc = {
        "event_id": f"a-{actor}-{n}",
        "ts": (T0 + timedelta(minutes=minutes)).isoformat(),
        "actor_id": actor,
        "actor_type": "customer_user",
        "actor_tenant": "t-rhein",
        "tenant_id": "t-rhein",
        "action": "export",
        "resource_type": "customer",
        "sensitivity": "personal",
        "records": 500,
        "ip": ip,
        "country": "NL",
    }
    return AccessEvent.model_validate_json(json.dumps(doc))


def failed_login(n: int, actor: str, ip: str, minutes: float) -> AuthEvent:
    doc = {
        "event_id": f"l-{n}",
        "ts": (T0 + timedelta(minutes=minutes)).isoformat(),
        "actor_id": actor,
        "actor_type": "customer_user",
        "action": "login",
        "outcome": "failure",
        "ip": ip,
    }
    return AuthEvent.model_validate_json(json.dumps(doc))


def finding(
    events: list,
    *,
    detector: str = "rules.bulk_export",
    actor: str | None = "u-hans",
    severity: str = "high",
    score: float = 80,
    kind: str = "bulk_export",
    ips: tuple = (),
) -> Finding:
    return Finding(
        detector=detector,
        kind=kind,
        severity=severity,
        score=score,
        ts=events[0].ts,
        title=f"{kind} by {actor}",
        reasons=(f"{kind}: {len(events)} events",),
        playbook="check",
        events=tuple(events),
        actor_id=actor,
        tenant_ids=("t-rhein",),
        source_ips=ips or tuple({e.ip for e in events if e.ip}),
    )


@pytest.fixture
def store(sqlite_template: Path, tmp_path: Path) -> IncidentStore:
    engine = make_engine(sqlite_copy(sqlite_template, tmp_path / "bw.db"))
    return IncidentStore(engine, window=timedelta(hours=6))


def _count(store: IncidentStore, table: type) -> int:
    with Session(store.engine) as s:
        return s.scalar(select(func.count()).select_from(table)) or 0


def test_one_finding_opens_one_incident_in_the_public_shape(store: IncidentStore) -> None:
    res = store.record([finding([access(1), access(2, minutes=1)])])
    assert len(res.opened) == 1
    [inc] = store.incidents()
    assert inc.kind == "bulk_export" and inc.severity == "high" and inc.status == "open"
    assert inc.actor_ids == ["u-hans"] and inc.tenant_ids == ["t-rhein"] and inc.source_ips == ["198.51.100.7"]
    assert inc.evidence_event_ids == ["a-u-hans-1", "a-u-hans-2"]
    assert inc.opened_at == T0


def test_an_incident_is_detected_when_its_first_finding_was_raised_not_when_evidence_began(
    store: IncidentStore,
) -> None:
    """Evidence from 02:00 judged when the stream reached 02:40: detected at 02:40, not 02:00;
    a later finding raised earlier (another unit stored after) moves it back, one raised
    later does not; without a detector's time, the finding's latest evidence counts."""
    first = finding([access(1), access(2, minutes=5)])
    store.record([dataclasses.replace(first, detected_at=T0 + timedelta(minutes=40))])
    [inc] = store.incidents()
    assert inc.opened_at == T0 and inc.detected_at == T0 + timedelta(minutes=40)
    late = finding([access(3, minutes=50)], detector="learned", kind="ato")
    store.record([dataclasses.replace(late, detected_at=T0 + timedelta(minutes=55))])
    assert store.incidents()[0].detected_at == T0 + timedelta(minutes=40)
    early = finding([access(4, minutes=1)], detector="rules.other", kind="ato")
    store.record([dataclasses.replace(early, detected_at=T0 + timedelta(minutes=30))])
    assert store.incidents()[0].detected_at == T0 + timedelta(minutes=30)
    store.record([finding([access(9, actor="u-eva", minutes=7), access(8, actor="u-eva", minutes=9)], actor="u-eva")])
    eva = next(i for i in store.incidents() if i.actor_ids == ["u-eva"])
    assert eva.detected_at == T0 + timedelta(minutes=9)
    assert json.loads(eva.model_dump_json())["detected_at"].startswith("2026-11-24T02:09")


def test_an_incident_names_the_attack_techniques_of_its_findings(store: IncidentStore) -> None:
    store.record([finding([access(1)])])
    store.record([finding([access(2, minutes=3)], detector="learned", kind="account_takeover")])
    [inc] = store.incidents()
    assert [(a.technique_id, a.tactic_id) for a in inc.attack] == [
        ("T1213", "TA0009"),
        ("T1567", "TA0010"),
        ("T1078", "TA0001"),
    ]
    doc = json.loads(inc.model_dump_json())["attack"][0]
    assert doc == {
        "technique_id": "T1213",
        "technique": "Data from Information Repositories",
        "tactic_id": "TA0009",
        "tactic": "Collection",
    }


def test_redelivered_batch_changes_nothing(store: IncidentStore) -> None:
    batch = [finding([access(1), access(2, minutes=1)]), finding([access(3, minutes=5)], detector="learned")]
    first = store.record(batch)
    before = [i.model_dump() for i in store.incidents()]
    again = store.record(batch)
    assert first.new_findings == 2 and again.new_findings == 0 and again.duplicate_findings == 2
    assert again.opened == [] and again.updated == []
    assert [i.model_dump() for i in store.incidents()] == before
    assert _count(store, EvidenceRow) == 3 and _count(store, FindingRow) == 2


def test_later_findings_on_same_actor_fold_in_and_raise_severity(store: IncidentStore) -> None:
    store.record([finding([access(1)], severity="medium", score=50)])
    res = store.record(
        [finding([access(2, minutes=30)], detector="learned", severity="critical", score=95, kind="ato")]
    )
    assert res.opened == [] and len(res.updated) == 1
    [inc] = store.incidents()
    assert inc.severity == "critical" and inc.score == 95
    assert inc.detectors == ["rules.bulk_export", "learned"] and inc.kind == "bulk_export"


def test_same_actor_outside_the_window_is_a_new_incident(store: IncidentStore) -> None:
    store.record([finding([access(1)])])
    store.record([finding([access(2, minutes=60 * 7)])])
    assert len(store.incidents()) == 2


def test_different_actors_sharing_an_office_address_stay_apart(store: IncidentStore) -> None:
    store.record([finding([access(1, actor="u-a")], actor="u-a"), finding([access(2, actor="u-b")], actor="u-b")])
    assert len(store.incidents()) == 2


def test_takeover_from_a_stuffing_address_joins_the_stuffing_incident(store: IncidentStore) -> None:
    ip = "203.0.113.9"
    fails = [failed_login(i, f"u-{i}", ip, i * 0.1) for i in range(12)]
    stuffing = finding(fails, detector="rules.credential_stuffing", actor=None, kind="credential_stuffing", ips=(ip,))
    takeover = finding([access(1, actor="u-3", ip=ip, minutes=3)], detector="learned", actor="u-3", kind="ato")
    store.record([stuffing, takeover])
    [inc] = store.incidents()
    assert inc.kind == "credential_stuffing" and inc.actor_ids == ["u-3"] and inc.source_ips == [ip]
    assert len(inc.evidence_event_ids) == 13


def test_a_campaign_rotating_addresses_in_one_network_is_one_incident(store: IncidentStore) -> None:
    def spray(ip: str, first: int, minutes: float) -> Finding:
        fails = [failed_login(first + i, f"u-{i}", ip, minutes + i * 0.1) for i in range(12)]
        return finding(fails, detector="rules.credential_stuffing", actor=None, kind="credential_stuffing", ips=(ip,))

    store.record([spray("194.165.19.110", 0, 0), spray("194.165.19.184", 100, 1)])
    store.record([spray("194.165.19.43", 200, 2)])
    store.record([spray("198.51.100.20", 300, 2)])  # another network: another campaign
    by_ips = sorted(sorted(i.source_ips) for i in store.incidents())
    assert by_ips == [["194.165.19.110", "194.165.19.184", "194.165.19.43"], ["198.51.100.20"]]


def test_closed_incident_is_not_reopened_silently(store: IncidentStore) -> None:
    store.record([finding([access(1)])])
    with Session(store.engine) as s, s.begin():
        s.scalars(select(IncidentRow)).one().status = "false_positive"
    store.record([finding([access(2, minutes=10)])])
    statuses = sorted(i.status for i in store.incidents())
    assert statuses == ["false_positive", "open"]


def test_evidence_is_capped_at_1000_events(store: IncidentStore) -> None:
    events = [access(i, minutes=i / 100) for i in range(1200)]
    store.record([finding(events[:700]), finding(events[700:], detector="learned")])
    [inc] = store.incidents()
    assert len(inc.evidence_event_ids) == 1000


def test_new_incident_hook_runs_once_per_incident(store: IncidentStore) -> None:
    seen: list[tuple[str, int, int]] = []
    store.on_new_incident.append(lambda s, inc, rows, ev, tenants: seen.append((inc.incident_id, len(rows), len(ev))))
    batch = [finding([access(1), access(2)]), finding([access(3)], detector="learned")]
    store.record(batch)
    store.record(batch)
    assert len(seen) == 1 and seen[0][1:] == (2, 3)


# --- correlation whatever order findings are stored in (SQLite and PostgreSQL) -------------------

CAMPAIGN_NET = "203.0.113"


def _stuffing(ev: SimpleNamespace, k: int, minutes: float) -> Finding:
    ips = (f"{CAMPAIGN_NET}.9", f"{CAMPAIGN_NET}.10")
    fails = [ev.login(k * 100 + i, actor=f"u-{i}", ip=ips[i % 2], minutes=minutes + i * 0.1) for i in range(12)]
    return ev.finding(fails, detector="rules.credential_stuffing", actor=None, kind="credential_stuffing", ips=ips)


def _actor(ev: SimpleNamespace, k: int, actor: str, ip: str, minutes: float) -> Finding:
    return ev.finding([ev.access(k, actor=actor, ip=ip, minutes=minutes)], detector="learned", actor=actor, kind="ato")


def _groups(engine: Engine) -> list[list[str]]:
    with Session(engine) as s:
        by_incident: dict[str, list[str]] = {}
        for fid, iid in s.execute(select(FindingRow.finding_id, FindingRow.incident_id)).all():
            by_incident.setdefault(iid, []).append(fid)
    return sorted(sorted(v) for v in by_incident.values())


def test_grouping_does_not_depend_on_the_order_findings_are_stored_in(engine: Engine, ev: SimpleNamespace) -> None:
    """Consumers judging different units store a campaign's findings in any order: a takeover
    from the campaign's network joins it even when stored first; two actors behind one office
    network never meet."""
    store = IncidentStore(engine, window=timedelta(hours=6))
    outcomes = []
    for k, order in enumerate(itertools.permutations(range(4))):
        day = k * 24 * 60  # each ordering a day apart, far outside the window
        findings = [
            _stuffing(ev, k, day),
            _actor(ev, k, "u-3", f"{CAMPAIGN_NET}.77", day + 3),  # another address in the network
            _actor(ev, k, "u-a", "198.51.100.7", day + 1),
            _actor(ev, k, "u-b", "198.51.100.8", day + 2),
        ]
        for i in order:
            store.record([findings[i]])
        ids = [f.finding_id for f in findings]
        grouping = sorted(sorted(ids.index(fid) for fid in g) for g in _groups(engine) if set(g) <= set(ids))
        outcomes.append((order, grouping))
    assert {str(g) for _, g in outcomes} == {"[[0, 1], [2], [3]]"}, outcomes


def test_a_finding_that_ties_two_open_incidents_joins_the_earlier_and_links_them(
    engine: Engine, ev: SimpleNamespace
) -> None:
    store = IncidentStore(engine, window=timedelta(hours=6))
    first = _actor(ev, 1, "u-3", f"{CAMPAIGN_NET}.9", 3)
    second = _actor(ev, 2, "u-7", f"{CAMPAIGN_NET}.200", 5)
    store.record([second])
    store.record([first])  # stored later, but its finding is earlier: its incident opened first
    store.record([_stuffing(ev, 0, 0)])
    store.record([_stuffing(ev, 0, 0)])  # re-delivered: nothing more
    [a, b] = sorted(store.incidents(), key=lambda i: i.opened_at)
    assert a.actor_ids == ["u-3"] and a.kind == "credential_stuffing" and len(a.evidence_event_ids) == 13
    assert b.actor_ids == ["u-7"] and len(b.evidence_event_ids) == 1
    with Session(engine) as s:
        linked = [(r.incident_id, r.related_id, r.kind) for r in s.scalars(select(IncidentLinkRow))]
        notes = sorted(
            (e.incident_id, e.actor)
            for e in s.scalars(select(IncidentEventRow).where(IncidentEventRow.action == "correlated"))
        )
    assert linked == [(a.incident_id, b.incident_id, "correlated")]
    assert notes == sorted([(a.incident_id, SYSTEM), (b.incident_id, SYSTEM)])
    # A later takeover from the campaign's network joins the campaign, not the other incident.
    store.record([_actor(ev, 3, "u-9", f"{CAMPAIGN_NET}.31", 20)])
    assert sorted(i.actor_ids for i in store.incidents()) == [["u-3", "u-9"], ["u-7"]]


def test_two_consumers_storing_a_campaign_and_its_takeover_at_once_make_one_incident(
    engine: Engine, ev: SimpleNamespace
) -> None:
    """Two consumers' batches in flight together: one opens the takeover's incident and is
    still paging when the other stores the campaign. The campaign waits for that batch to
    commit and joins its incident, rather than opening a second one it could not see."""
    opened = threading.Event()
    release = threading.Event()

    def slow_page(*_: object) -> None:  # the notifier's hook runs inside the batch's transaction
        opened.set()
        release.wait(10)

    first = IncidentStore(engine, window=timedelta(hours=6), on_new_incident=[slow_page])
    second = IncidentStore(engine, window=timedelta(hours=6))
    takeover = _actor(ev, 1, "u-3", f"{CAMPAIGN_NET}.77", 3)
    stuffing = _stuffing(ev, 0, 0)
    results: dict[str, object] = {}
    a = threading.Thread(target=lambda: results.__setitem__("a", first.record([takeover])))
    a.start()
    assert opened.wait(10)
    b = threading.Thread(target=lambda: results.__setitem__("b", second.record([stuffing])))
    b.start()
    time.sleep(0.5)  # the campaign's batch is now waiting (or, unguarded, done)
    release.set()
    a.join(20)
    b.join(20)
    assert not a.is_alive() and not b.is_alive()
    assert _groups(engine) == [sorted([takeover.finding_id, stuffing.finding_id])]


def test_the_new_incident_hook_gets_the_evidence_of_every_partitions_part_of_a_run(
    store: IncidentStore, ev: SimpleNamespace
) -> None:
    """Partitions each report their share of an address's run under one finding id; when the
    shares arrive in the batch that opens the incident, the opening page counts all of them."""
    seen: list[int] = []
    store.on_new_incident.append(lambda s, inc, rows, evidence, tenants: seen.append(len(evidence)))
    # As the rule keys a run: by address and day, so each partition's share has one finding id.
    shares = [dataclasses.replace(_stuffing(ev, k, minutes=k * 0.05), dedup_key="run") for k in range(3)]
    assert len({f.finding_id for f in shares}) == 1
    store.record(shares)
    [inc] = store.incidents()
    assert seen == [36] and len(inc.evidence_event_ids) == 36
