"""Topic dumps (a folder of ``<topic>.jsonl`` files) as a pipeline source: ``replay``.

The dump is read as the broker would deliver it: reference tables first (they are compacted
topics a consumer reads to the end before it starts), then the event topics merged in event
time and cut into batches, each assigned to units (``streams.units``) by Kafka's partitioner.

Detector state belongs to a unit, so a replay can run units' detectors in worker processes
(``jobs``): this process still reads, orders and batches the events and records every
batch's findings in the same order, so the incidents are those of a replay in one process.
"""

from __future__ import annotations

import contextlib
import heapq
import json
import logging
import multiprocessing
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from multiprocessing.connection import Connection
from operator import attrgetter
from pathlib import Path
from typing import Any, NoReturn

from detectors.base import Finding
from streams.decode import DeadLetter, DecodeFailure, dead_letter, decode
from streams.models import EVENT_TOPICS, KEY_FIELD, REFERENCE_TOPICS, Event
from streams.pipeline import Partitioner, Pipeline, fewer_collections, group_by_unit
from streams.units import unit_of, unit_order

log = logging.getLogger(__name__)

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
    except (ValueError, RecursionError):  # a line nested past the parser's depth is unreadable too
        return None
    value = obj.get(KEY_FIELD[topic]) if isinstance(obj, dict) else None
    return value.encode("utf-8") if isinstance(value, str) else None


def _decoded_lines(dump: Path, topic: str, sink: DeadLetterSink, max_bytes: int) -> Iterator[tuple[Any, bytes]]:
    """Each line of a topic file decoded, with its original bytes; a line that cannot be
    decoded is handed to ``sink``."""
    for lineno, raw in read_lines(dump_file(dump, topic)):
        try:
            value = decode(topic, raw, max_bytes)
        except DecodeFailure as failure:
            sink(dead_letter(topic, 0, lineno, message_key(topic, raw), raw, failure))
            continue
        yield value, raw


def _decoded(dump: Path, topic: str, sink: DeadLetterSink, max_bytes: int) -> Iterator[Any]:
    """Each line of a topic file decoded; a line that cannot be is handed to ``sink``."""
    return (value for value, _ in _decoded_lines(dump, topic, sink, max_bytes))


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
    return heapq.merge(*streams, key=attrgetter("ts"))


_TS_TAG = b'"ts":"'
# Event times both parsers read alike (pydantic's and ``datetime.fromisoformat``): anything
# else is decoded in full to be ordered.
_PLAIN_TS = re.compile(rb"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|[+-]\d{2}:\d{2})")


def _plain_field(raw: bytes, tag: bytes) -> bytes | None:
    """The text of the one string field ``tag`` opens, when it has no escapes; else None.

    A JSON string cannot hold an unescaped quote, so ``tag`` (quote, name, quote, colon,
    quote) only matches a key; a second match (the name again in a nested object) or an
    escape in the value leaves it to the full decoder."""
    at = raw.find(tag)
    if at < 0 or raw.find(tag, at + 1) >= 0:
        return None
    start = at + len(tag)
    end = raw.find(b'"', start)
    if end < 0:
        return None
    value = raw[start:end]
    return None if b"\\" in value else value


# One line of an event topic, scanned: (event time, topic rank, line number, bytes, partition key).
_Scanned = tuple[datetime, int, int, bytes, str]


def _scanned(dump: Path, rank: int, sink: DeadLetterSink, max_bytes: int) -> Iterator[_Scanned]:
    """Each line of event topic ``EVENT_TOPICS[rank]`` with what ordering and routing it
    need: its event time and partition key, read straight from the bytes when they are plain
    (no escapes, one of each, an ordinary ISO time), else from the line decoded in full,
    which also sends a line that cannot be decoded to ``sink``.

    A worker decodes every line in full anyway; reading a plain line here costs about a
    sixth of decoding it, and this process is the one every event goes through.
    """
    topic = EVENT_TOPICS[rank]
    key_field = KEY_FIELD[topic]
    key_tag = f'"{key_field}":"'.encode()
    for lineno, raw in read_lines(dump_file(dump, topic)):
        if len(raw) <= max_bytes:
            ts, key = _plain_field(raw, _TS_TAG), _plain_field(raw, key_tag)
            plain: _Scanned | None = None
            if ts is not None and key is not None and _PLAIN_TS.fullmatch(ts):
                # Not UTF-8, or a date that does not exist: the decoder says why.
                with contextlib.suppress(ValueError):
                    plain = (datetime.fromisoformat(ts.decode()), rank, lineno, raw, key.decode())
            if plain is not None:
                yield plain
                continue
        try:
            event = decode(topic, raw, max_bytes)
        except DecodeFailure as failure:
            sink(dead_letter(topic, 0, lineno, message_key(topic, raw), raw, failure))
            continue
        yield event.ts, rank, lineno, raw, getattr(event, key_field)  # type: ignore[union-attr]


