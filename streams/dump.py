"""Topic dumps (a folder of ``<topic>.jsonl`` files): reading them as the broker would deliver
them, reference tables first (compacted topics a consumer reads to the end before it starts),
then the event topics merged in event time, decoded (or scanned for their time and key only),
with every line that cannot be decoded handed to a dead-letter sink. ``runtime.replay`` runs
the pipeline over them; ``streams.produce`` loads them into the topics.
"""

from __future__ import annotations

import contextlib
import heapq
import json
import logging
import re
from collections.abc import Callable, Iterator
from datetime import datetime
from itertools import chain, islice
from operator import attrgetter
from pathlib import Path
from typing import Any

from breachwatch.core.events import EVENT_TOPICS, KEY_FIELD, REFERENCE_TOPICS, Event, Reference
from breachwatch.streams.decode import DeadLetter, DecodeFailure, dead_letter, decode, decode_all

log = logging.getLogger(__name__)

DeadLetterSink = Callable[[DeadLetter], None]
Progress = Callable[[int], None]
ApplyReference = Callable[[str, str, Reference], None]


def dump_file(dump: Path, topic: str) -> Path:
    return dump / f"{topic}.jsonl"


def read_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """(line number from 0, raw bytes) for each non-blank line; the line number stands in
    for the offset in dead letters and evidence."""
    if not path.exists():
        return
    with path.open("rb") as fh:
        for n, line in enumerate(fh):
            line = line.rstrip(b"\r\n")
            if line.strip():
                yield n, line


def check_dump(dump: Path) -> None:
    if not dump.is_dir():
        raise FileNotFoundError(f"dump folder not found: {dump}")
    if not any(dump_file(dump, t).exists() for t in EVENT_TOPICS):
        raise FileNotFoundError(f"{dump} holds none of {', '.join(t + '.jsonl' for t in EVENT_TOPICS)}")


def message_key(topic: str, raw: bytes) -> bytes | None:
    """The contract's key of a raw message, or None when the value cannot be read."""
    try:
        obj = json.loads(raw)
    except (ValueError, RecursionError):  # a line nested past the parser's depth is unreadable too
        return None
    value = obj.get(KEY_FIELD[topic]) if isinstance(obj, dict) else None
    return value.encode("utf-8") if isinstance(value, str) else None


# Lines of an event topic decoded per call of ``decode_all``: enough to spread its call over
# many, few enough that a merge of the topics holds little that is not due yet.
_CHUNK = 256


def _decoded_chunks(dump: Path, topic: str, sink: DeadLetterSink, max_bytes: int) -> Iterator[list[tuple[Any, bytes]]]:
    """The lines of a topic file decoded, a chunk at a time, each with its original bytes; a
    line that cannot be decoded is handed to ``sink``."""
    lines = read_lines(dump_file(dump, topic))
    while chunk := list(islice(lines, _CHUNK)):
        if topic in REFERENCE_TOPICS:
            decoded: list[Any] = []
            for _, raw in chunk:
                try:
                    decoded.append(decode(topic, raw, max_bytes))
                except DecodeFailure as failure:
                    decoded.append(failure)
        else:
            decoded = decode_all(topic, [raw for _, raw in chunk], max_bytes)  # type: ignore[assignment]
        good: list[tuple[Any, bytes]] = []
        for (lineno, raw), value in zip(chunk, decoded, strict=True):
            if isinstance(value, DecodeFailure):
                sink(dead_letter(topic, 0, lineno, message_key(topic, raw), raw, value))
            else:
                good.append((value, raw))
        yield good


def _decoded_lines(dump: Path, topic: str, sink: DeadLetterSink, max_bytes: int) -> Iterator[tuple[Any, bytes]]:
    """Each line of a topic file decoded, with its original bytes; a line that cannot be
    decoded is handed to ``sink``."""
    return chain.from_iterable(_decoded_chunks(dump, topic, sink, max_bytes))


def _decoded(dump: Path, topic: str, sink: DeadLetterSink, max_bytes: int) -> Iterator[Any]:
    """Each line of a topic file decoded; a line that cannot be is handed to ``sink``."""
    return chain.from_iterable([value for value, _ in chunk] for chunk in _decoded_chunks(dump, topic, sink, max_bytes))


