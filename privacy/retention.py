"""Evidence retention (privacy policy 5): evidence older than the retention period is
anonymised or purged, and closed incidents that old lose their personal identifiers.

Anonymising replaces actor ids, IP addresses, session ids, user agents and email addresses
with keyed hashes (HMAC-SHA-256 under ``BREACHWATCH_PSEUDONYM_KEY``), in the event fields and
wherever they appear in free text, so counts and patterns survive but nobody can be named
without the key. Purging deletes the evidence events. Evidence of incidents that are still
being worked (not resolved or false positive) is kept whatever its age and reported as held.
Each batch commits with its own audit row, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import delete, func, not_, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from breachwatch.core.clock import utcnow
from breachwatch.incidents.model import CLOSED_STATUSES
from breachwatch.incidents.tables import CorrelationKeyRow, EvidenceRow, FindingRow, IncidentRow
from breachwatch.storage import audit

Mode = Literal["anonymise", "purge"]
MARKER = "bw_anonymised"
# Event fields that identify a person or their device; tenant ids, countries and resource
# types are kept (they identify customers and categories, not people, and keep the evidence useful).
IDENTIFYING_FIELDS: dict[str, str] = {
    "actor_id": "actor",
    "ip": "ip",
    "session_id": "session",
    "user_agent": "agent",
    "email": "email",
    "user": "actor",
    "username": "actor",
}
# The event's key (it is the evidence row's key too) and its time stay as they are.
KEPT_FIELDS = frozenset({"event_id", "ts"})
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,}")
_IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")
_IPV6 = re.compile(r"(?<![0-9A-Fa-f:])(?:[0-9A-Fa-f]{1,4}:){2,7}[0-9A-Fa-f]{1,4}(?![0-9A-Fa-f:])")


class Pseudonymiser:
    """Keyed, stable replacements for identifiers: the same value always maps to the same token."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("the pseudonym key must have at least 16 bytes")
        self._key = key

    def token(self, kind: str, value: str) -> str:
        if value.startswith("anon-"):
            return value  # already a pseudonym
        digest = hmac.new(self._key, f"{kind}\x1f{value}".encode(), hashlib.sha256).hexdigest()
        return f"anon-{digest[:16]}"

    def scrub(self, text: str, known: dict[str, str]) -> str:
        """``text`` with emails, IP addresses and the ``known`` identifiers replaced."""
        for value in sorted(known, key=len, reverse=True):
            if value and value in text:
                text = text.replace(value, known[value])
        text = _EMAIL.sub(lambda m: self.token("email", m.group(0)), text)
        text = _IPV4.sub(lambda m: self.token("ip", m.group(0)), text)
        return _IPV6.sub(lambda m: self.token("ip", m.group(0)), text)

    def event(self, doc: dict[str, Any], known: dict[str, str], marked_at: str) -> dict[str, Any]:
        """An evidence event with its identifying fields and free text pseudonymised."""
        for name, kind in IDENTIFYING_FIELDS.items():
            value = doc.get(name)
            if isinstance(value, str) and value:
                known.setdefault(value, self.token(kind, value))
        out = {k: self._value(k, v, known) for k, v in doc.items() if k != MARKER}
        out[MARKER] = marked_at  # last key: see _MARKED
        return out

    def _value(self, name: str, value: Any, known: dict[str, str]) -> Any:
        if name in KEPT_FIELDS:
            return value
        if isinstance(value, str):
            if name in IDENTIFYING_FIELDS and value:
                return known.get(value) or self.token(IDENTIFYING_FIELDS[name], value)
            return self.scrub(value, known)
        if isinstance(value, list):
            return [self._value("", v, known) for v in value]
        if isinstance(value, dict):
            return {k: self._value(k, v, known) for k, v in value.items()}
        return value


