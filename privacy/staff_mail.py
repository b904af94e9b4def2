"""What tenants are sent about staff access: the approvers' request for a decision, and the
monthly summary of the transparency log to the security contact, in the tenant's language.

Both go through the outbox (``notifier.outbox.queue_message``) under ids that name what they
are about (a request and an approver; a tenant, a month and a recipient), so queuing one again
changes nothing: a summary is sent once per tenant and month, however often it is asked for.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from breachwatch.core.clock import utcnow
from breachwatch.core.events import Tenant
from breachwatch.core.ids import stable_id
from breachwatch.core.settings import Settings
from breachwatch.notifier.notices import load_notice_config, tenant_record
from breachwatch.notifier.notices.content import notice_renderer
from breachwatch.notifier.outbox import queue_message
from breachwatch.privacy.approvals import (
    AccessRequestIn,
    AccessRequestRow,
    ApprovalError,
    ApprovalPolicyRow,
    approval_links,
    file_request,
    policy_in_force,
)
from breachwatch.privacy.transparency import StaffAccessRow, StaffIdentity, data_categories, identity_from, iter_rows
from breachwatch.storage import audit

ACCESS_REQUEST = "access_request"
TRANSPARENCY_SUMMARY = "transparency_summary"
UNJUSTIFIED_LISTED = 20  # accesses a summary lists one by one; the rest are counted
# Who at the tenant gets the summary: its security contact, else its DPO, else its owner.
SUMMARY_ROLES = ("security", "dpo", "owner")


def _tenant_context(session: Session, tenant_id: str) -> tuple[Tenant | None, dict[str, str]]:
    tenant = tenant_record(session, tenant_id)
    return tenant, {"id": tenant_id, "name": tenant.name if tenant else tenant_id}


# --- approvers' request -----------------------------------------------------------------------


def ask_approvers(
    session: Session,
    row: AccessRequestRow,
    tokens: dict[str, str],
    policy: ApprovalPolicyRow,
    settings: Settings,
    *,
    now: datetime | None = None,
) -> list[str]:
    """Queue the e-mail that asks each of the tenant's approvers to decide, each with their own
    link; the message ids."""
    if not settings.console_public_url:
        raise ApprovalError(
            "BREACHWATCH_CONSOLE_PUBLIC_URL is not set: approvers' links need the console's public address"
        )
    identity = identity_from(settings)
    tenant, tenant_ctx = _tenant_context(session, row.tenant_id)
    locale = policy.locale or (tenant.locale if tenant else None)
    names = row.staff_names or {}
    request = {
        "request_id": row.request_id,
        "staff": [identity.label(row.tenant_id, s, names.get(s), None) for s in row.staff_ids],
        "purpose": row.purpose,
        "ticket_id": row.ticket_id,
        "reason": row.reason,
        "starts_at": row.starts_at,
        "ends_at": row.ends_at,
        "expires_at": row.expires_at,
    }
    vendor = load_notice_config(settings).vendor.as_context()
    base = settings.console_public_url.rstrip("/")
    queued = []
    for address, token in tokens.items():
        context = {
            "tenant": tenant_ctx,
            "vendor": vendor,
            "request": request,
            "link": f"{base}/access-requests/{token}",
        }
        rendered = notice_renderer().render(ACCESS_REQUEST, locale, context)
        message_id = f"access-request:{row.request_id}:{stable_id(address, length=12)}"
        if queue_message(
            session, message_id=message_id, message_type=ACCESS_REQUEST, recipient=address, rendered=rendered, now=now
        ):
            queued.append(message_id)
    return queued


def file_and_ask(
    session: Session, req: AccessRequestIn, actor: str, settings: Settings, *, now: datetime | None = None
) -> AccessRequestRow:
    """File an access request and ask the tenant's approvers, in the caller's transaction:
    the request is stored only if the e-mails are queued with it."""
    if not settings.console_public_url:
        raise ApprovalError(
            "BREACHWATCH_CONSOLE_PUBLIC_URL is not set: approvers' links need the console's public address"
        )
    row, tokens, policy = file_request(session, req, actor, approval_links(settings), now=now)
    ask_approvers(session, row, tokens, policy, settings, now=now)
    return row


# --- the monthly summary ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Month:
    """A calendar month in UTC: [start, end)."""

    year: int
    month: int

    @classmethod
    def parse(cls, text: str) -> Month:
        try:
            d = datetime.strptime(text, "%Y-%m")
        except ValueError:
            raise ValueError(f"{text!r} is not a month (YYYY-MM)") from None
        return cls(d.year, d.month)

    @classmethod
    def before(cls, when: datetime) -> Month:
        """The month before the one ``when`` falls in."""
        return cls(when.year - 1, 12) if when.month == 1 else cls(when.year, when.month - 1)

    @property
    def start(self) -> datetime:
        return datetime(self.year, self.month, 1, tzinfo=UTC)

    @property
    def end(self) -> datetime:
        return datetime(self.year + self.month // 12, self.month % 12 + 1, 1, tzinfo=UTC)

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"


def summarise(session: Session, tenant_id: str, month: Month, identity: StaffIdentity) -> dict[str, Any]:
    """The month's staff accesses to the tenant, counted the ways the summary tells them."""
    total = justified = records = 0
    by_purpose: dict[str | None, list[int]] = {}
    by_staff: dict[str, dict[str, Any]] = {}
    by_category: Counter[str] = Counter()
    unjustified: list[dict[str, Any]] = []
    unjustified_n = 0
    for row in iter_rows(session, tenant_id, since=month.start, until=month.end):
        total += 1
        records += row.records
        justified += row.justified
        p = by_purpose.setdefault(row.purpose, [0, 0])
        p[0], p[1] = p[0] + 1, p[1] + row.records
        label = identity.label(tenant_id, row.staff_id, row.staff_name, row.staff_team)
        m = by_staff.setdefault(
            label, {"staff": label, "team": row.staff_team, "country": row.office_country, "accesses": 0, "records": 0}
        )
        m["accesses"] += 1
        m["records"] += row.records
        for c in data_categories(row.resource_type, row.sensitivity):
            by_category[c] += row.records
        if not row.justified:
            unjustified_n += 1
            if len(unjustified) < UNJUSTIFIED_LISTED:
                unjustified.append(_unjustified(row, label))
    policy = policy_in_force(session, tenant_id, month.end) or policy_in_force(session, tenant_id, month.start)
    return {
        "total": total,
        "justified": justified,
        "unjustified": unjustified_n,
        "records": records,
        "by_purpose": [
            {"purpose": k, "accesses": v[0], "records": v[1]}
            for k, v in sorted(by_purpose.items(), key=lambda kv: (-kv[1][0], kv[0] or ""))
        ],
        "by_staff": sorted(by_staff.values(), key=lambda m: (-m["accesses"], m["staff"])),
        "by_category": [{"category": c, "records": n} for c, n in sorted(by_category.items(), key=lambda kv: -kv[1])],
        "unjustified_list": unjustified,
        "approval_required": policy is not None,
        "requests": _requests(session, tenant_id, month) if policy is not None else None,
    }


