"""Schema migrations, applied programmatically: ``upgrade(engine)`` brings any database
(new, older, or made by ``create_all`` before migrations existed) to the current schema.

Developers add a revision after changing a table with
``python -m incidents.migrate revision "what changed" --db sqlite:///scratch.db``
(the scratch database is upgraded to head first, then compared with the code's tables).
"""

from __future__ import annotations

import argparse
import importlib
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

from incidents.db import Base

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Every module that declares tables on Base; the migration environment compares all of them.
TABLE_MODULES: tuple[str, ...] = (
    "incidents.db",
    "incidents.audit",
    "incidents.users",
    "incidents.lifecycle",
    "incidents.silences",
    "incidents.escalation",
    "notifier.outbox",
)
OPTIONAL_TABLE_MODULES: tuple[str, ...] = ("notifier.notices",)
# PostgreSQL: one migrating process at a time (consumers and the console may start together).
_LOCK_KEY = 0x6277_6D69  # "bwmi"


def import_table_modules() -> None:
    """Import every module that declares tables, so ``Base.metadata`` is complete."""
    for name in TABLE_MODULES:
        importlib.import_module(name)
    for name in OPTIONAL_TABLE_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise


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
    import_table_modules()
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
        command.upgrade(cfg, revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Migrate the database back to ``revision``, to run an older version against it (stop
    every process of this version first: at start-up it would migrate forward again)."""
    import_table_modules()
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


def main(argv: list[str] | None = None) -> None:
    """``python -m incidents.migrate {upgrade,revision,current,downgrade}``: the developer's
    entry point, and the operator's way back (``downgrade REVISION``)."""
    from incidents.db import make_engine

    parser = argparse.ArgumentParser(prog="python -m incidents.migrate")
    parser.add_argument("action", choices=("upgrade", "revision", "current", "downgrade"))
    parser.add_argument("message", nargs="?", default="schema change", help="revision message; downgrade: the target")
    parser.add_argument(
        "--db", default=None, help="SQLAlchemy URL (default: BREACHWATCH_DB_URL, as the service reads it)"
    )
    parser.add_argument("--rev-id", default=None)
    args = parser.parse_args(argv)
    if args.db is None:
        from breachwatch.settings import load_settings

        args.db = load_settings().db_url
    engine = make_engine(args.db)
    try:
        if args.action == "current":
            print(current_revision(engine) or "(none)")
            return
        if args.action == "downgrade":
            downgrade(engine, args.message)
            return
        upgrade(engine)
        if args.action == "revision":
            import_table_modules()
            with engine.begin() as conn:
                command.revision(alembic_config(conn), message=args.message, autogenerate=True, rev_id=args.rev_id)
    finally:
        engine.dispose()


if __name__ == "__main__":
    main()
