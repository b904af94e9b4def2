"""A notice's duties, as the law starts and counts them, worked out and stored.

For one tenant of a confirmed breach: the recorded moments (each duty's clock at its own
anchor), the tenant's configured traits (and the vendor's towards it), the legal data
categories of the records reached (and the resource types the map does not know), where the
tenant's data subjects live (the directory's ``data_subjects_by_jurisdiction``, else the
notices file), the encryption safe harbour (configured, or a person's decision for this
breach), missing contact details, law-enforcement delays and no-notify decisions. The engine
(``notifier.duties.assess``) is asked once for the vendor (processor) and once for the
customer (controller); the result is stored as the notice's duties, one row per duty, and one
row per jurisdiction with its head count, undecided duties, advisories and exemptions.

Works in the caller's transaction and never commits.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from breachwatch.core.events import Tenant
from breachwatch.notifier import blast_radius as br
from breachwatch.notifier.duties import (
    Assessment,
    CategoryMap,
    DelayRequest,
    Duty,
    Hold,
    RuleSet,
    assess,
    hold,
)
from breachwatch.notifier.notices import moments
from breachwatch.notifier.notices.config import NoticeConfig
from breachwatch.notifier.notices.models import NoticeConfirmationRow, NoticeDutyRow, NoticeRow
from breachwatch.notifier.notices.records import (
    ContactGapRow,
    DelayRow,
    HarmAssessmentRow,
    JurisdictionRow,
    SafeHarbourRow,
)
from breachwatch.notifier.notices.tenant_facts import TenantFacts

CUSTOMER_SUFFIX = ":customer"  # a rule binding both roles is stored twice: the customer's copy has this


def stored_rule_id(duty: Duty, owner: str, vendor_ids: set[str]) -> str:
    """The key a duty is stored under: its rule id (a customer duty that the vendor owes too gets a suffix)."""
    return f"{duty.rule_id}{CUSTOMER_SUFFIX}" if owner == "customer" and duty.rule_id in vendor_ids else duty.rule_id


# --- the facts ---------------------------------------------------------------------------------


def _reached(impact: br.TenantImpact) -> list[br.CategoryCount]:
    return [c for c in impact.categories if c.records > 0 or set(c.actions) & (br.ALTERING | br.REMOVING)]


def unencrypted(
    session: Session, incident_id: str, impact: br.TenantImpact, facts: TenantFacts, category_map: CategoryMap
) -> tuple[frozenset[str] | None, tuple[str, ...], list[str]]:
    """(categories of the data not encrypted, its unmapped types, the encrypted resource types),
    or None when no safe harbour is claimed. A person's decision for this breach wins over the
    configuration; categories a person added by correction count as unencrypted."""
    decision = session.get(SafeHarbourRow, (incident_id, impact.tenant_id))
    if decision is not None and not decision.applies:
        return None, (), []
    chosen = None if decision is None else decision.encrypted_resource_types

    def encrypted(resource_type: str) -> bool:
        return resource_type in chosen if chosen is not None else facts.is_encrypted(resource_type)

    reached = _reached(impact)
    protected = sorted({c.resource_type for c in reached if encrypted(c.resource_type)})
    if not protected:
        return None, (), []
    plain = category_map.classify((c.resource_type, c.sensitivity) for c in reached if not encrypted(c.resource_type))
    derived = category_map.classify((c.resource_type, c.sensitivity) for c in reached).categories
    added = set(impact.data_categories) - derived
    return frozenset((plain.categories & set(impact.data_categories)) | added), plain.uncategorised, protected


def delay_requests(session: Session, incident_id: str) -> list[DelayRequest]:
    """The incident's recorded law-enforcement requests, as the engine reads them."""
    return [
        DelayRequest(
            ref=r.delay_id,
            requested_by=r.requested_by,  # type: ignore[arg-type]
            form=r.form,  # type: ignore[arg-type]
            requested_at=r.requested_at,
            until=r.until,
            lifted_at=r.lifted_at,
        )
        for r in session.scalars(
            select(DelayRow).where(DelayRow.incident_id == incident_id).order_by(DelayRow.requested_at)
        )
    ]


def no_notify_decisions(session: Session, incident_id: str, tenant_id: str) -> dict[tuple[str, str], HarmAssessmentRow]:
    """The latest assessment per (owner, jurisdiction) of a tenant's breach."""
    latest: dict[tuple[str, str], HarmAssessmentRow] = {}
    for row in session.scalars(
        select(HarmAssessmentRow)
        .where(HarmAssessmentRow.incident_id == incident_id, HarmAssessmentRow.tenant_id == tenant_id)
        .order_by(HarmAssessmentRow.assessed_at, HarmAssessmentRow.id)
    ):
        latest[(row.owner, row.jurisdiction)] = row
    return latest


