"""The one processing pipeline both sources feed: Kafka (``run``) and a dump (``replay``).

Detection state is scoped to a *unit* (``streams.units``): partition p of erp.access and
erp.auth is actor unit p, partition p of erp.logs log unit p, each handled by one
``PartitionWorker`` with the detectors of its topics. Because an actor's events always land
in the same partition (key = actor_id), each actor worker sees whole actors, its state can be
checkpointed with exactly the offsets it reflects, and a rebalance hands a unit, with its
state, to another consumer. ``replay`` assigns events to partitions with Kafka's own
partitioner, so a replay and the live service reach the same verdicts.
"""

from __future__ import annotations

import gc
import logging
import time
from bisect import bisect_right
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from operator import attrgetter, itemgetter
from typing import Any

from sqlalchemy.exc import DBAPIError

from breachwatch.core.batch import EventBatch
from breachwatch.core.events import ACTOR_TOPICS, LOGS, Event, LogRecord, Reference
from breachwatch.core.findings import DetectionContext, Detector, Finding
from breachwatch.core.justification import ApprovalPolicy, Grant, StaffAccess
from breachwatch.core.reference import ReferenceTables
from breachwatch.incidents.store import IncidentStore, RecordResult
from breachwatch.runtime.checkpoints import Checkpoint, CheckpointStore, StaleCheckpoint, commit_batch
from breachwatch.streams.partitions import Partitioner
from breachwatch.streams.units import (
    CostMeter,
    is_log_unit,
    kind_of,
    unit_name,
    unit_of,
    unit_order,
    unit_partition,
    unit_topics,
)

log = logging.getLogger(__name__)

DetectorFactory = Callable[[], list[Detector]]
# Reads the tenants that require approval and their access requests (``privacy.approvals``).
GrantsLoader = Callable[[], tuple[list[ApprovalPolicy], list[Grant]]]
GRANTS_EVERY_S = 5.0  # how often the live service re-reads them; accesses wait longer to settle


# Event times are all held in UTC (see ``streams.models``), so comparing them as datetimes
# orders them as their timestamps would, without a Python call per event.
_ts = attrgetter("ts")
_time_topic_offset = itemgetter(0, 1, 2)
_first = itemgetter(0)


@dataclass(slots=True)
class Stats:
    """Counters a run reports (and exports as metrics)."""

    consumed: Counter[str] = field(default_factory=Counter)  # per topic
    dead_lettered: Counter[str] = field(default_factory=Counter)  # per topic
    detector_errors: Counter[str] = field(default_factory=Counter)
    findings: int = 0
    duplicate_findings: int = 0
    incidents_opened: int = 0
    batches: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "consumed": dict(self.consumed),
            "dead_lettered": dict(self.dead_lettered),
            "detector_errors": dict(self.detector_errors),
            "findings": self.findings,
            "duplicate_findings": self.duplicate_findings,
            "incidents_opened": self.incidents_opened,
            "batches": self.batches,
        }


class PartitionWorker:
    """The detectors, and their state, of one unit (a partition number of some topics)."""

    def __init__(self, unit: int, detectors: list[Detector], tables: ReferenceTables, stats: Stats) -> None:
        self.unit = unit
        self.detectors = detectors
        self.ctx = DetectionContext(tables=tables, partition=unit_partition(unit))
        self.stats = stats
        # The write of the unit's checkpoint this worker's state was last saved to or loaded
        # from (see ``incidents.store.StaleCheckpoint``).
        self.seq = 0

    def detect(self, events: list[Event]) -> list[Finding]:
        # Batches mix topics; detectors see them in event-time order (stable, so events with
        # equal times keep their arrival order and the result is deterministic).
        events.sort(key=_ts)
        # Its columns are built once, by the first detector that reads them, for all of them.
        batch = EventBatch(events)
        findings: list[Finding] = []
        for d in self.detectors:
            try:
                findings.extend(d.process(batch, self.ctx))
            except Exception:
                # A detector bug must not stop detection for everyone: log, count, carry on.
                self.stats.detector_errors[d.name] += 1
                log.exception(
                    "detector %s failed on a batch of %d events (%s)", d.name, len(events), unit_name(self.unit)
                )
        return findings

    def take_staff_accesses(self) -> list[StaffAccess]:
        """The staff accesses its detectors judged since the last call (the transparency log)."""
        return [a for d in self.detectors for a in d.take_staff_accesses()]

    def state(self) -> dict[str, Any]:
        """Every detector's whole state."""
        return {d.name: d.state() for d in self.detectors}

    def restore(self, cp: Checkpoint) -> None:
        """Take up a checkpoint: each detector's head (or whole state) and its saved items, and
        the write the next checkpoint of changes builds on."""
        for d in self.detectors:
            if d.name in cp.state:
                d.load_state_items(cp.state[d.name], cp.items.get(d.name, {}))
        self.seq = cp.seq

    def checkpoint(self, group_id: str, offsets: dict[str, int]) -> Checkpoint:
        """What a checkpoint of this unit writes now: each detector's state, itemised ones by
        what changed since the last checkpoint saved (see ``saved``)."""
        deltas = {d.name: d.state_delta() for d in self.detectors}
        return Checkpoint(
            group_id,
            self.unit,
            offsets,
            {name: delta.head for name, delta in deltas.items()},
            items={name: delta.items for name, delta in deltas.items() if delta.itemised},
            dropped={name: delta.dropped for name, delta in deltas.items() if delta.itemised and delta.dropped},
            complete=frozenset(name for name, delta in deltas.items() if delta.itemised and delta.complete),
            seq=self.seq,
        )

    def saved(self, seq: int) -> None:
        """The last ``checkpoint()`` is durable, as write ``seq`` of the unit's checkpoint."""
        self.seq = seq
        for d in self.detectors:
            d.delta_saved()

    def void(self) -> None:
        """The unit's stored checkpoint is another consumer's: the next one is written whole."""
        for d in self.detectors:
            d.delta_void()


