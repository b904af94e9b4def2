"""The one interface every delivery channel implements, and the errors it may raise.

A channel's ``send`` either returns (the provider accepted the message), raises
``RetryableError`` (timeouts, 5xx, 429 with its Retry-After) or ``PermanentError`` (any other
rejection). Retries, backoff, dedup and the delivery log live in the outbox, once, not here.
Error texts are stored and logged, so a channel builds them without any secret.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from breachwatch.notifier.message import OutboxMessage


class DeliveryError(Exception):
    """A channel could not deliver a message; the text is safe to store and log."""


class RetryableError(DeliveryError):
    """Worth trying again later; ``retry_after`` is the provider's requested wait in seconds."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(DeliveryError):
    """The provider refused the message; sending it again unchanged cannot succeed."""


class OutcomeUnknown(DeliveryError):
    """The whole request reached the provider but no answer came back (a timeout or a reset
    while waiting for it): the provider may have the message, so it must not be sent again
    until the provider has been asked."""


@dataclass(frozen=True, slots=True)
class Delivered:
    """The provider has the message (it must not be sent again)."""

    provider_message_id: str | None = None


@dataclass(frozen=True, slots=True)
class NotFound:
    """The provider never received the message (it is safe to send it again)."""


@dataclass(frozen=True, slots=True)
class Unknown:
    """Nobody can tell whether the provider has the message."""

    reason: str


LookupResult = Delivered | NotFound | Unknown


@runtime_checkable
class Channel(Protocol):
    """Delivers one message; returns the provider's id for it, if it gives one."""

    def send(self, message: OutboxMessage) -> str | None: ...


@runtime_checkable
class LookupChannel(Channel, Protocol):
    """A channel that can also say whether an earlier, interrupted send arrived."""

    def lookup(self, message_id: str) -> LookupResult: ...
