"""Tables of the customer-notice workflow, on the shared ``incidents.db.Base``.

Every table is prefixed ``notice_`` (or is ``notices``) and keyed so that doing the same
thing twice is a no-op: one confirmation per incident, one notice per incident and tenant,
one row per version, one approval per approver and version, one receipt per provider event.
An approved version's content can never change; a correction is a new version.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Date, ForeignKey, ForeignKeyConstraint, Index, Integer, String, Text, event, inspect
from sqlalchemy.orm import Mapped, mapped_column

from breachwatch.core.clock import utcnow
from breachwatch.storage.db import Base

# Notice workflow states (of the notice as a whole; a delivery state is derived from the outbox).
DRAFT = "draft"
APPROVED = "approved"
WITHDRAWN = "withdrawn"
VERSION_STATUSES: tuple[str, ...] = (DRAFT, APPROVED, "superseded")


class NoticeConfirmationRow(Base):
    """The moment the vendor became aware of a breach (the clock start), and who said so."""

    __tablename__ = "notice_confirmations"

    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.incident_id"), primary_key=True)
    confirmed_by: Mapped[str] = mapped_column(String(200))
    confirmed_at: Mapped[datetime]
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)


class BlastRadiusRow(Base):
    """One version of an incident's blast radius: computed (version 1) or corrected by a person."""

    __tablename__ = "notice_blast_radius"

    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.incident_id"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    reason: Mapped[str] = mapped_column(Text, default="")


class TenantRecordRow(Base):
    """The latest known directory entry of a tenant, so notices can be addressed from any process."""

    __tablename__ = "notice_tenants"

    tenant_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    record: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class NoticeRow(Base):
    """The notice of one incident to one affected tenant; its content lives in versions."""

    __tablename__ = "notices"

    notice_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.incident_id"), index=True)
    tenant_id: Mapped[str] = mapped_column(String(128))
    tenant_name: Mapped[str] = mapped_column(Text, default="")
    jurisdiction: Mapped[str] = mapped_column(String(16))
    locale: Mapped[str] = mapped_column(String(35))
    status: Mapped[str] = mapped_column(String(16), default=DRAFT)  # draft | approved | withdrawn
    current_version: Mapped[int] = mapped_column(Integer, default=1)
    required_approvals: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index("ux_notices_incident_tenant", "incident_id", "tenant_id", unique=True),)


