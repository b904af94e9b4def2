"""A batch of one unit's events in event-time order, with the columns detectors read, built once.

Detectors see a batch as a sequence of decoded events (evidence is events), and read what they
filter and count on from columns: each event's epoch time, its topic, and the closed
vocabularies of the contract (action, outcome, sensitivity, actor type) as small integer codes
in numpy arrays. A rule then picks the few events it can act on with one vectorised test over
the batch instead of a Python call per event, and every detector reads an event's time as a
float once per batch instead of converting its datetime each time.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, get_args, overload

import numpy as np

from breachwatch.core.events import AccessEvent, ActorType, AuthEvent, Event, LogRecord, Sensitivity

# Topic codes (``EventBatch.kinds``).
K_ACCESS, K_AUTH, K_LOG = 0, 1, 2
KINDS: dict[type, int] = {AccessEvent: K_ACCESS, AuthEvent: K_AUTH, LogRecord: K_LOG}


def _vocabulary(*words: str) -> dict[str | None, int]:
    """Codes of a closed vocabulary of the contract; 0 stands for "absent"."""
    out: dict[str | None, int] = {None: 0}
    for w in words:
        out.setdefault(w, len(out))
    return out


def _literal(field: Any) -> tuple[str, ...]:
    return tuple(get_args(field.annotation))


ACTIONS = _vocabulary(*_literal(AccessEvent.model_fields["action"]), *_literal(AuthEvent.model_fields["action"]))
OUTCOMES = _vocabulary(*_literal(AccessEvent.model_fields["outcome"]), *_literal(AuthEvent.model_fields["outcome"]))
SENSITIVITIES = _vocabulary(*get_args(Sensitivity))
ACTOR_TYPES = _vocabulary(*get_args(ActorType))


def among(vocabulary: dict[str | None, int], *words: str) -> np.ndarray:
    """A lookup table over a vocabulary's codes, true at ``words``: ``among(...)[column]`` tests
    a whole column at once (``np.isin`` sorts, and costs many times more on a small batch)."""
    table = np.zeros(len(vocabulary), dtype=bool)
    table[[vocabulary[w] for w in words]] = True
    return table


class EventBatch(Sequence[Event]):
    """One unit's events in event-time order; columns are built on first use, once."""

    __slots__ = ("_columns", "_ts", "events")

    def __init__(self, events: list[Event]) -> None:
        self.events = events
        self._ts: list[float] | None = None
        self._columns: dict[str, np.ndarray] = {}

    @classmethod
    def of(cls, events: Sequence[Event]) -> EventBatch:
        """``events`` as a batch (itself if it is one already)."""
        return events if isinstance(events, EventBatch) else cls(list(events))

    def __len__(self) -> int:
        return len(self.events)

    @overload
    def __getitem__(self, i: int) -> Event: ...

    @overload
    def __getitem__(self, i: slice) -> list[Event]: ...

    def __getitem__(self, i: int | slice) -> Event | list[Event]:
        return self.events[i]

    def __iter__(self) -> Iterator[Event]:
        return iter(self.events)

    @property
    def ts(self) -> list[float]:
        """Each event's time in epoch seconds (a list: detectors read it one event at a time)."""
        if self._ts is None:
            self._ts = [e.ts.timestamp() for e in self.events]
        return self._ts

    def column(self, name: str) -> np.ndarray:
        """A column: ``kinds`` (``K_ACCESS``...); the codes of ``action``, ``outcome``,
        ``sensitivity`` and ``actor_type`` (0 where the event has no such field); ``records``
        (0 where none); ``foreign`` (true where an access names a tenant other than its
        actor's own)."""
        col = self._columns.get(name)
        if col is None:
            col = self._columns[name] = self._build(name)
        return col

    def _build(self, name: str) -> np.ndarray:
        evs = self.events
        if name == "kinds":
            kind = KINDS
            return np.fromiter((kind[e.__class__] for e in evs), dtype=np.int8, count=len(evs))
        # Fields are read from each model's __dict__: a missing attribute (an auth event has no
        # ``records``) costs a raised and caught exception through pydantic's __getattr__.
        if name == "records":
            return np.array([e.__dict__.get("records") or 0 for e in evs], dtype=np.int64)
        if name == "foreign":
            return np.fromiter(
                (
                    e.__class__ is AccessEvent and e.actor_tenant is not None and e.actor_tenant != e.tenant_id
                    for e in evs
                ),
                dtype=bool,
                count=len(evs),
            )
        vocabulary = {
            "action": ACTIONS,
            "outcome": OUTCOMES,
            "sensitivity": SENSITIVITIES,
            "actor_type": ACTOR_TYPES,
        }[name]
        get = vocabulary.get
        return np.array([get(e.__dict__.get(name), 0) for e in evs], dtype=np.int8)