class Pipeline:
    """Reference tables, partition workers and the incident store, wired together."""

    def __init__(
        self,
        store: IncidentStore,
        detector_factory: DetectorFactory,
        *,
        group_id: str = "breachwatch",
        tables: ReferenceTables | None = None,
        db_retry: Callable[[Callable[[], RecordResult]], RecordResult] | None = None,
        judgements_every_s: float = 5.0,
        grants: GrantsLoader | None = None,
    ) -> None:
        self.store = store
        self.detector_factory = detector_factory
        self.group_id = group_id
        self.tables = tables or ReferenceTables()
        self.checkpoints = CheckpointStore(store.engine)
        self.workers: dict[int, PartitionWorker] = {}  # per unit
        self._actor_names: set[str] | None = None
        self.stats = Stats()
        # What each unit kind's events cost to judge here (weighs units for the group leader).
        self.costs = CostMeter()
        # How the database write of a batch is retried; the service installs a backoff that
        # keeps the consumer in its group while the database is away.
        self.db_retry = db_retry or (lambda fn: fn())
        # People's verdicts reach the detectors between batches, looked up at most this often
        # (wall clock): a false positive stops the pattern in the running service.
        self.judgements_every_s = judgements_every_s
        self._judgements_due = 0.0
        self.grants_loader = grants
        self._grants_at = float("-inf")
        self.refresh_grants(force=True)

    def refresh_grants(self, *, force: bool = False) -> None:
        """Re-read the approval table the detectors judge staff accesses against, at most every
        ``GRANTS_EVERY_S``. Judgements read it "as of" each access's time, so when it is read
        changes nothing as long as it is before the access settles; a failed read keeps the last."""
        if self.grants_loader is None or (not force and time.monotonic() - self._grants_at < GRANTS_EVERY_S):
            return
        self._grants_at = time.monotonic()
        try:
            policies, grants = self.grants_loader()
        except Exception as exc:
            log.warning("could not read access approvals (%s); judging with the last ones read", type(exc).__name__)
            return
        self.tables.grants.replace(policies, grants)

    def _new_worker(self, unit: int) -> PartitionWorker:
        detectors = [d for d in self.detector_factory() if _judges(d, unit_topics(unit))]
        w = self.workers[unit] = PartitionWorker(unit, detectors, self.tables, self.stats)
        return w

    def worker(self, unit: int) -> PartitionWorker:
        return self.workers.get(unit) or self._new_worker(unit)

    def restore(self, unit: int) -> Checkpoint | None:
        """Start (or restart) a unit's worker from its checkpoint, if it has one."""
        w = self._new_worker(unit)
        cp = self.load_checkpoint(unit)
        if cp is not None:
            w.restore(cp)
        return cp

    def load_checkpoint(self, unit: int) -> Checkpoint | None:
        """The unit's checkpoint.

        Before actor and log units were split, one checkpoint per partition number held both
        (under the actor unit's key, which is the partition number). Whichever of the two
        units is restored first splits it, in one transaction, so neither loses its state.
        """
        cp = self.checkpoints.load(self.group_id, unit)
        if is_log_unit(unit):
            if cp is not None:
                return cp
            combined = self.checkpoints.load(self.group_id, unit_partition(unit))
        else:
            combined = cp
        if combined is None or (
            set(combined.offsets) <= set(ACTOR_TOPICS) and combined.state.keys() <= self._actor_states
        ):
            return cp
        actor = Checkpoint(
            self.group_id,
            combined.partition,
            {t: o for t, o in combined.offsets.items() if t in ACTOR_TOPICS},
            {n: s for n, s in combined.state.items() if n in self._actor_states},
        )
        logs = Checkpoint(
            self.group_id,
            unit_of(LOGS, combined.partition),
            {t: o for t, o in combined.offsets.items() if t == LOGS},
            {n: s for n, s in combined.state.items() if n not in self._actor_states},
        )
        # A log checkpoint written meanwhile (by another consumer) is newer than the combined one.
        parts = [actor] if self.checkpoints.load(self.group_id, logs.partition) else [actor, logs]
        self._write([], parts)
        log.info("split the checkpoint of partition %d into its actor and log units", combined.partition)
        # As stored (with the write's sequence number, which the unit's next checkpoint builds on).
        return self.checkpoints.load(self.group_id, unit)

    @property
    def _actor_states(self) -> set[str]:
        """Names of the detectors an actor unit runs (their states are the actor unit's)."""
        if self._actor_names is None:
            self._actor_names = {d.name for d in self.detector_factory() if _judges(d, ACTOR_TOPICS)}
        return self._actor_names

    def drop(self, unit: int) -> None:
        self.workers.pop(unit, None)

    def apply_reference(self, topic: str, key: str, value: Reference | None) -> None:
        self.tables.apply(topic, key, value)

    def process(
        self,
        events_by_unit: dict[int, list[Event]],
        checkpoint_offsets: dict[int, dict[str, int]] | None = None,
        *,
        retry: bool = True,
    ) -> RecordResult:
        """Detect on one batch and durably record what it produced (and, if given, checkpoints).

        Detection runs exactly once per batch; only the database write is retried, so a
        transient database error never applies the same events to detector state twice.
        ``retry=False`` makes one attempt, for callers that must not block (a rebalance).
        """
        findings = self.detect(events_by_unit)
        return self.record(findings, checkpoint_offsets, retry=retry, accesses=self.take_staff_accesses())

    def take_staff_accesses(self) -> list[StaffAccess]:
        """Staff accesses every unit judged since the last call, in unit order."""
        return [a for u in sorted(self.workers, key=unit_order) for a in self.workers[u].take_staff_accesses()]

    def feed_judgements(self, units: Iterable[int], *, force: bool = False) -> int:
        """Hand the units' detectors the verdicts given since each last took one in (their
        states hold how far they are, so a restored unit catches up); returns how many went
        in. Between batches only, so what a batch finds never depends on when a person
        clicked during it; a replay takes in what the store held when it started."""
        now = time.monotonic()
        if not force and now < self._judgements_due:
            return 0
        self._judgements_due = now + self.judgements_every_s
        takers = [(d, seq) for u in units for d in self.worker(u).detectors if (seq := d.judgement_seq()) is not None]
        if not takers:
            return 0
        try:
            judgements = self.store.judgements_after(min(seq for _, seq in takers))
        except DBAPIError as exc:
            # The database is away: the batch is judged without the newest verdicts, which the
            # detectors take in once it is back (their states hold how far they got). Waiting
            # here instead would let a rebalance take units away before they are judged; the
            # batch's write waits for the database (``db_retry``) with nothing judged twice.
            log.warning("verdicts not read (%s); fed to the detectors once the database is back", type(exc).__name__)
            self._judgements_due = 0.0
            return 0
        fed = 0
        for d, seq in takers:
            new = [j for j in judgements if j.seq > seq]
            if new:
                d.judged(new)
                fed += len(new)
        return fed

    def detect(self, events_by_unit: dict[int, list[Event]]) -> list[Finding]:
        """Run each unit's detectors on its events; findings in unit order (``unit_order``)."""
        self.refresh_grants()
        self.feed_judgements(events_by_unit)
        findings: list[Finding] = []
        for u in sorted(events_by_unit, key=unit_order):
            events = events_by_unit[u]
            started = time.perf_counter()
            findings.extend(self.worker(u).detect(events))
            self.costs.add(kind_of(u), len(events), time.perf_counter() - started)
        return findings

    def _write(
        self, findings: list[Finding], checkpoints: list[Checkpoint], accesses: list[StaffAccess] | None = None
    ) -> tuple[RecordResult, dict[int, int]]:
        return commit_batch(self.store, self.checkpoints, findings, checkpoints, self.tables.tenants, accesses or [])

    def record(
        self,
        findings: list[Finding],
        checkpoint_offsets: dict[int, dict[str, int]] | None = None,
        *,
        retry: bool = True,
        accesses: list[StaffAccess] | None = None,
    ) -> RecordResult:
        """Durably record one batch's findings and judged staff accesses (and, if given,
        checkpoints); see ``process``."""
        checkpoints: list[Checkpoint] = []

        def write() -> tuple[RecordResult, dict[int, int]]:
            return self._write(findings, checkpoints, accesses)

        # A checkpoint is a unit's state (of its actors, those that changed) as plain JSON
        # values: up to hundreds of thousands of short-lived objects. Counted as allocations,
        # they set off collections that walk them and the detector state behind them (up to
        # half a second each, the live service's slowest batches); reference counting frees
        # them anyway, so none runs while they exist.
        with collections_paused(bool(checkpoint_offsets)):
            units = [(self.worker(p), offsets) for p, offsets in sorted((checkpoint_offsets or {}).items())]
            while True:
                checkpoints[:] = [w.checkpoint(self.group_id, offsets) for w, offsets in units]
                try:
                    result, seqs = self.db_retry(write) if retry else write()
                    break
                except StaleCheckpoint as stale:
                    # A consumer the group gave up on may still be writing, or this one is it.
                    # Either way the state written last is consistent: this one's, whole.
                    log.warning("%s; writing this consumer's whole state instead", stale)
                    for w, _ in units:
                        if w.unit in stale.partitions:
                            w.void()
            # Durable: each unit's next checkpoint holds what changes from here.
            for w, _ in units:
                w.saved(seqs[w.unit])
            checkpoints.clear()
        self.stats.batches += 1
        self.stats.findings += result.new_findings
        self.stats.duplicate_findings += result.duplicate_findings
        self.stats.incidents_opened += len(result.opened)
        return result


