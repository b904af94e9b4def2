"""The transactional outbox and its dispatcher, against real channels: idempotent enqueue,
retry with backoff and Retry-After, permanent failure, and recovery of interrupted sends
without a second copy reaching the provider."""

from __future__ import annotations

import datetime as dt
import logging
import random
import threading
import uuid

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from breachwatch.channels.file import FileChannel
from breachwatch.channels.sendgrid_api import SendGridChannel
from breachwatch.channels.smtp import SmtpChannel
from breachwatch.notifier.message import OutboxMessage
from breachwatch.notifier.outbox import (
    Dispatcher,
    DispatchReport,
    ExponentialBackoff,
    FullJitter,
    OutboxRow,
    enqueue,
    mark_sent,
    requeue,
)
from breachwatch.runtime.schema import init_db
from breachwatch.storage.db import make_engine

SENDER = "breachwatch@unisen.example"
LEASE_S = 300


class SimulatedCrash(BaseException):
    """Stands for the process dying: not an Exception, so nothing in the dispatcher catches it."""


class CrashAfterSend:
    """Delivers through the real channel, then 'dies' before the outcome can be recorded."""

    def __init__(self, inner: object) -> None:
        self.inner = inner

    def send(self, message: OutboxMessage) -> str | None:
        self.inner.send(message)  # type: ignore[attr-defined]
        raise SimulatedCrash


class CrashBeforeSend:
    """'Dies' after the claim was committed but before the provider was called."""

    def send(self, message: OutboxMessage) -> str | None:
        raise SimulatedCrash


class BrokenChannel:
    """A channel with a bug whose exception text happens to contain a secret."""

    def send(self, message: OutboxMessage) -> str | None:
        raise ValueError("boom with token SG.leaky.secret-value")


def _row(engine, message_id: str = "msg-0001") -> OutboxRow:
    with Session(engine) as session:
        row = session.get(OutboxRow, message_id)
        assert row is not None
        session.expunge(row)
        return row


def _enqueue(engine, message: OutboxMessage, clock, **kw) -> bool:
    with Session(engine) as session, session.begin():
        return enqueue(session, message, now=clock(), **kw)


@pytest.fixture
def sendgrid(sendgrid_server, sendgrid_key) -> SendGridChannel:
    return SendGridChannel(sendgrid_key, SENDER, host=sendgrid_server.url, timeout=5)


# --- enqueue ---------------------------------------------------------------------------------


def test_enqueue_is_idempotent_by_message_id(engine, new_message, clock) -> None:
    assert _enqueue(engine, new_message("msg-0001"), clock) is True
    assert _enqueue(engine, new_message("msg-0001", subject="changed"), clock) is False
    with Session(engine) as session:
        rows = session.scalars(select(OutboxRow)).all()
    assert [(r.message_id, r.subject, r.status, r.attempts) for r in rows] == [
        ("msg-0001", "[BreachWatch] HIGH bulk_export", "pending", 0)
    ]
    assert rows[0].next_attempt_at == clock()


def test_enqueue_belongs_to_the_callers_transaction(engine, new_message, clock) -> None:
    with Session(engine) as session:
        session.begin()
        assert enqueue(session, new_message("msg-0001"), now=clock())
        session.rollback()  # e.g. the incident batch failed
    with Session(engine) as session:
        assert session.get(OutboxRow, "msg-0001") is None


def test_enqueue_makes_the_subject_header_safe(engine, new_message, clock) -> None:
    _enqueue(engine, new_message(subject="Alert\r\nBcc: victim@evil.example"), clock)
    assert _row(engine).subject == "Alert Bcc: victim@evil.example"


@pytest.mark.parametrize(
    "overrides",
    [
        {"recipient": "oncall@unisen.example, ceo@unisen.example"},
        {"recipient": "Oncall <oncall@unisen.example>"},
        {"recipient": "oncall@unisen.example\r\nBcc: x@evil.example"},
        {"message_id": "../../etc/passwd"},
        {"headers": {"Bcc": "x@evil.example"}},
        {"headers": {"X-Ok\r\nBcc": "x@evil.example"}},
    ],
)
def test_enqueue_rejects_unusable_messages(engine, new_message, clock, overrides) -> None:
    with pytest.raises(ValueError):
        _enqueue(engine, new_message(**overrides), clock)


