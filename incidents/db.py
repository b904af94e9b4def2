"""Database schema and engine: SQLite by default, PostgreSQL in production.

Every table that records something the pipeline produced has a natural unique key (finding id,
incident id + event id, outbox message id), so a re-delivered batch turns into no-ops rather
than duplicates.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    create_engine,
    event,
    false,
    select,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.sql import Select
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    return datetime.now(UTC)


def aggregate_time(value: datetime | str) -> datetime:
    """A min()/max() of a datetime column as an aware UTC datetime: SQLite returns such
    aggregates as naive text, bypassing the column type."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware datetimes on every backend (SQLite stores none, so normalise to UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON, list[str]: JSON}  # noqa: RUF012


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


class CheckpointRow(Base):
    """Detector state of one unit (``streams.units``: actor unit p under key p, log unit p
    under -1-p), with the input offsets it reflects."""

    __tablename__ = "checkpoints"

    group_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    partition: Mapped[int] = mapped_column(Integer, primary_key=True)
    offsets: Mapped[dict[str, Any]] = mapped_column(default=dict)  # topic -> next offset
    state: Mapped[bytes] = mapped_column(LargeBinary)  # zlib-compressed JSON
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # Raised by every write: a checkpoint holding only what changed is written only over the
    # one it was built on (see ``incidents.store.StaleCheckpoint``).
    seq: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class CheckpointItemRow(Base):
    """One item of a unit's itemised detector state (``detectors.base.StateDelta``: one
    actor's profile and carried events), written when it changes, with its checkpoint."""

    __tablename__ = "checkpoint_items"

    group_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    partition: Mapped[int] = mapped_column(Integer, primary_key=True)
    detector: Mapped[str] = mapped_column(String(100), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    value: Mapped[bytes] = mapped_column(LargeBinary)  # zlib-compressed JSON


def make_engine(url: str, lock_timeout_s: float = 30.0) -> Engine:
    """An engine tuned for this workload: WAL and a busy timeout on SQLite, so a reader
    (the console) never blocks the consumer and a brief lock is waited out, not an error."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": lock_timeout_s})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return create_engine(url, pool_pre_ping=True)


def init_db(engine: Engine) -> None:
    """Bring the database to the current schema (Alembic migrations; adopts older databases)."""
    from incidents.migrate import upgrade

    upgrade(engine)
