"""The pipeline writes every staff access and its justification to the transparency log in the
batch's transaction: the same rows from replay with one process or two, from the live service,
and after a batch is processed again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from breachwatch.core.settings import Settings
from breachwatch.devkit.approvals import load_access_requests
from breachwatch.devkit.simulate import simulate
from breachwatch.privacy.transparency import StaffAccessRow
from breachwatch.runtime import app
from breachwatch.runtime.pipeline import group_by_unit
from breachwatch.runtime.replay import replay
from breachwatch.runtime.service import Service
from breachwatch.streams.dump import iter_events, load_reference_tables
from breachwatch.streams.kafka_client import ensure_topics
from breachwatch.streams.partitions import Partitioner
from breachwatch.streams.produce import produce_dump

COLUMNS = [c for c in StaffAccessRow.__table__.columns if c.name != "recorded_at"]


@pytest.fixture(scope="module")
def staff_dump(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dump = tmp_path_factory.mktemp("dump")
    simulate(dump, seed=11, days=5, tenants=6, attack_days=2)
    return dump


def _db(settings: Settings, path: Path, dump: Path) -> Engine:
    engine = app.database(settings, f"sqlite:///{path}")
    load_access_requests(engine, dump, settings)
    return engine


def _log(engine: Engine) -> list[tuple[Any, ...]]:
    with Session(engine) as session:
        return [tuple(r) for r in session.execute(select(*COLUMNS).order_by(StaffAccessRow.access_id))]


def _replayed(settings: Settings, dump: Path, path: Path, jobs: int) -> list[tuple[Any, ...]]:
    engine = _db(settings, path, dump)
    pipeline = app.build_pipeline(settings, engine, notify=False)
    replay(dump, pipeline, partitions=settings.partitions, max_bytes=settings.max_message_bytes, jobs=jobs)
    rows = _log(engine)
    engine.dispose()
    return rows


@pytest.mark.slow
def test_replay_writes_the_log_alike_in_one_process_or_two(staff_dump: Path, tmp_path: Path) -> None:
    settings = Settings(outbox_dir=tmp_path / "outbox")
    one = _replayed(settings, staff_dump, tmp_path / "one.db", jobs=1)
    two = _replayed(settings, staff_dump, tmp_path / "two.db", jobs=2)
    assert one == two
    by = {c.name: i for i, c in enumerate(COLUMNS)}
    assert 0 < sum(r[by["justified"]] for r in one) < len(one)
    assert any(r[by["approval_required"]] and r[by["request_id"]] for r in one)  # approved sessions
    codes = {p["code"] for r in one for p in r[by["problems"]]}
    assert {"approval_missing", "ticket_other_tenant", "ticket_other_assignee", "purpose_excludes_export"} <= codes


def test_a_batch_processed_again_adds_no_row(staff_dump: Path, tmp_path: Path) -> None:
    settings = Settings(outbox_dir=tmp_path / "outbox")
    engine = _db(settings, tmp_path / "bw.db", staff_dump)
    events = list(iter_events(staff_dump, lambda d: None, settings.max_message_bytes))
    staff = sum(1 for e in events if getattr(e, "actor_type", None) == "staff")
    counts = []
    for _ in range(2):  # a crash before the offsets were committed: a new process, the same batch
        pipeline = app.build_pipeline(settings, engine, notify=False)
        load_reference_tables(pipeline.apply_reference, staff_dump, lambda d: None, settings.max_message_bytes)
        pipeline.process(group_by_unit(events, Partitioner(settings.partitions)))
        with Session(engine) as session:
            counts.append(session.scalar(select(func.count()).select_from(StaffAccessRow)))
    # Every staff access but those of the last minutes, still settling when the dump ends.
    assert counts[0] == counts[1] and staff - 30 <= counts[0] <= staff


@pytest.mark.kafka
def test_the_live_service_writes_the_log_replay_writes(
    bw_settings: Settings, kafka_bootstrap: str, staff_dump: Path, tmp_path: Path
) -> None:
    ensure_topics(bw_settings, kafka_bootstrap)
    produce_dump(bw_settings, kafka_bootstrap, staff_dump)
    engine = _db(bw_settings, Path(bw_settings.db_url.removeprefix("sqlite:///")), staff_dump)
    pipeline = app.build_pipeline(bw_settings, engine, notify=False)
    Service(bw_settings, kafka_bootstrap, pipeline).run(until_caught_up=True)
    live = _log(engine)
    assert live and live == _replayed(bw_settings, staff_dump, tmp_path / "replay.db", jobs=1)


def test_the_service_expires_requests_and_queues_last_months_summaries(tmp_path: Path) -> None:
    """The outbox pump of every ``run`` process: requests nobody decided expire, and from the
    second day of a month, last month's summaries are queued, once however often it looks."""
    from datetime import UTC, datetime, timedelta

    from breachwatch.core.clock import utcnow
    from breachwatch.notifier.outbox import OutboxRow
    from breachwatch.privacy import approvals, transparency
    from breachwatch.privacy.staff_mail import Month
    from tests.fixtures.staff_access import remember, staff_access, staff_settings, tenant

    settings = staff_settings(tmp_path, db_url=f"sqlite:///{tmp_path / 'bw.db'}")
    engine = app.database(settings)
    now = utcnow()
    last_month = Month.before(now).start + timedelta(days=3)
    with Session(engine) as session, session.begin():
        remember(session, tenant("t-rhein"))
        transparency.record_staff_accesses(session, [staff_access(1, start=last_month)])
        approvals.require_approval(session, "t-rhein", ["ciso@rhein.example"], "cli", now=now - timedelta(days=2))
        req = approvals.AccessRequestIn(
            "t-rhein",
            ("st-bilal",),
            "troubleshooting",
            now - timedelta(hours=3),
            now - timedelta(minutes=1),
            request_id="AR-9",
        )
        approvals.file_request(session, req, "bot", approvals.approval_links(settings), now=now - timedelta(hours=4))
    pump = app.OutboxPump(settings, engine)
    pump.check_staff_access()
    pump._last_staff_check = 0.0  # a minute later
    pump.check_staff_access()
    with Session(engine) as session:
        assert approvals.get(session, "AR-9").state == "expired"
        summaries = list(session.scalars(select(OutboxRow).where(OutboxRow.message_type == "transparency_summary")))
    due = now.date() >= datetime(now.year, now.month, 2, tzinfo=UTC).date()
    assert len(summaries) == (1 if due else 0)
    engine.dispose()
