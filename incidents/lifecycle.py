"""What people do to incidents: acknowledge, investigate, contain, resolve, mark false
positive, reopen, merge, split and confirm a breach, with who, when and why for each.

Every change writes a timeline entry (``incident_events``) and an audit row in the same
transaction as the change itself, so neither can exist without the other. The closed-incident
policy decides what new evidence does to a closed incident: reopen it, open a new one that
links back to it, or (for a fresh false-positive judgement) take the finding in without paging.
Outside systems follow the changes through ``on_change`` hooks (``Change``), called in the
same transaction; the composition root passes the notifier's, which queues them in the outbox.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ForeignKey, Integer, String, Text, delete, func, or_, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from breachwatch.core.clock import utcnow
from breachwatch.core.findings import MAX_EVIDENCE, SEVERITY_RANK, Finding
from breachwatch.core.ids import network_prefix, stable_id, unique
from breachwatch.incidents.model import CLOSED_STATUSES, STATUSES
from breachwatch.incidents.tables import CorrelationKeyRow, EvidenceRow, FindingRow, IncidentRow, incidents_holding
from breachwatch.storage import audit
from breachwatch.storage.db import Base, aggregate_time

log = logging.getLogger(__name__)

MAX_REASON = 2000
MAX_REASONS = 40

# action -> (status it leads to, statuses it may start from)
TRANSITIONS: dict[str, tuple[str, frozenset[str]]] = {
    "acknowledge": ("acknowledged", frozenset({"open"})),
    "investigate": ("investigating", frozenset({"open", "acknowledged"})),
    "contain": ("contained", frozenset({"open", "acknowledged", "investigating"})),
    "resolve": ("resolved", frozenset({"open", "acknowledged", "investigating", "contained"})),
    "false_positive": ("false_positive", frozenset({"open", "acknowledged", "investigating", "contained"})),
    "reopen": ("open", frozenset(CLOSED_STATUSES)),
}
ACTIONS: tuple[str, ...] = tuple(TRANSITIONS)
# Taking a page needs no explanation; every other change does.
DEFAULT_REASONS: dict[str, str] = {"acknowledge": "page acknowledged"}
SYSTEM = audit.SYSTEM_ACTOR


class LifecycleError(ValueError):
    """A change that is not allowed (wrong state, missing reason, bad arguments)."""


class IncidentNotFound(LookupError):
    """No incident with that id."""


class IncidentEventRow(Base):
    """One entry of an incident's timeline: a status change, merge, split, link or note."""

    __tablename__ = "incident_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.incident_id"), index=True)
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(32))
    from_status: Mapped[str | None] = mapped_column(String(32), nullable=True)
    to_status: Mapped[str | None] = mapped_column(String(32), nullable=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


class IncidentLinkRow(Base):
    """A relation between two incidents: ``follows`` (opened after a closed one),
    ``merged_into`` and ``split_from``."""

    __tablename__ = "incident_links"

    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.incident_id"), primary_key=True)
    related_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200))


class BreachRow(Base):
    """The moment the vendor became aware of a breach (the start of regulatory clocks)."""

    __tablename__ = "incident_breach"

    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.incident_id"), primary_key=True)
    confirmed_by: Mapped[str] = mapped_column(String(200))
    confirmed_at: Mapped[datetime]
    reason: Mapped[str] = mapped_column(Text)
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)


@dataclass(frozen=True, slots=True)
class Change:
    """One change of an incident that outside systems follow (tickets, pagers, the OCSF topic).

    ``action`` is a timeline action (``acknowledge``, ``resolve``, ``merged_into``...) or
    ``opened`` / ``updated`` (new findings joined) from the incident store; ``key`` tells
    this change from every other of the incident, the same when a batch is stored again."""

    incident_id: str
    action: str
    actor: str
    at: datetime
    key: str
    reason: str = ""
    from_status: str | None = None
    to_status: str | None = None


# Called in the change's transaction, after it: (session, the incident as changed, the change).
ChangeHook = Callable[[Session, IncidentRow, Change], Any]


