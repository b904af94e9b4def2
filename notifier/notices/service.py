"""The customer-notice workflow: confirm -> blast radius -> draft per tenant -> approve -> outbox.

``on_breach_confirmed`` records the breach's moments (detection, confirmation, awareness: each
duty's clock starts at its own anchor, see ``moments``), works out the blast radius and drafts
one notice per affected tenant in that tenant's language, with the duties that apply to it and
their deadlines (``obligations``). Nothing is sent until enough distinct approvers approve the
current version (``approval``); only then are its messages put in the outbox, one per recipient,
under ids made of the notice id, the version and the recipient, so approving twice or re-running
anything never queues a second copy. An approved version never changes; a correction (of the
blast radius or of the notice's own facts) is a new version, and what the outbox may send of a
version is decided at send time (``sending``).

Every function works inside the caller's session and transaction and never commits.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from breachwatch.core.clock import utcnow
from breachwatch.core.events import Tenant
from breachwatch.core.ids import stable_id
from breachwatch.core.settings import Settings
from breachwatch.incidents.tables import IncidentRow
from breachwatch.notifier import blast_radius as br
from breachwatch.notifier.duties import CategoryMap, RuleSet
from breachwatch.notifier.message import is_address
from breachwatch.notifier.notices import moments, obligations
from breachwatch.notifier.notices.config import NoticeConfig, load_notice_config
from breachwatch.notifier.notices.content import (
    CUSTOMER_NOTICE,
    FOLLOWUP,
    PHASES,
    REGULATOR_DRAFT,
    default_measures,
    notice_context,
    notice_renderer,
    rendering_locale,
)
from breachwatch.notifier.notices.directory import tenant_record
from breachwatch.notifier.notices.law_context import law_context, paused
from breachwatch.notifier.notices.models import (
    APPROVED,
    DRAFT,
    WITHDRAWN,
    BlastRadiusRow,
    NoticeApprovalRow,
    NoticeConfirmationRow,
    NoticeDeliveryRow,
    NoticeDutyRow,
    NoticeEventRow,
    NoticeReceiptRow,
    NoticeRenditionRow,
    NoticeRow,
    NoticeVersionRow,
)
from breachwatch.notifier.outbox import OutboxRow
from breachwatch.storage import audit

log = logging.getLogger(__name__)

SYSTEM = "breachwatch"
# CLDR's code for an unknown region: no regime covers it, so only the contractual duty applies.
UNKNOWN_JURISDICTION = "ZZ"
RECIPIENT_ROLES: tuple[str, ...] = ("dpo", "security", "owner")
FALLBACK_ROLES: tuple[str, ...] = ("admin",)
WARN_FRACTION = 0.5
DELIVERED_STATES = frozenset({"sent", "sending", "unknown"})  # the customer may have it


class NoticeError(Exception):
    """A notice operation that cannot be done as asked; the message says why."""


class NoticeNotFound(NoticeError, LookupError):
    """No such notice or incident."""


class ApprovalRefused(NoticeError):
    """The approval cannot be recorded (already approved, same approver twice, no recipients...)."""


# --- small helpers -----------------------------------------------------------------------------


def _audit(
    session: Session,
    *,
    incident_id: str,
    notice_id: str | None,
    actor: str,
    action: str,
    detail: Mapping[str, Any],
    at: datetime,
) -> None:
    session.add(
        NoticeEventRow(
            incident_id=incident_id, notice_id=notice_id, at=at, actor=actor, action=action, detail=dict(detail)
        )
    )
    subject = f"notice:{notice_id}" if notice_id else f"incident:{incident_id}"
    audit.record(session, actor, action, subject, dict(detail))


# The notice timeline and audit trail, for the modules that record decisions about a breach.
audit_event = _audit


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _notice(session: Session, notice_id: str) -> NoticeRow:
    notice = session.get(NoticeRow, notice_id)
    if notice is None:
        raise NoticeNotFound(f"no notice {notice_id!r}")
    return notice


def _version(session: Session, notice_id: str, version: int) -> NoticeVersionRow:
    row = session.get(NoticeVersionRow, (notice_id, version))
    if row is None:
        raise NoticeNotFound(f"notice {notice_id!r} has no version {version}")
    return row


def _latest_radius(session: Session, incident_id: str) -> tuple[int, br.BlastRadius] | None:
    row = session.scalars(
        select(BlastRadiusRow).where(BlastRadiusRow.incident_id == incident_id).order_by(BlastRadiusRow.version.desc())
    ).first()
    return None if row is None else (row.version, br.from_json(row.data))


def _radius_version(session: Session, incident_id: str, version: int) -> br.BlastRadius:
    row = session.get(BlastRadiusRow, (incident_id, version))
    if row is None:
        raise NoticeNotFound(f"incident {incident_id!r} has no blast radius version {version}")
    return br.from_json(row.data)


def recipients_for(tenant: Tenant | None) -> dict[str, str]:
    """Address -> locale for a tenant's notice: DPO, security and owner contacts (an admin only if
    none of those exists); billing contacts never. Addresses that cannot be sent to are skipped."""
    if tenant is None:
        return {}
    chosen = [c for c in tenant.contacts if c.role in RECIPIENT_ROLES]
    if not chosen:
        chosen = [c for c in tenant.contacts if c.role in FALLBACK_ROLES]
    out: dict[str, str] = {}
    for contact in sorted(chosen, key=lambda c: RECIPIENT_ROLES.index(c.role) if c.role in RECIPIENT_ROLES else 9):
        if is_address(contact.email) and contact.email not in out:
            out[contact.email] = rendering_locale(contact.locale or tenant.locale)
    return out


def notice_id_for(incident_id: str, tenant_id: str) -> str:
    return stable_id("notice", incident_id, tenant_id)


def delivery_message_id(notice_id: str, version: int, recipient: str, message_type: str = CUSTOMER_NOTICE) -> str:
    """The outbox id of one version of a notice to one recipient (stable, so enqueue is idempotent)."""
    part = ".r" if message_type == REGULATOR_DRAFT else ""
    return f"{notice_id}.v{version}{part}.{stable_id(recipient.lower(), length=16)}"


# --- duties ------------------------------------------------------------------------------------


def _duty_dict(row: NoticeDutyRow) -> dict[str, Any]:
    return {
        "rule_id": row.rule_id,
        "owner": row.owner,
        "title": row.title,
        "whom_kind": row.whom_kind,
        "whom": row.whom,
        "provision": row.provision,
        "regime": row.regime,
        "basis": row.basis,
        "draft": row.basis == "draft",
        "unit": row.deadline_unit,
        "amount": row.deadline_amount,
        "deadline_text": row.deadline_text,
        "due_at": _iso(row.due_at) or "",
        "target_at": _iso(row.target_at) or "",
        "clock_started_at": _iso(row.clock_started_at) or "",
        "elements": list(row.required_elements or []),
        "conditions": list(row.conditions or []),
        "clock_start": row.clock_start,
        "clock_start_text": row.clock_start_text,
        "moment_used": row.moment_used or "",
        "moment_is_fallback": bool(row.moment_is_fallback),
        "due_last_day": row.due_last_day.isoformat() if row.due_last_day else "",
        "due_zone": row.due_zone or "",
        "jurisdictions": list(row.jurisdictions or []),
        "hold": dict(row.hold or {}),
        "substitute": dict(row.substitute or {}),
        "waived": dict(row.waived or {}),
    }


def duty_status(row: NoticeDutyRow, now: datetime, met_at: datetime | None = None) -> str:
    """ok | due_soon | overdue, or met | met_late once the vendor's notice went out; waived by a
    no-notify decision; paused while a law-enforcement request holds it."""
    met = met_at or row.met_at
    if met is not None:
        return "met_late" if row.target_at is not None and met > row.target_at else "met"
    if row.waived:
        return "waived"
    if paused(row, now):
        return "paused"
    start, target = row.clock_started_at, row.target_at
    if start is None or target is None:
        return "ok"
    if now > target:
        return "overdue"
    window = (target - start).total_seconds()
    used = (now - start).total_seconds() / window if window > 0 else 1.0
    return "due_soon" if used >= WARN_FRACTION else "ok"


def fulfils(row: NoticeDutyRow) -> bool:
    """Whether sending the notice discharges this duty (the vendor telling the customer)."""
    return row.owner == "vendor" and row.whom_kind == "controller"


# --- drafting ----------------------------------------------------------------------------------


def _render_version(
    session: Session,
    notice: NoticeRow,
    version: NoticeVersionRow,
    radius: br.BlastRadius,
    incident: IncidentRow,
    confirmation: NoticeConfirmationRow,
    vendor: Mapping[str, str],
    previous: Mapping[str, Any] | None,
    now: datetime,
) -> None:
    impact = radius.tenant(notice.tenant_id) or br.TenantImpact(tenant_id=notice.tenant_id)
    duties = [
        _duty_dict(d)
        for d in session.scalars(
            select(NoticeDutyRow)
            .where(NoticeDutyRow.notice_id == notice.notice_id, NoticeDutyRow.active.is_(True))
            .order_by(NoticeDutyRow.target_at, NoticeDutyRow.rule_id)
        )
    ]
    session.flush()
    vendor_duties = [d for d in duties if d["owner"] == "vendor"]
    customer_duties = [d for d in duties if d["owner"] == "customer"]
    main_type = CUSTOMER_NOTICE if version.kind == "initial" else FOLLOWUP
    locales = sorted({notice.locale, *version.recipients.values()})
    renderer = notice_renderer()
    recorded = moments.moments(session, incident.incident_id)
    law = law_context(session, notice.notice_id, now)
    for locale in locales:
        context = notice_context(
            notice_id=notice.notice_id,
            version=version.version,
            kind=version.kind,
            locale=locale,
            tenant_id=notice.tenant_id,
            tenant_name=notice.tenant_name,
            jurisdiction=notice.jurisdiction,
            incident_id=incident.incident_id,
            incident_kind=incident.kind,
            impact=impact,
            radius=radius,
            vendor=vendor,
            facts=version.facts,
            vendor_duties=vendor_duties,
            customer_duties=customer_duties,
            confirmed_at=confirmation.confirmed_at,
            detected_at=recorded.get("detected", confirmation.confirmed_at),
            issued_at=now,
            previous=previous,
            law=law,
        )
        types = [main_type] + ([REGULATOR_DRAFT] if context["authority_duties"] else [])
        for message_type in types:
            rendered = renderer.render(message_type, locale, context)
            session.add(
                NoticeRenditionRow(
                    notice_id=notice.notice_id,
                    version=version.version,
                    message_type=message_type,
                    locale=locale,
                    subject=rendered.subject,
                    body_text=rendered.text,
                    body_html=rendered.html,
                )
            )


def _previous_delivery(session: Session, notice_id: str) -> dict[str, Any] | None:
    """The latest version the customer may already have, with when it went out."""
    rows = session.execute(
        select(NoticeDeliveryRow.version, OutboxRow.status, OutboxRow.sent_at)
        .join(OutboxRow, OutboxRow.message_id == NoticeDeliveryRow.message_id)
        .where(NoticeDeliveryRow.notice_id == notice_id, OutboxRow.status.in_(DELIVERED_STATES))
    ).all()
    if not rows:
        return None
    version = max(r[0] for r in rows)
    sent = [r[2] for r in rows if r[0] == version and r[2] is not None]
    return {"version": version, "sent_at": _iso(min(sent)) if sent else ""}


def _hold_unsent(session: Session, notice_id: str, reason: str) -> int:
    """Park the not-yet-claimed messages of earlier versions (a newer version replaces them)."""
    ids = select(NoticeDeliveryRow.message_id).where(NoticeDeliveryRow.notice_id == notice_id)
    return session.execute(
        update(OutboxRow)
        .where(OutboxRow.message_id.in_(ids), OutboxRow.status == "pending")
        .values(status="held", last_error=reason)
        .execution_options(synchronize_session=False)
    ).rowcount


def _new_version(
    session: Session,
    notice: NoticeRow,
    *,
    radius_version: int,
    facts: Mapping[str, Any],
    recipients: Mapping[str, str],
    actor: str,
    reason: str,
    config: NoticeConfig,
    now: datetime,
) -> NoticeVersionRow:
    incident = session.get(IncidentRow, notice.incident_id)
    confirmation = session.get(NoticeConfirmationRow, notice.incident_id)
    if incident is None or confirmation is None:
        raise NoticeError(f"incident {notice.incident_id!r} has no confirmed breach")
    number = (
        session.scalar(select(func.max(NoticeVersionRow.version)).where(NoticeVersionRow.notice_id == notice.notice_id))
        or 0
    ) + 1
    previous = _previous_delivery(session, notice.notice_id) if number > 1 else None
    if number > 1:
        held = _hold_unsent(session, notice.notice_id, f"superseded by version {number} before it was sent")
        for old in session.scalars(
            select(NoticeVersionRow).where(
                NoticeVersionRow.notice_id == notice.notice_id, NoticeVersionRow.status.in_((DRAFT, APPROVED))
            )
        ):
            old.status = "superseded"
        if held:
            _audit(
                session,
                incident_id=notice.incident_id,
                notice_id=notice.notice_id,
                actor=actor,
                action="notice_messages_held",
                detail={"messages": held, "superseded_by": number},
                at=now,
            )
    radius = _radius_version(session, notice.incident_id, radius_version)
    version = NoticeVersionRow(
        notice_id=notice.notice_id,
        version=number,
        kind="initial" if previous is None else "followup",
        status=DRAFT,
        facts=dict(facts),
        recipients=dict(recipients),
        blast_radius_version=radius_version,
        created_by=actor,
        created_at=now,
        reason=reason,
    )
    session.add(version)
    notice.current_version = number
    notice.status = DRAFT
    session.flush()
    _render_version(session, notice, version, radius, incident, confirmation, config.vendor.as_context(), previous, now)
    return version


def _draft_notice(
    session: Session,
    incident: IncidentRow,
    impact: br.TenantImpact,
    radius_version: int,
    tenant: Tenant | None,
    confirmation: NoticeConfirmationRow,
    config: NoticeConfig,
    rules: RuleSet | None,
    actor: str,
    now: datetime,
) -> NoticeRow:
    jurisdiction = tenant.jurisdiction if tenant is not None else UNKNOWN_JURISDICTION
    notice = NoticeRow(
        notice_id=notice_id_for(incident.incident_id, impact.tenant_id),
        incident_id=incident.incident_id,
        tenant_id=impact.tenant_id,
        tenant_name=tenant.name if tenant is not None else "",
        jurisdiction=jurisdiction,
        locale=rendering_locale(tenant.locale if tenant is not None else None),
        status=DRAFT,
        current_version=0,
        required_approvals=config.approvals,
        created_at=now,
    )
    session.add(notice)
    session.flush()
    obligations.assess_and_store(session, notice, impact, tenant, config, rules)
    recipients = recipients_for(tenant)
    facts = {"phase": "preliminary", "measures": default_measures(incident.kind)}
    _new_version(
        session,
        notice,
        radius_version=radius_version,
        facts=facts,
        recipients=recipients,
        actor=actor,
        reason="drafted on breach confirmation",
        config=config,
        now=now,
    )
    _audit(
        session,
        incident_id=incident.incident_id,
        notice_id=notice.notice_id,
        actor=actor,
        action="notice_drafted",
        detail={
            "tenant_id": impact.tenant_id,
            "jurisdiction": jurisdiction,
            "locale": notice.locale,
            "recipients": len(recipients),
            "tenant_known": tenant is not None,
        },
        at=now,
    )
    return notice


def on_breach_confirmed(
    session: Session,
    incident_id: str,
    *,
    confirmed_by: str,
    confirmed_at: datetime,
    settings: Settings,
    history: br.AccessHistory | Sequence[br.AccessHistory] | None = None,
    tenants: Mapping[str, Tenant] | None = None,
    config: NoticeConfig | None = None,
    rules: RuleSet | None = None,
    now: datetime | None = None,
) -> list[str]:
    """Record awareness of a breach and draft a notice per affected tenant; returns their ids.

    Calling it again for the same incident changes nothing and returns the same ids (the first
    confirmation is the clock start). ``history`` re-reads the actor's access history: one
    source, or several tried in order until one can be read (default: the evidence of every
    incident in the store; the composition root puts the Kafka topic first where there is one); ``tenants`` supplies
    directory entries the database does not hold yet.
    """
    if confirmed_at.tzinfo is None:
        raise ValueError("confirmed_at must be time-zone aware")
    now = now or utcnow()
    incident = session.get(IncidentRow, incident_id)
    if incident is None:
        raise NoticeNotFound(f"no incident {incident_id!r}")
    confirmation = session.get(NoticeConfirmationRow, incident_id)
    if confirmation is None:
        confirmation = NoticeConfirmationRow(
            incident_id=incident_id, confirmed_by=confirmed_by, confirmed_at=confirmed_at, recorded_at=now
        )
        session.add(confirmation)
        _audit(
            session,
            incident_id=incident_id,
            notice_id=None,
            actor=confirmed_by,
            action="breach_confirmed",
            detail={"confirmed_at": confirmed_at.isoformat()},
            at=now,
        )
        session.flush()
    moments.record_confirmation(
        session, incident_id, confirmed_at=confirmation.confirmed_at, confirmed_by=confirmation.confirmed_by, now=now
    )
    config = config or load_notice_config(settings)
    latest = _latest_radius(session, incident_id)
    if latest is None:
        incident_row, findings, evidence = br.load_for(session, incident_id)
        directory = _directory(session, incident_row.tenant_ids or [], tenants)
        if history is None:
            sources = [br.StoreHistory(session)]
        else:
            sources = list(history) if isinstance(history, Sequence) else [history]
        radius = _compute(incident_row, findings, evidence, sources, confirmation.confirmed_at, directory, config)
        session.add(
            BlastRadiusRow(
                incident_id=incident_id,
                version=1,
                data=br.to_json(radius),
                created_by=SYSTEM,
                created_at=now,
                reason="computed on breach confirmation",
            )
        )
        _audit(
            session,
            incident_id=incident_id,
            notice_id=None,
            actor=SYSTEM,
            action="blast_radius_computed",
            detail=_radius_summary(radius),
            at=now,
        )
        session.flush()
        latest = (1, radius)
    radius_version, radius = latest
    directory = _directory(session, [t.tenant_id for t in radius.affected], tenants)
    ids: list[str] = []
    for impact in radius.affected:
        nid = notice_id_for(incident_id, impact.tenant_id)
        if session.get(NoticeRow, nid) is None:
            _draft_notice(
                session,
                incident,
                impact,
                radius_version,
                directory.get(impact.tenant_id),
                confirmation,
                config,
                rules,
                confirmed_by,
                now,
            )
        ids.append(nid)
    return ids


def _compute(
    incident: IncidentRow,
    findings: Sequence[Any],
    evidence: Sequence[Any],
    sources: Sequence[br.AccessHistory],
    until: datetime,
    directory: Mapping[str, Tenant],
    config: NoticeConfig,
) -> br.BlastRadius:
    # A history source that fails (broker down, retention gone) must not stop the breach from
    # being recorded: the next source is used and the fallback is stated among the limits.
    notes: list[str] = []

    def category_map(tenant_id: str) -> CategoryMap:
        return config.facts_for(tenant_id).category_map()

    for i, source in enumerate(sources):
        try:
            radius = br.compute(
                incident,
                findings,
                evidence,
                history=source,
                until=until,
                tenants=directory,
                category_map=category_map,
            )
        except Exception as exc:
            if i == len(sources) - 1:
                raise
            log.warning(
                "blast radius of %s: %s unreadable (%s), trying the next source",
                incident.incident_id,
                source.name,
                type(exc).__name__,
            )
            notes.append(f"the {source.name} could not be read ({type(exc).__name__}); the next source was used")
            continue
        return radius.model_copy(update={"limits": (*radius.limits, *notes)}) if notes else radius
    return br.compute(incident, findings, evidence, until=until, tenants=directory, category_map=category_map)


def _directory(session: Session, tenant_ids: Sequence[str], given: Mapping[str, Tenant] | None) -> dict[str, Tenant]:
    out: dict[str, Tenant] = {}
    for tid in tenant_ids:
        tenant = (given or {}).get(tid) or tenant_record(session, tid)
        if tenant is not None:
            out[tid] = tenant
    return out


def _radius_summary(radius: br.BlastRadius) -> dict[str, Any]:
    return {
        "tenants": [
            {"tenant_id": t.tenant_id, "records": t.records, "subjects": t.subjects, "excluded": t.excluded}
            for t in radius.tenants
        ],
        "window": [radius.window_start.isoformat(), radius.window_end.isoformat()],
        "evidence_events": radius.evidence_events,
        "history_events": radius.history_events,
        "history_source": radius.history_source,
    }


# --- corrections -------------------------------------------------------------------------------


def blast_radius(session: Session, incident_id: str) -> dict[str, Any] | None:
    """The latest blast radius of an incident (for the incident page), with its version."""
    latest = _latest_radius(session, incident_id)
    if latest is None:
        return None
    version, radius = latest
    return {"version": version, **br.to_json(radius)}


def correct_blast_radius(
    session: Session,
    incident_id: str,
    correction: br.Correction | Mapping[str, Any],
    *,
    actor: str,
    reason: str,
    settings: Settings,
    config: NoticeConfig | None = None,
    rules: RuleSet | None = None,
    tenants: Mapping[str, Tenant] | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Store a person's correction as a new blast-radius version (audited) and redraft the notices:
    a new version for each tenant's notice, a new notice for a tenant added, and a withdrawal for
    a tenant ruled out whose notice was never sent."""
    if not reason.strip():
        raise NoticeError("a correction needs a reason")
    now = now or utcnow()
    change = correction if isinstance(correction, br.Correction) else br.Correction.model_validate(correction)
    latest = _latest_radius(session, incident_id)
    if latest is None:
        raise NoticeError(f"incident {incident_id!r} has no confirmed breach to correct")
    version, radius = latest
    try:
        corrected = br.correct(radius, change, by=actor, reason=reason)
    except ValueError as exc:
        raise NoticeError(str(exc)) from None
    new_version = version + 1
    session.add(
        BlastRadiusRow(
            incident_id=incident_id,
            version=new_version,
            data=br.to_json(corrected),
            created_by=actor,
            created_at=now,
            reason=reason,
        )
    )
    _audit(
        session,
        incident_id=incident_id,
        notice_id=None,
        actor=actor,
        action="blast_radius_corrected",
        detail={"version": new_version, "reason": reason, "change": change.model_dump(mode="json", exclude_none=True)},
        at=now,
    )
    session.flush()
    config = config or load_notice_config(settings)
    confirmation = session.get(NoticeConfirmationRow, incident_id)
    incident = session.get(IncidentRow, incident_id)
    assert confirmation is not None and incident is not None  # a radius exists only after confirmation
    directory = _directory(session, [t.tenant_id for t in corrected.tenants], tenants)
    touched = {t.tenant_id for t in change.tenants}
    out: dict[str, Any] = {"version": new_version, "drafted": [], "redrafted": [], "withdrawn": []}
    for impact in corrected.tenants:
        nid = notice_id_for(incident_id, impact.tenant_id)
        notice = session.get(NoticeRow, nid)
        if impact.excluded:
            if notice is not None and notice.status != WITHDRAWN and _withdraw(session, notice, actor, reason, now):
                out["withdrawn"].append(nid)
            continue
        if notice is None:
            _draft_notice(
                session,
                incident,
                impact,
                new_version,
                directory.get(impact.tenant_id),
                confirmation,
                config,
                rules,
                actor,
                now,
            )
            out["drafted"].append(nid)
            continue
        if impact.tenant_id not in touched and (change.window_start is None and change.window_end is None):
            continue
        obligations.assess_and_store(session, notice, impact, directory.get(impact.tenant_id), config, rules)
        current = _version(session, nid, notice.current_version)
        _new_version(
            session,
            notice,
            radius_version=new_version,
            facts={**current.facts, "changes": f"blast radius corrected: {reason}"},
            recipients=current.recipients,
            actor=actor,
            reason=f"blast radius corrected: {reason}",
            config=config,
            now=now,
        )
        out["redrafted"].append(nid)
    return out


