"""Log lines as a log shipper and a person see them: ECS JSON for every logger (uvicorn's
included) or plain text, and the libraries' chatter kept to DEBUG."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from breachwatch.core.settings import Settings, load_settings
from breachwatch.runtime import app
from breachwatch.runtime.logs import setup_logging


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """setup_logging changes the process's loggers: put them back for the tests after."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    named = {n: (logging.getLogger(n).level, logging.getLogger(n).propagate) for n in ("kafka", "alembic", "uvicorn")}
    yield
    root.handlers[:], level = saved
    root.setLevel(level)
    for name, (lvl, propagate) in named.items():
        logging.getLogger(name).setLevel(lvl)
        logging.getLogger(name).propagate = propagate


def settings(**overrides: object) -> Settings:
    return load_settings(**overrides)


def lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.strip()]


def test_json_lines_carry_ecs_fields_for_every_logger(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging(settings(log_format="json"))
    logging.getLogger("breachwatch.runtime.service").info("reference tables loaded: %d records", 3)
    logging.getLogger("uvicorn.error").info("Application startup complete.")
    logging.getLogger("uvicorn.access").info(
        '%s - "%s %s HTTP/%s" %d', "127.0.0.1:51000", "GET", "/readyz?x=1", "1.1", 503
    )
    try:
        raise ValueError("a fictional failure")
    except ValueError:
        logging.getLogger("breachwatch.runtime.app").exception("outbox dispatch failed; will retry")
    docs = [json.loads(line) for line in lines(capsys.readouterr().err)]
    assert [d["message"] for d in docs] == [
        "reference tables loaded: 3 records",
        "Application startup complete.",
        '127.0.0.1:51000 - "GET /readyz?x=1 HTTP/1.1" 503',
        "outbox dispatch failed; will retry",
    ]
    for doc in docs:
        assert doc["ecs.version"] and doc["@timestamp"] and doc["service"] == {"name": "breachwatch"}
    assert [d["log.level"] for d in docs] == ["info", "info", "info", "error"]
    assert docs[1]["log"]["logger"] == "uvicorn.error"
    access = docs[2]
    assert access["http"] == {"version": "1.1", "request": {"method": "GET"}, "response": {"status_code": 503}}
    assert access["url"] == {"path": "/readyz"} and access["client"] == {"address": "127.0.0.1"}
    assert docs[3]["error"]["type"] == "ValueError" and "a fictional failure" in docs[3]["error"]["message"]


def test_a_new_database_is_one_line_not_every_migration(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging(settings(log_format="text"))
    app.database(settings(db_url=f"sqlite:///{tmp_path / 'bw.db'}"))
    app.database(settings(db_url=f"sqlite:///{tmp_path / 'bw.db'}"))  # already current: nothing at all
    shown = lines(capsys.readouterr().err)
    assert len(shown) == 1 and "INFO breachwatch.storage.migrate: database schema migrated from nothing to" in shown[0]

    setup_logging(settings(log_format="text", log_level="DEBUG"))  # still there for whoever asks
    app.database(settings(db_url=f"sqlite:///{tmp_path / 'other.db'}"))
    assert "Running upgrade  -> 0001" in capsys.readouterr().err


def test_kafka_clients_reconnecting_is_debug_but_a_refused_permission_shows(
    capsys: pytest.CaptureFixture[str],
) -> None:
    setup_logging(settings(log_format="text"))
    kafka = logging.getLogger("kafka.coordinator")
    kafka.warning("Marking the coordinator dead (node %s) for group %s: %s.", 1, "breachwatch", "NodeNotReadyError")
    logging.getLogger("kafka.cluster").error("Metadata refresh: failed %s", "KafkaConnectionError")
    logging.getLogger("kafka.conn").info("connecting to broker")
    kafka.error("Heartbeat failed: authorization error: %s", "GroupAuthorizationFailedError")
    logging.getLogger("breachwatch.runtime.service").warning("Kafka unavailable (%s); waiting", "NoBrokersAvailable")
    logging.getLogger("kafka.net.selector").warning("Task %r ran for 3.2s. It is blocking the event loop", "poll")
    shown = lines(capsys.readouterr().err)
    assert len(shown) == 3, shown
    assert "ERROR kafka.coordinator: Heartbeat failed: authorization error" in shown[0]
    assert "WARNING breachwatch.runtime.service: Kafka unavailable" in shown[1]
    assert "WARNING kafka.net.selector: Task 'poll' ran for 3.2s. It is blocking the event loop" in shown[2]


def test_chatter_is_lowered_for_the_log_lines_only(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """Other handlers (here the test's capture) get the record as the library logged it."""
    setup_logging(settings(log_format="text"))
    logging.getLogger().addHandler(caplog.handler)  # setup_logging leaves its own handler alone
    with caplog.at_level(logging.WARNING, logger="kafka"):
        logging.getLogger("kafka.coordinator").warning("Marking the coordinator dead (node %s)", 1)
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert lines(capsys.readouterr().err) == []

    setup_logging(settings(log_format="text", log_level="DEBUG"))
    logging.getLogger("kafka.coordinator").warning("Marking the coordinator dead (node %s)", 1)
    assert "DEBUG kafka.coordinator: Marking the coordinator dead (node 1)" in capsys.readouterr().err