def changed(session: Session, incident: IncidentRow, change: Change, hooks: Sequence[ChangeHook]) -> None:
    """Hand one change to every hook (each queues what it needs in the same transaction)."""
    for hook in hooks:
        hook(session, incident, change)


def _event_change(incident: IncidentRow, event: IncidentEventRow) -> Change:
    return Change(
        incident_id=incident.incident_id,
        action=event.action,
        actor=event.actor,
        at=event.at,
        key=f"event:{event.id}",
        reason=event.reason,
        from_status=event.from_status,
        to_status=event.to_status if event.to_status is not None else incident.status,
    )


# --- helpers ---------------------------------------------------------------------------------


def _reason(action: str, reason: str | None) -> str:
    text = (reason or "").strip() or DEFAULT_REASONS.get(action, "")
    if not text:
        raise LifecycleError(f"{action.replace('_', ' ')} needs a reason")
    if len(text) > MAX_REASON:
        raise LifecycleError(f"a reason may have at most {MAX_REASON} characters")
    return text


def _lock(session: Session, incident_id: str) -> IncidentRow:
    row = session.get(IncidentRow, incident_id, with_for_update=True, populate_existing=True)
    if row is None:
        raise IncidentNotFound(incident_id)
    return row


def subject(incident_id: str) -> str:
    return f"incident:{incident_id}"


def note(
    session: Session,
    incident: IncidentRow,
    actor: str,
    action: str,
    reason: str = "",
    *,
    at: datetime,
    from_status: str | None = None,
    to_status: str | None = None,
    detail: dict[str, Any] | None = None,
    audit_at_commit: bool = False,
) -> IncidentEventRow:
    """Add a timeline entry and its audit row (appended at commit when ``audit_at_commit``,
    for callers inside the incident store's batch, which must take the audit lock last)."""
    event = IncidentEventRow(
        incident_id=incident.incident_id,
        at=at,
        actor=actor[:200],
        action=action,
        from_status=from_status,
        to_status=to_status,
        reason=reason,
        detail=detail or {},
    )
    session.add(event)
    append = audit.record_at_commit if audit_at_commit else audit.record
    append(
        session,
        actor,
        f"incident.{action}",
        subject(incident.incident_id),
        {"from": from_status, "to": to_status, "reason": reason, **(detail or {})},
        at=at,
    )
    return event


# --- status changes --------------------------------------------------------------------------


def transition(
    session: Session,
    incident_id: str,
    action: str,
    actor: str,
    reason: str | None = None,
    *,
    at: datetime | None = None,
    on_change: Sequence[ChangeHook] = (),
) -> IncidentRow:
    """Apply one lifecycle action in the caller's transaction; raises ``LifecycleError`` if
    the incident's status does not allow it, ``IncidentNotFound`` if there is no such incident.
    The ``on_change`` hooks then see the change, in the same transaction."""
    if action not in TRANSITIONS:
        raise LifecycleError(f"unknown action {action[:40]!r}")
    why = _reason(action, reason)
    at = at or utcnow()
    audit.serialize_writes(session)
    incident = _lock(session, incident_id)
    target, allowed = TRANSITIONS[action]
    if incident.status not in allowed:
        raise LifecycleError(
            f"cannot {action.replace('_', ' ')} an incident that is {incident.status.replace('_', ' ')}"
        )
    before = incident.status
    incident.status = target
    event = note(session, incident, actor, action, why, at=at, from_status=before, to_status=target)
    session.flush()
    changed(session, incident, _event_change(incident, event), on_change)
    return incident


def history(session: Session, incident_id: str) -> list[IncidentEventRow]:
    """The incident's timeline entries, oldest first."""
    return list(
        session.scalars(
            select(IncidentEventRow)
            .where(IncidentEventRow.incident_id == incident_id)
            .order_by(IncidentEventRow.at, IncidentEventRow.id)
        )
    )


