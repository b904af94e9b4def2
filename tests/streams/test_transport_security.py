"""Kafka over TLS and SASL_SSL (SCRAM-SHA-512) on a locked-down local broker whose certificates
are made in the test: the pipeline works over it, a wrong password or certificate fails fast
and says which setting is wrong, and no secret reaches the logs or the metrics of a run."""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import shutil
import ssl
import stat
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from prometheus_client import CollectorRegistry, generate_latest

from breachwatch.core.settings import SECRET_FIELDS, Settings, load_settings
from breachwatch.devkit.local_kafka import BrokerSecurity, LocalKafka, LocalKafkaError, TlsFiles, make_test_certificates
from breachwatch.incidents.store import IncidentStore
from breachwatch.runtime import app
from breachwatch.runtime.metrics import ServiceCollector
from breachwatch.runtime.service import Service
from breachwatch.streams.kafka_client import BrokerCheckError, check_connection, ensure_topics
from breachwatch.streams.produce import produce_dump

# The tests that start the locked-down broker; the certificate and configuration checks above
# them need no broker and run under `-m "not kafka"` too.
kafka = pytest.mark.kafka

USER = "bw-detector"
PASSWORD = "scram-Pw.7f3K9q-only-in-tests"

# A distinctive value for every secret setting, the Kafka password being the real one, so a
# leak anywhere is found by a plain substring search.
SECRETS = {
    "kafka_sasl_password": PASSWORD,
    "sendgrid_api_key": "SG.sendgrid-secret-Qm4T8w",
    "smtp_password": "smtp-secret-Hx2Lp9",
    "slack_webhook_url": "https://hooks.slack.example/services/T0/B0/slack-secret-Zr6Vn1",
    "pagerduty_routing_key": "pagerduty-secret-Jc5Ue3",
    "webhook_secret": "whsec_d2ViaG9vay1zZWNyZXQtQmE3WWs0LWZpY3Rpb25hbC1rZXkh",  # whsec_ and base64 of a fictional key
    "pagerduty_webhook_secret": "pagerduty-webhook-secret-Rt8Mv2",
    "jira_api_token": "jira-token-secret-Qe4Lc9",
    "pseudonym_key": "pseudonym-secret-Wd1Fs8",
    "console_secret_key": "console-secret-Np3Gh6",
    "model_signing_key": "model-signing-secret-Rt8Kq2",
}

TENANTS = [
    {
        "tenant_id": "t-fjord",
        "name": "Fjordline Freight (fictional)",
        "jurisdiction": "SG",
        "contacts": [{"email": "security@fjordline.example", "role": "security"}],
    },
    {
        "tenant_id": "t-oasis",
        "name": "Oasis Dates Trading (fictional)",
        "jurisdiction": "AE",
        "contacts": [{"email": "dpo@oasis-dates.example", "role": "dpo"}],
    },
]


# --- certificates and broker configuration (no broker needed) -------------------------------


def test_test_certificates_name_the_loopback_broker_and_chain_to_their_ca(tmp_path: Path) -> None:
    tls = make_test_certificates(tmp_path / "tls")

    ca = x509.load_pem_x509_certificate(tls.ca_cert.read_bytes())
    broker, chained_ca = x509.load_pem_x509_certificates(tls.broker_keystore.read_bytes())
    client = x509.load_pem_x509_certificate(tls.client_cert.read_bytes())
    sans = broker.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert sans.get_values_for_type(x509.DNSName) == ["localhost"]
    broker.verify_directly_issued_by(ca)
    client.verify_directly_issued_by(ca)
    assert chained_ca == ca
    # Private keys are readable by their owner only.
    for key in (tls.broker_keystore, tls.client_key):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    # Python's TLS stack, which kafka-python uses, accepts them as they are.
    context = ssl.create_default_context(cafile=tls.ca_cert)
    context.load_cert_chain(tls.client_cert, tls.client_key)


