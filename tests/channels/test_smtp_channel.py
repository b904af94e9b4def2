"""The SMTP channel against a real local aiosmtpd server: plain, AUTH, STARTTLS, refusals
mapped to retryable/permanent, and that the password never shows in an error or log."""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
import logging
import socket

import pytest

from breachwatch.channels.smtp import SmtpChannel
from breachwatch.notifier.delivery import OutcomeUnknown, PermanentError, RetryableError
from tests.fixtures.notifier_env import SmtpSink, _start_smtp, free_port

SENDER = "breachwatch@unisen.example"


def _received(sink) -> email.message.EmailMessage:
    [envelope] = sink.messages
    return email.message_from_bytes(envelope.original_content, policy=email.policy.default)


def test_delivers_a_multipart_message(smtp_server, new_message, clock) -> None:
    channel = SmtpChannel(smtp_server.host, smtp_server.port, SENDER, clock=clock, timeout=5)
    provider_id = channel.send(new_message("msg-0001"))

    [envelope] = smtp_server.messages
    assert envelope.mail_from == SENDER
    assert envelope.rcpt_tos == ["oncall@unisen.example"]
    parsed = _received(smtp_server)
    assert provider_id == parsed["Message-ID"] == "<msg-0001@unisen.example>"
    assert parsed["X-BreachWatch-Message-Id"] == "msg-0001"
    assert parsed["Subject"] == "[BreachWatch] HIGH bulk_export"
    assert "48211" in parsed.get_body(("plain",)).get_content()
    assert "<b>48211</b>" in parsed.get_body(("html",)).get_content()


def test_logs_in_when_credentials_are_set(smtp_server, smtp_credentials, new_message) -> None:
    user, password = smtp_credentials
    channel = SmtpChannel(smtp_server.host, smtp_server.port, SENDER, username=user, password=password, timeout=5)
    channel.send(new_message())
    assert smtp_server.logins == [user]
    assert len(smtp_server.messages) == 1


def test_wrong_password_is_permanent(smtp_server, smtp_credentials, new_message) -> None:
    user, _ = smtp_credentials
    channel = SmtpChannel(smtp_server.host, smtp_server.port, SENDER, username=user, password="wrong", timeout=5)
    with pytest.raises(PermanentError, match="login refused with code 535"):
        channel.send(new_message())
    assert smtp_server.messages == []


@pytest.mark.parametrize(
    ("reply", "error"), [("450 4.2.1 Mailbox busy", RetryableError), ("550 5.1.1 No such user", PermanentError)]
)
def test_recipient_refusals_follow_the_reply_code(smtp_server, new_message, reply: str, error: type) -> None:
    smtp_server.rcpt_replies.append(reply)
    channel = SmtpChannel(smtp_server.host, smtp_server.port, SENDER, timeout=5)
    with pytest.raises(error, match=reply.split()[0]):
        channel.send(new_message())
    assert smtp_server.messages == []


def test_starttls_with_a_trusted_certificate(smtp_tls_server, tls_files, smtp_credentials, new_message) -> None:
    user, password = smtp_credentials
    channel = SmtpChannel(
        smtp_tls_server.host,
        smtp_tls_server.port,
        SENDER,
        username=user,
        password=password,
        starttls=True,
        ssl_context=tls_files.client_context(),
        timeout=5,
    )
    channel.send(new_message())
    assert smtp_tls_server.logins == [user]
    assert len(smtp_tls_server.messages) == 1


def test_server_demanding_starttls_refuses_a_plain_client(smtp_tls_server, new_message) -> None:
    channel = SmtpChannel(smtp_tls_server.host, smtp_tls_server.port, SENDER, timeout=5)
    with pytest.raises(PermanentError, match="530"):
        channel.send(new_message())
    assert smtp_tls_server.messages == []


def test_untrusted_certificate_is_not_accepted(smtp_tls_server, new_message) -> None:
    channel = SmtpChannel(smtp_tls_server.host, smtp_tls_server.port, SENDER, starttls=True, timeout=5)
    with pytest.raises(RetryableError, match="SSLCertVerificationError"):
        channel.send(new_message())
    assert smtp_tls_server.messages == []


def test_connection_refused_is_retryable(new_message) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        with pytest.raises(RetryableError, match="unreachable"):
            SmtpChannel("127.0.0.1", port, SENDER, timeout=2).send(new_message())


def test_password_never_in_logs_or_errors(smtp_server, smtp_tls_server, smtp_credentials, new_message, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    user, password = smtp_credentials
    texts: list[str] = []
    good = SmtpChannel(smtp_server.host, smtp_server.port, SENDER, username=user, password=password, timeout=5)
    good.send(new_message())
    texts.append(repr(good))
    failing = [
        SmtpChannel(smtp_server.host, smtp_server.port, SENDER, username=password, password=password, timeout=5),
        SmtpChannel(smtp_tls_server.host, smtp_tls_server.port, SENDER, username=user, password=password, timeout=5),
        SmtpChannel(
            smtp_tls_server.host,
            smtp_tls_server.port,
            SENDER,
            username=user,
            password=password,
            starttls=True,
            timeout=5,
        ),
    ]
    for channel in failing:
        with pytest.raises((RetryableError, PermanentError)) as caught:
            channel.send(new_message())
        texts += [str(caught.value), repr(caught.value), repr(channel)]

    ours = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("mail.log"))
    encoded = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
    for text in [*texts, ours]:
        assert password not in text
        assert encoded not in text


class _SlowAfterData(SmtpSink):
    """Takes the message, then answers after the client has given up."""

    async def handle_DATA(self, server, session, envelope) -> str:
        self.messages.append(envelope)
        await asyncio.sleep(2.0)
        return "250 Message accepted for delivery"


def test_no_answer_after_the_data_is_an_unknown_outcome_not_a_retry(new_message) -> None:
    sink = _SlowAfterData()
    controller = _start_smtp(sink)
    try:
        channel = SmtpChannel(sink.host, sink.port, SENDER, timeout=0.5)
        with pytest.raises(OutcomeUnknown, match="did not answer after the message was sent"):
            channel.send(new_message("msg-0001"))
    finally:
        controller.stop()
    assert len(sink.messages) == 1  # the relay has it: sending again would make a second copy


def test_no_connection_is_still_retryable(new_message) -> None:
    channel = SmtpChannel("127.0.0.1", free_port(), SENDER, timeout=0.5)
    with pytest.raises(RetryableError):
        channel.send(new_message("msg-0001"))