def handled_by(session: Session, incident_id: str) -> tuple[str, datetime] | None:
    """Who took the incident (the last acknowledge or investigate), and when."""
    row = session.execute(
        select(IncidentEventRow.actor, IncidentEventRow.at)
        .where(
            IncidentEventRow.incident_id == incident_id,
            IncidentEventRow.action.in_(("acknowledge", "investigate", "contain")),
        )
        .order_by(IncidentEventRow.at.desc(), IncidentEventRow.id.desc())
        .limit(1)
    ).first()
    return (row.actor, row.at) if row else None


def links(session: Session, incident_id: str) -> list[IncidentLinkRow]:
    """Links from or to an incident."""
    return list(
        session.scalars(
            select(IncidentLinkRow)
            .where(or_(IncidentLinkRow.incident_id == incident_id, IncidentLinkRow.related_id == incident_id))
            .order_by(IncidentLinkRow.created_at)
        )
    )


def link(session: Session, incident_id: str, related_id: str, kind: str, actor: str, *, at: datetime) -> bool:
    """Record a link once; returns False if it was already there."""
    if session.get(IncidentLinkRow, (incident_id, related_id, kind)) is not None:
        return False
    session.add(
        IncidentLinkRow(incident_id=incident_id, related_id=related_id, kind=kind, created_at=at, created_by=actor)
    )
    return True


def related_by_address(
    session: Session, incident: IncidentRow, *, within: timedelta = timedelta(days=7), limit: int = 20
) -> list[IncidentRow]:
    """Other incidents that share an attacking address with this one, near it in time."""
    ips = set(incident.source_ips or [])
    if not ips:
        return []
    candidates = session.scalars(
        select(IncidentRow)
        .where(
            IncidentRow.incident_id != incident.incident_id,
            IncidentRow.opened_at <= incident.updated_at + within,
            IncidentRow.updated_at >= incident.opened_at - within,
        )
        .order_by(IncidentRow.opened_at)
        .limit(5000)
    )
    return [c for c in candidates if ips & set(c.source_ips or [])][:limit]


# --- breach ------------------------------------------------------------------------------------


# Called in the confirmation's transaction: (session, incident id, who confirmed, when). The
# composition root passes the notifier's (drafting the customer notices); no hook, no notices.
BreachHook = Callable[[Session, str, str, datetime], Any]


def confirm_breach(
    session: Session,
    incident_id: str,
    actor: str,
    reason: str,
    at: datetime | None = None,
    *,
    on_confirmed: Sequence[BreachHook] = (),
    on_change: Sequence[ChangeHook] = (),
) -> BreachRow:
    """Record that ``actor`` became aware of a breach at ``at`` (now by default), then run the
    ``on_confirmed`` hooks in the same transaction (the customer notices start there).

    A false positive cannot be a breach, and a breach is confirmed once: confirming again
    raises ``LifecycleError`` rather than moving the awareness time regulators measure from.
    """
    why = _reason("confirm_breach", reason)
    at = at or utcnow()
    audit.serialize_writes(session)
    incident = _lock(session, incident_id)
    if incident.status == "false_positive":
        raise LifecycleError("a false positive cannot be confirmed as a breach; reopen it first")
    existing = session.get(BreachRow, incident_id)
    if existing is not None:
        raise LifecycleError(
            f"breach already confirmed by {existing.confirmed_by} at {existing.confirmed_at:%Y-%m-%d %H:%M} UTC"
        )
    row = BreachRow(
        incident_id=incident_id, confirmed_by=actor[:200], confirmed_at=at, reason=why, recorded_at=utcnow()
    )
    session.add(row)
    event = note(session, incident, actor, "confirm_breach", why, at=at, detail={"confirmed_at": at.isoformat()})
    session.flush()
    if not on_confirmed:
        log.info("breach on %s confirmed; no notice hook is wired, no customer notices started", incident_id)
    for hook in on_confirmed:
        hook(session, incident_id, actor, at)
    changed(session, incident, _event_change(incident, event), on_change)
    return row


def breach(session: Session, incident_id: str) -> BreachRow | None:
    return session.get(BreachRow, incident_id)


# --- merge and split -----------------------------------------------------------------------------


