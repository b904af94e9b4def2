"""A real single-node Apache Kafka 4.x broker (KRaft) on 127.0.0.1, run from Maven Central jars.

This is the broker the tests, the benchmarks, the demo and ``breachwatch run --embedded-broker``
use (the service itself never starts one: it needs ``KAFKA_BOOTSTRAP``).
``fetch`` resolves the broker's runtime classpath once into a cache; ``start``
formats a data directory (first time only) and runs ``kafka.Kafka`` until ``stop``. Stopping
and starting again keeps the port and the data, which is what broker-restart tests need.

With a ``BrokerSecurity`` the client listeners are TLS (``SSL``) and/or ``SASL_SSL`` with
SCRAM-SHA-512 users instead of PLAINTEXT; ``make_test_certificates`` writes the throwaway CA and
certificates such a broker needs. The controller listener stays PLAINTEXT on the loopback address.

Command line (CI pre-fetches the jars with the first)::

    breachwatch broker fetch [--kafka-version 4.1.1] [--cache-dir DIR]
    breachwatch broker run   [--kafka-version 4.1.1] [--cache-dir DIR] [--port N] [--work-dir DIR]
                             [--secure DIR]

``run --secure DIR`` writes a CA, certificates and a SCRAM user's password into DIR and starts
a broker with SASL_SSL and SSL listeners, printing the BREACHWATCH_* settings that reach it.

The defaults come from the settings (BREACHWATCH_KAFKA_VERSION, BREACHWATCH_CACHE_DIR).
"""

from __future__ import annotations

import atexit
import base64
import fcntl
import hashlib
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from ipaddress import ip_address
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

from breachwatch.core.settings import Settings

log = logging.getLogger(__name__)

POM = Path(__file__).with_name("broker") / "pom.xml"
HOST = "127.0.0.1"
_VERSION_RE = re.compile(r"^\d+\.\d+\.\d+$")
_HEAP_RE = re.compile(r"^\d+[kKmMgG]?$")
_COMPLETE = ".complete"
_LOG_TAIL_LINES = 40
# What kafka.Kafka logs when startup fails; the JVM may take seconds more to actually exit.
_FATAL_STARTUP = b"Exiting Kafka due to fatal exception"

# Broker settings for a one-node test cluster: every internal topic with one replica, no
# rebalance delay (a new group starts consuming at once), and no auto-created topics, so a
# typo in a topic name fails loudly instead of silently creating an empty topic.
_TEST_PROPERTIES: dict[str, str] = {
    "num.partitions": "1",
    "auto.create.topics.enable": "false",
    "offsets.topic.replication.factor": "1",
    "offsets.topic.num.partitions": "4",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "transaction.state.log.num.partitions": "4",
    "share.coordinator.state.topic.replication.factor": "1",
    "share.coordinator.state.topic.min.isr": "1",
    "group.initial.rebalance.delay.ms": "0",
    # The log cleaner preallocates this buffer; Kafka's 128 MiB default is sized for
    # production and only inflates a test broker's memory.
    "log.cleaner.dedupe.buffer.size": str(16 * 1024 * 1024),
}

_LOG4J2 = """\
status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = out
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.state.name = state.change.logger
logger.state.level = WARN
"""


class LocalKafkaError(RuntimeError):
    """The local broker could not be fetched or started; the message says why."""


class _FatalStartup(LocalKafkaError):
    """The broker logged that it is exiting because startup failed."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _free_ports(count: int) -> list[int]:
    # All sockets are held open together so the kernel cannot hand out the same port twice.
    with ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind((HOST, 0))
        return [int(sock.getsockname()[1]) for sock in sockets]


def _cluster_id() -> str:
    """A random cluster id in Kafka's Uuid text form (URL-safe base64, no padding)."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")
        if not text.startswith("-"):  # Kafka avoids these too: they read as a CLI flag
            return text