def load_reference_tables(apply: ApplyReference, dump: Path, sink: DeadLetterSink, max_bytes: int) -> int:
    """Hand every record of the dump's reference topics to ``apply`` (topic, key, value); the count."""
    n = 0
    for topic in REFERENCE_TOPICS:
        for value in _decoded(dump, topic, sink, max_bytes):
            apply(topic, getattr(value, KEY_FIELD[topic]), value)
            n += 1
    return n


def iter_events(dump: Path, sink: DeadLetterSink, max_bytes: int) -> Iterator[Event]:
    """All event topics merged by event time (ties keep topic order, so output is deterministic)."""
    streams = [_decoded(dump, t, sink, max_bytes) for t in EVENT_TOPICS]
    return heapq.merge(*streams, key=attrgetter("ts"))


_TS_TAG = b'"ts":"'
# Event times both parsers read alike (pydantic's and ``datetime.fromisoformat``): anything
# else is decoded in full to be ordered.
_PLAIN_TS = re.compile(rb"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|[+-]\d{2}:\d{2})")


def _plain_field(raw: bytes, tag: bytes) -> bytes | None:
    """The text of the one string field ``tag`` opens, when it has no escapes; else None.

    A JSON string cannot hold an unescaped quote, so ``tag`` (quote, name, quote, colon,
    quote) only matches a key; a second match (the name again in a nested object) or an
    escape in the value leaves it to the full decoder."""
    at = raw.find(tag)
    if at < 0 or raw.find(tag, at + 1) >= 0:
        return None
    start = at + len(tag)
    end = raw.find(b'"', start)
    if end < 0:
        return None
    value = raw[start:end]
    return None if b"\\" in value else value


# One line of an event topic, scanned: (event time, topic rank, line number, bytes, partition key).
Scanned = tuple[datetime, int, int, bytes, str]


def scanned(dump: Path, rank: int, sink: DeadLetterSink, max_bytes: int) -> Iterator[Scanned]:
    """Each line of event topic ``EVENT_TOPICS[rank]`` with what ordering and routing it
    need: its event time and partition key, read straight from the bytes when they are plain
    (no escapes, one of each, an ordinary ISO time), else from the line decoded in full,
    which also sends a line that cannot be decoded to ``sink``.

    A worker decodes every line in full anyway; reading a plain line here costs about a
    sixth of decoding it, and this process is the one every event goes through.
    """
    topic = EVENT_TOPICS[rank]
    key_field = KEY_FIELD[topic]
    key_tag = f'"{key_field}":"'.encode()
    for lineno, raw in read_lines(dump_file(dump, topic)):
        if len(raw) <= max_bytes:
            ts, key = _plain_field(raw, _TS_TAG), _plain_field(raw, key_tag)
            plain: Scanned | None = None
            if ts is not None and key is not None and _PLAIN_TS.fullmatch(ts):
                # Not UTF-8, or a date that does not exist: the decoder says why.
                with contextlib.suppress(ValueError):
                    plain = (datetime.fromisoformat(ts.decode()), rank, lineno, raw, key.decode())
            if plain is not None:
                yield plain
                continue
        try:
            event = decode(topic, raw, max_bytes)
        except DecodeFailure as failure:
            sink(dead_letter(topic, 0, lineno, message_key(topic, raw), raw, failure))
            continue
        yield event.ts, rank, lineno, raw, getattr(event, key_field)  # type: ignore[union-attr]


def scanned_ts(item: Scanned) -> datetime:
    return item[0]


class DeadLetterFile:
    """Dead letters of a replay as JSON lines: the reason, the source position, the original text."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: Any = None

    def __call__(self, d: DeadLetter) -> None:
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = self.path.open("w", encoding="utf-8")
        headers = {k: v.decode("utf-8", "replace") for k, v in d.headers}
        value = d.value.decode("utf-8", "backslashreplace") if d.value is not None else None
        self._fh.write(json.dumps({"dlq_topic": d.topic, "headers": headers, "value": value}) + "\n")

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
