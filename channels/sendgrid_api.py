"""SendGrid channel: the official ``sendgrid`` client, ``POST /v3/mail/send``.

Every message carries its outbox id twice: as the custom arg ``message_id`` (which SendGrid
keeps in its Email Activity feed, so an interrupted send can be looked up) and as the header
``X-BreachWatch-Message-Id``. HTTP outcomes map to the channel contract: 2xx sent, 429 and
5xx and failures to connect or write the request retryable (429 with its Retry-After), any
other 4xx permanent; no answer to a request that was written (a timeout or a reset while
waiting) is ``OutcomeUnknown``: the outbox asks SendGrid before it would send it again.
"""

from __future__ import annotations

import http.client
import json
import logging
import re
import time
import urllib.error
from email.utils import parsedate_to_datetime
from typing import Any

import sendgrid
from pydantic import SecretStr
from python_http_client.exceptions import HTTPError

from breachwatch.channels.mime import MESSAGE_ID_HEADER
from breachwatch.notifier.delivery import (
    Delivered,
    LookupResult,
    NotFound,
    OutcomeUnknown,
    PermanentError,
    RetryableError,
    Unknown,
)
from breachwatch.notifier.message import EXTRA_HEADER_NAME, SUBJECT_MAX, OutboxMessage, header_text, one_line

log = logging.getLogger(__name__)

CUSTOM_ARG = "message_id"
_LOOKUP_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_BEARER = re.compile(r"(Bearer\s+)[^\s'\",}]+", re.IGNORECASE)


