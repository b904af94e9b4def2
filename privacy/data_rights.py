"""A tenant's data rights (privacy policy 7): export its incidents, notices and the staff
accesses to its data (the transparency log) as JSON, and erase them.

An evidence event belongs to a tenant when its ``tenant_id`` is that tenant's, or, for
events without one (logins), when the actor's home tenant is. An incident about this tenant
alone is erased whole; one that also concerns other tenants keeps what they need and loses
this tenant's evidence and its place in ``tenant_ids``. The audit log keeps the record that
an export or erasure happened (ids and counts only, no personal data).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKeyConstraint, Table, and_, delete, func, select, tuple_
from sqlalchemy.orm import Session

from breachwatch.core.clock import utcnow
from breachwatch.incidents.lifecycle import BreachRow, IncidentEventRow
from breachwatch.incidents.store import IncidentStore
from breachwatch.incidents.tables import EvidenceRow, FindingRow, IncidentRow
from breachwatch.notifier import notices as notices_module

# Imported for their tables: erasure follows every table that names an incident.
from breachwatch.notifier import outbox  # noqa: F401
from breachwatch.notifier.notices import models  # noqa: F401
from breachwatch.notifier.paging import escalation, silences  # noqa: F401
from breachwatch.notifier.register import archive as register_archive
from breachwatch.notifier.register import models as register_models  # noqa: F401
from breachwatch.privacy import transparency
from breachwatch.privacy.approvals import AccessRequestRow, ApprovalPolicyRow
from breachwatch.storage import audit
from breachwatch.storage.db import Base

log = logging.getLogger(__name__)

EXPORT_FORMAT = "breachwatch.tenant-export/1"


def _doc(row: EvidenceRow) -> dict[str, Any]:
    try:
        doc = json.loads(row.event_json)
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def belongs(doc: dict[str, Any], tenant_id: str) -> bool:
    """True if an evidence event is this tenant's data."""
    if doc.get("tenant_id"):
        return doc["tenant_id"] == tenant_id
    return doc.get("actor_tenant") == tenant_id


def incidents_of(session: Session, tenant_id: str) -> list[IncidentRow]:
    """Every incident that names the tenant, oldest first."""
    # tenant_ids is a JSON list, queried differently on every backend; reading the two
    # columns of every incident is cheap and cannot miss one (an erasure must not).
    ids = [
        iid
        for iid, tenants in session.execute(select(IncidentRow.incident_id, IncidentRow.tenant_ids))
        if tenant_id in (tenants or [])
    ]
    rows: list[IncidentRow] = []
    for start in range(0, len(ids), 500):
        rows.extend(session.scalars(select(IncidentRow).where(IncidentRow.incident_id.in_(ids[start : start + 500]))))
    return sorted(rows, key=lambda r: (r.opened_at, r.incident_id))


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def export_tenant(
    session: Session,
    tenant_id: str,
    actor: str,
    *,
    now: datetime | None = None,
    identity: transparency.StaffIdentity | None = None,
) -> dict[str, Any]:
    """The tenant's incidents (with findings, timeline and the tenant's own evidence), notices
    and staff accesses (staff named as ``identity`` says, by default by name), as one JSON-able
    document; the export is audited in the caller's transaction."""
    now = now or utcnow()
    staff_accesses = [
        transparency.entry(row, identity or transparency.StaffIdentity())
        for row in transparency.iter_rows(session, tenant_id)
    ]
    incidents: list[dict[str, Any]] = []
    notices: list[dict[str, Any]] = []
    events_total = 0
    for inc in incidents_of(session, tenant_id):
        out = IncidentStore.to_out(session, inc).model_dump(mode="json")
        out["tenant_ids"] = [tenant_id]
        out["other_tenants"] = len([t for t in inc.tenant_ids or [] if t != tenant_id])
        evidence = [
            {"topic": e.topic, "event": d}
            for e in session.scalars(
                select(EvidenceRow)
                .where(EvidenceRow.incident_id == inc.incident_id)
                .order_by(EvidenceRow.ts, EvidenceRow.event_id)
            )
            if belongs(d := _doc(e), tenant_id)
        ]
        out["evidence_event_ids"] = [e["event"].get("event_id") for e in evidence]
        out["evidence"] = evidence
        events_total += len(evidence)
        out["findings"] = [
            {
                "finding_id": f.finding_id,
                "detector": f.detector,
                "kind": f.kind,
                "severity": f.severity,
                "score": f.score,
                "ts": _iso(f.ts),
                "title": f.title,
                "reasons": list(f.reasons or []),
                "playbook": f.playbook,
            }
            for f in session.scalars(
                select(FindingRow).where(FindingRow.incident_id == inc.incident_id).order_by(FindingRow.ts)
            )
        ]
        out["timeline"] = [
            {
                "at": _iso(e.at),
                "actor": e.actor,
                "action": e.action,
                "from": e.from_status,
                "to": e.to_status,
                "reason": e.reason,
            }
            for e in session.scalars(
                select(IncidentEventRow)
                .where(IncidentEventRow.incident_id == inc.incident_id)
                .order_by(IncidentEventRow.at, IncidentEventRow.id)
            )
        ]
        br = session.get(BreachRow, inc.incident_id)
        out["breach"] = (
            {"confirmed_by": br.confirmed_by, "confirmed_at": _iso(br.confirmed_at), "reason": br.reason}
            if br
            else None
        )
        incidents.append(out)
        notices.extend(
            n for n in notices_module.list_notices(session, inc.incident_id) if n.get("tenant_id") == tenant_id
        )
    audit.record(
        session,
        actor,
        "tenant.export",
        f"tenant:{tenant_id}",
        {
            "incidents": len(incidents),
            "evidence_events": events_total,
            "notices": len(notices),
            "staff_accesses": len(staff_accesses),
        },
        at=now,
    )
    return {
        "format": EXPORT_FORMAT,
        "tenant_id": tenant_id,
        "exported_at": now.isoformat(),
        "exported_by": actor,
        "incidents": incidents,
        "notices": json.loads(json.dumps(notices, default=str)),
        "notices_available": True,
        "staff_accesses": staff_accesses,
    }


