"""What fired an incident, as numbers to chart: the measures its detector compared with a
limit or a baseline (``Gauge``), and a time series of the evidence that shows it (``Series``).

Each kind shows its own trigger: a bulk export its exports against the export limit and the
share of the tenant's data subjects; credential stuffing and brute force the failed logins per
attacking address over time; a log burst its log records by level; an access rule allowed and
denied accesses; takeovers and the learned kinds the actor's hourly activity against its
learned baseline (``activity.actor_activity``).
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from breachwatch.incidents.activity import Activity, actor_activity
from breachwatch.incidents.queries import event_doc
from breachwatch.incidents.tables import EvidenceRow, IncidentRow

# The rules' own thresholds (detectors/rules: exports.SUBJECT_SHARE, logins.STUFFING_MIN_FAILURES,
# STUFFING_MIN_ACCOUNTS, BRUTE_MIN_FAILURES); the incidents layer cannot import the detectors,
# and tests/incidents/test_trigger.py checks that these agree with them.
SUBJECT_SHARE = 0.25
STUFFING_MIN_FAILURES = 10
STUFFING_MIN_ACCOUNTS = 5
BRUTE_MIN_FAILURES = 10
MAX_GROUPS = 6  # stacked series beyond this are summed as "other addresses"
STEPS = tuple(timedelta(minutes=m) for m in (1, 2, 5, 10, 15, 30, 60, 120, 360, 720, 1440))
MAX_EVENTS = 5000


@dataclass(frozen=True, slots=True)
class Gauge:
    """One measure the detector compared with a limit: ``value`` against ``limit``."""

    label: str
    value: float
    limit: float
    unit: str  # "records", "share", "failed logins", ...
    limit_label: str

    @property
    def crossed(self) -> bool:
        return self.value >= self.limit


@dataclass(frozen=True, slots=True)
class Bucket:
    start: datetime
    values: dict[str, int]  # stacked group -> value
    in_incident: bool

    @property
    def total(self) -> int:
        return sum(self.values.values())


@dataclass(frozen=True, slots=True)
class Line:
    value: float
    label: str


@dataclass(frozen=True, slots=True)
class Series:
    title: str
    unit: str
    step: timedelta | None  # None: one bar per event
    groups: list[str]
    buckets: list[Bucket]
    lines: list[Line] = field(default_factory=list)
    note: str = ""

    @property
    def peak(self) -> int:
        return max((b.total for b in self.buckets), default=0)

    @property
    def total(self) -> int:
        return sum(b.total for b in self.buckets if b.in_incident)


@dataclass(frozen=True, slots=True)
class Trigger:
    kind: str
    headline: str
    gauges: list[Gauge]
    series: Series


def _number(facts: dict[str, Any], name: str) -> float | None:
    value = facts.get(name)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _evidence(session: Session, incident: IncidentRow) -> list[tuple[datetime, str, dict[str, Any]]]:
    rows = session.scalars(
        select(EvidenceRow)
        .where(EvidenceRow.incident_id == incident.incident_id)
        .order_by(EvidenceRow.ts, EvidenceRow.event_id)
        .limit(MAX_EVENTS)
    )
    return [(r.ts, r.topic.rsplit(".", 1)[-1], event_doc(r)) for r in rows]


def _step(first: datetime, last: datetime) -> timedelta:
    """The smallest round step that shows the span in at most about 36 bars."""
    span = last - first
    for step in STEPS:
        if span <= step * 36:
            return step
    return STEPS[-1]


def _floor(ts: datetime, step: timedelta) -> datetime:
    epoch = datetime(2000, 1, 1, tzinfo=ts.tzinfo)
    return epoch + ((ts - epoch) // step) * step


def _stacked(
    events: list[tuple[datetime, str]], incident: IncidentRow, other: str, *, order: list[str] | None = None
) -> tuple[timedelta, list[str], list[Bucket]]:
    """Count ``(time, group)`` pairs per round step, the busiest groups kept apart."""
    if not events:
        return STEPS[0], [], []
    first, last = min(t for t, _ in events), max(t for t, _ in events)
    step = _step(first, last)
    present = Counter(g for _, g in events)
    ranked = [g for g in order if g in present] if order else [g for g, _ in present.most_common()]
    kept = ranked[:MAX_GROUPS] if len(ranked) <= MAX_GROUPS else ranked[: MAX_GROUPS - 1]
    groups = kept + ([other] if len(ranked) > len(kept) else [])
    start, end = _floor(first, step), _floor(last, step) + step
    n = int((end - start) / step)
    counts = [Counter[str]() for _ in range(n)]
    for ts, group in events:
        counts[int((ts - start) / step)][group if group in kept else other] += 1
    opened, updated = incident.opened_at, incident.updated_at
    buckets = [
        Bucket(
            start=start + i * step,
            values={g: counts[i][g] for g in groups if counts[i][g]},
            in_incident=start + i * step + step > opened and start + i * step <= updated,
        )
        for i in range(n)
    ]
    return step, groups, buckets


def _network(ip: str) -> str:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    return str(ipaddress.ip_network(f"{ip}/{24 if addr.version == 4 else 48}", strict=False))


# --- per kind -------------------------------------------------------------------------------


def _bulk_export(session: Session, incident: IncidentRow) -> Trigger:
    facts = incident.facts or {}
    exports = [
        (ts, d)
        for ts, topic, d in _evidence(session, incident)
        if topic == "access" and isinstance(d.get("records"), int)
    ]
    largest = _number(facts, "records") or float(max((int(d["records"]) for _, d in exports), default=0))
    limit = _number(facts, "limit")
    subjects = _number(facts, "data_subjects")
    tenant = (incident.tenant_ids or ["the tenant"])[0]
    gauges: list[Gauge] = []
    lines: list[Line] = []
    if limit:
        gauges.append(Gauge("Largest export", largest, limit, "records", "export limit"))
        lines.append(Line(limit, "export limit"))
    if subjects:
        share = largest / subjects
        gauges.append(
            Gauge(
                f"Share of tenant {tenant}'s {int(subjects):,} data subjects",
                share,
                SUBJECT_SHARE,
                "share",
                "fires at",
            )
        )
        lines.append(Line(SUBJECT_SHARE * subjects, f"{SUBJECT_SHARE:.0%} of the tenant's data subjects"))
    said = []
    if subjects and largest / subjects >= SUBJECT_SHARE:
        said.append(
            f"one export held {largest / subjects:.0%} of the {int(subjects):,} data subjects tenant {tenant}"
            f" holds (the rule fires at {SUBJECT_SHARE:.0%})"
        )
    if limit and largest > limit:
        said.append(f"the largest export, {largest:,.0f} records, is over the export limit of {limit:,.0f}")
    headline = "Fired on: " + ("; ".join(said) if said else f"an export of {largest:,.0f} records")
    over = _number(facts, "exports_over_limit")
    if over and over > 1:
        headline += f"; {int(over)} exports over the limit that day"
    buckets = [Bucket(start=ts, values={"records": int(d["records"])}, in_incident=True) for ts, d in exports[:60]]
    series = Series(
        title="Records per export",
        unit="records",
        step=None,
        groups=["records"],
        buckets=buckets,
        lines=lines,
        note=f"{len(exports)} export{'s' if len(exports) != 1 else ''} in the evidence",
    )
    return Trigger(incident.kind, headline, gauges, series)


def _failed_logins(session: Session, incident: IncidentRow) -> Trigger:
    facts = incident.facts or {}
    fails = [
        (ts, str(d.get("ip") or "?"))
        for ts, topic, d in _evidence(session, incident)
        if topic == "auth" and d.get("outcome") == "failure"
    ]
    # Addresses grouped by network, busiest network first, so one network's addresses sit together.
    per_ip = Counter(ip for _, ip in fails)
    per_net = Counter(_network(ip) for _, ip in fails)
    order = sorted(per_ip, key=lambda ip: (-per_net[_network(ip)], _network(ip), -per_ip[ip], ip))
    step, groups, buckets = _stacked(fails, incident, "other addresses", order=order)
    nets = ", ".join(
        f"{net}: {n:,} from {_count(sum(1 for ip in per_ip if _network(ip) == net), 'address', 'addresses')}"
        for net, n in per_net.most_common(3)
    )
    gauges: list[Gauge] = []
    if incident.kind == "credential_stuffing":
        at = _number(facts, "detection_failures")
        if at is not None:
            gauges.append(
                Gauge(
                    "Failed logins in the 10 minutes before detection",
                    at,
                    STUFFING_MIN_FAILURES,
                    "failed logins",
                    "fires at",
                )
            )
        accounts = _number(facts, "detection_unrecovered")
        if accounts is not None:
            gauges.append(
                Gauge(
                    "Accounts failing with no success from the address",
                    accounts,
                    STUFFING_MIN_ACCOUNTS,
                    "accounts",
                    "fires at",
                )
            )
        headline = (
            f"Fired on: {_count(len(fails), 'failed login')} from {_count(len(per_ip), 'address', 'addresses')}"
            f" in {_count(len(per_net), 'network')}"
        )
    else:
        at = _number(facts, "failures_10min_at_detection")
        if at is not None:
            gauges.append(Gauge("Failed logins within 10 minutes", at, BRUTE_MIN_FAILURES, "failed logins", "fires at"))
        headline = (
            f"Fired on: {_count(len(fails), 'failed login')} against one account"
            f" from {_count(len(per_ip), 'address', 'addresses')}"
        )
    series = Series(
        title=f"Failed logins per attacking address, per {_step_words(step)}",
        unit="failed logins",
        step=step,
        groups=groups,
        buckets=buckets,
        note=f"by network: {nets}" if nets else "",
    )
    return Trigger(incident.kind, headline, gauges, series)


def _logs(session: Session, incident: IncidentRow) -> Trigger:
    facts = incident.facts or {}
    records = [
        (ts, str(d.get("level") or "INFO").upper()) for ts, topic, d in _evidence(session, incident) if topic == "logs"
    ]
    order = [lv for lv in ("CRITICAL", "ERROR", "WARN", "WARNING", "INFO", "DEBUG") if any(r[1] == lv for r in records)]
    order += sorted({lv for _, lv in records} - set(order))
    step, groups, buckets = _stacked(records, incident, "other levels", order=order)
    gauges: list[Gauge] = []
    new = _number(facts, "new_error_templates")
    expected = _number(facts, "expected_in_window")
    if new is not None and expected is not None:
        gauges.append(
            Gauge("New kinds of error message", new, max(expected, 1.0), "messages", "usual (expected) about")
        )
        headline = f"Fired on: {int(new)} new kinds of error message where about {expected:.2g} were expected"
    else:
        raw, threshold = _number(facts, "raw_score"), _number(facts, "threshold")
        if raw is not None and threshold:
            gauges.append(Gauge("How unusual the session is", raw, threshold, "score", "fires at"))
        headline = (
            f"Fired on: an unusual sequence of {len(records):,} log records on service {facts.get('service', '?')}"
        )
    series = Series(
        title=f"Log records per {_step_words(step)}, by level",
        unit="log records",
        step=step,
        groups=groups,
        buckets=buckets,
    )
    return Trigger(incident.kind, headline, gauges, series)


def _accesses(session: Session, incident: IncidentRow) -> Trigger:
    facts = incident.facts or {}
    events = [
        (ts, "denied" if d.get("outcome") in ("denied", "failure") else "allowed")
        for ts, topic, d in _evidence(session, incident)
        if topic == "access"
    ]
    step, groups, buckets = _stacked(events, incident, "other", order=["allowed", "denied"])
    allowed, denied = _number(facts, "allowed") or 0, _number(facts, "denied") or 0
    what = "another tenant's data" if incident.kind == "cross_tenant_access" else "a tenant's data without a ticket"
    headline = f"Fired on: {int(allowed):,} allowed and {int(denied):,} denied accesses to {what}"
    gauges: list[Gauge] = []
    series = Series(
        title=f"Accesses per {_step_words(step)}", unit="accesses", step=step, groups=groups, buckets=buckets
    )
    return Trigger(incident.kind, headline, gauges, series)


def _activity(session: Session, incident: IncidentRow) -> Trigger:
    a: Activity = actor_activity(session, incident)
    buckets = [Bucket(h.start, {a.metric: h.value} if h.value else {}, h.in_incident) for h in a.hours]
    lines = [Line(a.baseline, a.baseline_label)] if a.baseline is not None else []
    gauges: list[Gauge] = []
    peak = max((h.value for h in a.hours if h.in_incident), default=0)
    if a.baseline:
        gauges.append(Gauge("Busiest hour of the incident", float(peak), a.baseline, a.metric, a.baseline_label))
        headline = f"Fired on: {peak:,} {a.metric} in one hour, {peak / a.baseline:.1f}x the {a.baseline_label}"
    else:
        headline = f"Activity of {a.subject}: {a.total:,} {a.metric} during the incident ({a.baseline_label})"
    facts = incident.facts or {}
    score, threshold = _number(facts, "score"), _number(facts, "threshold")
    if score is not None and threshold:
        gauges.append(Gauge("Anomaly score of the learned model", score, threshold, "score", "fires at"))
    series = Series(
        title=f"{a.metric.capitalize()} per hour of {a.subject}",
        unit=a.metric,
        step=timedelta(hours=1),
        groups=[a.metric],
        buckets=buckets,
        lines=lines,
        note="grey: the actor's other evidence",
    )
    return Trigger(incident.kind, headline, gauges, series)


def _count(n: int, noun: str, plural: str | None = None) -> str:
    return f"{n:,} {noun if n == 1 else plural or noun + 's'}"


def _step_words(step: timedelta) -> str:
    minutes = int(step.total_seconds() // 60)
    if minutes % 1440 == 0:
        return "day" if minutes == 1440 else f"{minutes // 1440} days"
    if minutes % 60 == 0:
        return "hour" if minutes == 60 else f"{minutes // 60} hours"
    return "minute" if minutes == 1 else f"{minutes} minutes"


def trigger(session: Session, incident: IncidentRow) -> Trigger:
    """What fired ``incident``, charted the way its kind is judged."""
    if incident.kind == "bulk_export" and (incident.facts or {}).get("limit") is not None:
        return _bulk_export(session, incident)
    if incident.kind in ("credential_stuffing", "brute_force"):
        return _failed_logins(session, incident)
    if incident.kind in ("error_burst", "anomalous_log_session"):
        return _logs(session, incident)
    if incident.kind in ("cross_tenant_access", "staff_without_ticket"):
        return _accesses(session, incident)
    return _activity(session, incident)
