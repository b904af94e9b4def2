"""Tables of what the duties are decided from, beyond the blast radius: the incident's recorded
moments, each notice's jurisdictions, law-enforcement delays, risk-of-harm assessments, the
safe-harbour decision and missing contact details of a breach.

Each is written by a person's decision (or, for the detection and confirmation moments, by the
confirmation itself), audited where it is written, and read when a notice's duties are worked out.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from breachwatch.core.clock import utcnow
from breachwatch.storage.db import Base


class MomentRow(Base):
    """A moment of an incident a clock may start from (``notifier.duties.MOMENTS``)."""

    __tablename__ = "notice_moments"

    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.incident_id"), primary_key=True)
    moment: Mapped[str] = mapped_column(String(32), primary_key=True)
    at: Mapped[datetime]
    source: Mapped[str] = mapped_column(String(16))  # system | person
    recorded_by: Mapped[str] = mapped_column(String(200))
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)
    note: Mapped[str] = mapped_column(Text, default="")


class JurisdictionRow(Base):
    """Where a notice's data subjects live: one jurisdiction, its head count, what the law says there."""

    __tablename__ = "notice_jurisdictions"

    notice_id: Mapped[str] = mapped_column(ForeignKey("notices.notice_id"), primary_key=True)
    jurisdiction: Mapped[str] = mapped_column(String(16), primary_key=True)
    position: Mapped[int] = mapped_column(Integer)  # 0: the tenant's own
    affected_low: Mapped[int] = mapped_column(Integer, default=0)
    affected_high: Mapped[int | None] = mapped_column(Integer, nullable=True)  # None: no upper bound known
    duties: Mapped[list[str]] = mapped_column(default=list)  # rule ids that apply here
    undecided: Mapped[list[Any]] = mapped_column(JSON, default=list)  # {rule_id, title, role, missing, listed}
    advisories: Mapped[list[Any]] = mapped_column(JSON, default=list)  # {rule_id, title, provision, text}
    exempted: Mapped[list[Any]] = mapped_column(JSON, default=list)  # {rule_id, title, role, provision, text}


class DelayRow(Base):
    """A request to hold notice back (who asked, how, from and until when); lifted when it ends."""

    __tablename__ = "notice_delays"

    delay_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.incident_id"), index=True)
    requested_by: Mapped[str] = mapped_column(String(32))  # law_enforcement | attorney_general
    agency: Mapped[str] = mapped_column(Text)
    official: Mapped[str] = mapped_column(Text)  # who asked
    form: Mapped[str] = mapped_column(String(16))  # written | oral
    requested_at: Mapped[datetime]
    until: Mapped[datetime | None] = mapped_column(nullable=True)  # None: until the agency says
    reference: Mapped[str] = mapped_column(Text, default="")  # their case or letter reference
    recorded_by: Mapped[str] = mapped_column(String(200))
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)
    lifted_at: Mapped[datetime | None] = mapped_column(nullable=True)
    lifted_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    lifted_note: Mapped[str] = mapped_column(Text, default="")


class HarmAssessmentRow(Base):
    """A risk-of-harm assessment of one tenant's breach in one jurisdiction, and its decision."""

    __tablename__ = "notice_harm_assessments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.incident_id"), index=True)
    tenant_id: Mapped[str] = mapped_column(String(128))
    jurisdiction: Mapped[str] = mapped_column(String(16))
    owner: Mapped[str] = mapped_column(String(16))  # whose decision: vendor | customer
    factors: Mapped[dict[str, Any]] = mapped_column(default=dict)  # factor -> {level, note}
    decision: Mapped[str] = mapped_column(String(16))  # notify | no_notify
    reasons: Mapped[str] = mapped_column(Text, default="")
    waived: Mapped[list[str]] = mapped_column(default=list)  # duties the no-notify decision covers
    assessed_by: Mapped[str] = mapped_column(String(200))
    assessed_at: Mapped[datetime] = mapped_column(default=utcnow)


class SafeHarbourRow(Base):
    """A person's decision on the encryption safe harbour for one tenant's breach."""

    __tablename__ = "notice_safe_harbour"

    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.incident_id"), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    applies: Mapped[bool] = mapped_column(Boolean)  # False: e.g. the key was taken too
    encrypted_resource_types: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)  # None: as configured
    reason: Mapped[str] = mapped_column(Text)
    decided_by: Mapped[str] = mapped_column(String(200))
    decided_at: Mapped[datetime] = mapped_column(default=utcnow)


class ContactGapRow(Base):
    """How many of a tenant's affected people have no usable contact details (for substitute notice)."""

    __tablename__ = "notice_contact_gaps"

    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.incident_id"), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    missing: Mapped[int] = mapped_column(Integer)
    note: Mapped[str] = mapped_column(Text, default="")
    recorded_by: Mapped[str] = mapped_column(String(200))
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)
