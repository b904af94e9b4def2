"""The OCSF findings topic as an outbox channel: each message's body (an incident's OCSF
Detection Finding) is produced to the topic, keyed by the incident id, and ``send`` returns
only once the brokers have it (``acks=all``).

The outbox hands this channel an incident's records one at a time, in order, and retries while
the brokers are away, so what reaches the topic is every change, in the order it happened, per
incident (one partition per key). A send interrupted by a crash is sent again: the record is
the incident's whole state at that change, so a second copy, still in order, changes nothing
for a reader that keeps the latest per key.
"""

from __future__ import annotations

import logging
from typing import Any

import kafka.errors as kafka_errors
from kafka import KafkaProducer

from breachwatch.core.settings import Settings
from breachwatch.notifier.delivery import LookupResult, NotFound, PermanentError, RetryableError
from breachwatch.notifier.message import OutboxMessage
from breachwatch.streams.kafka_client import client_options

log = logging.getLogger(__name__)

MESSAGE_ID_HEADER = "breachwatch-message-id"
TYPE_HEADER = "breachwatch-type"
# How long a send may wait for the brokers before the outbox is told to try again later: well
# inside its lease, so the dispatcher's pass is never held up for long.
SEND_TIMEOUT_S = 10.0


def _refused(exc: BaseException) -> bool:
    """Whether the brokers refused the record itself (sending it again cannot help)."""
    return isinstance(
        exc,
        kafka_errors.MessageSizeTooLargeError
        | kafka_errors.RecordListTooLargeError
        | kafka_errors.InvalidTopicError
        | kafka_errors.TopicAuthorizationFailedError,
    )


class FindingsTopicChannel:
    """Produces each message to one Kafka topic, keyed by the incident it is about."""

    def __init__(self, settings: Settings, topic: str, *, bootstrap: str | None = None) -> None:
        self.topic = topic
        self._options = client_options(settings, bootstrap)
        self._max_bytes = settings.max_message_bytes
        self._producer: KafkaProducer | None = None

    def __repr__(self) -> str:
        return f"FindingsTopicChannel(topic={self.topic!r})"

    def _connected(self) -> KafkaProducer:
        if self._producer is None:
            timeout_ms = int(SEND_TIMEOUT_S * 1000)
            self._producer = KafkaProducer(
                **self._options,
                acks="all",
                max_block_ms=timeout_ms,
                request_timeout_ms=timeout_ms,
                delivery_timeout_ms=timeout_ms * 2,
                max_request_size=max(self._max_bytes, 1_048_576),
            )
        return self._producer

    def send(self, message: OutboxMessage) -> str:
        if not message.incident_id:
            raise PermanentError("findings topic: only records about an incident are published")
        headers = [(MESSAGE_ID_HEADER, message.message_id.encode()), (TYPE_HEADER, message.message_type.encode())]
        try:
            sent = self._connected().send(
                self.topic, key=message.incident_id.encode(), value=message.body_text.encode(), headers=headers
            )
            meta: Any = sent.get(timeout=SEND_TIMEOUT_S * 2)
        except kafka_errors.KafkaError as exc:
            if _refused(exc):
                raise PermanentError(f"findings topic {self.topic}: {type(exc).__name__}") from None
            self.close()  # a fresh client next time: this one may hold a dead connection
            raise RetryableError(f"findings topic {self.topic}: brokers unavailable ({type(exc).__name__})") from None
        return f"{meta.topic}:{meta.partition}:{meta.offset}"

    def lookup(self, message_id: str) -> LookupResult:
        # Not a claim that the topic lacks it: one more copy of a state record, in order, is harmless.
        return NotFound()

    def close(self) -> None:
        if self._producer is not None:
            try:
                self._producer.close(timeout=1)
            except Exception:  # closing a client whose brokers are gone: nothing to save
                log.debug("findings topic producer did not close cleanly", exc_info=True)
            self._producer = None
