"""An actor's activity hour by hour against its baseline, from the evidence store: the
numbers behind the incident page's chart.

The series counts records touched per hour (or events per hour when the evidence holds no
data access, e.g. a login attack), from every evidence event of the actor in the evidence
table, this incident's and earlier ones'. The baseline is the best one the detectors
reported: the actor's learned busiest hour, else its usual largest export, else the tenant's,
else the export limit the rule enforces.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from breachwatch.incidents.queries import event_doc
from breachwatch.incidents.tables import EvidenceRow, IncidentRow

HOUR = timedelta(hours=1)
MAX_EVENTS = 50_000

# (fact name, what the baseline line means); first present wins.
BASELINES: tuple[tuple[str, str], ...] = (
    ("baseline_hour_p95", "usual busiest hour (95th percentile)"),
    ("actor_p99", "actor's usual largest export (99th percentile)"),
    ("tenant_p99", "tenant's usual largest export (99th percentile)"),
    ("limit", "export limit"),
)


@dataclass(frozen=True, slots=True)
class Hour:
    start: datetime
    value: int
    in_incident: bool  # inside this incident's time span
    failures: int = 0  # denied accesses / failed logins in that hour


@dataclass(frozen=True, slots=True)
class Activity:
    """Hourly values of one actor (or address) and the baseline to compare them with."""

    subject: str  # "u-hans" or "address 198.51.100.7"
    metric: str  # "records" or "events"
    hours: list[Hour]
    baseline: float | None
    baseline_label: str
    incident_start: datetime
    incident_end: datetime

    @property
    def peak(self) -> int:
        return max((h.value for h in self.hours), default=0)

    @property
    def total(self) -> int:
        return sum(h.value for h in self.hours if h.in_incident)


def _floor(ts: datetime) -> datetime:
    return ts.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _who(incident: IncidentRow) -> tuple[str, str, str] | None:
    """Whose activity to chart: what the incident is grouped on (an actor, or an attacking
    address), else its first actor."""
    kind, _, value = (incident.group_key or "").partition(":")
    if kind == "ip" and value:
        return "ip", value, f"address {value}"
    if kind == "actor" and value:
        return "actor_id", value, value
    if incident.actor_ids:
        return "actor_id", incident.actor_ids[0], incident.actor_ids[0]
    if incident.source_ips:
        return "ip", incident.source_ips[0], f"address {incident.source_ips[0]}"
    return None


def actor_activity(session: Session, incident: IncidentRow, *, max_hours: int = 72, lead_hours: int = 24) -> Activity:
    """The hourly activity around an incident of its first actor (or attacking address)."""
    start_incident, end_incident = _floor(incident.opened_at), _floor(incident.updated_at) + HOUR
    end = end_incident + HOUR
    start = max(start_incident - timedelta(hours=lead_hours), end - timedelta(hours=max_hours))
    who = _who(incident)
    docs: list[tuple[datetime, str, dict[str, object]]] = []
    if who is not None:
        field, value, _ = who
        # Evidence is stored as compact JSON, so the field's exact text narrows the scan; the
        # exact comparison below decides.
        needle = f'"{field}":{json.dumps(value)}'
        rows = session.scalars(
            select(EvidenceRow)
            .where(
                or_(EvidenceRow.incident_id == incident.incident_id, EvidenceRow.event_json.contains(needle)),
                EvidenceRow.ts >= start,
                EvidenceRow.ts < end,
            )
            .limit(MAX_EVENTS)
        )
        seen: set[str] = set()
        for r in rows:
            d = event_doc(r)
            if d.get(field) != value or r.event_id in seen:
                continue
            seen.add(r.event_id)
            docs.append((r.ts, r.topic, d))
    has_access = any(topic.endswith("access") and isinstance(d.get("records"), int) for _, topic, d in docs)
    metric = "records" if has_access else "events"
    n = max(1, int((end - start) / HOUR))
    values = [0] * n
    failures = [0] * n
    for ts, topic, d in docs:
        i = int((_floor(ts) - start) / HOUR)
        if not 0 <= i < n:
            continue
        if metric == "records":
            if topic.endswith("access") and isinstance(d.get("records"), int):
                values[i] += int(d["records"])  # type: ignore[call-overload]
        else:
            values[i] += 1
        if d.get("outcome") in ("denied", "failure"):
            failures[i] += 1
    hours = [
        Hour(
            start=start + i * HOUR,
            value=values[i],
            in_incident=start_incident <= start + i * HOUR < end_incident,
            failures=failures[i],
        )
        for i in range(n)
    ]
    baseline, label = None, "no baseline learned for this actor yet"
    facts = incident.facts or {}
    if metric == "records":
        for name, meaning in BASELINES:
            value_ = facts.get(name)
            if isinstance(value_, int | float) and not isinstance(value_, bool) and value_ > 0:
                baseline, label = float(value_), meaning
                break
    else:
        label = "no baseline: the evidence holds no data access, only events"
    return Activity(
        subject=who[2] if who else "this incident",
        metric=metric,
        hours=hours,
        baseline=baseline,
        baseline_label=label,
        incident_start=start_incident,
        incident_end=end_incident,
    )
