"""The facts of a breach that decide which duties apply: head counts, entity traits, moments.

Each fact may be unknown. The engine keeps a duty whose trigger an unknown fact could still
meet (with that fact as a condition) and reports it as undecided; it never drops it silently.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, model_validator


class Headcount(BaseModel):
    """How many affected people: a range, ``high`` None when there is no upper bound known."""

    model_config = ConfigDict(frozen=True)

    low: int = 0
    high: int | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Headcount:
        if self.low < 0 or (self.high is not None and self.high < self.low):
            raise ValueError(f"a head count range must satisfy 0 <= low <= high, got {self.low}..{self.high}")
        return self

    @classmethod
    def of(cls, count: int | None) -> Headcount:
        """An exact count, or the unknown range for None."""
        if count is not None and count < 0:
            raise ValueError(f"affected_subjects cannot be negative, got {count}")
        return cls() if count is None else cls(low=count, high=count)

    @property
    def exact(self) -> int | None:
        return self.low if self.high == self.low else None

    def at_least(self, bound: int) -> bool | None:
        """Whether the count is at least ``bound``: True, False, or None (cannot tell)."""
        if self.low >= bound:
            return True
        return False if self.high is not None and self.high < bound else None

    def at_most(self, bound: int) -> bool | None:
        """Whether the count is at most ``bound``: True, False, or None (cannot tell)."""
        if self.high is not None and self.high <= bound:
            return True
        return False if self.low > bound else None


def split_by_jurisdiction(
    affected: int | None,
    population: Mapping[str, int],
    total_population: int | None,
) -> dict[str, Headcount]:
    """Bounds on the affected people living in each jurisdiction of ``population``.

    ``population`` is the tenant's data subjects per jurisdiction (tenant contract 1.1,
    ``data_subjects_by_jurisdiction``) and ``total_population`` its ``data_subjects``. At most
    ``affected`` or the jurisdiction's population are affected there; at least as many as cannot
    have lived elsewhere (with a known total).
    """
    counts: dict[str, Headcount] = {}
    for code, living in population.items():
        if affected is None:
            counts[code] = Headcount(high=living)
            continue
        elsewhere = None if total_population is None else max(0, total_population - living)
        low = 0 if elsewhere is None else max(0, affected - elsewhere)
        high = min(affected, living)
        counts[code] = Headcount(low=min(low, high), high=high)
    return counts


@dataclass(frozen=True, slots=True)
class TraitFacts:
    """Traits the entity is known to have, and known not to have; any other trait is unknown."""

    held: frozenset[str] = frozenset()
    lacked: frozenset[str] = frozenset()

    @classmethod
    def of(cls, traits: Iterable[str] | Mapping[str, bool]) -> TraitFacts:
        """From a list (the traits held; the rest unknown) or a mapping trait -> held or not."""
        if isinstance(traits, Mapping):
            return cls(
                held=frozenset(t for t, v in traits.items() if v),
                lacked=frozenset(t for t, v in traits.items() if not v),
            )
        return cls(held=frozenset(traits))

    @property
    def named(self) -> frozenset[str]:
        return self.held | self.lacked

    def state(self, trait: str) -> bool | None:
        """True (held), False (lacked) or None (unknown)."""
        if trait in self.held:
            return True
        return False if trait in self.lacked else None


def utc(moment: datetime, name: str) -> datetime:
    """``moment`` in UTC; a naive datetime is refused, since its zone is a guess."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be time-zone aware, got naive {moment.isoformat()}")
    return moment.astimezone(UTC)
