"""Topic dumps (a folder of ``<topic>.jsonl`` files) as a pipeline source: ``replay``.

The dump is read as the broker would deliver it: reference tables first (they are compacted
topics a consumer reads to the end before it starts), then the event topics merged in event
time and cut into batches, each assigned to partition numbers by Kafka's partitioner.
"""

from __future__ import annotations

import heapq
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streams.decode import DeadLetter, DecodeFailure, dead_letter, decode
from streams.models import EVENT_TOPICS, KEY_FIELD, REFERENCE_TOPICS, Event
from streams.pipeline import Partitioner, Pipeline, group_by_partition

DeadLetterSink = Callable[[DeadLetter], None]
Progress = Callable[[int], None]


def dump_file(dump: Path, topic: str) -> Path:
    return dump / f"{topic}.jsonl"


def read_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """(line number from 0, raw bytes) for each non-blank line; the line number stands in
    for the offset in dead letters and evidence."""
    if not path.exists():
        return
    with path.open("rb") as fh:
        for n, line in enumerate(fh):
            line = line.rstrip(b"\r\n")
            if line.strip():
                yield n, line


def check_dump(dump: Path) -> None:
    if not dump.is_dir():
        raise FileNotFoundError(f"dump folder not found: {dump}")
    if not any(dump_file(dump, t).exists() for t in EVENT_TOPICS):
        raise FileNotFoundError(f"{dump} holds none of {', '.join(t + '.jsonl' for t in EVENT_TOPICS)}")


def message_key(topic: str, raw: bytes) -> bytes | None:
    """The contract's key of a raw message, or None when the value cannot be read."""
    try:
        obj = json.loads(raw)
    except ValueError:
        return None
    value = obj.get(KEY_FIELD[topic]) if isinstance(obj, dict) else None
    return value.encode("utf-8") if isinstance(value, str) else None


def _decoded(dump: Path, topic: str, sink: DeadLetterSink, max_bytes: int) -> Iterator[Any]:
    """Each line of a topic file decoded; a line that cannot be is handed to ``sink``."""
    for lineno, raw in read_lines(dump_file(dump, topic)):
        try:
            yield decode(topic, raw, max_bytes)
        except DecodeFailure as failure:
            sink(dead_letter(topic, 0, lineno, message_key(topic, raw), raw, failure))


def load_reference_tables(pipeline: Pipeline, dump: Path, sink: DeadLetterSink, max_bytes: int) -> int:
    n = 0
    for topic in REFERENCE_TOPICS:
        for value in _decoded(dump, topic, sink, max_bytes):
            pipeline.apply_reference(topic, getattr(value, KEY_FIELD[topic]), value)
            n += 1
    return n


def iter_events(dump: Path, sink: DeadLetterSink, max_bytes: int) -> Iterator[Event]:
    """All event topics merged by event time (ties keep topic order, so output is deterministic)."""
    streams = [_decoded(dump, t, sink, max_bytes) for t in EVENT_TOPICS]
    return heapq.merge(*streams, key=lambda e: e.ts)


@dataclass(slots=True)
class ReplayReport:
    events: int
    reference_records: int
    dead_letters: int
    seconds: float
    stats: dict[str, Any]

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


def replay(
    dump: Path,
    pipeline: Pipeline,
    *,
    partitions: int,
    max_bytes: int,
    batch_size: int = 5000,
    sink: DeadLetterSink | None = None,
    progress: Progress | None = None,
) -> ReplayReport:
    """Run the pipeline over a dump, deterministically, in event-time order."""
    check_dump(dump)
    dead = 0

    def _sink(d: DeadLetter) -> None:
        nonlocal dead
        dead += 1
        pipeline.stats.dead_lettered[d.topic.removesuffix(".dlq")] += 1
        if sink is not None:
            sink(d)

    started = time.perf_counter()
    refs = load_reference_tables(pipeline, dump, _sink, max_bytes)
    partitioner = Partitioner(partitions)
    total = 0
    batch: list[Event] = []
    for event in iter_events(dump, _sink, max_bytes):
        batch.append(event)
        if len(batch) >= batch_size:
            pipeline.process(group_by_partition(batch, partitioner))
            total += len(batch)
            batch = []
            if progress:
                progress(total)
    if batch:
        pipeline.process(group_by_partition(batch, partitioner))
        total += len(batch)
        if progress:
            progress(total)
    return ReplayReport(total, refs, dead, time.perf_counter() - started, pipeline.stats.as_dict())


class DeadLetterFile:
    """Dead letters of a replay as JSON lines: the reason, the source position, the original text."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: Any = None

    def __call__(self, d: DeadLetter) -> None:
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = self.path.open("w", encoding="utf-8")
        headers = {k: v.decode("utf-8", "replace") for k, v in d.headers}
        value = d.value.decode("utf-8", "backslashreplace") if d.value is not None else None
        self._fh.write(json.dumps({"dlq_topic": d.topic, "headers": headers, "value": value}) + "\n")

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
