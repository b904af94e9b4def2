"""Delivery channels: each implements ``send(message)`` (and, where the provider can say,
``lookup(message_id)``); retries and dedup live in ``notifier.outbox``."""

from notifier.channels.base import (
    Channel,
    Delivered,
    DeliveryError,
    LookupChannel,
    LookupResult,
    NotFound,
    PermanentError,
    RetryableError,
    Unknown,
)
from notifier.channels.file import FileChannel
from notifier.channels.pagerduty import PagerDutyChannel
from notifier.channels.sendgrid_api import SendGridChannel
from notifier.channels.slack import SlackChannel
from notifier.channels.smtp import SmtpChannel
from notifier.channels.webhook import WebhookChannel

__all__ = [
    "Channel",
    "Delivered",
    "DeliveryError",
    "FileChannel",
    "LookupChannel",
    "LookupResult",
    "NotFound",
    "PagerDutyChannel",
    "PermanentError",
    "RetryableError",
    "SendGridChannel",
    "SlackChannel",
    "SmtpChannel",
    "Unknown",
    "WebhookChannel",
]
