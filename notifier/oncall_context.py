"""What an on-call page says about an incident: the facts the alert and escalation templates
render (who, which tenants, what evidence, with counts) and the console link."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit

from breachwatch.core.events import Tenant
from breachwatch.core.ids import unique
from breachwatch.incidents.queries import LoginTally, event_doc
from breachwatch.incidents.tables import EvidenceRow, FindingRow, IncidentRow

log = logging.getLogger(__name__)

MAX_EVIDENCE_ROWS = 10


MAX_LISTED = 20  # actors, tenants, addresses, reasons shown before "and N more"


def _time(value: datetime | None) -> str:
    if value is None:
        return ""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _listed(values: Sequence[str]) -> list[str]:
    items = list(values[:MAX_LISTED])
    if len(values) > MAX_LISTED:
        items.append(f"… and {len(values) - MAX_LISTED} more")
    return items


def console_link(base_url: str | None, incident_id: str) -> str | None:
    """The console page of an incident, or None without a usable http(s) base URL."""
    if not base_url:
        return None
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        log.warning("console base URL ignored: it must be an http(s) URL")
        return None
    return f"{base_url.rstrip('/')}/incidents/{quote(incident_id, safe='')}"


def _evidence_row(row: EvidenceRow) -> dict[str, Any]:
    """One evidence event as a table row; the event's own fields are untrusted text."""
    event = event_doc(row)
    topic = row.topic.rsplit(".", 1)[-1]
    action = str(event.get("action") or "")
    resource = ""
    records: Any = ""
    if topic == "access":
        if event.get("outcome") == "denied":
            action += " (denied)"
        resource = f"{event.get('tenant_id', '')}/{event.get('resource_type', '')}"
        records = event.get("records", "")
    elif topic == "auth":
        action = f"{action} {event.get('outcome', '')}".strip()
        roles = event.get("roles")
        resource = ", ".join(str(r) for r in roles) if isinstance(roles, list) else ""
    elif topic == "logs":
        action = str(event.get("level") or "")
        resource = str(event.get("service") or "")
    return {
        "time": _time(row.ts),
        "actor": event.get("actor_id") or "",
        "action": action,
        "resource": resource,
        "records": records if isinstance(records, int) else "",
        "ip": event.get("ip") or "",
        "country": event.get("country") or "",
    }


def alert_context(
    incident: IncidentRow,
    findings: Sequence[FindingRow],
    evidence: Sequence[EvidenceRow],
    tenants: Mapping[str, Tenant],
    *,
    console_url: str | None = None,
    max_rows: int = MAX_EVIDENCE_ROWS,
) -> dict[str, Any]:
    """The ``oncall_alert`` template context: plain data only, no database objects."""
    ordered = sorted(evidence, key=lambda e: (e.ts, e.event_id))
    records = 0
    logins = LoginTally()
    for e in ordered:
        event = event_doc(e)
        if e.topic.endswith("access"):
            value = event.get("records")
            if isinstance(value, int) and value >= 0:
                records += value
        elif e.topic.endswith("auth"):
            logins.add(event)
    by_topic = Counter(e.topic for e in ordered)
    reasons = list(incident.reasons or []) or list(unique(r for f in findings for r in f.reasons))
    tenant_ids = list(incident.tenant_ids or [])
    return {
        "incident": {
            "id": incident.incident_id,
            "title": incident.title,
            "kind": incident.kind,
            "severity": incident.severity,
            "score": f"{incident.score:.0f}",
            "status": incident.status,
            "opened_at": _time(incident.opened_at),
            "updated_at": _time(incident.updated_at),
            "detectors": list(incident.detectors or []),
        },
        "actors": _listed(list(incident.actor_ids or [])),
        "tenants": [{"id": tid, "name": getattr(tenants.get(tid), "name", None)} for tid in tenant_ids[:MAX_LISTED]]
        + (
            [{"id": f"… and {len(tenant_ids) - MAX_LISTED} more", "name": None}] if len(tenant_ids) > MAX_LISTED else []
        ),
        "source_ips": _listed(list(incident.source_ips or [])),
        "reasons": _listed(reasons),
        "findings": [
            {"detector": f.detector, "title": f.title, "severity": f.severity, "score": f"{f.score:.0f}"}
            for f in sorted(findings, key=lambda f: (-f.score, f.finding_id))[:MAX_LISTED]
        ],
        "playbooks": list(unique(f.playbook for f in findings))[:MAX_LISTED],
        "evidence": {
            "total": max(incident.evidence_count or 0, len(ordered)),
            "first_ts": _time(ordered[0].ts) if ordered else _time(incident.opened_at),
            "last_ts": _time(ordered[-1].ts) if ordered else _time(incident.updated_at),
            "by_topic": [{"topic": t, "count": n} for t, n in sorted(by_topic.items())],
            "records": records,
            "logins": logins.summary(),
            "rows": [_evidence_row(e) for e in ordered[:max_rows]],
        },
        "console_url": console_link(console_url, incident.incident_id),
    }
