"""What every detector produces (``Finding``) and the interface it implements (``Detector``).

A detector sees batches of decoded events of one partition, in event-time order, and keeps
whatever per-actor state it needs. Its state must round-trip through ``state()`` /
``load_state()`` as plain JSON-able data, so the pipeline can checkpoint it with the input
offsets and a restarted or rebalanced consumer carries on where the last one stopped.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from breachwatch.core.events import Event
from breachwatch.core.ids import stable_id
from breachwatch.core.justification import StaffAccess
from breachwatch.core.reference import ReferenceTables

Severity = Literal["low", "medium", "high", "critical"]
SEVERITY_RANK: dict[str, int] = {"low": 0, "medium": 1, "high": 2, "critical": 3}
MAX_EVIDENCE = 1000


@dataclass(frozen=True, slots=True)
class Finding:
    """One detector's verdict that something is wrong, with the evidence and the why."""

    detector: str  # e.g. "rules.cross_tenant_access"
    kind: str  # incident kind, e.g. "cross_tenant_access"
    severity: Severity
    score: float  # 0-100, higher is worse (the one score direction of the product)
    ts: datetime  # event time of the earliest evidence event
    title: str
    reasons: tuple[str, ...]  # plain words, with numbers the on-call can check
    playbook: str
    events: tuple[Event, ...]  # the evidence, in event-time order
    actor_id: str | None = None
    tenant_ids: tuple[str, ...] = ()
    source_ips: tuple[str, ...] = ()
    # Extra facts for the console or a notice (counts, baselines); JSON-able values only.
    facts: dict[str, Any] = field(default_factory=dict)
    # What makes two firings "the same finding"; defaults to the first evidence event.
    dedup_key: str = ""
    # Event time at which the detector judged (the time to detect is measured to it); None
    # means at the latest evidence event. Evidence may run past it: the rest of the session.
    detected_at: datetime | None = None
    # A signal below the incident threshold: it adds risk to its actor's and tenant's ledgers
    # (``incidents.ledger``) instead of opening an incident of its own.
    signal: bool = False

    @property
    def finding_id(self) -> str:
        key = self.dedup_key or (self.events[0].event_id if self.events else self.ts.isoformat())
        return stable_id(self.detector, self.actor_id or "", key)

    @property
    def event_ids(self) -> tuple[str, ...]:
        return tuple(e.event_id for e in self.events[:MAX_EVIDENCE])


@dataclass(frozen=True, slots=True)
class Judgement:
    """A person's verdict on an incident, fed back to the detectors: ``false_positive`` (the
    pattern of ``kinds`` by ``actor_id`` over ``start``..``end``, at ``score``, is benign), or
    its withdrawal (the incident was reopened). ``seq`` orders verdicts as they were given."""

    seq: int
    actor_id: str
    kinds: tuple[str, ...]
    start: datetime
    end: datetime
    score: float
    false_positive: bool = True


@dataclass(frozen=True, slots=True)
class DetectionContext:
    """What a detector may consult besides its own state: the compacted reference tables."""

    tables: ReferenceTables
    partition: int = 0


@dataclass(slots=True)
class StateDelta:
    """What a checkpoint writes of one detector's state.

    A detector whose state is mostly per key (one actor's profile) itemises it, so that a
    checkpoint writes what changed since the last one rather than everything it knows:
    ``head`` is the rest of its state, whole; ``items`` the items changed since the last
    delta that was saved (``Detector.delta_saved``), and ``dropped`` the keys gone since.
    With ``complete``, ``items`` is every item and whatever was saved before is void.
    A detector that does not itemise hands its whole ``state()`` as the head.
    """

    head: dict[str, Any]
    items: dict[str, Any] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)
    complete: bool = True
    itemised: bool = False


class Detector(ABC):
    """A named source of findings. Rules and learned models both implement this."""

    name: str = "detector"
    # The event topics (the contract's names) whose events it judges: a worker gets only the
    # detectors of its unit's topics (see ``streams.units``); empty means every topic.
    topics: tuple[str, ...] = ()

    @abstractmethod
    def process(self, events: Sequence[Event], ctx: DetectionContext) -> list[Finding]:
        """Consume a batch (event-time order) and return the findings it raises."""

    def state(self) -> dict[str, Any]:
        """JSON-able state to checkpoint; stateless detectors keep the default."""
        return {}

    def take_staff_accesses(self) -> list[StaffAccess]:
        """Staff accesses judged since the last call, with their justification (the tenants'
        transparency log). The pipeline takes them after every batch and stores them with the
        batch's findings; a detector that judges none keeps the default."""
        return []

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore what ``state()`` returned."""
        return None

    def state_delta(self) -> StateDelta:
        """The state a checkpoint writes now (see ``StateDelta``): by default all of ``state()``."""
        return StateDelta(self.state())

    def delta_saved(self) -> None:
        """The last ``state_delta()`` is durable: the next one holds what changed since."""
        return None

    def delta_void(self) -> None:
        """What is stored is not what the last saved delta built (another consumer wrote the
        unit's checkpoint since): the next delta is complete."""
        return None

    def load_state_items(self, head: dict[str, Any], items: dict[str, Any]) -> None:
        """Restore from the saved head and every saved item (by default there are none)."""
        self.load_state(head)

    def judgement_seq(self) -> int | None:
        """The last verdict (``Judgement.seq``) this detector took in, as its state holds it;
        None for a detector that learns nothing from verdicts (the default)."""
        return None

    def judged(self, judgements: Sequence[Judgement]) -> None:
        """Take in verdicts given since ``judgement_seq()``, in order, between batches."""
        return None
