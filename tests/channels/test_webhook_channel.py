"""Generic webhook against a local receiver: signed the Standard Webhooks way, so the stock
``standardwebhooks`` library verifies what a receiver got; tampering, another secret and a
replay fail; no secret, no webhook."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from breachwatch.channels.webhook import WebhookChannel
from breachwatch.notifier.delivery import PermanentError, RetryableError
from breachwatch.notifier.message import OutboxMessage

SECRET = "whsec_" + base64.b64encode(b"fictional-webhook-key-0123456789").decode()
OTHER = "whsec_" + base64.b64encode(b"another-fictional-key-9876543210").decode()


def _message(**kw) -> OutboxMessage:
    fields = {
        "message_id": "page-9",
        "channel": "webhook",
        "recipient": "oncall-security@unisen.example",
        "subject": "[BreachWatch] DEADLINE 50%",
        "body_text": "Half the window is used.",
        "message_type": "oncall_deadline",
        "incident_id": "inc-1",
    }
    return OutboxMessage(**{**fields, **kw})


def _now() -> float:
    return datetime.now(UTC).timestamp()


def test_the_stock_library_verifies_what_the_receiver_got(receiver) -> None:
    WebhookChannel(receiver.url + "/hook", SECRET, clock=_now).send(_message())
    [req] = receiver.requests
    assert req.headers["webhook-id"] == "page-9"
    assert req.headers["webhook-signature"].startswith("v1,")
    body = Webhook(SECRET).verify(req.body, req.headers)
    assert (body["type"], body["data"]["id"], body["data"]["incident_id"], body["data"]["text"]) == (
        "oncall_deadline",
        "page-9",
        "inc-1",
        "Half the window is used.",
    )
    assert body["timestamp"].endswith("Z")


def test_an_incident_change_is_typed_by_what_happened(receiver) -> None:
    change = _message(
        message_id="chg-1", message_type="incident.acknowledged", headers={"X-BreachWatch-Change": "acknowledge"}
    )
    WebhookChannel(receiver.url, SECRET, clock=_now).send(change)
    body = Webhook(SECRET).verify(receiver.requests[0].body, receiver.requests[0].headers)
    assert body["type"] == "incident.acknowledged"
    assert body["data"]["headers"]["X-BreachWatch-Change"] == "acknowledge"


def test_tampering_another_secret_or_a_replay_fail_verification(receiver) -> None:
    WebhookChannel(receiver.url, SECRET, clock=_now).send(_message())
    [req] = receiver.requests
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(req.body.replace(b"Half", b"Most"), req.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(OTHER).verify(req.body, req.headers)
    old = WebhookChannel(receiver.url, SECRET, clock=lambda: _now() - 3600)
    old.send(_message(message_id="page-10"))
    with pytest.raises(WebhookVerificationError, match="too old"):
        Webhook(SECRET).verify(receiver.requests[1].body, receiver.requests[1].headers)


def test_a_webhook_needs_a_secret() -> None:
    with pytest.raises(ValueError, match="secret"):
        WebhookChannel("https://hooks.unisen.example/x", "")


@pytest.mark.parametrize(("status", "error"), [(503, RetryableError), (408, RetryableError), (410, PermanentError)])
def test_outcomes(receiver, status, error) -> None:
    receiver.answer_next(status, f"echo {SECRET}".encode())
    with pytest.raises(error) as caught:
        WebhookChannel(receiver.url + "/p?token=abc", SECRET).send(_message())
    assert SECRET not in str(caught.value) and "token=abc" not in str(caught.value)
