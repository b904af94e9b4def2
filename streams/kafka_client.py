"""Connection options for kafka-python clients, and the topics BreachWatch expects to exist.

Every producer, consumer and admin client is built from ``client_options(settings)``, so
TLS, SASL and the API-version pin are configured in one place. Secrets are read from the
settings only here and are never put into an error message.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

import kafka.errors as kafka_errors
from kafka.admin import KafkaAdminClient

from breachwatch.settings import ConfigError, Settings
from streams.models import ALL_TOPICS, EVENT_TOPICS, REFERENCE_TOPICS

if TYPE_CHECKING:
    from streams.local_kafka import LocalKafka

log = logging.getLogger(__name__)

CLIENT_ID = "breachwatch"
DLQ_SUFFIX = ".dlq"
_API_VERSION_RE = re.compile(r"^\d+(\.\d+){1,2}$")


def dlq_topic(topic: str) -> str:
    """The dead-letter topic of ``topic`` (already prefixed): bad messages go there, not lost."""
    return f"{topic}{DLQ_SUFFIX}"


def parse_api_version(text: str) -> tuple[int, ...]:
    """``"4.0"`` -> ``(4, 0)``: the form kafka-python's ``api_version`` takes."""
    if not _API_VERSION_RE.match(text.strip()):
        raise ConfigError(f"BREACHWATCH_KAFKA_API_VERSION: must look like 4.0 or 3.9.1 (got {text!r:.40})")
    return tuple(int(part) for part in text.strip().split("."))


def client_options(settings: Settings, bootstrap: str | None = None) -> dict[str, Any]:
    """Keyword arguments shared by ``KafkaProducer``, ``KafkaConsumer`` and ``KafkaAdminClient``.

    ``bootstrap`` overrides ``settings.kafka_bootstrap`` (the embedded broker's address is only
    known once it runs). Only options that are set are included, so callers can add their own.
    """
    servers = bootstrap or settings.kafka_bootstrap
    if not servers:
        raise ConfigError("KAFKA_BOOTSTRAP: no Kafka bootstrap address (set it, or start the local broker)")
    options: dict[str, Any] = {
        "bootstrap_servers": servers,
        "security_protocol": settings.kafka_security_protocol,
        "client_id": CLIENT_ID,
    }
    protocol = settings.kafka_security_protocol
    if protocol.startswith("SASL_"):
        if settings.kafka_sasl_mechanism is None:
            raise ConfigError(f"BREACHWATCH_KAFKA_SASL_MECHANISM: required with security protocol {protocol}")
        password = settings.secret("kafka_sasl_password")
        if not settings.kafka_sasl_username or not password:
            raise ConfigError(
                "BREACHWATCH_KAFKA_SASL_USERNAME / BREACHWATCH_KAFKA_SASL_PASSWORD: both are required "
                f"with SASL mechanism {settings.kafka_sasl_mechanism}"
            )
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism
        options["sasl_plain_username"] = settings.kafka_sasl_username
        options["sasl_plain_password"] = password
    elif settings.kafka_sasl_mechanism is not None:
        # Refuse rather than silently connect unauthenticated to a broker the operator
        # believes is using SASL.
        raise ConfigError(
            f"BREACHWATCH_KAFKA_SASL_MECHANISM: set, but the security protocol is {protocol}; "
            "use SASL_SSL or SASL_PLAINTEXT"
        )
    if protocol in ("SSL", "SASL_SSL"):
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            path = getattr(settings, f"kafka_{name}")
            if path is not None:
                options[name] = str(path)
    if settings.kafka_api_version:
        # Automatic version probing works against the bundled 4.1 broker; a pin is for
        # clusters where probing misbehaves (e.g. kafka-python issue 2679 on ListOffsets).
        options["api_version"] = parse_api_version(settings.kafka_api_version)
    return options


def topic_specs(settings: Settings, partitions: int | None = None) -> dict[str, dict[str, Any]]:
    """Every topic BreachWatch reads or writes, as kafka-python ``create_topics`` specs.

    Event topics and all dead-letter topics use the normal delete policy; the reference topics
    (tenants, staff, tickets) are compacted, so the latest value per key is kept forever.
    """
    count = partitions if partitions is not None else settings.partitions
    if count < 1:
        raise ValueError("a topic needs at least one partition")
    base = {"num_partitions": count, "replication_factor": settings.replication_factor}
    specs: dict[str, dict[str, Any]] = {}
    for name in EVENT_TOPICS:
        specs[settings.topic(name)] = dict(base)
    for name in REFERENCE_TOPICS:
        specs[settings.topic(name)] = {**base, "configs": {"cleanup.policy": "compact"}}
    for name in ALL_TOPICS:
        # A dead letter may have no usable key, which a compacted topic would reject, so
        # every DLQ uses the delete policy, reference topics' included.
        specs[dlq_topic(settings.topic(name))] = dict(base)
    return specs


def ensure_topics(
    settings: Settings, bootstrap: str | None = None, partitions: int | None = None, timeout: float = 30.0
) -> None:
    """Create whichever of BreachWatch's topics are missing, then wait until all are usable.

    Idempotent: topics that already exist are left as they are (even if their partition
    count differs), and a concurrent creator winning the race is not an error.
    """
    specs = topic_specs(settings, partitions)
    admin = KafkaAdminClient(**client_options(settings, bootstrap), request_timeout_ms=int(timeout * 1000))
    try:
        existing = set(admin.list_topics())
        missing = {name: spec for name, spec in specs.items() if name not in existing}
        if missing:
            result = admin.create_topics(missing, timeout_ms=int(timeout * 1000), raise_errors=False)
            for topic in result["topics"]:
                error = kafka_errors.for_code(topic["error_code"])
                if error in (kafka_errors.NoError, kafka_errors.TopicAlreadyExistsError):
                    continue
                raise error(f"cannot create topic {topic['name']}: {topic.get('error_message') or error.message}")
            log.info("created Kafka topics: %s", ", ".join(sorted(missing)))
        admin.wait_for_topics(list(specs), timeout_ms=int(timeout * 1000))
    finally:
        admin.close()


def resolve_bootstrap(settings: Settings, local: LocalKafka | None) -> str:
    """The configured ``KAFKA_BOOTSTRAP``, else the embedded broker's address (started if needed)."""
    if settings.kafka_bootstrap:
        return settings.kafka_bootstrap
    if local is None:
        raise ConfigError("KAFKA_BOOTSTRAP: not set, and no local broker was given to fall back on")
    return local.start()
