"""The long-running service: Kafka in, incidents and alerts out (``breachwatch run``).

Order of durability, per batch: decode → dead letters sent → detect → findings, incidents,
outbox messages and (every few seconds) detector checkpoints committed to the database in
one transaction → dead letters flushed → Kafka offsets committed. A crash anywhere in that
sequence re-delivers the batch, and every write of it is idempotent.

The group shares units (``streams.units``: actor unit p is partition p of erp.access and
erp.auth, log unit p partition p of erp.logs), balanced by their backlog and recent volume
(``streams.assignor``). On an assignment the worker for each new unit is restored from its
checkpoint and the consumer seeks to the offsets the checkpoint reflects (or to the start of
the topic when there is none yet), so detector state is never "ahead of" or "behind" the
events it has seen, whichever consumer had the unit before.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.coordinator.assignors.range import RangePartitionAssignor
from kafka.errors import CommitFailedError, InconsistentGroupProtocolError, KafkaError
from kafka.structs import OffsetAndMetadata
from sqlalchemy.exc import DBAPIError, OperationalError

from breachwatch.core.events import EVENT_TOPICS, KEY_FIELD, REFERENCE_TOPICS, Event
from breachwatch.core.settings import ConfigError, Settings
from breachwatch.runtime.metrics import BATCH_BUCKETS, LATENCY_BUCKETS, Histogram
from breachwatch.runtime.pipeline import Backoff, EventTimeBuffer, Pipeline
from breachwatch.storage.db import reachable
from breachwatch.streams.assignor import StickyUnitAssignor, UnitAssignor
from breachwatch.streams.decode import DecodeFailure, dead_letter, decode, decode_all
from breachwatch.streams.group_join import JoinWatch
from breachwatch.streams.kafka_client import client_options, fetch_options, know_partitions
from breachwatch.streams.units import kind_of, unit_name, unit_of

log = logging.getLogger(__name__)

BROKER_AWAY = "Kafka unavailable"  # the health detail while poll() cannot reach the broker
DB_AWAY = "database unavailable"  # ... and while the database cannot be written or read


# /healthz says the process is stalled once its loop has not come round for this long (it
# comes round at least every poll timeout, also while it waits for the database or Kafka; the
# longest step, a first checkpoint of 100,000 actors, takes about 13 s).
STALLED_AFTER_S = 300.0
# What /readyz may say, and nothing else (no host names, versions or error texts).
NOT_READY = {
    "starting": "starting",
    "stopping": "stopping",
    "db": "database unreachable",
    "kafka": "Kafka unreachable",
    "unassigned": "no partitions assigned",
    "restoring": "partitions being restored",
}


@dataclass(slots=True)
class Health:
    """What the health endpoints and the logs report."""

    status: str = "starting"  # starting | ok | degraded | stopping
    detail: str = ""
    last_batch_at: float = 0.0
    # When the consumer loop last came round (monotonic): what liveness is judged by.
    last_loop_at: float = field(default_factory=time.monotonic)


class StepOutLock:
    """A lock that its holder can step out of for a while (re-entrant for its holder).

    ``threading.RLock`` cannot be let go of from deep inside a call and taken back after;
    the consumer needs that while it waits for the database in the middle of a batch.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owner: int | None = None
        self._depth = 0

    def __enter__(self) -> None:
        me = threading.get_ident()
        if self._owner != me:
            self._lock.acquire()
            self._owner = me
        self._depth += 1

    def __exit__(self, *exc: object) -> None:
        self._depth -= 1
        if self._depth == 0:
            self._owner = None
            self._lock.release()

    @contextmanager
    def stepped_out(self) -> Iterator[None]:
        """Others may take the lock during the block, if this thread holds it."""
        me = threading.get_ident()
        if self._owner != me:
            yield
            return
        depth, self._owner, self._depth = self._depth, None, 0
        self._lock.release()
        try:
            yield
        finally:
            self._lock.acquire()
            self._owner, self._depth = me, depth


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, service: Service) -> None:
        self.service = service

    def on_partitions_revoked(self, revoked: Any) -> None:
        self.service._on_revoked(set(revoked))

    def on_partitions_assigned(self, assigned: Any) -> None:
        self.service._on_assigned(set(assigned))


