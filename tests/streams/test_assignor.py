"""The group's assignment: whole units, balanced by weight, deterministic."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field

from kafka import TopicPartition
from kafka.protocol.consumer.metadata import ConsumerProtocolSubscription

from streams.assignor import UnitAssignor
from streams.models import ACCESS, AUTH, LOGS
from streams.units import unit_of

TOPICS = (ACCESS, AUTH, LOGS)


@dataclass
class Cluster:
    partitions: dict[str, int]

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        n = self.partitions.get(topic)
        return set(range(n)) if n is not None else None


@dataclass
class Member:
    member_id: str
    topics: tuple[str, ...] = TOPICS
    group_instance_id: str | None = None
    metadata: ConsumerProtocolSubscription = field(init=False)

    def __post_init__(self) -> None:
        self.metadata = ConsumerProtocolSubscription(0, list(self.topics), b"")


def contract_unit(topic: str, partition: int) -> int | None:
    return unit_of(topic, partition) if topic in TOPICS else None


def assign(
    members: list[Member], weights: Mapping[TopicPartition, float] | None = None, partitions: int = 4
) -> dict[str, set[TopicPartition]]:
    assignor = UnitAssignor(contract_unit, lambda: weights or {})
    cluster = Cluster(dict.fromkeys(TOPICS, partitions))
    out = assignor.assign(cluster, members)
    return {
        mid: {TopicPartition(t, p) for t, ps in a.assignment for p in ps}  # type: ignore[attr-defined]
        for mid, a in out.items()
    }


def skewed_weights() -> dict[TopicPartition, float]:
    """The simulated ERP's shape: actors spread evenly, one service writing most log records."""
    w = {TopicPartition(t, p): 50_000.0 for t in (ACCESS,) for p in range(4)}
    w.update({TopicPartition(AUTH, p): 13_000.0 for p in range(4)})
    w.update({TopicPartition(LOGS, p): v for p, v in enumerate([180_000.0, 13_000.0, 36_000.0, 65_000.0])})
    return w


def test_every_partition_once_and_an_actors_topics_together() -> None:
    result = assign([Member("m-a"), Member("m-b")], skewed_weights())
    every = [tp for tps in result.values() for tp in tps]
    assert sorted(every) == sorted(TopicPartition(t, p) for t in TOPICS for p in range(4))
    for tps in result.values():
        # erp.access p and erp.auth p hold the same actors: never split between members.
        assert {tp.partition for tp in tps if tp.topic == ACCESS} == {tp.partition for tp in tps if tp.topic == AUTH}


def test_units_are_balanced_by_weight_not_by_partition_number() -> None:
    weights = skewed_weights()
    result = assign([Member("m-a"), Member("m-b")], weights)
    loads = sorted(sum(weights[tp] for tp in tps) for tps in result.values())
    # Range would give one member partitions 0 and 1 of every topic: 305,000 against 208,000.
    # Balanced units come within a few per cent of an even split.
    assert loads[1] / sum(loads) < 0.53, loads


def test_without_weights_units_are_dealt_evenly_and_deterministically() -> None:
    members = [Member("m-a"), Member("m-b"), Member("m-c")]
    first = assign(members)
    counts = sorted(len({unit_of(tp.topic, tp.partition) for tp in tps}) for tps in first.values())
    assert counts == [2, 3, 3]  # 8 units over 3 members
    for order in itertools.permutations(members):
        assert assign(list(order)) == first


def test_a_failing_weight_source_still_forms_the_group() -> None:
    def broken() -> Mapping[TopicPartition, float]:
        raise RuntimeError("broker away")

    assignor = UnitAssignor(contract_unit, broken)
    out = assignor.assign(Cluster(dict.fromkeys(TOPICS, 2)), [Member("m-a"), Member("m-b")])
    assigned = [(t, p) for a in out.values() for t, ps in a.assignment for p in ps]  # type: ignore[attr-defined]
    assert sorted(assigned) == sorted((t, p) for t in TOPICS for p in range(2))


def test_members_get_only_what_they_subscribe_to() -> None:
    result = assign([Member("m-a", (ACCESS, AUTH)), Member("m-b")], skewed_weights())
    assert all(tp.topic != LOGS for tp in result["m-a"])
    assert {tp for tp in result["m-b"] if tp.topic == LOGS} == {TopicPartition(LOGS, p) for p in range(4)}


def test_a_topic_outside_the_contract_is_shared_per_partition() -> None:
    assignor = UnitAssignor(contract_unit, dict)
    members = [Member("m-a", ("other",)), Member("m-b", ("other",))]
    out = assignor.assign(Cluster({"other": 4}), members)
    counts = sorted(sum(len(ps) for _, ps in a.assignment) for a in out.values())  # type: ignore[attr-defined]
    assert counts == [2, 2]