def reassess_incident(
    session: Session,
    incident_id: str,
    *,
    actor: str,
    reason: str,
    settings: Settings,
    config: NoticeConfig | None = None,
    rules: RuleSet | None = None,
    tenants: Mapping[str, Tenant] | None = None,
    now: datetime | None = None,
) -> list[str]:
    """Work every notice's duties out again from what is recorded now (a moment, a delay, a
    decision); a notice whose duties changed gets a new version. Returns those notices' ids."""
    now = now or utcnow()
    latest = _latest_radius(session, incident_id)
    if latest is None:
        raise NoticeError(f"incident {incident_id!r} has no confirmed breach")
    _, radius = latest
    config = config or load_notice_config(settings)
    directory = _directory(session, [t.tenant_id for t in radius.affected], tenants)
    redrafted: list[str] = []
    for notice in session.scalars(
        select(NoticeRow).where(NoticeRow.incident_id == incident_id, NoticeRow.status != WITHDRAWN)
    ).all():
        impact = radius.tenant(notice.tenant_id) or br.TenantImpact(tenant_id=notice.tenant_id)
        if not obligations.assess_and_store(session, notice, impact, directory.get(notice.tenant_id), config, rules):
            continue
        current = _version(session, notice.notice_id, notice.current_version)
        _new_version(
            session,
            notice,
            radius_version=current.blast_radius_version,
            facts={**current.facts, "changes": reason},
            recipients=current.recipients,
            actor=actor,
            reason=reason,
            config=config,
            now=now,
        )
        redrafted.append(notice.notice_id)
    return redrafted


