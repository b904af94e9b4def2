"""Migrations: a new database is brought to head, twice is harmless, a database made by
``create_all`` before migrations is adopted, and the migrations describe exactly the tables
the code declares (on SQLite and PostgreSQL)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlalchemy.engine import Engine, make_url

from incidents.db import Base, make_engine
from incidents.migrate import MIGRATIONS_DIR, alembic_config, current_revision, import_table_modules, upgrade

import_table_modules()
HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()


@pytest.fixture(params=[pytest.param("sqlite"), pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An empty database (nothing migrated yet)."""
    if request.param == "sqlite":
        eng = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")
        yield eng
        eng.dispose()
        return
    server = request.getfixturevalue("postgres_url")
    admin = make_url(server).set(database="postgres").render_as_string(hide_password=False)
    name = f"bw_mig_{tmp_path.name[-8:].replace('-', '_').lower()}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name}")
    eng = make_engine(make_url(server).set(database=name).render_as_string(hide_password=False))
    yield eng
    eng.dispose()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _differences(engine: Engine) -> list[object]:
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(ctx, Base.metadata))


def test_upgrade_creates_every_declared_table_and_matches_the_code(empty: Engine) -> None:
    assert current_revision(empty) is None
    upgrade(empty)
    upgrade(empty)  # at head already: nothing to do
    assert current_revision(empty) == HEAD
    assert set(Base.metadata.tables) <= set(inspect(empty).get_table_names())
    # A table or column added to the code without a migration shows here.
    assert _differences(empty) == []


MIGRATE_AT = """
import sys, time
from incidents.db import make_engine
from incidents.migrate import upgrade
engine = make_engine(sys.argv[1])
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))  # all at once, imports done
upgrade(engine)
"""


def test_processes_that_start_together_migrate_once(empty: Engine) -> None:
    """A consumer, a second consumer and the console started at once on a new database."""
    url = empty.url.render_as_string(hide_password=False)
    at = time.time() + 4
    procs = [
        subprocess.Popen([sys.executable, "-c", MIGRATE_AT, url, str(at)], stderr=subprocess.PIPE, text=True)
        for _ in range(6)
    ]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * len(procs), [e[-1500:] for e in errors]
    assert current_revision(empty) == HEAD


def test_a_database_made_before_migrations_is_adopted(empty: Engine) -> None:
    from sqlalchemy import MetaData

    legacy = MetaData()
    for name in ("incidents", "findings", "evidence", "checkpoints", "outbox"):
        Base.metadata.tables[name].to_metadata(legacy)
    legacy.create_all(empty)  # what init_db's create_all made in earlier releases
    upgrade(empty)
    assert current_revision(empty) == HEAD
    assert {"audit_log", "console_users", "silences"} <= set(inspect(empty).get_table_names())


def test_the_migrations_folder_is_packaged_with_its_template() -> None:
    assert (MIGRATIONS_DIR / "env.py").is_file() and (MIGRATIONS_DIR / "script.py.mako").is_file()
    assert HEAD is not None