# --- delivery, retries, failures ------------------------------------------------------------


def test_retry_after_429_then_success(engine, sendgrid, sendgrid_server, new_message, clock) -> None:
    _enqueue(engine, new_message(), clock)
    sendgrid_server.fail_next(429, retry_after=120)
    dispatcher = Dispatcher(engine, {"email": sendgrid}, clock=clock)

    first = dispatcher.dispatch_due()
    row = _row(engine)
    assert (first.claimed, first.retried, first.sent, first.attempted) == (1, 1, 0, 1)
    assert (row.status, row.attempts) == ("pending", 1)
    assert row.next_attempt_at == clock() + dt.timedelta(seconds=120)  # Retry-After, not the 30 s backoff
    assert "HTTP 429" in (row.last_error or "")

    clock.advance(119)
    assert dispatcher.dispatch_due().claimed == 0  # not due yet
    clock.advance(1)
    assert dispatcher.dispatch_due().sent == 1

    row = _row(engine)
    assert (row.status, row.attempts, row.last_error) == ("sent", 2, None)
    assert row.sent_at == clock()
    [mail] = sendgrid_server.messages
    assert row.provider_message_id == mail.x_message_id
    assert mail.custom_args == {"message_id": "msg-0001"}


def test_5xx_backs_off_exponentially(engine, sendgrid, sendgrid_server, new_message, clock) -> None:
    _enqueue(engine, new_message(), clock)
    sendgrid_server.fail_next(500, times=2)
    dispatcher = Dispatcher(engine, {"email": sendgrid}, clock=clock, backoff=ExponentialBackoff(base_s=30))

    dispatcher.dispatch_due()
    assert _row(engine).next_attempt_at == clock() + dt.timedelta(seconds=30)
    clock.advance(30)
    dispatcher.dispatch_due()
    assert _row(engine).next_attempt_at == clock() + dt.timedelta(seconds=60)
    clock.advance(60)
    assert dispatcher.dispatch_due().sent == 1
    assert len(sendgrid_server.messages) == 1


def test_messages_failing_together_are_retried_spread_out(
    engine, sendgrid, sendgrid_server, new_message, clock
) -> None:
    """A provider outage fails every held message in one pass; their retries are spread over
    the backoff span (full jitter), not all due at the same instant when it comes back."""
    for n in range(40):
        _enqueue(engine, new_message(f"msg-{n:04d}"), clock)
    sendgrid_server.fail_next(503, times=40)
    dispatcher = Dispatcher(engine, {"email": sendgrid}, clock=clock, backoff=FullJitter(rng=random.Random(7)))
    assert dispatcher.dispatch_due().retried == 40
    with Session(engine) as session:
        due = [(r.next_attempt_at - clock()).total_seconds() for r in session.scalars(select(OutboxRow))]
    assert all(0 <= d <= 30 for d in due)
    assert len(set(due)) == 40 and max(due) - min(due) > 20  # spread over most of the 30 s
    clock.advance(15)
    assert 5 < dispatcher.dispatch_due().sent < 35  # about half are due by the middle of the span


def test_full_jitter_stays_under_an_exponential_ceiling() -> None:
    jitter = FullJitter(ExponentialBackoff(base_s=30, cap_s=600), rng=random.Random(1))
    for attempts, ceiling in ((1, 30), (2, 60), (3, 120), (6, 600), (20, 600)):
        waits = [jitter(attempts) for _ in range(500)]
        assert all(0 <= w <= ceiling for w in waits)
        assert max(waits) > 0.9 * ceiling and min(waits) < 0.1 * ceiling  # the whole span is used
    assert Dispatcher(None, {}).backoff != ExponentialBackoff()  # jittered unless a test asks otherwise


def test_400_fails_permanently_without_retry(engine, sendgrid, sendgrid_server, new_message, clock) -> None:
    _enqueue(engine, new_message(), clock)
    sendgrid_server.fail_next(400)
    dispatcher = Dispatcher(engine, {"email": sendgrid}, clock=clock)

    assert dispatcher.dispatch_due().failed == 1
    clock.advance(86_400)
    assert dispatcher.dispatch_due().claimed == 0
    row = _row(engine)
    assert (row.status, row.attempts) == ("failed", 1)
    assert "HTTP 400" in (row.last_error or "")
    assert sendgrid_server.messages == []


