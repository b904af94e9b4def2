"""SendGrid event webhook: delivery events of our messages become receipts once each; the HTTP
edge takes only requests SendGrid signed, recently."""

from __future__ import annotations

import base64
import datetime as dt
import json
import time

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from breachwatch.channels.sendgrid_events import (
    PATH,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    record_sendgrid_events,
    router,
    verify_signature,
)
from breachwatch.notifier.notices.models import NoticeReceiptRow
from breachwatch.notifier.outbox import enqueue

NOW = dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def queued(engine, new_message) -> list[str]:
    ids = ["n1.v1.aaaa", "n1.v1.bbbb"]
    with Session(engine) as session, session.begin():
        for i in ids:
            enqueue(session, new_message(i, recipient=f"{i[-4:]}@rhein-logistik.example"), now=NOW)
    return ids


def _event(message_id: str, kind: str, sg_id: str, **kw) -> dict:
    return {
        "email": "aaaa@rhein-logistik.example",
        "timestamp": 1795000000,
        "event": kind,
        "sg_event_id": sg_id,
        "sg_message_id": "x.filter",
        "message_id": message_id,
        **kw,
    }


def _receipts(engine) -> list[tuple[str, str, str]]:
    with Session(engine) as session:
        return [
            (r.message_id, r.event, r.detail)
            for r in session.scalars(select(NoticeReceiptRow).order_by(NoticeReceiptRow.provider_event_id))
        ]


def test_delivery_events_become_receipts_once(engine, queued) -> None:
    events = [
        _event(queued[0], "delivered", "ev-1", response="250 2.0.0 OK"),
        _event(queued[1], "bounce", "ev-2", type="bounce", status="5.1.1", reason="550 no such user"),
        _event(queued[0], "delivered", "ev-1"),  # SendGrid retried the webhook
        _event(queued[0], "open", "ev-3"),  # tracking, not delivery
        _event("someone-elses-message", "delivered", "ev-4"),
        "not an event",
    ]
    with Session(engine) as session, session.begin():
        report = record_sendgrid_events(session, events, now=NOW)
    assert (report.received, report.recorded, report.duplicates, report.unknown_message, report.ignored) == (
        6,
        2,
        1,
        1,
        2,
    )
    assert _receipts(engine) == [
        (queued[0], "delivered", "250 2.0.0 OK"),
        (queued[1], "bounce", "bounce; 5.1.1; 550 no such user"),
    ]
    with Session(engine) as session, session.begin():
        again = record_sendgrid_events(session, events[:2], now=NOW)
    assert (again.recorded, again.duplicates) == (0, 2)


def test_event_text_is_kept_as_one_short_line(engine, queued) -> None:
    with Session(engine) as session, session.begin():
        record_sendgrid_events(session, [_event(queued[0], "dropped", "ev-9", reason="x\r\nInjected: 1" + "y" * 5000)])
    [(_, event, detail)] = _receipts(engine)
    assert event == "dropped" and "\n" not in detail and len(detail) <= 500


@pytest.fixture
def signing_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _public(key: ec.EllipticCurvePrivateKey) -> str:
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


def _signed(key: ec.EllipticCurvePrivateKey, body: bytes, timestamp: int) -> dict[str, str]:
    sig = key.sign(str(timestamp).encode() + body, ec.ECDSA(hashes.SHA256()))
    return {
        SIGNATURE_HEADER: base64.b64encode(sig).decode(),
        TIMESTAMP_HEADER: str(timestamp),
        "Content-Type": "application/json",
    }


@pytest.fixture
def client(engine, signing_key) -> TestClient:
    app = FastAPI()
    app.include_router(router)
    app.state.engine = engine
    app.state.sendgrid_webhook_public_key = _public(signing_key)
    return TestClient(app)


def test_signed_events_are_stored(client, signing_key, engine, queued) -> None:
    body = json.dumps([_event(queued[0], "delivered", "ev-1")]).encode()
    response = client.post(PATH, content=body, headers=_signed(signing_key, body, int(time.time())))
    assert response.status_code == 204
    assert _receipts(engine) == [(queued[0], "delivered", "")]


def test_unsigned_forged_or_stale_requests_are_refused(client, signing_key, engine, queued) -> None:
    body = json.dumps([_event(queued[0], "delivered", "ev-1")]).encode()
    now = int(time.time())
    assert client.post(PATH, content=body).status_code == 401
    forged = json.dumps([_event(queued[1], "delivered", "ev-2")]).encode()
    assert client.post(PATH, content=forged, headers=_signed(signing_key, body, now)).status_code == 401
    other = ec.generate_private_key(ec.SECP256R1())
    assert client.post(PATH, content=body, headers=_signed(other, body, now)).status_code == 401
    assert client.post(PATH, content=body, headers=_signed(signing_key, body, now - 3600)).status_code == 401
    assert _receipts(engine) == []


def test_a_signed_body_that_is_not_a_list_of_events_is_rejected(client, signing_key) -> None:
    for body in (b"{}", b"not json"):
        response = client.post(PATH, content=body, headers=_signed(signing_key, body, int(time.time())))
        assert response.status_code == 400


def test_without_a_key_the_endpoint_refuses_everything(engine) -> None:
    app = FastAPI()
    app.include_router(router)
    app.state.engine = engine
    assert TestClient(app).post(PATH, content=b"[]").status_code == 503


def test_verify_signature_rejects_garbage(signing_key) -> None:
    key = _public(signing_key)
    assert not verify_signature(key, b"[]", "not base64!", str(int(time.time())))
    assert not verify_signature("not a key", b"[]", "AAAA", str(int(time.time())))
    assert not verify_signature(key, b"[]", "AAAA", "yesterday")
