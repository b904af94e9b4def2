"""Register entries: every confirmed breach, notified or not.

An entry is read from the records the workflow keeps (the confirmation and moments, the blast
radius, each tenant's notice and its duties and jurisdictions, risk-of-harm assessments,
law-enforcement delays, safe-harbour decisions) plus what a person wrote in the register
itself (facts, effects, remedial action). Until someone writes those, the notice's own summary,
cause and the measures marked done stand in, so no entry is ever blank.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from breachwatch.core.clock import utcnow
from breachwatch.incidents.tables import IncidentRow
from breachwatch.notifier.duties import annual_logs
from breachwatch.notifier.notices import blast_radius
from breachwatch.notifier.notices.decisions import assessments, contact_gaps, delays, safe_harbour_decisions
from breachwatch.notifier.notices.law_context import law_context
from breachwatch.notifier.notices.models import NoticeConfirmationRow, NoticeDutyRow, NoticeRow, NoticeVersionRow
from breachwatch.notifier.notices.moments import moment_rows, moments
from breachwatch.notifier.notices.service import NoticeError, NoticeNotFound, audit_event, first_sent_at
from breachwatch.notifier.register.models import ArchivedEntryRow, RegisterEntryRow
from breachwatch.notifier.register.retention import retention_for

FIELDS: tuple[str, ...] = ("facts", "effects", "remedial_action")
MAX_FIELD = 20_000
ANNUAL_LOG_RULE = "us-hipaa.hhs-annual-log"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _notice_facts(session: Session, notice: NoticeRow) -> dict[str, Any]:
    version = session.get(NoticeVersionRow, (notice.notice_id, notice.current_version))
    return dict(version.facts) if version is not None else {}


def _written(session: Session, incident_id: str, notices: list[NoticeRow]) -> dict[str, Any]:
    """What the register says of facts, effects and remedial action, and who wrote it."""
    row = session.get(RegisterEntryRow, incident_id)
    if row is not None:
        return {
            "facts": row.facts,
            "effects": row.effects,
            "remedial_action": row.remedial_action,
            "written_by": row.updated_by,
            "written_at": _iso(row.updated_at),
        }
    # Nothing written yet: the notices' own words stand in.
    facts = [_notice_facts(session, n) for n in notices]
    summary = "; ".join(dict.fromkeys(str(f.get(k) or "") for f in facts for k in ("summary", "cause") if f.get(k)))
    done = [m for f in facts for m in f.get("measures") or [] if m.get("done")]
    return {
        "facts": summary,
        "effects": "; ".join(
            dict.fromkeys(str(f.get("consequences_note") or "") for f in facts if f.get("consequences_note"))
        ),
        "remedial_action": "; ".join(dict.fromkeys(str(m.get("text") or m.get("key")) for m in done)),
        "written_by": None,
        "written_at": None,
    }


def _latest_assessments(items: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    latest: dict[tuple[str, str, str], dict[str, Any]] = {}
    for a in items:
        latest[(a["tenant_id"], a["jurisdiction"], a["owner"])] = a
    return latest


def _tenant(
    session: Session, notice: NoticeRow, radius: Mapping[str, Any] | None, latest: Mapping, now: datetime
) -> dict[str, Any]:
    impact = next((t for t in (radius or {}).get("tenants", []) if t["tenant_id"] == notice.tenant_id), {})
    law = law_context(session, notice.notice_id, now)
    sent = first_sent_at(session, notice.notice_id)
    return {
        "tenant_id": notice.tenant_id,
        "tenant_name": notice.tenant_name,
        "jurisdiction": notice.jurisdiction,
        "notice_id": notice.notice_id,
        "notice_status": notice.status,
        "notified": sent is not None,
        "notified_at": _iso(sent),
        "records": impact.get("records"),
        "subjects": impact.get("subjects"),
        "data_categories": list(impact.get("data_categories") or []),
        "uncategorised": list(impact.get("uncategorised") or []),
        "jurisdictions": [
            {
                **j,
                "assessments": {
                    owner: latest.get((notice.tenant_id, j["code"], owner)) for owner in ("vendor", "customer")
                },
            }
            for j in law["jurisdictions"]
        ],
        "waived": law["waived"],
        "holds": law["holds"],
    }


def _regimes(session: Session, notices: list[NoticeRow], tenants: list[dict[str, Any]]) -> set[str]:
    """The regimes that concern a breach: those with a duty here, or one lifted or undecided."""
    ids = {
        d.rule_id.split(":")[0]
        for d in session.scalars(
            select(NoticeDutyRow).where(NoticeDutyRow.notice_id.in_([n.notice_id for n in notices]))
        )
    }
    for t in tenants:
        for j in t["jurisdictions"]:
            ids |= {e["rule_id"] for e in (*j["exempted"], *j["undecided"])}
    return {i.split(".")[0] for i in ids}


def entry(session: Session, incident_id: str, *, now: datetime | None = None) -> dict[str, Any]:
    """The register entry of one confirmed breach."""
    now = now or utcnow()
    confirmation = session.get(NoticeConfirmationRow, incident_id)
    incident = session.get(IncidentRow, incident_id)
    if confirmation is None or incident is None:
        raise NoticeNotFound(f"incident {incident_id!r} is not a confirmed breach")
    notices = list(
        session.scalars(select(NoticeRow).where(NoticeRow.incident_id == incident_id).order_by(NoticeRow.tenant_id))
    )
    radius = blast_radius(session, incident_id)
    history = assessments(session, incident_id)
    latest = _latest_assessments(history)
    tenants = [_tenant(session, n, radius, latest, now) for n in notices]
    recorded = moments(session, incident_id)
    lines, keep_until, open_ended = retention_for(_regimes(session, notices, tenants), recorded)
    return {
        "incident_id": incident_id,
        "kind": incident.kind,
        "title": incident.title,
        "confirmed_at": _iso(confirmation.confirmed_at),
        "confirmed_by": confirmation.confirmed_by,
        "moments": moment_rows(session, incident_id),
        "window_start": (radius or {}).get("window_start"),
        "window_end": (radius or {}).get("window_end"),
        **_written(session, incident_id, notices),
        "notified": any(t["notified"] for t in tenants),
        "tenants": tenants,
        "assessments": history,
        "delays": delays(session, incident_id),
        "safe_harbour": safe_harbour_decisions(session, incident_id),
        "contact_gaps": contact_gaps(session, incident_id),
        "retention": lines,
        "keep_until": _iso(keep_until),
        "keep_until_decided_by_person": open_ended,
    }


def confirmed_incidents(session: Session) -> list[str]:
    """Every confirmed breach, oldest confirmation first."""
    return list(
        session.scalars(
            select(NoticeConfirmationRow.incident_id).order_by(
                NoticeConfirmationRow.confirmed_at, NoticeConfirmationRow.incident_id
            )
        )
    )


def entries(
    session: Session,
    *,
    notified: bool | None = None,
    tenant_id: str | None = None,
    since: datetime | None = None,
    now: datetime | None = None,
) -> list[dict[str, Any]]:
    """Register entries, oldest first; ``notified`` keeps only breaches notified (or not).
    Entries of breaches whose incident was erased come as they were frozen (``archived``)."""
    out = []
    live = [entry(session, incident_id, now=now) for incident_id in confirmed_incidents(session)]
    frozen = [
        dict(r.document) for r in session.scalars(select(ArchivedEntryRow).order_by(ArchivedEntryRow.archived_at))
    ]
    for e in sorted([*live, *frozen], key=lambda e: (e["confirmed_at"] or "", e["incident_id"])):
        if notified is not None and e["notified"] != notified:
            continue
        if tenant_id and tenant_id not in {t["tenant_id"] for t in e["tenants"]}:
            continue
        if since and datetime.fromisoformat(e["confirmed_at"]) < since:
            continue
        out.append(e)
    return out


def write(
    session: Session,
    incident_id: str,
    *,
    by: str,
    facts: str | None = None,
    effects: str | None = None,
    remedial_action: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Write the register's account of a breach (facts, effects, remedial action); audited."""
    now = now or utcnow()
    if session.get(NoticeConfirmationRow, incident_id) is None:
        raise NoticeNotFound(f"incident {incident_id!r} is not a confirmed breach")
    given = {"facts": facts, "effects": effects, "remedial_action": remedial_action}
    changes = {k: v.strip() for k, v in given.items() if v is not None}
    if not changes:
        raise NoticeError("nothing to write: give facts, effects or remedial action")
    too_long = [k for k, v in changes.items() if len(v) > MAX_FIELD]
    if too_long:
        raise NoticeError(f"{', '.join(too_long)} longer than {MAX_FIELD} characters")
    row = session.get(RegisterEntryRow, incident_id)
    if row is None:
        current = _written(
            session, incident_id, list(session.scalars(select(NoticeRow).where(NoticeRow.incident_id == incident_id)))
        )
        row = RegisterEntryRow(incident_id=incident_id, updated_by=by, **{k: current[k] for k in FIELDS})
        session.add(row)
    before = {k: getattr(row, k) for k in changes}
    for name, value in changes.items():
        setattr(row, name, value)
    row.updated_by, row.updated_at = by, now
    session.flush()
    audit_event(
        session,
        incident_id=incident_id,
        notice_id=None,
        actor=by,
        action="register_written",
        detail={"fields": sorted(changes), "before": before},
        at=now,
    )
    return entry(session, incident_id, now=now)


