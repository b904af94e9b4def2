"""The people and places incidents are about, each as a page: an actor, a tenant, a network
(or one address). For each: its incidents, its recent activity in the stored evidence, the
baselines the detectors reported for it, and a risk read from its open incidents. Also what
a search box query names (``resolve``)."""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from breachwatch.core.clock import utcnow
from breachwatch.core.findings import SEVERITY_RANK
from breachwatch.incidents.model import CLOSED_STATUSES
from breachwatch.incidents.priority import priority
from breachwatch.incidents.queries import MAX_SCAN, EvidenceLine, evidence_line, in_network
from breachwatch.incidents.tables import EvidenceRow, FindingRow, IncidentRow

Net = ipaddress.IPv4Network | ipaddress.IPv6Network
EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}$")
# Facts the detectors report that describe an actor's or a tenant's usual behaviour.
ACTOR_BASELINES: dict[str, str] = {
    "baseline_hour_p95": "usual busiest hour (records, 95th percentile)",
    "baseline_day_p95": "usual busiest day (records, 95th percentile)",
    "actor_p99": "usual largest export (records, 99th percentile)",
    "history_days": "days of history learned",
    "time_zone": "time zone",
    "usual_countries": "usual countries",
}
TENANT_BASELINES: dict[str, str] = {
    "tenant_p99": "usual largest export (records, 99th percentile)",
    "tenant_largest": "largest export on record",
    "data_subjects": "data subjects held",
    "tenant_history": "exports on record",
}
MAX_FINDINGS = 500


@dataclass(frozen=True, slots=True)
class Risk:
    level: str  # "high", "elevated", "low", "none"
    open_incidents: int
    worst: str | None  # the most severe open incident's severity
    top_priority: float

    def words(self) -> str:
        if not self.open_incidents:
            return "no open incidents"
        n = self.open_incidents
        return f"{n} open incident{'s' if n != 1 else ''}, the worst {self.worst}, top priority {self.top_priority:.0f}"


@dataclass(slots=True)
class Entity:
    kind: str  # actor | tenant | network
    key: str
    incidents: list[IncidentRow]
    baseline: dict[str, tuple[str, Any]]  # fact -> (meaning, value)
    risk: Risk
    related: dict[str, list[str]] = field(default_factory=dict)  # "tenants" / "actors" / "addresses"


def parse_network(value: str) -> Net | None:
    """``198.51.100.0/24``, ``2001:db8::/48`` or one address (as a /32 or /128)."""
    try:
        return ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        return None


def _risk(rows: list[IncidentRow], now: datetime) -> Risk:
    open_rows = [r for r in rows if r.status not in CLOSED_STATUSES]
    if not open_rows:
        return Risk("none" if not rows else "low", 0, None, 0.0)
    worst = max(open_rows, key=lambda r: SEVERITY_RANK.get(r.severity, 0)).severity
    top = max(priority(r, now=now).value for r in open_rows)
    level = "high" if worst == "critical" or top >= 70 else "elevated"
    return Risk(level, len(open_rows), worst, top)


def _scan(session: Session) -> list[IncidentRow]:
    return list(session.scalars(select(IncidentRow).order_by(IncidentRow.updated_at.desc()).limit(MAX_SCAN)))


def _baseline(session: Session, ids: list[str], names: dict[str, str], actor: str | None = None) -> dict[str, Any]:
    """The latest value of each baseline fact among the findings of ``ids`` (of ``actor``)."""
    if not ids:
        return {}
    stmt = select(FindingRow).where(FindingRow.incident_id.in_(ids[:MAX_FINDINGS]))
    if actor is not None:
        stmt = stmt.where(FindingRow.actor_id == actor)
    found: dict[str, tuple[str, Any]] = {}
    for f in session.scalars(stmt.order_by(FindingRow.ts.desc()).limit(MAX_FINDINGS)):
        for name, meaning in names.items():
            value = (f.facts or {}).get(name)
            if name not in found and value not in (None, "", [], {}):
                found[name] = (meaning, value)
    return found


def _related(rows: list[IncidentRow], attr: str, exclude: str) -> list[str]:
    seen: dict[str, None] = {}
    for r in rows:
        for v in getattr(r, attr) or []:
            if v != exclude:
                seen.setdefault(v, None)
    return list(seen)[:30]


def actor(session: Session, actor_id: str, *, now: datetime | None = None) -> Entity:
    rows = [r for r in _scan(session) if actor_id in (r.actor_ids or [])]
    ids = [r.incident_id for r in rows]
    return Entity(
        "actor",
        actor_id,
        rows,
        _baseline(session, ids, ACTOR_BASELINES, actor_id),
        _risk(rows, now or utcnow()),
        {"tenants": _related(rows, "tenant_ids", ""), "addresses": _related(rows, "source_ips", "")},
    )


