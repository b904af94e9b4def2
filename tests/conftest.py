"""Shared fixtures: the real local services (Kafka broker, PostgreSQL) and per-test settings.

Tests that request ``kafka_bootstrap`` (or a broker fixture) are marked ``kafka``, and tests
that request ``postgres_url`` (or ``make_postgres``) are marked ``postgres``, so ``pytest -m "not kafka"`` runs
without starting a broker. ``bw_settings`` points at the broker only for tests marked ``kafka``.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from breachwatch.core.settings import Settings, load_settings
from breachwatch.devkit.local_kafka import LocalKafka, free_port
from tests.fixtures.sqlite import sqlite_template  # noqa: F401 - a fixture for every test folder

KAFKA_FIXTURES = frozenset({"kafka_bootstrap", "local_kafka", "make_local_kafka"})
POSTGRES_FIXTURES = frozenset({"postgres_url", "make_postgres"})
PG_DATABASE = "breachwatch_test"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if names & KAFKA_FIXTURES:
            item.add_marker(pytest.mark.kafka)
        if names & POSTGRES_FIXTURES:
            item.add_marker(pytest.mark.postgres)
    # The longest tests first: started last, one of them (up to two minutes) is the whole
    # suite's tail while the other workers sit idle. A stable sort keeps the rest in order.
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def _missing_service(message: str) -> None:
    """Skip on a developer's machine without the service; fail on CI, which must have it."""
    if os.environ.get("CI"):
        pytest.fail(f"{message} (CI is set: CI must provide it)", pytrace=False)
    pytest.skip(message)


# --- Kafka -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def base_settings() -> Settings:
    """Settings from the environment alone: the Kafka version and the jar cache to use."""
    return load_settings()


def _new_local_kafka(settings: Settings, **kwargs: Any) -> LocalKafka:
    for tool in ("java", "mvn"):
        if shutil.which(tool) is None:
            _missing_service(f"`{tool}` is not installed, so the local Kafka broker cannot run")
    return LocalKafka(settings.cache_dir, settings.kafka_version, **kwargs)


@pytest.fixture(scope="session")
def local_kafka(base_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka | None]:
    """The session's broker, started once; ``None`` when ``KAFKA_BOOTSTRAP`` names another one."""
    if os.environ.get("KAFKA_BOOTSTRAP"):
        yield None
        return
    broker = _new_local_kafka(base_settings, work_dir=tmp_path_factory.mktemp("kafka"))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(local_kafka: LocalKafka | None) -> str:
    """``host:port`` of the broker every Kafka test shares (topics are fresh per test)."""
    if local_kafka is None:
        return os.environ["KAFKA_BOOTSTRAP"]
    return local_kafka.bootstrap


@pytest.fixture
def make_local_kafka(base_settings: Settings, tmp_path: Path) -> Iterator[Callable[..., LocalKafka]]:
    """Brokers of a test's own (not started), for tests that stop, restart or break one.

    Keyword arguments go to ``LocalKafka``; every broker made is stopped after the test.
    """
    made: list[LocalKafka] = []

    def make(**kwargs: Any) -> LocalKafka:
        kwargs.setdefault("work_dir", tmp_path / f"kafka-{len(made)}")
        made.append(_new_local_kafka(base_settings, **kwargs))
        return made[-1]

    try:
        yield make
    finally:
        for broker in made:
            broker.stop()


@pytest.fixture
def topic_prefix() -> str:
    """A fresh prefix such as ``t1a2b3c4d.``, so each test has topics nobody else wrote to."""
    return f"t{uuid.uuid4().hex[:8]}."


@pytest.fixture
def bw_settings(request: pytest.FixtureRequest, base_settings: Settings, topic_prefix: str, tmp_path: Path) -> Settings:
    """Settings for one test: fresh topics, a SQLite file and an outbox in ``tmp_path``."""
    bootstrap = request.getfixturevalue("kafka_bootstrap") if request.node.get_closest_marker("kafka") else None
    return load_settings(
        kafka_bootstrap=bootstrap,
        topic_prefix=topic_prefix,
        db_url=f"sqlite:///{tmp_path / 'breachwatch.db'}",
        outbox_dir=tmp_path / "outbox",
        cache_dir=base_settings.cache_dir,
    )


# --- PostgreSQL ----------------------------------------------------------------------------


def _postgres_bindir() -> Path | None:
    """Debian keeps initdb/pg_ctl off PATH under /usr/lib/postgresql/<major>/bin; take the newest."""
    found = []
    for initdb in Path("/usr/lib/postgresql").glob("*/bin/initdb"):
        major = initdb.parent.parent.name
        if re.fullmatch(r"\d+", major):
            found.append((int(major), initdb.parent))
    if found:
        return max(found)[1]
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path else None