def _event_fields(row: EvidenceRow) -> dict[str, Any]:
    try:
        doc = json.loads(row.event_json)
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def recompute(session: Session, incident: IncidentRow) -> None:
    """Derive an incident's summary (severity, score, actors, tenants, addresses, reasons,
    times, counts) from the findings and evidence it now holds."""
    findings = list(
        session.scalars(
            select(FindingRow)
            .where(FindingRow.incident_id == incident.incident_id)
            .order_by(FindingRow.ts, FindingRow.finding_id)
        )
    )
    evidence = list(
        session.scalars(
            select(EvidenceRow)
            .where(EvidenceRow.incident_id == incident.incident_id)
            .order_by(EvidenceRow.ts, EvidenceRow.event_id)
        )
    )
    if not findings:
        return
    first = findings[0]
    docs = [_event_fields(e) for e in evidence]
    incident.kind, incident.title = first.kind, first.title
    incident.severity = max((f.severity for f in findings), key=lambda s: SEVERITY_RANK.get(s, 0))
    incident.score = round(max(f.score for f in findings), 1)
    incident.opened_at = min(f.ts for f in findings)
    incident.updated_at = max([f.ts for f in findings] + [e.ts for e in evidence])
    incident.detected_at = min(f.detected_at or f.ts for f in findings)
    incident.actor_ids = list(unique(f.actor_id for f in findings))
    tenants = unique(
        (d.get("tenant_id") if e.topic.endswith("access") else d.get("actor_tenant") or d.get("tenant_id"))
        for e, d in zip(evidence, docs, strict=True)
    )
    incident.tenant_ids = [str(t) for t in tenants]
    incident.source_ips = [str(ip) for ip in unique(d.get("ip") for d in docs)]
    incident.detectors = list(unique(f.detector for f in findings))
    incident.reasons = list(unique(r for f in findings for r in f.reasons))[:MAX_REASONS]
    incident.evidence_count = len(evidence)
    facts: dict[str, Any] = {}
    for f in findings:
        facts.update(f.facts or {})
    incident.facts = facts


def merge(
    session: Session,
    target_id: str,
    source_ids: Sequence[str],
    actor: str,
    reason: str,
    *,
    at: datetime | None = None,
    on_change: Sequence[ChangeHook] = (),
) -> IncidentRow:
    """Fold ``source_ids`` into ``target_id``: their findings and evidence move over, each
    source is closed as resolved with a ``merged_into`` link, and the target is re-derived."""
    why = _reason("merge", reason)
    at = at or utcnow()
    sources = list(dict.fromkeys(s for s in source_ids if s))
    if not sources:
        raise LifecycleError("name at least one incident to merge in")
    if target_id in sources:
        raise LifecycleError("an incident cannot be merged into itself")
    audit.serialize_writes(session)
    # Lock in id order, whatever order the request named them in, so two merges cannot deadlock.
    locked = {i: _lock(session, i) for i in sorted([target_id, *sources])}
    target = locked[target_id]
    closed: list[tuple[IncidentRow, IncidentEventRow]] = []
    for sid in sources:
        source = locked[sid]
        have = set(session.scalars(select(EvidenceRow.event_id).where(EvidenceRow.incident_id == target_id)))
        moving = list(session.scalars(select(EvidenceRow).where(EvidenceRow.incident_id == sid)))
        room = MAX_EVIDENCE - len(have)
        for ev in moving:
            if ev.event_id not in have and room > 0:
                session.add(
                    EvidenceRow(
                        incident_id=target_id,
                        event_id=ev.event_id,
                        finding_id=ev.finding_id,
                        topic=ev.topic,
                        ts=ev.ts,
                        event_json=ev.event_json,
                    )
                )
                have.add(ev.event_id)
                room -= 1
        session.execute(delete(EvidenceRow).where(EvidenceRow.incident_id == sid))
        moved = session.execute(
            update(FindingRow)
            .where(FindingRow.incident_id == sid)
            .values(incident_id=target_id)
            .execution_options(synchronize_session=False)
        ).rowcount
        before = source.status
        source.status = "resolved"
        source.evidence_count = 0
        link(session, sid, target_id, "merged_into", actor, at=at)
        closing = note(
            session,
            source,
            actor,
            "merged_into",
            why,
            at=at,
            from_status=before,
            to_status="resolved",
            detail={"target": target_id, "findings": int(moved or 0)},
        )
        closed.append((source, closing))
    session.flush()
    for source, closing in closed:
        changed(session, source, _event_change(source, closing), on_change)
    session.flush()
    session.expire_all()
    target = _lock(session, target_id)
    recompute(session, target)
    event = note(session, target, actor, "merge", why, at=at, detail={"merged": sources})
    session.flush()
    changed(session, target, _event_change(target, event), on_change)
    return target


