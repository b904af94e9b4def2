"""Approving a notice version: who may, how many, and the seal on what they approved.

Approvers are console users with the approver role, named case-insensitively, whether they act
in the console, through the API or on the command line; a rule of two counts distinct users.
The person who confirmed the breach is not enough alone (unless the deployment allows it):
someone else must look at what goes out in the vendor's name. When a version is approved, the
content digest of every message it sends is stored with the delivery and in the audit trail,
and the outbox message carries it as its seal: the dispatcher refuses to send other content.

Every function works inside the caller's session and transaction and never commits.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from breachwatch.core.clock import utcnow
from breachwatch.incidents import users
from breachwatch.notifier.message import EMAIL, OutboxMessage, content_digest
from breachwatch.notifier.notices.content import CUSTOMER_NOTICE, FOLLOWUP, REGULATOR_DRAFT
from breachwatch.notifier.notices.models import (
    APPROVED,
    DRAFT,
    WITHDRAWN,
    NoticeApprovalRow,
    NoticeConfirmationRow,
    NoticeDeliveryRow,
    NoticeRenditionRow,
    NoticeRow,
    NoticeVersionRow,
)
from breachwatch.notifier.notices.service import (
    ApprovalRefused,
    NoticeNotFound,
    _approvers,
    _audit,
    _version,
    delivery_message_id,
)
from breachwatch.notifier.outbox import enqueue


def approve_notice(
    session: Session,
    notice_id: str,
    approver: str,
    *,
    confirmer_may_approve_alone: bool = False,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Record the approval of the current version by the user ``approver`` names; once enough
    distinct approvers approved (and not only the person who confirmed the breach, unless
    ``confirmer_may_approve_alone``), the version is approved, sealed and queued.
    Raises ``ApprovalRefused`` saying why an approval cannot be recorded."""
    try:
        username = users.approver(session, approver).username
    except users.UserError as exc:
        raise ApprovalRefused(str(exc)) from None
    now = now or utcnow()
    # Locked, so two approvers approving at once both count (PostgreSQL; SQLite serialises writers).
    notice = session.get(NoticeRow, notice_id, with_for_update=True)
    if notice is None:
        raise NoticeNotFound(f"no notice {notice_id!r}")
    if notice.status == WITHDRAWN:
        raise ApprovalRefused(f"notice {notice_id} was withdrawn")
    version = _version(session, notice_id, notice.current_version)
    if version.status != DRAFT:
        raise ApprovalRefused(f"version {version.version} of notice {notice_id} is already {version.status}")
    if not version.recipients:
        raise ApprovalRefused(f"notice {notice_id} has no recipient address; add one with a revision first")
    # Approvals recorded before approvers were users may differ in case only: one person each.
    approvers = list(dict.fromkeys(users.identity(a) for a in _approvers(session, notice_id, version.version)))
    if username in approvers:
        raise ApprovalRefused(f"{username} already approved version {version.version}; another approver is needed")
    session.add(NoticeApprovalRow(notice_id=notice_id, version=version.version, approver=username, approved_at=now))
    approvers.append(username)
    waiting = _still_needed(session, notice, approvers, confirmer_may_approve_alone)
    enqueued, digests = 0, {}
    if not waiting:
        version.status = APPROVED
        version.approved_at = now
        notice.status = APPROVED
        session.flush()
        digests = _seal_and_queue(session, notice, version, now)
        enqueued = sum(1 for queued in digests.values() if queued[1])
    _audit(
        session,
        incident_id=notice.incident_id,
        notice_id=notice_id,
        actor=username,
        action="notice_approved" if version.status == APPROVED else "notice_approval_recorded",
        detail={
            "version": version.version,
            "approvals": len(approvers),
            "required": notice.required_approvals,
            "queued": enqueued,
            # The seal of each message, in the hash-chained audit trail as well as with the delivery.
            "digests": {message_id: digest for message_id, (digest, _) in sorted(digests.items())},
            **({"waiting_for": waiting} if waiting else {}),
        },
        at=now,
    )
    return {
        "notice_id": notice_id,
        "version": version.version,
        "status": version.status,
        "approvals": approvers,
        "required_approvals": notice.required_approvals,
        "queued": enqueued,
        "waiting_for": waiting,
    }


def _still_needed(session: Session, notice: NoticeRow, approvers: list[str], confirmer_alone: bool) -> str:
    """What the version still lacks before it is approved, in words; empty once it has enough."""
    if len(approvers) < notice.required_approvals:
        return f"approval {len(approvers)} of {notice.required_approvals}: another approver is needed"
    confirmation = session.get(NoticeConfirmationRow, notice.incident_id)
    confirmer = users.identity(confirmation.confirmed_by) if confirmation is not None else ""
    if not confirmer_alone and confirmer and all(a == confirmer for a in approvers):
        return f"{confirmer} confirmed the breach and cannot be the only approver: another approver is needed"
    return ""


def _seal_and_queue(
    session: Session, notice: NoticeRow, version: NoticeVersionRow, now: datetime
) -> dict[str, tuple[str, bool]]:
    """Queue one message per recipient and message type, each sealed with its content digest;
    message id -> (digest, newly queued)."""
    renditions = {
        (r.message_type, r.locale): r
        for r in session.scalars(
            select(NoticeRenditionRow).where(
                NoticeRenditionRow.notice_id == notice.notice_id, NoticeRenditionRow.version == version.version
            )
        )
    }
    main_type = CUSTOMER_NOTICE if version.kind == "initial" else FOLLOWUP
    out: dict[str, tuple[str, bool]] = {}
    for recipient, locale in version.recipients.items():
        for message_type in (main_type, REGULATOR_DRAFT):
            rendition = renditions.get((message_type, locale)) or renditions.get((message_type, notice.locale))
            if rendition is None:
                continue  # no regulator draft when the customer owes no authority a report
            message_id = delivery_message_id(notice.notice_id, version.version, recipient, message_type)
            try:
                message = OutboxMessage(
                    message_id=message_id,
                    channel=EMAIL,
                    recipient=recipient,
                    subject=rendition.subject,
                    body_text=rendition.body_text,
                    body_html=rendition.body_html,
                    message_type=message_type,
                    incident_id=notice.incident_id,
                    headers={
                        "X-BreachWatch-Incident": notice.incident_id,
                        "X-BreachWatch-Notice": f"{notice.notice_id}-v{version.version}",
                    },
                ).checked()
            except ValueError as exc:
                raise ApprovalRefused(f"notice {notice.notice_id}: a message cannot be queued: {exc}") from None
            digest = content_digest(message)
            queued = enqueue(session, replace(message, sealed_digest=digest), now=now)
            delivery = session.get(NoticeDeliveryRow, message_id)
            if delivery is None:
                session.add(
                    NoticeDeliveryRow(
                        message_id=message_id,
                        notice_id=notice.notice_id,
                        version=version.version,
                        message_type=message_type,
                        recipient=recipient,
                        locale=rendition.locale,
                        content_digest=digest,
                    )
                )
            out[message_id] = (digest, queued)
    return out
