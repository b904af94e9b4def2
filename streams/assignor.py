"""How the consumer group shares the work: whole units, balanced by how much each one has to do.

Kafka's range assignor gives a consumer partition p of every topic, which keeps an actor's
erp.access and erp.auth events together (both keyed by ``actor_id``) but also ties erp.logs
partition p to them. erp.logs is keyed by ``service``, and a few services write most records,
so one partition number can carry several times the work of another, and range puts it on one
consumer with a full share of actors besides: two consumers on four partitions then split the
work about 60/40 however fast they are.

``UnitAssignor`` hands out units instead (``streams.units``: actor unit p = erp.access and
erp.auth partition p; log unit p = erp.logs partition p) and balances them by weight: the
busiest unit first, each to the member with the least weight so far (longest-processing-time
first, within a few per cent of the best split for the handful of units a group has). A
unit's weight is the backlog and recent volume of its partitions, which every consumer keeps
measured from the broker (``Service._refresh_weights``); the group leader uses its own view.
Without weights (none measured yet, or the broker did not answer) units are dealt out evenly
by count, busiest-first ties broken by unit, so the assignment is still deterministic.

Listed together with range, it also keeps a rolling upgrade safe: a group picks the first
protocol every member supports, and range's assignment keeps units whole too.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import Any

from kafka import TopicPartition
from kafka.coordinator.assignors.abstract import AbstractPartitionAssignor
from kafka.protocol.consumer.metadata import ConsumerProtocolAssignment, ConsumerProtocolSubscription

log = logging.getLogger(__name__)

UnitOf = Callable[[str, int], int | None]


class UnitAssignor(AbstractPartitionAssignor):
    """Assigns whole units, balanced by weight (see the module docstring)."""

    name = "breachwatch-units"
    version = 0

    def __init__(self, unit_of: UnitOf, weights: Callable[[], Mapping[TopicPartition, float]]) -> None:
        # unit_of(topic, partition) -> the unit, or None for a topic outside the contract
        # (assigned on its own).
        self.unit_of = unit_of
        self.weights = weights

    def assign(self, cluster: Any, members: list[Any]) -> dict[str, ConsumerProtocolAssignment]:
        # Static members first, then by id: every leader orders the group the same way.
        order = sorted(members, key=lambda m: (m.group_instance_id is None, m.group_instance_id or "", m.member_id))
        subscribed = {m.member_id: set(m.metadata.topics) for m in members}
        units: dict[tuple[str, int], list[TopicPartition]] = defaultdict(list)
        for topic in sorted(set().union(*subscribed.values())):
            parts = cluster.partitions_for_topic(topic)
            if parts is None:
                log.warning("no partition metadata for topic %s", topic)
                continue
            for p in sorted(parts):
                unit = self.unit_of(topic, p)
                key = ("", unit) if unit is not None else (topic, p)
                units[key].append(TopicPartition(topic, p))
        try:
            measured = dict(self.weights())
        except Exception:  # a weight source must never stop the group from forming
            log.exception("unit weights unavailable; dealing units out evenly")
            measured = {}

        def weight(tps: list[TopicPartition]) -> float:
            return sum(max(0.0, float(measured.get(tp, 0.0))) for tp in tps)

        load = {m.member_id: 0.0 for m in order}
        count = {m.member_id: 0 for m in order}
        rank = {m.member_id: i for i, m in enumerate(order)}
        out: dict[str, dict[str, list[int]]] = {m.member_id: defaultdict(list) for m in order}
        for _key, tps in sorted(units.items(), key=lambda kv: (-weight(kv[1]), kv[0])):
            eligible = [m.member_id for m in order if all(tp.topic in subscribed[m.member_id] for tp in tps)]
            if not eligible:
                continue
            member = min(eligible, key=lambda mid: (load[mid], count[mid], rank[mid]))
            load[member] += weight(tps)
            count[member] += 1
            for tp in tps:
                out[member][tp.topic].append(tp.partition)
        log.info(
            "assigned %d units to %d members; weights %s",
            len(units),
            len(order),
            {mid: round(w) for mid, w in load.items()},
        )
        return {
            mid: ConsumerProtocolAssignment(self.version, sorted((t, sorted(ps)) for t, ps in topics.items()), b"")
            for mid, topics in out.items()
        }

    def metadata(self, topics: Any) -> ConsumerProtocolSubscription:
        return ConsumerProtocolSubscription(self.version, list(topics), b"")

    def on_assignment(self, assignment: Any, generation: Any) -> None:
        return None
