"""Findings become incidents once: correlation, idempotency, evidence caps, checkpoints."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from detectors.base import Finding
from incidents.db import EvidenceRow, FindingRow, IncidentRow, init_db, make_engine
from incidents.store import Checkpoint, IncidentStore
from streams.models import AccessEvent, AuthEvent

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
def store(tmp_path: Path) -> IncidentStore:
    engine = make_engine(f"sqlite:///{tmp_path}/bw.db")
    init_db(engine)
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


def test_checkpoint_round_trip(store: IncidentStore) -> None:
    cp = Checkpoint("g", 3, {"erp.access": 120, "erp.auth": 7}, {"rules": {"hist": {"t-1": [1, 2, 3]}}})
    store.record([], checkpoints=[cp])
    assert store.load_checkpoint("g", 3) == cp
    cp2 = Checkpoint("g", 3, {"erp.access": 200}, {"rules": {}})
    store.record([], checkpoints=[cp2])
    assert store.load_checkpoint("g", 3) == cp2
    assert store.load_checkpoint("g", 4) is None