def _scanned_ts(item: _Scanned) -> datetime:
    return item[0]


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
    jobs: int = 1,
) -> ReplayReport:
    """Run the pipeline over a dump, deterministically, in event-time order.

    With ``jobs`` above one, units' detectors run in that many worker processes (forked,
    so they share the pipeline's detector factory and reference tables); the incidents are
    the same as with one. Worker processes keep the detector state: afterwards
    ``pipeline.workers`` holds none of it.
    """
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
    jobs = min(jobs, 2 * partitions)  # an actor and a log unit per partition number
    if jobs > 1 and "fork" not in multiprocessing.get_all_start_methods():
        log.warning("replay: worker processes need the fork start method; using one process")
        jobs = 1
    with fewer_collections():
        if jobs > 1:
            total = _replay_in_workers(dump, pipeline, partitions, max_bytes, batch_size, _sink, progress, jobs)
        else:
            total = _replay_here(dump, pipeline, partitions, max_bytes, batch_size, _sink, progress)
    return ReplayReport(total, refs, dead, time.perf_counter() - started, pipeline.stats.as_dict())


def _replay_here(
    dump: Path,
    pipeline: Pipeline,
    partitions: int,
    max_bytes: int,
    batch_size: int,
    sink: DeadLetterSink,
    progress: Progress | None,
) -> int:
    partitioner = Partitioner(partitions)
    total = 0
    batch: list[Event] = []
    for event in iter_events(dump, sink, max_bytes):
        batch.append(event)
        if len(batch) >= batch_size:
            pipeline.process(group_by_unit(batch, partitioner))
            total += len(batch)
            batch = []
            if progress:
                progress(total)
    if batch:
        pipeline.process(group_by_unit(batch, partitioner))
        total += len(batch)
        if progress:
            progress(total)
    return total


# --------------------------------------------------------------------- worker processes

# One batch's events for a worker: per unit, (topic rank, line number, original bytes) in order.
_Work = dict[int, list[tuple[int, int, bytes]]]
# A line a worker could not decode: (topic rank, line number, bytes, failure kind, reason).
_Failed = tuple[int, int, bytes, str, str]
# What a worker sends back per batch: per unit its findings, detector errors counted, and the
# lines that could not be decoded.
_Result = tuple[dict[int, list[Finding]], dict[str, int], list[_Failed]]


def _detect_in_worker(pipeline: Pipeline, conn: Connection, siblings: list[Connection], max_bytes: int) -> None:
    """A worker process: decode each batch it is sent and run its units' detectors."""
    for other in siblings:
        # The parent's ends of the workers started before this one: held here, they would
        # keep those workers from seeing the parent go away.
        other.close()
    errors = pipeline.stats.detector_errors
    errors.clear()  # counted before the fork belongs to the parent
    while True:
        work: _Work | None = conn.recv()
        if work is None:
            break
        found: dict[int, list[Finding]] = {}
        failed: list[_Failed] = []
        for p in sorted(work):
            # The parent read only the time and key of most lines: the full check is here.
            events: list[Event] = []
            for rank, lineno, raw in work[p]:
                try:
                    events.append(decode(EVENT_TOPICS[rank], raw, max_bytes))  # type: ignore[arg-type]
                except DecodeFailure as failure:
                    failed.append((rank, lineno, raw, failure.kind, failure.reason))
            found[p] = pipeline.worker(p).detect(events)
        result: _Result = (found, dict(errors), failed)
        errors.clear()
        conn.send(result)
    conn.close()


