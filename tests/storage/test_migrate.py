"""Migrations: a new database is brought to head, twice is harmless, a database made by
``create_all`` before migrations is adopted, and the migrations describe exactly the tables
the code declares (on SQLite and PostgreSQL)."""

from __future__ import annotations

import json
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
from click.testing import CliRunner
from sqlalchemy import inspect
from sqlalchemy.engine import Engine, make_url

from breachwatch.cli import main as breachwatch_command
from breachwatch.runtime import schema
from breachwatch.runtime.checkpoints import CheckpointStore
from breachwatch.storage.db import Base, make_engine
from breachwatch.storage.migrate import MIGRATIONS_DIR, alembic_config, current_revision, upgrade

assert schema.TABLE_MODULES  # every table declared, so the metadata compared below is complete
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
from breachwatch.storage.db import make_engine
from breachwatch.runtime.schema import init_db as upgrade
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


def test_findings_stored_before_correlation_keys_are_correlated_after_the_upgrade(empty: Engine) -> None:
    """A database at 0002 holds a takeover incident (open) and a closed one; after the upgrade
    a credential-stuffing finding from the takeover's network joins the open one."""
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import insert, select
    from sqlalchemy.orm import Session

    from breachwatch.core.events import AuthEvent
    from breachwatch.core.findings import Finding
    from breachwatch.incidents.store import IncidentStore
    from breachwatch.incidents.tables import CorrelationKeyRow, EvidenceRow, FindingRow, IncidentRow

    upgrade(empty, "0002")
    t0 = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)

    def login(n: int, actor: str, ip: str, minutes: float, outcome: str = "failure") -> AuthEvent:
        return AuthEvent(
            event_id=f"l-{n}",
            ts=t0 + timedelta(minutes=minutes),
            actor_id=actor,
            actor_type="customer_user",
            actor_tenant="t-rhein",
            action="login",
            outcome=outcome,
            ip=ip,
        )

    with Session(empty) as s, s.begin():
        for iid, actor, status, ip in (("i-open", "u-3", "open", "203.0.113.77"), ("i-old", "u-5", "resolved", "")):
            # Core, naming the columns a 0002 database has (the ORM row has later ones too).
            s.execute(
                insert(IncidentRow.__table__).values(
                    incident_id=iid,
                    kind="ato",
                    title="takeover",
                    severity="high",
                    score=80,
                    status=status,
                    opened_at=t0,
                    updated_at=t0,
                    actor_ids=[actor],
                    group_key=f"actor:{actor}",
                )
            )
            s.add(
                FindingRow(
                    finding_id=f"f-{iid}",
                    incident_id=iid,
                    detector="learned",
                    kind="ato",
                    severity="high",
                    score=80,
                    ts=t0,
                    title="takeover",
                    actor_id=actor,
                )
            )
            if ip:
                event = login(0, actor, ip, 0, "success")
                s.flush()
                s.add(
                    EvidenceRow(
                        incident_id=iid,
                        event_id=event.event_id,
                        finding_id=f"f-{iid}",
                        topic="erp.auth",
                        ts=t0,
                        event_json=event.model_dump_json(),
                    )
                )
    upgrade(empty)
    with Session(empty) as s:
        keys = sorted(tuple(r) for r in s.execute(select(CorrelationKeyRow.finding_id, CorrelationKeyRow.key)))
    assert keys == [("f-i-old", "actor:u-5"), ("f-i-open", "actor:u-3"), ("f-i-open", "src:203.0.113.0/24")]
    fails = tuple(login(i, f"u-{i}", "203.0.113.9", i * 0.1) for i in range(1, 13))
    stuffing = Finding(
        detector="rules.credential_stuffing",
        kind="credential_stuffing",
        severity="high",
        score=85,
        ts=fails[0].ts,
        title="credential stuffing",
        reasons=(),
        playbook="",
        events=fails,
        actor_id=None,
        source_ips=("203.0.113.9",),
    )
    assert IncidentStore(empty).record([stuffing]).updated == ["i-open"]


def test_downgrading_folds_checkpoint_items_back_into_the_states(empty: Engine) -> None:
    """Code from before 0004 reads a unit's whole state from ``checkpoints.state``."""
    from breachwatch.runtime.checkpoints import Checkpoint

    upgrade(empty)
    store = CheckpointStore(empty)
    item = {"profile": {"n": 3}, "carry": [{"event_id": "a-1"}]}
    store.save(
        [
            Checkpoint(
                "g",
                0,
                {"erp.access": 5},
                {"learned": {"version": 1, "peers": {}}, "rules": {"x": 1}},
                items={"learned": {"u-1": item, "u-2": {"profile": {"n": 4}}, "u-3": {"register": 1.5e9}}},
                complete=frozenset({"learned"}),
            )
        ]
    )
    # As an operator goes back: ``breachwatch db downgrade 0003``.
    url = empty.url.render_as_string(hide_password=False)
    result = CliRunner().invoke(breachwatch_command, ["db", "downgrade", "0003", "--db", url])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "0003"
    assert current_revision(empty) == "0003"
    assert "checkpoint_items" not in inspect(empty).get_table_names()
    upgrade(empty)
    cp = CheckpointStore(empty).load("g", 0)
    assert cp is not None and cp.items == {} and cp.offsets == {"erp.access": 5}
    assert cp.state == {
        "learned": {
            "version": 1,
            "peers": {},
            "register": {"u-3": 1.5e9},
            "profiles": {"u-1": {"n": 3}, "u-2": {"n": 4}},
            "carry": {"u-1": [{"event_id": "a-1"}]},
        },
        "rules": {"x": 1},
    }


def test_downgrading_folds_open_log_sessions_back_into_the_log_state(empty: Engine) -> None:
    """Code from before 0012 reads a log unit's open sessions from its head, in order."""
    from breachwatch.core.reference import ReferenceTables
    from breachwatch.runtime.pipeline import PartitionWorker, Stats
    from tests.detectors.logs.test_log_detector import Stream, small_detector

    upgrade(empty)
    store = CheckpointStore(empty)
    stream = Stream(seed=2)
    det = small_detector()
    w = PartitionWorker(-1, [det], ReferenceTables(), Stats())
    w.detect([stream.record(f"step one of job {i}", session=f"job-{i}") for i in range(6)])
    w.saved(store.save([w.checkpoint("g", {"erp.logs": 6})])[-1])
    # job-2 becomes the most recently active: written alone, it must still come back last.
    w.detect([stream.record("step two of job 2", session="job-2")])
    cp = w.checkpoint("g", {"erp.logs": 7})
    assert cp.partial
    w.saved(store.save([cp])[-1])

    url = empty.url.render_as_string(hide_password=False)
    result = CliRunner().invoke(breachwatch_command, ["db", "downgrade", "0011", "--db", url])
    assert result.exit_code == 0, result.output
    old = CheckpointStore(empty).load("g", -1)
    assert old is not None and old.items == {}
    whole = json.loads(json.dumps(det.state()))
    assert old.state["logs"] == whole
    assert [s["key"] for s in whole["sessions"]] == ["job-0", "job-1", "job-3", "job-4", "job-5", "job-2"]