def test_locked_down_broker_has_no_plaintext_client_listener(tmp_path: Path) -> None:
    tls = make_test_certificates(tmp_path / "tls")
    broker = LocalKafka(
        tmp_path / "cache",
        work_dir=tmp_path / "broker",
        security=BrokerSecurity(tls=tls, scram_users={USER: PASSWORD}, client_auth=True),
    )
    broker._choose_ports()  # what start() does first; nothing is run here

    props = broker.properties()

    sasl, tls_only = broker.bootstrap_for("SASL_SSL"), broker.bootstrap_for("SSL")
    assert broker.bootstrap == sasl and broker.protocol == "SASL_SSL"
    assert props["listeners"].split(",")[:2] == [f"SASL_SSL://{sasl}", f"SSL://{tls_only}"]
    assert props["listener.security.protocol.map"] == "SASL_SSL:SASL_SSL,SSL:SSL,CONTROLLER:PLAINTEXT"
    assert "PLAINTEXT://" not in props["advertised.listeners"]
    assert props["inter.broker.listener.name"] == "SASL_SSL"
    assert props["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert props["listener.name.ssl.ssl.client.auth"] == "required"
    assert props["ssl.keystore.location"] == str(tls.broker_keystore)
    assert len({sasl, tls_only, props["controller.quorum.bootstrap.servers"]}) == 3
    with pytest.raises(LocalKafkaError, match="no PLAINTEXT listener"):
        broker.bootstrap_for("PLAINTEXT")


@pytest.mark.parametrize(
    ("users", "problem"),
    [
        ({"bw detector": PASSWORD}, "user name"),
        ({USER: "pass,word]=x"}, "password"),
        ({}, "SCRAM user"),
    ],
)
def test_scram_users_the_storage_tool_cannot_parse_are_refused(
    tmp_path: Path, users: dict[str, str], problem: str
) -> None:
    tls = make_test_certificates(tmp_path / "tls")

    with pytest.raises(ValueError, match=problem) as caught:
        BrokerSecurity(tls=tls, scram_users=users)

    assert all(password not in str(caught.value) for password in users.values())


# --- the locked-down broker --------------------------------------------------------------


@dataclass(frozen=True)
class SecuredBroker:
    broker: LocalKafka
    tls: TlsFiles


@pytest.fixture(scope="module")
def secured(base_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredBroker]:
    """One broker for the module: a SASL_SSL listener with a SCRAM user, and an SSL listener
    that demands a client certificate; no PLAINTEXT listener for clients at all."""
    for tool in ("java", "mvn"):
        if shutil.which(tool) is None:
            message = f"`{tool}` is not installed, so the local Kafka broker cannot run"
            (pytest.fail if os.environ.get("CI") else pytest.skip)(message)
    root = tmp_path_factory.mktemp("secured-kafka")
    tls = make_test_certificates(root / "tls")
    security = BrokerSecurity(tls=tls, scram_users={USER: PASSWORD}, client_auth=True)
    broker = LocalKafka(
        base_settings.cache_dir, base_settings.kafka_version, work_dir=root / "broker", security=security
    )
    broker.start()
    try:
        yield SecuredBroker(broker, tls)
    finally:
        broker.stop()


def secure_settings(secured: SecuredBroker, protocol: str, tmp_path: Path, **overrides: Any) -> Settings:
    """Settings reaching the broker's ``protocol`` listener, with fresh topics and database."""
    values: dict[str, Any] = {
        "kafka_bootstrap": secured.broker.bootstrap_for(protocol),
        "kafka_security_protocol": protocol,
        "kafka_ssl_cafile": secured.tls.ca_cert,
        "topic_prefix": f"t{uuid.uuid4().hex[:8]}.",
        "partitions": 2,
        "db_url": f"sqlite:///{tmp_path / 'breachwatch.db'}",
        "outbox_dir": tmp_path / "outbox",
    }
    if protocol == "SASL_SSL":
        values.update(kafka_sasl_mechanism="SCRAM-SHA-512", kafka_sasl_username=USER, kafka_sasl_password=PASSWORD)
    else:
        values.update(kafka_ssl_certfile=secured.tls.client_cert, kafka_ssl_keyfile=secured.tls.client_key)
    values.update(overrides)
    return load_settings(**values)


def access(n: int, actor: str, home: str, tenant: str) -> dict[str, Any]:
    return {
        "event_id": f"tls-{actor}-{n}",
        "ts": f"2026-11-24T11:{n:02d}:00Z",
        "actor_id": actor,
        "actor_type": "customer_user",
        "actor_tenant": home,
        "tenant_id": tenant,
        "action": "read",
        "resource_type": "customer",
        "sensitivity": "personal",
        "records": 25,
        "ip": "203.0.113.41",
        "country": "SG",
    }


def write_dump(folder: Path) -> int:
    """Two tenants; a user reading her own tenant's data, and one reading the other tenant's."""
    folder.mkdir(parents=True, exist_ok=True)
    events = [access(n, "u-ingrid", "t-fjord", "t-fjord") for n in range(1, 4)]
    events += [access(n, "u-mallory", "t-fjord", "t-oasis") for n in range(4, 6)]
    (folder / "erp.tenants.jsonl").write_text("".join(json.dumps(t) + "\n" for t in TENANTS), encoding="utf-8")
    (folder / "erp.access.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
    return len(events)


def run_pipeline(settings: Settings, dump: Path) -> tuple[dict[str, Any], list[Any], Service]:
    """Topics created, the dump produced and consumed to its end, alerts delivered."""
    ensure_topics(settings)
    produce_dump(settings, str(settings.kafka_bootstrap), dump)
    engine = app.database(settings)
    pipeline = app.build_pipeline(settings, engine)
    pump = app.dispatcher(settings, engine)
    service = Service(settings, str(settings.kafka_bootstrap), pipeline, after_batch=pump.tick)
    stats = service.run(until_caught_up=True)
    pump.drain()
    return stats, IncidentStore(engine).incidents(), service


@kafka
@pytest.mark.parametrize("protocol", ["SASL_SSL", "SSL"])
def test_pipeline_runs_over_a_locked_down_broker(secured: SecuredBroker, protocol: str, tmp_path: Path) -> None:
    """SASL_SSL logs in with SCRAM-SHA-512; SSL presents a client certificate. Both verify the
    broker's certificate against the CA made for this test."""
    settings = secure_settings(secured, protocol, tmp_path)
    events = write_dump(tmp_path / "dump")

    check = check_connection(settings)
    stats, incidents, _ = run_pipeline(settings, tmp_path / "dump")

    assert check.security_protocol == protocol and check.brokers == 1
    assert stats["consumed"] == {"erp.access": events}
    assert [(i.kind, i.actor_ids, i.tenant_ids) for i in incidents] == [
        ("cross_tenant_access", ["u-mallory"], ["t-oasis"])
    ]
    assert sorted(settings.outbox_dir.glob("*.eml")), "the on-call alert was delivered"


@kafka
def test_wrong_password_fails_fast_naming_authentication(
    secured: SecuredBroker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "not-the-Pw.4Rt8"
    settings = secure_settings(secured, "SASL_SSL", tmp_path, kafka_sasl_password=wrong)
    caplog.set_level(logging.DEBUG)

    # A definite refusal ends the check after its first short attempt; the timeout only
    # bounds the generic path, whose message would not mention authentication.
    with pytest.raises(BrokerCheckError) as caught:
        check_connection(settings, timeout=30)

    message = str(caught.value)
    assert "BREACHWATCH_KAFKA_SASL_PASSWORD" in message and "authentication failed" in message
    assert USER in message
    assert wrong not in message and wrong not in caplog.text
    assert PASSWORD not in caplog.text


@kafka
def test_broker_certificate_from_another_ca_is_refused(secured: SecuredBroker, tmp_path: Path) -> None:
    stranger = make_test_certificates(tmp_path / "other-ca")
    settings = secure_settings(secured, "SASL_SSL", tmp_path, kafka_ssl_cafile=stranger.ca_cert)

    with pytest.raises(BrokerCheckError, match="BREACHWATCH_KAFKA_SSL_CAFILE") as caught:
        check_connection(settings, timeout=30)

    assert "CERTIFICATE_VERIFY_FAILED" in str(caught.value)
    assert PASSWORD not in str(caught.value)


@kafka
def test_tls_listener_refuses_a_client_without_certificate(secured: SecuredBroker, tmp_path: Path) -> None:
    settings = secure_settings(secured, "SSL", tmp_path, kafka_ssl_certfile=None, kafka_ssl_keyfile=None)

    with pytest.raises(BrokerCheckError, match="BREACHWATCH_KAFKA_SSL_CERTFILE"):
        check_connection(settings, timeout=30)


@kafka
def test_plaintext_client_at_a_tls_listener_is_told_to_use_tls(secured: SecuredBroker, tmp_path: Path) -> None:
    """The usual slip: the address of a TLS listener, the security protocol left at its default."""
    settings = load_settings(kafka_bootstrap=secured.broker.bootstrap_for("SSL"))

    with pytest.raises(BrokerCheckError, match=r"BREACHWATCH_KAFKA_SECURITY_PROTOCOL.*answers with TLS"):
        check_connection(settings, timeout=30)


@kafka
def test_no_secret_in_the_logs_or_metrics_of_a_run(
    secured: SecuredBroker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Every secret set, the pipeline run over SASL_SSL with every logger (kafka-python's too)
    at DEBUG: no secret in the log records, the metrics page, the alert mails or the database."""
    # Jira's token is accepted only with the rest of the Jira settings.
    jira = {"jira_url": "https://jira.example", "jira_email": "oncall@unisen.example", "jira_project": "SEC"}
    settings = secure_settings(secured, "SASL_SSL", tmp_path, **SECRETS, **jira)
    assert set(SECRETS) == set(SECRET_FIELDS)
    events = write_dump(tmp_path / "dump")
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="kafka")

    check_connection(settings)
    stats, incidents, service = run_pipeline(settings, tmp_path / "dump")
    registry = CollectorRegistry()
    registry.register(ServiceCollector(service))
    metrics = generate_latest(registry).decode()

    assert stats["consumed"] == {"erp.access": events} and incidents
    assert f'breachwatch_events_consumed_total{{topic="erp.access"}} {float(events)}' in metrics
    # The SASL password was in use, so kafka-python logged its admin configuration at DEBUG.
    assert "sasl_plain_password" in caplog.text
    written = [p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and p.suffix in (".eml", ".db")]
    assert written, "the run wrote its database and alert mails"
    for name, secret in SECRETS.items():
        assert secret not in caplog.text, f"{name} appears in the log"
        assert secret not in metrics, f"{name} appears in the metrics"
        assert not any(secret.encode() in blob for blob in written), f"{name} was written to disk"