class Service:
    """One consumer of the group; run several (processes) to scale out."""

    def __init__(
        self,
        settings: Settings,
        bootstrap: str,
        pipeline: Pipeline,
        *,
        after_batch: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self.bootstrap = bootstrap
        self.pipeline = pipeline
        self.after_batch = after_batch
        self.health = Health()
        self._stop = threading.Event()
        self._topic_base = {settings.topic(t): t for t in EVENT_TOPICS + REFERENCE_TOPICS}
        self._processed: dict[TopicPartition, int] = {}  # next offset to process, per assigned tp
        self._committed_at_assign: dict[TopicPartition, int] = {}
        self._pending: set[TopicPartition] = set()  # assigned, not yet restored
        # Assigned and not restored when this member last joined, so not claimed: the group
        # may give them to another member, and they wait for its answer (``_claimed``). Each
        # assigned partition is offered so once.
        self._unclaimed: set[TopicPartition] = set()
        self._offered: set[TopicPartition] = set()
        self._buffer = EventTimeBuffer()
        self._ends: dict[TopicPartition, int] = {}  # end offsets asked for while the fetcher knows none
        self._ends_asked_at = 0.0
        self._units: dict[TopicPartition, int] = {}
        # What the group leader balances units by (see ``_refresh_weights``).
        self._weights: dict[TopicPartition, float] = {}
        self._weighed_at = 0.0
        # When each unit's detector state is next written. A checkpoint serialises all of a
        # unit's state (profiles, open sessions with their records), which takes a moment;
        # units are spread over the interval so one batch never writes them all.
        self._next_checkpoint: dict[int, float] = {}
        # Held while a batch is judged and while a revoked unit is checkpointed and dropped:
        # under cooperative rebalancing the group takes units away on the client's network
        # thread at any moment, not only inside poll(). Never held across a call that waits on
        # that thread (poll, commit, offset lookups), which would wait for the lock in turn.
        self._lock = StepOutLock()
        # Read by the metrics endpoint's thread.
        self.event_latency = Histogram(LATENCY_BUCKETS)
        self.batch_time = Histogram(BATCH_BUCKETS)
        opts = client_options(settings, bootstrap)
        self._opts = opts
        self.consumer = KafkaConsumer(
            **opts,
            group_id=settings.group_id,
            group_instance_id=settings.group_instance_id,
            session_timeout_ms=settings.session_timeout_ms,
            heartbeat_interval_ms=settings.heartbeat_interval_ms,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **fetch_options(settings),
            # Units stay whole (an actor's access and auth events reach one worker, which holds
            # all of its state) and are balanced by weight (see streams.assignor).
            partition_assignment_strategy=self._assignors(settings),
            max_poll_interval_ms=600_000,
        )
        self._join_watch = JoinWatch(self.consumer)
        self.refs = KafkaConsumer(**opts, group_id=None, enable_auto_commit=False)
        self.producer = KafkaProducer(
            **opts, acks="all", linger_ms=5, max_request_size=max(settings.max_message_bytes * 2, 1_048_576)
        )
        self.pipeline.db_retry = Backoff(
            (OperationalError, DBAPIError),
            should_stop=self._stop.is_set,
            wait=self._db_waiting,
        )

    def _assignors(self, settings: Settings) -> list[Any]:
        weights = lambda: self._weights  # noqa: E731 - read when the group forms, not now
        if settings.rebalance_protocol == "cooperative":
            return [StickyUnitAssignor(self._assignable_unit, weights, self._claimed, self._answered)]
        # Eager: the older versions' assignors as well, which any member of a group that still
        # holds one agrees on; range keeps units whole too.
        return [
            StickyUnitAssignor(self._assignable_unit, weights, None),
            UnitAssignor(self._assignable_unit, weights),
            RangePartitionAssignor,
        ]

    def _no_common_assignor(self) -> str:
        group = f"consumer group {self.settings.group_id!r}"
        if self.settings.rebalance_protocol == "cooperative":
            return (
                f"the {group} still has members of a version that rebalances eagerly, and a"
                " cooperative consumer cannot join them: set BREACHWATCH_REBALANCE_PROTOCOL=eager"
                " until every member runs this version, then roll once more without it"
            )
        return f"the {group} has members that share no partition assignor with this version"

    # --- control ------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the loop to finish the batch in hand, commit, and exit (SIGTERM calls this)."""
        self._stop.set()

    def alive(self) -> bool:
        """The loop keeps coming round (/healthz); an outage it waits out is no reason to restart."""
        return time.monotonic() - self.health.last_loop_at < STALLED_AFTER_S

    def readiness(self) -> list[str]:
        """Why this consumer is not doing its share now (/readyz); empty when it is.

        The database is asked (a trivial query) as well as remembered failing, so an outage shows
        while the consumer is idle too; Kafka shows as away once the client gives up on a request
        (about half a minute into an outage). Called from the metrics thread.
        """
        status, detail = self.health.status, self.health.detail
        reasons = [NOT_READY[status]] if status in ("starting", "stopping") else []
        if detail.startswith(DB_AWAY) or not reachable(self.pipeline.store.engine):
            reasons.append(NOT_READY["db"])
        if detail.startswith(BROKER_AWAY):
            reasons.append(NOT_READY["kafka"])
        if status not in ("starting", "stopping"):
            if not self.consumer.assignment():
                reasons.append(NOT_READY["unassigned"])
            elif self._pending:
                reasons.append(NOT_READY["restoring"])
        return reasons

    def install_signal_handlers(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stop())

    def _db_waiting(self, delay: float, exc: BaseException) -> None:
        """While the database is away, until its next try: report degraded, fetch nothing,
        stay in the group.

        Nothing of the failed batch is committed, so whatever happens next (recovery, a
        rebalance, a stop) resumes from durable state. Polls with every partition paused,
        so nothing is fetched (what a poll still returns, for a partition assigned meanwhile,
        is sought back to and read again later). A rebalance that poll() runs calls back on
        the network thread, which takes the lock the batch in hand holds: the wait steps out
        of it. The batch's findings and checkpoints are computed already, so a unit taken
        away meanwhile is simply dropped, and its checkpoint, written once the database is
        back, is still its state with its offsets.
        """
        self._degraded(DB_AWAY, exc)
        assigned = self.consumer.assignment()
        if assigned:
            self.consumer.pause(*assigned)
        deadline = time.monotonic() + delay
        with self._lock.stepped_out():
            while (left := deadline - time.monotonic()) > 0:
                self.health.last_loop_at = time.monotonic()
                polled = self.consumer.poll(timeout_ms=max(1, int(min(left, 0.5) * 1000)))
                for tp, msgs in polled.items():
                    self.consumer.seek(tp, msgs[0].offset)

    def _degraded(self, what: str, exc: BaseException) -> None:
        """Report on /healthz what is away, and the kind of error that said so (never its text)."""
        self.health.status, self.health.detail = "degraded", f"{what}: {type(exc).__name__}"

    def _broker_waiting(self, exc: KafkaError) -> None:
        # Said once per outage; the client's own reconnect attempts are DEBUG (``runtime.logs``).
        first = not self.health.detail.startswith(BROKER_AWAY)
        self._degraded(BROKER_AWAY, exc)
        log.log(logging.WARNING if first else logging.DEBUG, "Kafka unavailable (%s); waiting", type(exc).__name__)
        self._stop.wait(1.0)

    def _recovered(self) -> None:
        if self.health.status == "degraded":
            log.info("database available again; resuming consumption")
            self.consumer.resume(*(self.consumer.assignment() - self._pending))

    # --- reference tables ---------------------------------------------------------------

    def load_reference_tables(self, timeout_s: float = 60.0) -> int:
        """Read the compacted topics to their current end before any event is judged."""
        tps = []
        for t in REFERENCE_TOPICS:
            parts = self.refs.partitions_for_topic(self.settings.topic(t)) or set()
            tps += [TopicPartition(self.settings.topic(t), p) for p in parts]
        self.refs.assign(tps)
        self.refs.seek_to_beginning(*tps)
        end = self.refs.end_offsets(tps)
        n = 0
        deadline = time.monotonic() + timeout_s
        while any(self.refs.position(tp) < end[tp] for tp in tps):
            if time.monotonic() > deadline:
                raise TimeoutError("reference topics could not be read to their end in time")
            self.health.last_loop_at = time.monotonic()
            n += self._poll_reference(500)
        return n

    def _poll_reference(self, timeout_ms: int) -> int:
        n = 0
        for tp, msgs in self.refs.poll(timeout_ms=timeout_ms).items():
            base = self._topic_base[tp.topic]
            for m in msgs:
                try:
                    value = decode(base, m.value, self.settings.max_message_bytes)
                except DecodeFailure as failure:
                    if self._send_dead_letter(tp, m, failure):
                        # A directory entry lost is worth a line of its own (they are few).
                        log.warning("dead-lettered %s[%d]@%d: %s", tp.topic, tp.partition, m.offset, failure.kind)
                    continue
                key = m.key.decode("utf-8", "replace") if m.key is not None else None
                if value is not None:
                    key = getattr(value, KEY_FIELD[base])
                if key is not None:
                    self.pipeline.apply_reference(base, key, value)
                    n += 1
        return n

    # --- units and their weights --------------------------------------------------------

    def _unit(self, tp: TopicPartition) -> int:
        u = self._units.get(tp)
        if u is None:
            u = self._units[tp] = unit_of(self._topic_base[tp.topic], tp.partition)
        return u

    def _assignable_unit(self, topic: str, partition: int) -> int | None:
        base = self._topic_base.get(topic)
        return unit_of(base, partition) if base in EVENT_TOPICS else None

    def _refresh_weights(self, topics: list[str], *, every_s: float = 30.0) -> None:
        """Measure what each event partition has to do, for when this consumer leads the group.

        A partition's weight is its backlog (end offset less what this consumer processed, or
        else the group's committed offset) plus what arrived over the last ``every_s`` x 10
        seconds, times what one of its events costs to decode and judge: the backlog dominates
        a catch-up, the arrivals the steady state. The cost is this consumer's own figure once
        it has judged enough of both unit kinds (``CostMeter``), ``EVENT_COST`` before. Measured
        in the main thread (the assignor runs where no blocking call is allowed); a failure keeps the
        last weights.
        """
        now = time.monotonic()
        if now - self._weighed_at < every_s:
            return
        self._weighed_at = now
        # Short timeouts: this runs between batches, and a broker that is away (the first
        # timeout ends the attempt) must not hold up processing for long.
        wait = 2000
        try:
            tps = [TopicPartition(t, p) for t in topics for p in self.consumer.partitions_for_topic(t) or ()]
            end = self.consumer.end_offsets(tps, timeout_ms=wait)
            begin = self.consumer.beginning_offsets(tps, timeout_ms=wait)
            since_ms = int((time.time() - every_s * 10) * 1000)
            recent = self.consumer.offsets_for_times({tp: since_ms for tp in tps}, timeout_ms=wait)
            weights: dict[TopicPartition, float] = {}
            costs = self.pipeline.costs.costs()
            for tp in tps:
                done = self._processed.get(tp)
                if done is None:
                    done = self.consumer.committed(tp, timeout_ms=wait) or begin[tp]
                first_recent = recent.get(tp)
                arrived = end[tp] - first_recent.offset if first_recent is not None else 0
                cost = costs.get(self._topic_base[tp.topic], 1.0)
                weights[tp] = cost * float(max(0, end[tp] - done) + max(0, arrived))
            self._weights = weights
        except KafkaError as exc:
            log.warning("could not measure partition weights (%s); keeping the last ones", type(exc).__name__)

    # --- rebalance ----------------------------------------------------------------------
    # kafka-python runs these callbacks on its network thread, where no blocking client call
    # is allowed. Revocation only writes a checkpoint to the database (after the batch in
    # hand, under the lock); an assignment pauses the new partitions there and the main
    # thread restores and seeks them after its next batch.

    def _claimed(self) -> set[TopicPartition]:
        """What this member tells the group it holds when it joins: the partitions it has
        restored and judges. One assigned but not restored yet has no state here, so the
        group can give it straight to a member that joined meanwhile (both started together,
        say) instead of waiting for a release; it is not restored before the group answers,
        and claimed from then on (a follow-up join does not hold it up again)."""
        with self._lock:
            assigned = set(self.consumer.assignment())
            self._unclaimed = assigned - set(self._processed) - self._offered
            self._offered |= self._unclaimed
            return assigned - self._unclaimed

    def _answered(self) -> None:
        with self._lock:
            self._unclaimed.clear()

    def _on_revoked(self, revoked: set[TopicPartition]) -> None:
        with self._lock:
            units = {self._unit(tp) for tp in revoked if tp.topic in self._topic_base}
            if units:
                log.info("releasing %s", ", ".join(unit_name(u) for u in sorted(units)))
                cps = self._checkpoint_offsets(units)
                try:
                    if cps:
                        # One attempt: this runs on the client's network thread, where the retry
                        # loop's poll() is not allowed and a long wait would stall the rebalance.
                        self.pipeline.process({}, cps, retry=False)
                except (OperationalError, DBAPIError) as exc:
                    log.warning("checkpoint on revocation failed (%s); the next owner resumes from the last one", exc)
            for tp in revoked:
                self._processed.pop(tp, None)
                self._pending.discard(tp)
                self._offered.discard(tp)
            for u in units:
                self.pipeline.drop(u)
                self._buffer.drop(u)

    def _on_assigned(self, assigned: set[TopicPartition]) -> None:
        with self._lock:
            new = {tp for tp in assigned if tp not in self._processed}
            log.debug("assigned %s; new %s", sorted(assigned), sorted(new))
            if new:
                self.consumer.pause(*new)
                self._pending |= new

    def _restore_pending(self) -> None:
        """Restore newly assigned units from their checkpoints and seek to match."""
        with self._lock:
            pending = self._pending - self._unclaimed
            if not pending:
                return
            self._pending -= pending
        by_unit: dict[int, list[TopicPartition]] = defaultdict(list)
        for tp in pending:
            by_unit[self._unit(tp)].append(tp)
        for u, tps in sorted(by_unit.items()):
            # Asked of the broker outside the lock (the network thread answers them).
            begin = self.consumer.beginning_offsets(tps)
            committed = {tp: self.consumer.committed(tp) or 0 for tp in tps}
            with self._lock:
                if not self._unclaimed.isdisjoint(tps):
                    # Left unclaimed in a join meanwhile: wait for the group's answer.
                    self._pending.update(tps)
                    continue
                assigned = self.consumer.assignment()
                if any(tp not in assigned or tp in self._pending for tp in tps):
                    # Taken back meanwhile (and perhaps given again: the next pass has it).
                    continue
                owned = [tp for tp in self._processed if self._unit(tp) == u]
                try:
                    cp = self.pipeline.restore(u) if not owned else self.pipeline.load_checkpoint(u)
                except (OperationalError, DBAPIError) as exc:
                    # The database is away: the partition stays paused and the restore is tried
                    # again after the next poll, which keeps this consumer in its group meanwhile.
                    self._pending.update(tps)
                    self._degraded(DB_AWAY, exc)
                    log.warning("restoring %s failed (%s); will retry", unit_name(u), type(exc).__name__)
                    continue
                for tp in tps:
                    self._committed_at_assign[tp] = committed[tp]
                    base = self._topic_base[tp.topic]
                    # No checkpoint yet means no state worth keeping was derived: rebuild it from
                    # the start of the topic (findings already stored are deduplicated).
                    offset = max(cp.offsets[base], begin[tp]) if cp is not None and base in cp.offsets else begin[tp]
                    self.consumer.seek(tp, offset)
                    self._processed[tp] = offset
                    self._ends.pop(tp, None)  # an end asked for in an earlier assignment may be stale
                self.consumer.resume(*tps)
            log.info("%s assigned (checkpoint: %s)", unit_name(u), "yes" if cp else "none")
        if not self._pending and self.health.status == "degraded":
            self._recovered()
            self.health.status, self.health.detail = "ok", ""

    # --- the loop -----------------------------------------------------------------------

    def run(self, *, until_caught_up: bool = False, max_idle_s: float | None = None) -> dict[str, Any]:
        topics = [self.settings.topic(t) for t in EVENT_TOPICS]
        self.health.status = "starting"
        refs = self.load_reference_tables()
        log.info("reference tables loaded: %d records", refs)
        self.consumer.subscribe(topics, listener=_Rebalance(self))
        # Before the first poll, which is where the consumer joins the group.
        know_partitions(self.consumer, topics)
        self._refresh_weights(topics)
        end_offsets: dict[TopicPartition, int] | None = None
        idle_since = time.monotonic()
        self.health.status = "ok"
        try:
            while not self._stop.is_set():
                self.health.last_loop_at = time.monotonic()
                self._poll_reference(0)
                try:
                    polled = self.consumer.poll(
                        timeout_ms=self.settings.poll_timeout_ms, max_records=self.settings.poll_max_records
                    )
                except InconsistentGroupProtocolError:
                    raise ConfigError(self._no_common_assignor()) from None
                except KafkaError as exc:
                    # kafka-python gives up on finding the group coordinator while the broker
                    # is away for half a minute or so (a connection error while it refreshes
                    # metadata): wait for it as for the database, in the group, not by exiting.
                    if not exc.retriable:
                        raise
                    self._broker_waiting(exc)
                    continue
                if self.health.detail.startswith(BROKER_AWAY):
                    log.info("Kafka available again")
                    self.health.status, self.health.detail = "ok", ""
                if polled or len(self._buffer):
                    self._handle(polled)
                    if polled:
                        idle_since = time.monotonic()
                elif self.after_batch:
                    self.after_batch()
                self._join_watch.check()
                # After the batch, so that what the next poll() returns for a unit restored
                # here starts where its checkpoint does.
                self._restore_pending()
                if until_caught_up and self.consumer.assignment():
                    if end_offsets is None:
                        all_tps = [
                            TopicPartition(t, p) for t in topics for p in self.consumer.partitions_for_topic(t) or ()
                        ]
                        end_offsets = self.consumer.end_offsets(all_tps)
                    if self._caught_up(end_offsets):
                        break
                if max_idle_s is not None and time.monotonic() - idle_since > max_idle_s:
                    break
                self._refresh_weights(topics)
        finally:
            self.health.status = "stopping"
            self._checkpoint_and_commit()
            with self._lock:
                # Written and committed: the release that close() calls back has nothing to add.
                self._processed.clear()
            self.consumer.close(autocommit=False)
            self.refs.close()
            self.producer.flush()
            self.producer.close()
        return self.pipeline.stats.as_dict()

    def _caught_up(self, end: dict[TopicPartition, int]) -> bool:
        with self._lock:
            if set(end) - set(self._processed) or len(self._buffer):
                return False  # part of the topic set is assigned elsewhere, or events are still held
            return all(self._processed.get(tp, 0) >= off for tp, off in end.items())

    def _busy(self, tp: TopicPartition) -> bool:
        """More to read on ``tp`` than we have seen (unknown counts as busy)."""
        high = self.consumer.highwater(tp)
        if high is None:
            high = self._ends.get(tp)
        return high is None or self._processed.get(tp, 0) < high

    def _ask_ends(self, tps: list[TopicPartition]) -> None:
        """End offsets, from the broker, of partitions whose end the fetcher does not know.

        The fetcher learns an end only from a fetch response that includes the partition, and
        an incremental fetch session can leave an idle one out of every response (seen after
        partitions stayed paused across rebalances while the database was away); events held
        for such a partition would wait forever. Asked at most once a second.
        """
        unknown = [tp for tp in tps if self.consumer.highwater(tp) is None]
        if not unknown or time.monotonic() - self._ends_asked_at < 1.0:
            return
        self._ends_asked_at = time.monotonic()
        try:
            self._ends.update(self.consumer.end_offsets(unknown))
        except KafkaError as exc:
            log.debug("end offsets unavailable (%s); holding events meanwhile", exc)

    def lag(self) -> dict[tuple[str, int], int]:
        """Per assigned topic partition (the contract's topic name), the messages this consumer
        has not taken in yet. Called from the metrics thread: reads a copy of the offsets."""
        out: dict[tuple[str, int], int] = {}
        for tp, offset in list(self._processed.items()):
            high = self.consumer.highwater(tp)
            if high is None:
                high = self._ends.get(tp)
            if high is not None:
                out[(self._topic_base[tp.topic], tp.partition)] = max(0, high - offset)
        return out

    def _handle(self, polled: dict[TopicPartition, list[Any]]) -> None:
        started = time.perf_counter()
        if polled or len(self._buffer):
            # Outside the lock: the broker's answer comes through the network thread.
            with self._lock:
                held_for = list(self._processed)
            self._ask_ends(held_for)
        stamps: list[int] = []  # Kafka timestamps (ms) of the messages taken in
        with self._lock:
            offsets = self._judge(polled, stamps)
        if offsets is None:
            return
        self.producer.flush()  # dead letters durable before their offsets are committed
        self._commit(offsets)
        recorded_at = time.time()
        self.health.status, self.health.detail, self.health.last_batch_at = "ok", "", recorded_at
        if stamps:
            taken = np.asarray(stamps, dtype=float)
            taken = taken[taken >= 0]  # -1: a message without a timestamp
            # A producer's clock may run a little ahead of ours: that is no latency at all.
            self.event_latency.observe(np.maximum(0.0, recorded_at - taken / 1000.0))
        self.batch_time.observe([time.perf_counter() - started])
        if self.after_batch:
            self.after_batch()

    def _judge(
        self, polled: dict[TopicPartition, list[Any]], stamps: list[int]
    ) -> dict[TopicPartition, OffsetAndMetadata] | None:
        """Take in a poll's messages, judge what the reorder buffer releases and write the
        checkpoints that are due; the offsets to commit, or None if nothing was done."""
        for tp, msgs in polled.items():
            if tp not in self._processed:
                # Fetched for a unit not restored yet (that predates its seek), or for one the
                # group has taken away since poll() returned.
                continue
            stamps += [m.timestamp for m in msgs]
            self._take_in(tp, msgs)
        released: dict[int, list[Event]] = {}
        for u in self._buffer.units():
            busy = [tp for tp in self._processed if self._unit(tp) == u and self._busy(tp)]
            ready = self._buffer.release(u, busy)
            if ready:
                released[u] = ready
        due = self._due_checkpoints()
        if not released and not stamps and not due:
            return None
        cp = self._checkpoint_offsets(due) if due else None
        self.pipeline.process(released, cp)
        self._recovered()
        if due:
            now = time.monotonic()
            for u in due:
                self._next_checkpoint[u] = now + self.settings.checkpoint_interval_s
        return self._commit_offsets()

    def _take_in(self, tp: TopicPartition, msgs: list[Any]) -> None:
        """Decode a poll's messages of one partition into the reorder buffer, the bad ones to
        the dead-letter topic."""
        base = self._topic_base[tp.topic]
        rank = EVENT_TOPICS.index(base)
        held: list[tuple[float, int, int, Any, Event]] = []
        dead: Counter[str] = Counter()
        started = time.perf_counter()
        for m, event in zip(
            msgs, decode_all(base, [m.value for m in msgs], self.settings.max_message_bytes), strict=True
        ):
            if isinstance(event, DecodeFailure):
                if self._send_dead_letter(tp, m, event):
                    dead[event.kind] += 1
                continue
            held.append((event.ts.timestamp(), rank, m.offset, tp, event))
        # Decoding is part of what a unit's events cost (counted once judged, in ``detect``).
        self.pipeline.costs.add(kind_of(self._unit(tp)), 0, time.perf_counter() - started)
        if dead:
            # One line per partition and poll: a flood of bad messages must not become a flood
            # of log lines (each dead letter's reason is in its headers).
            kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(dead.items()))
            log.warning(
                "dead-lettered %d of %d messages of %s[%d]: %s", dead.total(), len(msgs), tp.topic, tp.partition, kinds
            )
        self._buffer.extend(tp, self._unit(tp), held)
        self._processed[tp] = msgs[-1].offset + 1
        self.pipeline.stats.consumed[base] += len(msgs)

    def _due_checkpoints(self) -> set[int]:
        now = time.monotonic()
        interval = self.settings.checkpoint_interval_s
        spread = 2 * max(1, self.settings.partitions)  # actor and log units
        due: set[int] = set()
        for u in {self._unit(tp) for tp in self._processed}:
            at = self._next_checkpoint.get(u)
            if at is None:
                at = self._next_checkpoint[u] = now + interval * (1 + (u % spread) / spread)
            if now >= at:
                due.add(u)
        return due

    def _safe_offsets(self) -> dict[TopicPartition, int]:
        """Per assigned topic partition, the offset before which everything is durably processed."""
        low = self._buffer.lowest_offsets()
        return {tp: min(off, low.get(tp, off)) for tp, off in self._processed.items()}

    def _send_dead_letter(self, tp: TopicPartition, m: Any, failure: DecodeFailure) -> bool:
        """Send a message that cannot be decoded to the dead-letter topic; False if it was sent
        before."""
        base = self._topic_base[tp.topic]
        self.pipeline.stats.dead_lettered[base] += 1
        # After a restart the same bad message may be read again from a checkpoint; it was
        # dead-lettered already if it lies before the offset committed then.
        if m.offset < self._committed_at_assign.get(tp, 0):
            return False
        d = dead_letter(tp.topic, tp.partition, m.offset, m.key, m.value, failure, m.timestamp)
        self.producer.send(d.topic, key=d.key, value=d.value, headers=d.headers)
        return True

    def _checkpoint_offsets(self, units: set[int]) -> dict[int, dict[str, int]]:
        out: dict[int, dict[str, int]] = defaultdict(dict)
        for tp, off in self._safe_offsets().items():
            u = self._unit(tp)
            if u in units and off >= 0:
                out[u][self._topic_base[tp.topic]] = off
        return dict(out)

    def _checkpoint_and_commit(self) -> None:
        try:
            with self._lock:
                cps = self._checkpoint_offsets({self._unit(tp) for tp in self._processed})
                if cps:
                    self.pipeline.process({}, cps)
                offsets = self._commit_offsets()
            self.producer.flush()
            self._commit(offsets)
        except (KafkaError, OperationalError, DBAPIError) as exc:
            log.warning("final checkpoint/commit failed (%s); the next owner resumes from the last checkpoint", exc)

    def _commit_offsets(self) -> dict[TopicPartition, OffsetAndMetadata]:
        return {tp: OffsetAndMetadata(off, "", -1) for tp, off in self._safe_offsets().items() if off >= 0}

    def _commit(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
        if not offsets:
            return
        try:
            self.consumer.commit(offsets)
        except CommitFailedError as exc:
            # The group rebalanced under us; the new owner resumes from the checkpoint.
            log.warning("offset commit failed after a rebalance: %s", exc)
        except KafkaError as exc:
            # The broker is away (restarting, network). What was processed is already durable
            # in the database; the offsets go with the next batch's commit once it is back.
            log.warning("offset commit failed (%s); retried with the next batch", type(exc).__name__)
