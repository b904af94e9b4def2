"""Delivery channels: each implements ``send(message)`` (and, where the provider can say,
``lookup(message_id)``); retries and dedup live in ``notifier.outbox``."""

from breachwatch.channels.file import FileChannel
from breachwatch.channels.pagerduty import PagerDutyChannel
from breachwatch.channels.sendgrid_api import SendGridChannel
from breachwatch.channels.slack import SlackChannel
from breachwatch.channels.smtp import SmtpChannel
from breachwatch.channels.webhook import WebhookChannel
from breachwatch.notifier.delivery import (
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
