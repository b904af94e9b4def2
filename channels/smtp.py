"""SMTP channel: one connection per message with ``smtplib``, optional STARTTLS and login.

SMTP reply codes carry the contract: 4xx is transient (retry), 5xx is a refusal (permanent);
a dropped connection or timeout is retryable until the message's end has been written; after
that, no answer is ``OutcomeUnknown``. SMTP cannot say afterwards whether a message arrived, so
this channel has no ``lookup`` and an interrupted or unanswered send is left for a person.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from collections.abc import Callable
from datetime import datetime

from pydantic import SecretStr

from breachwatch.channels.mime import build_email
from breachwatch.core.clock import utcnow
from breachwatch.notifier.delivery import OutcomeUnknown, PermanentError, RetryableError
from breachwatch.notifier.message import OutboxMessage, one_line

log = logging.getLogger(__name__)
END_OF_DATA = b"\r\n.\r\n"


class _Smtp(smtplib.SMTP):
    """smtplib's client, noting when the end of the message data has been written: from then
    on the relay may have accepted the message even if its reply never arrives."""

    data_written = False

    def send(self, s: bytes | str) -> None:
        super().send(s)
        if isinstance(s, bytes) and s.endswith(END_OF_DATA):
            self.data_written = True


class SmtpChannel:
    """Sends through an SMTP relay."""

    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        *,
        username: str | None = None,
        password: SecretStr | str | None = None,
        starttls: bool = False,
        ssl_context: ssl.SSLContext | None = None,
        timeout: float = 30.0,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.host = host
        self.port = port
        self.sender = sender
        self.username = username
        self._password = password.get_secret_value() if isinstance(password, SecretStr) else password
        self.starttls = starttls
        self.ssl_context = ssl_context
        self.timeout = timeout
        self.clock = clock
        if username and not starttls:
            # Allowed (a relay on the same host), but credentials then cross the wire in clear.
            log.warning("SMTP login to %s:%d without STARTTLS: credentials are sent unencrypted", host, port)

    def __repr__(self) -> str:
        return f"SmtpChannel(host={self.host!r}, port={self.port}, starttls={self.starttls})"

    def send(self, message: OutboxMessage) -> str:
        email = build_email(message, self.sender, self.clock())
        delivered = False
        smtp: _Smtp | None = None
        try:
            smtp = _Smtp(self.host, self.port, timeout=self.timeout)
            smtp.ehlo()
            if self.starttls:
                smtp.starttls(context=self.ssl_context or ssl.create_default_context())
                smtp.ehlo()
            if self.username:
                smtp.login(self.username, self._password or "")
            smtp.send_message(email, from_addr=self.sender, to_addrs=[message.recipient])
            delivered = True
        except smtplib.SMTPAuthenticationError as exc:
            # The server's text is not echoed: some servers quote the AUTH exchange back.
            text = f"SMTP login refused with code {exc.smtp_code}"
            raise (RetryableError(text) if 400 <= exc.smtp_code < 500 else PermanentError(text)) from None
        except smtplib.SMTPRecipientsRefused as exc:
            code, reply = next(iter(exc.recipients.values()), (550, b""))
            raise self._reply_error("recipient refused", code, reply) from None
        except smtplib.SMTPNotSupportedError as exc:
            raise PermanentError(f"SMTP server does not support a required extension: {self._clean(exc)}") from None
        except smtplib.SMTPResponseException as exc:
            raise self._reply_error("SMTP server refused", exc.smtp_code, exc.smtp_error) from None
        except (smtplib.SMTPException, OSError) as exc:
            if smtp is not None and smtp.data_written:
                # The whole message went out and the relay's answer did not come back: it may
                # have taken it, and SMTP offers no way to ask, so a person decides.
                raise OutcomeUnknown(
                    f"SMTP {self.host}:{self.port} did not answer after the message was sent: {type(exc).__name__}"
                ) from None
            # Connection refused, reset or timed out, TLS handshake failure: try again later.
            raise RetryableError(
                f"SMTP {self.host}:{self.port} unreachable: {type(exc).__name__}: {self._clean(exc)}"
            ) from None
        finally:
            if smtp is not None:
                self._close(smtp, delivered)
        return str(email["Message-ID"])

    @staticmethod
    def _close(smtp: _Smtp, delivered: bool) -> None:
        # After a successful DATA the message is the relay's; a failing QUIT must not turn
        # that into an error (and a resend).
        try:
            smtp.quit()
        except (smtplib.SMTPException, OSError):
            smtp.close()

    def _clean(self, value: object) -> str:
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
        if self._password:
            text = text.replace(self._password, "[redacted]")
        return one_line(text, 200)

    def _reply_error(self, what: str, code: int, reply: bytes | str) -> RetryableError | PermanentError:
        text = f"{what}: {code} {self._clean(reply)}"
        return RetryableError(text) if 400 <= code < 500 else PermanentError(text)
