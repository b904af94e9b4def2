"""The service on the real broker: foreign producers, dead letters, crash/restart, run == replay."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from traffic import TENANTS, cross_tenant

from breachwatch import app
from breachwatch.settings import Settings
from incidents.store import IncidentStore
from streams.consumer import Service
from streams.dump import replay
from streams.kafka_client import client_options, ensure_topics
from streams.produce import produce_dump
from streams.simulate import simulate

pytestmark = pytest.mark.kafka


def run_service(settings: Settings, bootstrap: str) -> tuple[dict, list]:
    engine = app.database(settings)
    pipeline = app.build_pipeline(settings, engine)
    pump = app.dispatcher(settings, engine)
    stats = Service(settings, bootstrap, pipeline, after_batch=pump.tick).run(until_caught_up=True)
    pump.drain()
    return stats, IncidentStore(engine).incidents()


def test_foreign_client_events_and_a_malformed_message(bw_settings: Settings, kafka_bootstrap: str) -> None:
    """kcat writes events; a malformed one goes to the DLQ with its reason; the next is processed."""
    if shutil.which("kcat") is None:
        pytest.fail("kcat (Debian package) is needed for the foreign-client test")
    ensure_topics(bw_settings, kafka_bootstrap)
    tenants = bw_settings.topic("erp.tenants")
    access = bw_settings.topic("erp.access")
    lines = [f"{t['tenant_id']}\t{json.dumps(t)}" for t in TENANTS]
    subprocess.run(
        ["kcat", "-b", kafka_bootstrap, "-P", "-t", tenants, "-K", "\t"],
        input="\n".join(lines) + "\n",
        text=True,
        check=True,
        timeout=30,
    )
    bad = '{"event_id": "broken", "ts": "yesterday"'
    lines = [
        f"u-mallory\t{json.dumps(cross_tenant(1, 'u-mallory'))}",
        f"u-mallory\t{bad}",
        f"u-eve\t{json.dumps(cross_tenant(2, 'u-eve'))}",
    ]
    subprocess.run(
        ["kcat", "-b", kafka_bootstrap, "-P", "-t", access, "-K", "\t"],
        input="\n".join(lines) + "\n",
        text=True,
        check=True,
        timeout=30,
    )

    stats, incidents = run_service(bw_settings, kafka_bootstrap)

    assert stats["consumed"]["erp.access"] == 3 and stats["dead_lettered"] == {"erp.access": 1}
    by_actor = {i.actor_ids[0]: i for i in incidents}
    assert set(by_actor) == {"u-mallory", "u-eve"}
    assert by_actor["u-eve"].kind == "cross_tenant_access" and by_actor["u-eve"].tenant_ids[0] == "t-rhein"
    dlq = KafkaConsumer(
        **client_options(bw_settings, kafka_bootstrap), auto_offset_reset="earliest", consumer_timeout_ms=10000
    )
    dlq.assign([TopicPartition(access + ".dlq", p) for p in dlq.partitions_for_topic(access + ".dlq")])
    dlq.seek_to_beginning()
    [msg] = [m for _, ms in dlq.poll(timeout_ms=10000).items() for m in ms]
    headers = {k: v.decode() for k, v in msg.headers}
    assert msg.value == bad.encode() and msg.key == b"u-mallory"
    assert headers["bw.error.kind"] == "not_json" and headers["bw.source.topic"] == access
    assert int(headers["bw.source.offset"]) >= 0 and "bw.source.partition" in headers
    dlq.close()
    emails = sorted((bw_settings.outbox_dir).glob("*.eml"))
    assert len(emails) == 2 * len(bw_settings.oncall_emails)
    assert "cross" in emails[0].read_text().lower() or "tenant" in emails[0].read_text().lower()


def _signature(incidents: list) -> list[tuple]:
    """What must match between runs: everything but ids and wall-clock times."""
    return sorted(
        (
            i.kind,
            i.severity,
            tuple(sorted(i.actor_ids)),
            tuple(sorted(i.tenant_ids)),
            tuple(sorted(i.evidence_event_ids)),
            i.opened_at,
        )
        for i in incidents
    )


def _same_incident(a: Any, b: Any) -> bool:
    """Same actors or attacking addresses (or, for incidents naming neither, such as a log
    session without a user, the same kind), and shared evidence."""
    nameless = not (a.actor_ids or a.source_ips or b.actor_ids or b.source_ips) and a.kind == b.kind
    who = set(a.actor_ids) & set(b.actor_ids) or set(a.source_ips) & set(b.source_ips) or nameless
    return bool(who and set(a.evidence_event_ids) & set(b.evidence_event_ids))


def _unmatched(ours: list, theirs: list) -> list:
    """Incidents of ``ours`` with no counterpart (same actors or addresses, shared evidence) in ``theirs``."""
    return [(i.kind, i.actor_ids, i.source_ips) for i in ours if not any(_same_incident(i, j) for j in theirs)]


def _duplicates(incidents: list) -> list:
    """Pairs of incidents of one kind about the same actors, opened within the correlation window."""
    out = []
    for n, a in enumerate(incidents):
        for b in incidents[n + 1 :]:
            same = a.kind == b.kind and a.actor_ids and sorted(a.actor_ids) == sorted(b.actor_ids)
            if same and abs((a.opened_at - b.opened_at).total_seconds()) < 6 * 3600:
                out.append((a.kind, a.actor_ids, a.opened_at, b.opened_at))
    return out


def _count_events(dump: Path) -> int:
    return sum(len((dump / f"{t}.jsonl").read_bytes().splitlines()) for t in ("erp.access", "erp.auth", "erp.logs"))


def _evidence(incidents: list) -> set[str]:
    return {e for i in incidents for e in i.evidence_event_ids}


def _explain_difference(a: list, b: list) -> None:
    sa, sb = set(_signature(a)), set(_signature(b))
    for label, only in (("only live", sa - sb), ("only replay", sb - sa)):
        for sig in sorted(only):
            print(label, sig[0], sig[1], sig[2], sig[3], len(sig[4]), sig[5])


@pytest.fixture(scope="module")
def small_dump(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dump = tmp_path_factory.mktemp("dump")
    simulate(dump, seed=11, days=4, tenants=4, attack_days=2)
    return dump


def _replay_incidents(settings: Settings, dump: Path) -> list:
    engine = app.database(settings, f"sqlite:///{settings.outbox_dir.parent / 'replay.db'}")
    pipeline = app.build_pipeline(settings, engine, notify=False)
    replay(dump, pipeline, partitions=settings.partitions, max_bytes=settings.max_message_bytes)
    return IncidentStore(engine).incidents()


def test_run_and_replay_agree(bw_settings: Settings, kafka_bootstrap: str, small_dump: Path) -> None:
    ensure_topics(bw_settings, kafka_bootstrap)
    produce_dump(bw_settings, kafka_bootstrap, small_dump)
    stats, live = run_service(bw_settings, kafka_bootstrap)
    replayed = _replay_incidents(bw_settings, small_dump)
    events = _count_events(small_dump)
    assert sum(stats["consumed"].values()) == events
    assert live, "the simulated attacks must produce incidents"
    assert _signature(live) == _signature(replayed)


@pytest.fixture(scope="module")
def crash_dump(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """At least 100k events with attack scenarios, and a few malformed lines in the middle."""
    dump = tmp_path_factory.mktemp("crash")
    simulate(dump, seed=23, days=10, tenants=30, attack_days=3)
    access = dump / "erp.access.jsonl"
    lines = access.read_bytes().splitlines(keepends=True)
    for n, at in enumerate(range(len(lines) // 6, len(lines), len(lines) // 6)):
        lines.insert(at, b'{"event_id": "torn-%d", "ts": ' % n + b"\n")
    access.write_bytes(b"".join(lines))
    return dump


def test_repeated_sigkill_loses_nothing_and_sends_nothing_twice(
    bw_settings: Settings, kafka_bootstrap: str, crash_dump: Path, tmp_path: Path
) -> None:
    """Kill the service with SIGKILL at random points, restart it each time, then compare
    with an uninterrupted replay: every event processed, no incident duplicated, no alert
    reaching the mail provider twice, every malformed message dead-lettered."""
    from notifier.testing_servers import SendGridServer

    kills = int(os.environ.get("BREACHWATCH_CRASH_KILLS", "20"))
    events = _count_events(crash_dump) - 6  # less the malformed lines
    assert events >= 100_000
    ensure_topics(bw_settings, kafka_bootstrap)
    produce_dump(bw_settings, kafka_bootstrap, crash_dump)
    with SendGridServer(api_key="SG.crash-test-key") as sendgrid:
        env = {
            **os.environ,
            **bw_settings.as_env("kafka_bootstrap", "topic_prefix", "db_url"),
            "BREACHWATCH_CHECKPOINT_INTERVAL_S": "1",
            "BREACHWATCH_POLL_MAX_RECORDS": "2000",
            "BREACHWATCH_GROUP_INSTANCE_ID": "crash-test-1",
            "BREACHWATCH_MAIL_CHANNEL": "sendgrid",
            "BREACHWATCH_SENDGRID_HOST": sendgrid.url,
            "BREACHWATCH_SENDGRID_API_KEY": "SG.crash-test-key",
        }
        rng = random.Random(20261126)
        for _ in range(kills):
            proc = subprocess.Popen(
                [sys.executable, "-m", "breachwatch", "run"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(rng.uniform(1.5, 4.5))
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        done = subprocess.run(
            [sys.executable, "-m", "breachwatch", "run", "--until-caught-up"],
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        delivered = sendgrid.messages
    live = IncidentStore(app.database(bw_settings)).incidents()
    replayed = _replay_incidents(bw_settings, crash_dump)
    _explain_difference(live, replayed)
    # Every event was processed: the group's committed offsets reached the end of every partition.
    consumer = KafkaConsumer(**client_options(bw_settings, kafka_bootstrap), group_id=bw_settings.group_id)
    tps = [
        TopicPartition(bw_settings.topic(t), p)
        for t in ("erp.access", "erp.auth", "erp.logs")
        for p in consumer.partitions_for_topic(bw_settings.topic(t))
    ]
    end = consumer.end_offsets(tps)
    assert all((consumer.committed(tp) or 0) == end[tp] for tp in tps)
    consumer.close()
    # Nothing missed, none twice. Restarts cut the stream into other batches, and an ongoing
    # anomaly's evidence grows batch by batch, so an incident may hold a few more or fewer
    # evidence events than in one pass; and address-centric findings from different
    # partitions may fold into one incident or two depending on which reached the store
    # first. So: every incident of the uninterrupted run has a counterpart (same actors or
    # attacking addresses, shared evidence), and no incident is opened twice.
    assert not _unmatched(replayed, live), "an incident of the uninterrupted run is missing"
    # Known gap: the learned detector's judgement points depend on batch boundaries, so after
    # restarts it can report a second episode of an actor that one pass folded into the first.
    # Rules and the log detector never add an incident here.
    extras = [i for i in live if not any(_same_incident(i, j) for j in replayed)]
    assert all(i.detectors == ["learned"] for i in extras), [(i.kind, i.detectors) for i in extras]
    assert not _duplicates(live)
    ids = [
        (m.payload.get("custom_args") or {}).get("message_id") or json.dumps(m.payload, sort_keys=True)
        for m in delivered
    ]
    assert len(ids) == len(set(ids)), "an alert reached the mail provider twice"
    dlq = KafkaConsumer(**client_options(bw_settings, kafka_bootstrap), auto_offset_reset="earliest")
    topic = bw_settings.topic("erp.access") + ".dlq"
    dlq.assign([TopicPartition(topic, p) for p in dlq.partitions_for_topic(topic)])
    dlq.seek_to_beginning()
    positions = set()
    for _ in range(10):
        for msgs in dlq.poll(timeout_ms=1000).values():
            positions |= {(dict(m.headers)["bw.source.partition"], dict(m.headers)["bw.source.offset"]) for m in msgs}
    dlq.close()
    assert len(positions) == 6, "every malformed message is dead-lettered (at least once)"


def test_sigterm_drains_and_commits(bw_settings: Settings, kafka_bootstrap: str) -> None:
    ensure_topics(bw_settings, kafka_bootstrap)
    producer = KafkaProducer(**client_options(bw_settings, kafka_bootstrap))
    for n in range(50):
        producer.send(
            bw_settings.topic("erp.access"), key=b"u-mallory", value=json.dumps(cross_tenant(n, "u-mallory")).encode()
        )
    producer.flush()
    env = {**os.environ, **bw_settings.as_env("kafka_bootstrap", "topic_prefix", "db_url", "outbox_dir")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "breachwatch", "run"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    engine = app.database(bw_settings)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not IncidentStore(engine).incidents():
        time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-3000:]
    assert json.loads(out.strip().splitlines()[-1])["consumed"]["erp.access"] == 50
    consumer = KafkaConsumer(**client_options(bw_settings, kafka_bootstrap), group_id=bw_settings.group_id)
    parts = consumer.partitions_for_topic(bw_settings.topic("erp.access"))
    committed = sum(consumer.committed(TopicPartition(bw_settings.topic("erp.access"), p)) or 0 for p in parts)
    consumer.close()
    assert committed == 50
