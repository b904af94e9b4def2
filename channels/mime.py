"""Turn an outbox message into an RFC 5322 email (text and HTML alternatives) for the file
and SMTP channels."""

from __future__ import annotations

from datetime import datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

from breachwatch.notifier.delivery import PermanentError
from breachwatch.notifier.message import EXTRA_HEADER_NAME, SUBJECT_MAX, OutboxMessage, header_text, is_address

MESSAGE_ID_HEADER = "X-BreachWatch-Message-Id"


def rfc5322_message_id(message_id: str, sender: str) -> str:
    """A deterministic Message-ID, so every attempt of one message carries the same one and
    receivers (and people) can recognise a repeat."""
    return f"<{message_id}@{sender.rpartition('@')[2]}>"


def build_email(message: OutboxMessage, sender: str, date: datetime) -> EmailMessage:
    """The email for ``message`` from ``sender``; raises ``PermanentError`` if the stored
    recipient cannot be an address (the outbox refuses those, so this is a safety net)."""
    if not is_address(message.recipient):
        raise PermanentError("recipient is not a plain email address")
    email = EmailMessage(policy=policy.SMTP)
    email["From"] = sender
    # addr_spec parsing rejects anything that could smuggle a second address or a header.
    email["To"] = Address(addr_spec=message.recipient)
    email["Subject"] = header_text(message.subject, SUBJECT_MAX)
    email["Date"] = format_datetime(date)
    email["Message-ID"] = rfc5322_message_id(message.message_id, sender)
    email[MESSAGE_ID_HEADER] = message.message_id
    for name, value in message.headers.items():
        if EXTRA_HEADER_NAME.fullmatch(name) and name.lower() != MESSAGE_ID_HEADER.lower():
            email[name] = header_text(value)
    email.set_content(message.body_text, charset="utf-8")
    if message.body_html is not None:
        email.add_alternative(message.body_html, subtype="html", charset="utf-8")
    return email
