"""Bytes from a topic to a typed event, or a precise reason why not.

The happy path is one pydantic call on the raw bytes. Only when that fails do we spend time
working out *why* (size, UTF-8, JSON, schema), so a dead-lettered message always says what
was wrong with it without slowing down the millions that are fine.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import ValidationError

from breachwatch.core.events import MODEL_BY_TOPIC, REFERENCE_TOPICS, Event, Reference

FailureKind = Literal["too_large", "not_utf8", "not_json", "schema", "nul_text", "tombstone", "unknown_topic"]

# Header names on a dead-lettered record; the value is the original bytes, untouched.
H_ERROR = "bw.error"
H_KIND = "bw.error.kind"
H_TOPIC = "bw.source.topic"
H_PARTITION = "bw.source.partition"
H_OFFSET = "bw.source.offset"
H_TIMESTAMP = "bw.source.timestamp"

_MAX_REASON = 2000


class DecodeFailure(Exception):
    """Why one message could not become an event; goes on the dead-letter record."""

    def __init__(self, kind: FailureKind, reason: str) -> None:
        super().__init__(f"{kind}: {reason}")
        self.kind = kind
        self.reason = reason[:_MAX_REASON]


def _schema_reason(exc: ValidationError) -> str:
    # Name the fields and the rules broken, never echo the offending values (they are
    # attacker-controlled and may be huge).
    parts = []
    for err in exc.errors(include_url=False, include_input=False)[:10]:
        loc = ".".join(str(p) for p in err["loc"]) or "(message)"
        parts.append(f"{loc}: {err['msg']}")
    more = exc.error_count() - len(parts)
    if more > 0:
        parts.append(f"and {more} more")
    return "; ".join(parts)


def decode(topic: str, value: bytes | None, max_bytes: int) -> Event | Reference | None:
    """Decode one message value of ``topic`` (the contract's name, without prefix).

    Returns ``None`` for a tombstone on a compacted reference topic (it deletes the key).
    Raises ``DecodeFailure`` for anything that cannot be trusted as an event.
    """
    model = MODEL_BY_TOPIC.get(topic)
    if model is None:
        raise DecodeFailure("unknown_topic", f"no contract for topic {topic!r}")
    if value is None:
        if topic in REFERENCE_TOPICS:
            return None
        raise DecodeFailure("tombstone", "null value on an event topic")
    if len(value) > max_bytes:
        raise DecodeFailure("too_large", f"{len(value)} bytes exceeds the limit of {max_bytes}")
    try:
        # The compiled validator itself: ``model_validate_json`` only forwards its default
        # options to it, at about a fifth of the cost of the validation on a short event.
        decoded = model.__pydantic_validator__.validate_json(value)
    except ValidationError as exc:
        raise _classify(value, exc) from None
    # JSON may carry U+0000 in a string (only as an escape), and the schemas allow it, but
    # PostgreSQL text cannot hold it: stored, it would fail every retry and stop the stream.
    if b"\\u0000" in value and _holds_nul(decoded.model_dump()):
        raise DecodeFailure("nul_text", "a text field holds U+0000 (NUL), which the incident store cannot keep")
    return decoded  # type: ignore[no-any-return]


def decode_all(topic: str, values: Sequence[bytes | None], max_bytes: int) -> list[Event | DecodeFailure]:
    """Decode the values of one event topic's messages: for each, in order, its event or
    why it cannot be one, exactly as ``decode`` says (``decode`` decides every value the
    plain path below does not take).

    Values are validated one call each: joined into one JSON array, a value that is not one
    JSON value on its own (``{..}, {..`` beside ``..}``) could pair up with its neighbour and
    pass as someone else's event. The saving is the per-message overhead of ``decode``."""
    model = MODEL_BY_TOPIC.get(topic)
    if model is None or topic in REFERENCE_TOPICS:
        raise ValueError(f"{topic!r} is not an event topic")
    validate = model.__pydantic_validator__.validate_json
    out: list[Event | DecodeFailure] = []
    append = out.append
    for value in values:
        if value is None or len(value) > max_bytes or b"\\u0000" in value:
            try:
                append(decode(topic, value, max_bytes))  # type: ignore[arg-type]
            except DecodeFailure as failure:
                append(failure)
            continue
        try:
            append(validate(value))
        except ValidationError as exc:
            append(_classify(value, exc))
    return out


def _holds_nul(obj: object) -> bool:
    if isinstance(obj, str):
        return "\x00" in obj
    if isinstance(obj, dict):
        return any(_holds_nul(k) or _holds_nul(v) for k, v in obj.items())
    if isinstance(obj, list | tuple):
        return any(_holds_nul(v) for v in obj)
    return False


def _classify(value: bytes, exc: ValidationError) -> DecodeFailure:
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as err:
        return DecodeFailure("not_utf8", f"invalid UTF-8 at byte {err.start}: {err.reason}")
    first = exc.errors(include_url=False, include_input=False)[0] if exc.error_count() else None
    if first is not None and first["type"] == "json_invalid":
        try:
            json.loads(text)
        except (ValueError, RecursionError) as err:
            return DecodeFailure("not_json", f"not valid JSON: {str(err)[:200]}")
        # pydantic's parser is stricter than json (e.g. nesting depth); report its words.
        return DecodeFailure("not_json", f"not valid JSON: {first['msg']}")
    if first is not None and first["type"] == "model_type":
        return DecodeFailure("schema", "the message is not a JSON object")
    return DecodeFailure("schema", _schema_reason(exc))


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message that could not be decoded, ready for ``<topic>.dlq``."""

    topic: str  # the dead-letter topic, including any deployment prefix
    key: bytes | None
    value: bytes | None  # the original bytes, unchanged
    headers: list[tuple[str, bytes]]


def dead_letter(
    full_topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    failure: DecodeFailure,
    timestamp_ms: int | None = None,
) -> DeadLetter:
    headers = [
        (H_ERROR, failure.reason.encode("utf-8", "replace")),
        (H_KIND, failure.kind.encode()),
        (H_TOPIC, full_topic.encode()),
        (H_PARTITION, str(partition).encode()),
        (H_OFFSET, str(offset).encode()),
    ]
    if timestamp_ms is not None:
        headers.append((H_TIMESTAMP, str(timestamp_ms).encode()))
    return DeadLetter(f"{full_topic}.dlq", key, value, headers)
