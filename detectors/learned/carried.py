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
_HEAD = struct.Struct("<d")


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
    """One actor's carried events (oldest first, at least one) as bytes."""
    return _HEAD.pack(events[-1][0]) + marshal.dumps(events)


def from_blob(blob: bytes | None) -> list[Carried]:
    """The events ``to_blob`` kept (none for None)."""
    return [] if blob is None else marshal.loads(blob[_HEAD.size :])  # type: ignore[no-any-return]


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
    return to_blob([carried(e, e.ts.timestamp()) for e in events])[_HEAD.size :]


_SQUEEZER = Squeezer(_typical())
