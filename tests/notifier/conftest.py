"""Fixtures for the notifier tests: a fresh SQLite store, a settable clock, and real local
SendGrid and SMTP servers on 127.0.0.1."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import socket
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy.engine import Engine

from incidents.db import EvidenceRow, FindingRow, IncidentRow, init_db, make_engine
from notifier.message import OutboxMessage
from notifier.testing_servers import SendGridServer
from streams.models import ACCESS, AUTH, MODEL_BY_TOPIC, Tenant

SENDGRID_KEY = "SG.fictional-test-key.Zq9vK2mP7xR4tL8nW3yB6cD1fH5jS0aE"
SMTP_USER = "relay-user"
SMTP_PASSWORD = "Sm7p-fictional-pa55word-4e9c1b"
T0 = dt.datetime(2026, 11, 24, 3, 0, tzinfo=dt.UTC)


class Clock:
    """A clock the test moves by hand, so backoff and leases are checked without waiting."""

    def __init__(self, now: dt.datetime = T0) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = make_engine(f"sqlite:///{tmp_path / 'notifier.db'}")
    init_db(eng)
    yield eng
    eng.dispose()


def make_message(message_id: str = "msg-0001", **overrides: Any) -> OutboxMessage:
    fields: dict[str, Any] = {
        "message_id": message_id,
        "channel": "email",
        "recipient": "oncall@unisen.example",
        "subject": "[BreachWatch] HIGH bulk_export",
        "body_text": "An export of 48211 customer records.\n",
        "body_html": "<p>An export of <b>48211</b> customer records.</p>",
        "message_type": "oncall_alert",
        "incident_id": "inc-1",
    }
    fields.update(overrides)
    return OutboxMessage(**fields)


@pytest.fixture
def new_message() -> Callable[..., OutboxMessage]:
    """Builds an outbox message; keyword arguments override the defaults."""
    return make_message


@pytest.fixture
def sendgrid_key() -> str:
    return SENDGRID_KEY


@pytest.fixture
def smtp_credentials() -> tuple[str, str]:
    return SMTP_USER, SMTP_PASSWORD


@pytest.fixture
def sendgrid_server() -> Iterator[SendGridServer]:
    with SendGridServer(api_key=SENDGRID_KEY) as server:
        yield server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class SmtpSink:
    """What the local SMTP server received, and replies it is told to give."""

    messages: list[Any] = field(default_factory=list)  # aiosmtpd envelopes
    rcpt_replies: list[str] = field(default_factory=list)  # next RCPT answers, e.g. "451 ..."
    logins: list[str] = field(default_factory=list)
    host: str = "127.0.0.1"
    port: int = 0

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if self.rcpt_replies:
            return self.rcpt_replies.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope)
        return "250 Message accepted for delivery"

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        if isinstance(auth_data, LoginPassword):
            self.logins.append(auth_data.login.decode())
            ok = auth_data.login == SMTP_USER.encode() and auth_data.password == SMTP_PASSWORD.encode()
            return AuthResult(success=ok, handled=False)
        return AuthResult(success=False, handled=False)


def _start_smtp(sink: SmtpSink, **kwargs: Any) -> Controller:
    sink.port = free_port()
    controller = Controller(sink, hostname=sink.host, port=sink.port, authenticator=sink.authenticate, **kwargs)
    controller.start()
    return controller


@pytest.fixture
def smtp_server() -> Iterator[SmtpSink]:
    """Plain SMTP with optional AUTH (allowed without TLS, as on a loopback relay)."""
    sink = SmtpSink()
    controller = _start_smtp(sink, auth_require_tls=False)
    yield sink
    controller.stop()


@dataclass
class TlsFiles:
    cert: Path
    key: Path

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert))

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(self.cert), str(self.key))
        return ctx


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A self-signed certificate for 127.0.0.1, made fresh for the test session."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "smtp.unisen.example")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    files = TlsFiles(folder / "cert.pem", folder / "key.pem")
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return files


@pytest.fixture
def smtp_tls_server(tls_files: TlsFiles) -> Iterator[SmtpSink]:
    """SMTP that requires STARTTLS before anything else, and AUTH only over TLS."""
    sink = SmtpSink()
    controller = _start_smtp(sink, tls_context=tls_files.server_context(), require_starttls=True)
    yield sink
    controller.stop()


def _evidence(incident_id: str, finding_id: str, topic: str, event: dict[str, Any]) -> EvidenceRow:
    model = MODEL_BY_TOPIC[topic]
    parsed = model.model_validate_json(json.dumps(event))
    return EvidenceRow(
        incident_id=incident_id,
        event_id=event["event_id"],
        finding_id=finding_id,
        topic=topic,
        ts=parsed.ts,
        event_json=parsed.model_dump_json(exclude_none=True),
    )


def build_incident(
    *, title: str = "Bulk export of customer records by u-hans", actor: str = "u-hans", **overrides: Any
) -> tuple[IncidentRow, list[FindingRow], list[EvidenceRow]]:
    """An incident as the store opens it: a bulk export after a password-guessing login."""
    incident_id = overrides.pop("incident_id", "inc-7f3a9c21e4b05d18")
    finding_id = "f-0001"
    fields: dict[str, Any] = {
        "incident_id": incident_id,
        "kind": "bulk_export",
        "title": title,
        "severity": "high",
        "score": 87.4,
        "status": "open",
        "opened_at": dt.datetime(2026, 11, 24, 2, 39, 55, tzinfo=dt.UTC),
        "updated_at": dt.datetime(2026, 11, 24, 2, 41, 19, tzinfo=dt.UTC),
        "actor_ids": [actor],
        "tenant_ids": ["t-rhein"],
        "source_ips": ["185.220.101.5"],
        "detectors": ["rules.bulk_export"],
        "reasons": ["exported 48211 personal records in one request (baseline 40)", "login from NL, usually DE"],
        "evidence_count": 3,
        "group_key": f"actor:{actor}",
        "facts": {},
    }
    fields.update(overrides)
    incident = IncidentRow(**fields)
    finding = FindingRow(
        finding_id=finding_id,
        incident_id=incident_id,
        detector="rules.bulk_export",
        kind="bulk_export",
        severity="high",
        score=87.4,
        ts=fields["opened_at"],
        title=title,
        reasons=list(fields["reasons"]),
        playbook="Suspend the session, confirm with the tenant owner whether the export was intended.",
        actor_id=actor,
        facts={},
    )
    base = {"actor_id": actor, "actor_type": "customer_user", "actor_tenant": "t-rhein", "ip": "185.220.101.5"}
    evidence = [
        _evidence(
            incident_id,
            finding_id,
            AUTH,
            {
                **base,
                "event_id": "l-0002",
                "ts": "2026-11-24T02:39:55Z",
                "action": "login",
                "outcome": "failure",
                "country": "NL",
            },
        ),
        _evidence(
            incident_id,
            finding_id,
            AUTH,
            {
                **base,
                "event_id": "l-0003",
                "ts": "2026-11-24T02:40:31Z",
                "action": "login",
                "outcome": "success",
                "country": "NL",
            },
        ),
        _evidence(
            incident_id,
            finding_id,
            ACCESS,
            {
                **base,
                "event_id": "a-0003",
                "ts": "2026-11-24T02:41:19Z",
                "tenant_id": "t-rhein",
                "action": "export",
                "resource_type": "customer",
                "sensitivity": "personal",
                "records": 48211,
                "bytes": 9123344,
                "country": "NL",
            },
        ),
    ]
    return incident, [finding], evidence


@pytest.fixture
def incident_factory() -> Callable[..., tuple[IncidentRow, list[FindingRow], list[EvidenceRow]]]:
    return build_incident


@pytest.fixture
def rhein_tenant() -> Tenant:
    return Tenant.model_validate_json(
        json.dumps(
            {
                "tenant_id": "t-rhein",
                "name": "Rhein Logistik GmbH",
                "jurisdiction": "DE",
                "locale": "de",
                "contacts": [{"name": "Hans Weber", "email": "hans.weber@rhein-logistik.example", "role": "owner"}],
            }
        )
    )