def _judges(detector: Detector, topics: tuple[str, ...]) -> bool:
    """Whether ``detector`` judges events of any of ``topics`` (one that names none judges all)."""
    return not detector.topics or not set(detector.topics).isdisjoint(topics)


@contextmanager
def collections_paused(pause: bool = True) -> Iterator[None]:
    """No automatic cycle collection inside the block (if ``pause``); the previous setting after."""
    was = gc.isenabled()
    if pause:
        gc.disable()
    try:
        yield
    finally:
        if pause and was:
            gc.enable()


@contextmanager
def fewer_collections(threshold: int = 50_000) -> Iterator[None]:
    """Run Python's cycle collector rarely while a stream is processed.

    A batch allocates tens of thousands of objects that live until it is done. At the default
    threshold (700 allocations) they outlive two young collections and are promoted, and each
    quarter of growth of the old generation then triggers a full collection that walks all of
    detector state: a quarter of a replay's time. Reference counting frees almost all of it
    anyway; cycles are merely found later. Objects alive at the start (modules, models,
    reference tables) are frozen out of collections meanwhile.
    """
    before = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(threshold, *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


def unit_for(event: Event, partitioner: Partitioner) -> int:
    """The unit of an event, from the partition Kafka would give it (key = actor_id, or
    service for logs)."""
    if isinstance(event, LogRecord):
        return unit_of(LOGS, partitioner(event.service))
    return partitioner(event.actor_id)


def group_by_unit(events: Iterable[Event], partitioner: Partitioner) -> dict[int, list[Event]]:
    """Assign events to units the way Kafka would assign them to partitions (``unit_for``,
    inlined: this runs once per event of a replay)."""
    out: dict[int, list[Event]] = defaultdict(list)
    log_unit = [unit_of(LOGS, p) for p in range(partitioner.partitions)]
    for e in events:
        if e.__class__ is LogRecord:
            out[log_unit[partitioner(e.service)]].append(e)  # type: ignore[union-attr]
        else:
            out[partitioner(e.actor_id)].append(e)  # type: ignore[union-attr]
    return out


class Backoff:
    """Retry a database write with exponential backoff until it succeeds or ``stop()`` says so."""

    def __init__(
        self,
        retry_on: tuple[type[BaseException], ...],
        *,
        first: float = 0.5,
        cap: float = 30.0,
        should_stop: Callable[[], bool] = lambda: False,
        wait: Callable[[float, BaseException], None] = lambda delay, _exc: time.sleep(delay),
    ) -> None:
        self.retry_on = retry_on
        self.first, self.cap = first, cap
        self.should_stop = should_stop
        self.wait = wait  # how to spend ``delay`` after ``exc`` (a consumer stays in its group)

    def __call__(self, fn: Callable[[], RecordResult]) -> RecordResult:
        delay = self.first
        while True:
            try:
                return fn()
            except self.retry_on as exc:
                if self.should_stop():
                    raise
                log.warning("database write failed (%s); retrying in %.1fs", type(exc).__name__, delay)
                self.wait(delay, exc)
                delay = min(self.cap, delay * 2)


class EventTimeBuffer:
    """Holds a unit's events until every busy input has moved past them in event time.

    Partition p of erp.access and erp.auth arrive as separate streams, cut into batches
    wherever the fetcher happened to stop. Releasing only events at or before the
    slowest busy stream's latest time hands the detectors the same time-ordered sequence a
    replay does, whatever the batching. A stream with nothing more to read does not hold the
    others back, so a quiet topic adds no latency.

    Items are held per source in offset order (sources are read in order, and releasing keeps
    the order of what stays), so the lowest held offset of a source is its first item: commits
    ask for it every batch without a pass over everything held.

    A source whose held items are in time order as well (the usual case: a producer writes
    events as they happen) is split at the watermark by a binary search; only one whose
    times go back and forth is filtered item by item. Either way the same items are released:
    a stream far ahead of the others is held for many polls, and filtering all it holds at
    every poll cost more than judging its events.
    """

    def __init__(self) -> None:
        # unit -> source -> [(time, topic rank, offset, source, event)] in offset order
        self._items: dict[int, dict[Any, list[tuple[float, int, int, Any, Event]]]] = defaultdict(dict)
        self._max_ts: dict[Any, float] = {}
        self._in_time_order: dict[Any, bool] = {}  # per source: its held items' times never decrease

    def extend(self, source: Any, unit: int, items: list[tuple[float, int, int, Any, Event]]) -> None:
        """Hold ``items`` of ``source``, (time, topic rank, offset, source, event) in offset order."""
        if not items:
            return
        held = self._items[unit].get(source)
        times = list(map(_first, items))
        ordered = times == sorted(times)
        if not held:
            self._items[unit][source] = items
            self._in_time_order[source] = ordered
        else:
            self._in_time_order[source] = ordered and self._in_time_order[source] and held[-1][0] <= times[0]
            held.extend(items)
        # Tuples compare by time first; offsets are unique within a source, so events are never
        # compared.
        ts = max(items)[0]
        if ts > self._max_ts.get(source, float("-inf")):
            self._max_ts[source] = ts

    def release(self, unit: int, busy: Iterable[Any]) -> list[Event]:
        """Events of ``unit`` no busy source can still precede, in (time, topic, offset) order."""
        sources = self._items.get(unit)
        if not sources:
            return []
        watermark = min((self._max_ts.get(s, float("-inf")) for s in busy), default=float("inf"))
        ready: list[tuple[float, int, int, Any, Event]] = []
        for source, items in sources.items():
            if not items:
                continue
            if watermark == float("inf"):
                ready.extend(items)
                sources[source] = []
            elif self._in_time_order[source]:
                cut = bisect_right(items, watermark, key=_first)
                if cut:
                    ready.extend(items[:cut])
                    sources[source] = items[cut:]
            else:
                out = [it for it in items if it[0] <= watermark]
                if out:
                    ready.extend(out)
                    sources[source] = [it for it in items if it[0] > watermark]
        if not ready:
            return []
        ready.sort(key=_time_topic_offset)
        return [it[4] for it in ready]

    def lowest_offsets(self) -> dict[Any, int]:
        """The first still-held offset per source: commits and checkpoints must not pass it."""
        return {s: items[0][2] for sources in self._items.values() for s, items in sources.items() if items}

    def units(self) -> list[int]:
        """Units holding events."""
        return [u for u, sources in self._items.items() if any(sources.values())]

    def drop(self, unit: int) -> None:
        # Every source that ever held items of the unit is still a key of its table.
        for source in self._items.pop(unit, {}):
            self._max_ts.pop(source, None)
            self._in_time_order.pop(source, None)

    def __len__(self) -> int:
        return sum(len(items) for sources in self._items.values() for items in sources.values())