def hipaa_annual_logs(session: Session) -> list[dict[str, Any]]:
    """Per covered entity (tenant), its breaches logged for HHS (fewer than 500 affected), grouped
    by the local calendar year of discovery, with each year's report due (45 CFR 164.408(c))."""
    by_tenant: dict[tuple[str, str], list[tuple[datetime, str]]] = {}
    rows = session.execute(
        select(NoticeRow, NoticeDutyRow)
        .join(NoticeDutyRow, NoticeDutyRow.notice_id == NoticeRow.notice_id)
        .where(NoticeDutyRow.rule_id == ANNUAL_LOG_RULE, NoticeDutyRow.active.is_(True))
    ).all()
    for notice, _ in rows:
        discovered = moments(session, notice.incident_id).get("detected")
        if discovered is not None:
            by_tenant.setdefault((notice.tenant_id, notice.jurisdiction), []).append((discovered, notice.incident_id))
    out = []
    for (tenant_id, jurisdiction), found in sorted(by_tenant.items()):
        for log in annual_logs([at for at, _ in found], jurisdiction):
            breaches = [i for at, i in found if at in log.breaches]
            out.append(
                {
                    "tenant_id": tenant_id,
                    "jurisdiction": jurisdiction,
                    "year": log.year,
                    "due_at": log.due_at.isoformat(),
                    "due_last_day": log.due_last_day.isoformat() if log.due_last_day else None,
                    "due_zone": log.due_zone,
                    "incidents": sorted(dict.fromkeys(breaches)),
                }
            )
    return out