def _as_postgres_user(command: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root, so as root the server runs as the `postgres` account.
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def _run(command: list[str], what: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {done.returncode}):\n{(done.stdout + done.stderr)[-3000:]}")


def _postgres_install() -> tuple[Path, pwd.struct_passwd | None]:
    """The server binaries, and the OS account to run them under when running as root."""
    bindir = _postgres_bindir()
    if bindir is None:
        _missing_service("PostgreSQL server binaries (initdb, pg_ctl) are not installed; apt-get install postgresql")
    assert bindir is not None
    owner = None
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            _missing_service("running as root needs a `postgres` OS account to run PostgreSQL under")
    return bindir, owner


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL database for this session: ``BREACHWATCH_TEST_PG_URL``, or a throwaway server."""
    if os.environ.get("BREACHWATCH_TEST_PG_URL"):
        yield os.environ["BREACHWATCH_TEST_PG_URL"]
        return
    bindir, owner = _postgres_install()

    root = Path(tempfile.mkdtemp(prefix="breachwatch-pg-"))
    if owner is not None:
        os.chown(root, owner.pw_uid, owner.pw_gid)
    data = root / "data"
    port = free_port()
    pg_ctl = str(bindir / "pg_ctl")
    # Durability settings off: this server holds nothing that must survive a crash.
    server_options = (
        f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off "
        "-c full_page_writes=off"
    )
    try:
        initdb = [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"]
        _run(_as_postgres_user([*initdb, "-E", "UTF8", "--locale=C", "--no-sync"]), "initdb")
        start = [pg_ctl, "-D", str(data), "-l", str(root / "server.log"), "-w", "-t", "60", "-o", server_options]
        _run(_as_postgres_user([*start, "start"]), "starting PostgreSQL")
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres", autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {PG_DATABASE}")
        yield f"postgresql://postgres@127.0.0.1:{port}/{PG_DATABASE}"
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run(
                _as_postgres_user([pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"]),
                capture_output=True,
                timeout=60,
                check=False,
            )
        shutil.rmtree(root, ignore_errors=True)


class PostgresCluster:
    """A private PostgreSQL server a test may stop and start; its data survives a stop."""

    def __init__(self, bindir: Path, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        self.port = free_port()
        self._pg_ctl = str(bindir / "pg_ctl")
        initdb = [str(bindir / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust"]
        _run(_as_postgres_user([*initdb, "-E", "UTF8", "--locale=C", "--no-sync"]), "initdb")
        self.start()
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{self.port}/postgres", autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {PG_DATABASE}")
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/{PG_DATABASE}"

    @property
    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def start(self) -> None:
        """Start the server and wait until it accepts connections (same port, same data)."""
        # Durability settings off: nothing here must survive a crash of the machine, only a
        # clean stop, which flushes everything anyway.
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off"
        )
        log = str(self.root / "server.log")
        _run(
            _as_postgres_user(
                [self._pg_ctl, "-D", str(self.data), "-l", log, "-w", "-t", "60", "-o", options, "start"]
            ),
            "starting PostgreSQL",
        )

    def stop(self, mode: str = "fast") -> None:
        """``pg_ctl stop -m <mode>``: ``fast`` ends every session at once, as an outage does."""
        _run(
            _as_postgres_user([self._pg_ctl, "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop"]),
            "stopping PostgreSQL",
        )


@pytest.fixture
def make_postgres() -> Iterator[Callable[[], PostgresCluster]]:
    """Private PostgreSQL servers (started) for tests that stop and restart one; all removed after the test."""
    bindir, owner = _postgres_install()
    roots: list[Path] = []

    def make() -> PostgresCluster:
        root = Path(tempfile.mkdtemp(prefix="breachwatch-pg-"))
        roots.append(root)
        if owner is not None:
            os.chown(root, owner.pw_uid, owner.pw_gid)
        return PostgresCluster(bindir, root)

    try:
        yield make
    finally:
        for root in roots:
            # Also reached when a cluster failed half-way through being made.
            if (root / "data" / "postmaster.pid").exists():
                stop = [str(bindir / "pg_ctl"), "-D", str(root / "data"), "-m", "immediate", "-w", "stop"]
                subprocess.run(_as_postgres_user(stop), capture_output=True, timeout=60, check=False)
            shutil.rmtree(root, ignore_errors=True)
