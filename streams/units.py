"""Detection units: what one worker, its detector state and its checkpoint cover.

erp.access and erp.auth are both keyed by ``actor_id``, so partition p of the two holds the
same actors: together they are *actor unit* p, judged by the rules and the learned models.
erp.logs is keyed by ``service`` and judged by the log detector alone, which keeps no state
about actors: its partition p is *log unit* p, on its own. Splitting the two lets a consumer
group balance them separately, which matters because a handful of services write most log
records: the partition holding the busiest one (``api`` in the simulated ERP) would otherwise
drag a quarter of the actors onto the same consumer.

Units are plain ints, as checkpoints are keyed: actor unit p is p (as a partition number was
before the split, so existing checkpoints keep their key) and log unit p is ``-1 - p``.
"""

from __future__ import annotations

from breachwatch.core.events import ACCESS, ACTOR_TOPICS, AUTH, LOG_TOPICS, LOGS

# What judging one event of a topic costs, relative to a log record, so that the group
# balances units by work rather than by event count. Replaying the simulated 21-day dump one
# kind at a time with a trained model: about 40 us per access or auth event (rules, the
# actor's profile, the population model) against 24 us per log record (template mining and
# sessions). Counting events alone, two consumers split the units evenly by count while one
# of them, holding most of the actor units, had 40 % more to do.
EVENT_COST: dict[str, float] = {ACCESS: 1.6, AUTH: 1.6, LOGS: 1.0}

# A consumer weighs by ``EVENT_COST`` until it has judged this many events of each unit kind
# itself; from then on by what they cost it (``CostMeter``).
COST_MIN_EVENTS = 20_000
# Past this many events of a kind, what was measured before counts half, so the figures follow
# a workload that changes (a model loaded, a detector turned off, another mix of events).
COST_HALF_AFTER = 500_000
# However a measurement comes out, one kind is never weighed more than this many times the other.
COST_RATIO_LIMIT = 10.0


class CostMeter:
    """What decoding and judging one event costs this consumer, per unit kind, as it runs.

    ``EVENT_COST`` was measured on the simulated ERP with a trained model; without a model,
    with detectors turned off or with another ERP's events the ratio differs, and a group
    balanced by the wrong ratio leaves one consumer with more to do. The group leader weighs
    by its own figures once it has them (it held every unit when the group started).
    """

    __slots__ = ("events", "seconds")

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {"actor": 0.0, "log": 0.0}
        self.events: dict[str, int] = {"actor": 0, "log": 0}

    def add(self, kind: str, events: int, seconds: float) -> None:
        """``events`` of a unit kind (``"actor"`` or ``"log"``) took ``seconds``."""
        n = self.events[kind] + events
        t = self.seconds[kind] + seconds
        if n > COST_HALF_AFTER:
            n, t = n // 2, t / 2
        self.events[kind], self.seconds[kind] = n, t

    def per_event(self) -> dict[str, float]:
        """Seconds per event of each kind measured enough to count."""
        return {k: self.seconds[k] / n for k, n in self.events.items() if n >= COST_MIN_EVENTS}

    def costs(self) -> dict[str, float]:
        """Per event topic, what one event costs relative to a log record: as measured here
        once both kinds have been, else ``EVENT_COST``."""
        measured = self.per_event()
        if len(measured) < 2 or measured["log"] <= 0:
            return dict(EVENT_COST)
        ratio = min(COST_RATIO_LIMIT, max(1 / COST_RATIO_LIMIT, measured["actor"] / measured["log"]))
        return {ACCESS: ratio, AUTH: ratio, LOGS: 1.0}


def unit_of(topic: str, partition: int) -> int:
    """The unit partition ``partition`` of ``topic`` (the contract's name) belongs to."""
    return -1 - partition if topic in LOG_TOPICS else partition


def is_log_unit(unit: int) -> bool:
    return unit < 0


def unit_partition(unit: int) -> int:
    """The partition number a unit reads (of each of its topics)."""
    return -1 - unit if unit < 0 else unit


def unit_topics(unit: int) -> tuple[str, ...]:
    return LOG_TOPICS if unit < 0 else ACTOR_TOPICS


def unit_order(unit: int) -> tuple[int, int]:
    """Sort key: by partition number, the actor unit before the log unit, so findings of a
    batch reach the store in the order they did when one worker held the whole partition."""
    return (unit_partition(unit), 1 if unit < 0 else 0)


def unit_name(unit: int) -> str:
    """How logs and metrics name a unit."""
    return f"logs/{unit_partition(unit)}" if unit < 0 else f"actors/{unit}"


def kind_of(unit: int) -> str:
    """``"actor"`` or ``"log"``: what kind of unit this is (``CostMeter``'s kinds)."""
    return "log" if is_log_unit(unit) else "actor"