def _withdraw(session: Session, notice: NoticeRow, actor: str, reason: str, now: datetime) -> bool:
    if _previous_delivery(session, notice.notice_id) is not None:
        return False  # the customer may have it already: a follow-up, not a silent withdrawal
    _hold_unsent(session, notice.notice_id, "notice withdrawn")
    notice.status = WITHDRAWN
    _audit(
        session,
        incident_id=notice.incident_id,
        notice_id=notice.notice_id,
        actor=actor,
        action="notice_withdrawn",
        detail={"reason": reason},
        at=now,
    )
    return True


def revise_notice(
    session: Session,
    notice_id: str,
    *,
    editor: str,
    reason: str,
    settings: Settings,
    changes: Mapping[str, Any],
    config: NoticeConfig | None = None,
    now: datetime | None = None,
) -> int:
    """A new version of a notice with some of its own facts changed; returns the version number.

    ``changes`` may set ``summary``, ``cause``, ``consequences_note``, ``changes`` (what is new in
    an update), ``phase`` (preliminary, update, final), ``law_enforcement_delay``,
    ``law_enforcement_involved``, ``measures`` (a list of ``{key, text, done}``) and
    ``recipients`` (address -> locale; only plain addresses).
    """
    allowed = {
        "summary",
        "cause",
        "consequences_note",
        "changes",
        "phase",
        "law_enforcement_delay",
        "law_enforcement_involved",
        "measures",
        "recipients",
    }
    unknown = sorted(set(changes) - allowed)
    if unknown:
        raise NoticeError(f"cannot change {unknown}; allowed: {sorted(allowed)}")
    if not reason.strip():
        raise NoticeError("a revision needs a reason")
    if "phase" in changes and changes["phase"] not in PHASES:
        raise NoticeError(f"phase must be one of {list(PHASES)}")
    now = now or utcnow()
    notice = _notice(session, notice_id)
    if notice.status == WITHDRAWN:
        raise NoticeError(f"notice {notice_id} was withdrawn")
    current = _version(session, notice_id, notice.current_version)
    facts = {k: v for k, v in current.facts.items() if k != "changes"}
    recipients = dict(current.recipients)
    for key, value in changes.items():
        if key == "recipients":
            bad = [a for a in value if not is_address(str(a))]
            if bad:
                raise NoticeError(f"{len(bad)} recipient(s) are not plain email addresses")
            recipients = {str(a): rendering_locale(str(loc)) for a, loc in dict(value).items()}
        elif key == "measures":
            facts["measures"] = [
                {"key": str(m.get("key") or ""), "text": str(m.get("text") or ""), "done": bool(m.get("done"))}
                for m in value
            ]
        else:
            facts[key] = value
    config = config or load_notice_config(settings)
    row = _new_version(
        session,
        notice,
        radius_version=current.blast_radius_version,
        facts=facts,
        recipients=recipients,
        actor=editor,
        reason=reason,
        config=config,
        now=now,
    )
    _audit(
        session,
        incident_id=notice.incident_id,
        notice_id=notice_id,
        actor=editor,
        action="notice_revised",
        detail={"version": row.version, "reason": reason, "fields": sorted(changes)},
        at=now,
    )
    return row.version


