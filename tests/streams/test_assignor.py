"""The group's assignment: whole units, balanced by weight, deterministic."""

from __future__ import annotations

import itertools
import random
from collections.abc import Mapping
from dataclasses import dataclass, field

from kafka import TopicPartition
from kafka.protocol.consumer.metadata import ConsumerProtocolSubscription

from breachwatch.core.events import ACCESS, AUTH, LOGS
from breachwatch.streams.assignor import StickyUnitAssignor, UnitAssignor
from breachwatch.streams.units import unit_of

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
    owned: set[TopicPartition] | None = None  # None: an eager or older member
    metadata: ConsumerProtocolSubscription = field(init=False)

    def __post_init__(self) -> None:
        if self.owned is None:
            self.metadata = ConsumerProtocolSubscription(0, list(self.topics), b"")
        else:
            # What the broker hands the leader: the member's own encoding, decoded.
            owned = self.owned
            wire = StickyUnitAssignor(contract_unit, dict, lambda: owned).metadata(self.topics).encode()
            self.metadata = ConsumerProtocolSubscription.decode(wire)


def contract_unit(topic: str, partition: int) -> int | None:
    return unit_of(topic, partition) if topic in TOPICS else None


def assign(
    members: list[Member],
    weights: Mapping[TopicPartition, float] | None = None,
    partitions: int = 4,
    kind: type[UnitAssignor] = UnitAssignor,
) -> dict[str, set[TopicPartition]]:
    if kind is StickyUnitAssignor:
        assignor: UnitAssignor = StickyUnitAssignor(contract_unit, lambda: weights or {}, None)
    else:
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


# --- cooperative: StickyUnitAssignor ------------------------------------------------------

ALL = {TopicPartition(t, p) for t in TOPICS for p in range(4)}


def load(tps: set[TopicPartition], weights: Mapping[TopicPartition, float]) -> float:
    return sum(weights[tp] for tp in tps)


def cooperative_round(
    owned: dict[str, set[TopicPartition]], weights: Mapping[TopicPartition, float] | None = None
) -> dict[str, set[TopicPartition]]:
    """One rebalance as the broker and kafka-python run it: each member reports what it owns,
    the leader assigns; checks that nothing goes to a member while another one owns it."""
    members = [Member(mid, owned=tps) for mid, tps in owned.items()]
    out = assign(members, weights, kind=StickyUnitAssignor)
    for mid, tps in out.items():
        for other, theirs in owned.items():
            assert other == mid or not tps & theirs, f"{sorted(tps & theirs)} given to {mid} while {other} owns them"
    return out


def settle(
    owned: dict[str, set[TopicPartition]], weights: Mapping[TopicPartition, float] | None = None
) -> tuple[dict[str, set[TopicPartition]], dict[str, set[TopicPartition]], int]:
    """Rounds until no member loses anything (a member that loses partitions rejoins, which
    starts the next round): the final assignment, what each member gave up, the rounds."""
    released: dict[str, set[TopicPartition]] = {mid: set() for mid in owned}
    for rounds in range(1, 6):
        new = cooperative_round(owned, weights)
        lost = {mid: owned[mid] - new[mid] for mid in owned}
        for mid, tps in lost.items():
            released[mid] |= tps
        owned = new
        if not any(lost.values()):
            return owned, released, rounds
    raise AssertionError(f"no stable assignment after 5 rounds: {owned}")


def test_a_stable_group_keeps_its_units_through_a_rebalance() -> None:
    weights = skewed_weights()
    split = assign([Member("m-a"), Member("m-b")], weights)
    assert cooperative_round(split, weights) == split
    # Weights are a moving backlog: a few per cent either way moves nothing.
    rng = random.Random(5)
    for _ in range(50):
        jittered = {tp: w * rng.uniform(0.97, 1.03) for tp, w in weights.items()}
        assert cooperative_round(split, jittered) == split


def test_a_member_joining_many_small_units_gets_its_share() -> None:
    partitions = 64
    every = {TopicPartition(t, p) for t in TOPICS for p in range(partitions)}
    rng = random.Random(3)
    weights = {tp: rng.uniform(1_000.0, 9_000.0) for tp in sorted(every)}
    members = [Member("m-a", owned=every), Member("m-b", owned=set())]
    first = assign(members, weights, partitions, kind=StickyUnitAssignor)
    members = [Member("m-a", owned=first["m-a"]), Member("m-b", owned=first["m-b"])]
    final = assign(members, weights, partitions, kind=StickyUnitAssignor)
    loads = sorted(load(tps, weights) for tps in final.values())
    assert loads[1] / sum(loads) < 0.53, loads


