"""The audit trail: an append-only, hash-chained log of every state change, notification,
evidence view, sign-in and token use (privacy policy 6.1: every access is accounted for).

Each row's ``hash`` is the SHA-256 of the canonical JSON of its content including the
previous row's hash, and ``audit_head`` holds the latest (seq, hash). ``verify`` recomputes the
chain and names the first row of every break: an edited row no longer matches its hash, a
re-hashed row breaks the link to its successor, a deleted row leaves a gap in ``seq``, and a
deleted tail no longer reaches the head.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, Integer, String, event, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Mapped, Session, mapped_column

from breachwatch.core.clock import utcnow
from breachwatch.storage.db import Base

GENESIS = "0" * 64
SYSTEM_ACTOR = "breachwatch"  # what the system itself acts as (pages, reopens, retention)
HEAD_ID = 1
MAX_FIELD = 200


class AuditRow(Base):
    """One audited act: who (actor) did what (action) to which thing (subject), and when."""

    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False
    )
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(MAX_FIELD))
    action: Mapped[str] = mapped_column(String(64), index=True)
    subject: Mapped[str] = mapped_column(String(MAX_FIELD), index=True)
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Unique: two writers that read the same head cannot both append (no fork in the chain).
    prev_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hash: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    """The chain's latest (seq, hash): lets ``verify`` notice rows deleted from the end."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    hash: Mapped[str] = mapped_column(String(64))


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def canonical(
    seq: int, at: datetime, actor: str, action: str, subject: str, detail: dict[str, Any], prev_hash: str
) -> bytes:
    """The bytes a row's hash covers: sorted keys, no whitespace, UTF-8."""
    doc = {
        "seq": seq,
        "at": _iso(at),
        "actor": actor,
        "action": action,
        "subject": subject,
        "detail": detail,
        "prev_hash": prev_hash,
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def row_hash(row: AuditRow) -> str:
    """The hash a row must carry, recomputed from its stored content."""
    return hashlib.sha256(
        canonical(row.seq, row.at, row.actor, row.action, row.subject, dict(row.detail or {}), row.prev_hash)
    ).hexdigest()


def serialize_writes(session: Session) -> None:
    """Start this transaction as a writer before it reads anything.

    On SQLite the driver opens a transaction only at the first write, so a check made by an
    earlier read could be stale by the time it writes; touching the head takes the database
    write lock now. On PostgreSQL callers lock the rows they change (``FOR UPDATE``) instead,
    and the head is locked last, in the same order the incident store uses.
    """
    if session.get_bind().dialect.name == "sqlite":
        _ensure_head(session)
        session.execute(
            update(AuditHead)
            .where(AuditHead.id == HEAD_ID)
            .values(seq=AuditHead.seq)
            .execution_options(synchronize_session=False)
        )


def _ensure_head(session: Session) -> None:
    values = {"id": HEAD_ID, "seq": 0, "hash": GENESIS}
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        session.execute(sqlite_insert(AuditHead.__table__).values(values).on_conflict_do_nothing())
    elif dialect == "postgresql":
        session.execute(pg_insert(AuditHead.__table__).values(values).on_conflict_do_nothing())
    elif session.get(AuditHead, HEAD_ID) is None:
        session.add(AuditHead(**values))
        session.flush()


def _normalise(detail: dict[str, Any] | None) -> dict[str, Any]:
    # A JSON round trip: what is hashed is exactly what the JSON column gives back later.
    return json.loads(json.dumps(detail or {}, default=str, ensure_ascii=False))


def record(
    session: Session,
    actor: str,
    action: str,
    subject: str,
    detail: dict[str, Any] | None = None,
    *,
    at: datetime | None = None,
) -> AuditRow:
    """Append one row in the caller's transaction (it commits or rolls back with the act)."""
    if not actor or not action:
        raise ValueError("an audit row needs an actor and an action")
    at = (at or utcnow()).astimezone(UTC)
    _ensure_head(session)
    head = session.execute(select(AuditHead.seq, AuditHead.hash).where(AuditHead.id == HEAD_ID).with_for_update()).one()
    row = AuditRow(
        seq=int(head.seq) + 1,
        at=at,
        actor=actor[:MAX_FIELD],
        action=action[:64],
        subject=subject[:MAX_FIELD],
        detail=_normalise(detail),
        prev_hash=head.hash,
        hash="",
    )
    row.hash = row_hash(row)
    session.add(row)
    session.execute(
        update(AuditHead)
        .where(AuditHead.id == HEAD_ID)
        .values(seq=row.seq, hash=row.hash)
        .execution_options(synchronize_session=False)
    )
    session.flush()
    return row


_PENDING = "bw_audit_pending"


def record_at_commit(
    session: Session,
    actor: str,
    action: str,
    subject: str,
    detail: dict[str, Any] | None = None,
    *,
    at: datetime | None = None,
) -> None:
    """Append a row when the caller's transaction commits (dropped if it rolls back).

    For code running inside a transaction that goes on to lock other rows (the incident
    store's batch): the audit head is locked last, in one order for every writer, so two
    transactions can never wait on each other's locks.
    """
    if not actor or not action:
        raise ValueError("an audit row needs an actor and an action")
    pending: list[tuple[Any, ...]] | None = session.info.get(_PENDING)
    if pending is None:
        pending = session.info[_PENDING] = []
        event.listen(session, "before_commit", _append_pending)
        event.listen(session, "after_rollback", _drop_pending)
    pending.append((actor, action, subject, detail, at or utcnow()))


def _append_pending(session: Session) -> None:
    pending = session.info.get(_PENDING) or []
    while pending:
        actor, action, subject, detail, at = pending.pop(0)
        record(session, actor, action, subject, detail, at=at)


def _drop_pending(session: Session) -> None:
    session.info.get(_PENDING, []).clear()


# --- reading ----------------------------------------------------------------------------------


def for_subject(session: Session, subject: str, limit: int = 500) -> list[AuditRow]:
    """The audit rows about one subject (e.g. ``incident:<id>``), oldest first."""
    return list(
        session.scalars(select(AuditRow).where(AuditRow.subject == subject).order_by(AuditRow.seq).limit(limit))
    )


def recent(session: Session, limit: int = 200, action: str | None = None) -> list[AuditRow]:
    """The newest audit rows, newest first."""
    stmt = select(AuditRow).order_by(AuditRow.seq.desc()).limit(limit)
    if action:
        stmt = stmt.where(AuditRow.action == action)
    return list(session.scalars(stmt))


def search(
    session: Session,
    *,
    actor: str | None = None,
    action: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[AuditRow], int]:
    """A page of audit rows, newest first, narrowed by who (exact), action and time
    (``since`` inclusive, ``until`` exclusive), and how many rows match in all."""
    conditions = []
    if actor:
        conditions.append(AuditRow.actor == actor)
    if action:
        conditions.append(AuditRow.action == action)
    if since is not None:
        conditions.append(AuditRow.at >= since)
    if until is not None:
        conditions.append(AuditRow.at < until)
    total = session.scalar(select(func.count()).select_from(AuditRow).where(*conditions)) or 0
    rows = session.scalars(
        select(AuditRow).where(*conditions).order_by(AuditRow.seq.desc()).offset(offset).limit(limit)
    )
    return list(rows), int(total)


# --- verification -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Problem:
    """One break in the chain, located at the row (seq) where it shows."""

    seq: int
    what: str

    def __str__(self) -> str:
        return f"seq {self.seq}: {self.what}"


@dataclass(slots=True)
class Verification:
    """What ``verify`` found: rows checked, the head, and every break."""

    rows: int = 0
    last_seq: int = 0
    last_hash: str = GENESIS
    head_seq: int | None = None
    head_hash: str | None = None
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def bad_seqs(self) -> list[int]:
        return sorted({p.seq for p in self.problems})


def _rows(session: Session, batch: int) -> Iterator[AuditRow]:
    last = 0
    while True:
        rows = list(session.scalars(select(AuditRow).where(AuditRow.seq > last).order_by(AuditRow.seq).limit(batch)))
        if not rows:
            return
        yield from rows
        last = rows[-1].seq
        session.expunge_all()


def verify(session: Session, *, anchor: tuple[int, str] | None = None, batch: int = 2000) -> Verification:
    """Recompute the chain from the first row and report every edit, deletion or re-hash.

    ``anchor`` is a (seq, hash) pair recorded elsewhere earlier (e.g. printed by a previous
    verify); it catches a rewrite of the whole chain from that row on.
    """
    report = Verification()
    expected_seq = 1
    prev_hash = GENESIS
    prev_seq = 0
    prev_content_ok = True
    for row in _rows(session, batch):
        report.rows += 1
        content_ok = row_hash(row) == row.hash
        if row.seq != expected_seq:
            missing = f"{expected_seq}" if row.seq == expected_seq + 1 else f"{expected_seq}-{row.seq - 1}"
            report.problems.append(Problem(expected_seq, f"row(s) {missing} deleted (the chain jumps to {row.seq})"))
        elif row.prev_hash != prev_hash:
            if prev_content_ok and prev_seq:
                # The previous row is self-consistent but no longer what this row chained to:
                # it was edited and re-hashed.
                report.problems.append(Problem(prev_seq, "edited and re-hashed (the next row links to other content)"))
            elif not prev_seq:
                report.problems.append(Problem(row.seq, "does not start from the genesis hash"))
        if not content_ok:
            report.problems.append(Problem(row.seq, "edited (its content no longer matches its hash)"))
        if anchor is not None and row.seq == anchor[0] and row.hash != anchor[1]:
            report.problems.append(Problem(row.seq, "does not match the recorded anchor hash"))
        prev_hash, prev_seq, prev_content_ok = row.hash, row.seq, content_ok
        expected_seq = row.seq + 1
    report.last_seq, report.last_hash = prev_seq, prev_hash
    head = session.execute(select(AuditHead.seq, AuditHead.hash).where(AuditHead.id == HEAD_ID)).first()
    if head is not None:
        report.head_seq, report.head_hash = int(head.seq), head.hash
        if report.head_seq > report.last_seq:
            first_gone = report.last_seq + 1
            report.problems.append(
                Problem(first_gone, f"row(s) {first_gone}-{report.head_seq} deleted from the end of the log")
            )
        elif report.head_seq < report.last_seq:
            report.problems.append(Problem(report.head_seq + 1, "rows appended without moving the head"))
        elif report.head_hash != report.last_hash and report.rows:
            report.problems.append(Problem(report.last_seq, "does not match the head hash (edited and re-hashed)"))
    elif report.rows:
        report.problems.append(Problem(1, "the head record is missing"))
    if anchor is not None and anchor[0] > report.last_seq:
        report.problems.append(Problem(anchor[0], "the anchored row no longer exists"))
    # Keep one problem per (seq, what); a single edit can show from two sides.
    report.problems = list(dict.fromkeys(report.problems))
    return report
