"""Silences: an owner's decision, with a reason and an expiry, that matching incidents are
recorded but not paged (a known pentest, a migration that trips a rule).

A silence matches an incident when every matcher it sets matches: the actor is one of the
incident's actors, the tenant one of its tenants, the kind equal, the address (or network,
``198.51.100.0/24``) one of its source addresses. A silence must set at least one matcher
and must expire; its owner is reminded before it does, so nothing stays silenced by oversight.
"""

from __future__ import annotations

import ipaddress
import logging
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from breachwatch.core.clock import utcnow
from breachwatch.core.ids import stable_id
from breachwatch.incidents.tables import IncidentRow
from breachwatch.notifier.message import header_text, one_line
from breachwatch.notifier.outbox import queue_message
from breachwatch.notifier.render import Rendered
from breachwatch.storage import audit
from breachwatch.storage.db import Base

log = logging.getLogger(__name__)

MAX_DURATION = timedelta(days=90)
REMINDER_TYPE = "silence_reminder"


class SilenceError(ValueError):
    """A silence that cannot be created or changed as asked."""


class SilenceRow(Base):
    """One silence: what it matches, who owns it, why, and until when."""

    __tablename__ = "silences"

    silence_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime] = mapped_column(index=True)
    actor_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    tenant_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    kind: Mapped[str | None] = mapped_column(String(64), nullable=True)
    ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    expired_at: Mapped[datetime | None] = mapped_column(nullable=True)
    expired_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    reminder_queued_at: Mapped[datetime | None] = mapped_column(nullable=True)

    @property
    def matchers(self) -> dict[str, str]:
        """The matchers this silence sets, by name."""
        pairs = {"actor": self.actor_id, "tenant": self.tenant_id, "kind": self.kind, "ip": self.ip}
        return {k: v for k, v in pairs.items() if v}

    def active(self, at: datetime) -> bool:
        return self.expired_at is None and self.starts_at <= at < self.ends_at

    def matches(self, incident: IncidentRow) -> bool:
        """True if every matcher this silence sets matches the incident."""
        if self.actor_id and self.actor_id not in (incident.actor_ids or []):
            return False
        if self.tenant_id and self.tenant_id not in (incident.tenant_ids or []):
            return False
        if self.kind and self.kind != incident.kind:
            return False
        return not (self.ip and not _ip_matches(self.ip, incident.source_ips or []))


def _ip_matches(matcher: str, addresses: Sequence[str]) -> bool:
    net = ipaddress.ip_network(matcher, strict=False)
    for a in addresses:
        try:
            if ipaddress.ip_address(a) in net:
                return True
        except ValueError:
            continue  # an address field the ERP filled with something else
    return False


def _clean(value: str | None, name: str, limit: int) -> str | None:
    if value is None or not value.strip():
        return None
    value = value.strip()
    if len(value) > limit or any(c.isspace() for c in value):
        raise SilenceError(f"{name} must be one word of at most {limit} characters")
    return value


def add(
    session: Session,
    owner: str,
    reason: str,
    ends_at: datetime,
    *,
    actor_id: str | None = None,
    tenant_id: str | None = None,
    kind: str | None = None,
    ip: str | None = None,
    starts_at: datetime | None = None,
    now: datetime | None = None,
) -> SilenceRow:
    """Create a silence (audited in the caller's transaction)."""
    now = now or utcnow()
    starts_at = starts_at or now
    reason = (reason or "").strip()
    if not reason:
        raise SilenceError("a silence needs a reason")
    if not owner:
        raise SilenceError("a silence needs an owner")
    actor_id = _clean(actor_id, "actor", 128)
    tenant_id = _clean(tenant_id, "tenant", 128)
    kind = _clean(kind, "kind", 64)
    ip = _clean(ip, "ip", 64)
    if ip is not None:
        try:
            ip = str(ipaddress.ip_network(ip, strict=False))
        except ValueError:
            raise SilenceError("ip must be an address or a network such as 198.51.100.0/24") from None
    if not (actor_id or tenant_id or kind or ip):
        raise SilenceError("a silence must match on at least one of actor, tenant, kind or ip")
    if ends_at <= max(starts_at, now):
        raise SilenceError("a silence must end in the future, after it starts")
    if ends_at - starts_at > MAX_DURATION:
        raise SilenceError(f"a silence may last at most {MAX_DURATION.days} days")
    audit.serialize_writes(session)
    row = SilenceRow(
        silence_id=secrets.token_hex(8),
        owner=owner[:200],
        reason=reason[:2000],
        created_at=now,
        starts_at=starts_at,
        ends_at=ends_at,
        actor_id=actor_id,
        tenant_id=tenant_id,
        kind=kind,
        ip=ip,
    )
    session.add(row)
    audit.record(
        session,
        owner,
        "silence.add",
        f"silence:{row.silence_id}",
        {"matchers": row.matchers, "reason": row.reason, "starts_at": starts_at, "ends_at": ends_at},
        at=now,
    )
    session.flush()
    return row


