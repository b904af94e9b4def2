"""The SIGKILL crash harness: ``breachwatch run`` killed at random points over a dump on a real
broker, restarted each time, then compared with an uninterrupted replay of the same dump.

Used by the test suite (tests/streams/test_service.py, 20 kills) and by the soak benchmark
(``python -m bench.soak``, as many kills as asked). The checks: every event processed (the
group's committed offsets reach the end of every partition), no incident opened twice, no
alert reaching the mail provider twice, every incident of the uninterrupted run present,
and every malformed message dead-lettered.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from bench.common import GroupLag
from breachwatch.core.events import EVENT_TOPICS
from breachwatch.core.settings import Settings
from breachwatch.incidents.model import IncidentOut
from breachwatch.incidents.store import IncidentStore
from breachwatch.runtime import app
from breachwatch.runtime.replay import replay
from breachwatch.streams.kafka_client import client_options, ensure_topics
from breachwatch.streams.produce import produce_dump

SENDGRID_KEY = "SG.crash-test-key"


def count_events(dump: Path) -> int:
    """Lines of the dump's event topics (malformed ones included)."""
    total = 0
    for topic in EVENT_TOPICS:
        path = dump / f"{topic}.jsonl"
        if path.exists():
            with path.open("rb") as fh:
                total += sum(1 for _ in fh)
    return total