def _moments(session: Session, incident_id: str) -> dict[str, datetime]:
    """The incident's moments; a breach confirmed before moments were recorded gets them now,
    from its confirmation (the same as confirming it today would record)."""
    recorded = moments.moments(session, incident_id)
    confirmation = session.get(NoticeConfirmationRow, incident_id)
    if recorded or confirmation is None:
        return recorded
    return moments.record_confirmation(
        session,
        incident_id,
        confirmed_at=confirmation.confirmed_at,
        confirmed_by=confirmation.confirmed_by,
        now=confirmation.recorded_at or confirmation.confirmed_at,
    )


def _population(tenant: Tenant | None, facts: TenantFacts) -> Mapping[str, int] | None:
    recorded = tenant.data_subjects_by_jurisdiction if tenant is not None else None
    return recorded or facts.data_subjects_by_jurisdiction or None


def assess_tenant(
    session: Session,
    notice: NoticeRow,
    impact: br.TenantImpact,
    tenant: Tenant | None,
    config: NoticeConfig,
    rules: RuleSet | None = None,
) -> tuple[Assessment, Assessment, list[str]]:
    """(the vendor's assessment as processor, the customer's as controller, encrypted resource types)."""
    facts = config.facts_for(notice.tenant_id)
    plain, plain_unknown, protected = unencrypted(session, notice.incident_id, impact, facts, facts.category_map())
    gap = session.get(ContactGapRow, (notice.incident_id, notice.tenant_id))
    common: dict[str, Any] = {
        "moments": _moments(session, notice.incident_id),
        "data_categories": impact.data_categories,
        "uncategorised": impact.uncategorised,
        "affected_subjects": impact.subjects,
        "data_subjects": tenant.data_subjects if tenant is not None else None,
        "data_subjects_by_jurisdiction": _population(tenant, facts),
        "unencrypted_categories": plain,
        "unencrypted_uncategorised": plain_unknown if plain is not None else None,
        "contacts_missing": gap.missing if gap is not None else None,
        "rules": rules,
    }
    vendor = assess(
        notice.jurisdiction,
        role="processor",
        traits=dict(facts.vendor_traits),
        tenant_overrides=config.overrides_for(notice.tenant_id),
        **common,
    )
    customer = assess(notice.jurisdiction, role="controller", traits=dict(facts.traits), **common)
    return vendor, customer, protected


# --- storing -----------------------------------------------------------------------------------


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _hold_record(holds: Sequence[Hold]) -> dict[str, Any]:
    if not holds:
        return {}
    return {
        "holds": [
            {
                "ref": h.ref,
                "provision": h.provision,
                "start": h.start.isoformat(),
                "end": _iso(h.end),
                "capped": h.capped,
            }
            for h in holds
        ],
        "original_due_at": _iso(holds[0].original_due_at),
        "original_target_at": _iso(holds[0].original_target_at),
    }


def _waiver(
    duty: Duty, owner: str, codes: Sequence[str], decisions: Mapping[tuple[str, str], HarmAssessmentRow]
) -> dict[str, Any]:
    # Waived only where every jurisdiction the duty serves decided not to notify and named it.
    found = [decisions.get((owner, code)) for code in codes]
    if not found or any(d is None or d.decision != "no_notify" or duty.rule_id not in d.waived for d in found):
        return {}
    last = max(found, key=lambda d: d.assessed_at)  # type: ignore[union-attr]
    assert last is not None
    return {
        "assessment_id": last.id,
        "by": last.assessed_by,
        "at": last.assessed_at.isoformat(),
        "reasons": last.reasons,
        "jurisdictions": list(codes),
    }


def _values(duty: Duty, owner: str, codes: Sequence[str], holds: Sequence[Hold], waived: Mapping[str, Any]) -> dict:
    return {
        "owner": owner,
        "title": duty.title,
        "whom_kind": duty.whom.kind,
        "whom": duty.whom.name,
        "provision": duty.provision,
        "regime": duty.regime_name,
        "basis": duty.basis,
        "deadline_text": duty.deadline.text,
        "deadline_unit": duty.deadline.unit,
        "deadline_amount": duty.deadline.amount,
        "clock_started_at": duty.clock_started_at,
        "due_at": duty.due_at,
        "target_at": duty.target_at,
        "conditions": list(duty.conditions),
        "required_elements": list(duty.required_elements),
        "active": True,
        "clock_start": duty.clock_start,
        "clock_start_text": duty.clock_start_text or "",
        "moment_used": duty.moment_used,
        "moment_is_fallback": duty.moment_is_fallback,
        "due_last_day": duty.due_last_day if not holds else None,
        "due_zone": duty.due_zone if not holds else None,
        "jurisdictions": list(codes),
        "hold": _hold_record(holds),
        "substitute": duty.substitute.model_dump(mode="json") if duty.substitute is not None else {},
        "waived": dict(waived),
    }


def _where(assessment: Assessment) -> dict[str, list[str]]:
    codes: dict[str, list[str]] = {}
    for block in assessment.jurisdictions:
        for duty in block.duties:
            codes.setdefault(duty.rule_id, []).append(block.jurisdiction)
    return codes