class NoticeVersionRow(Base):
    """One version of a notice: the facts it was drafted from and who asked for it."""

    __tablename__ = "notice_versions"

    notice_id: Mapped[str] = mapped_column(ForeignKey("notices.notice_id"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # initial | followup
    status: Mapped[str] = mapped_column(String(16), default=DRAFT)
    facts: Mapped[dict[str, Any]] = mapped_column(JSON)  # the notice's own inputs (measures, phase...)
    recipients: Mapped[dict[str, Any]] = mapped_column(JSON)  # email -> locale
    blast_radius_version: Mapped[int] = mapped_column(Integer)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    reason: Mapped[str] = mapped_column(Text, default="")
    approved_at: Mapped[datetime | None] = mapped_column(nullable=True)


class NoticeRenditionRow(Base):
    """The rendered text of one version in one locale and message type (what is sent is this)."""

    __tablename__ = "notice_renditions"

    notice_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    message_type: Mapped[str] = mapped_column(String(64), primary_key=True)
    locale: Mapped[str] = mapped_column(String(35), primary_key=True)
    subject: Mapped[str] = mapped_column(Text)
    body_text: Mapped[str] = mapped_column(Text)
    body_html: Mapped[str | None] = mapped_column(Text, nullable=True)

    __table_args__ = (
        ForeignKeyConstraint(["notice_id", "version"], ["notice_versions.notice_id", "notice_versions.version"]),
    )


class NoticeApprovalRow(Base):
    """One approver's approval of one version."""

    __tablename__ = "notice_approvals"

    notice_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    approver: Mapped[str] = mapped_column(String(200), primary_key=True)
    approved_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        ForeignKeyConstraint(["notice_id", "version"], ["notice_versions.notice_id", "notice_versions.version"]),
    )


class NoticeDutyRow(Base):
    """One notification duty of one notice, with its clock; ``owner`` says whose duty it is."""

    __tablename__ = "notice_duties"

    notice_id: Mapped[str] = mapped_column(ForeignKey("notices.notice_id"), primary_key=True)
    rule_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    owner: Mapped[str] = mapped_column(String(16))  # vendor (processor) | customer (controller)
    title: Mapped[str] = mapped_column(Text)
    whom_kind: Mapped[str] = mapped_column(String(32))
    whom: Mapped[str] = mapped_column(Text)
    provision: Mapped[str] = mapped_column(Text)
    regime: Mapped[str] = mapped_column(String(64))
    basis: Mapped[str] = mapped_column(String(16))
    deadline_text: Mapped[str] = mapped_column(Text)
    deadline_unit: Mapped[str] = mapped_column(String(32))
    deadline_amount: Mapped[int | None] = mapped_column(Integer, nullable=True)
    clock_started_at: Mapped[datetime | None] = mapped_column(nullable=True)
    due_at: Mapped[datetime | None] = mapped_column(nullable=True)
    target_at: Mapped[datetime | None] = mapped_column(nullable=True)
    conditions: Mapped[list[str]] = mapped_column(default=list)
    required_elements: Mapped[list[str]] = mapped_column(default=list)
    met_at: Mapped[datetime | None] = mapped_column(nullable=True)
    active: Mapped[bool] = mapped_column(default=True)  # False once a correction removed it
    # Where the clock starts: the anchor the law names, the recorded moment used for it, and
    # whether that moment only stands in for the anchor's own (not recorded).
    clock_start: Mapped[str] = mapped_column(String(40), default="")
    clock_start_text: Mapped[str] = mapped_column(Text, default="")
    moment_used: Mapped[str | None] = mapped_column(String(64), nullable=True)
    moment_is_fallback: Mapped[bool] = mapped_column(default=False)
    due_last_day: Mapped[date | None] = mapped_column(Date, nullable=True)  # the last local day allowed
    due_zone: Mapped[str | None] = mapped_column(String(64), nullable=True)
    jurisdictions: Mapped[list[str]] = mapped_column(default=list)  # where the data subjects it is for live
    # A law-enforcement request holding the clock back: {ref, provision, start, end, capped,
    # original_due_at, original_target_at}; empty when none does.
    hold: Mapped[dict[str, Any]] = mapped_column(default=dict)
    substitute: Mapped[dict[str, Any]] = mapped_column(default=dict)  # substitute notice, where allowed
    waived: Mapped[dict[str, Any]] = mapped_column(default=dict)  # a no-notify decision covering it


class NoticeDeliveryRow(Base):
    """Which outbox message carries which version of a notice to which recipient."""

    __tablename__ = "notice_deliveries"

    message_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    notice_id: Mapped[str] = mapped_column(ForeignKey("notices.notice_id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    message_type: Mapped[str] = mapped_column(String(64))
    recipient: Mapped[str] = mapped_column(String(320))
    locale: Mapped[str] = mapped_column(String(35))
    # The message's content digest when its version was approved: what the dispatcher may send.
    content_digest: Mapped[str | None] = mapped_column(String(64), nullable=True)


class DeadlinePageRow(Base):
    """A deadline threshold already escalated (or passed over for a later one): pages go once."""

    __tablename__ = "notice_deadline_pages"

    notice_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    rule_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    threshold: Mapped[str] = mapped_column(String(32), primary_key=True)
    paged: Mapped[bool] = mapped_column(default=True)  # False: a later threshold was paged instead
    at: Mapped[datetime] = mapped_column(default=utcnow)


class NoticeReceiptRow(Base):
    """A provider's delivery event (delivered, bounce...), kept once per provider event id."""

    __tablename__ = "notice_receipts"

    provider_event_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    message_id: Mapped[str] = mapped_column(String(128), index=True)
    event: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime]
    recipient: Mapped[str] = mapped_column(String(320), default="")
    detail: Mapped[str] = mapped_column(Text, default="")
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class NoticeEventRow(Base):
    """The notice timeline and audit trail: who did what to which notice or blast radius, when."""

    __tablename__ = "notice_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    incident_id: Mapped[str] = mapped_column(String(64), index=True)
    notice_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(64))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class ImmutableVersionError(RuntimeError):
    """Something tried to change an approved notice version or its rendered text."""


_VERSION_CONTENT = ("kind", "facts", "recipients", "blast_radius_version", "created_by", "created_at", "reason")


@event.listens_for(NoticeVersionRow, "before_update")
def _approved_versions_are_frozen(mapper: Any, connection: Any, target: NoticeVersionRow) -> None:
    # An approved version is what the customer was (or will be) sent: its content may not change,
    # only its status may move on to "superseded" when a correction follows.
    state = inspect(target)
    status = state.attrs.status.history
    was = (status.deleted or status.unchanged or [None])[0]
    if was not in (APPROVED, "superseded"):
        return
    changed = [name for name in _VERSION_CONTENT if state.attrs[name].history.has_changes()]
    if changed or state.attrs.approved_at.history.has_changes() or target.status == DRAFT:
        raise ImmutableVersionError(f"notice {target.notice_id} version {target.version} is approved and immutable")


@event.listens_for(NoticeRenditionRow, "before_update")
def _renditions_are_write_once(mapper: Any, connection: Any, target: NoticeRenditionRow) -> None:
    raise ImmutableVersionError(f"the text of notice {target.notice_id} version {target.version} is written once")
