"""Event-to-incident latency of ``breachwatch run`` at a fixed produce rate.

    python -m bench.latency [--rate 2000] [--seconds 60] [--attacks-per-second 1]

Starts the local broker, runs ``breachwatch run`` as a separate process, and produces the
simulated dump as live traffic (event times rewritten to the moment of sending) at ``--rate``
events/s, interleaving a cross-tenant read by a fresh actor every ``1/attacks`` seconds. Each
attack's latency is from its send to its incident's row being committed (the incident's
``created_at``). Prints p50/p95/p99 as one JSON line last.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from kafka import KafkaProducer
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from bench.common import broker, dump_for, emit, process_cpu, run_settings, service_env
from breachwatch.core.events import EVENT_TOPICS, REFERENCE_TOPICS
from breachwatch.incidents.tables import IncidentRow
from breachwatch.runtime import app
from breachwatch.streams.dump import dump_file, message_key, read_lines
from breachwatch.streams.kafka_client import client_options, ensure_topics
from breachwatch.streams.produce import Placer


def _topic_lines(dump: Path, topic: str) -> Iterator[tuple[str, bytes]]:
    for _, raw in read_lines(dump_file(dump, topic)):
        yield topic, raw


def _live(raw: bytes, now: datetime) -> bytes:
    """The event with its time set to ``now``: its ``ts`` value spliced in (the producer shares
    the 2 cores with the service, so it spares a JSON round trip per event), else re-encoded."""
    when = now.isoformat().replace("+00:00", "Z").encode()
    start = raw.find(b'"ts":"')
    end = raw.find(b'"', start + 6) if start >= 0 else -1
    if end < 0:
        doc = json.loads(raw)
        doc["ts"] = when.decode()
        return json.dumps(doc, separators=(",", ":")).encode()
    return raw[: start + 6] + when + raw[end:]


def _attack(n: int, now: datetime, tenants: list[str]) -> tuple[bytes, bytes]:
    actor = f"u-bench-intruder-{n}"
    doc = {
        "event_id": f"bench-attack-{n}",
        "ts": now.isoformat().replace("+00:00", "Z"),
        "actor_id": actor,
        "actor_type": "customer_user",
        "actor_tenant": tenants[0],
        "tenant_id": tenants[1 % len(tenants)],
        "action": "read",
        "resource_type": "customer",
        "sensitivity": "personal",
        "records": 25,
        "ip": "198.51.100.99",
        "country": "NL",
    }
    return actor.encode(), json.dumps(doc).encode()


# How long a started service may take to join the group and be given its units, and how long
# the last attacks may take to land once everything is sent, before the run gives up on them.
# Generous: on a loaded machine a start-up took over 20 s; a healthy run uses a second or two.
ASSIGNED_S = 180.0
LANDING_S = 60.0


def _wait_until_assigned(service: subprocess.Popen[bytes], log_path: Path) -> None:
    """Until the service has joined the group and taken its units: sending before that would
    count its start-up as the first attacks' latency."""
    deadline = time.monotonic() + ASSIGNED_S
    while "assigned (checkpoint" not in log_path.read_text():
        if service.poll() is not None or time.monotonic() > deadline:
            service.kill()
            raise SystemExit("the service did not start: " + log_path.read_text()[-2000:])
        time.sleep(0.2)