def store(
    session: Session,
    notice: NoticeRow,
    vendor: Assessment,
    customer: Assessment,
    *,
    requests: Sequence[DelayRequest] = (),
    decisions: Mapping[tuple[str, str], HarmAssessmentRow] | None = None,
) -> bool:
    """Store both assessments as the notice's duties and jurisdictions; whether anything changed."""
    decisions = decisions or {}
    existing = {
        d.rule_id: d for d in session.scalars(select(NoticeDutyRow).where(NoticeDutyRow.notice_id == notice.notice_id))
    }
    before = {k: _snapshot(r) for k, r in existing.items() if r.active}
    vendor_ids = {d.rule_id for d in vendor.duties()}
    wanted: set[str] = set()
    for owner, assessment in (("vendor", vendor), ("customer", customer)):
        where = _where(assessment)
        for duty in assessment.duties():
            key = stored_rule_id(duty, owner, vendor_ids)
            wanted.add(key)
            held, holds = hold(duty, requests)
            codes = where.get(duty.rule_id, [])
            values = _values(held, owner, codes, holds, _waiver(duty, owner, codes, decisions))
            row = existing.get(key)
            if row is None:
                session.add(NoticeDutyRow(notice_id=notice.notice_id, rule_id=key, **values))
            else:
                for name, value in values.items():
                    setattr(row, name, value)
    for key, row in existing.items():
        if key not in wanted:
            row.active = False  # a correction took the duty away (e.g. fewer people than a threshold)
    session.flush()
    after = {
        d.rule_id: _snapshot(d)
        for d in session.scalars(
            select(NoticeDutyRow).where(NoticeDutyRow.notice_id == notice.notice_id, NoticeDutyRow.active.is_(True))
        )
    }
    blocks_changed = _store_jurisdictions(session, notice.notice_id, vendor, customer)
    return before != after or blocks_changed


def _snapshot(row: NoticeDutyRow) -> tuple[Any, ...]:
    return (
        row.owner,
        row.due_at,
        row.target_at,
        row.clock_started_at,
        row.moment_used,
        row.moment_is_fallback,
        tuple(row.conditions or ()),
        tuple(row.jurisdictions or ()),
        repr(row.hold),
        repr(row.substitute),
        repr(row.waived),
    )


def _entries(items: Iterable[Any], fields: Sequence[str]) -> list[dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        data = item.model_dump(mode="json")
        out.setdefault(f"{data['rule_id']}|{data.get('role', '')}", {k: data[k] for k in fields if k in data})
    return list(out.values())


def _store_jurisdictions(session: Session, notice_id: str, vendor: Assessment, customer: Assessment) -> bool:
    existing = {
        r.jurisdiction: r
        for r in session.scalars(select(JurisdictionRow).where(JurisdictionRow.notice_id == notice_id))
    }
    before = {k: _block_snapshot(r) for k, r in existing.items()}
    blocks = {b.jurisdiction: [b] for b in vendor.jurisdictions}
    for b in customer.jurisdictions:
        blocks.setdefault(b.jurisdiction, []).append(b)
    for position, (code, pair) in enumerate(blocks.items()):
        values = {
            "position": position,
            "affected_low": pair[0].affected.low,
            "affected_high": pair[0].affected.high,
            "duties": sorted({d.rule_id for b in pair for d in b.duties}),
            "undecided": _entries(
                (u for b in pair for u in b.undecided), ("rule_id", "title", "role", "missing", "listed")
            ),
            "advisories": _entries(
                (a for b in pair for a in b.advisories), ("rule_id", "title", "provision", "text", "regime_name")
            ),
            "exempted": _entries(
                (e for b in pair for e in b.exempted), ("rule_id", "title", "role", "provision", "text")
            ),
        }
        row = existing.pop(code, None)
        if row is None:
            session.add(JurisdictionRow(notice_id=notice_id, jurisdiction=code, **values))
        else:
            for name, value in values.items():
                setattr(row, name, value)
    for row in existing.values():
        session.delete(row)  # a jurisdiction no longer concerned (the directory changed)
    session.flush()
    after = {
        r.jurisdiction: _block_snapshot(r)
        for r in session.scalars(select(JurisdictionRow).where(JurisdictionRow.notice_id == notice_id))
    }
    return before != after


def _block_snapshot(row: JurisdictionRow) -> tuple[Any, ...]:
    lists = (row.duties, row.undecided, row.advisories, row.exempted)
    return (row.position, row.affected_low, row.affected_high, *map(repr, lists))


def assess_and_store(
    session: Session,
    notice: NoticeRow,
    impact: br.TenantImpact,
    tenant: Tenant | None,
    config: NoticeConfig,
    rules: RuleSet | None = None,
) -> bool:
    """Work out a notice's duties from everything recorded and store them; whether they changed."""
    vendor, customer, _ = assess_tenant(session, notice, impact, tenant, config, rules)
    return store(
        session,
        notice,
        vendor,
        customer,
        requests=delay_requests(session, notice.incident_id),
        decisions=no_notify_decisions(session, notice.incident_id, notice.tenant_id),
    )
