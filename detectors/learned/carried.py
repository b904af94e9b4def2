"""The events an actor carries from one batch to the next, as one compact blob per actor.

A finding raised in a later batch shows how its episode started (the failed logins before a
takeover), so the learned detector keeps each active actor's last hour of events. Most are
never evidence, so they are kept as bytes, not as objects: per actor one ``marshal`` blob of
the field values (a value repeated across the actor's events, such as its id, address, agent
or session, is written once), behind the time of the last event so that expiry needs no
decoding. An event's time travels as its epoch float, which gives back the same UTC datetime
to the microsecond (events hold their times in UTC, see ``core.events.Timestamp``).

A few hundred bytes per actor where the model objects cost about 250 bytes per event. marshal's
format belongs to this Python version: the blobs never leave the process (checkpoints hold
the events as JSON).
"""

from __future__ import annotations

import marshal
import struct
from datetime import UTC, datetime
from typing import Any

from breachwatch.core.events import AccessEvent, AuthEvent, Event
from breachwatch.detectors.learned.squeeze import Squeezer

# A carried event: its time, whether it is an auth event, and its field values in model order
# (its time among them as None: it is the first item).
Carried = tuple[float, bool, tuple[Any, ...]]
_FIELDS: dict[bool, tuple[str, ...]] = {True: tuple(AuthEvent.model_fields), False: tuple(AccessEvent.model_fields)}
# Where each model keeps its time among its fields.
_TS: dict[bool, int] = {auth: names.index("ts") for auth, names in _FIELDS.items()}
# A blob: its newest event's time, its oldest time and how many events it holds, then chunks
# (the events of one or more batches), each its length and a marshal of a list of events.
_HEAD = struct.Struct("<ddI")
_CHUNK = struct.Struct("<I")


def carried(e: Event, ts: float) -> Carried:
    """``e`` (at epoch ``ts``) as carried: its values without the datetime object."""
    auth = e.__class__ is AuthEvent
    # A validated model's __dict__ holds exactly its fields, in declaration order.
    values = list(e.__dict__.values())
    values[_TS[auth]] = None
    return (ts, auth, tuple(values))


def event(c: Carried) -> AccessEvent | AuthEvent:
    """The event again, without validating what was validated when it arrived."""
    auth = c[1]
    values = dict(zip(_FIELDS[auth], c[2], strict=True))
    values["ts"] = datetime.fromtimestamp(c[0], UTC)
    return (AuthEvent if auth else AccessEvent).model_construct(**values)


def to_blob(events: list[Carried]) -> bytes:
    """One actor's carried events (in the order they came, at least one) as bytes."""
    return _HEAD.pack(events[-1][0], min(c[0] for c in events), len(events)) + _chunk(events)


def _chunk(events: list[Carried]) -> bytes:
    body = marshal.dumps(events)
    return _CHUNK.pack(len(body)) + body


def appended(blob: bytes | None, new: list[Carried], last: float, span: float, cap: int) -> bytes:
    """``blob`` (None: no events yet) and then the ``new`` events (at least one), keeping those
    within ``span`` of ``last`` and of them the last ``cap``.

    When nothing of ``blob`` goes (the actor's events of its last few batches), the new events
    are one more chunk behind it: what was carried is neither decoded nor written again.
    """
    if blob is not None and len(new) < cap:
        _, oldest, held = _HEAD.unpack_from(blob)
        if last - oldest <= span and held + len(new) <= cap:
            head = _HEAD.pack(new[-1][0], min(oldest, min(c[0] for c in new)), held + len(new))
            return head + blob[_HEAD.size :] + _chunk(new)
    kept = [c for c in from_blob(blob) if last - c[0] <= span] if len(new) < cap else []
    kept.extend(new)
    return to_blob(kept[-cap:])


def from_blob(blob: bytes | None) -> list[Carried]:
    """The events a blob holds, in the order they came (none for None)."""
    if blob is None:
        return []
    out: list[Carried] = []
    view = memoryview(blob)
    at = _HEAD.size
    while at < len(blob):
        (size,) = _CHUNK.unpack_from(blob, at)
        at += _CHUNK.size
        out.extend(marshal.loads(view[at : at + size]))
        at += size
    return out


def last_time(blob: bytes) -> float:
    """The time of the newest event in a blob (of ``to_blob`` or ``squeezed``)."""
    return float(_HEAD.unpack_from(blob)[0])


def squeezed(blob: bytes) -> bytes:
    """An idle actor's blob, compressed (it is read again only when the actor returns)."""
    return blob[: _HEAD.size] + _SQUEEZER.squeeze(blob[_HEAD.size :])


def unsqueezed(blob: bytes) -> bytes:
    return blob[: _HEAD.size] + _SQUEEZER.unsqueeze(blob[_HEAD.size :])


def _typical() -> bytes:
    """The blob of a login and a few reads (synthetic, example values): the preset dictionary
    of squeezed blobs (see ``squeeze``)."""
    who = {
        "actor_id": "user-0001",
        "actor_type": "customer_user",
        "actor_tenant": "tenant-01",
        "ip": "192.0.2.1",
        "country": "DE",
        "user_agent": "agent/1.0",
        "session_id": "session-0001",
    }
    ts = 1.7e9
    events: list[Event] = [
        AuthEvent.model_validate(
            {**who, "event_id": "evt-0", "ts": datetime.fromtimestamp(ts, UTC), "action": "login", "outcome": "success"}
        )
    ]
    for k in range(1, 4):
        read = {"tenant_id": "tenant-01", "action": "read", "resource_type": "invoice", "sensitivity": "financial"}
        events.append(
            AccessEvent.model_validate(
                {**who, **read, "event_id": f"evt-{k}", "ts": datetime.fromtimestamp(ts + k, UTC), "records": 5}
            )
        )
    return to_blob([carried(e, e.ts.timestamp()) for e in events])


_SQUEEZER = Squeezer(_typical())