class _RedactBearer(logging.Filter):
    """Masks bearer tokens in records of the HTTP client, which logs request headers at DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if "earer" in text:
            record.msg = _BEARER.sub(r"\1[redacted]", text)
            record.args = None
        return True


def _install_redaction() -> None:
    logger = logging.getLogger("python_http_client.client")
    if not any(isinstance(f, _RedactBearer) for f in logger.filters):
        logger.addFilter(_RedactBearer())


class SendGridChannel:
    """Sends through SendGrid's v3 Mail Send API with the official client."""

    def __init__(
        self,
        api_key: SecretStr | str,
        sender: str,
        *,
        host: str = "https://api.sendgrid.com",
        timeout: float = 10.0,
    ) -> None:
        key = api_key.get_secret_value() if isinstance(api_key, SecretStr) else api_key
        if not key:
            # The client would otherwise fall back to reading SENDGRID_API_KEY itself.
            raise ValueError("a SendGrid API key is required")
        self.sender = sender
        self.host = host.rstrip("/")
        self._key = key
        _install_redaction()
        self._client = sendgrid.SendGridAPIClient(api_key=key, host=self.host)
        # The client takes no timeout argument; its HTTP layer reads this for every call.
        self._client.client.timeout = timeout

    def __repr__(self) -> str:
        return f"SendGridChannel(host={self.host!r})"

    def payload(self, message: OutboxMessage) -> dict[str, Any]:
        """The v3 Mail Send request body for ``message``."""
        headers = {
            name: header_text(value)
            for name, value in message.headers.items()
            if EXTRA_HEADER_NAME.fullmatch(name) and name.lower() != MESSAGE_ID_HEADER.lower()
        }
        headers[MESSAGE_ID_HEADER] = message.message_id
        content = [{"type": "text/plain", "value": message.body_text or " "}]
        if message.body_html:
            content.append({"type": "text/html", "value": message.body_html})
        return {
            "personalizations": [{"to": [{"email": message.recipient}]}],
            "from": {"email": self.sender},
            "subject": header_text(message.subject, SUBJECT_MAX) or "(no subject)",
            "content": content,
            "headers": headers,
            "custom_args": {CUSTOM_ARG: message.message_id},
        }

    def send(self, message: OutboxMessage) -> str | None:
        try:
            response = self._client.send(self.payload(message))
        except HTTPError as exc:
            raise self._http_error(exc, "mail send") from None
        except urllib.error.URLError as exc:
            # urllib wraps only what fails while connecting or writing the request: SendGrid
            # never got a whole request, so sending again is safe.
            raise RetryableError(f"SendGrid unreachable: {self._network_reason(exc)}") from None
        except (TimeoutError, ConnectionError, http.client.HTTPException, OSError) as exc:
            # The request was written and the answer never came (timed out, reset, cut off):
            # SendGrid may have accepted it, so it is looked up before any resend.
            raise OutcomeUnknown(f"SendGrid did not answer: {self._network_reason(exc)}") from None
        provider_id = response.headers.get("X-Message-Id") if response.headers is not None else None
        return str(provider_id) if provider_id else None

    def lookup(self, message_id: str) -> LookupResult:
        """Ask the Email Activity feed whether SendGrid holds a message with this outbox id."""
        if not _LOOKUP_ID.fullmatch(message_id):
            return Unknown("message id cannot be expressed in an activity query")
        query = f"unique_args['{CUSTOM_ARG}']=\"{message_id}\""
        try:
            response = self._client.client.messages.get(query_params={"query": query, "limit": 10})
        except HTTPError as exc:
            if exc.status_code == 429 or exc.status_code >= 500:
                raise self._http_error(exc, "activity lookup") from None
            # 400/401/403/404: e.g. the account has no Email Activity add-on.
            return Unknown(f"activity lookup refused: HTTP {exc.status_code}")
        except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException, OSError) as exc:
            raise RetryableError(f"SendGrid unreachable: {self._network_reason(exc)}") from None
        try:
            found = json.loads(response.body or b"{}").get("messages") or []
        except (ValueError, AttributeError):
            return Unknown("activity lookup answered with something that is not JSON")
        if not found:
            return NotFound()
        first = found[0] if isinstance(found[0], dict) else {}
        msg_id = first.get("msg_id")
        return Delivered(one_line(msg_id, 256) if msg_id else None)

    # --- errors, without secrets -------------------------------------------------------------

    def _redact(self, text: str) -> str:
        return text.replace(self._key, "[redacted]") if self._key else text

    def _http_error(self, exc: HTTPError, what: str) -> RetryableError | PermanentError:
        status = int(exc.status_code)
        detail = self._redact(one_line(_error_summary(exc.body), 300))
        text = f"SendGrid {what}: HTTP {status}" + (f": {detail}" if detail else "")
        if status == 429:
            return RetryableError(text, retry_after=_retry_after(exc.headers))
        if status >= 500 or status == 408:
            return RetryableError(text, retry_after=_retry_after(exc.headers))
        return PermanentError(text)

    def _network_reason(self, exc: BaseException) -> str:
        reason = getattr(exc, "reason", None) or exc
        return self._redact(one_line(f"{type(reason).__name__}: {reason}", 200))


def _error_summary(body: Any) -> str:
    """SendGrid's ``{"errors": [{"message", "field"}]}`` as one short line."""
    try:
        data = json.loads(body.decode("utf-8") if isinstance(body, bytes) else body or "{}")
    except (ValueError, UnicodeDecodeError, AttributeError, TypeError):
        return ""
    errors = data.get("errors") if isinstance(data, dict) else None
    if not isinstance(errors, list):
        return ""
    parts = []
    for err in errors[:5]:
        if isinstance(err, dict):
            field = err.get("field")
            parts.append(f"{field}: {err.get('message')}" if field else str(err.get("message")))
    return "; ".join(parts)


def _retry_after(headers: Any) -> float | None:
    """Seconds to wait from ``Retry-After`` (seconds or an HTTP date) or SendGrid's
    ``X-RateLimit-Reset`` (epoch seconds); None if neither is usable."""
    if headers is None:
        return None
    value = headers.get("Retry-After")
    if value:
        value = str(value).strip()
        try:
            return max(0.0, float(value))
        except ValueError:
            pass
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError, IndexError):
            pass
    reset = headers.get("X-RateLimit-Reset")
    if reset:
        try:
            return max(0.0, float(reset) - time.time())
        except ValueError:
            return None
    return None