# --- reading -----------------------------------------------------------------------------------


def _approvers(session: Session, notice_id: str, version: int) -> list[str]:
    return list(
        session.scalars(
            select(NoticeApprovalRow.approver)
            .where(NoticeApprovalRow.notice_id == notice_id, NoticeApprovalRow.version == version)
            .order_by(NoticeApprovalRow.approved_at, NoticeApprovalRow.approver)
        )
    )


def _deliveries(session: Session, notice_id: str) -> list[dict[str, Any]]:
    rows = session.execute(
        select(NoticeDeliveryRow, OutboxRow)
        .join(OutboxRow, OutboxRow.message_id == NoticeDeliveryRow.message_id, isouter=True)
        .where(NoticeDeliveryRow.notice_id == notice_id)
        .order_by(NoticeDeliveryRow.version, NoticeDeliveryRow.recipient, NoticeDeliveryRow.message_type)
    ).all()
    receipts: dict[str, list[str]] = {}
    ids = [d.message_id for d, _ in rows]
    if ids:
        for message_id, event in session.execute(
            select(NoticeReceiptRow.message_id, NoticeReceiptRow.event)
            .where(NoticeReceiptRow.message_id.in_(ids))
            .order_by(NoticeReceiptRow.at)
        ):
            receipts.setdefault(message_id, []).append(event)
    return [
        {
            "message_id": d.message_id,
            "version": d.version,
            "message_type": d.message_type,
            "recipient": d.recipient,
            "locale": d.locale,
            "status": o.status if o is not None else "missing",
            "attempts": o.attempts if o is not None else 0,
            "sent_at": _iso(o.sent_at) if o is not None else None,
            "last_error": o.last_error if o is not None else None,
            "receipts": receipts.get(d.message_id, []),
        }
        for d, o in rows
    ]