@dataclass(slots=True)
class RetentionReport:
    """What a retention run changed (or, on a dry run, would change)."""

    cutoff: datetime
    mode: str
    dry_run: bool = False
    events_anonymised: int = 0
    events_purged: int = 0
    incidents_anonymised: int = 0
    messages_scrubbed: int = 0
    held_open: list[str] = field(default_factory=list)  # incidents still worked, evidence kept

    def as_dict(self) -> dict[str, Any]:
        return {
            "cutoff": self.cutoff.isoformat(),
            "mode": self.mode,
            "dry_run": self.dry_run,
            "events_anonymised": self.events_anonymised,
            "events_purged": self.events_purged,
            "incidents_anonymised": self.incidents_anonymised,
            "messages_scrubbed": self.messages_scrubbed,
            "incidents_held_open": len(self.held_open),
        }


def _closed_ids(session: Session) -> set[str]:
    return set(session.scalars(select(IncidentRow.incident_id).where(IncidentRow.status.in_(sorted(CLOSED_STATUSES)))))


# An anonymised event ends with this, written by json.dumps with its default ", " / ": "
# separators. Evidence from the ERP is compact JSON (pydantic), so no event field, not even
# a key inside a log record's free-form attrs, can forge the end of a document in this form.
_MARKED = f'%"{MARKER}": "____-__-__"}}'


def _unmarked() -> Any:
    return not_(EvidenceRow.event_json.like(_MARKED))


def _old_evidence(cutoff: datetime) -> Any:
    return select(EvidenceRow).where(EvidenceRow.ts < cutoff, _unmarked())


def _known_for(incident: IncidentRow, p: Pseudonymiser) -> dict[str, str]:
    known = {a: p.token("actor", a) for a in incident.actor_ids or []}
    known.update({ip: p.token("ip", ip) for ip in incident.source_ips or []})
    return known


def apply(
    engine: Engine,
    *,
    retention_days: int,
    mode: Mode = "anonymise",
    key: bytes | None = None,
    actor: str = audit.SYSTEM_ACTOR,
    now: datetime | None = None,
    dry_run: bool = False,
    batch: int = 500,
) -> RetentionReport:
    """Anonymise (or purge) evidence older than ``retention_days`` days, and anonymise the
    incidents closed before then. ``key`` is required to anonymise; purging without one uses
    a throwaway key for the incident fields, which makes those replacements unlinkable."""
    if retention_days < 1:
        raise ValueError("retention_days must be at least 1")
    if mode not in ("anonymise", "purge"):
        raise ValueError("mode must be anonymise or purge")
    if mode == "anonymise" and not key:
        raise ValueError("anonymising needs the pseudonym key (BREACHWATCH_PSEUDONYM_KEY)")
    now = now or utcnow()
    cutoff = now - timedelta(days=retention_days)
    p = Pseudonymiser(key or secrets.token_bytes(32))
    report = RetentionReport(cutoff=cutoff, mode=mode, dry_run=dry_run)
    with Session(engine) as session:
        closed = _closed_ids(session)
        held = session.scalars(select(EvidenceRow.incident_id).where(EvidenceRow.ts < cutoff, _unmarked()).distinct())
        report.held_open = sorted(i for i in held if i not in closed)
        if dry_run:
            eligible = (
                session.scalar(
                    select(func.count()).select_from(
                        _old_evidence(cutoff).where(EvidenceRow.incident_id.in_(sorted(closed))).subquery()
                    )
                )
                if closed
                else 0
            )
            if mode == "purge":
                report.events_purged = int(eligible or 0)
            else:
                report.events_anonymised = int(eligible or 0)
            report.incidents_anonymised = len(_old_closed_incidents(session, cutoff))
            return report
    _evidence_batches(engine, p, cutoff, mode, report, actor, now, batch)
    _incident_batches(engine, p, cutoff, report, actor, now, batch)
    return report