class _Workers:
    """Worker processes, each owning some units for the whole replay.

    A unit goes to the least-loaded worker the first time it has events (the busiest units of
    the first batch first), which balances the work without changing results: detection of
    one unit never depends on another's."""

    def __init__(self, pipeline: Pipeline, jobs: int, max_bytes: int) -> None:
        ctx = multiprocessing.get_context("fork")
        self.conns: list[Connection] = []
        self.procs: list[Any] = []
        for i in range(jobs):
            parent_end, child_end = ctx.Pipe()
            proc = ctx.Process(
                target=_detect_in_worker,
                args=(pipeline, child_end, list(self.conns), max_bytes),
                name=f"replay-worker-{i}",
                daemon=True,
            )
            proc.start()
            child_end.close()
            self.conns.append(parent_end)
            self.procs.append(proc)
        self.owner: dict[int, int] = {}
        self.load = [0] * jobs

    def send(self, batch: _Work) -> None:
        for p in sorted((p for p in batch if p not in self.owner), key=lambda p: (-len(batch[p]), p)):
            self.owner[p] = min(range(len(self.load)), key=lambda j: (self.load[j], j))
            self.load[self.owner[p]] += len(batch[p])
        work: list[_Work] = [{} for _ in self.conns]
        for p, items in batch.items():
            work[self.owner[p]][p] = items
        for conn, proc, w in zip(self.conns, self.procs, work, strict=True):
            try:
                conn.send(w)
            except OSError:  # a broken pipe: the worker is gone
                self._fail(proc)

    def _fail(self, proc: Any) -> NoReturn:
        proc.join(timeout=10)
        raise RuntimeError(f"replay worker {proc.name} exited with code {proc.exitcode}")

    def receive(self) -> tuple[dict[int, list[Finding]], Counter[str], list[_Failed]]:
        found: dict[int, list[Finding]] = {}
        errors: Counter[str] = Counter()
        failed: list[_Failed] = []
        for conn, proc in zip(self.conns, self.procs, strict=True):
            try:
                part, errs, bad = conn.recv()
            except (EOFError, OSError):
                # The worker is gone (its end of the pipe closed with it): fail, do not hang.
                self._fail(proc)
            found.update(part)
            errors.update(errs)
            failed += bad
        return found, errors, sorted(failed)

    def close(self) -> None:
        for conn in self.conns:
            with contextlib.suppress(BrokenPipeError, OSError):
                conn.send(None)  # a worker that died has nobody listening
        for proc in self.procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.terminate()
                proc.join()
        for conn in self.conns:
            conn.close()


def _replay_in_workers(
    dump: Path,
    pipeline: Pipeline,
    partitions: int,
    max_bytes: int,
    batch_size: int,
    sink: DeadLetterSink,
    progress: Progress | None,
    jobs: int,
) -> int:
    """``_replay_here`` with detection in ``jobs`` processes. The next batch is read while the
    workers detect on one; batches are recorded in order, with findings in unit order."""
    partitioner = Partitioner(partitions)
    streams = [_scanned(dump, rank, sink, max_bytes) for rank in range(len(EVENT_TOPICS))]
    merged = heapq.merge(*streams, key=_scanned_ts)
    workers = _Workers(pipeline, jobs, max_bytes)
    total = 0
    sent = 0  # lines of the batch the workers have, not recorded yet

    def hand_over(batch: _Work, size: int) -> None:
        """Collect the workers' findings of the batch they have, give them the next one,
        then record those findings while they work (in that order: a worker answering
        while it is being sent a batch would wait on a full pipe, and so would we)."""
        nonlocal total, sent
        found: dict[int, list[Finding]] = {}
        failed: list[_Failed] = []
        if sent:
            found, errors, failed = workers.receive()
            pipeline.stats.detector_errors.update(errors)
        if size:
            workers.send(batch)
        if sent:
            for rank, lineno, raw, kind, reason in failed:
                topic = EVENT_TOPICS[rank]
                failure = DecodeFailure(kind, reason)  # type: ignore[arg-type]
                sink(dead_letter(topic, 0, lineno, message_key(topic, raw), raw, failure))
            pipeline.record([f for u in sorted(found, key=unit_order) for f in found[u]])
            total += sent - len(failed)
            if progress:
                progress(total)
        sent = size

    try:
        batch: _Work = {}
        size = 0
        for _, rank, lineno, raw, key in merged:
            # The partition Kafka's partitioner gives the key, as ``unit_for`` finds it.
            batch.setdefault(unit_of(EVENT_TOPICS[rank], partitioner(key)), []).append((rank, lineno, raw))
            size += 1
            if size >= batch_size:
                hand_over(batch, size)
                batch, size = {}, 0
        hand_over(batch, size)
        hand_over({}, 0)
    finally:
        workers.close()
    return total


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
