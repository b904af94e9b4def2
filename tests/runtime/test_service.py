"""The service on the real broker: foreign producers, dead letters, crash/restart, run == replay."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.coordinator.assignors.range import RangePartitionAssignor
from kafka.errors import KafkaError
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from traffic import TENANTS, cross_tenant, send_reads

from bench.common import GroupLag, service_env
from bench.crash import count_events, crash_and_recover, duplicates, make_crash_dump, replay_incidents, unmatched
from breachwatch.core.events import EVENT_TOPICS
from breachwatch.core.settings import Settings
from breachwatch.devkit.simulate import simulate
from breachwatch.incidents.store import IncidentStore
from breachwatch.runtime import app
from breachwatch.runtime.metrics import ServiceCollector, serve
from breachwatch.runtime.service import Service
from breachwatch.streams.assignor import UnitAssignor
from breachwatch.streams.kafka_client import client_options, ensure_topics, know_partitions
from breachwatch.streams.partitions import partition_for
from breachwatch.streams.produce import produce_dump
from breachwatch.streams.units import COST_MIN_EVENTS, EVENT_COST, unit_name, unit_of

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


def test_produce_keys_each_line_and_partitions_it_as_kafka_would(
    bw_settings: Settings, kafka_bootstrap: str, tmp_path: Path
) -> None:
    """Every line is sent as it is, keyed by its contract key, on the partition Kafka's
    default partitioner gives that key; a line with no readable key goes unkeyed."""
    dump = tmp_path / "dump"
    dump.mkdir()
    expected: dict[str, bytes | None] = {
        json.dumps({"event_id": f"a-{n}", "ts": "2026-11-24T02:44:02Z", "actor_id": actor}, separators=(",", ":")): (
            key.encode()
        )
        for n, (actor, key) in enumerate(
            [("u-ines", "u-ines"), ("u-ren\u00e9e", "u-renée"), ("u-olga", "u-olga"), ("u-mallory", "u-mallory")]
        )
    }
    expected['{"event_id": "spaced", "actor_id": "u-olga"}'] = b"u-olga"  # not compact: read by the parser
    expected['{"event_id":"torn-1","ts":'] = None  # no key anywhere
    (dump / "erp.access.jsonl").write_text("\n".join(expected) + "\n", encoding="utf-8")
    ensure_topics(bw_settings, kafka_bootstrap)
    assert produce_dump(bw_settings, kafka_bootstrap, dump) == {"erp.access": len(expected)}
    consumer = KafkaConsumer(**client_options(bw_settings, kafka_bootstrap), auto_offset_reset="earliest")
    topic = bw_settings.topic("erp.access")
    consumer.assign([TopicPartition(topic, p) for p in range(bw_settings.partitions)])
    got: dict[str, tuple[bytes | None, int]] = {}
    deadline = time.monotonic() + 30
    while len(got) < len(expected) and time.monotonic() < deadline:
        for tp, msgs in consumer.poll(timeout_ms=500).items():
            got.update({m.value.decode(): (m.key, tp.partition) for m in msgs})
    consumer.close()
    assert {line: key for line, (key, _) in got.items()} == expected
    for line, key in expected.items():
        if key is not None:
            assert got[line][1] == partition_for(key, bw_settings.partitions), line


def _replay_incidents(settings: Settings, dump: Path) -> list:
    return replay_incidents(settings, dump, settings.outbox_dir.parent / "replay.db")


def test_run_and_replay_agree(bw_settings: Settings, kafka_bootstrap: str, small_dump: Path) -> None:
    ensure_topics(bw_settings, kafka_bootstrap)
    produce_dump(bw_settings, kafka_bootstrap, small_dump)
    stats, live = run_service(bw_settings, kafka_bootstrap)
    replayed = _replay_incidents(bw_settings, small_dump)
    events = count_events(small_dump)
    assert sum(stats["consumed"].values()) == events
    assert live, "the simulated attacks must produce incidents"
    assert _signature(live) == _signature(replayed)


def _group_assignment(settings: Settings, bootstrap: str) -> tuple[str, dict[str, set[tuple[str, int]]]]:
    """The group's assignment protocol and each member's topic partitions, as the broker
    knows them (contract topic names); no members while the group is not stable (forming,
    rebalancing, or not known to the broker yet)."""
    try:
        admin = KafkaAdminClient(**client_options(settings, bootstrap))
        try:
            group = admin.describe_groups([settings.group_id])[settings.group_id]
        finally:
            admin.close()
    except KafkaError:  # no coordinator for the group yet
        return "", {}
    if group["group_state"] != "Stable":
        return group["protocol_data"], {}
    return group["protocol_data"], {
        member["member_id"]: {
            (a["topic"].removeprefix(settings.topic_prefix), p)
            for a in member["member_assignment"]["assigned_partitions"]
            for p in a["partitions"]
        }
        for member in group["members"]
    }


def _units_named(line_pattern: str, log: str) -> list[str]:
    """The unit names (``actors/0``, ``logs/2``) on every log line matching the pattern."""
    return [u for m in re.finditer(line_pattern, log) for u in m.group(1).split(", ")]


def _unit_names(tps: set[tuple[str, int]]) -> set[str]:
    return {unit_name(unit_of(t, p)) for t, p in tps}


@pytest.mark.slow
def test_two_consumers_share_the_units_and_find_what_replay_finds(
    bw_settings: Settings, kafka_bootstrap: str, small_dump: Path, tmp_path: Path
) -> None:
    """Two ``run`` processes in one group: each gets whole units (an actor's access and auth
    partitions together), together they read everything once, and their incidents are the
    replay's (the state of a unit that changes hands moves with its checkpoint). The second
    joins while the first is at work, and the first gives up only the units that move to it:
    the rest it keeps judging, never restored again (cooperative rebalancing)."""
    settings = bw_settings.model_copy(update={"group_id": f"{bw_settings.topic_prefix}pair"})
    ensure_topics(settings, kafka_bootstrap)
    produce_dump(settings, kafka_bootstrap, small_dump)
    env = {**os.environ, **service_env(settings)}
    app.database(settings)
    paths = [tmp_path / f"consumer-{n}.log" for n in range(2)]
    logs = [path.open("w") for path in paths]
    procs = [subprocess.Popen([sys.executable, "-m", "breachwatch", "run"], env=env, stderr=logs[0])]
    try:
        deadline = time.monotonic() + 120
        while sum(map(len, _group_assignment(settings, kafka_bootstrap)[1].values())) < 12:
            assert procs[0].poll() is None and time.monotonic() < deadline, paths[0].read_text()[-2000:]
            time.sleep(0.2)
        procs.append(subprocess.Popen([sys.executable, "-m", "breachwatch", "run"], env=env, stderr=logs[1]))
        lag = GroupLag(settings, kafka_bootstrap)
        deadline = time.monotonic() + 180
        while True:
            assert all(p.poll() is None for p in procs), "a consumer exited"
            assert time.monotonic() < deadline, [path.read_text()[-2000:] for path in paths]
            members = _group_assignment(settings, kafka_bootstrap)[1]
            if len(members) == 2 and all(members.values()) and sum(lag().values()) == 0:
                break
            time.sleep(0.5)
        lag.close()
        protocol, members = _group_assignment(settings, kafka_bootstrap)
        first_log = paths[0].read_text()  # before the shutdown, which releases everything
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        codes = [p.wait(60) for p in procs]
        for f in logs:
            f.close()
    assert codes == [0, 0], [path.read_text()[-2000:] for path in paths]
    assert protocol == "breachwatch-sticky-units"
    assert len(members) == 2 and all(members.values()), members
    every = sorted(tp for tps in members.values() for tp in tps)
    assert every == sorted((t, p) for t in ("erp.access", "erp.auth", "erp.logs") for p in range(settings.partitions))
    for tps in members.values():
        assert {p for t, p in tps if t == "erp.access"} == {p for t, p in tps if t == "erp.auth"}
    # The first consumer kept its share throughout: each of those units restored once and
    # never released (an eager rebalance releases everything). The rest it handed over.
    restored = _units_named(r"(\S+) assigned \(checkpoint", first_log)
    released = set(_units_named(r"releasing (.+)", first_log))
    finals = [_unit_names(tps) for tps in members.values()]
    kept = [f for f in finals if all(restored.count(u) == 1 and u not in released for u in f)]
    assert len(kept) == 1, (finals, restored, released)
    given = next(f for f in finals if f is not kept[0])
    assert released and given <= set(_units_named(r"(\S+) assigned \(checkpoint", paths[1].read_text()))
    live = IncidentStore(app.database(settings)).incidents()
    replayed = _replay_incidents(settings, small_dump)
    assert live and not unmatched(replayed, live) and not unmatched(live, replayed)
    assert not duplicates(live)


class _OlderMember:
    """A group member of an older version (its assignors: the eager unit assignor and range),
    polling in a thread of the test process."""

    def __init__(self, settings: Settings, bootstrap: str) -> None:
        self.consumer = KafkaConsumer(
            **client_options(settings, bootstrap),
            group_id=settings.group_id,
            enable_auto_commit=False,
            # The service's session timeout, not kafka-python's 10 s: with the suite's other
            # workers on the same cores, this thread once went 10 s without rejoining the
            # rebalance the eager consumer started, and the group dropped it.
            session_timeout_ms=settings.session_timeout_ms,
            heartbeat_interval_ms=1000,
            partition_assignment_strategy=[
                UnitAssignor(lambda t, p: unit_of(t.removeprefix(settings.topic_prefix), p), dict),
                RangePartitionAssignor,
            ],
        )
        # As the service does: know the partitions before joining (see ``know_partitions``).
        topics = [settings.topic(t) for t in EVENT_TOPICS]
        assert all(know_partitions(self.consumer, topics).values())
        self.consumer.subscribe(topics)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=lambda: [self.consumer.poll(200) for _ in iter(self.stop.is_set, True)])
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        self.consumer.close()


@pytest.mark.slow
def test_an_upgrade_rolls_with_eager_first(bw_settings: Settings, kafka_bootstrap: str, tmp_path: Path) -> None:
    """A group that still holds a consumer of an older version (its assignors: the eager unit
    assignor and range): a cooperative consumer is refused at once with the setting to
    change, and with BREACHWATCH_REBALANCE_PROTOCOL=eager it joins and takes its share."""
    settings = bw_settings.model_copy(update={"group_id": f"{bw_settings.topic_prefix}upgrade"})
    ensure_topics(settings, kafka_bootstrap)
    older = _OlderMember(settings, kafka_bootstrap)
    env = {**os.environ, **service_env(settings)}
    log = (tmp_path / "eager.log").open("w")
    eager = None
    try:
        deadline = time.monotonic() + 60
        while not any(_group_assignment(settings, kafka_bootstrap)[1].values()):
            assert time.monotonic() < deadline, "the older member never formed the group and took the partitions"
            time.sleep(0.2)
        cmd = [sys.executable, "-m", "breachwatch", "run"]
        refused = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        assert refused.returncode == 2, refused.stderr[-2000:]
        assert "set BREACHWATCH_REBALANCE_PROTOCOL=eager until every member runs this version" in refused.stderr
        eager = subprocess.Popen(cmd, env={**env, "BREACHWATCH_REBALANCE_PROTOCOL": "eager"}, stderr=log)
        # Start-up (imports, migrations) plus a rebalance of both members: with the suite's other
        # workers and brokers on the same cores, that took over a minute once.
        deadline = time.monotonic() + 150
        rejoined = 0
        while True:
            assert eager.poll() is None, (tmp_path / "eager.log").read_text()[-2000:]
            assert time.monotonic() < deadline, (
                "the eager consumer never got its share",
                _group_assignment(settings, kafka_bootstrap),
                (tmp_path / "eager.log").read_text()[-3000:],
            )
            protocol, members = _group_assignment(settings, kafka_bootstrap)
            if len(members) == 2 and all(members.values()):
                break
            if protocol == "breachwatch-sticky-units" and len(members) == 1 and rejoined < 2:
                # The eager consumer alone, on the protocol only it lists: the broker had dropped
                # the test's older member (its thread starved of CPU on a loaded machine once,
                # and the member did not notice). A member of the older version joins again.
                rejoined += 1
                older.close()
                older = _OlderMember(settings, kafka_bootstrap)
            time.sleep(0.2)
        assert protocol == "breachwatch-units"  # what the older member lists first
    finally:
        if eager is not None:
            eager.send_signal(signal.SIGTERM)
            assert eager.wait(60) == 0
        log.close()
        older.close()


def test_units_are_weighed_by_backlog_and_recent_volume(bw_settings: Settings, kafka_bootstrap: str) -> None:
    """What the group leader balances by: per partition, what is left to read plus what
    arrived lately, by what its events cost to judge; a partition with nothing gets nothing."""
    ensure_topics(bw_settings, kafka_bootstrap)
    send_reads(bw_settings, kafka_bootstrap, 10)
    producer = KafkaProducer(**client_options(bw_settings, kafka_bootstrap))
    for n in range(30):
        record = {
            "event_id": f"g-{n}",
            "ts": "2026-11-24T02:44:02Z",
            "service": "api",
            "host": "api-1",
            "level": "INFO",
            "message": f"request {n} served",
        }
        producer.send(bw_settings.topic("erp.logs"), key=b"api", value=json.dumps(record).encode())
    producer.flush()
    producer.close()
    service = Service(bw_settings, kafka_bootstrap, app.build_pipeline(bw_settings, app.database(bw_settings)))
    try:
        topics = [bw_settings.topic(t) for t in ("erp.access", "erp.auth", "erp.logs")]
        service._refresh_weights(topics)
        weights = {
            (tp.topic.removeprefix(bw_settings.topic_prefix), tp.partition): w for tp, w in service._weights.items()
        }
        # Once this consumer has judged enough of both kinds, its own figures count: here an
        # actor's event came out at a third of a log record's cost.
        service.pipeline.costs.add("actor", COST_MIN_EVENTS, COST_MIN_EVENTS * 10e-6)
        service.pipeline.costs.add("log", COST_MIN_EVENTS, COST_MIN_EVENTS * 30e-6)
        service._weighed_at = -1e9
        service._refresh_weights(topics)
        measured = {
            (tp.topic.removeprefix(bw_settings.topic_prefix), tp.partition): w for tp, w in service._weights.items()
        }
    finally:
        service.consumer.close()
        service.refs.close()
        service.producer.close()
    access = partition_for(b"u-mallory", bw_settings.partitions)
    logs = partition_for(b"api", bw_settings.partitions)
    assert len(weights) == 3 * bw_settings.partitions
    # Backlog + the same, arrived lately; an access event costs more to judge than a log record.
    expected = {("erp.access", access): 20.0 * EVENT_COST["erp.access"], ("erp.logs", logs): 60.0}
    assert weights == {tp: expected.get(tp, 0.0) for tp in weights}
    assert measured[("erp.access", access)] == pytest.approx(20.0 / 3)
    assert measured[("erp.logs", logs)] == 60.0


def _parse(page: str) -> dict[str, dict[tuple, float]]:
    """A metrics page, parsed: per sample name, value by label values."""
    out: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(page):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def _scrape(service: Service) -> dict[str, dict[tuple, float]]:
    """The service's metrics, parsed."""
    registry = CollectorRegistry()
    registry.register(ServiceCollector(service))
    return _parse(generate_latest(registry).decode())