def make_crash_dump(
    out: Path, *, seed: int = 23, days: int = 10, tenants: int = 30, attack_days: int = 3, malformed: int = 6
) -> Path:
    """A simulated dump with attack scenarios and ``malformed`` torn lines spread through erp.access."""
    from breachwatch.devkit.simulate import simulate

    simulate(out, seed=seed, days=days, tenants=tenants, attack_days=attack_days)
    access = out / "erp.access.jsonl"
    lines = access.read_bytes().splitlines(keepends=True)
    step = len(lines) // malformed
    for n in range(malformed):
        # Evenly spread; each insertion shifts the later positions by one.
        lines.insert(step * n + step // 2 + n, b'{"event_id": "torn-%d", "ts": ' % n + b"\n")
    access.write_bytes(b"".join(lines))
    return out


def replay_incidents(settings: Settings, dump: Path, db: Path) -> list[IncidentOut]:
    """The incidents of one uninterrupted replay of ``dump``, in a database of their own."""
    engine = app.database(settings, f"sqlite:///{db}")
    pipeline = app.build_pipeline(settings, engine, notify=False)
    replay(dump, pipeline, partitions=settings.partitions, max_bytes=settings.max_message_bytes)
    return IncidentStore(engine).incidents()


def same_incident(a: IncidentOut, b: IncidentOut) -> bool:
    """Same actors or attacking addresses (or, for incidents naming neither, such as a log
    session without a user, the same kind), and shared evidence."""
    nameless = not (a.actor_ids or a.source_ips or b.actor_ids or b.source_ips) and a.kind == b.kind
    who = set(a.actor_ids) & set(b.actor_ids) or set(a.source_ips) & set(b.source_ips) or nameless
    return bool(who and set(a.evidence_event_ids) & set(b.evidence_event_ids))


def unmatched(ours: list[IncidentOut], theirs: list[IncidentOut]) -> list[IncidentOut]:
    """Incidents of ``ours`` with no counterpart (same actors or addresses, shared evidence) in ``theirs``."""
    return [i for i in ours if not any(same_incident(i, j) for j in theirs)]


def duplicates(incidents: list[IncidentOut]) -> list[tuple[str, list[str], str, str]]:
    """Pairs of incidents of one kind about the same actors, opened within the correlation window."""
    out = []
    for n, a in enumerate(incidents):
        for b in incidents[n + 1 :]:
            same = a.kind == b.kind and a.actor_ids and sorted(a.actor_ids) == sorted(b.actor_ids)
            if same and abs((a.opened_at - b.opened_at).total_seconds()) < 6 * 3600:
                out.append((a.kind, a.actor_ids, a.opened_at.isoformat(), b.opened_at.isoformat()))
    return out


@dataclass(slots=True)
class CrashReport:
    """What the harness measured; the caller decides what must hold."""

    kills: int
    events: int
    seconds: float
    final_exit_code: int
    final_stderr: str
    partitions_behind: int  # event-topic partitions whose committed offset is short of the end
    dead_lettered: int  # distinct malformed source positions found in the dead-letter topic
    alerts_delivered: int
    alerts_repeated: int  # alerts the mail provider accepted more than once
    live: list[IncidentOut] = field(default_factory=list)
    replayed: list[IncidentOut] = field(default_factory=list)

    @property
    def missing(self) -> list[IncidentOut]:
        """Incidents of the uninterrupted run with no counterpart after the crashes."""
        return unmatched(self.replayed, self.live)

    @property
    def extra(self) -> list[IncidentOut]:
        """Incidents after the crashes with no counterpart in the uninterrupted run."""
        return unmatched(self.live, self.replayed)

    @property
    def duplicates(self) -> list[tuple[str, list[str], str, str]]:
        """Incidents opened twice after the crashes that one uninterrupted pass opened once."""
        one_pass = {(kind, tuple(sorted(actors))) for kind, actors, _, _ in self.duplicates_uninterrupted}
        return [d for d in duplicates(self.live) if (d[0], tuple(sorted(d[1]))) not in one_pass]

    @property
    def duplicates_uninterrupted(self) -> list[tuple[str, list[str], str, str]]:
        """Pairs the uninterrupted pass opened itself: a matter of correlation, not of crashes."""
        return duplicates(self.replayed)

    def extra_by_detector(self) -> dict[str, int]:
        return dict(Counter("+".join(i.detectors) for i in self.extra))

    def as_dict(self) -> dict[str, Any]:
        return {
            "kills": self.kills,
            "events": self.events,
            "seconds": round(self.seconds, 1),
            "partitions_behind": self.partitions_behind,
            "duplicates": len(self.duplicates),
            "duplicates_uninterrupted": len(self.duplicates_uninterrupted),
            "missing": len(self.missing),
            "extra": self.extra_by_detector(),
            "incidents": len(self.live),
            "incidents_uninterrupted": len(self.replayed),
            "alerts_delivered": self.alerts_delivered,
            "alerts_repeated": self.alerts_repeated,
            "dead_lettered": self.dead_lettered,
        }


def _partitions_behind(settings: Settings, bootstrap: str) -> int:
    lag = GroupLag(settings, bootstrap)
    try:
        return sum(1 for n in lag.by_topic_partition().values() if n != 0)
    finally:
        lag.close()


def _dead_lettered_positions(settings: Settings, bootstrap: str) -> set[tuple[bytes, bytes]]:
    dlq = KafkaConsumer(**client_options(settings, bootstrap), auto_offset_reset="earliest")
    try:
        topic = settings.topic("erp.access") + ".dlq"
        parts = [TopicPartition(topic, p) for p in dlq.partitions_for_topic(topic) or ()]
        dlq.assign(parts)
        dlq.seek_to_beginning()
        # Read to the end offsets taken now (everything was written before the harness asks).
        ends = dlq.end_offsets(parts)
        positions: set[tuple[bytes, bytes]] = set()
        deadline = time.monotonic() + 30
        while any(dlq.position(tp) < end for tp, end in ends.items()) and time.monotonic() < deadline:
            for msgs in dlq.poll(timeout_ms=1000).values():
                for m in msgs:
                    headers = dict(m.headers)
                    positions.add((headers["bw.source.partition"], headers["bw.source.offset"]))
        return positions
    finally:
        dlq.close()


def crash_and_recover(
    settings: Settings,
    bootstrap: str,
    dump: Path,
    workdir: Path,
    *,
    kills: int,
    seed: int = 20261126,
    alive_s: tuple[float, float] = (1.5, 4.5),
    progress: Any = None,
    churn: bool = False,
) -> CrashReport:
    """Produce ``dump``, kill ``breachwatch run`` with SIGKILL ``kills`` times after a random
    ``alive_s`` each, run it once more to the end, and compare with an uninterrupted replay.

    With ``churn`` a second consumer runs throughout, and the one started and stopped is a
    visitor to its group, stopped with SIGKILL or SIGTERM at random: the steady consumer hands
    units to each visitor and takes them back, in the middle of its batches."""
    from breachwatch.devkit.servers import SendGridServer

    started = time.monotonic()
    ensure_topics(settings, bootstrap)
    produce_dump(settings, bootstrap, dump)
    with SendGridServer(api_key=SENDGRID_KEY) as sendgrid:
        env = {
            **os.environ,
            **settings.as_env("kafka_bootstrap", "topic_prefix", "group_id", "db_url", "partitions"),
            "BREACHWATCH_CHECKPOINT_INTERVAL_S": "1",
            "BREACHWATCH_POLL_MAX_RECORDS": "2000",
            # Static membership: a restarted consumer gets its partitions back at once.
            "BREACHWATCH_GROUP_INSTANCE_ID": "crash-harness-1",
            "BREACHWATCH_MAIL_CHANNEL": "sendgrid",
            "BREACHWATCH_SENDGRID_HOST": sendgrid.url,
            "BREACHWATCH_SENDGRID_API_KEY": SENDGRID_KEY,
        }
        rng = random.Random(seed)
        steady = None
        steady_log = workdir / "steady.log"
        if churn:
            with steady_log.open("w") as log:
                steady = subprocess.Popen(
                    [sys.executable, "-m", "breachwatch", "run"],
                    env={**env, "BREACHWATCH_GROUP_INSTANCE_ID": "crash-harness-steady"},
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                )
        for n in range(kills):
            proc = subprocess.Popen(
                [sys.executable, "-m", "breachwatch", "run"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(rng.uniform(*alive_s))
            proc.send_signal(signal.SIGTERM if churn and rng.random() < 0.5 else signal.SIGKILL)
            proc.wait(timeout=60)
            if progress:
                progress(n + 1)
        steady_failed = ""
        if steady is not None:
            steady.send_signal(signal.SIGTERM)
            if steady.wait(timeout=120) != 0:
                steady_failed = f"the steady consumer exited {steady.returncode}: {steady_log.read_text()[-3000:]}"
        done = subprocess.run(
            [sys.executable, "-m", "breachwatch", "run", "--until-caught-up"],
            env=env,
            capture_output=True,
            text=True,
            timeout=1800,
            check=False,
        )
        delivered = sendgrid.messages
    ids = [
        (m.payload.get("custom_args") or {}).get("message_id") or json.dumps(m.payload, sort_keys=True)
        for m in delivered
    ]
    return CrashReport(
        kills=kills,
        events=count_events(dump),
        seconds=time.monotonic() - started,
        final_exit_code=done.returncode if not steady_failed else 1,
        final_stderr=steady_failed or done.stderr[-3000:],
        partitions_behind=_partitions_behind(settings, bootstrap),
        dead_lettered=len(_dead_lettered_positions(settings, bootstrap)),
        alerts_delivered=len(ids),
        alerts_repeated=len(ids) - len(set(ids)),
        live=IncidentStore(app.database(settings)).incidents(),
        replayed=replay_incidents(settings, dump, workdir / "uninterrupted.db"),
    )
