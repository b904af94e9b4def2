"""The transparency log: every vendor-staff access to a tenant's data and its justification,
as the tenant may read it (privacy policy 6.1: only authorised personnel, for a stated purpose).

The pipeline writes one row per staff access in the transaction of the batch that judged it
(``record_staff_accesses``); the row's id is the event's, so a re-delivered batch adds nothing.
What the tenant is shown of a staff member is chosen when the log is read (``StaffIdentity``):
the name from the staff directory, or a pseudonym stable per tenant, so the setting applies to
the whole log at once. Problems are worded for the tenant: another customer's id never shows.

Volume: one row (about 0.5 KB) per staff access, a small share of all accesses (support
sessions touch tens of records a ticket). Rows older than ``BREACHWATCH_TRANSPARENCY_RETENTION_DAYS``
go with ``breachwatch retention apply`` (privacy policy 5); a tenant's rows go with its erasure.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, Literal

from sqlalchemy import JSON, BigInteger, Boolean, Index, Integer, String, and_, delete, func, or_, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from breachwatch.core.clock import utcnow
from breachwatch.core.ids import stable_id
from breachwatch.core.justification import Justification, Problem, StaffAccess
from breachwatch.core.settings import Settings
from breachwatch.detectors.rules.justification import describe, justified_words
from breachwatch.notifier.duties.categories import default_category_map
from breachwatch.storage import audit
from breachwatch.storage.db import Base, dialect_insert

Identity = Literal["name", "pseudonym"]
FIELDS: tuple[str, ...] = (
    "ts",
    "staff",
    "staff_team",
    "office_country",
    "action",
    "resource_type",
    "data_categories",
    "records",
    "outcome",
    "ticket_id",
    "ticket_summary",
    "purpose",
    "customer_requested",
    "approval_required",
    "request_id",
    "justified",
    "reason",
)
ROWS_PER_INSERT = 500


class StaffAccessRow(Base):
    """One vendor-staff access to a tenant's data, with its justification."""

    __tablename__ = "staff_accesses"

    access_id: Mapped[str] = mapped_column(String(24), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(128))
    tenant_id: Mapped[str] = mapped_column(String(128))
    ts: Mapped[datetime]
    staff_id: Mapped[str] = mapped_column(String(128))
    staff_name: Mapped[str | None] = mapped_column(String(256), nullable=True)
    staff_team: Mapped[str | None] = mapped_column(String(32), nullable=True)
    office_country: Mapped[str | None] = mapped_column(String(2), nullable=True)
    action: Mapped[str] = mapped_column(String(16))
    resource_type: Mapped[str] = mapped_column(String(64))
    sensitivity: Mapped[str] = mapped_column(String(16))
    records: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    outcome: Mapped[str] = mapped_column(String(16))
    cited_ticket: Mapped[str | None] = mapped_column(String(128), nullable=True)
    ticket_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    ticket_kind: Mapped[str | None] = mapped_column(String(16), nullable=True)
    requested_by: Mapped[str | None] = mapped_column(String(16), nullable=True)
    purpose: Mapped[str | None] = mapped_column(String(32), nullable=True)
    ticket_summary: Mapped[str | None] = mapped_column(String(512), nullable=True)
    approval_required: Mapped[bool] = mapped_column(Boolean, default=False)
    request_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    justified: Mapped[bool] = mapped_column(Boolean)
    problems: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index("ix_staff_accesses_tenant_ts", "tenant_id", "ts", "access_id"),)

    def justification(self) -> Justification:
        return Justification(
            ticket_id=self.ticket_id,
            ticket_kind=self.ticket_kind,
            requested_by=self.requested_by,
            purpose=self.purpose,
            ticket_summary=self.ticket_summary,
            approval_required=self.approval_required,
            request_id=self.request_id,
            problems=tuple(Problem.from_json(p) for p in self.problems or ()),
        )


def access_id(event_id: str) -> str:
    return stable_id("staff_access", event_id)


