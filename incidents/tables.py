"""The incident tables: incidents, their findings, evidence and correlation keys.

Every row the pipeline produces has a natural unique key (finding id, incident id + event id),
so a re-delivered batch turns into no-ops rather than duplicates.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    false,
    select,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship
from sqlalchemy.sql import Select

from breachwatch.core.clock import utcnow
from breachwatch.storage.db import Base


class IncidentRow(Base):
    __tablename__ = "incidents"

    incident_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(Text)
    severity: Mapped[str] = mapped_column(String(16))
    score: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(32), default="open", index=True)
    opened_at: Mapped[datetime]  # event time of the first finding
    updated_at: Mapped[datetime]  # event time of the latest finding
    # Event time of the newest event the detectors had seen when the incident's first finding
    # was raised (the earliest of its findings'): how long detection took is measured to it.
    # Null only for incidents stored before the column existed and holding no finding.
    detected_at: Mapped[datetime | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)  # wall clock
    modified_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    actor_ids: Mapped[list[str]] = mapped_column(default=list)
    tenant_ids: Mapped[list[str]] = mapped_column(default=list)
    source_ips: Mapped[list[str]] = mapped_column(default=list)
    detectors: Mapped[list[str]] = mapped_column(default=list)
    reasons: Mapped[list[str]] = mapped_column(default=list)
    evidence_count: Mapped[int] = mapped_column(Integer, default=0)
    # "actor:<id>", "net:<prefix>" or "ip:<addr>": who the incident is about (the first
    # finding's actor or attacking network); later findings correlate on ``correlation_keys``.
    group_key: Mapped[str] = mapped_column(String(200), index=True)
    # Partition-independent facts a finding carried (counts, baselines) for the console.
    facts: Mapped[dict[str, Any]] = mapped_column(default=dict)


class FindingRow(Base):
    __tablename__ = "findings"

    finding_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.incident_id"), index=True)
    detector: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(64))
    severity: Mapped[str] = mapped_column(String(16))
    score: Mapped[float] = mapped_column(Float)
    ts: Mapped[datetime]
    # Event time at which the detector judged (else of the latest evidence event): the time to detect.
    detected_at: Mapped[datetime | None] = mapped_column(nullable=True)
    title: Mapped[str] = mapped_column(Text)
    reasons: Mapped[list[str]] = mapped_column(default=list)
    playbook: Mapped[str] = mapped_column(Text, default="")
    # Indexed for the false-positive look-up, which runs for every batch with findings.
    actor_id: Mapped[str | None] = mapped_column(String(128), nullable=True, index=True)
    facts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Attached to an incident marked false positive instead of opening (and paging) a new one.
    suppressed: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class EvidenceRow(Base):
    __tablename__ = "evidence"

    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.incident_id"), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    finding_id: Mapped[str] = mapped_column(String(64))
    topic: Mapped[str] = mapped_column(String(32))
    ts: Mapped[datetime]
    event_json: Mapped[str] = mapped_column(Text)

    __table_args__ = (Index("ix_evidence_incident_ts", "incident_id", "ts"),)


class CorrelationKeyRow(Base):
    """What a finding can be correlated on, one row per key (see ``incidents.store``).

    Keys belong to findings, not incidents, so they follow a finding that a merge or a split
    moves, and an incident is findable by the keys of every finding it holds.
    """

    __tablename__ = "correlation_keys"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    finding_id: Mapped[str] = mapped_column(ForeignKey("findings.finding_id"), primary_key=True, index=True)
    # Never loaded; it makes a flush insert a new finding before the keys that name it.
    finding: Mapped[FindingRow] = relationship(lazy="raise")


def incidents_holding(keys: Sequence[str]) -> Select[tuple[str]]:
    """The ids of incidents holding a finding stored under any of ``keys`` (a subquery)."""
    return (
        select(FindingRow.incident_id)
        .join(CorrelationKeyRow, CorrelationKeyRow.finding_id == FindingRow.finding_id)
        .where(CorrelationKeyRow.key.in_(list(keys)))
    )
