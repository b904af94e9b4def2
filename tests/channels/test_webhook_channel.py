"""Generic webhook against a local receiver: signed with HMAC-SHA256 over timestamp and body,
verifiable by the receiver, and refusing to run unsigned."""

from __future__ import annotations

import pytest

from breachwatch.channels.webhook import MESSAGE_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, WebhookChannel, verify
from breachwatch.notifier.delivery import PermanentError, RetryableError
from breachwatch.notifier.message import OutboxMessage

SECRET = "wh-fictional-secret-5f2b9c"
NOW = 1_795_000_000.0


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


def test_the_receiver_can_verify_what_it_got(receiver) -> None:
    WebhookChannel(receiver.url + "/hook", SECRET, clock=lambda: NOW).send(_message())
    [req] = receiver.requests
    assert req.headers[TIMESTAMP_HEADER] == str(int(NOW))
    assert req.headers[MESSAGE_ID_HEADER] == "page-9"
    assert req.headers[SIGNATURE_HEADER].startswith("v1=")
    assert verify(SECRET, req.body, req.headers[TIMESTAMP_HEADER], req.headers[SIGNATURE_HEADER], now=NOW + 10)
    body = req.json()
    assert (body["id"], body["type"], body["incident_id"], body["text"]) == (
        "page-9",
        "oncall_deadline",
        "inc-1",
        "Half the window is used.",
    )


def test_tampering_a_wrong_secret_or_a_replay_fail_verification(receiver) -> None:
    WebhookChannel(receiver.url, SECRET, clock=lambda: NOW).send(_message())
    [req] = receiver.requests
    ts, sig = req.headers[TIMESTAMP_HEADER], req.headers[SIGNATURE_HEADER]
    assert not verify(SECRET, req.body.replace(b"Half", b"Most"), ts, sig, now=NOW)
    assert not verify("another-secret", req.body, ts, sig, now=NOW)
    assert not verify(SECRET, req.body, ts, sig, now=NOW + 3600)  # too old: a replay
    assert not verify(SECRET, req.body, "not-a-time", sig, now=NOW)


def test_a_webhook_needs_a_secret() -> None:
    with pytest.raises(ValueError, match="secret"):
        WebhookChannel("https://hooks.unisen.example/x", "")


@pytest.mark.parametrize(("status", "error"), [(503, RetryableError), (408, RetryableError), (410, PermanentError)])
def test_outcomes(receiver, status, error) -> None:
    receiver.answer_next(status, f"echo {SECRET}".encode())
    with pytest.raises(error) as caught:
        WebhookChannel(receiver.url + "/p?token=abc", SECRET).send(_message())
    assert SECRET not in str(caught.value) and "token=abc" not in str(caught.value)
