"""``replay``: the pipeline over a dump, deterministically, in event-time order, in this process
or with units' detectors in worker processes (the incidents are the same either way)."""

from __future__ import annotations

import contextlib
import heapq
import logging
import multiprocessing
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from itertools import islice
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, NoReturn

from breachwatch.core.events import EVENT_TOPICS, Event
from breachwatch.core.findings import Finding
from breachwatch.core.justification import StaffAccess
from breachwatch.core.settings import Settings
from breachwatch.runtime.pipeline import Pipeline, fewer_collections, group_by_unit
from breachwatch.streams.decode import DeadLetter, DecodeFailure, dead_letter, decode
from breachwatch.streams.dump import (
    DeadLetterSink,
    Progress,
    check_dump,
    iter_events,
    load_reference_tables,
    message_key,
    scanned,
    scanned_ts,
)
from breachwatch.streams.partitions import Partitioner
from breachwatch.streams.units import unit_of, unit_order

log = logging.getLogger(__name__)


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
    refs = load_reference_tables(pipeline.apply_reference, dump, _sink, max_bytes)
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
    events = iter_events(dump, sink, max_bytes)
    while batch := list(islice(events, batch_size)):
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
# What a worker sends back per batch: per unit its findings and the staff accesses it judged,
# detector errors counted, and the lines that could not be decoded.
_Result = tuple[dict[int, tuple[list[Finding], list[StaffAccess]]], dict[str, int], list[_Failed]]


def _detect_in_worker(pipeline: Pipeline, conn: Connection, siblings: list[Connection], max_bytes: int) -> None:
    """A worker process: decode each batch it is sent and run its units' detectors."""
    for other in siblings:
        # The parent's ends of the workers started before this one: held here, they would
        # keep those workers from seeing the parent go away.
        other.close()
    errors = pipeline.stats.detector_errors
    errors.clear()  # counted before the fork belongs to the parent
    # The parent's pooled connections are its own: this process opens its own to read verdicts.
    pipeline.store.engine.dispose(close=False)
    while True:
        work: _Work | None = conn.recv()
        if work is None:
            break
        pipeline.feed_judgements(work)
        found: dict[int, tuple[list[Finding], list[StaffAccess]]] = {}
        failed: list[_Failed] = []
        for p in sorted(work):
            # The parent read only the time and key of most lines: the full check is here.
            events: list[Event] = []
            for rank, lineno, raw in work[p]:
                try:
                    events.append(decode(EVENT_TOPICS[rank], raw, max_bytes))  # type: ignore[arg-type]
                except DecodeFailure as failure:
                    failed.append((rank, lineno, raw, failure.kind, failure.reason))
            worker = pipeline.worker(p)
            found[p] = (worker.detect(events), worker.take_staff_accesses())
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

    def receive(self) -> tuple[dict[int, tuple[list[Finding], list[StaffAccess]]], Counter[str], list[_Failed]]:
        found: dict[int, tuple[list[Finding], list[StaffAccess]]] = {}
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
    streams = [scanned(dump, rank, sink, max_bytes) for rank in range(len(EVENT_TOPICS))]
    merged = heapq.merge(*streams, key=scanned_ts)
    workers = _Workers(pipeline, jobs, max_bytes)
    total = 0
    sent = 0  # lines of the batch the workers have, not recorded yet

    def hand_over(batch: _Work, size: int) -> None:
        """Collect the workers' findings of the batch they have, give them the next one,
        then record those findings while they work (in that order: a worker answering
        while it is being sent a batch would wait on a full pipe, and so would we)."""
        nonlocal total, sent
        found: dict[int, tuple[list[Finding], list[StaffAccess]]] = {}
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
            units = sorted(found, key=unit_order)
            pipeline.record([f for u in units for f in found[u][0]], accesses=[a for u in units for a in found[u][1]])
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


def replay_to_file(
    settings: Settings,
    dump: Path,
    out: Path,
    *,
    db_url: str,
    notify: bool,
    jobs: int,
    echo: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """``breachwatch replay``: the pipeline over ``dump`` into the database at ``db_url``, the
    incidents written to ``out`` (one JSON per line), dead letters beside it; a summary."""
    from breachwatch.runtime import app
    from breachwatch.streams.dump import DeadLetterFile
    from breachwatch.streams.produce import Rate

    engine = app.database(settings, db_url)
    pipeline = app.build_pipeline(settings, engine, app.load_model(settings), notify=notify)
    dlq = DeadLetterFile(out.with_name(out.name + ".dlq.jsonl"))
    try:
        report = replay(
            dump,
            pipeline,
            partitions=settings.partitions,
            max_bytes=settings.max_message_bytes,
            sink=dlq,
            progress=Rate("replay", echo=echo) if echo else None,
            jobs=jobs,
        )
    finally:
        dlq.close()
    incidents = pipeline.store.incidents()
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as fh:
        for inc in incidents:
            fh.write(inc.to_json_line())
    if notify:
        app.dispatcher(settings, engine).drain()
    engine.dispose()
    summary: dict[str, Any] = {
        "events": report.events,
        "events_per_second": round(report.events_per_second),
        "dead_letters": report.dead_letters,
        "incidents": len(incidents),
        "out": str(out),
    }
    if report.dead_letters:
        summary["dead_letter_file"] = str(dlq.path)
    return summary