def _tail(text: str, lines: int = _LOG_TAIL_LINES) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def _require(tool: str, purpose: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise LocalKafkaError(
            f"`{tool}` is not on PATH; it is needed to {purpose}. Install it "
            "(Debian: apt-get install openjdk-17-jre-headless maven) or set KAFKA_BOOTSTRAP "
            "to use an existing broker."
        )
    return path


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock, so two processes never fetch into the same cache at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --- TLS and SCRAM ------------------------------------------------------------------------

SCRAM_MECHANISM = "SCRAM-SHA-512"
SECURE_PROTOCOLS = ("SASL_SSL", "SSL")
# StorageTool parses `--add-scram 'SCRAM-SHA-512=[name=...,password=...]'` itself: a ',', ']',
# '=' or quote inside a name or password would cut the entry short, and the same text goes
# into a JAAS line, so only characters that are safe in both are accepted.
_SCRAM_TEXT_RE = re.compile(r"^[A-Za-z0-9._@+-]{1,128}$")
_BROKER_USER = "breachwatch-broker"
_BROKER_SECRET = "broker-scram.secret"


@dataclass(frozen=True)
class TlsFiles:
    """PEM files of a throwaway certificate authority and the certificates it signed.

    ``broker_keystore`` holds the broker's private key followed by its certificate chain, the
    layout Kafka's ``ssl.keystore.type=PEM`` reads from ``ssl.keystore.location``.
    """

    ca_cert: Path
    broker_keystore: Path
    client_cert: Path
    client_key: Path


def _pem_key(key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    # Unencrypted PKCS#8 is the one private-key form both Kafka's PEM keystore (with no
    # ssl.key.password) and Python's ssl module read.
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write_private(path: Path, data: bytes) -> None:
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def make_test_certificates(
    directory: Path, hosts: Sequence[str] = (HOST, "localhost"), valid_days: int = 7
) -> TlsFiles:
    """Write a new CA, a broker certificate for ``hosts`` and a client certificate into ``directory``.

    For test and local brokers only: the CA's key is discarded once it has signed, so nothing
    else can ever be issued under it. Hosts that parse as IP addresses become IP SANs (what
    hostname checks against ``127.0.0.1`` need), the rest DNS SANs.
    """
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    except ImportError:  # pragma: no cover - a dependency of sendgrid, so normally present
        raise LocalKafkaError("the `cryptography` package is needed to generate test certificates") from None
    if not hosts:
        raise ValueError("a broker certificate needs at least one host name or address")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC) - timedelta(minutes=5)  # tolerate a little clock skew
    until = now + timedelta(days=valid_days)

    def name(common_name: str) -> x509.Name:
        return x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "BreachWatch test CA (throwaway)"),
                x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            ]
        )

    # P-256 keys: generated in microseconds where RSA takes a noticeable share of a test's
    # time, and accepted by Java's TLS stack and Python's ssl module alike.
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = name("breachwatch-test-ca")
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    def issue(common_name: str, usages: list[x509.ObjectIdentifier], sans: list[x509.GeneralName]) -> tuple[Any, Any]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(common_name))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(until)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return key, builder.sign(ca_key, hashes.SHA256())

    sans: list[x509.GeneralName] = []
    for host in hosts:
        try:
            sans.append(x509.IPAddress(ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    # The broker's certificate also serves as its client identity towards itself on the
    # inter-broker listener, hence clientAuth beside serverAuth.
    broker_key, broker_cert = issue(
        "breachwatch-test-broker", [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH], sans
    )
    client_key, client_cert = issue("breachwatch-test-client", [ExtendedKeyUsageOID.CLIENT_AUTH], [])

    pem = serialization.Encoding.PEM
    files = TlsFiles(
        ca_cert=directory / "ca.pem",
        broker_keystore=directory / "broker-keystore.pem",
        client_cert=directory / "client.pem",
        client_key=directory / "client-key.pem",
    )
    files.ca_cert.write_bytes(ca_cert.public_bytes(pem))
    _write_private(
        files.broker_keystore, _pem_key(broker_key) + broker_cert.public_bytes(pem) + ca_cert.public_bytes(pem)
    )
    files.client_cert.write_bytes(client_cert.public_bytes(pem))
    _write_private(files.client_key, _pem_key(client_key))
    return files


@dataclass(frozen=True)
class BrokerSecurity:
    """How a local broker's client listeners are locked down.

    Each protocol in ``protocols`` (``SASL_SSL`` and/or ``SSL``) gets a listener of its own and
    the PLAINTEXT client listener is dropped; the first is the broker's main address and its
    inter-broker listener. ``scram_users`` (name -> password) are SCRAM-SHA-512 credentials
    written when the storage is formatted, so they exist before the broker first serves.
    ``client_auth`` makes the ``SSL`` listener demand a client certificate (mutual TLS).
    """

    tls: TlsFiles
    scram_users: Mapping[str, str] = field(default_factory=dict, repr=False)
    protocols: tuple[str, ...] = SECURE_PROTOCOLS
    client_auth: bool = False

    def __post_init__(self) -> None:
        if not self.protocols or len(set(self.protocols)) != len(self.protocols):
            raise ValueError("protocols must name SASL_SSL and/or SSL, each once")
        unknown = set(self.protocols) - set(SECURE_PROTOCOLS)
        if unknown:
            raise ValueError(f"unsupported listener protocol(s) {sorted(unknown)}; use SASL_SSL and/or SSL")
        if "SASL_SSL" in self.protocols and not self.scram_users:
            raise ValueError("a SASL_SSL listener needs at least one SCRAM user to be of any use")
        for user, password in self.scram_users.items():
            if not _SCRAM_TEXT_RE.match(user) or user == _BROKER_USER:
                raise ValueError(f"SCRAM user name {user!r:.40} must be 1-128 of A-Z a-z 0-9 . _ @ + - (not reserved)")
            if not _SCRAM_TEXT_RE.match(password):
                # The password itself is never echoed, not even here.
                raise ValueError(f"the password of SCRAM user {user!r} must be 1-128 of A-Z a-z 0-9 . _ @ + -")


class LocalKafka:
    """One Kafka broker + controller process on 127.0.0.1 with its own data directory.

    ``port`` and the controller port are chosen once (free ports, unless ``port`` is given) and
    kept for the life of this object, so ``stop()`` then ``start()`` brings the same broker
    back at the same address with its data. With ``security`` the client listeners are the
    TLS / SASL_SSL ones it names (``port`` is then the first one's) instead of PLAINTEXT.
    """

    def __init__(
        self,
        cache_dir: Path,
        version: str = "4.1.1",
        work_dir: Path | None = None,
        port: int | None = None,
        heap: str = "512m",
        extra_properties: dict[str, str] | None = None,
        security: BrokerSecurity | None = None,
    ) -> None:
        if not _VERSION_RE.match(version):
            raise ValueError(f"Kafka version must look like 4.1.1, got {version!r}")
        if not _HEAP_RE.match(heap):
            raise ValueError(f"heap must be a JVM size such as 512m, got {heap!r}")
        for key, value in (extra_properties or {}).items():
            if any(c in f"{key}{value}" for c in "\r\n") or "=" in key:
                raise ValueError(f"broker property {key!r} must be one line with no '=' in its name")
        self.cache_dir = Path(cache_dir)
        self.version = version
        self.heap = heap
        self.extra_properties = dict(extra_properties or {})
        self.security = security
        self._work_dir = Path(work_dir) if work_dir is not None else None
        self._owns_work_dir = work_dir is None
        self._port = port
        self._port_given = port is not None
        self._controller_port: int | None = None
        self._secure_ports: dict[str, int] = {}  # protocol -> port, with ``security`` only
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_handle: IO[bytes] | None = None
        self._atexit_registered = False
        self._archive_dump: tuple[Path, Path] | None = None  # (being written, final name)
        self._served = False  # the running process became ready
        self._ever_served = False  # some process of this broker did: its address is known

    # --- jars ------------------------------------------------------------------------------

    @property
    def home(self) -> Path:
        """The cache folder of this Kafka version (``libs/`` holds the classpath)."""
        return self.cache_dir / f"kafka-{self.version}"

    def fetch(self) -> Path:
        """Resolve the broker's jars into ``<cache>/kafka-<version>/libs`` once; return that folder.

        Idempotent (a marker is written when the copy is complete) and safe when several
        processes race: they serialise on a file lock and later ones find the marker.
        """
        libs = self.home / "libs"
        marker = self.home / _COMPLETE
        if marker.exists():
            return libs
        mvn = _require("mvn", "fetch the Kafka broker's jars from Maven Central")
        _require("java", "run Maven and the Kafka broker")
        with _file_lock(self.cache_dir / f"kafka-{self.version}.lock"):
            if marker.exists():  # another process finished while this one waited
                return libs
            self.home.mkdir(parents=True, exist_ok=True)
            pom = self.home / "pom.xml"
            shutil.copyfile(POM, pom)
            partial = self.home / "libs.partial"
            shutil.rmtree(partial, ignore_errors=True)
            command = [
                mvn,
                "-B",
                "-q",
                "-Dstyle.color=never",
                "-f",
                str(pom),
                f"-Dkafka.version={self.version}",
                "dependency:copy-dependencies",
                "-DincludeScope=runtime",
                f"-DoutputDirectory={partial}",
            ]
            log.info("fetching Kafka %s jars into %s", self.version, libs)
            started = time.monotonic()
            try:
                done = subprocess.run(command, cwd=self.home, capture_output=True, text=True, timeout=900, check=False)
            except subprocess.TimeoutExpired:
                raise LocalKafkaError(f"mvn did not finish fetching Kafka {self.version} in 900 s") from None
            if done.returncode != 0:
                raise LocalKafkaError(
                    f"mvn could not fetch Kafka {self.version} (exit {done.returncode}):\n"
                    + _tail(done.stdout + done.stderr)
                )
            if not (partial / f"kafka_2.13-{self.version}.jar").exists():
                raise LocalKafkaError(f"mvn finished but kafka_2.13-{self.version}.jar is not in {partial}")
            # Move into place only when complete, so a killed fetch never leaves a half classpath.
            shutil.rmtree(libs, ignore_errors=True)
            partial.rename(libs)
            for archive in self.home.glob("classes-*.jsa"):
                archive.unlink()  # made for the classpath just replaced
            marker.write_text(f"fetched in {time.monotonic() - started:.1f} s\n", encoding="utf-8")
            log.info("fetched Kafka %s in %.1f s", self.version, time.monotonic() - started)
        return libs

    # --- process ---------------------------------------------------------------------------

    @property
    def work_dir(self) -> Path:
        """Where the broker keeps its config, data (``data/``) and log (``broker.log``)."""
        if self._work_dir is None:
            self._work_dir = Path(tempfile.mkdtemp(prefix="breachwatch-kafka-"))
        return self._work_dir

    @property
    def log_path(self) -> Path:
        return self.work_dir / "broker.log"

    @property
    def port(self) -> int | None:
        return self._port

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.running and self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def bootstrap(self) -> str:
        """``127.0.0.1:<port>``; the address stays the same across stop/start."""
        if self._port is None:
            raise LocalKafkaError("the local broker has not been started, so it has no address yet")
        return f"{HOST}:{self._port}"

    @property
    def protocol(self) -> str:
        """The security protocol of ``bootstrap``: PLAINTEXT, or the first of ``security.protocols``."""
        return self.security.protocols[0] if self.security is not None else "PLAINTEXT"

    def bootstrap_for(self, protocol: str) -> str:
        """``127.0.0.1:<port>`` of the listener speaking ``protocol`` (PLAINTEXT, SSL or SASL_SSL)."""
        if self._port is None:
            raise LocalKafkaError("the local broker has not been started, so it has no address yet")
        if protocol == self.protocol:
            return self.bootstrap
        if protocol not in self._secure_ports:
            raise LocalKafkaError(
                f"this broker has no {protocol} listener (it has {', '.join(self.listener_protocols)})"
            )
        return f"{HOST}:{self._secure_ports[protocol]}"

    @property
    def listener_protocols(self) -> tuple[str, ...]:
        """The security protocols clients can connect with, the main one first."""
        return self.security.protocols if self.security is not None else ("PLAINTEXT",)

    def properties(self) -> dict[str, str]:
        """The broker's ``server.properties`` (ports must have been chosen)."""
        assert self._port is not None and self._controller_port is not None
        if self.security is not None:
            return self._secure_properties(self.security)
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "listeners": f"PLAINTEXT://{HOST}:{self._port},CONTROLLER://{HOST}:{self._controller_port}",
            "advertised.listeners": f"PLAINTEXT://{HOST}:{self._port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "controller.quorum.bootstrap.servers": f"{HOST}:{self._controller_port}",
            "log.dirs": str(self.work_dir / "data"),
            **_TEST_PROPERTIES,
        }
        props.update(self.extra_properties)
        return props

    def _secure_properties(self, security: BrokerSecurity) -> dict[str, str]:
        """``server.properties`` with TLS / SASL_SSL client listeners and a PLAINTEXT controller."""
        assert self._controller_port is not None
        client = [f"{protocol}://{HOST}:{self._secure_ports[protocol]}" for protocol in security.protocols]
        controller = f"CONTROLLER://{HOST}:{self._controller_port}"
        inter_broker = security.protocols[0]
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "listeners": ",".join([*client, controller]),
            "advertised.listeners": ",".join(client),
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": inter_broker,
            "listener.security.protocol.map": ",".join(
                [*(f"{protocol}:{protocol}" for protocol in security.protocols), "CONTROLLER:PLAINTEXT"]
            ),
            "controller.quorum.bootstrap.servers": f"{HOST}:{self._controller_port}",
            "log.dirs": str(self.work_dir / "data"),
            # PEM files directly: no keytool step, and the same files the Python client reads.
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(security.tls.broker_keystore),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(security.tls.ca_cert),
            **_TEST_PROPERTIES,
        }
        if security.client_auth and "SSL" in security.protocols:
            props["listener.name.ssl.ssl.client.auth"] = "required"
        if "SASL_SSL" in security.protocols:
            props["sasl.enabled.mechanisms"] = SCRAM_MECHANISM
            if inter_broker == "SASL_SSL":
                props["sasl.mechanism.inter.broker.protocol"] = SCRAM_MECHANISM
                password = self._broker_password()
                props[f"listener.name.sasl_ssl.{SCRAM_MECHANISM.lower()}.sasl.jaas.config"] = (
                    "org.apache.kafka.common.security.scram.ScramLoginModule required "
                    f'username="{_BROKER_USER}" password="{password}";'
                )
        props.update(self.extra_properties)
        return props

    def _broker_password(self) -> str:
        """The broker's own SCRAM password, kept beside its data so a restart finds it again."""
        path = self.work_dir / _BROKER_SECRET
        if not path.exists():
            self.work_dir.mkdir(parents=True, exist_ok=True)
            _write_private(path, secrets.token_urlsafe(24).encode("ascii"))
        return path.read_text(encoding="ascii").strip()

    def _probe_options(self) -> dict[str, Any]:
        """kafka-python options with which the readiness probe connects to ``bootstrap``."""
        if self.security is None:
            return {}
        options: dict[str, Any] = {
            "security_protocol": self.protocol,
            "ssl_cafile": str(self.security.tls.ca_cert),
        }
        if self.protocol == "SSL" and self.security.client_auth:
            options["ssl_certfile"] = str(self.security.tls.client_cert)
            options["ssl_keyfile"] = str(self.security.tls.client_key)
        if self.protocol == "SASL_SSL":
            from breachwatch.streams.kafka_client import RedactedStr

            options["sasl_mechanism"] = SCRAM_MECHANISM
            options["sasl_plain_username"] = _BROKER_USER
            options["sasl_plain_password"] = RedactedStr(self._broker_password())
        return options

    def _choose_ports(self) -> None:
        if self._controller_port is not None:
            return
        if self.security is not None:
            # One port per listener plus the controller's; a given port is never handed out twice.
            spare = [p for p in _free_ports(len(self.security.protocols) + 1) if p != self._port]
            if self._port is None:
                self._port = spare.pop(0)
            self._controller_port = spare.pop(0)
            self._secure_ports = {self.protocol: self._port}
            self._secure_ports.update(zip(self.security.protocols[1:], spare, strict=False))
            return
        if self._port is None:
            self._port, self._controller_port = _free_ports(2)
        else:
            self._controller_port = free_port()
            while self._controller_port == self._port:
                self._controller_port = free_port()

    def _write_config(self) -> tuple[Path, Path]:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        server = self.work_dir / "server.properties"
        server.write_text("".join(f"{k}={v}\n" for k, v in self.properties().items()), encoding="utf-8")
        log4j = self.work_dir / "log4j2.properties"
        log4j.write_text(_LOG4J2, encoding="utf-8")
        return server, log4j

    def _java_command(self, java: str, libs: Path, log4j: Path, archive_option: str | None = None) -> list[str]:
        return [
            java,
            f"-Xmx{self.heap}",
            # A small heap on a 2-core machine: the serial collector runs no GC threads beside
            # the broker's own, and a test broker's pauses on a 512 MiB heap stay short.
            "-XX:+UseSerialGC",
            # Compiling with C1 alone roughly halves the CPU the broker burns while starting;
            # the Python clients, not the broker, bound throughput in tests and local runs.
            "-XX:TieredStopAtLevel=1",
            *([archive_option] if archive_option else []),
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={log4j}",
            f"-Dkafka.logs.dir={self.work_dir}",
            "-cp",
            f"{libs}/*",
        ]

    def _class_archive(self, java: str) -> Path:
        """The class-data-sharing archive of this Kafka version for this JVM build.

        Loading the broker's classes from an archive instead of ~45 jars cuts its start-up CPU
        by about half. The name is keyed on the JVM binary, so an upgraded JVM gets a new one
        (a stale archive would be refused by the JVM anyway, costing only the speed-up).
        """
        binary = Path(java).resolve()
        info = binary.stat()
        key = hashlib.sha256(f"{binary}:{info.st_mtime_ns}:{info.st_size}".encode()).hexdigest()[:12]
        return self.home / f"classes-{key}.jsa"

    def _scram_arguments(self) -> list[str]:
        """StorageTool ``--add-scram`` arguments: the users exist from the first start, no admin step."""
        if self.security is None or "SASL_SSL" not in self.security.protocols:
            return []
        users = dict(self.security.scram_users)
        if self.protocol == "SASL_SSL":
            users[_BROKER_USER] = self._broker_password()
        arguments = []
        for user, password in users.items():
            arguments += ["--add-scram", f"{SCRAM_MECHANISM}=[name={user},password={password}]"]
        return arguments

    def _format(self, java: str, libs: Path, server: Path, log4j: Path) -> None:
        """Format the data directory once; a directory already formatted keeps its data."""
        if (self.work_dir / "data" / "meta.properties").exists():
            return
        archive = self._class_archive(java)
        command = [
            *self._java_command(java, libs, log4j, f"-XX:SharedArchiveFile={archive}" if archive.exists() else None),
            "kafka.tools.StorageTool",
            "format",
            "--standalone",
            "--cluster-id",
            _cluster_id(),
            "--config",
            str(server),
            *self._scram_arguments(),
        ]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        except subprocess.TimeoutExpired:
            raise LocalKafkaError("formatting the broker's storage did not finish in 120 s") from None
        with self.log_path.open("a", encoding="utf-8") as out:
            out.write(done.stdout + done.stderr)
        if done.returncode != 0:
            raise LocalKafkaError(
                f"formatting the broker's storage failed (exit {done.returncode}):\n" + _tail(done.stdout + done.stderr)
            )

    def start(self, timeout: float = 90) -> str:
        """Start the broker (fetching its jars first if needed) and wait until it serves metadata.

        Returns the bootstrap address. If the process dies or is not ready in ``timeout``
        seconds, raises ``LocalKafkaError`` with the tail of the broker's log. A port this
        broker chose itself that another process took before the broker bound it (free ports
        are ephemeral ones, which outgoing connections use too) is chosen again, twice at most.
        """
        for attempt in range(3):
            try:
                return self._start_once(timeout)
            except LocalKafkaError as exc:
                if attempt == 2 or not self._may_choose_ports_again(exc):
                    raise
                log.info("a port of the local Kafka broker was taken before it bound it; choosing others")
                self._choose_ports_again()
        raise AssertionError("unreachable")

    def _may_choose_ports_again(self, exc: LocalKafkaError) -> bool:
        # Only ports it chose, and only before it ever served: no client knows its address yet.
        return "Address already in use" in str(exc) and not self._ever_served and not self._port_given

    def _choose_ports_again(self) -> None:
        self._port = None
        self._controller_port = None
        self._secure_ports = {}
        # The storage was formatted with the controller's old address: format it anew.
        shutil.rmtree(self.work_dir / "data", ignore_errors=True)

    def _start_once(self, timeout: float) -> str:
        if self.running:
            return self.bootstrap
        if self._proc is not None:
            self.stop()  # the last run died on its own: release its log handle first
        deadline = time.monotonic() + timeout
        libs = self.fetch()
        java = _require("java", "run the Kafka broker")
        self._choose_ports()
        server, log4j = self._write_config()
        self._format(java, libs, server, log4j)

        archive = self._class_archive(java)
        if archive.exists():
            archive_option = f"-XX:SharedArchiveFile={archive}"
        else:
            # No archive yet: this run writes one when it exits, to a private name first, so
            # brokers stopping at the same moment never leave a half-written archive behind.
            pending = archive.with_name(f"{archive.name}.{uuid.uuid4().hex[:8]}.partial")
            self._archive_dump = (pending, archive)
            archive_option = f"-XX:ArchiveClassesAtExit={pending}"
        command = [*self._java_command(java, libs, log4j, archive_option), "kafka.Kafka", str(server)]
        setpriv = shutil.which("setpriv")
        if setpriv and threading.current_thread() is threading.main_thread():
            # The kernel sends the broker SIGTERM if this process dies without running atexit
            # (SIGKILL, a crash). Linux ties that signal to the thread that started the child,
            # so it is only safe when that thread is the main one, which lives as long as we do.
            command = [setpriv, "--pdeathsig", "TERM", *command]
        log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self._log_handle = self.log_path.open("ab")
        self._proc = subprocess.Popen(
            command,
            cwd=self.work_dir,
            stdin=subprocess.DEVNULL,
            stdout=self._log_handle,
            stderr=subprocess.STDOUT,
            # Its own session: Ctrl-C in a terminal reaches Python, which then stops the
            # broker in order, rather than both racing to shut down.
            start_new_session=True,
        )
        if not self._atexit_registered:
            atexit.register(self._at_exit)
            self._atexit_registered = True
        try:
            self._wait_ready(deadline, log_offset)
        except _FatalStartup:
            # Kafka's shutdown hooks after a failed startup can hang for several seconds;
            # nothing was served, so there is nothing to shut down in order.
            if self._proc is not None:
                self._proc.kill()
            self.stop()
            raise
        except BaseException:
            self.stop(timeout=10)
            raise
        self._served = self._ever_served = True
        log.info("local Kafka %s ready at %s (pid %s)", self.version, self.bootstrap, self.pid)
        return self.bootstrap

    def _log_tail(self, offset: int) -> str:
        """The errors this run logged, then the last lines of its log, for an exception message."""
        try:
            with self.log_path.open("rb") as handle:
                handle.seek(offset)
                text = handle.read().decode("utf-8", "replace")
        except OSError:
            return "(no broker log)"
        # The root cause sits in ERROR lines and "Caused by:" lines of a stack trace that the
        # shutdown messages after it can push out of the tail.
        causes = [line for line in text.splitlines() if " ERROR " in line or line.startswith("Caused by:")]
        summary = "\n".join(causes[-8:])
        return f"{summary}\n--- last lines of {self.log_path} ---\n{_tail(text)}" if summary else _tail(text)

    def _scan_log(self, position: int) -> tuple[int, bool]:
        """Look at the log written since ``position`` for the fatal-startup line."""
        try:
            with self.log_path.open("rb") as handle:
                # Step back a little so a line split across two reads is still found.
                start = max(0, position - len(_FATAL_STARTUP))
                handle.seek(start)
                chunk = handle.read()
        except OSError:
            return position, False
        return start + len(chunk), _FATAL_STARTUP in chunk

    def _wait_ready(self, deadline: float, log_offset: int) -> None:
        from kafka.admin import KafkaAdminClient
        from kafka.errors import KafkaError

        assert self._proc is not None and self._port is not None
        last_error = "the broker port never opened"
        scanned = log_offset
        while True:
            code = self._proc.poll()
            if code is not None:
                raise LocalKafkaError(
                    f"the Kafka broker exited with code {code} while starting:\n" + self._log_tail(log_offset)
                )
            scanned, fatal = self._scan_log(scanned)
            if fatal:
                raise _FatalStartup("the Kafka broker failed to start:\n" + self._log_tail(log_offset))
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LocalKafkaError(
                    f"the Kafka broker was not ready in time ({last_error}):\n" + self._log_tail(log_offset)
                )
            try:
                # A cheap TCP probe first: a client built before the port opens would spend
                # its whole bootstrap timeout retrying.
                socket.create_connection((HOST, self._port), timeout=0.5).close()
            except OSError:
                time.sleep(0.1)
                continue
            try:
                # Short timeouts: a ready broker answers in milliseconds, and a port held by
                # some other program must not keep this loop from seeing the broker's log.
                admin = KafkaAdminClient(
                    **self._probe_options(),
                    bootstrap_servers=self.bootstrap,
                    client_id="breachwatch-local-kafka-probe",
                    bootstrap_timeout_ms=int(max(0.5, min(remaining, 2.0)) * 1000),
                    request_timeout_ms=2000,
                )
                try:
                    cluster = admin.describe_cluster()
                finally:
                    admin.close()
            except (KafkaError, OSError) as exc:
                last_error = f"metadata request failed: {type(exc).__name__}"
                time.sleep(0.2)
                continue
            if any(not broker.get("is_fenced", False) for broker in cluster.get("brokers", [])):
                return
            last_error = "no unfenced broker in the metadata yet"
            time.sleep(0.2)

    def stop(self, timeout: float = 30) -> None:
        """Stop the broker: SIGTERM (a controlled shutdown), then SIGKILL after ``timeout`` s.

        Idempotent. The data directory and the ports are kept for a later ``start()``.
        """
        proc, self._proc = self._proc, None
        dump, self._archive_dump = self._archive_dump, None
        served, self._served = self._served, False
        clean = False
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                # Writing the class archive at exit takes a few seconds more, once per cache.
                proc.wait(timeout=max(timeout, 120) if dump and served else timeout)
                clean = True
            except subprocess.TimeoutExpired:
                log.warning("local Kafka did not stop in %.0f s; killing it", timeout)
                proc.kill()
                proc.wait()
        if self._log_handle is not None:
            self._log_handle.close()
            self._log_handle = None
        if dump is not None:
            pending, archive = dump
            # Only a run that served and then exited in order has written a whole archive.
            if clean and served and pending.exists() and pending.stat().st_size > 0:
                os.replace(pending, archive)
            else:
                pending.unlink(missing_ok=True)

    def restart(self, timeout: float = 90) -> str:
        """Stop and start again on the same port and data directory."""
        self.stop()
        return self.start(timeout=timeout)

    def close(self) -> None:
        """Stop the broker and delete its work directory if this object created it."""
        self.stop()
        if self._owns_work_dir and self._work_dir is not None:
            shutil.rmtree(self._work_dir, ignore_errors=True)
            self._work_dir = None
            self._port = None
            self._controller_port = None
            self._secure_ports = {}

    def _at_exit(self) -> None:
        with suppress(Exception):
            self.stop(timeout=10)
        with suppress(Exception):
            self.close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = f"running pid={self.pid}" if self.running else "stopped"
        return f"LocalKafka(version={self.version!r}, port={self._port}, {state})"


