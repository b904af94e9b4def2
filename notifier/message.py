"""One outgoing message as the outbox stores it and a channel delivers it, plus the checks
that keep attacker-supplied text out of headers and addresses."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

# C0/C1 controls, zero-width and bidirectional formatting characters, and line/paragraph
# separators: none belongs in a header, and bidi overrides can disguise text in a body.
_INVISIBLE = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")
_SPACES = re.compile(r"\s+")
ELLIPSIS = "…"

# The logical mail channel; which provider serves it (file, SendGrid, SMTP) is a deployment setting.
EMAIL = "email"
SUBJECT_MAX = 200
HEADER_VALUE_MAX = 200
MESSAGE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# Extra headers a message may carry: custom "X-" headers only, never a structural one
# (From, To, Bcc, Content-Type...), whatever a caller puts in the outbox.
EXTRA_HEADER_NAME = re.compile(r"^X-[A-Za-z0-9-]{1,64}$")
# A conservative addr-spec: no display names, quotes, commas or angle brackets, so a
# recipient can never turn into a second recipient or a header of its own.
_ADDRESS = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
)


def truncate(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, marked with an ellipsis when cut."""
    if len(text) <= limit:
        return text
    return text[: max(limit - 1, 0)] + ELLIPSIS


def one_line(value: object, limit: int) -> str:
    """``value`` as a single line of visible text: controls and line breaks become spaces,
    runs of whitespace collapse, and the result is capped at ``limit`` characters."""
    text = "" if value is None else str(value)
    # Cut very long input first so the regexes below never scan megabytes.
    text = text[: limit * 4 + 16]
    text = _SPACES.sub(" ", _INVISIBLE.sub(" ", text)).strip()
    return truncate(text, limit)


def header_text(value: object, limit: int = HEADER_VALUE_MAX) -> str:
    """A value that is safe as an email header: one line, no control characters, capped."""
    return one_line(value, limit)


def is_address(value: str) -> bool:
    """True if ``value`` is a plain ``local@domain.tld`` address this system will send to."""
    return len(value) <= 254 and _ADDRESS.fullmatch(value) is not None


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """A rendered message addressed to one recipient over one logical channel ("email")."""

    message_id: str  # deterministic, caller-supplied: the idempotency key end to end
    channel: str
    recipient: str
    subject: str
    body_text: str
    body_html: str | None = None
    message_type: str = ""
    incident_id: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    attempt: int = 0  # which delivery attempt this is (1 for the first), set by the dispatcher
    # The ``content_digest`` an approval sealed this message with; a send of other content is refused.
    sealed_digest: str | None = None
    ordering_key: str | None = None  # delivered after the earlier messages of this key (see outbox)

    def checked(self) -> OutboxMessage:
        """This message with its subject and headers made header-safe; raises ``ValueError``
        if the id, recipient, channel or a header name cannot be used at all."""
        if not MESSAGE_ID.fullmatch(self.message_id):
            raise ValueError("message_id must be 1-128 characters of [A-Za-z0-9._:-]")
        if not is_address(self.recipient):
            raise ValueError("recipient is not a plain email address")
        if not re.fullmatch(r"[a-z][a-z0-9_]{0,31}", self.channel):
            raise ValueError("channel must be a short lower-case name")
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            if not EXTRA_HEADER_NAME.fullmatch(name):
                raise ValueError(f"extra header names must look like X-Name: {name[:70]!r}")
            headers[name] = header_text(value)
        return OutboxMessage(
            message_id=self.message_id,
            channel=self.channel,
            recipient=self.recipient,
            subject=header_text(self.subject, SUBJECT_MAX),
            body_text=self.body_text,
            body_html=self.body_html,
            message_type=self.message_type,
            incident_id=self.incident_id,
            headers=headers,
            attempt=self.attempt,
            sealed_digest=self.sealed_digest,
            ordering_key=self.ordering_key,
        )


def content_digest(message: OutboxMessage) -> str:
    """SHA-256 of everything a recipient receives of ``message`` (recipient, subject, both
    bodies, extra headers), in one fixed encoding: what an approval seals and a send checks."""
    parts = [
        message.recipient.lower(),
        message.subject,
        message.body_text,
        message.body_html or "",
        sorted((str(k), str(v)) for k, v in message.headers.items()),
    ]
    data = json.dumps(parts, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return hashlib.sha256(data).hexdigest()
