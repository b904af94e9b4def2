"""Schema migrations, applied programmatically: ``upgrade(engine)`` brings any database
(new, older, or made by ``create_all`` before migrations existed) to the current schema.

Tables are declared on ``storage.db.Base`` by the packages that own them; the composition root
(``runtime.schema``) imports every one of them before it migrates, so the metadata compared and
created here is complete. Operators use ``breachwatch db upgrade|downgrade|current``; developers
add a revision after changing a table with ``breachwatch db revision "what changed" --db URL``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine

from breachwatch.storage.db import Base

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# PostgreSQL: one migrating process at a time (consumers and the console may start together).
_LOCK_KEY = 0x6277_6D69  # "bwmi"


def alembic_config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (None if it was never migrated)."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the database to ``revision`` (default: the newest).

    A database whose tables were made by ``create_all`` before migrations existed has no
    version: its missing tables are created and it is marked as current, then migrated.
    """
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
        elif conn.dialect.name == "sqlite":
            # The database's write lock, up front: the driver opens no transaction for DDL, so
            # two processes that both read "no version" would each create the tables (one
            # fails: "table ... already exists"). The second waits here (busy timeout) and
            # then finds the first one's work done.
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        cfg = alembic_config(conn)
        tables = set(inspect(conn).get_table_names())
        if "alembic_version" not in tables and tables & set(Base.metadata.tables):
            log.warning("database has tables but no migration version; creating missing tables and marking it current")
            Base.metadata.create_all(conn)
            command.stamp(cfg, "head")
        if revision == "head":
            with _alembic_quiet():
                head = ScriptDirectory.from_config(cfg).get_current_head()
                current = MigrationContext.configure(conn).get_current_revision()
            if head is not None and current == head:
                return  # the usual case at start-up: nothing to do, nothing to log
        command.upgrade(cfg, revision)  # Alembic tells each step at INFO; the logging setup makes that DEBUG
        if revision == "head":
            log.info("database schema migrated from %s to %s", current or "nothing", head)


def downgrade(engine: Engine, revision: str) -> None:
    """Migrate the database back to ``revision``, to run an older version against it (stop
    every process of this version first: at start-up it would migrate forward again)."""
    with engine.begin() as conn:
        command.downgrade(alembic_config(conn), revision)


@contextmanager
def _alembic_quiet() -> Iterator[None]:
    """Alembic's chatter (the backend it found) off the logs of a start with nothing to migrate."""
    logger = logging.getLogger("alembic")
    level = logger.level
    logger.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        logger.setLevel(level)


def revision(engine: Engine, message: str, rev_id: str | None = None) -> None:
    """Write a new revision: the database is upgraded to head first, then compared with the
    tables declared on ``Base`` (every table module must have been imported)."""
    upgrade(engine)
    with engine.begin() as conn:
        command.revision(alembic_config(conn), message=message, autogenerate=True, rev_id=rev_id)
