"""A tenant's data rights (privacy policy 7): the export holds its incidents and only its own
evidence; erasure removes its incidents with everything that refers to them (notices too),
trims incidents shared with other tenants, leaves other tenants alone, and is audited."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from breachwatch.core.settings import Settings
from breachwatch.incidents import lifecycle
from breachwatch.incidents.lifecycle import IncidentEventRow
from breachwatch.incidents.store import IncidentStore
from breachwatch.incidents.tables import CorrelationKeyRow, EvidenceRow, FindingRow, IncidentRow
from breachwatch.notifier.notices import list_notices
from breachwatch.notifier.outbox import OutboxRow
from breachwatch.privacy.data_rights import erase_tenant, export_tenant
from breachwatch.runtime.app import breach_hooks, directory_hooks, incident_hooks
from breachwatch.storage import audit

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


def _setup(engine: Engine, ev: SimpleNamespace, tmp_path: Path) -> dict[str, str]:
    settings = Settings(outbox_dir=tmp_path / "outbox")
    store = IncidentStore(engine, on_new_incident=incident_hooks(settings), on_incident_stored=directory_hooks())
    [own] = store.record([ev.finding([ev.access(1), ev.access(2, minutes=1)])]).opened
    cross = [
        ev.access(1, actor="u-ines", actor_tenant="t-fjord", tenant="t-rhein", ip="203.0.113.9", minutes=30),
        ev.access(2, actor="u-ines", actor_tenant="t-fjord", tenant="t-fjord", ip="203.0.113.9", minutes=31),
    ]
    [shared] = store.record(
        [ev.finding(cross, actor="u-ines", kind="cross_tenant_access", tenants=("t-rhein", "t-fjord"))]
    ).opened
    [other] = store.record(
        [ev.finding([ev.access(1, actor="u-olga", tenant="t-fjord")], actor="u-olga", tenants=("t-fjord",))]
    ).opened
    with Session(engine) as session, session.begin():
        lifecycle.transition(session, own, "acknowledge", "ada", at=NOW)
        lifecycle.confirm_breach(
            session, own, "grace", "exported records left", at=NOW, on_confirmed=breach_hooks(settings)
        )
    return {"own": own, "shared": shared, "other": other}


def test_the_export_holds_the_tenants_incidents_and_only_its_evidence(
    engine: Engine, ev: SimpleNamespace, tmp_path: Path
) -> None:
    ids = _setup(engine, ev, tmp_path)
    with Session(engine) as session, session.begin():
        doc = export_tenant(session, "t-rhein", "cli:dpo", now=NOW)
    json.dumps(doc)  # plain JSON all the way down
    assert doc["format"] == "breachwatch.tenant-export/1" and doc["tenant_id"] == "t-rhein"
    by_id = {i["incident_id"]: i for i in doc["incidents"]}
    assert set(by_id) == {ids["own"], ids["shared"]}
    own, shared = by_id[ids["own"]], by_id[ids["shared"]]
    assert [e["event"]["event_id"] for e in own["evidence"]] == ["a-u-hans-1", "a-u-hans-2"]
    assert [t["action"] for t in own["timeline"]] == ["acknowledge", "confirm_breach"]
    assert own["breach"]["confirmed_by"] == "grace" and own["findings"][0]["detector"] == "rules.bulk_export"
    # The shared incident: this tenant's event only, and no other tenant named.
    assert [e["event"]["tenant_id"] for e in shared["evidence"]] == ["t-rhein"]
    assert shared["tenant_ids"] == ["t-rhein"] and shared["other_tenants"] == 1
    assert doc["notices_available"] and {n["tenant_id"] for n in doc["notices"]} == {"t-rhein"}
    with Session(engine) as session:
        [row] = audit.recent(session, action="tenant.export")
        assert (row.actor, row.subject, row.detail["incidents"]) == ("cli:dpo", "tenant:t-rhein", 2)


def test_erasure_removes_the_tenants_data_and_nothing_else(engine: Engine, ev: SimpleNamespace, tmp_path: Path) -> None:
    ids = _setup(engine, ev, tmp_path)
    with Session(engine) as session:
        assert list_notices(session, ids["own"]), "a confirmed breach drafts a notice to erase"
    with Session(engine) as session:
        own_findings = list(session.scalars(select(FindingRow.finding_id).where(FindingRow.incident_id == ids["own"])))
        assert session.scalar(select(func.count()).where(CorrelationKeyRow.finding_id.in_(own_findings)))
    with Session(engine) as session, session.begin():
        result = erase_tenant(session, "t-rhein", "cli:dpo", now=NOW)
    assert (result.incidents_deleted, result.incidents_trimmed) == (1, 1)
    with Session(engine) as session:  # the actor and networks its findings were keyed on
        assert session.scalar(select(func.count()).where(CorrelationKeyRow.finding_id.in_(own_findings))) == 0
    assert result.evidence_deleted == 3  # two of its own incident, one of the shared one

    with Session(engine) as session:
        assert session.get(IncidentRow, ids["own"]) is None
        for table, column in (
            (FindingRow, FindingRow.incident_id),
            (EvidenceRow, EvidenceRow.incident_id),
            (IncidentEventRow, IncidentEventRow.incident_id),
            (OutboxRow, OutboxRow.incident_id),
        ):
            assert session.scalar(select(func.count()).select_from(table).where(column == ids["own"])) == 0
        assert lifecycle.breach(session, ids["own"]) is None
        assert list_notices(session, ids["own"]) == []
        shared = session.get(IncidentRow, ids["shared"])
        assert shared is not None and shared.tenant_ids == ["t-fjord"] and shared.evidence_count == 1
        left = session.scalars(select(EvidenceRow).where(EvidenceRow.incident_id == ids["shared"])).all()
        assert [json.loads(e.event_json)["tenant_id"] for e in left] == ["t-fjord"]
        other = session.get(IncidentRow, ids["other"])
        assert other is not None and other.evidence_count == 1
        [row] = audit.recent(session, action="tenant.erase")
        assert row.subject == "tenant:t-rhein" and row.detail["incidents_deleted"] == 1
        assert "u-hans" not in json.dumps(row.detail)
        assert audit.verify(session).ok
    with Session(engine) as session, session.begin():
        assert export_tenant(session, "t-rhein", "cli:dpo")["incidents"] == []


def test_erasure_keeps_the_breach_record_the_law_requires(engine: Engine, ev: SimpleNamespace, tmp_path: Path) -> None:
    """GDPR Art. 17(3)(b): erasure does not reach what a legal obligation requires kept, and the
    register of breaches (Art. 33(5), LGPD/ANPD five years, ...) is one. The erased breach's
    register entry stays, frozen, without the tenant's contact people."""
    from breachwatch.notifier.register.entries import entries

    ids = _setup(engine, ev, tmp_path)
    with Session(engine) as session:
        [before] = [e for e in entries(session) if e["incident_id"] == ids["own"]]
    with Session(engine) as session, session.begin():
        result = erase_tenant(session, "t-rhein", "cli:dpo", now=NOW)
    assert result.register_entries_kept == 1
    with Session(engine) as session:
        assert session.get(IncidentRow, ids["own"]) is None  # the incident itself is gone
        [kept] = [e for e in entries(session) if e["incident_id"] == ids["own"]]
    assert kept["archived"] is True and kept["confirmed_at"] == before["confirmed_at"]
    assert [t["tenant_id"] for t in kept["tenants"]] == [t["tenant_id"] for t in before["tenants"]]
    assert "rhein-logistik.example" not in json.dumps(kept)  # no contact person's address
