"""The breach register's own table: what a person wrote about a confirmed breach (facts,
effects, remedial action). Everything else in an entry is read from the notice workflow."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from breachwatch.core.clock import utcnow
from breachwatch.storage.db import Base


class RegisterEntryRow(Base):
    """A person's account of one confirmed breach, as a register must document it."""

    __tablename__ = "breach_register"

    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.incident_id"), primary_key=True)
    facts: Mapped[str] = mapped_column(Text, default="")  # what happened
    effects: Mapped[str] = mapped_column(Text, default="")  # its effects and consequences
    remedial_action: Mapped[str] = mapped_column(Text, default="")  # what was done about it
    updated_by: Mapped[str] = mapped_column(String(200))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class ArchivedEntryRow(Base):
    """A register entry frozen when its incident was erased; no foreign key, so it outlives it."""

    __tablename__ = "breach_register_archive"

    incident_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    archived_at: Mapped[datetime] = mapped_column(default=utcnow)
    reason: Mapped[str] = mapped_column(String(500))
    keep_until: Mapped[datetime | None] = mapped_column(nullable=True)
    document: Mapped[dict[str, Any]] = mapped_column(JSON)