def test_a_move_that_evens_out_the_split_by_little_is_not_made() -> None:
    """51:49 becomes 50:50 by moving one unit: not worth a unit's checkpoint and restore."""
    weights = dict.fromkeys(ALL, 0.0)
    for p, w in enumerate([25.0, 25.0, 25.0, 24.0]):
        weights[TopicPartition(ACCESS, p)] = w
    weights[TopicPartition(LOGS, 0)] = 1.0
    a = {TopicPartition(t, p) for t in (ACCESS, AUTH) for p in (0, 1)} | {TopicPartition(LOGS, 0)}
    split = {"m-a": a, "m-b": ALL - a}
    assert cooperative_round(split, weights) == split


def test_a_joining_member_gets_its_share_after_the_owner_releases_it() -> None:
    weights = skewed_weights()
    first = cooperative_round({"m-a": ALL, "m-b": set()}, weights)
    # Round one: m-b gets none of what m-a holds; m-a keeps its share and releases the rest.
    assert first["m-b"] == set() and first["m-a"] < ALL
    final, released, rounds = settle({"m-a": ALL, "m-b": set()}, weights)
    assert rounds == 2
    assert final["m-a"] == first["m-a"]  # what it kept, it was never asked to give up
    assert released == {"m-a": ALL - first["m-a"], "m-b": set()}
    assert final["m-a"] | final["m-b"] == ALL and not final["m-a"] & final["m-b"]
    loads = sorted(load(tps, weights) for tps in final.values())
    assert loads[1] / sum(loads) < 0.53, loads


def test_the_units_of_a_member_that_left_are_assigned_at_once() -> None:
    weights = skewed_weights()
    split = assign([Member("m-a"), Member("m-b"), Member("m-c")], weights)
    survivors = {"m-a": split["m-a"], "m-b": split["m-b"]}
    out = cooperative_round(survivors, weights)
    # Nobody owns m-c's units any more, so nothing waits for a release.
    assert split["m-c"] <= out["m-a"] | out["m-b"]
    final, _, _ = settle(survivors, weights)
    loads = sorted(load(tps, weights) for tps in final.values())
    assert loads[1] / sum(loads) < 0.53, loads


def test_without_owners_the_split_is_the_unit_assignors() -> None:
    """What an eager consumer (which owns nothing when it joins) agrees on with older ones."""
    for weights in (None, skewed_weights()):
        for members in ([Member("m-a"), Member("m-b")], [Member("m-a"), Member("m-b"), Member("m-c")]):
            assert assign(members, weights, kind=StickyUnitAssignor) == assign(members, weights)


def test_an_eager_member_reports_nothing_owned() -> None:
    eager = StickyUnitAssignor(contract_unit, dict, None).metadata(TOPICS)
    assert ConsumerProtocolSubscription.decode(eager.encode()).owned_partitions == []


def test_any_sequence_of_joins_and_departures_settles_whole_and_balanced() -> None:
    rng = random.Random(11)
    owned: dict[str, set[TopicPartition]] = {"m-0": set()}
    for step in range(1, 40):
        weights = {tp: rng.choice([0.0, 1_000.0, 20_000.0, 150_000.0]) for tp in sorted(ALL)}
        if len(owned) > 1 and rng.random() < 0.4:
            owned.pop(rng.choice(sorted(owned)))
        else:
            owned[f"m-{step}"] = set()
        owned, _, _ = settle(owned, weights)
        assert sorted(tp for tps in owned.values() for tp in tps) == sorted(ALL)
        for tps in owned.values():
            assert {tp.partition for tp in tps if tp.topic == ACCESS} == {
                tp.partition for tp in tps if tp.topic == AUTH
            }
        # Never worse than twice an even share unless one unit alone weighs more.
        units = {unit_of(tp.topic, tp.partition): 0.0 for tp in ALL}
        for tp in ALL:
            units[unit_of(tp.topic, tp.partition)] += weights[tp]
        bound = max(2 * sum(units.values()) / len(owned), max(units.values()))
        assert max(load(tps, weights) for tps in owned.values()) <= bound + 1e-9