def first_sent_at(session: Session, notice_id: str) -> datetime | None:
    """When the provider first accepted a notice (not a regulator draft) to this customer."""
    return session.scalar(
        select(func.min(OutboxRow.sent_at))
        .join(NoticeDeliveryRow, NoticeDeliveryRow.message_id == OutboxRow.message_id)
        .where(
            NoticeDeliveryRow.notice_id == notice_id,
            NoticeDeliveryRow.message_type.in_((CUSTOMER_NOTICE, FOLLOWUP)),
            OutboxRow.status == "sent",
        )
    )


def _delivery_status(notice: NoticeRow, version: NoticeVersionRow, deliveries: Sequence[Mapping[str, Any]]) -> str:
    if notice.status == WITHDRAWN:
        return WITHDRAWN
    if version.status == DRAFT:
        return DRAFT
    mine = [d for d in deliveries if d["version"] == version.version]
    if not mine:
        return APPROVED
    states = {d["status"] for d in mine}
    events = {e for d in mine for e in d["receipts"]}
    if "failed" in states or "missing" in states:
        return "failed"
    if "unknown" in states:
        return "outcome_unknown"
    if events & {"bounce", "dropped"}:
        return "bounced"
    if states == {"sent"}:
        return "delivered" if all("delivered" in d["receipts"] for d in mine) else "sent"
    return "queued"


