"""The OCSF findings topic on a real broker: every change of every incident reaches it through
the outbox, keyed by the incident id, in the order the changes happened, including the changes
made while the broker was stopped; each record validates against the OCSF schema."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from kafka import KafkaConsumer
from sqlalchemy.orm import Session

from breachwatch.core.clock import utcnow
from breachwatch.core.settings import Settings, load_settings
from breachwatch.devkit.local_kafka import LocalKafka
from breachwatch.incidents import lifecycle
from breachwatch.notifier.outbox import Dispatcher, DispatchReport
from breachwatch.runtime import app
from breachwatch.streams import findings_topic
from breachwatch.streams.findings_topic import MESSAGE_ID_HEADER, FindingsTopicChannel
from breachwatch.streams.kafka_client import client_options, ensure_topics
from tests.fixtures.incident_db import access, finding
from tests.fixtures.notifier_env import Clock
from tests.fixtures.ocsf_schema import ocsf_errors


def _records(settings: Settings, bootstrap: str, expected: int) -> list[tuple[str, dict, str]]:
    consumer = KafkaConsumer(
        settings.topic(settings.ocsf_topic),
        **client_options(settings, bootstrap),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=5000,
    )
    out: list[tuple[str, dict, str]] = []
    try:
        for message in consumer:
            headers = dict(message.headers)
            out.append((message.key.decode(), json.loads(message.value), headers[MESSAGE_ID_HEADER].decode()))
            if len(out) >= expected:
                break
    finally:
        consumer.close()
    return out


def _act(engine, settings: Settings, incident: str, action: str, reason: str | None = None) -> None:
    with Session(engine) as session, session.begin():
        lifecycle.transition(session, incident, action, "ada", reason, on_change=app.lifecycle_hooks(settings))


def _until_sent(dispatcher: Dispatcher, clock: Clock, passes: int = 12) -> DispatchReport:
    total = DispatchReport()
    for _ in range(passes):
        report = dispatcher.dispatch_due()
        total.sent += report.sent
        total.retried += report.retried
        clock.advance(1)
    return total


@pytest.mark.slow
@pytest.mark.kafka
def test_every_change_reaches_the_topic_in_order_through_a_broker_outage(
    make_local_kafka: Callable[..., LocalKafka], tmp_path: Path, topic_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Sends to the stopped broker give up sooner than in production (10 s): the outcome is the same.
    monkeypatch.setattr(findings_topic, "SEND_TIMEOUT_S", 2.0)
    broker = make_local_kafka()
    bootstrap = broker.start()
    settings = load_settings(
        kafka_bootstrap=bootstrap,
        topic_prefix=topic_prefix,
        db_url=f"sqlite:///{tmp_path / 'bw.db'}",
        outbox_dir=tmp_path / "outbox",
    )
    ensure_topics(settings, bootstrap)
    engine = app.database(settings)
    store = app.incident_store(settings, engine)
    [hans] = store.record([finding([access(1), access(2)])]).opened
    [ines] = store.record([finding([access(1, actor="u-ines")], actor="u-ines")]).opened
    clock = Clock(utcnow())
    channel = FindingsTopicChannel(settings, settings.topic(settings.ocsf_topic))
    dispatcher = Dispatcher(engine, {"ocsf": channel}, clock=clock)
    assert _until_sent(dispatcher, clock, passes=2).sent == 2

    broker.stop()
    _act(engine, settings, hans, "acknowledge")
    _act(engine, settings, hans, "resolve", "access revoked")
    store.record([finding([access(2, actor="u-ines", minutes=4)], actor="u-ines", detector="learned")])
    clock.now = utcnow()  # the changes were queued at the wall clock's time
    down = dispatcher.dispatch_due()
    assert (down.sent, down.retried) == (0, 2)  # one change per incident tried; the others wait their turn

    assert broker.start() == bootstrap
    clock.now = utcnow() + timedelta(hours=1)  # past the retry's backoff
    assert _until_sent(dispatcher, clock).sent == 3
    channel.close()

    records = _records(settings, bootstrap, expected=5)
    by_key: dict[str, list[str]] = {}
    for key, record, _ in records:
        assert ocsf_errors(record) == []
        assert record["finding_info"]["uid"] == key
        by_key.setdefault(key, []).append(record["unmapped"]["breachwatch"]["change"]["action"])
    assert by_key == {hans: ["opened", "acknowledge", "resolve"], ines: ["opened", "updated"]}
    assert len({message_id for _, _, message_id in records}) == 5