@dataclass(slots=True)
class Erasure:
    """What ``erase_tenant`` removed."""

    incidents_deleted: int = 0
    incidents_trimmed: int = 0  # shared with other tenants: only this tenant's part removed
    evidence_deleted: int = 0
    rows_deleted: dict[str, int] = field(default_factory=dict)  # table -> rows, everything else removed
    register_entries_kept: int = 0  # breach records the law requires, frozen before the rest went

    def as_dict(self) -> dict[str, Any]:
        return {
            "incidents_deleted": self.incidents_deleted,
            "incidents_trimmed": self.incidents_trimmed,
            "evidence_deleted": self.evidence_deleted,
            "rows_deleted": dict(sorted(self.rows_deleted.items())),
            "register_entries_kept": self.register_entries_kept,
        }


# Tables that must survive an erasure: the audit trail (the record that it happened) and the
# frozen register entries of erased breaches (kept by law, see ``notifier.register.archive``).
_KEEP: frozenset[str] = frozenset({"audit_log", "audit_head", "breach_register_archive"})


def _children(table: Table) -> list[tuple[Table, ForeignKeyConstraint]]:
    return [
        (child, fk)
        for child in Base.metadata.tables.values()
        for fk in child.foreign_key_constraints
        if fk.referred_table is table and child is not table
    ]


def _delete_where(session: Session, table: Table, condition: Any, counts: dict[str, int], depth: int = 0) -> int:
    """Delete the rows of ``table`` matching ``condition`` and, first, every row of any table
    that references them (found from the foreign keys every module declares on Base)."""
    if depth > 10:
        raise RuntimeError(f"foreign keys nest too deep below {table.name}")
    for child, fk in _children(table):
        local = [e.parent for e in fk.elements]
        remote = [e.column for e in fk.elements]
        chosen = select(*remote).where(condition)
        child_condition = local[0].in_(chosen) if len(local) == 1 else tuple_(*local).in_(chosen)
        _delete_where(session, child, child_condition, counts, depth + 1)
    n = int(session.execute(delete(table).where(condition)).rowcount or 0)
    if n:
        counts[table.name] = counts.get(table.name, 0) + n
    return n


def erase_tenant(session: Session, tenant_id: str, actor: str, *, now: datetime | None = None) -> Erasure:
    """Erase the tenant's incidents, evidence and notices in the caller's transaction (audited).

    An incident about this tenant alone goes with everything that refers to it, in any
    module's tables (found through foreign keys and ``incident_id`` columns); from an incident
    shared with other tenants, this tenant's evidence and its own rows (those with a matching
    ``tenant_id``) go. Directory entries keyed by the tenant id go too.
    """
    now = now or utcnow()
    audit.serialize_writes(session)
    result = Erasure()
    counts = result.rows_deleted
    whole: list[str] = []
    shared: list[str] = []
    for inc in incidents_of(session, tenant_id):
        others = [t for t in inc.tenant_ids or [] if t != tenant_id]
        if others:
            mine = [
                e
                for e in session.scalars(select(EvidenceRow).where(EvidenceRow.incident_id == inc.incident_id))
                if belongs(_doc(e), tenant_id)
            ]
            for e in mine:
                session.delete(e)
            result.evidence_deleted += len(mine)
            inc.tenant_ids = others
            inc.evidence_count = max(0, inc.evidence_count - len(mine))
            shared.append(inc.incident_id)
        else:
            whole.append(inc.incident_id)
    session.flush()
    tables = [t for t in Base.metadata.sorted_tables if t.name not in _KEEP]
    if whole:
        result.register_entries_kept = register_archive.archive(
            session, whole, f"tenant {tenant_id} erased at the tenant's request", now=now
        )
        result.evidence_deleted += int(
            session.scalar(select(func.count()).select_from(EvidenceRow).where(EvidenceRow.incident_id.in_(whole))) or 0
        )
        # Rows that name an erased incident without a foreign key (outbox, notice events, links).
        for table in tables:
            for column in ("incident_id", "related_id"):
                if column in table.c and table.name != "incidents" and not table.c[column].foreign_keys:
                    _delete_where(session, table, table.c[column].in_(whole), counts)
        _delete_where(session, IncidentRow.__table__, IncidentRow.__table__.c.incident_id.in_(whole), counts)
        counts.pop("evidence", None)
    if shared:
        for table in tables:
            if "incident_id" in table.c and "tenant_id" in table.c:
                cond = and_(table.c.incident_id.in_(shared), table.c.tenant_id == tenant_id)
                _delete_where(session, table, cond, counts)
    for table in tables:
        key = [c.name for c in table.primary_key.columns]
        if key == ["tenant_id"]:
            _delete_where(session, table, table.c.tenant_id == tenant_id, counts)
    # The transparency log and the tenant's access approvals.
    for table in (transparency.StaffAccessRow.__table__, AccessRequestRow.__table__, ApprovalPolicyRow.__table__):
        _delete_where(session, table, table.c.tenant_id == tenant_id, counts)
    result.incidents_deleted = counts.pop("incidents", 0)
    result.incidents_trimmed = len(shared)
    session.flush()
    audit.record(session, actor, "tenant.erase", f"tenant:{tenant_id}", result.as_dict(), at=now)
    log.info("tenant %s erased: %s", tenant_id, result.as_dict())
    return result
