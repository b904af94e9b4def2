"""Which open log sessions a checkpoint of changes must write, and in what order they come back.

The log detector's open sessions carry their evidence records, so its state is mostly sessions:
on a busy log unit, tens of megabytes written whole at every checkpoint, which stalled the live
service for up to a second each time. Itemised, a checkpoint writes the sessions that got a
record since the last one saved and drops the ones closed since.

Open sessions are kept least recently active first, and restoring must rebuild that order
exactly (idle sessions are closed from the front). Every session touched since a save sits
behind every untouched one, in the order of its last touch. So each written session carries an
order number, larger than any written before: sorting by it gives the order back.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from breachwatch.detectors.logs.sessions import Session

SessionKey = tuple[str, str]  # (service, session or trace id): how the detector finds a session


def item_key(sess: Session) -> str:
    """A session's key in the store: its identity, hashed to a fixed width (service names and
    session ids come from the events, and the store's key column is bounded)."""
    return hashlib.blake2b(sess.identity().encode(), digest_size=16).hexdigest()


@dataclass(slots=True)
class SessionDeltas:
    """Sessions touched and closed since the last checkpoint saved."""

    touched: set[SessionKey] = field(default_factory=set)
    closed: set[str] = field(default_factory=set)  # item keys
    complete: bool = True  # the next checkpoint writes every open session
    next_order: int = 0  # order number of the next session written, as saved
    _pending_order: int = 0  # what ``next_order`` becomes once the last delta is saved

    def touch(self, skey: SessionKey) -> None:
        """The session got a record. Not tracked while the next checkpoint writes everything
        anyway: a replay that saves no checkpoint must not collect every session it saw."""
        if not self.complete:
            self.touched.add(skey)

    def close(self, sess: Session) -> None:
        if not self.complete:
            self.closed.add(item_key(sess))

    def build(self, sessions: OrderedDict[SessionKey, Session]) -> tuple[dict[str, Any], list[str], int]:
        """Items (item key -> order and session state), dropped item keys and the next order
        number for a checkpoint of ``sessions`` (least recently active first). Calling it again
        before ``saved`` gives the same answer."""
        if self.complete:
            chosen: Iterable[Session] = sessions.values()
            base = 0
        else:
            chosen = _tail(sessions, self.touched)
            base = self.next_order
        items = {item_key(s): {"order": base + i, "session": s.state()} for i, s in enumerate(chosen)}
        self._pending_order = base + len(items)
        dropped = [] if self.complete else [k for k in self.closed if k not in items]
        return items, dropped, self._pending_order

    def saved(self) -> None:
        self._start(complete=False, next_order=self._pending_order)

    def void(self) -> None:
        self._start(complete=True, next_order=self.next_order)

    def restored(self, next_order: int) -> None:
        """The store holds exactly what was just loaded."""
        self._start(complete=False, next_order=next_order)

    def _start(self, *, complete: bool, next_order: int) -> None:
        """Track from here: nothing touched or closed yet."""
        self.touched.clear()
        self.closed.clear()
        self.complete = complete
        self.next_order = self._pending_order = next_order


def _tail(sessions: OrderedDict[SessionKey, Session], touched: set[SessionKey]) -> list[Session]:
    """The touched sessions still open, in their order: all at the back, so read from there."""
    wanted = len(touched.intersection(sessions))
    out: list[Session] = []
    for skey in reversed(sessions):
        if len(out) == wanted:
            break
        if skey in touched:
            out.append(sessions[skey])
    out.reverse()
    return out


def in_order(items: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Saved session items as session states, least recently active first."""
    return [it["session"] for it in sorted(items.values(), key=lambda it: int(it["order"]))]
