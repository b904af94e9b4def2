"""Generic webhook channel: each message as JSON, POSTed and signed the Standard Webhooks way
(standardwebhooks.com), so a receiver verifies it with any of that scheme's stock libraries.

Headers: ``webhook-id`` (the outbox id: the same on every retry, so a receiver drops a repeat),
``webhook-timestamp`` (Unix seconds) and ``webhook-signature`` (``v1,<base64>``: HMAC-SHA256
under the base64-decoded ``whsec_`` secret over ``<id>.<timestamp>.<body>``). The body is
``{"type", "timestamp", "data"}``: a page's type is its message type (``oncall_deadline``...),
an incident change's is ``incident.<what happened>``. Also home of the small JSON-over-HTTP
helper the Slack, PagerDuty and Jira channels share.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
from pydantic import SecretStr
from standardwebhooks.webhooks import Webhook

from breachwatch.notifier.delivery import PermanentError, RetryableError
from breachwatch.notifier.message import OutboxMessage, one_line

ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
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


def send_json(
    client: httpx.Client,
    method: str,
    url: str,
    body: bytes | None,
    *,
    what: str,
    headers: Mapping[str, str] | None = None,
    secrets: tuple[str, ...] = (),
) -> httpx.Response:
    """Send a JSON request and map the outcome to the channel contract: 2xx returns the
    response; 429, 408, 5xx and network trouble raise ``RetryableError`` (with the provider's
    Retry-After); other statuses ``PermanentError``. Error texts name only the host, never the
    URL's path or a secret."""

    def clean(text: str) -> str:
        for s in secrets:
            if s:
                text = text.replace(s, "[redacted]")
        return one_line(text, 200)

    sent = {"Accept": "application/json", **({"Content-Type": "application/json"} if body is not None else {})}
    try:
        response = client.request(method, url, content=body, headers={**sent, **(headers or {})})
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


def post_json(
    client: httpx.Client,
    url: str,
    body: bytes,
    *,
    what: str,
    headers: Mapping[str, str] | None = None,
    secrets: tuple[str, ...] = (),
) -> httpx.Response:
    """POST ``body`` (see ``send_json``)."""
    return send_json(client, "POST", url, body, what=what, headers=headers, secrets=secrets)


def fresh_timestamp(timestamp: str, *, now: float | None, tolerance_s: int) -> int | None:
    """The signed request's Unix time, or None when it is malformed or too far from now (a replay)."""
    try:
        sent = int(timestamp)
        age = abs((time.time() if now is None else now) - sent)
    except (TypeError, ValueError, OverflowError):  # OverflowError: too many digits for a float
        return None
    return sent if age <= tolerance_s else None


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
        # Raises for a secret that is not base64: settings refuse one at start-up already.
        self._signer = Webhook(key)
        self._key = key
        self.clock = clock
        self._timeout = timeout
        self._transport = transport
        self._client: httpx.Client | None = None

    def __repr__(self) -> str:
        return f"WebhookChannel({where(self.url)!r})"

    def payload(self, message: OutboxMessage, at: datetime) -> dict[str, Any]:
        return {
            "type": message.message_type or "message",
            "timestamp": at.isoformat().replace("+00:00", "Z"),
            "data": {
                "id": message.message_id,
                "incident_id": message.incident_id,
                "recipient": message.recipient,
                "subject": message.subject,
                "text": message.body_text[:MAX_TEXT],
                "headers": dict(message.headers),
                "attempt": message.attempt,
            },
        }

    def send(self, message: OutboxMessage) -> str:
        at = datetime.fromtimestamp(int(self.clock()), tz=UTC)
        body = json.dumps(self.payload(message, at), ensure_ascii=False, separators=(",", ":")).encode()
        post_json(
            self._http(),
            self.url,
            body,
            what="webhook",
            headers={
                ID_HEADER: message.message_id,
                TIMESTAMP_HEADER: str(int(at.timestamp())),
                SIGNATURE_HEADER: self._signer.sign(message.message_id, at, body),
            },
            secrets=(self._key,),
        )
        return message.message_id