def _unjustified(row: StaffAccessRow, label: str) -> dict[str, Any]:
    problems = row.problems or [{"code": "no_ticket"}]
    return {
        "ts": row.ts,
        "staff": label,
        "action": row.action,
        "records": row.records,
        "resource_type": row.resource_type,
        "problem": problems[0]["code"],
    }


def _requests(session: Session, tenant_id: str, month: Month) -> dict[str, int]:
    counts = dict.fromkeys(("pending", "approved", "denied", "expired", "revoked"), 0)
    for state in session.scalars(
        select(AccessRequestRow.state).where(
            AccessRequestRow.tenant_id == tenant_id,
            AccessRequestRow.filed_at >= month.start,
            AccessRequestRow.filed_at < month.end,
        )
    ):
        counts[state] = counts.get(state, 0) + 1
    return counts


def summary_recipients(tenant: Tenant | None) -> list[tuple[str, str | None]]:
    """(address, locale) of the tenant's security contacts, else its DPOs, else its owners."""
    if tenant is None:
        return []
    for role in SUMMARY_ROLES:
        found = [(c.email, c.locale or tenant.locale) for c in tenant.contacts if c.role == role]
        if found:
            return found
    return []


def queue_summary(
    session: Session, tenant_id: str, month: Month, settings: Settings, *, now: datetime | None = None
) -> list[str]:
    """Queue the tenant's summary of ``month`` to its security contact; the ids newly queued
    (none if it was queued before, or the tenant's directory entry names nobody to send it to)."""
    now = now or utcnow()
    identity = identity_from(settings)
    tenant, tenant_ctx = _tenant_context(session, tenant_id)
    context = {
        "tenant": tenant_ctx,
        "vendor": load_notice_config(settings).vendor.as_context(),
        "period": {"start": month.start, "end": month.end, "year": month.year, "month": month.month},
        "summary": summarise(session, tenant_id, month, identity),
    }
    queued = []
    for address, locale in summary_recipients(tenant):
        rendered = notice_renderer().render(TRANSPARENCY_SUMMARY, locale, context)
        message_id = f"transparency:{stable_id(tenant_id, length=16)}:{month}:{stable_id(address, length=12)}"
        if queue_message(
            session,
            message_id=message_id,
            message_type=TRANSPARENCY_SUMMARY,
            recipient=address,
            rendered=rendered,
            now=now,
        ):
            queued.append(message_id)
    if queued:
        detail = {"month": str(month), "accesses": context["summary"]["total"], "recipients": len(queued)}
        audit.record(session, audit.SYSTEM_ACTOR, "transparency.summary", f"tenant:{tenant_id}", detail, at=now)
    return queued


def tenants_to_summarise(session: Session, month: Month) -> list[str]:
    """Tenants with staff accesses in ``month``, and tenants that required approval in it."""
    found = set(
        session.scalars(
            select(StaffAccessRow.tenant_id)
            .where(StaffAccessRow.ts >= month.start, StaffAccessRow.ts < month.end)
            .distinct()
        )
    )
    for p in session.scalars(select(ApprovalPolicyRow)):
        if p.since < month.end and (p.until is None or p.until > month.start):
            found.add(p.tenant_id)
    return sorted(found)


def queue_month(session: Session, month: Month, settings: Settings, *, now: datetime | None = None) -> dict[str, int]:
    """Queue every due summary of ``month``; per tenant, how many messages were newly queued."""
    return {t: len(queue_summary(session, t, month, settings, now=now)) for t in tenants_to_summarise(session, month)}


def month_due(now: datetime) -> Month | None:
    """The month whose summaries are due at ``now``: the last one, from the second day of this
    one (a day for late events and settling accesses to reach the log)."""
    return Month.before(now) if now.date() >= date(now.year, now.month, 2) else None
