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

``StickyUnitAssignor`` is what a consumer uses by default. It balances the same way but starts
from what each member holds, moves a unit only when that evens the split out by more than a
little, and takes part in Kafka's cooperative rebalancing (KIP-429): a unit that changes hands is
left unassigned for one round, so its owner checkpoints and releases it first and the next round
gives it to the new owner, while every other unit is judged without a pause. (A consumer does
not claim units it has not restored yet, which have no state to hand over: those go to their new
owner at once.) Without the owners (an eager consumer gives up everything before it joins) it is
``UnitAssignor``'s split.

A group picks the first assignor that every member lists. An eager consumer lists the sticky
assignor, ``UnitAssignor`` and range, so it can join a group of older members (which list the
last two) as well as one of cooperative members (which list only the first); range's
assignment keeps units whole too. A cooperative consumer and an older one share no assignor, and
the broker refuses the join, which is what keeps an older leader from handing out a unit that a
cooperative member still holds.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any

from kafka import TopicPartition
from kafka.coordinator.assignors.abstract import AbstractPartitionAssignor, RebalanceProtocol
from kafka.protocol.consumer.metadata import ConsumerProtocolAssignment, ConsumerProtocolSubscription

log = logging.getLogger(__name__)

UnitOf = Callable[[str, int], int | None]
UnitKey = tuple[str, int]  # ("", unit), or (topic, partition) for a topic outside the contract

# A sticky assignment is evened out only while the busiest and the idlest member differ by
# more than this share of an even split: weights are measured from a moving backlog, and a
# rebalance that chased every small change would move units back and forth for nothing.
MOVE_GAIN = 0.05


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
        group = _Group(self, cluster, members)
        for key in group.busiest_first:
            group.place_least_loaded(key)
        return group.assignment(self.version, self.name)

    def metadata(self, topics: Any) -> ConsumerProtocolSubscription:
        return ConsumerProtocolSubscription(self.version, list(topics), b"")

    def on_assignment(self, assignment: Any, generation: Any) -> None:
        return None


class StickyUnitAssignor(UnitAssignor):
    """Whole units, balanced by weight, kept where they are unless moving one evens the split
    out, and handed over in two rounds (cooperative rebalancing; see the module docstring)."""

    name = "breachwatch-sticky-units"
    version = 1  # the subscription's version 1 carries the partitions a member owns

    def __init__(
        self,
        unit_of: UnitOf,
        weights: Callable[[], Mapping[TopicPartition, float]],
        owned: Callable[[], Iterable[TopicPartition]] | None,
        answered: Callable[[], None] | None = None,
    ) -> None:
        # owned() is what this member holds when it joins; None for an eager consumer, which
        # has given everything up by then. answered() is called once the group has answered
        # a join, with this member's assignment in place.
        super().__init__(unit_of, weights)
        self.owned = owned
        self.answered = answered

    def supported_protocols(self) -> list[RebalanceProtocol]:
        # A consumer runs the most capable protocol that all its listed assignors support:
        # cooperative alone, eager when listed with UnitAssignor and range.
        return [RebalanceProtocol.COOPERATIVE, RebalanceProtocol.EAGER]

    def assign(self, cluster: Any, members: list[Any]) -> dict[str, ConsumerProtocolAssignment]:
        group = _Group(self, cluster, members)
        held = group.holders()
        for key in group.busiest_first:
            owners = held.get(key, set())
            if len(owners) == 1 and (owner := next(iter(owners))) in group.eligible(key):
                group.place(key, owner)
        for key in group.busiest_first:
            if key not in group.placed:
                group.place_least_loaded(key)
        group.even_out()
        # A unit bound for a member other than the one holding it goes to nobody this round:
        # the holder checkpoints and releases it, rejoins, and the next round finds it free.
        moving = {key for key, member in group.placed.items() if held.get(key, set()) - {member}}
        if moving:
            log.info("%d units change hands after their owners release them", len(moving))
        return group.assignment(self.version, self.name, withheld=moving)

    def metadata(self, topics: Any) -> ConsumerProtocolSubscription:
        by_topic: dict[str, list[int]] = defaultdict(list)
        for tp in self.owned() if self.owned is not None else ():
            by_topic[tp.topic].append(tp.partition)
        owned = [
            ConsumerProtocolSubscription.TopicPartition(topic=t, partitions=sorted(ps))
            for t, ps in sorted(by_topic.items())
        ]
        return ConsumerProtocolSubscription(
            version=self.version, topics=sorted(topics), user_data=b"", owned_partitions=owned
        )

    def on_assignment(self, assignment: Any, generation: Any) -> None:
        if self.answered is not None:
            self.answered()


