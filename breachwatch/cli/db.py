"""``breachwatch db``: the database's schema version, forward and back."""

from __future__ import annotations

import click

from breachwatch.cli.common import settings_or_exit
from breachwatch.runtime import schema
from breachwatch.storage import migrate
from breachwatch.storage.db import make_engine


def _engine(db_url: str | None):  # type: ignore[no-untyped-def]
    return make_engine(db_url or settings_or_exit().db_url)


_DB = click.option("--db", "db_url", default=None, help="SQLAlchemy URL (default: BREACHWATCH_DB_URL)")


@click.group()
def db() -> None:
    """The database schema: upgrade (what every process does at start-up), downgrade, current."""


@db.command()
@_DB
def upgrade(db_url: str | None) -> None:
    """Bring the database to this version's schema."""
    engine = _engine(db_url)
    try:
        schema.init_db(engine)
        click.echo(migrate.current_revision(engine) or "(none)")
    finally:
        engine.dispose()


@db.command()
@click.argument("revision")
@_DB
def downgrade(revision: str, db_url: str | None) -> None:
    """Take the schema back to REVISION, to run an older version against it (stop every process
    of this version first: at start-up it would migrate forward again)."""
    engine = _engine(db_url)
    try:
        migrate.downgrade(engine, revision)
        click.echo(migrate.current_revision(engine) or "(none)")
    finally:
        engine.dispose()


@db.command()
@_DB
def current(db_url: str | None) -> None:
    """Print the schema revision the database is at ("(none)" if it was never migrated)."""
    engine = _engine(db_url)
    try:
        click.echo(migrate.current_revision(engine) or "(none)")
    finally:
        engine.dispose()


@db.command()
@click.argument("message")
@click.option("--rev-id", default=None, help="the new revision's id (default: generated)")
@_DB
def revision(message: str, rev_id: str | None, db_url: str | None) -> None:
    """For developers: write a migration for the tables changed in the code (the database is
    upgraded first, then compared with every table the code declares)."""
    engine = _engine(db_url)
    try:
        migrate.revision(engine, message, rev_id)
    finally:
        engine.dispose()


COMMANDS = (db,)
