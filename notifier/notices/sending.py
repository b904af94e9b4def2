"""What the outbox asks the notice workflow at the moment a notice would go out, and what a
person decides when nobody can tell whether one went out.

``NoticeSendGuard`` refuses a notice message that is not exactly what was approved: one with
no approval on record, content whose digest differs from the one sealed at approval, a version
that a correction superseded, or a withdrawn notice; a refusal pages the on-call.
``provider_receipt`` answers from the SendGrid event-webhook receipts whether the provider had a
message (the dispatcher asks it before the provider's look-up API). ``resolve_unknown`` records
a person's decision on a send whose outcome no one could confirm.
"""

from __future__ import annotations

import logging

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from breachwatch.core.clock import utcnow
from breachwatch.core.ids import stable_id, unique
from breachwatch.core.settings import Settings
from breachwatch.incidents import users
from breachwatch.notifier.alerts import paging_channel_names
from breachwatch.notifier.delivery import Delivered
from breachwatch.notifier.message import EMAIL, OutboxMessage, content_digest
from breachwatch.notifier.notices.content import CUSTOMER_NOTICE, FOLLOWUP, REGULATOR_DRAFT
from breachwatch.notifier.notices.models import (
    APPROVED,
    WITHDRAWN,
    NoticeDeliveryRow,
    NoticeReceiptRow,
    NoticeRow,
    NoticeVersionRow,
)
from breachwatch.notifier.notices.service import NoticeError, _audit, _notice
from breachwatch.notifier.outbox import OutboxRow, mark_sent, queue_message, requeue
from breachwatch.notifier.render import Rendered

log = logging.getLogger(__name__)

NOTICE_TYPES = frozenset({CUSTOMER_NOTICE, FOLLOWUP, REGULATOR_DRAFT})
REFUSAL_PAGE = "oncall_send_refused"
# Any of these from the provider means it accepted the message (even if it later bounced).
ACCEPTED_EVENTS = ("processed", "delivered", "deferred", "bounce", "dropped", "spamreport")


def send_refusal(session: Session, message: OutboxMessage) -> str | None:
    """Why this notice message must not be sent, or None (None for any other kind of message)."""
    if message.message_type not in NOTICE_TYPES:
        return None
    delivery = session.get(NoticeDeliveryRow, message.message_id)
    if delivery is None:
        return "no approval is on record for this notice message"
    if delivery.content_digest is None:
        return "it was approved before approvals were sealed; revise the notice and approve it again"
    if content_digest(message) != delivery.content_digest or message.sealed_digest != delivery.content_digest:
        return "its content differs from the approved content (digest mismatch)"
    notice = session.get(NoticeRow, delivery.notice_id)
    if notice is None or notice.status == WITHDRAWN:
        return f"notice {delivery.notice_id} was withdrawn"
    version = session.get(NoticeVersionRow, (delivery.notice_id, delivery.version))
    if version is None or version.status != APPROVED:
        state = version.status if version is not None else "missing"
        return f"version {delivery.version} of notice {delivery.notice_id} is {state}, not the approved current version"
    return None


