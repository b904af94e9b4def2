"""Generic webhook channel: the message as JSON, POSTed and signed with HMAC-SHA256.

The receiver checks ``X-BreachWatch-Signature: v1=<hex>``, the HMAC-SHA256 of
``<timestamp>.<body>`` under the shared secret, where ``<timestamp>`` is the Unix time in
``X-BreachWatch-Timestamp``; a timestamp outside its tolerance is a replay. The outbox id
travels as ``X-BreachWatch-Message-Id`` so a receiver can drop a repeat. Also home of the
small JSON-over-HTTP helper the Slack and PagerDuty channels share.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable, Mapping
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
from pydantic import SecretStr

from breachwatch.notifier.delivery import PermanentError, RetryableError
from breachwatch.notifier.message import OutboxMessage, one_line

SIGNATURE_HEADER = "X-BreachWatch-Signature"
TIMESTAMP_HEADER = "X-BreachWatch-Timestamp"
MESSAGE_ID_HEADER = "X-BreachWatch-Message-Id"
SIGNATURE_VERSION = "v1"
DEFAULT_TOLERANCE_S = 300
MAX_TEXT = 100_000


def _secret(value: SecretStr | str) -> str:
    return value.get_secret_value() if isinstance(value, SecretStr) else value


def where(url: str) -> str:
    """A URL reduced to scheme and host, for error texts (paths and queries may hold tokens)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or '?'}"


def retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (seconds or an HTTP date); None if unusable."""
    if not value:
        return None
    try:
        return max(0.0, float(value.strip()))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, IndexError, OverflowError):  # OverflowError: a year past 9999
        return None


def post_json(
    client: httpx.Client,
    url: str,
    body: bytes,
    *,
    what: str,
    headers: Mapping[str, str] | None = None,
    secrets: tuple[str, ...] = (),
) -> httpx.Response:
    """POST ``body`` and map the outcome to the channel contract: 2xx returns the response;
    429, 408, 5xx and network trouble raise ``RetryableError``; other statuses ``PermanentError``.
    Error texts name only the host, never the URL's path or a secret."""

    def clean(text: str) -> str:
        for s in secrets:
            if s:
                text = text.replace(s, "[redacted]")
        return one_line(text, 200)

    try:
        response = client.post(url, content=body, headers={"Content-Type": "application/json", **(headers or {})})
    except httpx.TimeoutException:
        raise RetryableError(f"{what}: {where(url)} timed out") from None
    except httpx.HTTPError as exc:
        raise RetryableError(f"{what}: {where(url)} unreachable: {type(exc).__name__}") from None
    status = response.status_code
    if 200 <= status < 300:
        return response
    detail = clean(response.text) if response.content else ""
    text = f"{what}: HTTP {status}" + (f": {detail}" if detail else "")
    if status == 429 or status == 408 or status >= 500:
        raise RetryableError(text, retry_after=retry_after(response.headers.get("Retry-After")))
    raise PermanentError(text)


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"{SIGNATURE_VERSION}={mac.hexdigest()}"


def fresh_timestamp(timestamp: str, *, now: float | None, tolerance_s: int) -> int | None:
    """The signed request's Unix time, or None when it is malformed or too far from now (a replay)."""
    try:
        sent = int(timestamp)
        age = abs((time.time() if now is None else now) - sent)
    except (TypeError, ValueError, OverflowError):  # OverflowError: too many digits for a float
        return None
    return sent if age <= tolerance_s else None


def verify(
    secret: SecretStr | str,
    body: bytes,
    timestamp: str,
    signature: str,
    *,
    now: float | None = None,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
) -> bool:
    """What a receiver does: the signature matches and the timestamp is recent."""
    sent = fresh_timestamp(timestamp, now=now, tolerance_s=tolerance_s)
    if sent is None:
        return False
    expected = sign(_secret(secret), str(sent), body)
    return hmac.compare_digest(expected.encode(), (signature or "").encode())


class HttpClientMixin:
    """The one HTTP client of an HTTP channel, made on first use (building the channel, e.g.
    to list what is configured, stays free); channels set ``_timeout``, ``_transport``, ``_client``."""

    _timeout: float
    _transport: httpx.BaseTransport | None
    _client: httpx.Client | None

    def _http(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(timeout=self._timeout, transport=self._transport, follow_redirects=False)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


class WebhookChannel(HttpClientMixin):
    """POSTs each message as signed JSON to one URL."""

    def __init__(
        self,
        url: str,
        secret: SecretStr | str,
        *,
        timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if urlsplit(url).scheme not in ("http", "https"):
            raise ValueError("the webhook URL must be http(s)")
        key = _secret(secret)
        if not key:
            raise ValueError("a webhook secret is required: unsigned webhooks could be forged")
        self.url = url
        self._secret = key
        self.clock = clock
        self._timeout = timeout
        self._transport = transport
        self._client: httpx.Client | None = None

    def __repr__(self) -> str:
        return f"WebhookChannel({where(self.url)!r})"

    def payload(self, message: OutboxMessage) -> dict[str, Any]:
        return {
            "id": message.message_id,
            "type": message.message_type,
            "incident_id": message.incident_id,
            "recipient": message.recipient,
            "subject": message.subject,
            "text": message.body_text[:MAX_TEXT],
            "headers": dict(message.headers),
            "attempt": message.attempt,
        }

    def send(self, message: OutboxMessage) -> str:
        body = json.dumps(self.payload(message), ensure_ascii=False, separators=(",", ":")).encode()
        timestamp = str(int(self.clock()))
        post_json(
            self._http(),
            self.url,
            body,
            what="webhook",
            headers={
                TIMESTAMP_HEADER: timestamp,
                SIGNATURE_HEADER: sign(self._secret, timestamp, body),
                MESSAGE_ID_HEADER: message.message_id,
            },
            secrets=(self._secret,),
        )
        return message.message_id
