"""The transactional outbox: messages are written in the same transaction as the incident
that caused them, then delivered by a ``Dispatcher`` with retries and at most one copy.

Messages that share an ``ordering_key`` (an incident's changes to one ticketing or paging
system, its OCSF records) are delivered one at a time in the order they were queued: a message
waits while an earlier one of its key is pending, being sent, held or of unknown fate. One that
failed for good is not waited for; each such message carries the incident's whole state, so
the next one makes up for it.

Delivery is claim, commit, send, record. A row is marked ``sending`` and committed before
the channel is called, so a crash between the call and the record leaves it ``sending``.
Such a row is never blindly resent: once its lease has expired, the dispatcher asks the
provider whether it has the message (the receipts its event webhook delivered, then the
channel's ``lookup``) and marks it ``sent``, makes it ``pending`` again, or parks it as
``unknown`` for a person to decide. A call that ends in doubt (``OutcomeUnknown``: the request
was written, no answer came) is treated the same way: the row stays ``sending`` until its
lease runs out, and only then is the provider asked.

A message sealed at approval (``sealed_digest``) is checked before the channel is called:
content that differs from the seal, or that the ``SendGuard`` refuses (a withdrawn or
superseded notice), is never sent; the row fails with the reason and the guard pages the on-call.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import CheckConstraint, Index, Integer, String, Text, func, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Mapped, Session, aliased, mapped_column

from breachwatch.core.clock import utcnow
from breachwatch.notifier.delivery import (
    Channel,
    Delivered,
    LookupResult,
    NotFound,
    OutcomeUnknown,
    PermanentError,
    RetryableError,
    Unknown,
)
from breachwatch.notifier.message import EMAIL, OutboxMessage, content_digest, one_line
from breachwatch.notifier.render import Rendered
from breachwatch.storage.db import Base, insert_or_ignore

log = logging.getLogger(__name__)

STATUSES: tuple[str, ...] = ("pending", "sending", "sent", "failed", "unknown", "held")
# An ordered message waits while an earlier one of its key is in one of these.
WAITED_FOR: tuple[str, ...] = ("pending", "sending", "unknown", "held")
LAST_ERROR_MAX = 500


class OutboxRow(Base):
    """One message to deliver, and what happened to it."""

    __tablename__ = "outbox"

    message_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    incident_id: Mapped[str | None] = mapped_column(String(64), index=True, nullable=True)
    message_type: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(32))
    recipient: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(Text)
    body_text: Mapped[str] = mapped_column(Text)
    body_html: Mapped[str | None] = mapped_column(Text, nullable=True)
    headers: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # When pending: not before this time. When sending: the claim's lease expiry.
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    provider_message_id: Mapped[str | None] = mapped_column(String(256), nullable=True)
    # content_digest of the message as approved; set for messages that need an approval.
    sealed_digest: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # Messages with the same key and channel go out one at a time, in ``seq`` order.
    ordering_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    seq: Mapped[int | None] = mapped_column(Integer, nullable=True)

    __table_args__ = (
        Index("ix_outbox_due", "status", "next_attempt_at"),
        Index("ix_outbox_order", "ordering_key", "channel", "seq", unique=True),
        CheckConstraint("status IN (" + ", ".join(f"'{s}'" for s in STATUSES) + ")", name="ck_outbox_status"),
    )

    def to_message(self) -> OutboxMessage:
        return OutboxMessage(
            message_id=self.message_id,
            channel=self.channel,
            recipient=self.recipient,
            subject=self.subject,
            body_text=self.body_text,
            body_html=self.body_html,
            message_type=self.message_type,
            incident_id=self.incident_id,
            headers={str(k): str(v) for k, v in (self.headers or {}).items()},
            attempt=self.attempts,
            sealed_digest=self.sealed_digest,
            ordering_key=self.ordering_key,
        )


def enqueue(
    session: Session,
    message: OutboxMessage,
    *,
    hold: bool = False,
    not_before: datetime | None = None,
    now: datetime | None = None,
) -> bool:
    """Add ``message`` to the outbox inside the caller's transaction.

    Returns False, changing nothing, if a message with that id is already there, so a
    re-processed batch never queues a second copy. ``hold`` parks it until ``requeue``
    (e.g. a notice awaiting approval). Raises ``ValueError`` for an unusable id or address.
    An ordered message takes the next number of its key and channel; callers hold the lock of
    what the key names (the incident's row), so two transactions cannot take the same one.
    """
    m = message.checked()
    now = now or utcnow()
    seq = None
    if m.ordering_key is not None:
        last = session.scalar(
            select(func.max(OutboxRow.seq)).where(
                OutboxRow.ordering_key == m.ordering_key, OutboxRow.channel == m.channel
            )
        )
        seq = (last or 0) + 1
    values: dict[str, Any] = {
        "message_id": m.message_id,
        "incident_id": m.incident_id,
        "message_type": m.message_type,
        "channel": m.channel,
        "recipient": m.recipient,
        "subject": m.subject,
        "body_text": m.body_text,
        "body_html": m.body_html,
        "headers": dict(m.headers),
        "sealed_digest": m.sealed_digest,
        "status": "held" if hold else "pending",
        "attempts": 0,
        "next_attempt_at": not_before or now,
        "created_at": now,
        "ordering_key": m.ordering_key,
        "seq": seq,
    }
    return insert_or_ignore(session, OutboxRow.__table__, values)


def queue_message(
    session: Session,
    *,
    message_id: str,
    message_type: str,
    recipient: str,
    rendered: Rendered,
    channel: str = EMAIL,
    incident_id: str | None = None,
    headers: Mapping[str, str] | None = None,
    ordering_key: str | None = None,
    now: datetime | None = None,
) -> bool:
    """Build one message from what was rendered for it and queue it (see ``enqueue``): the one
    way alerts, pages, reminders, notices and incident changes reach the outbox. A message
    about an incident names it in ``X-BreachWatch-Incident``; messages sharing an
    ``ordering_key`` on a channel are delivered in the order queued. An address the mail path
    cannot use is logged (without the address) and skipped; whether the message was newly queued."""
    extra = {"X-BreachWatch-Incident": incident_id} if incident_id else {}
    message = OutboxMessage(
        message_id=message_id,
        channel=channel,
        recipient=recipient,
        subject=rendered.subject,
        body_text=rendered.text,
        body_html=rendered.html,
        message_type=message_type,
        incident_id=incident_id,
        headers={**extra, **(headers or {})},
        ordering_key=ordering_key,
    )
    try:
        return enqueue(session, message, now=now)
    except ValueError as exc:
        log.error("%s %s not queued for one address: %s", message_type, incident_id or message_id, exc)
        return False


def requeue(session: Session, message_id: str, *, now: datetime | None = None) -> bool:
    """Make a held, failed or unknown message pending again (an operator's decision). An
    ordered message is not sent again once a later one of its key has gone out: it would
    overwrite newer state with older."""
    row = session.get(OutboxRow, message_id)
    if row is not None and row.ordering_key is not None and _overtaken(session, row):
        return False
    result = session.execute(
        update(OutboxRow)
        .where(OutboxRow.message_id == message_id, OutboxRow.status.in_(("held", "failed", "unknown")))
        .values(status="pending", next_attempt_at=now or utcnow(), last_error=None)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def _overtaken(session: Session, row: OutboxRow) -> bool:
    later = session.scalar(
        select(func.count())
        .select_from(OutboxRow)
        .where(
            OutboxRow.ordering_key == row.ordering_key,
            OutboxRow.channel == row.channel,
            OutboxRow.seq > (row.seq or 0),
            OutboxRow.status == "sent",
        )
    )
    return bool(later)


def mark_sent(session: Session, message_id: str, *, now: datetime | None = None) -> bool:
    """Record that an ``unknown`` message did arrive (an operator checked the mailbox)."""
    result = session.execute(
        update(OutboxRow)
        .where(OutboxRow.message_id == message_id, OutboxRow.status == "unknown")
        .values(status="sent", sent_at=now or utcnow(), last_error=None)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


class SendGuard(Protocol):
    """What the domain that queued a message says at the moment it would be sent."""

    def refusal(self, session: Session, message: OutboxMessage) -> str | None:
        """Why ``message`` must not be sent now, or None to send it."""
        ...

    def refused(self, session: Session, message: OutboxMessage, reason: str) -> None:
        """Page the on-call about a refused send (in the transaction that records it)."""
        ...


# The provider's own word on a message, from receipts recorded outside the channel (its event
# webhook): Delivered if the provider reported having it, None if nothing was recorded.
Confirmations = Callable[[Session, str], LookupResult | None]


@dataclass(frozen=True, slots=True)
class ExponentialBackoff:
    """Seconds to wait before attempt ``n + 1`` after ``n`` failed: base * factor**(n-1), capped."""

    base_s: float = 30.0
    factor: float = 2.0
    cap_s: float = 3600.0

    def __call__(self, attempts: int) -> float:
        return min(self.cap_s, self.base_s * self.factor ** max(attempts - 1, 0))


@dataclass(frozen=True, slots=True)
class FullJitter:
    """Seconds to wait: uniformly random between none and what ``ceiling`` allows ("full
    jitter"). Messages that failed together, as all do while a provider is down, are retried
    spread over that span instead of all at the same instant when it comes back."""

    ceiling: Callable[[int], float] = field(default_factory=ExponentialBackoff)
    rng: random.Random = field(default_factory=random.Random, compare=False)

    def __call__(self, attempts: int) -> float:
        return self.rng.uniform(0.0, self.ceiling(attempts))


@dataclass(slots=True)
class DispatchReport:
    """What one ``dispatch_due`` pass did."""

    claimed: int = 0
    sent: int = 0
    retried: int = 0
    failed: int = 0
    reconciled: int = 0  # interrupted sends the provider confirmed: marked sent, not resent
    requeued: int = 0  # interrupted sends the provider never got: pending again
    unknown: int = 0  # interrupted sends nobody can confirm: parked for a person
    deferred: int = 0  # interrupted sends whose look-up failed for now: asked again later
    released: int = 0  # claimed but not attempted (the pass ran long): pending again, untouched
    in_doubt: int = 0  # sent but unanswered (timeout, reset): the provider is asked before any resend
    refused: int = 0  # not sent: content differs from what was approved, or the guard refused it

    @property
    def attempted(self) -> int:
        """Messages handed to a channel in this pass (0 means nothing was due)."""
        return self.sent + self.retried + self.failed + self.in_doubt


class Dispatcher:
    """Delivers due outbox messages through their channels, one attempt per message per pass."""

    def __init__(
        self,
        engine: Engine,
        channels: Mapping[str, Channel],
        *,
        clock: Callable[[], datetime] = utcnow,
        max_attempts: int = 8,
        backoff: Callable[[int], float] | None = None,
        lease: timedelta = timedelta(minutes=5),
        max_delay: timedelta = timedelta(hours=6),
        guard: SendGuard | None = None,
        confirmations: Confirmations | None = None,
    ) -> None:
        # The lease must outlast the slowest channel call (SMTP/HTTP timeouts are well under
        # a minute): a claim older than that belongs to a dispatcher that died mid-send.
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.engine = engine
        self.channels = dict(channels)
        self.clock = clock
        self.max_attempts = max_attempts
        self.backoff = backoff or FullJitter()
        self.lease = lease
        self.max_delay = max_delay
        self.guard = guard
        self.confirmations = confirmations

    # --- the pass ---------------------------------------------------------------------------

    def dispatch_due(self, limit: int = 100) -> DispatchReport:
        """Reconcile interrupted sends, then claim and deliver up to ``limit`` due messages."""
        report = DispatchReport()
        self.recover(report)
        claimed_at = self.clock()
        messages = self._claim(limit)
        report.claimed = len(messages)
        # Sends must finish well inside the lease, or another pass could take a message for
        # interrupted and send it too; whatever is left when half the lease is gone goes back.
        deadline = claimed_at + self.lease / 2
        for i, message in enumerate(messages):
            if self.clock() >= deadline:
                report.released += self._release(messages[i:])
                break
            self._deliver(message, report)
        return report

    def _release(self, messages: list[OutboxMessage]) -> int:
        released = 0
        with Session(self.engine) as session, session.begin():
            for m in messages:
                values = {"status": "pending", "attempts": m.attempt - 1, "next_attempt_at": self.clock()}
                released += session.execute(_claimed(m.message_id, m.attempt, values)).rowcount
        return released

    def _claim(self, limit: int) -> list[OutboxMessage]:
        now = self.clock()
        if not self.channels or limit < 1:
            return []
        earlier = aliased(OutboxRow)
        waiting = (
            select(earlier.message_id)
            .where(
                earlier.ordering_key == OutboxRow.ordering_key,
                earlier.channel == OutboxRow.channel,
                earlier.seq < OutboxRow.seq,
                earlier.status.in_(WAITED_FOR),
            )
            .exists()
        )
        due = (
            select(OutboxRow.message_id)
            .where(
                OutboxRow.status == "pending",
                OutboxRow.next_attempt_at <= now,
                OutboxRow.channel.in_(sorted(self.channels)),
                # An ordered message waits for the earlier ones of its key (unordered: no match).
                ~waiting,
            )
            .order_by(OutboxRow.next_attempt_at, OutboxRow.created_at)
            .limit(limit)
            # PostgreSQL: rows another dispatcher is claiming are skipped, not waited for.
            .with_for_update(skip_locked=True)
        )
        # One UPDATE statement: on SQLite it takes the write lock up front (no read-then-write
        # upgrade that a concurrent writer could void), and the repeated status test means
        # that of two dispatchers racing for a row exactly one claims it.
        claim = (
            update(OutboxRow)
            .where(OutboxRow.message_id.in_(due.scalar_subquery()), OutboxRow.status == "pending")
            .values(status="sending", attempts=OutboxRow.attempts + 1, next_attempt_at=now + self.lease)
            .returning(OutboxRow)
            .execution_options(synchronize_session=False)
        )
        with Session(self.engine) as session, session.begin():
            rows = session.scalars(claim).all()
            messages = [r.to_message() for r in sorted(rows, key=lambda r: (r.created_at, r.message_id))]
        # Committed: from here on a crash leaves these rows "sending", never "pending".
        return messages

    def _deliver(self, message: OutboxMessage, report: DispatchReport) -> None:
        if self._refused(message, report):
            return
        channel = self.channels[message.channel]
        try:
            provider_id = channel.send(message)
        except OutcomeUnknown as exc:
            self._in_doubt(message, str(exc), report)
        except RetryableError as exc:
            self._retry_or_fail(message, str(exc), exc.retry_after, report)
        except PermanentError as exc:
            self._finish(message, report, status="failed", last_error=str(exc))
            log.warning(
                "outbox: %s failed permanently via %s: %s", message.message_id, message.channel, _safe_error(str(exc))
            )
        except Exception as exc:
            # A channel bug: its text may hold anything, so keep only the type, and retry.
            self._retry_or_fail(message, f"unexpected {type(exc).__name__} in channel", None, report)
        else:
            self._finish(message, report, status="sent", provider_message_id=provider_id)
            log.info("outbox: %s sent via %s (attempt %d)", message.message_id, message.channel, message.attempt)

    def _refused(self, message: OutboxMessage, report: DispatchReport) -> bool:
        """Refuse, before the channel is called, a sealed message whose content is not what was
        approved, or one the guard refuses; the row fails with the reason and the on-call is paged."""
        with Session(self.engine) as session, session.begin():
            reason = None
            if message.sealed_digest is not None and content_digest(message) != message.sealed_digest:
                reason = "its content differs from the approved content (digest mismatch)"
            if reason is None and self.guard is not None:
                reason = self.guard.refusal(session, message)
            if reason is None:
                return False
            values = {"status": "failed", "last_error": _safe_error(f"refused before sending: {reason}")}
            changed = session.execute(_claimed(message.message_id, message.attempt, values)).rowcount
            if changed == 1 and self.guard is not None:
                self.guard.refused(session, message, reason)
        log.error("outbox: %s refused before sending: %s", message.message_id, reason)
        report.refused += changed
        return True

    def _in_doubt(self, message: OutboxMessage, error: str, report: DispatchReport) -> None:
        # The provider may have it: left "sending" until the lease runs out, then reconciled
        # (receipts, then the provider's look-up) exactly like a send cut short by a crash.
        values = {
            "next_attempt_at": self.clock() + self.lease,
            "last_error": _safe_error(f"outcome unknown, the provider is asked before any resend: {error}"),
        }
        report.in_doubt += int(self._settle(message.message_id, message.attempt, values))
        log.warning("outbox: %s outcome unknown via %s: %s", message.message_id, message.channel, _safe_error(error))

    def _retry_or_fail(
        self, message: OutboxMessage, error: str, retry_after: float | None, report: DispatchReport
    ) -> None:
        if message.attempt >= self.max_attempts:
            error = f"gave up after {message.attempt} attempts: {error}"
            self._finish(message, report, status="failed", last_error=error)
            log.warning("outbox: %s failed via %s: %s", message.message_id, message.channel, _safe_error(error))
            return
        delay = retry_after if retry_after is not None and retry_after >= 0 else self.backoff(message.attempt)
        delay = min(delay, self.max_delay.total_seconds())
        self._finish(
            message,
            report,
            status="pending",
            last_error=error,
            next_attempt_at=self.clock() + timedelta(seconds=delay),
        )
        log.warning(
            "outbox: %s attempt %d via %s failed, retry in %.0fs: %s",
            message.message_id,
            message.attempt,
            message.channel,
            delay,
            _safe_error(error),
        )

    def _finish(
        self,
        message: OutboxMessage,
        report: DispatchReport,
        *,
        status: str,
        last_error: str | None = None,
        provider_message_id: str | None = None,
        next_attempt_at: datetime | None = None,
    ) -> None:
        values: dict[str, Any] = {"status": status, "last_error": _safe_error(last_error)}
        if status == "sent":
            values.update(sent_at=self.clock(), provider_message_id=_safe_error(provider_message_id, 256))
        if next_attempt_at is not None:
            values["next_attempt_at"] = next_attempt_at
        if not self._settle(message.message_id, message.attempt, values):
            # Our lease ran out mid-call and another pass already reconciled the row.
            log.error("outbox: %s outcome %s not recorded: the claim was lost", message.message_id, status)
            return
        if status == "sent":
            report.sent += 1
        elif status == "failed":
            report.failed += 1
        else:
            report.retried += 1

    # --- interrupted sends ----------------------------------------------------------------

    def recover(self, report: DispatchReport | None = None) -> DispatchReport:
        """Settle rows left ``sending`` by a dispatcher that died mid-send (lease expired)."""
        report = report if report is not None else DispatchReport()
        now = self.clock()
        with Session(self.engine) as session:
            stale = session.execute(
                select(OutboxRow.message_id, OutboxRow.channel, OutboxRow.attempts).where(
                    OutboxRow.status == "sending", OutboxRow.next_attempt_at <= now
                )
            ).all()
        for message_id, channel_name, attempts in stale:
            self._reconcile(message_id, channel_name, attempts, report)
        return report

    def _reconcile(self, message_id: str, channel_name: str, attempts: int, report: DispatchReport) -> None:
        channel = self.channels.get(channel_name)
        if channel is None:
            return  # another deployment's channel; its own dispatcher settles it
        lookup = getattr(channel, "lookup", None)
        values: dict[str, Any]
        confirmed = self._confirmed(message_id)
        if confirmed is not None:
            result: LookupResult = confirmed
        elif lookup is None:
            result = Unknown("the channel cannot confirm deliveries")
        else:
            try:
                result = lookup(message_id)
            except RetryableError as exc:
                delay = min(self.backoff(attempts), self.max_delay.total_seconds())
                self._settle(
                    message_id,
                    attempts,
                    {
                        "next_attempt_at": self.clock() + timedelta(seconds=delay),
                        "last_error": _safe_error(f"delivery check failed, will ask again: {exc}"),
                    },
                )
                report.deferred += 1
                return
            except Exception as exc:
                result = Unknown(f"delivery check raised {type(exc).__name__}")
        now = self.clock()
        if isinstance(result, Delivered):
            values = {
                "status": "sent",
                "sent_at": now,
                "last_error": None,
                "provider_message_id": _safe_error(result.provider_message_id, 256),
            }
            outcome = "reconciled"
        elif isinstance(result, NotFound):
            values = {
                "status": "pending",
                "next_attempt_at": now,
                "last_error": "interrupted before the provider accepted it; sending again",
            }
            outcome = "requeued"
        else:
            values = {
                "status": "unknown",
                "last_error": _safe_error(f"interrupted mid-send, outcome unknown: {result.reason}"),
            }
            outcome = "unknown"
        if self._settle(message_id, attempts, values):
            setattr(report, outcome, getattr(report, outcome) + 1)
            log.warning("outbox: %s was interrupted mid-send: %s", message_id, outcome)

    def _confirmed(self, message_id: str) -> LookupResult | None:
        if self.confirmations is None:
            return None
        with Session(self.engine) as session:
            return self.confirmations(session, message_id)

    def _settle(self, message_id: str, attempts: int, values: dict[str, Any]) -> bool:
        with Session(self.engine) as session, session.begin():
            return session.execute(_claimed(message_id, attempts, values)).rowcount == 1


def _claimed(message_id: str, attempts: int, values: Mapping[str, Any]) -> Any:
    """An UPDATE of a row only while it is still the claim this pass made (status ``sending`` at
    this attempt): a pass whose lease ran out never overwrites what another pass recorded."""
    return (
        update(OutboxRow)
        .where(OutboxRow.message_id == message_id, OutboxRow.status == "sending", OutboxRow.attempts == attempts)
        .values(**values)
        .execution_options(synchronize_session=False)
    )


def _safe_error(text: str | None, limit: int = LAST_ERROR_MAX) -> str | None:
    # Channels build their error texts without secrets; this keeps them one short line.
    return None if text is None else one_line(text, limit)
