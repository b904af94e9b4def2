"""What a rule is (a named match function with metadata), what it returns (``Hit``) and how an
episode of hits is put into words (``Verdict``), plus the wording helpers rules share.

A rule's match function sees one event at a time with its own memory and the detection
context; it reads the event's epoch time (``ev.ts.timestamp()``, the costliest field to read)
only once the event is of interest, as most events are not. It keeps running totals for each
condition it tracks (an *episode*: one actor on one tenant on one day, one attacking address,
...) and returns a ``Hit`` naming the episode and the new evidence. The detector turns the
hits of a batch into at most one finding per episode, worded from the episode's totals, so the
same condition never makes one finding per event and the wording does not depend on where
batch boundaries fell.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np

from breachwatch.core.attack import Technique, kind_techniques
from breachwatch.core.batch import EventBatch
from breachwatch.core.events import Event
from breachwatch.core.findings import DetectionContext, Severity

DAY = 86400.0
# Day-keyed episodes are kept this long after their day ends, so an event that arrives late
# (the contract allows 5 minutes) still joins its episode instead of starting a new one.
LATE_MARGIN = 3600.0


@dataclass(frozen=True, slots=True)
class Verdict:
    """An episode in words and numbers: what the finding will say."""

    severity: Severity
    score: float  # 0-100, higher is worse
    title: str
    reasons: tuple[str, ...]
    tenant_ids: tuple[str, ...] = ()
    source_ips: tuple[str, ...] = ()
    facts: dict[str, Any] = field(default_factory=dict)
    kind: str | None = None  # overrides the rule's kind (one rule may raise two kinds)


class Episode(Protocol):
    """Running totals of one condition a rule tracks; worded on demand."""

    def verdict(self) -> Verdict: ...


@dataclass(slots=True)
class Hit:
    """One match: the episode it belongs to and the evidence it adds.

    ``key`` is the dedup key (the actor is added by the detector); ``until`` is the event time
    after which nothing more will join this episode, so its bookkeeping may be forgotten.
    """

    key: str
    actor_id: str | None
    episode: Episode
    events: tuple[Event, ...]
    until: float


class RuleMemory(Protocol):
    """A rule's own bounded state, checkpointed as plain JSON-able data."""

    def sweep(self, watermark: float) -> None:
        """Forget what can no longer matter once event time has reached ``watermark``."""

    def to_state(self) -> dict[str, Any]: ...

    def load_state(self, state: dict[str, Any]) -> None: ...


MatchFn = Callable[[Any, Any, DetectionContext], "Hit | Sequence[Hit] | None"]
# Which events of a batch a rule may act on, as one vectorised test over its columns: every
# event it leaves out is one whose match would return None at once, with no effect on memory.
WantsFn = Callable[[EventBatch], np.ndarray]


@dataclass(frozen=True, slots=True)
class Rule:
    """A named detection rule: a match function and what the on-call needs to know about it."""

    name: str
    kind: str
    severity: Severity  # the usual severity; an episode may raise or lower it
    description: str
    playbook: str
    inputs: tuple[type, ...]  # event classes the rule looks at
    match: MatchFn
    memory: Callable[[], RuleMemory] | None = None
    # Without it, the rule sees every event of its inputs.
    wants: WantsFn | None = None

    @property
    def detector(self) -> str:
        return f"rules.{self.name}"

    @property
    def attack(self) -> tuple[Technique, ...]:
        """The MITRE ATT&CK techniques of the rule's kind (``core/attack.toml``)."""
        return kind_techniques().get(self.kind, ())


def rule(
    *,
    name: str,
    kind: str,
    severity: Severity,
    description: str,
    playbook: str,
    inputs: tuple[type, ...],
    memory: Callable[[], RuleMemory] | None = None,
    wants: WantsFn | None = None,
) -> Callable[[MatchFn], Rule]:
    """Declare a match function as a rule, StreamAlert style: metadata next to the logic."""

    def wrap(fn: MatchFn) -> Rule:
        return Rule(
            name=name,
            kind=kind,
            severity=severity,
            description=description,
            playbook=playbook,
            inputs=inputs,
            match=fn,
            memory=memory,
            wants=wants,
        )

    return wrap


# --- wording ---------------------------------------------------------------------------------

VERB_PAST: dict[str, str] = {
    "read": "read",
    "search": "searched",
    "export": "exported",
    "create": "created",
    "update": "updated",
    "delete": "deleted",
}


def day_of(t: float) -> str:
    """The UTC calendar day of an epoch time, as the dedup keys name it."""
    try:
        return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d")
    except (OverflowError, ValueError, OSError):
        # Outside datetime's range (only possible for absurd offsets at year 1 or 9999).
        return f"day{math.floor(t / DAY)}"


def minute_of(t: float) -> str:
    """The UTC minute of an epoch time, naming an episode by when it started."""
    try:
        return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%MZ")
    except (OverflowError, ValueError, OSError):
        return f"minute{math.floor(t / 60)}"


def day_end(t: float) -> float:
    """When a day-keyed episode containing ``t`` may be forgotten."""
    return (math.floor(t / DAY) + 1) * DAY + LATE_MARGIN


def when(t: float) -> str:
    """An epoch time as the on-call reads it: ``2026-11-24 02:41:19 UTC``."""
    try:
        return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, ValueError, OSError):
        return f"epoch {t:.0f}"


def span(first: float, last: float) -> str:
    """A time range in as few words as it needs: ``between 09:20:00 and 09:25:00 UTC on 2026-11-24``."""
    try:
        a = datetime.fromtimestamp(first, UTC)
        b = datetime.fromtimestamp(last, UTC)
    except (OverflowError, ValueError, OSError):
        return f"between {when(first)} and {when(last)}"
    if a == b:
        return f"at {a:%H:%M:%S} UTC on {a:%Y-%m-%d}"
    if a.date() == b.date():
        return f"between {a:%H:%M:%S} and {b:%H:%M:%S} UTC on {a:%Y-%m-%d}"
    return f"between {when(first)} and {when(last)}"


def num(n: float) -> str:
    """A count with thousands separators: 48,211."""
    return f"{n:,.0f}"


def plural(n: int, one: str, many: str | None = None) -> str:
    """``3 accounts``, ``1 account``."""
    return f"{num(n)} {one if n == 1 else (many or one + 's')}"


def listing(items: Sequence[str], limit: int = 10) -> str:
    """``a, b and c``; long lists end in ``and N more``."""
    shown = list(items[:limit])
    rest = len(items) - len(shown)
    if rest > 0:
        return ", ".join(shown) + f" and {rest} more"
    if len(shown) <= 1:
        return "".join(shown)
    return ", ".join(shown[:-1]) + " and " + shown[-1]


def log_bonus(n: float, per_decade: float, cap: float) -> float:
    """A score increment that grows with the order of magnitude of ``n``."""
    return min(cap, per_decade * math.log10(1.0 + max(n, 0.0)))


def bounded_add(items: list[str], value: str | None, cap: int) -> None:
    """Append ``value`` to a short list of distinct values unless present or full."""
    if value and len(items) < cap and value not in items:
        items.append(value)