_LOCAL_USER = "breachwatch"
_LOCAL_PASSWORD_FILE = "kafka-password"


def _local_security(directory: Path) -> BrokerSecurity:
    """``run --secure``: fresh certificates in ``directory``, and one SCRAM user whose password
    is kept in a file there (reused, so a broker restarted on the same data still accepts it)."""
    tls = make_test_certificates(directory)
    password_file = directory / _LOCAL_PASSWORD_FILE
    if not password_file.exists():
        _write_private(password_file, secrets.token_urlsafe(24).encode("ascii"))
    password = password_file.read_text(encoding="ascii").strip()
    return BrokerSecurity(tls=tls, scram_users={_LOCAL_USER: password})


def serve(broker: LocalKafka, security: BrokerSecurity | None, secure_dir: Path | None) -> int:
    """Run ``broker`` until Ctrl-C or SIGTERM, printing the settings that reach it (``breachwatch
    broker run``); 1 if the broker exited by itself."""
    # SIGTERM (e.g. from a service manager) ends the wait the same way Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with broker:
        print(f"KAFKA_BOOTSTRAP={broker.bootstrap}", flush=True)
        if security is not None and secure_dir is not None:
            # The settings that reach the SASL_SSL listener; the password stays in its file.
            print(
                f"BREACHWATCH_KAFKA_SECURITY_PROTOCOL=SASL_SSL\n"
                f"BREACHWATCH_KAFKA_SASL_MECHANISM={SCRAM_MECHANISM}\n"
                f"BREACHWATCH_KAFKA_SASL_USERNAME={_LOCAL_USER}\n"
                f"BREACHWATCH_KAFKA_SASL_PASSWORD_FILE={secure_dir / _LOCAL_PASSWORD_FILE}\n"
                f"BREACHWATCH_KAFKA_SSL_CAFILE={security.tls.ca_cert}\n"
                f"# TLS without SASL (SSL): {broker.bootstrap_for('SSL')}",
                flush=True,
            )
        print(f"log: {broker.log_path}  (Ctrl-C to stop)", flush=True)
        with suppress(KeyboardInterrupt):
            while broker.running:
                time.sleep(1)
        if not broker.running:
            print("the broker exited; see its log", file=sys.stderr)
            return 1
    return 0


def local_security(directory: Path) -> BrokerSecurity:
    """``broker run --secure DIR``: see ``_local_security``."""
    return _local_security(directory)


@contextmanager
def embedded_bootstrap(settings: Settings, echo: Callable[[str], None] | None = None) -> Iterator[str]:
    """The configured cluster, or the embedded local broker started for the duration (the demo,
    ``run --embedded-broker``)."""
    if settings.kafka_bootstrap:
        yield settings.kafka_bootstrap
        return
    broker = LocalKafka(settings.cache_dir, settings.kafka_version, work_dir=Path(settings.cache_dir) / "local-broker")
    if echo:
        echo(f"starting the embedded Kafka {settings.kafka_version} broker (jars cached in {settings.cache_dir})")
    broker.fetch()
    bootstrap = broker.start()
    try:
        yield bootstrap
    finally:
        broker.stop()
