"""The database: the declarative base every table is declared on, aware UTC times on every
backend, the engine (SQLite by default, PostgreSQL in production) and the one dialect-aware
INSERT ... ON CONFLICT the stores share.

Tables live with the package that owns them (incidents, outbox, notices, users, checkpoints);
they all share this ``Base``, so one migration history covers the whole database.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Table, create_engine, event, text
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Session
from sqlalchemy.types import TypeDecorator


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


def reachable(engine: Engine) -> bool:
    """Whether the database answers a trivial query now (what a readiness check asks)."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError:  # refused, gone away, the pool timed out: all mean "not now"
        return False
    return True


def dialect_insert(session: Session, table: Table) -> Any:
    """An INSERT of the session's dialect, which can say ON CONFLICT (SQLite and PostgreSQL)."""
    return (postgresql_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert)(table)


def insert_or_ignore(session: Session, table: Table, values: dict[str, Any]) -> bool:
    """INSERT ... ON CONFLICT DO NOTHING of one row: a row whose key is already stored is left
    as it is (idempotent writes of re-delivered work). Whether the row was inserted."""
    stmt = dialect_insert(session, table).values(values).on_conflict_do_nothing()
    # RETURNING rather than rowcount: PostgreSQL's driver reports -1 for this statement.
    key = next(iter(table.primary_key.columns))
    return session.execute(stmt.returning(key)).first() is not None
