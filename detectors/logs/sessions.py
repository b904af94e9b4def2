"""What the log detector holds open: sessions being recorded and bursts of new error templates,
each with the records kept as its evidence, and all of it as plain JSON-able state."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from breachwatch.core.events import LogRecord
from breachwatch.core.findings import MAX_EVIDENCE

START = 0  # pseudo template id before a session's first record (template ids start at 1)
# Template ids of a session kept in order, for its steps as the count model sees them; the
# counts stay exact beyond it.
MAX_SEQUENCE = 256
ERROR_LEVELS = frozenset({"ERROR", "CRITICAL"})
FATAL_LEVEL = "CRITICAL"  # what FATAL, FAILURE and PANIC map to: a component says it failed


def record_state(rec: LogRecord) -> dict[str, Any]:
    return rec.model_dump(mode="json", exclude_none=True)


def record_load(data: Mapping[str, Any]) -> LogRecord:
    # Through JSON so the record is validated exactly as when it was first decoded.
    return LogRecord.model_validate_json(json.dumps(data))


def first_actor(records: Iterable[LogRecord]) -> str | None:
    for r in records:
        if r.actor_id:
            return r.actor_id
    return None


def evidence(records: Iterable[LogRecord]) -> tuple[LogRecord, ...]:
    # Records may arrive a little out of order; evidence is shown in event-time order.
    return tuple(sorted(records, key=lambda r: r.ts)[:MAX_EVIDENCE])


class Session:
    """An open session: template counts, steps, its first template ids in order, its records."""

    __slots__ = (
        "actor_id",
        "counts",
        "errors",
        "event_ids",
        "events",
        "fatal",
        "first_event_id",
        "first_ts",
        "key",
        "last_tid",
        "last_ts",
        "records",
        "seq",
        "service",
        "steps",
    )

    def __init__(self, service: str, key: str, first: LogRecord, t: float) -> None:
        self.service = service
        self.key = key
        self.first_event_id = first.event_id
        self.first_ts = t
        self.last_ts = t
        self.records = 0
        self.errors = 0
        self.fatal: dict[int, None] = {}  # templates of its CRITICAL records, an ordered set
        self.counts: dict[int, int] = {}
        self.steps: dict[tuple[int, int], None] = {}  # an ordered set
        self.seq: list[int] = []
        self.last_tid = START
        self.events: list[LogRecord] = []
        self.event_ids: set[str] = set()
        self.actor_id: str | None = None

    def add(self, rec: LogRecord, tid: int, t: float) -> None:
        """Count a record of template ``tid`` at event time ``t`` (its evidence is kept, or
        not, by the caller)."""
        if self.actor_id is None and rec.actor_id:
            self.actor_id = rec.actor_id
        self.records += 1
        if rec.level in ERROR_LEVELS:
            self.errors += 1
            if rec.level == FATAL_LEVEL:
                self.fatal[tid] = None
        counts = self.counts
        counts[tid] = counts.get(tid, 0) + 1
        if len(self.seq) < MAX_SEQUENCE:
            self.seq.append(tid)
        if tid != self.last_tid:
            # Runs of one template collapse to one step, so "read x100" is one transition.
            if len(self.steps) < MAX_EVIDENCE:
                self.steps[(self.last_tid, tid)] = None
            self.last_tid = tid
        if t > self.last_ts:
            self.last_ts = t
        elif t < self.first_ts:
            self.first_ts = t

    def identity(self) -> str:
        """What tells one session from every other, also after a restart."""
        return "\x1f".join((self.service, self.key, self.first_event_id))

    def state(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "key": self.key,
            "first_event_id": self.first_event_id,
            "first_ts": self.first_ts,
            "last_ts": self.last_ts,
            "records": self.records,
            "errors": self.errors,
            "fatal": list(self.fatal),
            "counts": [[t, c] for t, c in self.counts.items()],
            "steps": [list(s) for s in self.steps],
            "seq": self.seq,
            "last_tid": self.last_tid,
            "actor_id": self.actor_id,
            "events": [record_state(r) for r in self.events],
        }

    @classmethod
    def from_state(cls, s: Mapping[str, Any]) -> Session:
        events = [record_load(r) for r in s["events"]]
        sess = cls.__new__(cls)
        sess.service = s["service"]
        sess.key = s["key"]
        sess.first_event_id = s["first_event_id"]
        sess.first_ts = float(s["first_ts"])
        sess.last_ts = float(s["last_ts"])
        sess.records = int(s["records"])
        sess.errors = int(s["errors"])
        sess.fatal = {int(t): None for t in s.get("fatal", ())}  # absent before fatal records counted
        sess.counts = {int(t): int(c) for t, c in s["counts"]}
        sess.steps = {(int(a), int(b)): None for a, b in s["steps"]}
        # Sessions of version-1 checkpoints kept no order: their steps stand in, as a chain.
        sess.seq = [int(t) for t in s.get("seq", [b for _, b in s["steps"]][:MAX_SEQUENCE])]
        sess.last_tid = int(s["last_tid"])
        sess.events = events
        sess.event_ids = {r.event_id for r in events}
        sess.actor_id = s["actor_id"]
        return sess


class Burst:
    """An open burst of new error templates, kept until the window passes without more."""

    __slots__ = ("dedup_key", "event_ids", "events", "first_ts", "last_ts", "levels", "reported", "stats", "tids")

    def __init__(self, dedup_key: str, first_ts: float) -> None:
        self.dedup_key = dedup_key
        self.first_ts = first_ts
        self.last_ts = first_ts
        self.tids: dict[int, None] = {}
        self.events: list[LogRecord] = []
        self.event_ids: set[str] = set()
        self.levels: dict[str, None] = {}
        self.stats: dict[str, float] = {}
        self.reported = 0  # evidence size when the finding was last emitted

    def add(self, rec: LogRecord, tid: int, new: bool, t: float) -> None:
        if new:
            self.tids[tid] = None
            self.levels[rec.level] = None
            self.last_ts = max(self.last_ts, t)
        if len(self.events) < MAX_EVIDENCE and rec.event_id not in self.event_ids:
            self.events.append(rec)
            self.event_ids.add(rec.event_id)

    def state(self) -> dict[str, Any]:
        return {
            "dedup_key": self.dedup_key,
            "first_ts": self.first_ts,
            "last_ts": self.last_ts,
            "tids": list(self.tids),
            "events": [record_state(r) for r in self.events],
            "levels": list(self.levels),
            "stats": dict(self.stats),
            "reported": self.reported,
        }

    @classmethod
    def from_state(cls, s: Mapping[str, Any]) -> Burst:
        b = cls(s["dedup_key"], float(s["first_ts"]))
        b.last_ts = float(s["last_ts"])
        b.tids = {int(t): None for t in s["tids"]}
        b.events = [record_load(r) for r in s["events"]]
        b.event_ids = {r.event_id for r in b.events}
        b.levels = {str(v): None for v in s["levels"]}
        b.stats = {str(k): float(v) for k, v in s["stats"].items()}
        b.reported = int(s["reported"])
        return b