def split(
    session: Session,
    incident_id: str,
    finding_ids: Sequence[str],
    actor: str,
    reason: str,
    *,
    at: datetime | None = None,
    on_change: Sequence[ChangeHook] = (),
) -> IncidentRow:
    """Move the named findings (and the evidence they brought) out into a new incident that
    keeps the original's status and links back to it; both are re-derived. Returns the new one."""
    why = _reason("split", reason)
    at = at or utcnow()
    wanted = sorted(set(f for f in finding_ids if f))
    audit.serialize_writes(session)
    original = _lock(session, incident_id)
    held = set(session.scalars(select(FindingRow.finding_id).where(FindingRow.incident_id == incident_id)))
    if not wanted:
        raise LifecycleError("name the findings to split off")
    if not set(wanted) <= held:
        raise LifecycleError("only findings of this incident can be split off")
    if set(wanted) == held:
        raise LifecycleError("at least one finding must stay with the original incident")
    new_id = stable_id("split", incident_id, *wanted)
    if session.get(IncidentRow, new_id) is not None:
        raise LifecycleError("these findings were already split off once")
    moving = list(session.scalars(select(FindingRow).where(FindingRow.finding_id.in_(wanted))))
    first = min(moving, key=lambda f: (f.ts, f.finding_id))
    actors = list(unique(f.actor_id for f in moving))
    new = IncidentRow(
        incident_id=new_id,
        kind=first.kind,
        title=first.title,
        severity=first.severity,
        score=first.score,
        status=original.status,
        opened_at=first.ts,
        updated_at=first.ts,
        detected_at=min(f.detected_at or f.ts for f in moving),
        actor_ids=actors,
        tenant_ids=[],
        source_ips=[],
        detectors=[],
        reasons=[],
        evidence_count=0,
        group_key=f"actor:{actors[0]}" if len(actors) == 1 else f"split:{new_id}",
        facts={},
    )
    session.add(new)
    session.flush()
    session.execute(
        update(FindingRow)
        .where(FindingRow.finding_id.in_(wanted))
        .values(incident_id=new_id)
        .execution_options(synchronize_session=False)
    )
    for ev in list(
        session.scalars(
            select(EvidenceRow).where(EvidenceRow.incident_id == incident_id, EvidenceRow.finding_id.in_(wanted))
        )
    ):
        session.add(
            EvidenceRow(
                incident_id=new_id,
                event_id=ev.event_id,
                finding_id=ev.finding_id,
                topic=ev.topic,
                ts=ev.ts,
                event_json=ev.event_json,
            )
        )
        session.delete(ev)
    session.flush()
    session.expire_all()
    original = _lock(session, incident_id)
    new = _lock(session, new_id)
    recompute(session, original)
    recompute(session, new)
    link(session, new_id, incident_id, "split_from", actor, at=at)
    left = note(session, original, actor, "split", why, at=at, detail={"new_incident": new_id, "findings": wanted})
    made = note(
        session,
        new,
        actor,
        "split_from",
        why,
        at=at,
        to_status=new.status,
        detail={"original": incident_id, "findings": wanted},
    )
    session.flush()
    changed(session, original, _event_change(original, left), on_change)
    changed(session, new, _event_change(new, made), on_change)
    return new


# --- new evidence on closed incidents ----------------------------------------------------------