def _latencies(engine: Engine, sent_attacks: dict[str, float]) -> list[float]:
    """Seconds from each attack's send to its incident's row, for the attacks stored so far."""
    latencies: list[float] = []
    with Session(engine) as session:
        for row in session.scalars(select(IncidentRow)):
            latencies += [row.created_at.timestamp() - sent_attacks[a] for a in row.actor_ids if a in sent_attacks]
    return latencies


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=2000.0, help="events per second to produce")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--attacks-per-second", type=float, default=1.0)
    ap.add_argument("--tenants", type=int, default=60)
    ap.add_argument("--partitions", type=int, default=4)
    args = ap.parse_args()

    dump = dump_for(args.tenants, 21)
    tenant_ids = [json.loads(line)["tenant_id"] for _, line in read_lines(dump_file(dump, "erp.tenants"))]
    with tempfile.TemporaryDirectory() as tmp, broker() as bootstrap:
        work = Path(tmp)
        settings = run_settings(bootstrap, work, args.partitions)
        ensure_topics(settings, bootstrap)
        producer = KafkaProducer(**client_options(settings, bootstrap), acks="all", linger_ms=2)
        place = Placer(producer)  # the producer shares the 2 cores with the service: spare it murmur2
        for topic in REFERENCE_TOPICS:
            for _, raw in read_lines(dump_file(dump, topic)):
                producer.send(settings.topic(topic), key=message_key(topic, raw), value=raw)
        producer.flush()
        env = {**os.environ, **service_env(settings), "BREACHWATCH_POLL_TIMEOUT_MS": "50"}
        service_log = work / "service.log"
        with service_log.open("w") as err:
            service = subprocess.Popen([sys.executable, "-m", "breachwatch", "run"], env=env, stderr=err)
        _wait_until_assigned(service, service_log)

        # The three event topics interleaved in event-time order, as the ERP emits them; merged,
        # keyed and placed before the clock starts, so that the producer's own work (it shares
        # the 2 cores with the service and the broker) does not become the service's latency.
        merged = heapq.merge(*(_topic_lines(dump, t) for t in EVENT_TOPICS), key=lambda item: json.loads(item[1])["ts"])
        planned = [
            (settings.topic(topic), message_key(topic, raw), raw)
            for topic, raw in itertools.islice(merged, int(args.rate * args.seconds) + 1)
        ]
        lines = iter([(full, key, place(full, key), raw) for full, key, raw in planned])
        del planned
        sent_attacks: dict[str, float] = {}
        started = time.perf_counter()
        cpu_at_start = process_cpu(service.pid)
        next_attack = started
        produced = 0
        while time.perf_counter() - started < args.seconds:
            now = time.perf_counter()
            due = int((now - started) * args.rate) - produced
            for _ in range(max(due, 0)):
                item = next(lines, None)
                if item is None:
                    service.send_signal(signal.SIGTERM)
                    service.wait(60)
                    raise SystemExit(
                        f"the dump ran out after {produced:,} events: lower --rate or --seconds, or raise --tenants"
                    )
                full, key, partition, raw = item
                producer.send(full, key=key, value=_live(raw, datetime.now(UTC)), partition=partition)
                produced += 1
            if now >= next_attack:
                key, value = _attack(len(sent_attacks), datetime.now(UTC), tenant_ids)
                producer.send(settings.topic("erp.access"), key=key, value=value)
                producer.flush()
                sent_attacks[key.decode()] = time.time()
                next_attack += 1.0 / args.attacks_per_second
            time.sleep(0.002)
        producer.flush()
        cpu_at_end = process_cpu(service.pid)
        sending_s = time.perf_counter() - started
        engine = app.database(settings)
        deadline = time.monotonic() + LANDING_S
        while len(latencies := _latencies(engine, sent_attacks)) < len(sent_attacks) and time.monotonic() < deadline:
            time.sleep(0.5)  # the last attacks are still on their way
        service.send_signal(signal.SIGTERM)
        service.wait(60)
        missing = len(sent_attacks) - len(latencies)
    if not latencies:
        emit({"bench": "latency", "error": "no attack produced an incident"})
        return
    emit(
        {
            "bench": "latency",
            "rate_eps": args.rate,
            "produced": produced,
            "attacks": len(sent_attacks),
            "missing": missing,
            "p50_s": round(statistics.median(latencies), 3),
            "p95_s": round(percentile(latencies, 0.95), 3),
            "p99_s": round(percentile(latencies, 0.99), 3),
            "max_s": round(max(latencies), 3),
            # How much of a core the service used while the traffic flowed: near 1.0, it is at
            # its limit beside the producer and the broker, and latency is queueing.
            "service_cpu_share": round((cpu_at_end - cpu_at_start) / sending_s, 3),
        }
    )


if __name__ == "__main__":
    main()