def tenant(session: Session, tenant_id: str, *, now: datetime | None = None) -> Entity:
    rows = [r for r in _scan(session) if tenant_id in (r.tenant_ids or [])]
    ids = [r.incident_id for r in rows]
    return Entity(
        "tenant",
        tenant_id,
        rows,
        _baseline(session, ids, TENANT_BASELINES),
        _risk(rows, now or utcnow()),
        {"actors": _related(rows, "actor_ids", ""), "addresses": _related(rows, "source_ips", "")},
    )


def network(session: Session, net: Net, *, now: datetime | None = None) -> Entity:
    rows = [r for r in _scan(session) if in_network(r.source_ips or [], net) or r.group_key == f"net:{net}"]
    addresses = sorted(
        {a for r in rows for a in (r.source_ips or []) if in_network([a], net)},
        key=lambda a: ipaddress.ip_address(a),
    )
    return Entity(
        "network",
        str(net),
        rows,
        {},
        _risk(rows, now or utcnow()),
        {
            "addresses": addresses[:60],
            "actors": _related(rows, "actor_ids", ""),
            "tenants": _related(rows, "tenant_ids", ""),
        },
    )


# --- recent activity ------------------------------------------------------------------------


def _needles(kind: str, key: str) -> list[str]:
    """Text that an event about the entity contains in its stored JSON (a coarse first cut;
    the exact test follows)."""
    if kind == "actor":
        return [f'"actor_id":{json.dumps(key)}']
    if kind == "tenant":
        return [f'"tenant_id":{json.dumps(key)}', f'"actor_tenant":{json.dumps(key)}']
    net = parse_network(key)
    if net is None:
        return []
    if net.version == 4:
        octets = str(net.network_address).split(".")[: net.prefixlen // 8]
        return [f'"ip":"{".".join(octets)}' + ("." if octets else "")]
    return ['"ip":"']


def _about(kind: str, key: str, doc: dict[str, Any]) -> bool:
    if kind == "actor":
        return doc.get("actor_id") == key
    if kind == "tenant":
        return key in (doc.get("tenant_id"), doc.get("actor_tenant"))
    net = parse_network(key)
    return net is not None and in_network([str(doc.get("ip") or "")], net)


def activity(session: Session, kind: str, key: str, *, limit: int = 50, offset: int = 0) -> list[EvidenceLine]:
    """The entity's events in the stored evidence, newest first, one per event (an event in
    the evidence of two incidents shows once)."""
    needles = _needles(kind, key)
    if not needles:
        return []
    stmt = (
        select(EvidenceRow)
        .where(or_(*(EvidenceRow.event_json.contains(n) for n in needles)))
        .order_by(EvidenceRow.ts.desc(), EvidenceRow.event_id)
    )
    out: list[EvidenceLine] = []
    seen: set[str] = set()
    skipped = 0
    # Read in pages until enough matching events are found (the text test is coarse).
    for row in session.scalars(stmt.limit(20 * (limit + offset) + 200)):
        if row.event_id in seen:
            continue
        line = evidence_line(row)
        if not _about(kind, key, line.event):
            continue
        seen.add(row.event_id)
        if skipped < offset:
            skipped += 1
            continue
        out.append(line)
        if len(out) >= limit:
            break
    return out


# --- search -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """What a query names: ``kind`` is incident, actor, tenant, network, email or text."""

    kind: str
    value: str


def resolve(session: Session, query: str, *, contacts: dict[str, str] | None = None) -> list[Target]:
    """What ``query`` could name, the most specific first: an incident id, a network or an
    address, an e-mail (an actor with that id, a tenant contact in ``contacts``: e-mail ->
    tenant), an actor or tenant id; else words to find in incident titles."""
    q = query.strip()[:200]
    if not q:
        return []
    if session.get(IncidentRow, q) is not None:
        return [Target("incident", q)]
    net = parse_network(q)
    if net is not None:
        return [Target("network", str(net) if "/" in q else q)]
    found: list[Target] = []
    rows = _scan(session)
    low = q.lower()
    if any(low == a.lower() for r in rows for a in (r.actor_ids or [])):
        actor_id = next(a for r in rows for a in (r.actor_ids or []) if a.lower() == low)
        found.append(Target("actor", actor_id))
    if any(low == t.lower() for r in rows for t in (r.tenant_ids or [])):
        tenant_id = next(t for r in rows for t in (r.tenant_ids or []) if t.lower() == low)
        found.append(Target("tenant", tenant_id))
    if EMAIL.match(q):
        for email, tenant_id in (contacts or {}).items():
            if email.lower() == low:
                found.append(Target("tenant", tenant_id))
        found.append(Target("email", q))
    return found or [Target("text", q)]