def pattern_keys(actor_id: str | None, source_ips: Iterable[str]) -> list[str]:
    """Whose pattern a finding is, for false-positive suppression: its actor, or, for a finding
    about an attacking address with no single actor, that address and its network."""
    if actor_id:
        return [f"actor:{actor_id}"]
    ips = [ip for ip in source_ips if ip]
    # Address-centric incidents are keyed on the attacking network (see the incident store).
    return [f"ip:{ip}" for ip in ips] + [f"net:{n}" for ip in ips if (n := network_prefix(ip))]


@dataclass(frozen=True, slots=True)
class Suppression:
    """A finding's place under a false-positive judgement: the incident marked false positive
    that takes it in, when it was marked, and the event time until which it suppresses."""

    incident_id: str
    marked_at: datetime
    until: datetime


@dataclass(frozen=True, slots=True)
class SuppressionState:
    """What an incident's false-positive judgement does now, for the console: when it was
    marked, until when (event time) it suppresses, and how many findings it took in."""

    marked_at: datetime | None
    until: datetime | None  # None: not a false positive now, or suppression is turned off
    suppressed_findings: int


def false_positive_marks(session: Session, incident_ids: Iterable[str]) -> dict[str, datetime]:
    """When each incident was last marked false positive by a person (the judgement's time)."""
    ids = sorted(set(incident_ids))
    if not ids:
        return {}
    rows = session.execute(
        select(IncidentEventRow.incident_id, func.max(IncidentEventRow.at))
        .where(IncidentEventRow.incident_id.in_(ids), IncidentEventRow.action == "false_positive")
        .group_by(IncidentEventRow.incident_id)
    ).all()
    return {incident_id: aggregate_time(at) for incident_id, at in rows}


def suppression_state(session: Session, incident: IncidentRow, span: timedelta) -> SuppressionState:
    """The incident's false-positive suppression, given the configured ``span`` (0: off)."""
    count = session.scalar(
        select(func.count())
        .select_from(FindingRow)
        .where(FindingRow.incident_id == incident.incident_id, FindingRow.suppressed.is_(True))
    )
    marked = false_positive_marks(session, [incident.incident_id]).get(incident.incident_id)
    active = incident.status == "false_positive" and marked is not None and span > timedelta(0)
    return SuppressionState(
        marked_at=marked if incident.status == "false_positive" else None,
        until=marked + span if active and marked is not None else None,
        suppressed_findings=int(count or 0),
    )