def _evidence_batches(
    engine: Engine,
    p: Pseudonymiser,
    cutoff: datetime,
    mode: Mode,
    report: RetentionReport,
    actor: str,
    now: datetime,
    batch: int,
) -> None:
    marked_at = now.date().isoformat()
    while True:
        with Session(engine) as session, session.begin():
            audit.serialize_writes(session)
            closed = _closed_ids(session)
            if not closed:
                return
            rows = list(
                session.scalars(
                    _old_evidence(cutoff)
                    .where(EvidenceRow.incident_id.in_(sorted(closed)))
                    .order_by(EvidenceRow.incident_id, EvidenceRow.event_id)
                    .limit(batch)
                )
            )
            if not rows:
                return
            incidents = {
                i.incident_id: i
                for i in session.scalars(
                    select(IncidentRow).where(IncidentRow.incident_id.in_({r.incident_id for r in rows}))
                )
            }
            if mode == "purge":
                for r in rows:
                    session.delete(r)
                report.events_purged += len(rows)
            else:
                for r in rows:
                    try:
                        doc = json.loads(r.event_json)
                    except ValueError:
                        doc = {"unreadable": True}
                    known = _known_for(incidents[r.incident_id], p) if r.incident_id in incidents else {}
                    r.event_json = json.dumps(p.event(doc if isinstance(doc, dict) else {}, known, marked_at))
                report.events_anonymised += len(rows)
            audit.record(
                session,
                actor,
                f"retention.{mode}",
                "evidence",
                {"events": len(rows), "cutoff": cutoff.isoformat(), "incidents": len(incidents)},
                at=now,
            )


def _old_closed_incidents(session: Session, cutoff: datetime) -> list[str]:
    rows = session.execute(
        select(IncidentRow.incident_id, IncidentRow.facts).where(
            IncidentRow.status.in_(sorted(CLOSED_STATUSES)), IncidentRow.updated_at < cutoff
        )
    ).all()
    return [i for i, facts in rows if not (facts or {}).get(MARKER)]


def _incident_batches(
    engine: Engine, p: Pseudonymiser, cutoff: datetime, report: RetentionReport, actor: str, now: datetime, batch: int
) -> None:
    from breachwatch.notifier.outbox import OutboxRow

    with Session(engine) as session:
        todo = _old_closed_incidents(session, cutoff)
    for start in range(0, len(todo), batch):
        ids = todo[start : start + batch]
        with Session(engine) as session, session.begin():
            audit.serialize_writes(session)
            scrubbed = 0
            for incident in session.scalars(select(IncidentRow).where(IncidentRow.incident_id.in_(ids))):
                known = _known_for(incident, p)
                scrub: Callable[[str], str] = lambda text, k=known: p.scrub(text, k)  # noqa: E731
                incident.title = scrub(incident.title)
                incident.reasons = [scrub(r) for r in incident.reasons or []]
                incident.actor_ids = [known.get(a, a) for a in incident.actor_ids or []]
                incident.source_ips = [known.get(ip, ip) for ip in incident.source_ips or []]
                incident.group_key = scrub(incident.group_key)
                incident.facts = {**_scrub_json(incident.facts or {}, scrub), MARKER: now.date().isoformat()}
                # Correlation keys name actors and networks, and a closed incident is never
                # correlated with again: they go rather than being scrubbed.
                session.execute(
                    delete(CorrelationKeyRow).where(
                        CorrelationKeyRow.finding_id.in_(
                            select(FindingRow.finding_id).where(FindingRow.incident_id == incident.incident_id)
                        )
                    )
                )
                for f in session.scalars(select(FindingRow).where(FindingRow.incident_id == incident.incident_id)):
                    f.actor_id = known.get(f.actor_id, f.actor_id) if f.actor_id else None
                    f.title = scrub(f.title)
                    f.reasons = [scrub(r) for r in f.reasons or []]
                    f.facts = _scrub_json(f.facts or {}, scrub)
                for m in session.scalars(
                    select(OutboxRow).where(
                        OutboxRow.incident_id == incident.incident_id, OutboxRow.status.in_(("sent", "failed"))
                    )
                ):
                    m.subject = scrub(m.subject)
                    m.body_text = scrub(m.body_text)
                    m.body_html = scrub(m.body_html) if m.body_html else m.body_html
                    scrubbed += 1
            report.incidents_anonymised += len(ids)
            report.messages_scrubbed += scrubbed
            audit.record(
                session,
                actor,
                "retention.anonymise_incidents",
                "incidents",
                {"incidents": ids, "messages": scrubbed, "cutoff": cutoff.isoformat()},
                at=now,
            )


def _scrub_json(value: Any, scrub: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, list):
        return [_scrub_json(v, scrub) for v in value]
    if isinstance(value, dict):
        return {k: _scrub_json(v, scrub) for k, v in value.items()}
    return value
