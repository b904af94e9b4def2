"""Connection options for kafka-python clients, and the topics BreachWatch expects to exist.

Every producer, consumer and admin client is built from ``client_options(settings)``, so
TLS, SASL and the API-version pin are configured in one place. Secrets are read from the
settings only here and are never put into an error message. ``check_connection`` is the
start-up probe: a wrong password or an untrusted certificate fails in seconds, named.
"""

from __future__ import annotations

import logging
import re
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import kafka.errors as kafka_errors
from kafka.admin import KafkaAdminClient
from kafka.net.compat import KafkaNetClient

from breachwatch.core.events import ALL_TOPICS, EVENT_TOPICS, REFERENCE_TOPICS
from breachwatch.core.settings import SECRET_FIELDS, ConfigError, Settings

log = logging.getLogger(__name__)

CLIENT_ID = "breachwatch"
DLQ_SUFFIX = ".dlq"
_API_VERSION_RE = re.compile(r"^\d+(\.\d+){1,2}$")
# kafka-python warns when one step of its network loop takes longer than this (its default is
# 0.1 s), to catch a coroutine spinning in a loop. Its loop runs on a thread that waits for the
# interpreter lock while the main thread judges a batch, so under load steps of 0.1-0.5 s are
# normal here and the default warned every few seconds. A loop stuck for seconds still warns.
SLOW_NETWORK_STEP_S = 5.0


