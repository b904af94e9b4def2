"""Read models for the console and the API: filtered incident lists with counts, and
everything one incident page shows, as plain values."""

from __future__ import annotations

import ipaddress
import json
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from breachwatch.core.clock import utcnow
from breachwatch.core.findings import SEVERITY_RANK
from breachwatch.incidents.model import CLOSED_STATUSES, STATUSES
from breachwatch.incidents.priority import priority
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
    q: str = ""  # an incident or actor id, an e-mail, an address, a network (CIDR), or words of the title
    sort: str = "priority"  # a key of SORTS
    descending: bool = True
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
            sort=self.sort if self.sort in SORTS else "priority",
            descending=self.descending,
            limit=max(1, min(self.limit, 500)),
            offset=max(0, self.offset),
        )


@dataclass(slots=True)
class IncidentPage:
    """One page of the filtered list, the total it came from, and counts for the filter chips."""

    items: list[IncidentRow]
    total: int
    priorities: dict[str, float] = field(default_factory=dict)
    by_status: dict[str, int] = field(default_factory=dict)
    by_severity: dict[str, int] = field(default_factory=dict)  # among active incidents
    kinds: list[str] = field(default_factory=list)


def _network(q: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    if "/" not in q:
        return None
    try:
        return ipaddress.ip_network(q, strict=False)
    except ValueError:
        return None


def in_network(addresses: list[str], net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    for a in addresses:
        try:
            if ipaddress.ip_address(a) in net:
                return True
        except ValueError:
            continue
    return False


def _matches_q(row: IncidentRow, q: str) -> bool:
    needle = q.lower()
    net = _network(q)
    if net is not None:
        return in_network(row.source_ips or [], net) or row.group_key == f"net:{net}"
    if needle in row.title.lower() or needle == row.incident_id.lower():
        return True
    ids = [*(row.actor_ids or []), *(row.source_ips or []), *(row.tenant_ids or [])]
    return any(needle == v.lower() for v in ids)


# Sort keys of the incident list; each ascending, "descending" reverses.
SORTS: dict[str, Callable[[IncidentRow, dict[str, float]], Any]] = {
    "priority": lambda r, p: (p.get(r.incident_id, 0.0), SEVERITY_RANK.get(r.severity, 0), r.updated_at),
    "severity": lambda r, p: (SEVERITY_RANK.get(r.severity, 0), r.score, r.updated_at),
    "score": lambda r, p: (r.score, r.updated_at),
    "updated": lambda r, p: (r.updated_at,),
    "opened": lambda r, p: (r.opened_at,),
    "evidence": lambda r, p: (r.evidence_count, r.updated_at),
    "status": lambda r, p: (STATUSES.index(r.status) if r.status in STATUSES else 99, r.updated_at),
    "title": lambda r, p: (r.title.lower(),),
}


def list_incidents(session: Session, flt: IncidentFilter, *, only: set[str] | None = None) -> IncidentPage:
    """Incidents matching ``flt`` (and among ``only``, when given), open work first, then in
    the order ``flt.sort`` names (by default the priority, highest first)."""
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
    if only is not None:
        rows = [r for r in rows if r.incident_id in only]
    now = utcnow()
    prio = {r.incident_id: priority(r, now=now).value for r in rows}
    key = SORTS[flt.sort]
    rows.sort(key=lambda r: (key(r, prio), r.incident_id), reverse=flt.descending)
    if flt.sort in ("priority", "severity"):
        rows.sort(key=lambda r: r.status in CLOSED_STATUSES)  # stable: open work stays first
    return IncidentPage(
        items=rows[flt.offset : flt.offset + flt.limit],
        total=len(rows),
        priorities={r.incident_id: prio[r.incident_id] for r in rows[flt.offset : flt.offset + flt.limit]},
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


@dataclass(slots=True)
class LoginTally:
    """Logins among an incident's evidence, counted across all of it. An address's run is
    reported by every partition that saw some of its accounts, each finding with its own share
    of the failures; only the evidence gives the whole run: failures, the accounts and
    addresses they came from, and the successful logins beside them."""

    failed: int = 0
    succeeded: int = 0
    accounts: set[str] = field(default_factory=set)
    addresses: set[str] = field(default_factory=set)

    def add(self, doc: Mapping[str, Any]) -> None:
        if doc.get("action") != "login":
            return
        if doc.get("outcome") == "failure":
            self.failed += 1
            if doc.get("actor_id"):
                self.accounts.add(str(doc["actor_id"]))
            if doc.get("ip"):
                self.addresses.add(str(doc["ip"]))
        elif doc.get("outcome") == "success":
            self.succeeded += 1

    def summary(self) -> dict[str, int] | None:
        """The counts, or None when the evidence holds no failed login."""
        if not self.failed:
            return None
        return {
            "failed": self.failed,
            "accounts": len(self.accounts),
            "addresses": len(self.addresses),
            "succeeded": self.succeeded,
        }


def incident_logins(session: Session, incident_id: str) -> dict[str, int] | None:
    """``LoginTally.summary`` of an incident's stored evidence."""
    tally = LoginTally()
    rows = session.scalars(
        select(EvidenceRow).where(EvidenceRow.incident_id == incident_id, EvidenceRow.topic.like("%auth"))
    )
    for row in rows:
        tally.add(event_doc(row))
    return tally.summary()


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
    user_agent: str = ""


EVIDENCE_SORTS = {"ts": EvidenceRow.ts, "topic": EvidenceRow.topic, "event": EvidenceRow.event_id}


def evidence_lines(
    session: Session,
    incident_id: str,
    limit: int = 1000,
    *,
    offset: int = 0,
    sort: str = "ts",
    descending: bool = False,
) -> list[EvidenceLine]:
    """The incident's evidence events in table form, oldest first unless asked otherwise."""
    column = EVIDENCE_SORTS.get(sort, EvidenceRow.ts)
    order = [column.desc() if descending else column.asc(), EvidenceRow.event_id]
    rows = session.scalars(
        select(EvidenceRow).where(EvidenceRow.incident_id == incident_id).order_by(*order).offset(offset).limit(limit)
    )
    return [evidence_line(r) for r in rows]


def evidence_count(session: Session, incident_id: str) -> int:
    return int(
        session.scalar(select(func.count()).select_from(EvidenceRow).where(EvidenceRow.incident_id == incident_id)) or 0
    )


def evidence_line(r: EvidenceRow) -> EvidenceLine:
    """One stored evidence event as a table row."""
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
    return EvidenceLine(
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
        user_agent=str(d.get("user_agent") or ""),
    )


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