def test_metrics_report_lag_latency_and_batch_time(bw_settings: Settings, kafka_bootstrap: str) -> None:
    """/metrics while the service works through a backlog: the lag is what is left to take in,
    every event's latency is counted once, every batch's time too."""
    settings = bw_settings.model_copy(update={"poll_max_records": 100})
    ensure_topics(settings, kafka_bootstrap)
    send_reads(settings, kafka_bootstrap, 1000)
    part = ("partition", str(partition_for(b"u-mallory", settings.partitions)))
    scrapes: list[tuple[int, dict]] = []
    service = Service(settings, kafka_bootstrap, app.build_pipeline(settings, app.database(settings)))
    # Also the page as Prometheus reads it over HTTP, while the service runs.
    server = serve("127.0.0.1", 0, service)
    pages: list[dict] = []

    def after_batch() -> None:
        scrapes.append((service.pipeline.stats.consumed["erp.access"], _scrape(service)))
        url = f"http://127.0.0.1:{server.server_address[1]}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            pages.append(_parse(response.read().decode()))

    service.after_batch = after_batch
    try:
        service.run(until_caught_up=True)
    finally:
        server.shutdown()
        server.server_close()
    taken_in = [(n, m) for n, m in scrapes if 0 < n < 1000]
    assert taken_in, "the backlog was taken in over several batches"
    for n, metrics in taken_in:
        assert metrics["breachwatch_consumer_lag"][(part, ("topic", "erp.access"))] == 1000 - n
    last = scrapes[-1][1]
    assert last["breachwatch_consumer_lag"][(part, ("topic", "erp.access"))] == 0
    assert last["breachwatch_event_latency_seconds_count"][()] == 1000
    assert 0 < last["breachwatch_event_latency_seconds_sum"][()] < 1000 * 120
    assert last["breachwatch_event_latency_seconds_bucket"][(("le", "+Inf"),)] == 1000
    assert last["breachwatch_batch_seconds_count"][()] >= 10
    buckets = [
        v
        for k, v in sorted(last["breachwatch_event_latency_seconds_bucket"].items(), key=lambda kv: float(kv[0][0][1]))
    ]
    assert buckets == sorted(buckets), "histogram buckets are cumulative"
    # Over HTTP also: the actor profiles held (one actor sent everything) and the process's memory.
    assert pages[-1]["breachwatch_actor_profiles"] == {(("state", "live"),): 1.0, (("state", "packed"),): 0.0}
    assert pages[-1]["process_resident_memory_bytes"][()] > 50_000_000  # Python with numpy and sklearn loaded
    assert pages[-1]["breachwatch_event_latency_seconds_count"][()] == 1000