class RedactedStr(str):
    """A secret kafka-python can use as a plain string, but whose ``repr`` is asterisks.

    kafka-python's admin client logs its whole configuration at DEBUG (the dict's values go
    through ``repr``), which would otherwise print the SASL password into the service's log.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return "'**********'"


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
        "kafka_client": partial(KafkaNetClient, slow_task_threshold_secs=SLOW_NETWORK_STEP_S),
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
        options["sasl_plain_password"] = RedactedStr(password)
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


def fetch_options(settings: Settings) -> dict[str, Any]:
    """Fetch sizes of the event-topic consumer (and of the benchmark's bare consumer, so the
    ceiling it measures is the service's own).

    Each fetch round trip and each poll has a fixed cost, so a partition's share of a fetch
    should hold thousands of records: 8 MiB per partition consumed 4-11 % more records per CPU
    second than 1 or 2 MiB in each of three runs. A message may be as large as
    ``max_message_bytes``, so a fetch is never smaller than two of them."""
    return {
        "max_poll_records": settings.poll_max_records,
        "max_partition_fetch_bytes": max(settings.max_message_bytes * 2, 8 * 1_048_576),
        "fetch_max_bytes": max(settings.max_message_bytes * 4, 52_428_800),
    }


def topic_specs(settings: Settings, partitions: int | None = None) -> dict[str, dict[str, Any]]:
    """Every topic BreachWatch reads or writes, as kafka-python ``create_topics`` specs.

    Event topics, all dead-letter topics and the OCSF findings topic use the normal delete
    policy; the reference topics
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
    if settings.ocsf_topic:
        # What BreachWatch publishes: a record per incident change, kept as long as the
        # cluster's retention says (not compacted: evidence in it must age out).
        specs[settings.topic(settings.ocsf_topic)] = dict(base)
    return specs


def know_partitions(consumer: Any, topics: list[str]) -> dict[str, set[int]]:
    """Fetch fresh metadata into ``consumer``; call it after ``subscribe``, before the first poll.

    kafka-python refreshes metadata before a first join only for pattern subscriptions. A group
    leader that joins before it knows the partitions assigns nobody anything, and the group
    waits for a second rebalance once the metadata arrives (one suite run after repeated
    SIGKILLs sat unassigned for minutes; a test's member once never rebalanced at all). And the
    client's record of the subscribed topics' partitions is built only from a metadata answer
    that arrives after ``subscribe``: without one, a leader's first assignment is made against
    an empty record, it joins a second time, and kafka-python 3.0.12 can drop that join (see
    ``streams.group_join``; 5 of 6 starts against new topics went through it, 0 of 8 with this
    answer in hand). ``topics()`` always asks the cluster.
    """
    consumer.topics()
    return {t: set(consumer.partitions_for_topic(t) or ()) for t in topics}


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


# --- start-up check ------------------------------------------------------------------------

_FIRST_ATTEMPT_S = 3.0
_CHECK_LOCK = threading.Lock()


class BrokerCheckError(ConfigError):
    """``check_connection`` could not use the broker; the message names the setting to look at.

    A ``ConfigError``, so the command line reports it like any other bad setting and exits.
    """


@dataclass(frozen=True, slots=True)
class BrokerCheck:
    """What a successful ``check_connection`` saw, for the start-up log line."""

    bootstrap: str
    security_protocol: str
    cluster_id: str | None
    brokers: int


class _FailureCapture(logging.Filter):
    """Keeps the exceptions kafka-python logs from one client's I/O thread.

    kafka-python retries a refused login or a failed TLS handshake until its bootstrap
    timeout and then raises only "Unable to bootstrap"; the cause is only in its log records.
    As a logger filter it sees records before any handler, and it passes on exactly those the
    logger's configured level would have let through, so the service's log is unchanged.
    """

    def __init__(self, thread_name: str, passes_level: int) -> None:
        super().__init__()
        self.thread_name = thread_name
        self.passes_level = passes_level
        self.causes: list[BaseException] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if record.threadName == self.thread_name and isinstance(record.args, tuple):
            self.causes.extend(arg for arg in record.args if isinstance(arg, BaseException))
        return record.levelno >= self.passes_level


@contextmanager
def _connection_failures(thread_name: str) -> Iterator[list[BaseException]]:
    """The exceptions kafka-python's connection manager reports while the block runs."""
    # The bootstrap loop logs each failed attempt, with its exception, at WARNING here. One
    # check at a time, so two never save and restore each other's temporary level.
    logger = logging.getLogger("kafka.net.manager")
    with _CHECK_LOCK:
        saved_level = logger.level
        capture = _FailureCapture(thread_name, logger.getEffectiveLevel())
        logger.addFilter(capture)
        if logger.getEffectiveLevel() > logging.WARNING:
            logger.setLevel(logging.WARNING)
        try:
            yield capture.causes
        finally:
            logger.setLevel(saved_level)
            logger.removeFilter(capture)


def _scrub(text: str, settings: Settings) -> str:
    """``text`` with every configured secret cut out (a broker message could echo one)."""
    for name in SECRET_FIELDS:
        value = settings.secret(name)
        if value:
            text = text.replace(value, "**********")
    return text


def _answers_with_tls(servers: str, timeout: float = 3.0) -> bool:
    """Whether the first bootstrap server completes a TLS handshake: only to tell a TLS listener
    reached without TLS from other failures, so its certificate is not checked and nothing is sent."""
    host, _, port = servers.split(",")[0].strip().rpartition(":")
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with (
            socket.create_connection((host.strip("[]"), int(port)), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=host.strip("[]") or None),
        ):
            return True
    except (OSError, ValueError):
        return False


def _diagnose(settings: Settings, servers: str, causes: list[BaseException]) -> tuple[str, bool] | None:
    """The setting most likely wrong, from what the connection attempts ran into.

    Returns the message and whether the cause is definite (retrying cannot help), or None when
    nothing telling was seen.
    """
    protocol = settings.kafka_security_protocol
    mechanism, user = settings.kafka_sasl_mechanism, settings.kafka_sasl_username
    login_refused = (
        "BREACHWATCH_KAFKA_SASL_USERNAME / BREACHWATCH_KAFKA_SASL_PASSWORD: the broker at "
        f"{servers} refused the {mechanism} login of user {user!r} "
        "(authentication failed: wrong user name or password)"
    )
    texts = [_scrub(f"{type(cause).__name__}: {cause}", settings) for cause in causes]
    for cause, text in zip(causes, texts, strict=True):
        if isinstance(cause, kafka_errors.SaslAuthenticationFailedError):
            return login_refused, True
        if isinstance(cause, kafka_errors.UnsupportedSaslMechanismError):
            return f"BREACHWATCH_KAFKA_SASL_MECHANISM: the broker at {servers} does not offer {mechanism}", True
        if isinstance(cause, kafka_errors.IllegalSaslStateError):
            return (
                f"BREACHWATCH_KAFKA_SECURITY_PROTOCOL: {protocol} logs in with SASL, but the listener at "
                f"{servers} does not use SASL (use {protocol.removeprefix('SASL_')} there)",
                True,
            )
        if "CERTIFICATE_VERIFY_FAILED" in text or "Hostname mismatch" in text:
            return (
                f"BREACHWATCH_KAFKA_SSL_CAFILE: the certificate of the broker at {servers} is not trusted "
                f"(TLS verification failed: {text})",
                True,
            )
        if "CERTIFICATE_REQUIRED" in text.upper() or "BAD_CERTIFICATE" in text.upper():
            return (
                f"BREACHWATCH_KAFKA_SSL_CERTFILE / BREACHWATCH_KAFKA_SSL_KEYFILE: the broker at {servers} "
                f"wants a client certificate it accepts ({text})",
                True,
            )
        if "Handshake failed" in text:
            return (
                f"BREACHWATCH_KAFKA_SECURITY_PROTOCOL: the TLS handshake with {servers} failed; is it a TLS "
                f"listener? ({text})",
                True,
            )
        if isinstance(cause, kafka_errors.InvalidReceiveError) and protocol in ("PLAINTEXT", "SASL_PLAINTEXT"):
            # A TLS listener answers unencrypted bytes with a TLS alert, which reads as a huge frame.
            return (
                f"BREACHWATCH_KAFKA_SECURITY_PROTOCOL: the broker at {servers} answers with TLS; use "
                f"{'SASL_SSL' if protocol == 'SASL_PLAINTEXT' else 'SSL or SASL_SSL'}",
                True,
            )
    # Timeouts only say an attempt ran out of time; what happened inside it is in the rest.
    telling = [
        text
        for cause, text in zip(causes, texts, strict=True)
        if not isinstance(cause, kafka_errors.KafkaTimeoutError | kafka_errors.RequestTimedOutError)
    ]
    if protocol.startswith("SASL_") and telling and all("socket disconnected" in text for text in telling):
        # Every connection was dropped while being set up (after any TLS handshake succeeded):
        # how a broker ends a refused login. kafka-python drops the broker's error reply when
        # the close arrives in the same read, so this is the usual form a wrong password takes.
        return (
            "BREACHWATCH_KAFKA_SASL_USERNAME / BREACHWATCH_KAFKA_SASL_PASSWORD: the broker at "
            f"{servers} closed every connection during the {mechanism} login of user {user!r}: most "
            f"likely authentication failed (wrong user name or password), or that address is not a "
            f"{protocol} listener",
            True,
        )
    if protocol in ("PLAINTEXT", "SASL_PLAINTEXT") and telling and _answers_with_tls(servers):
        # Some TLS listeners drop unencrypted bytes without an alert (a busy broker often does):
        # a handshake of our own tells them apart from a broker that is down or misbehaving.
        return (
            f"BREACHWATCH_KAFKA_SECURITY_PROTOCOL: the broker at {servers} answers with TLS; use "
            f"{'SASL_SSL' if protocol == 'SASL_PLAINTEXT' else 'SSL or SASL_SSL'}",
            True,
        )
    if texts:
        return (
            f"KAFKA_BOOTSTRAP / BREACHWATCH_KAFKA_SECURITY_PROTOCOL: no usable answer from {servers} with "
            f"security protocol {protocol} ({'; '.join(sorted(set(telling or texts))[:3])})",
            False,
        )
    return None


def check_connection(settings: Settings, bootstrap: str | None = None, timeout: float = 15.0) -> BrokerCheck:
    """Connect with the configured security and read the cluster's description, or fail saying why.

    For ``run`` and ``produce`` to call at start-up: kafka-python would retry a wrong password
    or an untrusted certificate quietly for 30 s and then report only "Unable to bootstrap".
    Here a definite cause (login refused, TLS verification failed, protocol mismatch) ends the
    check after one short attempt; anything else (say, a broker still starting) is retried
    until ``timeout`` seconds. Raises ``BrokerCheckError`` naming the setting to fix; no
    secret is ever part of its message.
    """
    options = client_options(settings, bootstrap)
    servers = str(options["bootstrap_servers"])
    # A client id of its own names kafka-python's I/O thread, so only this check's records count.
    options["client_id"] = f"{CLIENT_ID}-check-{uuid.uuid4().hex[:8]}"
    deadline = time.monotonic() + timeout
    attempt_s = _FIRST_ATTEMPT_S
    with _connection_failures(f"kafka-io-{options['client_id']}") as causes:
        while True:
            budget = max(0.5, min(attempt_s, deadline - time.monotonic()))
            try:
                admin = KafkaAdminClient(
                    **options, bootstrap_timeout_ms=int(budget * 1000), request_timeout_ms=int(budget * 1000)
                )
            except kafka_errors.KafkaError as exc:
                found = _diagnose(settings, servers, causes)
                out_of_time = time.monotonic() + 0.5 >= deadline
                if found is not None and (found[1] or out_of_time):
                    raise BrokerCheckError(found[0]) from None
                if out_of_time:
                    raise BrokerCheckError(
                        f"KAFKA_BOOTSTRAP: no answer from {servers} in {timeout:.0f} s "
                        f"({_scrub(f'{type(exc).__name__}: {exc}', settings)})"
                    ) from None
                causes.clear()
                attempt_s *= 2  # a slow network gets longer attempts, not just more of them
                continue
            break
    try:
        cluster = admin.describe_cluster()
    except kafka_errors.KafkaError as exc:
        # Connected and logged in; a principal without the right to describe the cluster can
        # still read and write its topics, so this is not a failed check.
        log.info("connected to Kafka at %s, but cannot describe the cluster: %s", servers, type(exc).__name__)
        cluster = {}
    finally:
        admin.close()
    return BrokerCheck(
        bootstrap=servers,
        security_protocol=settings.kafka_security_protocol,
        cluster_id=cluster.get("cluster_id"),
        brokers=len(cluster.get("brokers", ())),
    )
