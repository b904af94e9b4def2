"""The decoder turns every message into an event or a specific, dead-letterable reason."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from breachwatch.core.events import ALL_TOPICS, AccessEvent, Tenant
from breachwatch.streams.decode import (
    H_ERROR,
    H_KIND,
    H_OFFSET,
    H_PARTITION,
    H_TOPIC,
    DecodeFailure,
    dead_letter,
    decode,
    decode_all,
)

GOOD = {
    "event_id": "a-1",
    "ts": "2026-11-24T09:12:03Z",
    "actor_id": "u-1",
    "actor_type": "customer_user",
    "actor_tenant": "t-1",
    "tenant_id": "t-1",
    "action": "read",
    "resource_type": "invoice",
    "records": 3,
}


def _fail(topic: str, value: bytes | None, max_bytes: int = 10_000) -> DecodeFailure:
    with pytest.raises(DecodeFailure) as info:
        decode(topic, value, max_bytes)
    return info.value


def test_good_event_decodes_with_defaults() -> None:
    e = decode("erp.access", json.dumps(GOOD).encode(), 10_000)
    assert isinstance(e, AccessEvent)
    assert e.sensitivity == "internal" and e.outcome == "success" and e.records == 3


@pytest.mark.parametrize(
    ("value", "kind", "words"),
    [
        (b"\xff\xfe{}", "not_utf8", "invalid UTF-8 at byte 0"),
        (b'{"event_id": ', "not_json", "not valid JSON"),
        (b"[1, 2]", "schema", "not a JSON object"),
        (json.dumps({**GOOD, "records": -1}).encode(), "schema", "records"),
        (json.dumps({**GOOD, "ts": "2026-11-24T09:12:03"}).encode(), "schema", "ts"),
        (json.dumps({**GOOD, "action": "teleport"}).encode(), "schema", "action"),
        (b"[" * 5000 + b"]" * 5000, "not_json", "not valid JSON"),
        # Valid JSON and within the schema, but no PostgreSQL text column can hold it.
        (json.dumps({**GOOD, "actor_id": "u-mal\u0000lory"}).encode(), "nul_text", "U+0000"),
    ],
)
def test_each_kind_of_bad_message_names_its_problem(value: bytes, kind: str, words: str) -> None:
    failure = _fail("erp.access", value)
    assert failure.kind == kind
    assert words in failure.reason


def test_an_escaped_backslash_before_u0000_is_not_a_nul() -> None:
    e = decode("erp.access", json.dumps({**GOOD, "actor_id": "u-back\\u0000slash"}).encode(), 10_000)
    assert isinstance(e, AccessEvent) and e.actor_id == "u-back\\u0000slash"


def test_oversized_message_is_refused_before_parsing() -> None:
    failure = _fail("erp.access", json.dumps({**GOOD, "endpoint": "x" * 5000}).encode(), max_bytes=1024)
    assert failure.kind == "too_large" and "exceeds the limit of 1024" in failure.reason


def test_reason_never_echoes_attacker_values() -> None:
    secret_looking = "<script>alert(1)</script>" * 3
    failure = _fail("erp.access", json.dumps({**GOOD, "actor_type": secret_looking}).encode())
    assert "script" not in failure.reason and "actor_type" in failure.reason


def test_tombstones_delete_on_reference_topics_only() -> None:
    assert decode("erp.tenants", None, 100) is None
    assert _fail("erp.access", None).kind == "tombstone"


def test_tenant_contact_must_be_an_address() -> None:
    doc = {"tenant_id": "t", "name": "T", "jurisdiction": "DE", "contacts": [{"email": "nobody", "role": "dpo"}]}
    assert _fail("erp.tenants", json.dumps(doc).encode()).kind == "schema"
    doc["contacts"][0]["email"] = "dpo@t.example"
    assert isinstance(decode("erp.tenants", json.dumps(doc).encode(), 10_000), Tenant)


def test_dead_letter_keeps_original_bytes_and_source_position() -> None:
    raw = b"\x00garbage"
    failure = _fail("erp.auth", raw)
    d = dead_letter("acme.erp.auth", 3, 1234, b"u-9", raw, failure, 1700000000000)
    headers = dict(d.headers)
    assert d.topic == "acme.erp.auth.dlq"
    assert d.value == raw and d.key == b"u-9"
    assert headers[H_TOPIC] == b"acme.erp.auth" and headers[H_PARTITION] == b"3" and headers[H_OFFSET] == b"1234"
    assert headers[H_KIND] == b"not_json" and headers[H_ERROR]


@settings(max_examples=400, deadline=None)
@given(topic=st.sampled_from(ALL_TOPICS), value=st.binary(max_size=300))
def test_random_bytes_never_escape_as_anything_but_a_decode_failure(topic: str, value: bytes) -> None:
    try:
        decode(topic, value, 200)
    except DecodeFailure as failure:
        assert failure.reason


@settings(max_examples=300, deadline=None)
@given(
    doc=st.dictionaries(
        st.sampled_from(sorted(GOOD) + ["bytes", "ip", "country", "ticket_id", "sensitivity"]),
        st.none() | st.integers() | st.text(max_size=30) | st.booleans() | st.lists(st.integers(), max_size=2),
    )
)
def test_wrong_types_are_schema_failures(doc: dict) -> None:
    try:
        decode("erp.access", json.dumps({**GOOD, **doc}).encode(), 10_000)
    except DecodeFailure as failure:
        # Text of the right type may still hold U+0000, which has its own reason.
        nul = any(isinstance(v, str) and "\x00" in v for v in doc.values())
        assert failure.kind == ("nul_text" if nul else "schema") or (nul and failure.kind == "schema")


def test_a_time_before_year_one_in_utc_is_a_schema_failure() -> None:
    failure = _fail("erp.access", json.dumps({**GOOD, "ts": "0001-01-01T00:00:00+05:00"}).encode())
    assert failure.kind == "schema" and "ts" in failure.reason


@pytest.mark.parametrize("ts", ["0", "1700000000", "1700000000.5", "-86400", "2026-11-24", 0, 1700000000, 1.5e9, True])
def test_a_time_that_is_not_rfc_3339_is_a_schema_failure(ts: object) -> None:
    """pydantic alone would read a string of digits as Unix time (an event in 1970)."""
    failure = _fail("erp.access", json.dumps({**GOOD, "ts": ts}).encode())
    assert failure.kind == "schema" and "ts" in failure.reason


def test_rfc_3339_offsets_are_held_in_utc() -> None:
    event = decode("erp.access", json.dumps({**GOOD, "ts": "2026-11-24T14:12:03.250+05:00"}).encode(), 10_000)
    assert event is not None and event.ts.isoformat() == "2026-11-24T09:12:03.250000+00:00"


def test_a_batch_decodes_each_message_as_decode_does_alone() -> None:
    """What the consumer and a replay decode a poll or a chunk with: every message's event, or
    the very reason ``decode`` gives it, in order, good and bad side by side."""
    good = json.dumps(GOOD).encode()
    # Neither half is a JSON value; joined with a comma into one array they read as one event.
    halves = [json.dumps(GOOD).encode()[:-1] + b', "x": "', b'"}']
    values = [
        good,
        b"\xff\xfe{}",
        *halves,
        json.dumps({**GOOD, "records": -1}).encode(),
        None,
        json.dumps({**GOOD, "endpoint": "x" * 5000}).encode(),
        json.dumps({**GOOD, "actor_id": "u-mal\u0000lory"}).encode(),
        json.dumps({**GOOD, "actor_id": "u-back\\u0000slash"}).encode(),
        b"[1, 2]",
        good,
    ]
    out = decode_all("erp.access", values, 1024)
    assert len(out) == len(values)
    for value, got in zip(values, out, strict=True):
        try:
            alone: object = decode("erp.access", value, 1024)
        except DecodeFailure as failure:
            assert isinstance(got, DecodeFailure) and (got.kind, got.reason) == (failure.kind, failure.reason)
        else:
            assert got == alone
    assert [isinstance(x, AccessEvent) for x in out] == [True] + [False] * 7 + [True, False, True]


def test_a_batch_of_a_reference_topic_is_refused() -> None:
    with pytest.raises(ValueError, match="not an event topic"):
        decode_all("erp.tenants", [b"{}"], 100)