def test_gives_up_after_max_attempts(engine, sendgrid, sendgrid_server, new_message, clock) -> None:
    _enqueue(engine, new_message(), clock)
    sendgrid_server.fail_next(503, times=5)
    dispatcher = Dispatcher(engine, {"email": sendgrid}, clock=clock, max_attempts=2)

    assert dispatcher.dispatch_due().retried == 1
    clock.advance(3600)
    assert dispatcher.dispatch_due().failed == 1
    row = _row(engine)
    assert row.status == "failed"
    assert (row.last_error or "").startswith("gave up after 2 attempts: SendGrid mail send: HTTP 503")


def test_a_broken_channel_is_retried_and_its_text_not_stored(engine, new_message, clock, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    _enqueue(engine, new_message(), clock)
    report = Dispatcher(engine, {"email": BrokenChannel()}, clock=clock).dispatch_due()
    row = _row(engine)
    assert report.retried == 1 and row.status == "pending"
    assert row.last_error == "unexpected ValueError in channel"
    assert "SG.leaky" not in caplog.text


def test_messages_for_channels_not_configured_here_are_left_alone(engine, tmp_path, new_message, clock) -> None:
    _enqueue(engine, new_message("msg-0001", channel="pagerduty"), clock)
    report = Dispatcher(engine, {"email": FileChannel(tmp_path, SENDER)}, clock=clock).dispatch_due()
    assert report.claimed == 0
    assert _row(engine).status == "pending"


def test_held_messages_wait_for_requeue(engine, tmp_path, new_message, clock) -> None:
    _enqueue(engine, new_message(), clock, hold=True)
    dispatcher = Dispatcher(engine, {"email": FileChannel(tmp_path, SENDER, clock=clock)}, clock=clock)
    assert dispatcher.dispatch_due().claimed == 0
    with Session(engine) as session, session.begin():
        assert requeue(session, "msg-0001", now=clock())
    assert dispatcher.dispatch_due().sent == 1
    assert (tmp_path / "msg-0001.eml").is_file()


def test_due_messages_go_oldest_first_and_limit_is_honoured(engine, tmp_path, new_message, clock) -> None:
    for i in range(3):
        _enqueue(engine, new_message(f"msg-{i}"), clock, not_before=clock() - dt.timedelta(seconds=10 * i))
    dispatcher = Dispatcher(engine, {"email": FileChannel(tmp_path, SENDER, clock=clock)}, clock=clock)
    assert dispatcher.dispatch_due(limit=2).sent == 2
    assert sorted(p.name for p in tmp_path.glob("*.eml")) == ["msg-1.eml", "msg-2.eml"]
    assert dispatcher.dispatch_due(limit=2).sent == 1


# --- interrupted sends ----------------------------------------------------------------------


def test_crash_after_send_is_reconciled_not_resent(engine, sendgrid, sendgrid_server, new_message, clock) -> None:
    _enqueue(engine, new_message(), clock)
    with pytest.raises(SimulatedCrash):
        Dispatcher(engine, {"email": CrashAfterSend(sendgrid)}, clock=clock).dispatch_due()
    assert _row(engine).status == "sending"
    assert len(sendgrid_server.messages) == 1

    restarted = Dispatcher(engine, {"email": sendgrid}, clock=clock)
    # Within the lease the claim may still belong to a live dispatcher: hands off.
    assert restarted.dispatch_due() == DispatchReport()
    clock.advance(LEASE_S)
    report = restarted.dispatch_due()

    assert (report.reconciled, report.claimed, report.sent) == (1, 0, 0)
    row = _row(engine)
    assert (row.status, row.attempts) == ("sent", 1)
    assert row.provider_message_id is not None
    assert row.provider_message_id.startswith(sendgrid_server.messages[0].x_message_id)
    assert len(sendgrid_server.messages) == 1
    assert [r.method for r in sendgrid_server.requests].count("POST") == 1


def test_crash_before_send_is_sent_once_after_lookup(engine, sendgrid, sendgrid_server, new_message, clock) -> None:
    _enqueue(engine, new_message(), clock)
    with pytest.raises(SimulatedCrash):
        Dispatcher(engine, {"email": CrashBeforeSend()}, clock=clock).dispatch_due()

    clock.advance(LEASE_S)
    report = Dispatcher(engine, {"email": sendgrid}, clock=clock).dispatch_due()

    assert (report.requeued, report.claimed, report.sent) == (1, 1, 1)
    assert (_row(engine).status, _row(engine).attempts) == ("sent", 2)
    assert len(sendgrid_server.messages) == 1


def test_crash_with_file_channel_keeps_one_file(engine, tmp_path, new_message, clock) -> None:
    channel = FileChannel(tmp_path / "outbox", SENDER, clock=clock)
    _enqueue(engine, new_message(), clock)
    with pytest.raises(SimulatedCrash):
        Dispatcher(engine, {"email": CrashAfterSend(channel)}, clock=clock).dispatch_due()
    clock.advance(LEASE_S)
    report = Dispatcher(engine, {"email": channel}, clock=clock).dispatch_due()
    assert report.reconciled == 1
    assert [p.name for p in (tmp_path / "outbox").iterdir()] == ["msg-0001.eml"]


def test_crash_with_smtp_is_parked_as_unknown(engine, smtp_server, new_message, clock) -> None:
    smtp = SmtpChannel(smtp_server.host, smtp_server.port, SENDER, timeout=5)
    _enqueue(engine, new_message(), clock)
    with pytest.raises(SimulatedCrash):
        Dispatcher(engine, {"email": CrashAfterSend(smtp)}, clock=clock).dispatch_due()
    clock.advance(LEASE_S)
    dispatcher = Dispatcher(engine, {"email": smtp}, clock=clock)

    assert dispatcher.dispatch_due().unknown == 1
    clock.advance(86_400)
    assert dispatcher.dispatch_due().claimed == 0
    row = _row(engine)
    assert row.status == "unknown"
    assert "cannot confirm" in (row.last_error or "")
    assert len(smtp_server.messages) == 1  # no second copy
    with Session(engine) as session, session.begin():
        assert mark_sent(session, "msg-0001", now=clock())  # a person checked the mailbox
    assert _row(engine).status == "sent"


def test_failed_lookup_is_asked_again_later(engine, sendgrid, sendgrid_server, new_message, clock) -> None:
    _enqueue(engine, new_message(), clock)
    with pytest.raises(SimulatedCrash):
        Dispatcher(engine, {"email": CrashAfterSend(sendgrid)}, clock=clock).dispatch_due()
    clock.advance(LEASE_S)
    sendgrid_server.fail_next(503, path="/v3/messages")
    dispatcher = Dispatcher(engine, {"email": sendgrid}, clock=clock)

    assert dispatcher.dispatch_due().deferred == 1
    assert _row(engine).status == "sending"
    clock.advance(3600)
    assert dispatcher.dispatch_due().reconciled == 1
    assert len(sendgrid_server.messages) == 1


def test_secrets_stay_out_of_stored_errors_and_logs(
    engine, sendgrid_server, sendgrid_key, new_message, clock, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    good = SendGridChannel(sendgrid_key, SENDER, host=sendgrid_server.url)
    wrong = SendGridChannel(sendgrid_key + "x", SENDER, host=sendgrid_server.url)
    for i in range(4):
        _enqueue(engine, new_message(f"msg-{i}"), clock)
    sendgrid_server.fail_next(429, retry_after=1)
    sendgrid_server.fail_next(500)
    Dispatcher(engine, {"email": good}, clock=clock).dispatch_due(limit=3)
    Dispatcher(engine, {"email": wrong}, clock=clock).dispatch_due()

    with Session(engine) as session:
        stored = [r.last_error or "" for r in session.scalars(select(OutboxRow))]
    assert any("HTTP 401" in e for e in stored) and any("HTTP 429" in e for e in stored)
    for text in [*stored, caplog.text]:
        assert sendgrid_key not in text
        assert sendgrid_key.split(".")[-1] not in text


# --- concurrent dispatchers, on SQLite and on PostgreSQL -------------------------------------


def _race(engine, channels: dict, clock, threads: int = 3) -> list[DispatchReport]:
    """Several dispatchers (own connections, own threads) claim from one outbox at once."""
    start = threading.Barrier(threads)
    reports: list[DispatchReport] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            dispatcher = Dispatcher(engine, channels, clock=clock)
            start.wait()
            reports.append(dispatcher.dispatch_due(limit=50))
        except BaseException as exc:  # surfaced below; a thread must not swallow it
            errors.append(exc)

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)
    assert not errors, errors
    return reports


def _assert_each_sent_once(engine, server, ids: list[str], reports: list[DispatchReport]) -> None:
    assert sum(r.claimed for r in reports) == len(ids)
    assert sum(r.sent for r in reports) == len(ids)
    sent = [m.custom_args["message_id"] for m in server.messages if m.custom_args.get("message_id") in ids]
    assert sorted(sent) == sorted(ids)  # every message once, none twice
    with Session(engine) as session:
        rows = session.scalars(select(OutboxRow).where(OutboxRow.message_id.in_(ids))).all()
    assert {(r.status, r.attempts) for r in rows} == {("sent", 1)}


def test_concurrent_dispatchers_send_each_message_once(engine, sendgrid, sendgrid_server, new_message, clock) -> None:
    ids = [f"msg-{i:03d}" for i in range(30)]
    for mid in ids:
        _enqueue(engine, new_message(mid), clock)
    reports = _race(engine, {"email": sendgrid}, clock)
    _assert_each_sent_once(engine, sendgrid_server, ids, reports)


def test_outbox_on_postgres(postgres_url, sendgrid, sendgrid_server, new_message, clock) -> None:
    engine = make_engine(postgres_url)
    try:
        init_db(engine)
        # The session's database is shared: a channel name of this test's own keeps its rows apart.
        channel = f"pg_{uuid.uuid4().hex[:12]}"
        ids = [f"{channel}-{i:03d}" for i in range(30)]
        for mid in ids:
            assert _enqueue(engine, new_message(mid, channel=channel), clock)
            assert not _enqueue(engine, new_message(mid, channel=channel), clock)  # ON CONFLICT DO NOTHING
        reports = _race(engine, {channel: sendgrid}, clock)
        _assert_each_sent_once(engine, sendgrid_server, ids, reports)

        crashed = f"{channel}-crash"
        _enqueue(engine, new_message(crashed, channel=channel), clock)
        with pytest.raises(SimulatedCrash):
            Dispatcher(engine, {channel: CrashAfterSend(sendgrid)}, clock=clock).dispatch_due()
        clock.advance(LEASE_S)
        assert Dispatcher(engine, {channel: sendgrid}, clock=clock).dispatch_due().reconciled == 1
        assert [m.custom_args["message_id"] for m in sendgrid_server.messages].count(crashed) == 1
    finally:
        engine.dispose()


class SlowChannel:
    """Delivers through the real channel while the (test) clock runs on, as a slow provider would."""

    def __init__(self, inner: object, clock, seconds: float) -> None:
        self.inner, self.clock, self.seconds = inner, clock, seconds

    def send(self, message: OutboxMessage) -> str | None:
        self.clock.advance(self.seconds)
        return self.inner.send(message)  # type: ignore[attr-defined]


def test_a_long_pass_gives_back_what_it_cannot_send_within_the_lease(engine, tmp_path, new_message, clock) -> None:
    for i in range(3):
        _enqueue(engine, new_message(f"msg-{i}"), clock)
    slow = SlowChannel(FileChannel(tmp_path, SENDER, clock=clock), clock, seconds=LEASE_S * 0.6)
    dispatcher = Dispatcher(engine, {"email": slow}, clock=clock)

    first = dispatcher.dispatch_due()
    assert (first.claimed, first.sent, first.released) == (3, 1, 2)
    with Session(engine) as session:
        left = {r.message_id: (r.status, r.attempts) for r in session.scalars(select(OutboxRow))}
    assert left == {"msg-0": ("sent", 1), "msg-1": ("pending", 0), "msg-2": ("pending", 0)}
    assert dispatcher.dispatch_due().sent == 1
    assert dispatcher.dispatch_due().sent == 1
    assert len(list(tmp_path.glob("*.eml"))) == 3