def _values(a: StaffAccess, now: datetime) -> dict[str, Any]:
    j = a.justification
    return {
        "access_id": access_id(a.event_id),
        "event_id": a.event_id,
        "tenant_id": a.tenant_id,
        "ts": a.ts,
        "staff_id": a.staff_id,
        "staff_name": a.staff_name,
        "staff_team": a.staff_team,
        "office_country": a.office_country,
        "action": a.action,
        "resource_type": a.resource_type,
        "sensitivity": a.sensitivity,
        "records": a.records,
        "outcome": a.outcome,
        "cited_ticket": a.cited_ticket,
        "ticket_id": j.ticket_id,
        "ticket_kind": j.ticket_kind,
        "requested_by": j.requested_by,
        "purpose": j.purpose,
        "ticket_summary": j.ticket_summary,
        "approval_required": j.approval_required,
        "request_id": j.request_id,
        "justified": j.justified,
        "problems": [p.to_json() for p in j.problems],
        "recorded_at": now,
    }


def record_staff_accesses(session: Session, accesses: Sequence[StaffAccess]) -> int:
    """Store judged staff accesses in the caller's transaction; a row already stored (a
    re-delivered batch) is left as it is. Returns how many rows were new."""
    if not accesses:
        return 0
    now = utcnow()
    table = StaffAccessRow.__table__
    new = 0
    for i in range(0, len(accesses), ROWS_PER_INSERT):
        chunk = [_values(a, now) for a in accesses[i : i + ROWS_PER_INSERT]]
        stmt = dialect_insert(session, table).on_conflict_do_nothing(index_elements=["access_id"])
        # RETURNING rather than rowcount: PostgreSQL's driver reports -1 for a batch like this.
        new += len(session.execute(stmt.returning(table.c.access_id), chunk).all())
    return new


# --- who the tenant sees ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StaffIdentity:
    """How a staff member is named to a tenant: by name, or by a pseudonym that is the same
    for one person across the tenant's log but differs between tenants (keyed HMAC)."""

    mode: Identity = "name"
    key: bytes | None = None

    def __post_init__(self) -> None:
        if self.mode == "pseudonym" and (self.key is None or len(self.key) < 16):
            raise ValueError("pseudonyms need BREACHWATCH_PSEUDONYM_KEY (at least 16 bytes)")

    def label(self, tenant_id: str, staff_id: str, name: str | None, team: str | None) -> str:
        if self.mode == "name":
            return name or staff_id
        digest = hmac.new(self.key or b"", f"{tenant_id}\x1f{staff_id}".encode(), hashlib.sha256).hexdigest()
        return f"{team or 'vendor'} staff member {digest[:6]}"


def identity_from(settings: Settings) -> StaffIdentity:
    """How this deployment names staff to tenants (``BREACHWATCH_TRANSPARENCY_STAFF_IDENTITY``)."""
    key = settings.secret("pseudonym_key")
    return StaffIdentity(settings.transparency_staff_identity, key.encode() if key else None)


@lru_cache(maxsize=4096)
def data_categories(resource_type: str, sensitivity: str) -> tuple[str, ...]:
    """The legal data categories of one kind of record (``notifier.duties.categories``)."""
    return tuple(sorted(default_category_map().classify([(resource_type, sensitivity)]).categories))


def entry(row: StaffAccessRow, identity: StaffIdentity) -> dict[str, Any]:
    """One access as the tenant reads it."""
    names: dict[str, tuple[str | None, str | None]] = {row.staff_id: (row.staff_name, row.staff_team)}

    def label(staff_id: str) -> str:
        name, team = names.get(staff_id, (None, None))
        return identity.label(row.tenant_id, staff_id, name, team)

    j = row.justification()
    if j.justified:
        reason = justified_words(j, label, row.staff_id)
    else:
        reason = "; ".join(describe(p, row.ts, row.tenant_id, row.staff_id, label, for_tenant=True) for p in j.problems)
    return {
        "access_id": row.access_id,
        "ts": row.ts.isoformat().replace("+00:00", "Z"),
        "staff": label(row.staff_id),
        "staff_team": row.staff_team,
        "office_country": row.office_country,
        "action": row.action,
        "resource_type": row.resource_type,
        "data_categories": list(data_categories(row.resource_type, row.sensitivity)),
        "records": row.records,
        "outcome": row.outcome,
        "ticket_id": row.ticket_id,
        "ticket_summary": row.ticket_summary,
        "purpose": row.purpose,
        "customer_requested": None if row.requested_by is None else row.requested_by == "customer",
        "approval_required": row.approval_required,
        "request_id": row.request_id,
        "justified": row.justified,
        "reason": reason,
    }


