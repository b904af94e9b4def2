"""The SendGrid channel, with the official client, against the local SendGrid server:
202/400/401/429/500, Retry-After, the activity look-up, and that the API key never leaks."""

from __future__ import annotations

import logging
import socket

import pytest

from breachwatch.channels.sendgrid_api import SendGridChannel
from breachwatch.devkit.servers import SendGridServer
from breachwatch.notifier.delivery import Delivered, NotFound, PermanentError, RetryableError, Unknown

SENDER = "breachwatch@unisen.example"


@pytest.fixture
def channel(sendgrid_server: SendGridServer, sendgrid_key: str) -> SendGridChannel:
    return SendGridChannel(sendgrid_key, SENDER, host=sendgrid_server.url, timeout=5)


def test_accepted_message_carries_its_outbox_id(channel, sendgrid_server, new_message) -> None:
    provider_id = channel.send(new_message("msg-0001", headers={"X-BreachWatch-Incident": "inc-1"}))

    [mail] = sendgrid_server.messages
    assert provider_id == mail.x_message_id and provider_id
    assert mail.to == ["oncall@unisen.example"]
    assert mail.payload["from"] == {"email": SENDER}
    assert mail.subject == "[BreachWatch] HIGH bulk_export"
    assert mail.text == "An export of 48211 customer records.\n"
    assert mail.html == "<p>An export of <b>48211</b> customer records.</p>"
    assert mail.custom_args == {"message_id": "msg-0001"}
    assert mail.headers == {"X-BreachWatch-Message-Id": "msg-0001", "X-BreachWatch-Incident": "inc-1"}


def test_400_is_permanent_and_names_the_field(channel, sendgrid_server, new_message) -> None:
    with pytest.raises(PermanentError, match=r"HTTP 400.*from\.email"):
        SendGridChannel(channel._key, "not-an-address", host=sendgrid_server.url).send(new_message())
    assert sendgrid_server.messages == []


def test_401_wrong_key_is_permanent(sendgrid_server, new_message) -> None:
    wrong = SendGridChannel("SG.wrong-key.fictional", SENDER, host=sendgrid_server.url)
    with pytest.raises(PermanentError, match="HTTP 401"):
        wrong.send(new_message())
    assert sendgrid_server.messages == []


def test_429_is_retryable_with_retry_after(channel, sendgrid_server, new_message) -> None:
    sendgrid_server.fail_next(429, retry_after=17)
    with pytest.raises(RetryableError) as caught:
        channel.send(new_message())
    assert caught.value.retry_after == 17
    assert "HTTP 429" in str(caught.value)
    assert sendgrid_server.messages == []


@pytest.mark.parametrize("status", [500, 503])
def test_5xx_is_retryable(channel, sendgrid_server, new_message, status: int) -> None:
    sendgrid_server.fail_next(status)
    with pytest.raises(RetryableError, match=f"HTTP {status}"):
        channel.send(new_message())
    # The next call goes through: the failure was only for one call.
    assert channel.send(new_message())
    assert len(sendgrid_server.messages) == 1


def test_scripted_400_is_permanent(channel, sendgrid_server, new_message) -> None:
    sendgrid_server.fail_next(400)
    with pytest.raises(PermanentError, match="HTTP 400"):
        channel.send(new_message())


def test_unreachable_server_is_retryable(sendgrid_key, new_message) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound but not listening: connection refused
        unreachable = SendGridChannel(sendgrid_key, SENDER, host=f"http://127.0.0.1:{port}", timeout=2)
        with pytest.raises(RetryableError, match="unreachable"):
            unreachable.send(new_message())


def test_lookup_finds_only_what_was_accepted(channel, sendgrid_server, new_message) -> None:
    assert channel.lookup("msg-0001") == NotFound()
    channel.send(new_message("msg-0001"))
    found = channel.lookup("msg-0001")
    assert isinstance(found, Delivered)
    assert found.provider_message_id is not None
    assert found.provider_message_id.startswith(sendgrid_server.messages[0].x_message_id)
    assert channel.lookup("msg-0002") == NotFound()


def test_lookup_transient_failure_raises_and_refusal_is_unknown(channel, sendgrid_server) -> None:
    sendgrid_server.fail_next(503, path="/v3/messages")
    with pytest.raises(RetryableError):
        channel.lookup("msg-0001")
    sendgrid_server.fail_next(403, path="/v3/messages")
    result = channel.lookup("msg-0001")
    assert isinstance(result, Unknown) and "403" in result.reason
    assert isinstance(channel.lookup('x" OR 1=1'), Unknown)  # never spliced into a query


def test_empty_key_is_refused_rather_than_read_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("SENDGRID_API_KEY", "SG.from-env.fictional")
    with pytest.raises(ValueError):
        SendGridChannel("", SENDER)


def test_api_key_never_in_logs_or_errors(sendgrid_server, sendgrid_key, new_message, caplog) -> None:
    """Every outcome, with the HTTP client logging at DEBUG (it logs request headers there)."""
    caplog.set_level(logging.DEBUG)
    channel = SendGridChannel(sendgrid_key, SENDER, host=sendgrid_server.url)
    texts: list[str] = [repr(channel)]
    channel.send(new_message("msg-0001"))
    channel.lookup("msg-0001")
    for status in (400, 429, 500):
        sendgrid_server.fail_next(status, retry_after=1)
        with pytest.raises((RetryableError, PermanentError)) as caught:
            channel.send(new_message())
        texts += [str(caught.value), repr(caught.value)]
    sendgrid_server.stop()
    with pytest.raises(RetryableError) as caught:
        channel.send(new_message())
    texts += [str(caught.value), repr(caught.value)]

    assert any("Authorization" in r.getMessage() for r in caplog.records)  # the header was logged...
    assert "[redacted]" in caplog.text  # ...masked
    secret_parts = [sendgrid_key, sendgrid_key.split(".")[-1]]
    for text in [*texts, caplog.text]:
        for part in secret_parts:
            assert part not in text
