"""Slack incoming webhook against a local receiver: the payload, escaping of Slack's control
characters, the outcome mapping, and a webhook URL that never shows in an error."""

from __future__ import annotations

import pytest

from breachwatch.channels.slack import SlackChannel
from breachwatch.notifier.delivery import PermanentError, RetryableError
from breachwatch.notifier.message import OutboxMessage

TOKEN_PATH = "/services/T0FICTION/B0FICTION/s3cr3tT0kenF1ct10nal"


def _message(**kw) -> OutboxMessage:
    fields = {
        "message_id": "page-1",
        "channel": "slack",
        "recipient": "oncall-security@unisen.example",
        "subject": "[BreachWatch] OVERDUE: notice deadline",
        "body_text": "A deadline has passed.\nIncident inc-1",
        "message_type": "oncall_deadline",
        "incident_id": "inc-1",
    }
    return OutboxMessage(**{**fields, **kw})


def test_posts_the_message_as_text(receiver) -> None:
    SlackChannel(receiver.url + TOKEN_PATH).send(_message())
    [req] = receiver.requests
    assert req.path == TOKEN_PATH
    assert req.headers["Content-Type"] == "application/json"
    body = req.json()
    assert body["text"] == "*[BreachWatch] OVERDUE: notice deadline*\nA deadline has passed.\nIncident inc-1"
    assert body["unfurl_links"] is False


def test_event_text_cannot_ping_or_disguise_links(receiver) -> None:
    SlackChannel(receiver.url + TOKEN_PATH).send(
        _message(subject="<!channel> alert", body_text="<https://evil.example|click here> & <@U123>")
    )
    text = receiver.requests[0].json()["text"]
    assert "<" not in text and ">" not in text
    assert "&lt;!channel&gt;" in text and "&amp;" in text


@pytest.mark.parametrize(
    ("status", "error", "retry_after"),
    [
        (429, RetryableError, 30.0),
        (500, RetryableError, None),
        (400, PermanentError, None),
        (404, PermanentError, None),
    ],
)
def test_outcomes(receiver, status, error, retry_after) -> None:
    headers = {"Retry-After": "30"} if status == 429 else {}
    receiver.answer_next(status, b"invalid_payload" if status == 400 else b"", headers)
    with pytest.raises(error) as caught:
        SlackChannel(receiver.url + TOKEN_PATH).send(_message())
    if isinstance(caught.value, RetryableError):
        assert caught.value.retry_after == retry_after
    assert "s3cr3tT0ken" not in str(caught.value)


def test_an_unreachable_webhook_is_retryable_and_its_url_stays_secret() -> None:
    channel = SlackChannel("http://127.0.0.1:9" + TOKEN_PATH, timeout=2)
    with pytest.raises(RetryableError) as caught:
        channel.send(_message())
    assert "s3cr3tT0ken" not in str(caught.value) and "services" not in str(caught.value)
    assert "s3cr3tT0ken" not in repr(channel)