# --- reading ----------------------------------------------------------------------------------


def rows(
    session: Session,
    tenant_id: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    after: tuple[datetime, str] | None = None,
    limit: int | None = None,
) -> list[StaffAccessRow]:
    """The tenant's rows in time order, from ``since`` to before ``until``, past the cursor ``after``."""
    stmt = select(StaffAccessRow).where(StaffAccessRow.tenant_id == tenant_id)
    if since is not None:
        stmt = stmt.where(StaffAccessRow.ts >= since)
    if until is not None:
        stmt = stmt.where(StaffAccessRow.ts < until)
    if after is not None:
        ts, aid = after
        stmt = stmt.where(or_(StaffAccessRow.ts > ts, and_(StaffAccessRow.ts == ts, StaffAccessRow.access_id > aid)))
    stmt = stmt.order_by(StaffAccessRow.ts, StaffAccessRow.access_id)
    if limit is not None:
        stmt = stmt.limit(limit)
    return list(session.scalars(stmt))


def latest(session: Session, tenant_id: str, *, limit: int, unjustified_only: bool = False) -> list[StaffAccessRow]:
    """The tenant's most recent rows, newest first (the console's page)."""
    stmt = select(StaffAccessRow).where(StaffAccessRow.tenant_id == tenant_id)
    if unjustified_only:
        stmt = stmt.where(StaffAccessRow.justified.is_(False))
    stmt = stmt.order_by(StaffAccessRow.ts.desc(), StaffAccessRow.access_id.desc()).limit(limit)
    return list(session.scalars(stmt))


def iter_rows(
    session: Session, tenant_id: str, *, since: datetime | None = None, until: datetime | None = None, page: int = 2000
) -> Iterator[StaffAccessRow]:
    """All of the tenant's rows in time order, read a page at a time."""
    after: tuple[datetime, str] | None = None
    while True:
        batch = rows(session, tenant_id, since=since, until=until, after=after, limit=page)
        yield from batch
        if len(batch) < page:
            return
        after = (batch[-1].ts, batch[-1].access_id)


def export(entries: Iterable[dict[str, Any]], fmt: Literal["json", "csv"]) -> Iterator[str]:
    """The entries as a JSON array (one object per access) or CSV (one row per access), in pieces."""
    if fmt == "json":
        first = True
        yield "["
        for e in entries:
            yield ("\n" if first else ",\n") + json.dumps(e, ensure_ascii=False)
            first = False
        yield "\n]\n"
        return
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for e in entries:
        writer.writerow({**e, "data_categories": ";".join(e["data_categories"])})
        yield buf.getvalue()
        buf.seek(0)
        buf.truncate()
    yield buf.getvalue()


# --- retention and erasure ----------------------------------------------------------------------


def apply_retention(
    session: Session, days: int, actor: str, *, now: datetime | None = None, dry_run: bool = False
) -> dict[str, Any]:
    """Delete (or, on a dry run, count) the staff accesses older than ``days`` days, audited
    (privacy policy 5: kept only as long as the tenant needs them to check its summaries)."""
    cutoff = (now or utcnow()) - timedelta(days=days)
    cond = StaffAccessRow.ts < cutoff
    if dry_run:
        n = int(session.scalar(select(func.count()).select_from(StaffAccessRow).where(cond)) or 0)
    else:
        n = int(session.execute(delete(StaffAccessRow).where(cond)).rowcount or 0)
        if n:
            audit.record(session, actor, "transparency.retention", "staff_accesses", {"deleted": n}, at=now)
    return {"staff_access_cutoff": cutoff.isoformat(), "staff_accesses_purged": n}


def erase(session: Session, tenant_id: str) -> int:
    """Delete the tenant's whole log (its erasure, privacy policy 7)."""
    return int(session.execute(delete(StaffAccessRow).where(StaffAccessRow.tenant_id == tenant_id)).rowcount or 0)
