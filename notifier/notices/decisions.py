"""A person's decisions about a confirmed breach that change its duties: a moment recorded
(awareness, determination, materiality...), a law-enforcement request to delay notice and its
end, the encryption safe harbour, missing contact details, and a risk-of-harm assessment with
its decision. Each is checked, stored, audited, and the incident's notices are worked out
again: a notice whose duties changed gets a new version (``service.reassess_incident``).

Every function works in the caller's transaction and never commits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from breachwatch.core.clock import utcnow
from breachwatch.core.ids import stable_id
from breachwatch.core.settings import Settings
from breachwatch.notifier.duties import REQUESTERS
from breachwatch.notifier.notices import harm, moments
from breachwatch.notifier.notices.config import NoticeConfig
from breachwatch.notifier.notices.models import NoticeConfirmationRow, NoticeDutyRow, NoticeRow
from breachwatch.notifier.notices.records import (
    ContactGapRow,
    DelayRow,
    HarmAssessmentRow,
    JurisdictionRow,
    SafeHarbourRow,
)
from breachwatch.notifier.notices.service import NoticeError, NoticeNotFound, audit_event, reassess_incident

FORMS: tuple[str, ...] = ("written", "oral")
MAX_TEXT = 2000


def _text(value: str, what: str, *, required: bool = True) -> str:
    value = (value or "").strip()
    if required and not value:
        raise NoticeError(f"{what} is required")
    if len(value) > MAX_TEXT:
        raise NoticeError(f"{what} is longer than {MAX_TEXT} characters")
    return value


def _moment(value: datetime | None, what: str, now: datetime, *, past: bool = True) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise NoticeError(f"{what} needs a time zone offset")
    if past and value > now:
        raise NoticeError(f"{what} is in the future")
    return value


def _confirmed(session: Session, incident_id: str) -> NoticeConfirmationRow:
    row = session.get(NoticeConfirmationRow, incident_id)
    if row is None:
        raise NoticeNotFound(f"incident {incident_id!r} has no confirmed breach")
    return row


def _tenant_notice(session: Session, incident_id: str, tenant_id: str) -> NoticeRow:
    notice = session.scalars(
        select(NoticeRow).where(NoticeRow.incident_id == incident_id, NoticeRow.tenant_id == tenant_id)
    ).first()
    if notice is None:
        raise NoticeNotFound(f"incident {incident_id!r} has no notice for tenant {tenant_id!r}")
    return notice


def _reassess(
    session: Session,
    incident_id: str,
    by: str,
    reason: str,
    settings: Settings,
    config: NoticeConfig | None,
    now: datetime,
) -> list[str]:
    return reassess_incident(session, incident_id, actor=by, reason=reason, settings=settings, config=config, now=now)


# --- moments -----------------------------------------------------------------------------------


def record_moment(
    session: Session,
    incident_id: str,
    moment: str,
    at: datetime,
    *,
    by: str,
    note: str = "",
    settings: Settings,
    config: NoticeConfig | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Record when the entity became aware, determined a breach, finished its assessment or
    determined materiality; the clocks that start there move to it."""
    now = now or utcnow()
    if moment not in moments.PERSON_MOMENTS:
        names = ", ".join(moments.PERSON_MOMENTS)
        raise NoticeError(f"moment must be one of {names} (the system records detection and confirmation)")
    _confirmed(session, incident_id)
    when = _moment(at, "the moment", now)
    assert when is not None
    before = moments.set_moment(
        session, incident_id, moment, when, by=by, note=_text(note, "the note", required=False), now=now
    )
    audit_event(
        session,
        incident_id=incident_id,
        notice_id=None,
        actor=by,
        action="moment_recorded",
        detail={"moment": moment, "at": when.isoformat(), "before": dict(before)},
        at=now,
    )
    redrafted = _reassess(session, incident_id, by, f"{moment} recorded as {when.isoformat()}", settings, config, now)
    return {"moment": moment, "at": when.isoformat(), "redrafted": redrafted}


# --- law-enforcement delays --------------------------------------------------------------------