@dataclass(frozen=True, slots=True)
class ClosedIncidentPolicy:
    """What new evidence does to a closed incident of the same actor or address.

    An incident resolved less than ``reopen_within`` ago is reopened (the threat came back);
    a false positive, or one resolved longer ago, stays closed and the evidence opens a new
    incident that links back to it (``follows``), so the earlier judgement stays on record.
    A finding of the same actor (or, with no actor, the same attacking address) and the same
    kind as a finding of an incident marked false positive, with event time less than
    ``suppress_false_positives`` after the judgement, opens nothing and pages no one: the
    store attaches it to that incident, marked suppressed (``suppressing``, ``suppressed``).
    The incident store calls ``match`` when no open incident matches a finding, ``opened``
    after it opens one, and ``evidence_added`` when a known finding adds evidence to a closed one.
    """

    reopen_within: timedelta = timedelta(days=7)
    lookback: timedelta = timedelta(days=90)
    # Event time, not the wall clock, so ``replay`` decides as ``run`` did; zero turns it off.
    suppress_false_positives: timedelta = timedelta(days=14)

    def suppressing(self, session: Session, findings: Sequence[Finding]) -> dict[str, Suppression]:
        """Per finding id, the false-positive judgement it falls under (findings not named
        open or join incidents as usual).

        Reads only the database (incidents marked false positive, their findings and the
        times they were marked) and the findings' event times, in the caller's transaction,
        so the answer does not depend on when or in which batches the findings are stored.
        """
        if self.suppress_false_positives <= timedelta(0) or not findings:
            return {}
        actors = sorted({f.actor_id for f in findings if f.actor_id})
        addresses = sorted({k for f in findings if not f.actor_id for k in pattern_keys(None, f.source_ips)})
        kinds = sorted({f.kind for f in findings})
        # Each look-up starts from an index on what the batch names (findings by actor, or
        # correlation keys by network, then incidents by id) and statuses are checked here: a
        # planner without statistics would otherwise start from every false positive ever recorded.
        pairs: list[tuple[str, str, str]] = []  # (incident, pattern key, kind)
        if actors:
            pairs += [
                (iid, f"actor:{actor}", kind)
                for iid, actor, kind in session.execute(
                    select(FindingRow.incident_id, FindingRow.actor_id, FindingRow.kind)
                    .where(FindingRow.actor_id.in_(actors), FindingRow.kind.in_(kinds))
                    .distinct()
                ).all()
            ]
        if addresses:
            # Findings with no actor, by the attacking networks they are stored under.
            pairs += [
                (iid, key, kind)
                for iid, key, kind in session.execute(
                    select(FindingRow.incident_id, CorrelationKeyRow.key, FindingRow.kind)
                    .join(CorrelationKeyRow, CorrelationKeyRow.finding_id == FindingRow.finding_id)
                    .where(
                        CorrelationKeyRow.key.in_(addresses),
                        FindingRow.actor_id.is_(None),
                        FindingRow.kind.in_(kinds),
                    )
                    .distinct()
                ).all()
            ]
        candidates = sorted({iid for iid, _, _ in pairs})
        if not candidates:
            return {}
        false_positives = {
            iid
            for iid, status in session.execute(
                select(IncidentRow.incident_id, IncidentRow.status).where(IncidentRow.incident_id.in_(candidates))
            ).all()
            if status == "false_positive"
        }
        judged: dict[tuple[str, str], set[str]] = {}
        for iid, key, kind in pairs:
            if iid in false_positives:
                judged.setdefault((key, kind), set()).add(iid)
        marks = false_positive_marks(session, {i for ids in judged.values() for i in ids})
        out: dict[str, Suppression] = {}
        for f in findings:
            best: tuple[datetime, str] | None = None
            for key in pattern_keys(f.actor_id, f.source_ips):
                for incident_id in judged.get((key, f.kind), ()):
                    marked = marks.get(incident_id)
                    # No recorded judgement (status set outside the lifecycle): nothing to count from.
                    if marked is None or f.ts >= marked + self.suppress_false_positives:
                        continue
                    if best is None or (marked, incident_id) > best:
                        best = (marked, incident_id)
            if best is not None:
                out[f.finding_id] = Suppression(best[1], best[0], best[0] + self.suppress_false_positives)
        return out

    def suppressed(
        self,
        session: Session,
        incident: IncidentRow,
        findings: Sequence[FindingRow],
        until: datetime,
        *,
        now: datetime | None = None,
    ) -> None:
        """Record on the false positive's timeline (and in the audit trail) the findings a batch
        attached to it instead of opening and paging a new incident."""
        if not findings:
            return
        now = now or utcnow()
        kinds = list(unique(f.kind for f in findings))
        n = len(findings)
        why = (
            f"{n} later finding{'s' if n != 1 else ''} of the same "
            f"{'actor' if any(f.actor_id for f in findings) else 'address'} and kind "
            f"({', '.join(k.replace('_', ' ') for k in kinds)}) joined this false positive instead of "
            f"opening a new incident; nobody was paged. Suppressed until {until:%Y-%m-%d %H:%M} UTC (event time)."
        )
        note(
            session,
            incident,
            SYSTEM,
            "suppressed_findings",
            why,
            at=now,
            detail={
                "findings": [f.finding_id for f in findings[:50]],
                "count": n,
                "kinds": kinds,
                "until": until.isoformat(),
            },
            audit_at_commit=True,
        )

    def _closed(self, session: Session, keys: Sequence[str], ts: datetime) -> list[IncidentRow]:
        if not keys:
            return []
        return list(
            session.scalars(
                select(IncidentRow)
                .where(
                    IncidentRow.incident_id.in_(incidents_holding(keys)),
                    IncidentRow.status.in_(sorted(CLOSED_STATUSES)),
                    IncidentRow.updated_at >= ts - self.lookback,
                    IncidentRow.opened_at <= ts,
                )
                .order_by(IncidentRow.updated_at.desc(), IncidentRow.incident_id)
                .limit(20)
            )
        )

    def _closed_at(self, session: Session, incident: IncidentRow) -> datetime:
        at = session.scalar(
            select(func.max(IncidentEventRow.at)).where(
                IncidentEventRow.incident_id == incident.incident_id,
                IncidentEventRow.to_status == incident.status,
            )
        )
        return at or incident.modified_at

    def _reopens(self, session: Session, incident: IncidentRow, now: datetime) -> bool:
        if incident.status != "resolved":
            return False
        merged = session.scalar(
            select(func.count())
            .select_from(IncidentLinkRow)
            .where(IncidentLinkRow.incident_id == incident.incident_id, IncidentLinkRow.kind == "merged_into")
        )
        if merged:
            return False  # an emptied merge source: its findings live on in the target
        return now - self._closed_at(session, incident) <= self.reopen_within

    def _reopen(self, session: Session, incident: IncidentRow, why: str, now: datetime) -> None:
        before = incident.status
        incident.status = "open"
        note(
            session, incident, SYSTEM, "reopen", why, at=now, from_status=before, to_status="open", audit_at_commit=True
        )

    def match(
        self, session: Session, keys: Sequence[str], ts: datetime, *, now: datetime | None = None
    ) -> IncidentRow | None:
        """The closed incident a new finding should join, reopened now; None to open a new one."""
        now = now or utcnow()
        for incident in self._closed(session, keys, ts):
            if self._reopens(session, incident, now):
                self._reopen(
                    session,
                    incident,
                    f"new evidence within {_days(self.reopen_within)} of resolution",
                    now,
                )
                return incident
            return None  # the latest closed one decides; it becomes a link when the new incident opens
        return None

    def opened(
        self, session: Session, incident: IncidentRow, keys: Sequence[str], *, now: datetime | None = None
    ) -> None:
        """Link a newly opened incident to the latest closed incident of the same actor or address."""
        now = now or utcnow()
        for closed in self._closed(session, keys, incident.opened_at):
            if closed.incident_id == incident.incident_id:
                continue
            if link(session, incident.incident_id, closed.incident_id, "follows", SYSTEM, at=now):
                why = (
                    "new evidence after the earlier incident was judged a false positive"
                    if closed.status == "false_positive"
                    else "new evidence after the earlier incident was resolved"
                )
                note(
                    session,
                    incident,
                    SYSTEM,
                    "follows",
                    why,
                    at=now,
                    detail={"earlier": closed.incident_id},
                    audit_at_commit=True,
                )
                note(
                    session,
                    closed,
                    SYSTEM,
                    "followed_by",
                    why,
                    at=now,
                    detail={"later": incident.incident_id},
                    audit_at_commit=True,
                )
            return

    def evidence_added(
        self, session: Session, incident: IncidentRow, count: int, *, now: datetime | None = None
    ) -> None:
        """A finding already on a closed incident brought ``count`` new events: reopen or note it."""
        if count <= 0 or incident.status not in CLOSED_STATUSES:
            return
        now = now or utcnow()
        if self._reopens(session, incident, now):
            self._reopen(
                session,
                incident,
                f"{count} new evidence event(s) within {_days(self.reopen_within)} of resolution",
                now,
            )
        else:
            note(
                session,
                incident,
                SYSTEM,
                "evidence_after_close",
                f"{count} new evidence event(s) arrived after the incident was closed",
                at=now,
                detail={"events": count},
                audit_at_commit=True,
            )


def _days(span: timedelta) -> str:
    days = span.total_seconds() / 86400
    return f"{days:g} day{'s' if days != 1 else ''}"


def check_status(status: str) -> str:
    if status not in STATUSES:
        raise LifecycleError(f"unknown status {status[:30]!r}")
    return status
