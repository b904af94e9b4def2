"""Client options built from the settings: security, API-version pin, topic layout."""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
import time
from pathlib import Path

import pytest

from breachwatch.core.events import ACCESS, ALL_TOPICS, STAFF, TENANTS
from breachwatch.core.settings import ConfigError, Settings, load_settings
from breachwatch.devkit.local_kafka import make_test_certificates
from breachwatch.streams.kafka_client import (
    SLOW_NETWORK_STEP_S,
    _answers_with_tls,
    client_options,
    dlq_topic,
    parse_api_version,
    topic_specs,
)

SASL_PASSWORD = "s3cret-sasl-value-xyz"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # Settings read the environment; a developer's own KAFKA_* variables must not leak in.
    for name in ("KAFKA_BOOTSTRAP", "BREACHWATCH_KAFKA_BOOTSTRAP", "BREACHWATCH_KAFKA_API_VERSION"):
        monkeypatch.delenv(name, raising=False)


def test_plaintext_options() -> None:
    options = client_options(load_settings(kafka_bootstrap="broker-1.example:9092,broker-2.example:9092"))

    options.pop("kafka_client")  # see the next test
    assert options == {
        "bootstrap_servers": "broker-1.example:9092,broker-2.example:9092",
        "security_protocol": "PLAINTEXT",
        "client_id": "breachwatch",
    }


def test_sasl_ssl_options_carry_credentials_and_files(tmp_path: Path) -> None:
    settings = load_settings(
        kafka_bootstrap="kafka.unisen.example:9094",
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="breachwatch",
        kafka_sasl_password=SASL_PASSWORD,
        kafka_ssl_cafile=tmp_path / "ca.pem",
        kafka_api_version="4.0",
    )

    options = client_options(settings)

    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_username"] == "breachwatch"
    assert options["sasl_plain_password"] == SASL_PASSWORD
    assert options["ssl_cafile"] == str(tmp_path / "ca.pem")
    assert "ssl_keyfile" not in options
    assert options["api_version"] == (4, 0)


def test_a_busy_process_does_not_warn_of_a_blocked_network_loop(caplog: pytest.LogCaptureFixture) -> None:
    """kafka-python's network loop shares the interpreter with detection: while a batch is
    judged, one of its steps can take half a second. That must not log a warning (operators
    saw one every few seconds under load); a loop stuck for seconds still does."""
    options = client_options(load_settings(kafka_bootstrap="127.0.0.1:9"))
    client = options.pop("kafka_client")(**options)  # as kafka-python's clients build it
    try:
        with caplog.at_level(logging.WARNING, logger="kafka.net.selector"):
            client._net.run(lambda: time.sleep(0.5))
            assert caplog.records == []
            client._net.run(lambda: time.sleep(SLOW_NETWORK_STEP_S + 0.2))
        assert "blocking the event loop" in caplog.text
    finally:
        client.close()


def test_bootstrap_argument_overrides_settings() -> None:
    options = client_options(load_settings(kafka_bootstrap="far.example:9092"), "127.0.0.1:39092")
    assert options["bootstrap_servers"] == "127.0.0.1:39092"


@pytest.mark.parametrize(
    ("overrides", "variable"),
    [
        ({}, "KAFKA_BOOTSTRAP"),
        ({"kafka_bootstrap": "k.example:9092", "kafka_security_protocol": "SASL_SSL"}, "SASL_MECHANISM"),
        (
            {
                "kafka_bootstrap": "k.example:9092",
                "kafka_security_protocol": "SASL_PLAINTEXT",
                "kafka_sasl_mechanism": "PLAIN",
                "kafka_sasl_password": SASL_PASSWORD,
            },
            "SASL_USERNAME",
        ),
        ({"kafka_bootstrap": "k.example:9092", "kafka_sasl_mechanism": "PLAIN"}, "SASL_MECHANISM"),
        ({"kafka_bootstrap": "k.example:9092", "kafka_api_version": "four"}, "KAFKA_API_VERSION"),
    ],
)
def test_misconfiguration_names_the_variable_not_the_secret(overrides: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError, match=variable) as caught:
        client_options(load_settings(**overrides))
    assert SASL_PASSWORD not in str(caught.value)


@pytest.mark.parametrize(("text", "expected"), [("4.0", (4, 0)), ("3.9.1", (3, 9, 1)), (" 4.1 ", (4, 1))])
def test_parse_api_version(text: str, expected: tuple[int, ...]) -> None:
    assert parse_api_version(text) == expected


def test_topic_specs_cover_every_topic_its_dead_letters_and_the_findings_topic() -> None:
    specs = topic_specs(load_settings(topic_prefix="prod.", partitions=6))

    assert len(specs) == 2 * len(ALL_TOPICS) + 1  # and the OCSF findings topic BreachWatch writes
    assert "configs" not in specs["prod.breachwatch.findings.ocsf"]  # delete policy: its evidence ages out
    assert len(topic_specs(load_settings(ocsf_topic=""))) == 2 * len(ALL_TOPICS)
    assert specs["prod.erp.tenants"]["configs"] == {"cleanup.policy": "compact"}
    assert specs["prod.erp.staff"]["num_partitions"] == 6
    assert "configs" not in specs["prod.erp.access"]
    assert "configs" not in specs[dlq_topic("prod.erp.tenants")]
    assert dlq_topic(Settings(topic_prefix="prod.").topic(ACCESS)) == "prod.erp.access.dlq"
    assert {TENANTS, STAFF} <= {name.removeprefix("prod.") for name in specs}


def _serve_once(sock: socket.socket, tls: ssl.SSLContext | None) -> None:
    conn, _ = sock.accept()
    with contextlib.suppress(OSError):
        if tls is not None:
            conn = tls.wrap_socket(conn, server_side=True)
            conn.recv(1)
    conn.close()


@pytest.mark.parametrize("speaks_tls", [True, False])
def test_a_tls_listener_is_told_from_one_that_just_hangs_up(tmp_path: Path, speaks_tls: bool) -> None:
    """A TLS listener that drops unencrypted bytes without an alert looks like a dead broker to
    the Kafka client; a handshake of our own tells the two apart."""
    tls = None
    if speaks_tls:
        files = make_test_certificates(tmp_path)
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(files.broker_keystore)
    with socket.create_server(("127.0.0.1", 0)) as server:
        worker = threading.Thread(target=_serve_once, args=(server, tls), daemon=True)
        worker.start()
        assert _answers_with_tls(f"127.0.0.1:{server.getsockname()[1]}") is speaks_tls
        worker.join(5)
