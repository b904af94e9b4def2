"""The audit chain: appends link up, and any edit or deletion made directly in the database
is found and named by its seq, on SQLite and PostgreSQL."""

from __future__ import annotations

import itertools
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from breachwatch.storage import audit
from breachwatch.storage.audit import AuditHead, AuditRow

AT = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


def _fill(engine: Engine, n: int = 6) -> None:
    with Session(engine) as session, session.begin():
        for i in range(n):
            audit.record(
                session,
                "ada",
                "incident.acknowledge",
                f"incident:inc-{i}",
                {"reason": f"looked at it, step {i}", "n": i, "tags": ["a", "b"]},
                at=AT + timedelta(seconds=i),
            )


def _verify(engine: Engine) -> audit.Verification:
    with Session(engine) as session:
        return audit.verify(session)


def test_appended_rows_form_an_intact_chain(engine: Engine) -> None:
    _fill(engine)
    result = _verify(engine)
    assert result.ok, result.problems
    assert (result.rows, result.head_seq, result.last_seq) == (6, 6, 6)
    with Session(engine) as session:
        rows = list(session.scalars(select(AuditRow).order_by(AuditRow.seq)))
    assert [r.seq for r in rows] == [1, 2, 3, 4, 5, 6]
    assert rows[0].prev_hash == audit.GENESIS
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(rows))
    assert rows[2].detail == {"reason": "looked at it, step 2", "n": 2, "tags": ["a", "b"]}
    assert rows[2].at == AT + timedelta(seconds=2)


def test_editing_one_row_in_the_database_is_named_by_seq(engine: Engine) -> None:
    _fill(engine)
    # What someone with database access would do: change what a row says, directly in SQL.
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET actor = 'mallory' WHERE seq = 3"))
    result = _verify(engine)
    assert not result.ok
    assert result.bad_seqs == [3]
    assert "edited" in str(result.problems[0]) and str(result.problems[0]).startswith("seq 3:")


def test_editing_the_detail_json_is_found(engine: Engine) -> None:
    _fill(engine)
    with Session(engine) as session, session.begin():
        session.execute(update(AuditRow).where(AuditRow.seq == 5).values(detail={"reason": "nothing to see"}))
    assert _verify(engine).bad_seqs == [5]


def test_an_edit_that_recomputes_the_rows_hash_is_still_named(engine: Engine) -> None:
    _fill(engine)
    with Session(engine) as session, session.begin():
        row = session.get(AuditRow, 2)
        assert row is not None
        row.actor = "mallory"
        row.hash = audit.row_hash(row)  # self-consistent now, but seq 3 chained to the original
    result = _verify(engine)
    assert result.bad_seqs == [2]
    assert "re-hashed" in result.problems[0].what


def test_deleting_a_row_is_named(engine: Engine) -> None:
    _fill(engine)
    with Session(engine) as session, session.begin():
        session.execute(delete(AuditRow).where(AuditRow.seq == 4))
    result = _verify(engine)
    assert result.bad_seqs == [4]
    assert "deleted" in result.problems[0].what


def test_deleting_the_newest_rows_is_found_through_the_head(engine: Engine) -> None:
    _fill(engine)
    with Session(engine) as session, session.begin():
        session.execute(delete(AuditRow).where(AuditRow.seq >= 5))
    result = _verify(engine)
    assert result.bad_seqs == [5]
    assert "5-6 deleted" in result.problems[0].what


def test_rewriting_the_whole_chain_is_caught_by_an_anchor(engine: Engine) -> None:
    _fill(engine)
    before = _verify(engine)
    anchor = (before.head_seq or 0, before.head_hash or "")
    # Rewrite everything consistently, head included: only an anchor kept elsewhere shows it.
    with Session(engine) as session, session.begin():
        prev = audit.GENESIS
        for row in session.scalars(select(AuditRow).order_by(AuditRow.seq)):
            row.actor = "mallory"
            row.prev_hash = prev
            row.hash = audit.row_hash(row)
            prev = row.hash
            session.flush()
        session.execute(update(AuditHead).values(hash=prev))
    assert _verify(engine).ok
    with Session(engine) as session:
        result = audit.verify(session, anchor=anchor)
    assert result.bad_seqs == [anchor[0]]


def test_rows_deferred_to_commit_are_appended_then_and_dropped_on_rollback(sqlite_engine: Engine) -> None:
    with Session(sqlite_engine) as session, session.begin():
        audit.record_at_commit(session, "breachwatch", "incident.reopen", "incident:x", {"why": "new evidence"})
        assert session.scalar(select(func.count()).select_from(AuditRow)) == 0  # not yet
    with Session(sqlite_engine) as session:
        assert [r.action for r in audit.recent(session)] == ["incident.reopen"]
    with Session(sqlite_engine) as session:
        with pytest.raises(RuntimeError), session.begin():
            audit.record_at_commit(session, "breachwatch", "incident.reopen", "incident:y", {})
            raise RuntimeError("the batch failed")
        with session.begin():
            audit.record(session, "ada", "signin", "user:ada", {})
    with Session(sqlite_engine) as session:
        assert [r.subject for r in audit.recent(session)] == ["user:ada", "incident:x"]
        assert audit.verify(session).ok


def test_concurrent_writers_keep_one_chain(engine: Engine) -> None:
    errors: list[BaseException] = []

    def writer(name: str) -> None:
        try:
            for i in range(15):
                with Session(engine) as session, session.begin():
                    audit.serialize_writes(session)
                    audit.record(session, name, "evidence.view", f"incident:{name}-{i}", {"i": i})
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(f"user{n}",)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    result = _verify(engine)
    assert result.ok and result.rows == 60 and result.head_seq == 60


def test_subject_history_is_in_order(sqlite_engine: Engine) -> None:
    _fill(sqlite_engine)
    with Session(sqlite_engine) as session, session.begin():
        audit.record(session, "bob", "evidence.view", "incident:inc-2", {"events": 3})
    with Session(sqlite_engine) as session:
        rows = audit.for_subject(session, "incident:inc-2")
    assert [(r.actor, r.action) for r in rows] == [("ada", "incident.acknowledge"), ("bob", "evidence.view")]