def list_notices(session: Session, incident_id: str, *, now: datetime | None = None) -> list[dict[str, Any]]:
    """Every notice of an incident with its status, current version, subject and duties (due
    times and clock status), for the incident page and the API."""
    now = now or utcnow()
    notices = session.scalars(
        select(NoticeRow).where(NoticeRow.incident_id == incident_id).order_by(NoticeRow.tenant_id)
    ).all()
    return [notice_summary(session, n, now) for n in notices]


def notice_summary(session: Session, notice: NoticeRow, now: datetime) -> dict[str, Any]:
    """One notice as ``list_notices`` shows it."""
    version = _version(session, notice.notice_id, notice.current_version)
    main_type = CUSTOMER_NOTICE if version.kind == "initial" else FOLLOWUP
    rendition = session.get(NoticeRenditionRow, (notice.notice_id, version.version, main_type, notice.locale))
    deliveries = _deliveries(session, notice.notice_id)
    sent = first_sent_at(session, notice.notice_id)
    duties = []
    for row in session.scalars(
        select(NoticeDutyRow)
        .where(NoticeDutyRow.notice_id == notice.notice_id, NoticeDutyRow.active.is_(True))
        .order_by(NoticeDutyRow.owner.desc(), NoticeDutyRow.target_at, NoticeDutyRow.rule_id)
    ):
        met = row.met_at or (sent if fulfils(row) else None)
        duties.append(
            {
                **_duty_dict(row),
                "due_at": _iso(row.due_at),
                "target_at": _iso(row.target_at),
                "met_at": _iso(met),
                "status": duty_status(row, now, met),
            }
        )
    problems = []
    if not version.recipients:
        problems.append("no usable contact address for this tenant")
    if notice.jurisdiction == UNKNOWN_JURISDICTION:
        problems.append("the tenant's directory entry is unknown: jurisdiction and language could not be checked")
    law = law_context(session, notice.notice_id, now)
    return {
        "notice_id": notice.notice_id,
        "incident_id": notice.incident_id,
        "tenant_id": notice.tenant_id,
        "tenant_name": notice.tenant_name,
        "jurisdiction": notice.jurisdiction,
        "locale": notice.locale,
        "status": _delivery_status(notice, version, deliveries),
        "version": version.version,
        "version_status": version.status,
        "kind": version.kind,
        "subject": rendition.subject if rendition is not None else "",
        "recipients": sorted(version.recipients),
        "approvals": _approvers(session, notice.notice_id, version.version),
        "required_approvals": notice.required_approvals,
        "duties": duties,
        "deliveries": deliveries,
        "problems": problems,
        "jurisdictions": law["jurisdictions"],
        "law": law,
    }


