"""Findings in, incidents out: correlation and durable storage in one transaction per batch.

Findings are grouped into an incident when they share the actor, or when one of them is
about an attacking address (no single actor, e.g. credential stuffing) and the other came
from that address's network (/24, IPv6 /48: a campaign rotates addresses within one), within
the correlation window (event time). Whichever of two such findings is stored first, the
second finds its incident (``correlation_keys``), so consumers that store in a different
order group the same way. Everything is keyed by
deterministic ids, so a batch processed twice (after a crash or a rebalance) changes
nothing the second time: no second incident, no doubled evidence, no second page.
With a closed-incident policy, a finding that repeats a pattern lately judged a false
positive is stored on that incident, marked suppressed, and opens and pages nothing.
Each incident a batch opens, reopens or adds findings to is one ``Change`` for the
``on_change`` hooks, in the batch's transaction.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from breachwatch.core.attack import techniques_of
from breachwatch.core.clock import utcnow
from breachwatch.core.events import AccessEvent, AuthEvent, Event, LogRecord, Tenant
from breachwatch.core.findings import MAX_EVIDENCE, SEVERITY_RANK, Finding, Judgement
from breachwatch.core.ids import network_prefix, stable_id
from breachwatch.incidents import ledger
from breachwatch.incidents.lifecycle import (
    SYSTEM,
    Change,
    ChangeHook,
    ClosedIncidentPolicy,
    IncidentEventRow,
    IncidentLinkRow,
    Suppression,
    changed,
    link,
    note,
)
from breachwatch.incidents.model import CLOSED_STATUSES, AttackTechnique, IncidentOut
from breachwatch.incidents.tables import CorrelationKeyRow, EvidenceRow, FindingRow, IncidentRow, incidents_holding
from breachwatch.storage import audit

log = logging.getLogger(__name__)

MAX_REASONS = 40
# Open incidents a finding links besides the one it joins (a finding from a busy network).
MAX_RELATED = 5
TOPIC_OF: dict[type, str] = {AccessEvent: "erp.access", AuthEvent: "erp.auth", LogRecord: "erp.logs"}

# Called inside the batch transaction for each newly opened incident (the notifier's hook).
NewIncidentHook = Callable[
    [Session, IncidentRow, Sequence[FindingRow], Sequence[EvidenceRow], Mapping[str, Tenant]], Any
]


@dataclass(slots=True)
class _Touched:
    """What a batch did to one incident, for its ``Change``."""

    incident: IncidentRow
    findings: list[str] = field(default_factory=list)
    reopened_from: str | None = None


@dataclass(slots=True)
class RecordResult:
    """What one batch did: findings stored (suppressed ones included) and seen before,
    incidents opened and updated, and the ids of findings suppressed by a false positive."""

    new_findings: int = 0
    duplicate_findings: int = 0
    opened: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    suppressed: list[str] = field(default_factory=list)


def _merge(existing: list[str], new: Sequence[str], cap: int | None = None) -> list[str]:
    out = list(existing)
    seen = set(out)
    for v in new:
        if v and v not in seen:
            if cap is not None and len(out) >= cap:
                break
            out.append(v)
            seen.add(v)
    return out


def detected_time(f: Finding) -> datetime:
    """When a finding was raised, in event time: what its detector says (the newest event it
    had seen then), else its latest evidence event."""
    return f.detected_at or (max(e.ts for e in f.events) if f.events else f.ts)


def network_keys(ips: Sequence[str]) -> list[str]:
    """Grouping keys of the networks (/24, IPv6 /48) the addresses are in."""
    return list(dict.fromkeys(f"net:{n}" for ip in ips if (n := network_prefix(ip))))


def correlation_keys(f: Finding) -> tuple[list[str], list[str]]:
    """The keys a finding is stored under, and the keys it looks for in open incidents.

    - ``actor:<id>``: an actor's finding, found by later findings of the same actor.
    - ``net:<prefix>`` (``ip:<addr>`` for an address with no network): a finding about an
      attacking network with no single actor, found by any finding from that network.
    - ``src:<prefix or addr>``: where an actor's finding came from, found only by findings
      about an attacking network. So a campaign finds the takeover stored before it, while
      two actors behind one office's addresses never meet.
    """
    places = [(ip, network_prefix(ip)) for ip in dict.fromkeys(ip for ip in f.source_ips if ip)]
    attacking = list(dict.fromkeys(f"net:{n}" if n else f"ip:{ip}" for ip, n in places))
    sources = list(dict.fromkeys(f"src:{n or ip}" for ip, n in places))
    if f.actor_id:
        actor = f"actor:{f.actor_id}"
        return [actor, *sources], [actor, *attacking]
    return attacking, [*attacking, *sources]


def _lock_keys(session: Session, keys: set[str]) -> None:
    """Hold each correlation key of a batch for the rest of its transaction.

    Consumers store their batches concurrently, and a batch does not see an incident another
    one has opened but not committed: a campaign and the takeover it led to, stored at the
    same moment by two consumers, would open two incidents. A batch that shares a key with
    one in flight waits for it here, then finds its incident. On PostgreSQL each key is an
    advisory lock, taken first and in one order, before any row lock, so two batches cannot
    deadlock on them; SQLite has one writer, whose lock is taken before anything is read.
    """
    if not keys:
        return
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        audit.serialize_writes(session)
    elif dialect == "postgresql":
        locks = {int.from_bytes(hashlib.blake2b(k.encode(), digest_size=8).digest(), "big", signed=True) for k in keys}
        for lock in sorted(locks):
            session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": lock})


class IncidentStore:
    """The incident database, written once per batch."""

    def __init__(
        self,
        engine: Engine,
        *,
        window: timedelta = timedelta(hours=6),
        on_new_incident: Sequence[NewIncidentHook] = (),
        closed_policy: ClosedIncidentPolicy | None = None,
        on_incident_stored: Sequence[NewIncidentHook] = (),
        on_change: Sequence[ChangeHook] = (),
        risk: ledger.RiskPolicy | None = None,
    ) -> None:
        self.engine = engine
        # How signals below the incident threshold add up (None: they are dropped).
        self.risk = risk
        self.window = window
        self.on_new_incident = list(on_new_incident)
        # Run for every incident a batch opened or added to (with what it added), e.g. to keep
        # the directory entries of tenants an existing incident now also concerns.
        self.on_incident_stored = list(on_incident_stored)
        # Told of every incident a batch opens, reopens or adds findings to (see ``Change``).
        self.on_change = list(on_change)
        # What new evidence does to a closed incident (reopen it, or open a linked one).
        self.closed_policy = closed_policy

    # --- writing ------------------------------------------------------------------------

    def record(self, findings: Sequence[Finding], tenants: Mapping[str, Tenant] | None = None) -> RecordResult:
        """Store a batch's findings (correlated into incidents) in a transaction of their own."""
        with Session(self.engine) as session, session.begin():
            return self.record_in(session, findings, tenants)

    def record_in(
        self, session: Session, findings: Sequence[Finding], tenants: Mapping[str, Tenant] | None = None
    ) -> RecordResult:
        """Store a batch's findings in the caller's transaction (which may hold the batch's
        checkpoints too, so that both are stored or neither is)."""
        result = RecordResult()
        signals = [f for f in findings if f.signal]
        if signals:
            findings = [f for f in findings if not f.signal] + self._book_risk(session, signals)
        if findings:
            self._record_findings(session, sorted(findings, key=lambda f: (f.ts, f.finding_id)), tenants or {}, result)
        return result

    def _book_risk(self, session: Session, signals: Sequence[Finding]) -> list[Finding]:
        """Signals below the incident threshold go to their ledgers (none without a policy);
        returns the findings of ledgers they took over the threshold."""
        if self.risk is None or not self.risk.enabled:
            return []
        _lock_keys(session, {f"actor:{f.actor_id}" for f in signals if f.actor_id} or {"ledger"})
        over: list[Finding] = []
        for f in sorted(signals, key=lambda f: (detected_time(f), f.finding_id)):
            over.extend(ledger.add(session, f, detected_time(f), self.risk))
        return over

    def _record_findings(
        self, session: Session, findings: Sequence[Finding], tenants: Mapping[str, Tenant], result: RecordResult
    ) -> None:
        _lock_keys(session, {k for f in findings for keys in correlation_keys(f) for k in keys})
        ids = [f.finding_id for f in findings]
        known: dict[str, str] = {
            fid: iid
            for fid, iid in session.execute(
                select(FindingRow.finding_id, FindingRow.incident_id).where(FindingRow.finding_id.in_(ids))
            ).all()
        }
        # Decided once per batch from what the database held before it (judgements and event
        # times, not the wall clock): a suppressed finding only adds the same actor and kind to
        # a false positive, so deciding finding by finding would give the same answer.
        suppressions: dict[str, Suppression] = (
            self.closed_policy.suppressing(session, [f for f in findings if f.finding_id not in known])
            if self.closed_policy is not None
            else {}
        )
        # A finding re-reported with later events may bring new addresses: keys not yet stored.
        stored_keys: set[tuple[str, str]] = (
            {
                (fid, key)
                for fid, key in session.execute(
                    select(CorrelationKeyRow.finding_id, CorrelationKeyRow.key).where(
                        CorrelationKeyRow.finding_id.in_(list(known))
                    )
                )
            }
            if known
            else set()
        )
        suppressed: dict[str, tuple[IncidentRow, list[FindingRow], datetime]] = {}
        opened: dict[str, tuple[IncidentRow, list[FindingRow], list[EvidenceRow]]] = {}
        touched: dict[str, _Touched] = {}
        stored: dict[str, tuple[IncidentRow, list[FindingRow], list[EvidenceRow]]] = {}
        for f in findings:
            fid = f.finding_id
            keys, sought = correlation_keys(f)
            if fid in known:
                # The same finding again: a re-delivered batch (nothing new), or an ongoing
                # anomaly re-reported with later events, which join its evidence.
                # Partitions that each saw part of an address-centric attack report it under
                # one id, too: fold it in whole, so the result does not depend on arrival order.
                result.duplicate_findings += 1
                incident = session.get(IncidentRow, known[fid])
                if incident is not None:
                    self._fold(incident, f)
                    self._add_keys(session, fid, keys, stored_keys)
                    added = self._add_evidence(session, incident, fid, f.events)
                    stored.setdefault(incident.incident_id, (incident, [], []))[2].extend(added)
                    if incident.incident_id in opened:
                        # Another partition's part of a run that opened its incident in this
                        # batch: the page about the new incident shows all of its evidence.
                        opened[incident.incident_id][2].extend(added)
                    before = incident.status
                    if added and self.closed_policy is not None and incident.status in CLOSED_STATUSES:
                        self.closed_policy.evidence_added(session, incident, len(added))
                    if incident.status != before:
                        touch = touched.setdefault(incident.incident_id, _Touched(incident))
                        touch.reopened_from = touch.reopened_from or before
                continue
            held = suppressions.get(fid)
            if held is not None:
                incident = session.get(IncidentRow, held.incident_id)
                if incident is None:  # read in this same transaction a moment ago
                    raise LookupError(f"incident {held.incident_id} vanished mid-batch")
                self._fold(incident, f)
                row = self._finding_row(f, incident, suppressed=True)
                session.add(row)
                self._add_keys(session, fid, keys, stored_keys)
                known[fid] = incident.incident_id
                kept = self._add_evidence(session, incident, fid, f.events)
                suppressed.setdefault(incident.incident_id, (incident, [], held.until))[1].append(row)
                touched.setdefault(incident.incident_id, _Touched(incident)).findings.append(fid)
                entry = stored.setdefault(incident.incident_id, (incident, [], []))
                entry[1].append(row)
                entry[2].extend(kept)
                result.suppressed.append(fid)
                result.new_findings += 1
                continue
            matches, reopened_from = self._match(session, f, sought)
            incident = matches[0] if matches else None
            if incident is not None and reopened_from is not None:
                touched.setdefault(incident.incident_id, _Touched(incident)).reopened_from = reopened_from
            if incident is None:
                incident = self._open(session, f)
                if self.closed_policy is not None:
                    self.closed_policy.opened(session, incident, sought)
                opened[incident.incident_id] = (incident, [], [])
                result.opened.append(incident.incident_id)
            else:
                self._fold(incident, f)
                if incident.incident_id not in opened and incident.incident_id not in result.updated:
                    result.updated.append(incident.incident_id)
            for other in matches[1:]:
                self._relate(session, incident, other, f)
            row = self._finding_row(f, incident)
            session.add(row)
            self._add_keys(session, fid, keys, stored_keys)
            known[fid] = incident.incident_id
            evidence = self._add_evidence(session, incident, fid, f.events)
            if incident.incident_id in opened:
                opened[incident.incident_id][1].append(row)
                opened[incident.incident_id][2].extend(evidence)
            else:
                touched.setdefault(incident.incident_id, _Touched(incident)).findings.append(fid)
            entry = stored.setdefault(incident.incident_id, (incident, [], []))
            entry[1].append(row)
            entry[2].extend(evidence)
            result.new_findings += 1
        session.flush()
        if self.closed_policy is not None:
            for incident, rows, until in suppressed.values():
                self.closed_policy.suppressed(session, incident, rows, until)
        for incident, rows, evidence in opened.values():
            for hook in self.on_new_incident:
                hook(session, incident, rows, evidence, tenants)
        for incident, rows, evidence in stored.values():
            for hook in self.on_incident_stored:
                hook(session, incident, rows, evidence, tenants)
        self._tell_changes(session, opened, touched)

    def _tell_changes(
        self,
        session: Session,
        opened: Mapping[str, tuple[IncidentRow, list[FindingRow], list[EvidenceRow]]],
        touched: Mapping[str, _Touched],
    ) -> None:
        """One ``Change`` per incident the batch opened, reopened or added findings to. Keys
        come from what the batch held, so a batch stored again (which changes nothing) could
        only repeat changes the outbox already has."""
        if not self.on_change:
            return
        now = utcnow()
        for incident_id, (incident, rows, _) in opened.items():
            key = "opened"
            changed(
                session,
                incident,
                Change(incident_id, "opened", SYSTEM, now, key, f"{len(rows)} finding(s)", None, incident.status),
                self.on_change,
            )
        for incident_id, touch in touched.items():
            ids = sorted(touch.findings)
            digest = stable_id("findings", *ids) if ids else ""
            if touch.reopened_from is not None:
                action, key = "reopen", f"reopen:{digest or stable_id('evidence', now.isoformat())}"
                why = "new evidence on a closed incident"
            else:
                action, key = "updated", f"findings:{digest}"
                why = f"{len(ids)} new finding(s)"
            changed(
                session,
                touch.incident,
                Change(incident_id, action, SYSTEM, now, key, why, touch.reopened_from, touch.incident.status),
                self.on_change,
            )

    @staticmethod
    def _finding_row(f: Finding, incident: IncidentRow, *, suppressed: bool = False) -> FindingRow:
        return FindingRow(
            finding_id=f.finding_id,
            incident_id=incident.incident_id,
            detected_at=detected_time(f),
            detector=f.detector,
            kind=f.kind,
            severity=f.severity,
            score=f.score,
            ts=f.ts,
            title=f.title,
            reasons=list(f.reasons),
            playbook=f.playbook,
            actor_id=f.actor_id,
            facts=f.facts,
            suppressed=suppressed,
        )

    @staticmethod
    def _add_keys(session: Session, finding_id: str, keys: Sequence[str], stored: set[tuple[str, str]]) -> None:
        """Store the finding's correlation keys it does not have yet (call after adding its row)."""
        for key in keys:
            if (finding_id, key) not in stored:
                stored.add((finding_id, key))
                session.add(CorrelationKeyRow(key=key, finding_id=finding_id))

    def _match(self, session: Session, f: Finding, sought: Sequence[str]) -> tuple[list[IncidentRow], str | None]:
        """The open incidents holding a finding stored under any of ``sought`` (the keys ``f``
        correlates on) inside the window, earliest opened first (the one it joins); else the
        closed incident it reopens, if any (the closed policy looks by the same keys), and
        then the status it had."""
        if not sought:
            return [], None
        lo, hi = f.ts - self.window, f.ts + self.window
        stmt = (
            select(IncidentRow)
            .where(IncidentRow.incident_id.in_(incidents_holding(sought)))
            .where(IncidentRow.status.not_in(CLOSED_STATUSES))
            .where(IncidentRow.updated_at >= lo)
            .where(IncidentRow.opened_at <= hi)
            .order_by(IncidentRow.opened_at, IncidentRow.incident_id)
            .limit(MAX_RELATED + 1)
        )
        # autoflush makes incidents opened earlier in this batch visible to the query.
        found = list(session.scalars(stmt))
        if found or self.closed_policy is None:
            return found, None
        reopened = self.closed_policy.match(session, sought, f.ts)
        # Only a resolved incident is reopened (a false positive stays closed).
        return ([reopened], "resolved") if reopened is not None else ([], None)

    @staticmethod
    def _relate(session: Session, joined: IncidentRow, other: IncidentRow, f: Finding) -> None:
        """Link two open incidents that one finding correlates with (it joined the earlier):
        they may be one attack, stored as two because their findings arrived before the one
        that ties them. Merging stays a person's call (the console's merge)."""
        a, b = joined.incident_id, other.incident_id
        if session.get(IncidentLinkRow, (b, a, "correlated")) is not None:
            return
        now = utcnow()
        if not link(session, a, b, "correlated", SYSTEM, at=now):
            return
        what = f.kind.replace("_", " ")
        for incident, peer in ((joined, b), (other, a)):
            note(
                session,
                incident,
                SYSTEM,
                "correlated",
                f"a {what} finding ties this incident to {peer}; it joined {a}, the earlier. "
                "Merge them if they are one attack.",
                at=now,
                detail={"incident": peer, "finding": f.finding_id},
                audit_at_commit=True,
            )

    def _open(self, session: Session, f: Finding) -> IncidentRow:
        nets = network_keys(f.source_ips[:1])
        group_key = (
            f"actor:{f.actor_id}"
            if f.actor_id
            else (nets[0] if nets else f"ip:{f.source_ips[0]}" if f.source_ips else f"finding:{f.finding_id}")
        )
        incident = IncidentRow(
            incident_id=stable_id("incident", group_key, f.finding_id),
            kind=f.kind,
            title=f.title,
            severity=f.severity,
            score=round(f.score, 1),
            status="open",
            opened_at=f.ts,
            updated_at=max(e.ts for e in f.events) if f.events else f.ts,
            detected_at=detected_time(f),
            actor_ids=[f.actor_id] if f.actor_id else [],
            tenant_ids=list(f.tenant_ids),
            source_ips=list(f.source_ips),
            detectors=[f.detector],
            reasons=list(f.reasons)[:MAX_REASONS],
            evidence_count=0,
            group_key=group_key,
            facts=dict(f.facts),
        )
        session.add(incident)
        session.flush()  # no ORM relationship orders the inserts, so write the parent first
        return incident

    def _fold(self, incident: IncidentRow, f: Finding) -> None:
        """Fold a finding into an incident: severity and score only ever rise; the earliest
        finding names the incident, whichever order findings arrive in."""
        if f.ts < incident.opened_at:
            incident.kind, incident.title = f.kind, f.title
        if SEVERITY_RANK[f.severity] > SEVERITY_RANK[incident.severity]:
            incident.severity = f.severity
        incident.score = round(max(incident.score, f.score), 1)
        incident.opened_at = min(incident.opened_at, f.ts)
        when = detected_time(f)
        incident.detected_at = when if incident.detected_at is None else min(incident.detected_at, when)
        last = max(e.ts for e in f.events) if f.events else f.ts
        incident.updated_at = max(incident.updated_at, last)
        incident.actor_ids = _merge(incident.actor_ids, [f.actor_id] if f.actor_id else [])
        incident.tenant_ids = _merge(incident.tenant_ids, f.tenant_ids)
        incident.source_ips = _merge(incident.source_ips, f.source_ips)
        incident.detectors = _merge(incident.detectors, [f.detector])
        incident.reasons = _merge(incident.reasons, f.reasons, cap=MAX_REASONS)
        if f.facts:
            incident.facts = {**incident.facts, **f.facts}

    def _add_evidence(
        self, session: Session, incident: IncidentRow, finding_id: str, events: Sequence[Event]
    ) -> list[EvidenceRow]:
        room = MAX_EVIDENCE - incident.evidence_count
        if room <= 0 or not events:
            return []
        ids = [e.event_id for e in events]
        have = set(
            session.scalars(
                select(EvidenceRow.event_id).where(
                    EvidenceRow.incident_id == incident.incident_id, EvidenceRow.event_id.in_(ids)
                )
            )
        )
        rows = []
        for e in events:
            if len(rows) >= room:
                break
            if e.event_id in have:
                continue
            have.add(e.event_id)
            rows.append(
                EvidenceRow(
                    incident_id=incident.incident_id,
                    event_id=e.event_id,
                    finding_id=finding_id,
                    topic=TOPIC_OF.get(type(e), "?"),
                    ts=e.ts,
                    event_json=e.model_dump_json(exclude_none=True),
                )
            )
        session.add_all(rows)
        incident.evidence_count += len(rows)
        return rows

    # --- reading ------------------------------------------------------------------------

    def judgements_after(self, seq: int, limit: int = 1000) -> list[Judgement]:
        """Verdicts given after ``seq`` (the incident timeline's order): each false positive,
        and each reopening that withdrew one, per actor of the incident, with the kinds of its
        findings, its window of event time and its score."""
        with Session(self.engine) as session:
            rows = session.execute(
                select(IncidentEventRow, IncidentRow)
                .join(IncidentRow, IncidentRow.incident_id == IncidentEventRow.incident_id)
                .where(IncidentEventRow.id > seq)
                .where(
                    (IncidentEventRow.to_status == "false_positive")
                    | ((IncidentEventRow.from_status == "false_positive") & (IncidentEventRow.action == "reopen"))
                )
                .order_by(IncidentEventRow.id)
                .limit(limit)
            ).all()
            out: list[Judgement] = []
            for event, incident in rows:
                kinds = tuple(
                    session.scalars(
                        select(FindingRow.kind).where(FindingRow.incident_id == incident.incident_id).distinct()
                    )
                )
                for actor in incident.actor_ids:
                    out.append(
                        Judgement(
                            seq=event.id,
                            actor_id=actor,
                            kinds=tuple(sorted({incident.kind, *kinds})),
                            start=incident.opened_at,
                            end=incident.updated_at,
                            score=incident.score,
                            false_positive=event.to_status == "false_positive",
                        )
                    )
            return out

    def incidents(self) -> list[IncidentOut]:
        """Every incident in opening order, in the public JSON shape."""
        with Session(self.engine) as session:
            rows = session.scalars(select(IncidentRow).order_by(IncidentRow.opened_at, IncidentRow.incident_id)).all()
            return [self.to_out(session, r) for r in rows]

    @staticmethod
    def to_out(session: Session, r: IncidentRow) -> IncidentOut:
        ev = session.scalars(
            select(EvidenceRow.event_id)
            .where(EvidenceRow.incident_id == r.incident_id)
            .order_by(EvidenceRow.ts, EvidenceRow.event_id)
            .limit(MAX_EVIDENCE)
        ).all()
        # Each kind once, in the order the incident first met it (PostgreSQL orders DISTINCT
        # rows only by what they select, hence the grouping).
        kinds = session.scalars(
            select(FindingRow.kind)
            .where(FindingRow.incident_id == r.incident_id)
            .group_by(FindingRow.kind)
            .order_by(func.min(FindingRow.ts), FindingRow.kind)
        ).all()
        return IncidentOut(
            incident_id=r.incident_id,
            opened_at=r.opened_at,
            updated_at=r.updated_at,
            detected_at=r.detected_at,
            severity=r.severity,  # type: ignore[arg-type]
            kind=r.kind,
            title=r.title,
            actor_ids=r.actor_ids,
            tenant_ids=r.tenant_ids,
            source_ips=r.source_ips,
            detectors=r.detectors,
            score=r.score,
            evidence_event_ids=list(ev),
            status=r.status,  # type: ignore[arg-type]
            reasons=r.reasons,
            attack=[AttackTechnique(**t.as_dict()) for t in techniques_of([r.kind, *kinds])],
        )