@pytest.fixture(scope="module")
def crash_dump(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """At least 100k events with attack scenarios, and six malformed lines in the middle."""
    return make_crash_dump(tmp_path_factory.mktemp("crash"), malformed=6)


@pytest.mark.slow
def test_repeated_sigkill_loses_nothing_and_sends_nothing_twice(
    bw_settings: Settings, kafka_bootstrap: str, crash_dump: Path, tmp_path: Path
) -> None:
    """Kill the service with SIGKILL at random points, restart it each time, then compare
    with an uninterrupted replay: every event processed, no incident duplicated, no alert
    reaching the mail provider twice, every malformed message dead-lettered."""
    # 12 random kill points per run here (bench.soak runs 50-60 against the same harness).
    kills = int(os.environ.get("BREACHWATCH_TEST_CRASH_KILLS", "12"))
    assert count_events(crash_dump) - 6 >= 100_000
    # A group of its own: the harness's static member outlives the test by a session timeout,
    # which would hold up the next test joining the default group.
    settings = bw_settings.model_copy(update={"group_id": f"{bw_settings.topic_prefix}crash"})
    report = crash_and_recover(settings, kafka_bootstrap, crash_dump, tmp_path, kills=kills)
    assert report.final_exit_code == 0, report.final_stderr
    _explain_difference(report.live, report.replayed)
    # Every event was processed: the group's committed offsets reached the end of every partition.
    assert report.partitions_behind == 0
    # Nothing missed, none twice. Restarts cut the stream into other batches, and an ongoing
    # anomaly's evidence grows batch by batch, so an incident may hold a few more or fewer
    # evidence events than in one pass; and address-centric findings from different
    # partitions may fold into one incident or two depending on which reached the store
    # first. So: every incident of the uninterrupted run has a counterpart (same actors or
    # attacking addresses, shared evidence), and no incident is opened twice.
    assert report.live, "the simulated attacks must produce incidents"
    assert not report.missing, "an incident of the uninterrupted run is missing"
    # Nor one more: every detector's findings depend on the events alone, not on where
    # restarts cut the stream.
    assert not report.extra, [(i.kind, i.detectors, i.actor_ids) for i in report.extra]
    assert not report.duplicates and not report.duplicates_uninterrupted
    assert report.alerts_delivered and report.alerts_repeated == 0, "an alert reached the mail provider twice"
    assert report.dead_lettered == 6, "every malformed message is dead-lettered (at least once)"


@pytest.mark.slow
def test_sigterm_drains_and_commits(bw_settings: Settings, kafka_bootstrap: str) -> None:
    ensure_topics(bw_settings, kafka_bootstrap)
    send_reads(bw_settings, kafka_bootstrap, 50)
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


def test_the_batch_lock_can_be_stepped_out_of_by_its_holder() -> None:
    """What lets a rebalance through while a batch waits for the database (``_db_waiting``)."""
    from breachwatch.runtime.service import StepOutLock

    lock = StepOutLock()
    taken = threading.Event()

    def other() -> None:
        with lock:
            taken.set()

    with lock, lock:  # re-entrant for its holder
        first = threading.Thread(target=other)
        first.start()
        assert not taken.wait(0.2)  # held: the other thread waits
        with lock.stepped_out():
            assert taken.wait(5)  # let go of at every depth
            first.join(5)
        taken.clear()
        second = threading.Thread(target=other)
        second.start()
        assert not taken.wait(0.2)  # held again after the step out
    assert taken.wait(5)  # released once the holder leaves both levels
    second.join(5)


def test_a_member_offers_the_group_what_it_has_not_restored_once(bw_settings: Settings, kafka_bootstrap: str) -> None:
    """A partition assigned but not restored yet (no state here) is left unclaimed at the next
    join, so the group may give it straight to a member that joined meanwhile; it waits for
    the group's answer, and from then on it is claimed."""
    ensure_topics(bw_settings, kafka_bootstrap)
    service = Service(bw_settings, kafka_bootstrap, app.build_pipeline(bw_settings, app.database(bw_settings)))
    try:
        unit = {TopicPartition(bw_settings.topic(t), 0) for t in ("erp.access", "erp.auth")}
        service.consumer.assignment = lambda: set(unit)  # type: ignore[method-assign]
        service._pending |= unit
        assert service._claimed() == set()
        service._restore_pending()
        assert service._pending == unit  # not restored while the group decides
        service._answered()
        assert service._claimed() == unit  # a follow-up join does not offer it again
        assert service._pending - service._unclaimed == unit  # restored after this batch
    finally:
        service.consumer.close()
        service.refs.close()
        service.producer.close()


def test_a_lone_member_starting_on_new_topics_joins_its_group_once(
    bw_settings: Settings, kafka_bootstrap: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Its first assignment is made knowing the topics' partitions, so it has no reason to join
    again: kafka-python 3.0.12 dropped that second join in about half of such starts, leaving
    the member rebalancing (``streams.group_join``)."""
    ensure_topics(bw_settings, kafka_bootstrap)
    service = Service(bw_settings, kafka_bootstrap, app.build_pipeline(bw_settings, app.database(bw_settings)))
    with caplog.at_level(logging.INFO, logger="breachwatch"):
        service.run(max_idle_s=4)
    assignments = [r for r in caplog.records if r.name == "breachwatch.streams.assignor" and "units to" in r.message]
    assert len(assignments) == 1, [r.message for r in assignments]
    restored = [r.message for r in caplog.records if "assigned (checkpoint" in r.message]
    assert len(restored) == 2 * bw_settings.partitions  # every actor and log unit taken up
    assert "no join under way" not in caplog.text