def expire(session: Session, silence_id: str, by: str, *, now: datetime | None = None) -> SilenceRow:
    """End a silence now (audited)."""
    now = now or utcnow()
    audit.serialize_writes(session)
    row = session.get(SilenceRow, silence_id, with_for_update=True)
    if row is None:
        raise SilenceError(f"no silence {silence_id[:40]!r}")
    if row.expired_at is not None or row.ends_at <= now:
        raise SilenceError("that silence has already ended")
    row.expired_at, row.expired_by = now, by[:200]
    audit.record(session, by, "silence.expire", f"silence:{silence_id}", {"matchers": row.matchers}, at=now)
    session.flush()
    return row


def list_silences(session: Session, *, now: datetime | None = None, include_ended: bool = False) -> list[SilenceRow]:
    """Silences in force or still to start (and ended ones if asked), soonest end first."""
    now = now or utcnow()
    stmt = select(SilenceRow).order_by(SilenceRow.ends_at, SilenceRow.silence_id)
    if not include_ended:
        stmt = stmt.where(SilenceRow.expired_at.is_(None), SilenceRow.ends_at > now)
    return list(session.scalars(stmt))


def is_silenced(session: Session, incident_row: IncidentRow, at: datetime | None = None) -> SilenceRow | None:
    """The silence in force at ``at`` (now by default) that matches the incident, if any."""
    at = at or utcnow()
    candidates = session.scalars(
        select(SilenceRow)
        .where(SilenceRow.expired_at.is_(None), SilenceRow.starts_at <= at, SilenceRow.ends_at > at)
        .order_by(SilenceRow.ends_at.desc(), SilenceRow.silence_id)
    )
    for silence in candidates:
        if silence.matches(incident_row):
            return silence
    return None


def due_reminders(session: Session, *, before: timedelta, now: datetime) -> list[SilenceRow]:
    """Silences in force that end within ``before`` and whose owner was not reminded yet."""
    return list(
        session.scalars(
            select(SilenceRow)
            .where(
                SilenceRow.expired_at.is_(None),
                SilenceRow.reminder_queued_at.is_(None),
                SilenceRow.starts_at <= now,
                SilenceRow.ends_at > now,
                SilenceRow.ends_at <= now + before,
            )
            .order_by(SilenceRow.ends_at)
        )
    )


def queue_reminders(
    session: Session,
    *,
    before: timedelta,
    owner_email: dict[str, str],
    fallback: Sequence[str],
    now: datetime | None = None,
) -> int:
    """Queue one reminder per silence ending within ``before``, to its owner's address (or the
    ``fallback`` addresses when the owner has none); returns how many silences were reminded."""
    now = now or utcnow()
    reminded = 0
    for silence in due_reminders(session, before=before, now=now):
        owner = silence.owner
        recipients = [owner_email[owner]] if owner in owner_email else list(fallback)
        matchers = ", ".join(f"{k}={one_line(v, 128)}" for k, v in silence.matchers.items())
        left = silence.ends_at - now
        hours = max(1, round(left.total_seconds() / 3600))
        subject = header_text(f"[BreachWatch] Silence {silence.silence_id} ends in about {hours} h ({matchers})")
        body = (
            f"The silence {silence.silence_id} you own ends at {silence.ends_at:%Y-%m-%d %H:%M} UTC.\n\n"
            f"Matches: {matchers}\n"
            f"Reason given: {one_line(silence.reason, 500)}\n\n"
            "When it ends, matching incidents page the on-call again. If the reason still holds,\n"
            "add a new silence with an up-to-date reason; otherwise let it end.\n"
        )
        queued = []
        for recipient in recipients:
            if queue_message(
                session,
                message_id=stable_id(REMINDER_TYPE, silence.silence_id, recipient),
                message_type=REMINDER_TYPE,
                recipient=recipient,
                rendered=Rendered(subject, body, None, "en"),
                headers={"X-BreachWatch-Silence": silence.silence_id},
                now=now,
            ):
                queued.append(recipient)
        silence.reminder_queued_at = now
        audit.record(
            session,
            audit.SYSTEM_ACTOR,
            "silence.reminder",
            f"silence:{silence.silence_id}",
            {"recipients": queued, "ends_at": silence.ends_at},
            at=now,
        )
        reminded += 1
    return reminded


def suppress_page(session: Session, incident: IncidentRow, *, at: datetime | None = None) -> SilenceRow | None:
    """The silence that stops this incident's page (the suppression is audited), or None to page.

    For the pager's new-incident hook: the incident is still stored, only the page is held
    back; once the silence ends the escalation pass pages it if it is still unacknowledged.
    """
    at = at or utcnow()
    silence = is_silenced(session, incident, at)
    if silence is not None:
        audit.record(
            session,
            audit.SYSTEM_ACTOR,
            "page.suppressed",
            f"incident:{incident.incident_id}",
            {"silence": silence.silence_id, "owner": silence.owner, "until": silence.ends_at},
            at=at,
        )
        log.info("page for %s held back by silence %s", incident.incident_id, silence.silence_id)
    return silence