class _Group:
    """One assignment in the making: the group's units, their weights and where each goes."""

    def __init__(self, assignor: UnitAssignor, cluster: Any, members: list[Any]) -> None:
        # Static members first, then by id: every leader orders the group the same way.
        self.members = sorted(
            members, key=lambda m: (m.group_instance_id is None, m.group_instance_id or "", m.member_id)
        )
        self.subscribed = {m.member_id: set(m.metadata.topics) for m in members}
        self.units: dict[UnitKey, list[TopicPartition]] = defaultdict(list)
        for topic in sorted(set().union(*self.subscribed.values())):
            parts = cluster.partitions_for_topic(topic)
            if parts is None:
                log.warning("no partition metadata for topic %s", topic)
                continue
            for p in sorted(parts):
                unit = assignor.unit_of(topic, p)
                key = ("", unit) if unit is not None else (topic, p)
                self.units[key].append(TopicPartition(topic, p))
        try:
            measured = dict(assignor.weights())
        except Exception:  # a weight source must never stop the group from forming
            log.exception("unit weights unavailable; dealing units out evenly")
            measured = {}
        self.weight = {
            key: sum(max(0.0, float(measured.get(tp, 0.0))) for tp in tps) for key, tps in self.units.items()
        }
        self.busiest_first = sorted(self.units, key=lambda k: (-self.weight[k], k))
        self.load = {m.member_id: 0.0 for m in self.members}
        self.count = {m.member_id: 0 for m in self.members}
        self.rank = {m.member_id: i for i, m in enumerate(self.members)}
        self.placed: dict[UnitKey, str] = {}
        self._eligible = {
            key: [m.member_id for m in self.members if all(tp.topic in self.subscribed[m.member_id] for tp in tps)]
            for key, tps in self.units.items()
        }

    def eligible(self, key: UnitKey) -> list[str]:
        """The members subscribed to all of the unit's topics, in the group's order."""
        return self._eligible[key]

    def holders(self) -> dict[UnitKey, set[str]]:
        """Per unit, the members that say they own any of its partitions."""
        key_of = {tp: key for key, tps in self.units.items() for tp in tps}
        out: dict[UnitKey, set[str]] = defaultdict(set)
        for m in self.members:
            for owned in getattr(m.metadata, "owned_partitions", None) or ():
                for p in owned.partitions:
                    key = key_of.get(TopicPartition(owned.topic, p))
                    if key is not None:
                        out[key].add(m.member_id)
        return out

    def place(self, key: UnitKey, member: str) -> None:
        old = self.placed.get(key)
        if old is not None:
            self.load[old] -= self.weight[key]
            self.count[old] -= 1
        self.placed[key] = member
        self.load[member] += self.weight[key]
        self.count[member] += 1

    def place_least_loaded(self, key: UnitKey) -> None:
        eligible = self.eligible(key)
        if eligible:
            self.place(key, min(eligible, key=lambda mid: (self.load[mid], self.count[mid], self.rank[mid])))

    def even_out(self) -> None:
        """Move units from the busiest member to the idlest while the two differ by more
        than ``MOVE_GAIN`` of an even split and a move lowers the busier of the two (by count
        while no unit has a weight)."""
        by_count = not any(self.weight.values())
        size = self.count if by_count else self.load
        slack = 1 if by_count else MOVE_GAIN * sum(self.weight.values()) / max(1, len(self.members))
        for _ in range(len(self.units)):
            busiest = max(self.members, key=lambda m: (size[m.member_id], -self.rank[m.member_id])).member_id
            idlest = min(self.members, key=lambda m: (size[m.member_id], self.rank[m.member_id])).member_id
            top = size[busiest]

            def after(key: UnitKey, top: float = top, idlest: str = idlest) -> float:
                w = 1 if by_count else self.weight[key]
                return max(top - w, size[idlest] + w)

            movable = [k for k, m in self.placed.items() if m == busiest and idlest in self.eligible(k)]
            if busiest == idlest or not movable:
                return
            best = min(movable, key=lambda k: (after(k), k))
            if top - size[idlest] <= slack or after(best) >= top:
                return
            self.place(best, idlest)

    def assignment(
        self, version: int, name: str, withheld: Collection[UnitKey] = ()
    ) -> dict[str, ConsumerProtocolAssignment]:
        out: dict[str, dict[str, list[int]]] = {m.member_id: defaultdict(list) for m in self.members}
        for key, member in self.placed.items():
            if key not in withheld:
                for tp in self.units[key]:
                    out[member][tp.topic].append(tp.partition)
        log.info(
            "%s: %d units to %d members; weights %s",
            name,
            len(self.units) - len(withheld),
            len(self.members),
            {mid: round(w) for mid, w in self.load.items()},
        )
        return {
            mid: ConsumerProtocolAssignment(version, sorted((t, sorted(ps)) for t, ps in topics.items()), b"")
            for mid, topics in out.items()
        }
