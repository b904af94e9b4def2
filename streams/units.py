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

from streams.models import ACCESS, AUTH, LOGS

ACTOR_TOPICS: tuple[str, ...] = (ACCESS, AUTH)
LOG_TOPICS: tuple[str, ...] = (LOGS,)

# What judging one event of a topic costs, relative to a log record, so that the group
# balances units by work rather than by event count. Replaying the simulated 21-day dump one
# kind at a time with a trained model: about 40 us per access or auth event (rules, the
# actor's profile, the population model) against 24 us per log record (template mining and
# sessions). Counting events alone, two consumers split the units evenly by count while one
# of them, holding most of the actor units, had 40 % more to do.
EVENT_COST: dict[str, float] = {ACCESS: 1.6, AUTH: 1.6, LOGS: 1.0}


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
