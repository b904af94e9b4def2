"""Read models for the console and the API: filtered incident lists with counts, and
everything one incident page shows, as plain values."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from breachwatch.core.findings import SEVERITY_RANK
from breachwatch.incidents.model import CLOSED_STATUSES, STATUSES
from breachwatch.incidents.tables import EvidenceRow, FindingRow, IncidentRow

SEVERITIES: tuple[str, ...] = ("critical", "high", "medium", "low")
ACTIVE = "active"  # the status filter meaning "not closed"
MAX_SCAN = 20_000


@dataclass(frozen=True, slots=True)
class IncidentFilter:
    """What the incident list is narrowed to; empty fields do not filter."""

    status: str = ACTIVE  # "active", "all" or one status
    severity: str = ""
    kind: str = ""
    tenant: str = ""
    q: str = ""  # an actor id, an address, or words of the title
    limit: int = 50
    offset: int = 0

    def normalised(self) -> IncidentFilter:
        status = self.status if self.status in (*STATUSES, ACTIVE, "all") else ACTIVE
        return IncidentFilter(
            status=status,
            severity=self.severity if self.severity in SEVERITIES else "",
            # Strip again after the cut: it may end in whitespace, and normalising twice must not
            # change the filter (its links carry the normalised values back in).
            kind=self.kind.strip()[:64].strip(),
            tenant=self.tenant.strip()[:128].strip(),
            q=self.q.strip()[:200].strip(),
            limit=max(1, min(self.limit, 500)),
            offset=max(0, self.offset),
        )


@dataclass(slots=True)
class IncidentPage:
    """One page of the filtered list, the total it came from, and counts for the filter chips."""

    items: list[IncidentRow]
    total: int
    by_status: dict[str, int] = field(default_factory=dict)
    by_severity: dict[str, int] = field(default_factory=dict)  # among active incidents
    kinds: list[str] = field(default_factory=list)


def _matches_q(row: IncidentRow, q: str) -> bool:
    needle = q.lower()
    if needle in row.title.lower() or needle == row.incident_id:
        return True
    return any(needle == v.lower() for v in [*(row.actor_ids or []), *(row.source_ips or [])])


def list_incidents(session: Session, flt: IncidentFilter) -> IncidentPage:
    """Incidents matching ``flt``, most severe and newest first."""
    flt = flt.normalised()
    stmt = select(IncidentRow).order_by(IncidentRow.updated_at.desc(), IncidentRow.incident_id).limit(MAX_SCAN)
    rows = list(session.scalars(stmt))
    by_status = Counter(r.status for r in rows)
    by_severity = Counter(r.severity for r in rows if r.status not in CLOSED_STATUSES)
    kinds = sorted({r.kind for r in rows})
    if flt.status == ACTIVE:
        rows = [r for r in rows if r.status not in CLOSED_STATUSES]
    elif flt.status != "all":
        rows = [r for r in rows if r.status == flt.status]
    if flt.severity:
        rows = [r for r in rows if r.severity == flt.severity]
    if flt.kind:
        rows = [r for r in rows if r.kind == flt.kind]
    if flt.tenant:
        rows = [r for r in rows if flt.tenant in (r.tenant_ids or [])]
    if flt.q:
        rows = [r for r in rows if _matches_q(r, flt.q)]
    # Open work first, then the most severe, then the most recent.
    rows.sort(
        key=lambda r: (
            r.status in CLOSED_STATUSES,
            -SEVERITY_RANK.get(r.severity, 0),
            -r.updated_at.timestamp(),
            r.incident_id,
        )
    )
    return IncidentPage(
        items=rows[flt.offset : flt.offset + flt.limit],
        total=len(rows),
        by_status={s: by_status.get(s, 0) for s in STATUSES},
        by_severity={s: by_severity.get(s, 0) for s in SEVERITIES},
        kinds=kinds,
    )


def event_doc(row: EvidenceRow) -> dict[str, Any]:
    try:
        doc = json.loads(row.event_json)
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


@dataclass(frozen=True, slots=True)
class EvidenceLine:
    """One evidence event as a table row."""

    event_id: str
    ts: datetime
    topic: str
    actor: str
    action: str
    target: str
    records: int | None
    ip: str
    country: str
    outcome: str
    finding_id: str
    event: dict[str, Any]


def evidence_lines(session: Session, incident_id: str, limit: int = 1000) -> list[EvidenceLine]:
    """The incident's evidence events, oldest first, in table form."""
    out: list[EvidenceLine] = []
    rows = session.scalars(
        select(EvidenceRow)
        .where(EvidenceRow.incident_id == incident_id)
        .order_by(EvidenceRow.ts, EvidenceRow.event_id)
        .limit(limit)
    )
    for r in rows:
        d = event_doc(r)
        topic = r.topic.rsplit(".", 1)[-1]
        if topic == "access":
            target = f"{d.get('tenant_id', '')} · {d.get('resource_type', '')} ({d.get('sensitivity', '')})"
        elif topic == "auth":
            roles = d.get("roles")
            target = ", ".join(str(x) for x in roles) if isinstance(roles, list) else str(d.get("actor_tenant") or "")
        else:
            target = f"{d.get('service', '')}: {str(d.get('message', ''))[:160]}"
        records = d.get("records")
        out.append(
            EvidenceLine(
                event_id=r.event_id,
                ts=r.ts,
                topic=topic,
                actor=str(d.get("actor_id") or ""),
                action=str(d.get("action") or d.get("level") or ""),
                target=target,
                records=records if isinstance(records, int) else None,
                ip=str(d.get("ip") or ""),
                country=str(d.get("country") or ""),
                outcome=str(d.get("outcome") or ""),
                finding_id=r.finding_id,
                event=d,
            )
        )
    return out


def findings(session: Session, incident_id: str) -> list[FindingRow]:
    return list(
        session.scalars(
            select(FindingRow)
            .where(FindingRow.incident_id == incident_id)
            .order_by(FindingRow.ts, FindingRow.finding_id)
        )
    )


def playbooks(rows: list[FindingRow]) -> list[str]:
    """Distinct playbook lines of the findings, most severe finding first."""
    seen: dict[str, None] = {}
    for f in sorted(rows, key=lambda f: (-SEVERITY_RANK.get(f.severity, 0), -f.score)):
        if f.playbook:
            seen.setdefault(f.playbook, None)
    return list(seen)
