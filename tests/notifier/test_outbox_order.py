"""Ordered outbox messages: an incident's changes to one system go out one at a time, in the
order they were queued, through retries and interrupted sends; other incidents, other systems
and unordered messages are not held up; a message that failed for good holds nothing, and is
not sent again once a later one of its incident has gone out."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from breachwatch.notifier.delivery import PermanentError, RetryableError
from breachwatch.notifier.message import OutboxMessage
from breachwatch.notifier.outbox import Dispatcher, OutboxRow, enqueue, mark_sent, requeue


@dataclass
class Ledger:
    """A channel that records what it delivered and fails the messages it is told to."""

    delivered: list[str] = field(default_factory=list)
    failing: dict[str, type[Exception]] = field(default_factory=dict)

    def send(self, message: OutboxMessage) -> str:
        error = self.failing.get(message.message_id)
        if error is not None:
            raise error(f"{message.message_id} refused")
        self.delivered.append(message.message_id)
        return message.message_id


class Crash(BaseException):
    """The process dying mid-send."""


class CrashOn(Ledger):
    def send(self, message: OutboxMessage) -> str:
        if message.message_id in self.failing:
            raise Crash
        return super().send(message)


def _queue(engine, clock, *ids: str, key: str | None = "incident:a", channel: str = "ticket") -> None:
    with Session(engine) as session, session.begin():
        for message_id in ids:
            message = OutboxMessage(
                message_id=message_id,
                channel=channel,
                recipient="oncall@unisen.example",
                subject="change",
                body_text=message_id,
                incident_id="a",
                ordering_key=key,
            )
            enqueue(session, message, now=clock())


def _drain(dispatcher: Dispatcher, passes: int = 6) -> None:
    for _ in range(passes):
        dispatcher.dispatch_due()


def test_each_key_gets_its_own_sequence_and_a_repeat_keeps_its_place(engine, clock) -> None:
    _queue(engine, clock, "a1", "a2")
    _queue(engine, clock, "a1")  # the same change queued again (a batch stored twice)
    _queue(engine, clock, "b1", key="incident:b")
    _queue(engine, clock, "c1", channel="pager")
    with Session(engine) as session:
        rows = {r.message_id: r.seq for r in session.scalars(select(OutboxRow))}
    assert rows == {"a1": 1, "a2": 2, "b1": 1, "c1": 1}


def test_a_retried_change_holds_back_the_later_ones_of_its_incident_only(engine, clock) -> None:
    _queue(engine, clock, "a1", "a2", "a3")
    _queue(engine, clock, "b1", key="incident:b")
    _queue(engine, clock, "u1", key=None)
    ledger = Ledger(failing={"a1": RetryableError})
    dispatcher = Dispatcher(engine, {"ticket": ledger}, clock=clock)
    _drain(dispatcher)
    assert ledger.delivered == ["b1", "u1"]  # a2 and a3 wait behind a1's retry
    del ledger.failing["a1"]
    clock.advance(31)
    _drain(dispatcher)
    assert ledger.delivered == ["b1", "u1", "a1", "a2", "a3"]


def test_a_change_of_unknown_fate_holds_the_rest_until_a_person_settles_it(engine, clock) -> None:
    _queue(engine, clock, "a1", "a2")
    with pytest.raises(Crash):
        Dispatcher(engine, {"ticket": CrashOn(failing={"a1": Crash})}, clock=clock).dispatch_due()
    clock.advance(301)
    ledger = Ledger()
    dispatcher = Dispatcher(engine, {"ticket": ledger}, clock=clock)  # a channel that cannot look up
    _drain(dispatcher)
    assert ledger.delivered == []
    with Session(engine) as session, session.begin():
        assert session.get(OutboxRow, "a1").status == "unknown"
        assert mark_sent(session, "a1", now=clock())
    _drain(dispatcher)
    assert ledger.delivered == ["a2"]


def test_a_change_refused_for_good_holds_nothing_and_is_not_sent_after_a_later_one(engine, clock) -> None:
    _queue(engine, clock, "a1", "a2")
    ledger = Ledger(failing={"a1": PermanentError})
    _drain(Dispatcher(engine, {"ticket": ledger}, clock=clock))
    assert ledger.delivered == ["a2"]
    with Session(engine) as session, session.begin():
        assert session.get(OutboxRow, "a1").status == "failed"
        assert not requeue(session, "a1", now=clock())  # older state must not overwrite a2's


def test_a_failed_change_with_nothing_sent_after_it_can_be_sent_again(engine, clock) -> None:
    _queue(engine, clock, "a1", "a2")
    ledger = Ledger(failing={"a1": PermanentError, "a2": PermanentError})
    dispatcher = Dispatcher(engine, {"ticket": ledger}, clock=clock)
    _drain(dispatcher)
    ledger.failing.clear()
    with Session(engine) as session, session.begin():
        assert requeue(session, "a1", now=clock())
    _drain(dispatcher)
    assert ledger.delivered == ["a1"]