class NoticeSendGuard:
    """The outbox's ``SendGuard`` for customer notices, paging the on-call when it refuses."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def refusal(self, session: Session, message: OutboxMessage) -> str | None:
        return send_refusal(session, message)

    def refused(self, session: Session, message: OutboxMessage, reason: str) -> None:
        delivery = session.get(NoticeDeliveryRow, message.message_id)
        notice = session.get(NoticeRow, delivery.notice_id) if delivery is not None else None
        if notice is not None:
            _audit(
                session,
                incident_id=notice.incident_id,
                notice_id=notice.notice_id,
                actor="breachwatch",
                action="delivery_refused",
                detail={"message_id": message.message_id, "reason": reason},
                at=utcnow(),
            )
        page_refusal(session, self.settings, message, reason)


def page_refusal(session: Session, settings: Settings, message: OutboxMessage, reason: str) -> int:
    """Queue one page per on-call address and paging channel about a refused send."""
    subject = f"[BreachWatch] CRITICAL: a customer notice was refused before sending ({message.message_id})"
    text = (
        "The outbox refused to send a customer notice message, and did not send it.\n\n"
        f"Message: {message.message_id}\n"
        f"Incident: {message.incident_id or '-'}\n"
        f"Reason: {reason}\n\n"
        "What to do\n"
        "  - Check who changed the queued message or its notice (breachwatch audit verify).\n"
        "  - If the notice must still go out, revise it and have it approved again.\n"
    )
    rendered = Rendered(subject=subject, text=text, html=None, locale="en")
    emails = list(unique(settings.oncall_emails))
    team = emails[0] if emails else settings.mail_from
    targets = [(EMAIL, addr) for addr in emails] + [(ch, team) for ch in paging_channel_names(settings)]
    queued = 0
    for channel, recipient in targets:
        queued += queue_message(
            session,
            message_id=stable_id(REFUSAL_PAGE, message.message_id, str(message.attempt), channel, recipient),
            message_type=REFUSAL_PAGE,
            recipient=recipient,
            rendered=rendered,
            channel=channel,
            incident_id=message.incident_id,
            headers={"X-BreachWatch-Severity": "critical"},
        )
    return queued


def provider_receipt(session: Session, message_id: str) -> Delivered | None:
    """Delivered if the provider's event webhook reported the message (it has it), else None."""
    event = session.scalar(
        select(NoticeReceiptRow.event)
        .where(NoticeReceiptRow.message_id == message_id, NoticeReceiptRow.event.in_(ACCEPTED_EVENTS))
        .limit(1)
    )
    return Delivered() if event is not None else None


def unknown_deliveries(session: Session) -> list[dict[str, str | int | None]]:
    """Notice messages whose outcome nobody could confirm, waiting for a person's decision."""
    rows = session.execute(
        select(NoticeDeliveryRow, OutboxRow)
        .join(OutboxRow, OutboxRow.message_id == NoticeDeliveryRow.message_id)
        .where(OutboxRow.status == "unknown")
        .order_by(OutboxRow.created_at, OutboxRow.message_id)
    ).all()
    return [
        {
            "message_id": d.message_id,
            "notice_id": d.notice_id,
            "version": d.version,
            "recipient": d.recipient,
            "message_type": d.message_type,
            "last_error": o.last_error,
        }
        for d, o in rows
    ]


def resolve_unknown(session: Session, message_id: str, *, arrived: bool, by: str) -> str:
    """A person's decision on a message whose outcome is unknown: it arrived (recorded as sent)
    or it did not (sent again, unless its version was superseded or withdrawn, which are never
    sent again: the current version goes out instead). ``by`` names an approver.

    Returns "sent", "resending" or "not_resent"; raises ``NoticeError`` if ``by`` may not decide
    or the message is not waiting for a decision."""
    try:
        person = users.approver(session, by).username
    except users.UserError as exc:
        raise NoticeError(str(exc)) from None
    row = session.get(OutboxRow, message_id)
    if row is None or row.status != "unknown":
        raise NoticeError(f"message {message_id[:128]!r} is not waiting for a decision on its outcome")
    delivery = session.get(NoticeDeliveryRow, message_id)
    stale = _stale(session, delivery) if delivery is not None and not arrived else None
    if arrived:
        mark_sent(session, message_id)
        outcome, action = "sent", "delivery_confirmed_by_person"
    elif stale is not None:
        session.execute(
            update(OutboxRow)
            .where(OutboxRow.message_id == message_id, OutboxRow.status == "unknown")
            .values(status="failed", last_error=f"not sent again: {stale}")
            .execution_options(synchronize_session=False)
        )
        outcome, action = "not_resent", "delivery_not_resent"
    else:
        requeue(session, message_id)
        outcome, action = "resending", "delivery_resent_by_person"
    if delivery is not None:
        notice = _notice(session, delivery.notice_id)
        _audit(
            session,
            incident_id=notice.incident_id,
            notice_id=notice.notice_id,
            actor=person,
            action=action,
            detail={"message_id": message_id, **({"reason": stale} if stale else {})},
            at=utcnow(),
        )
    return outcome


def _stale(session: Session, delivery: NoticeDeliveryRow) -> str | None:
    notice = _notice(session, delivery.notice_id)
    if notice.status == WITHDRAWN:
        return f"notice {notice.notice_id} was withdrawn"
    version = session.get(NoticeVersionRow, (delivery.notice_id, delivery.version))
    if version is None or version.status != APPROVED:
        return f"version {delivery.version} was superseded by version {notice.current_version}"
    return None