def preview_notice(
    session: Session, notice_id: str, *, version: int | None = None, locale: str | None = None
) -> dict[str, Any]:
    """The exact subject, text and HTML a version sends (default: the current version in the
    tenant's language), plus the regulator-report draft when there is one."""
    notice = _notice(session, notice_id)
    number = version or notice.current_version
    row = _version(session, notice_id, number)
    main_type = CUSTOMER_NOTICE if row.kind == "initial" else FOLLOWUP
    loc = rendering_locale(locale) if locale else notice.locale
    rendition = session.get(NoticeRenditionRow, (notice_id, number, main_type, loc))
    if rendition is None:
        raise NoticeNotFound(f"notice {notice_id} version {number} has no {loc!r} text")
    draft = session.get(NoticeRenditionRow, (notice_id, number, REGULATOR_DRAFT, loc))
    return {
        "notice_id": notice_id,
        "version": number,
        "version_status": row.status,
        "locale": loc,
        "message_type": main_type,
        "subject": rendition.subject,
        "text": rendition.body_text,
        "html": rendition.body_html,
        "recipients": dict(row.recipients),
        "regulator_draft": None
        if draft is None
        else {"subject": draft.subject, "text": draft.body_text, "html": draft.body_html},
    }


def notice_timeline(session: Session, incident_id: str) -> list[dict[str, Any]]:
    """Everything that happened to an incident's notices, oldest first: confirmation, blast
    radius and its corrections, drafts, approvals, and the provider's delivery receipts."""
    events = [
        {
            "at": _iso(e.at),
            "actor": e.actor,
            "action": e.action,
            "notice_id": e.notice_id,
            "detail": e.detail,
        }
        for e in session.scalars(
            select(NoticeEventRow).where(NoticeEventRow.incident_id == incident_id).order_by(NoticeEventRow.id)
        )
    ]
    receipts = session.execute(
        select(NoticeReceiptRow, NoticeDeliveryRow.notice_id)
        .join(NoticeDeliveryRow, NoticeDeliveryRow.message_id == NoticeReceiptRow.message_id)
        .join(NoticeRow, NoticeRow.notice_id == NoticeDeliveryRow.notice_id)
        .where(NoticeRow.incident_id == incident_id)
    ).all()
    for r, nid in receipts:
        events.append(
            {
                "at": _iso(r.at),
                "actor": "sendgrid",
                "action": f"delivery_{r.event}",
                "notice_id": nid,
                "detail": {"message_id": r.message_id, "recipient": r.recipient, "detail": r.detail},
            }
        )
    return sorted(events, key=lambda e: e["at"] or "")


def mark_duty_met(session: Session, notice_id: str, rule_id: str, *, by: str, at: datetime, note: str = "") -> None:
    """Record that a person discharged a duty outside this system (e.g. a CERT-In report)."""
    row = session.get(NoticeDutyRow, (notice_id, rule_id))
    if row is None:
        raise NoticeNotFound(f"notice {notice_id!r} has no duty {rule_id!r}")
    notice = _notice(session, notice_id)
    row.met_at = at
    _audit(
        session,
        incident_id=notice.incident_id,
        notice_id=notice_id,
        actor=by,
        action="duty_met",
        detail={"rule_id": rule_id, "at": at.isoformat(), "note": note},
        at=utcnow(),
    )
