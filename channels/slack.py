"""Slack incoming-webhook channel.

The webhook URL is the credential (anyone holding it can post), so it is a secret and never
appears in an error. Slack reads ``<...>`` as links and mentions (``<!channel>``) and ``&`` as
an entity, so those three characters are escaped in everything sent: an event field cannot
ping a channel or disguise a link. Slack offers no way to ask whether a post arrived, so this
channel has no ``lookup``: an interrupted post is left for a person.
"""

from __future__ import annotations

import json

import httpx
from pydantic import SecretStr

from breachwatch.channels.webhook import HttpClientMixin, post_json
from breachwatch.notifier.message import OutboxMessage, truncate

MAX_TEXT = 3500  # Slack truncates long messages; the console has the full text


def escape(text: str) -> str:
    """Text with Slack's control characters escaped (``&``, ``<``, ``>``)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class SlackChannel(HttpClientMixin):
    """Posts each message to one Slack incoming webhook."""

    def __init__(
        self, webhook_url: SecretStr | str, *, timeout: float = 10.0, transport: httpx.BaseTransport | None = None
    ) -> None:
        url = webhook_url.get_secret_value() if isinstance(webhook_url, SecretStr) else webhook_url
        if not url.startswith(("https://", "http://")):
            raise ValueError("the Slack webhook URL must be http(s)")
        self._url = url
        self._timeout = timeout
        self._transport = transport
        self._client: httpx.Client | None = None

    def __repr__(self) -> str:
        return "SlackChannel(webhook=[redacted])"

    def payload(self, message: OutboxMessage) -> dict[str, object]:
        text = f"*{escape(message.subject)}*\n{escape(message.body_text)}"
        return {"text": truncate(text, MAX_TEXT), "unfurl_links": False, "unfurl_media": False}

    def send(self, message: OutboxMessage) -> None:
        body = json.dumps(self.payload(message), ensure_ascii=False).encode()
        post_json(self._http(), self._url, body, what="Slack webhook", secrets=(self._url,))
