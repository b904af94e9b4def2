"""SendGrid event webhook: the provider's delivery events (delivered, bounce, dropped...) become
delivery receipts on the notice timeline, as proof a notice reached (or did not reach) the customer.

``record_sendgrid_events`` is the logic (a session and the parsed events in, a report out);
``router`` is the HTTP edge the console mounts. SendGrid signs each POST (ECDSA P-256 over
timestamp + body); the router refuses unsigned or stale requests, since a forged "delivered"
would be false proof. Events carry our outbox id as the custom arg ``message_id``; events for
messages this system did not send are counted and dropped. Each event is stored once, keyed
by SendGrid's ``sg_event_id`` (SendGrid retries a webhook that failed, so repeats are normal).

Mounting: ``app.include_router(notifier.webhooks.router)`` with ``app.state.engine`` set to the
database engine and either ``app.state.sendgrid_webhook_public_key`` (the base64 key from
SendGrid's Mail Settings) or ``app.state.settings`` (the key then comes from the notices file).
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key
from fastapi import APIRouter, Request, Response
from pydantic_core import from_json
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from breachwatch.channels.sendgrid_api import CUSTOM_ARG
from breachwatch.channels.webhook import fresh_timestamp
from breachwatch.core.clock import utcnow
from breachwatch.core.ids import stable_id
from breachwatch.notifier.message import MESSAGE_ID, one_line
from breachwatch.notifier.notices.models import NoticeDeliveryRow, NoticeReceiptRow
from breachwatch.notifier.outbox import OutboxRow

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
PATH = "/webhooks/sendgrid/events"
MAX_BODY = 5 * 1024 * 1024
MAX_EVENTS = 10_000
TOLERANCE_S = 600
# Delivery facts worth keeping as proof; opens and clicks are tracking, not delivery.
RECEIPT_EVENTS = frozenset({"processed", "delivered", "deferred", "bounce", "dropped", "spamreport"})
FAILURES = frozenset({"bounce", "dropped"})


@dataclass(slots=True)
class ReceiptReport:
    """What one batch of webhook events did."""

    received: int = 0
    recorded: int = 0
    duplicates: int = 0
    unknown_message: int = 0  # not a message of this system
    ignored: int = 0  # not a delivery event (open, click...) or malformed


def _event_time(value: Any, fallback: datetime) -> datetime:
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < 32_503_680_000:
        return datetime.fromtimestamp(value, tz=UTC)
    return fallback


def record_sendgrid_events(session: Session, events: Sequence[Any], *, now: datetime | None = None) -> ReceiptReport:
    """Store each delivery event of a message this system sent, once; in the caller's transaction."""
    now = now or utcnow()
    report = ReceiptReport(received=len(events))
    seen: set[str] = set()
    for event in events[:MAX_EVENTS]:
        # isinstance first: a list or an object as "event" is not hashable, so not a set member.
        if (
            not isinstance(event, dict)
            or not isinstance(event.get("event"), str)
            or event["event"] not in RECEIPT_EVENTS
        ):
            report.ignored += 1
            continue
        message_id = event.get(CUSTOM_ARG)
        if not isinstance(message_id, str) or not MESSAGE_ID.fullmatch(message_id):
            report.unknown_message += 1
            continue
        if session.get(OutboxRow, message_id) is None:
            report.unknown_message += 1
            continue
        kind = str(event["event"])
        at = _event_time(event.get("timestamp"), now)
        sg_id = event.get("sg_event_id")
        key = (
            one_line(sg_id, 128)
            if isinstance(sg_id, str) and sg_id
            else stable_id("sendgrid-event", message_id, kind, at.isoformat(), str(event.get("email", "")))
        )
        if key in seen or session.get(NoticeReceiptRow, key) is not None:
            report.duplicates += 1
            continue
        seen.add(key)
        detail = "; ".join(
            one_line(event[k], 200) for k in ("type", "status", "reason", "response") if event.get(k) not in (None, "")
        )
        session.add(
            NoticeReceiptRow(
                provider_event_id=key,
                message_id=message_id,
                event=kind,
                at=at,
                recipient=one_line(event.get("email", ""), 320),
                detail=one_line(detail, 500),
                received_at=now,
            )
        )
        report.recorded += 1
        if kind in FAILURES:
            delivery = session.get(NoticeDeliveryRow, message_id)
            log.warning(
                "SendGrid reports %s for %s%s", kind, message_id, f" (notice {delivery.notice_id})" if delivery else ""
            )
    return report


def verify_signature(
    public_key: str,
    body: bytes,
    signature: str,
    timestamp: str,
    *,
    now: float | None = None,
    tolerance_s: int = TOLERANCE_S,
) -> bool:
    """Whether SendGrid signed ``body`` at ``timestamp`` (ECDSA P-256, SHA-256) recently enough."""
    if fresh_timestamp(timestamp, now=now, tolerance_s=tolerance_s) is None:
        return False
    try:
        key = load_der_public_key(base64.b64decode(public_key, validate=True))
        raw = base64.b64decode(signature, validate=True)
    except (ValueError, binascii.Error, TypeError, UnsupportedAlgorithm):  # a key of another kind
        return False
    if not isinstance(key, ec.EllipticCurvePublicKey):
        return False
    try:
        key.verify(raw, timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


def _public_key(request: Request) -> str | None:
    state = request.app.state
    key = getattr(state, "sendgrid_webhook_public_key", None)
    if key:
        return str(key)
    settings = getattr(state, "settings", None)
    if settings is None:
        return None
    from breachwatch.notifier.notices.config import load_notice_config

    return load_notice_config(settings).sendgrid_webhook_public_key


def _store(engine: Engine, events: list[Any]) -> ReceiptReport:
    with Session(engine) as session, session.begin():
        return record_sendgrid_events(session, events)


router = APIRouter()


@router.post(PATH)
async def sendgrid_events(request: Request) -> Response:
    """Receive a batch of SendGrid events: 204 once stored, 401 if not signed by SendGrid."""
    engine = getattr(request.app.state, "engine", None)
    key = _public_key(request)
    if engine is None or not key:
        return Response("event webhook not configured", status_code=503, media_type="text/plain")
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_BODY:
        return Response("body too large", status_code=413, media_type="text/plain")
    body = await request.body()
    if len(body) > MAX_BODY:
        return Response("body too large", status_code=413, media_type="text/plain")
    signature = request.headers.get(SIGNATURE_HEADER, "")
    timestamp = request.headers.get(TIMESTAMP_HEADER, "")
    if not verify_signature(key, body, signature, timestamp):
        return Response("signature missing, invalid or stale", status_code=401, media_type="text/plain")
    try:
        # pydantic's parser rather than json's: it refuses lone surrogates ("\\ud800", which no
        # database can store) and nesting beyond a limit (json recurses into a RecursionError).
        events = from_json(body)
    except ValueError:
        return Response("body is not JSON", status_code=400, media_type="text/plain")
    if not isinstance(events, list):
        return Response("body must be a JSON array of events", status_code=400, media_type="text/plain")
    report = await run_in_threadpool(_store, engine, events)
    log.info(
        "SendGrid events: %d received, %d recorded, %d repeats", report.received, report.recorded, report.duplicates
    )
    return Response(status_code=204)
