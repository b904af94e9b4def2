"""Shared pieces of the benchmarks: a cached simulated dump, a broker, settings for a run."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from breachwatch.core.events import EVENT_TOPICS
from breachwatch.core.settings import Settings, load_settings
from breachwatch.detectors.learned.detector import ModelFileError, load_model
from breachwatch.streams.kafka_client import client_options

BENCH_DIR = Path(os.environ.get("BREACHWATCH_BENCH_DIR", Path.home() / ".cache" / "breachwatch" / "bench"))


def dump_for(tenants: int, days: int, seed: int = 7) -> Path:
    """A simulated dump, generated once per (tenants, days, seed) and kept for later runs."""
    from breachwatch.devkit.simulate import simulate

    out = BENCH_DIR / f"dump-t{tenants}-d{days}-s{seed}"
    if not (out / "labels.json").exists():
        t0 = time.perf_counter()
        simulate(out, seed=seed, days=days, tenants=tenants)
        print(f"simulated {out} in {time.perf_counter() - t0:.1f}s", flush=True)
    return out


def model_for(dump: Path) -> tuple[Path, str]:
    """A model trained on the dump's clean days (``breachwatch train``, kept for later runs) and
    the key it was trained with (its pseudonym key and the key that signs it), generated once
    for the benchmarks and kept beside their dumps (readable by this user only)."""
    key_file = BENCH_DIR / "pseudonym.key"
    if not key_file.exists():
        BENCH_DIR.mkdir(parents=True, exist_ok=True)
        key_file.touch(mode=0o600)
        key_file.write_text(secrets.token_hex(32))
    key = key_file.read_text().strip()
    model = dump / "model.skops"
    if model.exists() and not _loads(model, key):
        model.unlink()  # left by an older version (unsigned) or another key: trained again
    if not model.exists():
        until = json.loads((dump / "labels.json").read_text())["clean_until"]
        subprocess.run(
            [sys.executable, "-m", "breachwatch", "train", str(dump), "--until", until, "--model", str(model)],
            env={**os.environ, "BREACHWATCH_PSEUDONYM_KEY": key, "BREACHWATCH_MODEL_SIGNING_KEY": key},
            stdout=subprocess.DEVNULL,
            check=True,
        )
    return model, key


def _loads(model: Path, key: str) -> bool:
    """Whether the kept model is one this version reads with this key."""
    try:
        load_model(model, key.encode())
    except ModelFileError:
        return False
    return True


def count_events(dump: Path) -> int:
    n = 0
    for topic in ("erp.access", "erp.auth", "erp.logs"):
        path = dump / f"{topic}.jsonl"
        if path.exists():
            with path.open("rb") as fh:
                n += sum(1 for _ in fh)
    return n


def count_actors(dump: Path) -> int:
    actors: set[str] = set()
    for topic in ("erp.access", "erp.auth"):
        with (dump / f"{topic}.jsonl").open("rb") as fh:
            for line in fh:
                actors.add(json.loads(line)["actor_id"])
    return len(actors)


@contextmanager
def broker() -> Iterator[str]:
    """``KAFKA_BOOTSTRAP`` if set, else a local broker for the duration of the benchmark."""
    if os.environ.get("KAFKA_BOOTSTRAP"):
        yield os.environ["KAFKA_BOOTSTRAP"]
        return
    from breachwatch.devkit.local_kafka import LocalKafka

    settings = load_settings()
    with tempfile.TemporaryDirectory() as tmp:
        local = LocalKafka(settings.cache_dir, settings.kafka_version, work_dir=Path(tmp) / "kafka", heap="1g")
        local.fetch()
        bootstrap = local.start()
        try:
            yield bootstrap
        finally:
            local.stop()


def run_settings(bootstrap: str, workdir: Path, partitions: int, **extra: Any) -> Settings:
    tag = uuid.uuid4().hex[:8]
    return load_settings(
        kafka_bootstrap=bootstrap,
        topic_prefix=f"bench{tag}.",
        group_id=f"bench-{tag}",
        partitions=partitions,
        db_url=f"sqlite:///{workdir / f'bench-{tag}.db'}",
        outbox_dir=workdir / "outbox",
        **extra,
    )


def service_env(settings: Settings) -> dict[str, str]:
    """Environment for a ``breachwatch run`` process that joins this benchmark's topics and group."""
    return settings.as_env("kafka_bootstrap", "topic_prefix", "group_id", "db_url", "outbox_dir")


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat: the
    difference over a run says how many cores were busy (consumers, broker and all)."""
    tick = os.sysconf("SC_CLK_TCK")
    with open("/proc/stat") as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields) - idle) / tick, sum(fields) / tick


class CpuUse:
    """Cores this process and the whole machine (broker included) kept busy over a block."""

    def __enter__(self) -> CpuUse:
        self._wall, self._own, self._machine = time.perf_counter(), time.process_time(), machine_cpu()
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.perf_counter() - self._wall
        busy, total = machine_cpu()
        self.own = (time.process_time() - self._own) / wall
        self.machine = (busy - self._machine[0]) / (total - self._machine[1]) * (os.cpu_count() or 1)

    def as_dict(self) -> dict[str, float]:
        return {"process_cores": round(self.own, 2), "machine_cores_busy": round(self.machine, 2)}

    def __str__(self) -> str:
        return f"this process {self.own:.2f} cores, machine {self.machine:.2f} of {os.cpu_count()} busy"


def process_cpu(pid: int) -> float:
    """User + system CPU seconds a process has used (Linux)."""
    with open(f"/proc/{pid}/stat") as fh:
        # Fields after the command name (which may hold spaces) start at state.
        rest = fh.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")


def emit(result: dict[str, Any]) -> None:
    """The benchmark's one machine-readable line, printed last."""
    print(json.dumps(result), flush=True)


class GroupLag:
    """The group's lag on the event topics, from one admin client: benchmarks ask it a few times a
    second, so it must cost the machine (whose cores the consumers need) next to nothing. The
    topics must hold everything they will (the ends are read once)."""

    def __init__(self, settings: Settings, bootstrap: str) -> None:
        consumer = KafkaConsumer(**client_options(settings, bootstrap))
        self.tps = [
            TopicPartition(settings.topic(t), p)
            for t in EVENT_TOPICS
            for p in consumer.partitions_for_topic(settings.topic(t)) or ()
        ]
        self.end = consumer.end_offsets(self.tps)
        consumer.close()
        self.group = settings.group_id
        self.admin = KafkaAdminClient(**client_options(settings, bootstrap))

    def by_topic_partition(self) -> dict[TopicPartition, int]:
        """Messages not yet committed by the group, per event topic partition."""
        try:
            committed = self.admin.list_group_offsets({self.group: self.tps}).get(self.group, {})
        except KafkaError as exc:
            if not exc.retriable:
                raise
            committed = {}  # e.g. no group coordinator yet on a fresh broker: nothing committed
        lag: dict[TopicPartition, int] = {}
        for tp in self.tps:
            done = committed.get(tp)
            lag[tp] = self.end[tp] - (done.offset if done is not None and done.offset >= 0 else 0)
        return lag

    def __call__(self) -> dict[int, int]:
        """The same, summed per partition number."""
        lag: dict[int, int] = {}
        for tp, n in self.by_topic_partition().items():
            lag[tp.partition] = lag.get(tp.partition, 0) + n
        return lag

    def close(self) -> None:
        self.admin.close()