def record_delay(
    session: Session,
    incident_id: str,
    *,
    requested_by: str,
    agency: str,
    official: str,
    form: str,
    requested_at: datetime,
    until: datetime | None,
    reference: str = "",
    by: str,
    settings: Settings,
    config: NoticeConfig | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Record a request to delay notice (who asked, how, when, until when): it holds back the
    duties whose statute allows it, and only those. Returns its id and the duties it holds."""
    now = now or utcnow()
    _confirmed(session, incident_id)
    if requested_by not in REQUESTERS:
        raise NoticeError(f"requested_by must be one of {', '.join(REQUESTERS)}")
    if form not in FORMS:
        raise NoticeError(f"form must be one of {', '.join(FORMS)}")
    asked = _moment(requested_at, "requested_at", now)
    assert asked is not None
    end = _moment(until, "until", now, past=False)
    if end is not None and end <= asked:
        raise NoticeError("until must be after requested_at")
    agency, official = _text(agency, "the agency"), _text(official, "who asked (the official)")
    delay_id = stable_id("delay", incident_id, asked.isoformat(), agency, official)
    if session.get(DelayRow, delay_id) is not None:
        raise NoticeError(f"this request is already recorded as {delay_id}")
    session.add(
        DelayRow(
            delay_id=delay_id,
            incident_id=incident_id,
            requested_by=requested_by,
            agency=agency,
            official=official,
            form=form,
            requested_at=asked,
            until=end,
            reference=_text(reference, "the reference", required=False),
            recorded_by=by,
            recorded_at=now,
        )
    )
    session.flush()
    audit_event(
        session,
        incident_id=incident_id,
        notice_id=None,
        actor=by,
        action="delay_recorded",
        detail={
            "delay_id": delay_id,
            "requested_by": requested_by,
            "agency": agency,
            "official": official,
            "form": form,
            "requested_at": asked.isoformat(),
            "until": end.isoformat() if end else None,
        },
        at=now,
    )
    redrafted = _reassess(session, incident_id, by, f"notice delayed at {agency}'s request", settings, config, now)
    return {"delay_id": delay_id, "holds": held_by(session, incident_id, delay_id), "redrafted": redrafted}


def lift_delay(
    session: Session,
    delay_id: str,
    *,
    at: datetime,
    by: str,
    note: str = "",
    settings: Settings,
    config: NoticeConfig | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Record that the agency said notice may go ahead: the held clocks restart."""
    now = now or utcnow()
    row = session.get(DelayRow, delay_id)
    if row is None:
        raise NoticeNotFound(f"no delay {delay_id!r}")
    if row.lifted_at is not None:
        raise NoticeError(f"delay {delay_id} was already lifted on {row.lifted_at.isoformat()}")
    lifted = _moment(at, "the time it was lifted", now)
    assert lifted is not None
    if lifted < row.requested_at:
        raise NoticeError("a delay cannot be lifted before it was requested")
    held = held_by(session, row.incident_id, delay_id)
    row.lifted_at, row.lifted_by, row.lifted_note = lifted, by, _text(note, "the note", required=False)
    session.flush()
    audit_event(
        session,
        incident_id=row.incident_id,
        notice_id=None,
        actor=by,
        action="delay_lifted",
        detail={"delay_id": delay_id, "at": lifted.isoformat()},
        at=now,
    )
    redrafted = _reassess(session, row.incident_id, by, f"delay {delay_id} lifted", settings, config, now)
    return {"delay_id": delay_id, "restarted": held, "redrafted": redrafted}


def held_by(session: Session, incident_id: str, delay_id: str) -> list[dict[str, Any]]:
    """The duties a delay holds back: notice, tenant, rule, and the provision that lets it."""
    out = []
    for duty, notice in session.execute(
        select(NoticeDutyRow, NoticeRow)
        .join(NoticeRow, NoticeRow.notice_id == NoticeDutyRow.notice_id)
        .where(NoticeRow.incident_id == incident_id, NoticeDutyRow.active.is_(True))
    ):
        for h in (duty.hold or {}).get("holds", []):
            if h["ref"] == delay_id:
                out.append(
                    {
                        "notice_id": notice.notice_id,
                        "tenant_id": notice.tenant_id,
                        "rule_id": duty.rule_id,
                        "provision": h["provision"],
                        "end": h["end"],
                    }
                )
    return out


def delays(session: Session, incident_id: str) -> list[dict[str, Any]]:
    """The incident's law-enforcement requests, with the duties each holds."""
    rows = session.scalars(select(DelayRow).where(DelayRow.incident_id == incident_id).order_by(DelayRow.requested_at))
    return [
        {
            "delay_id": r.delay_id,
            "requested_by": r.requested_by,
            "agency": r.agency,
            "official": r.official,
            "form": r.form,
            "requested_at": r.requested_at.isoformat(),
            "until": r.until.isoformat() if r.until else None,
            "reference": r.reference,
            "recorded_by": r.recorded_by,
            "lifted_at": r.lifted_at.isoformat() if r.lifted_at else None,
            "lifted_by": r.lifted_by,
            "holds": held_by(session, incident_id, r.delay_id),
        }
        for r in rows
    ]


# --- safe harbour and contacts -----------------------------------------------------------------


def decide_safe_harbour(
    session: Session,
    incident_id: str,
    tenant_id: str,
    *,
    applies: bool,
    encrypted_resource_types: Sequence[str] | None,
    reason: str,
    by: str,
    settings: Settings,
    config: NoticeConfig | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Decide the encryption safe harbour for one tenant's breach: it does not apply (e.g. the key
    was taken too), or applies to these resource types (None: as configured)."""
    now = now or utcnow()
    _tenant_notice(session, incident_id, tenant_id)
    reason = _text(reason, "the reason")
    types = (
        None if encrypted_resource_types is None else sorted({t.strip() for t in encrypted_resource_types if t.strip()})
    )
    row = session.get(SafeHarbourRow, (incident_id, tenant_id))
    if row is None:
        row = SafeHarbourRow(
            incident_id=incident_id, tenant_id=tenant_id, applies=applies, reason=reason, decided_by=by
        )
        session.add(row)
    row.applies, row.encrypted_resource_types, row.reason, row.decided_by, row.decided_at = (
        applies,
        types,
        reason,
        by,
        now,
    )
    session.flush()
    audit_event(
        session,
        incident_id=incident_id,
        notice_id=None,
        actor=by,
        action="safe_harbour_decided",
        detail={"tenant_id": tenant_id, "applies": applies, "encrypted_resource_types": types, "reason": reason},
        at=now,
    )
    words = "applies" if applies else "does not apply"
    redrafted = _reassess(session, incident_id, by, f"encryption safe harbour {words}: {reason}", settings, config, now)
    return {"tenant_id": tenant_id, "applies": applies, "encrypted_resource_types": types, "redrafted": redrafted}


def record_contact_gap(
    session: Session,
    incident_id: str,
    tenant_id: str,
    missing: int,
    *,
    note: str = "",
    by: str,
    settings: Settings,
    config: NoticeConfig | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Record how many affected people have no usable contact details (substitute notice)."""
    now = now or utcnow()
    _tenant_notice(session, incident_id, tenant_id)
    if isinstance(missing, bool) or not isinstance(missing, int) or missing < 0:
        raise NoticeError("the number of people without contact details must be a whole number, 0 or more")
    row = session.get(ContactGapRow, (incident_id, tenant_id))
    if row is None:
        row = ContactGapRow(incident_id=incident_id, tenant_id=tenant_id, missing=missing, recorded_by=by)
        session.add(row)
    row.missing, row.note, row.recorded_by, row.recorded_at = missing, _text(note, "the note", required=False), by, now
    session.flush()
    audit_event(
        session,
        incident_id=incident_id,
        notice_id=None,
        actor=by,
        action="contact_gap_recorded",
        detail={"tenant_id": tenant_id, "missing": missing},
        at=now,
    )
    redrafted = _reassess(session, incident_id, by, f"{missing} people without contact details", settings, config, now)
    return {"tenant_id": tenant_id, "missing": missing, "redrafted": redrafted}


# --- risk-of-harm assessments -------------------------------------------------------------------


def waivable(session: Session, incident_id: str, tenant_id: str, jurisdiction: str, owner: str) -> list[str]:
    """Duties a no-notify decision may cover: those of ``owner`` in the jurisdiction whose law
    makes them depend on a judgement (a condition). A duty with none, e.g. a processor's duty to
    tell its controller, is never waived."""
    notice = _tenant_notice(session, incident_id, tenant_id)
    return sorted(
        d.rule_id.split(":")[0]
        for d in session.scalars(
            select(NoticeDutyRow).where(
                NoticeDutyRow.notice_id == notice.notice_id,
                NoticeDutyRow.active.is_(True),
                NoticeDutyRow.owner == owner,
            )
        )
        if jurisdiction in (d.jurisdictions or []) and d.conditions
    )


def record_assessment(
    session: Session,
    incident_id: str,
    tenant_id: str,
    jurisdiction: str,
    *,
    owner: str,
    factors: Mapping[str, Any],
    decision: str,
    reasons: str,
    waive: Sequence[str] | None = None,
    by: str,
    settings: Settings,
    config: NoticeConfig | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Record a risk-of-harm assessment of one tenant's breach in one jurisdiction. A no-notify
    decision needs its reasons and covers ``waive`` (default: every duty it may cover)."""
    now = now or utcnow()
    if owner not in harm.OWNERS:
        raise NoticeError(f"owner must be one of {', '.join(harm.OWNERS)} (whose decision this is)")
    if decision not in harm.DECISIONS:
        raise NoticeError(f"decision must be one of {', '.join(harm.DECISIONS)}")
    notice = _tenant_notice(session, incident_id, tenant_id)
    if session.get(JurisdictionRow, (notice.notice_id, jurisdiction)) is None:
        raise NoticeError(f"tenant {tenant_id}'s data subjects are not known to live in {jurisdiction!r}")
    try:
        rated = harm.checked_factors(factors)
    except ValueError as exc:
        raise NoticeError(str(exc)) from None
    reasons = _text(reasons, "the reasons", required=decision == "no_notify")
    eligible = waivable(session, incident_id, tenant_id, jurisdiction, owner)
    chosen: list[str] = []
    if decision == "no_notify":
        chosen = sorted(set(eligible if waive is None else waive))
        wrong = sorted(set(chosen) - set(eligible))
        if wrong:
            raise NoticeError(f"{wrong} cannot be waived here; only duties that depend on a judgement: {eligible}")
    row = HarmAssessmentRow(
        incident_id=incident_id,
        tenant_id=tenant_id,
        jurisdiction=jurisdiction,
        owner=owner,
        factors=rated,
        decision=decision,
        reasons=reasons,
        waived=chosen,
        assessed_by=by,
        assessed_at=now,
    )
    session.add(row)
    session.flush()
    audit_event(
        session,
        incident_id=incident_id,
        notice_id=notice.notice_id,
        actor=by,
        action="harm_assessed",
        detail={
            "assessment_id": row.id,
            "jurisdiction": jurisdiction,
            "owner": owner,
            "decision": decision,
            "waived": chosen,
            "factors": rated,
        },
        at=now,
    )
    redrafted = _reassess(
        session, incident_id, by, f"risk of harm assessed in {jurisdiction}: {decision}", settings, config, now
    )
    return {"assessment_id": row.id, "decision": decision, "waived": chosen, "redrafted": redrafted}


def assessments(session: Session, incident_id: str) -> list[dict[str, Any]]:
    """Every assessment of the incident, oldest first (a later one for the same tenant,
    jurisdiction and owner replaces the earlier decision)."""
    rows = session.scalars(
        select(HarmAssessmentRow)
        .where(HarmAssessmentRow.incident_id == incident_id)
        .order_by(HarmAssessmentRow.assessed_at, HarmAssessmentRow.id)
    )
    return [
        {
            "assessment_id": r.id,
            "tenant_id": r.tenant_id,
            "jurisdiction": r.jurisdiction,
            "owner": r.owner,
            "factors": dict(r.factors or {}),
            "decision": r.decision,
            "reasons": r.reasons,
            "waived": list(r.waived or []),
            "assessed_by": r.assessed_by,
            "assessed_at": r.assessed_at.isoformat(),
        }
        for r in rows
    ]


def safe_harbour_decisions(session: Session, incident_id: str) -> list[dict[str, Any]]:
    return [
        {
            "tenant_id": r.tenant_id,
            "applies": r.applies,
            "encrypted_resource_types": r.encrypted_resource_types,
            "reason": r.reason,
            "decided_by": r.decided_by,
            "decided_at": r.decided_at.isoformat(),
        }
        for r in session.scalars(select(SafeHarbourRow).where(SafeHarbourRow.incident_id == incident_id))
    ]


def contact_gaps(session: Session, incident_id: str) -> list[dict[str, Any]]:
    return [
        {
            "tenant_id": r.tenant_id,
            "missing": r.missing,
            "note": r.note,
            "recorded_by": r.recorded_by,
            "recorded_at": r.recorded_at.isoformat(),
        }
        for r in session.scalars(select(ContactGapRow).where(ContactGapRow.incident_id == incident_id))
    ]
