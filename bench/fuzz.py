"""Coverage-guided fuzzing (atheris) of every parser that takes outside input.

    python -m bench.fuzz [--target NAME|all] [--runs N] [--seconds S] [--work DIR] [--keep-going]
    python -m bench.fuzz --target NAME --reproduce FILE

Each target is a plain function of one byte string that feeds a parser and asserts its
contract: only the documented error types, and what a caller relies on afterwards (a
dead-letter reason for the decoder, a same-site redirect for the console, unchanged verdicts
after a checkpoint round trip...). Anything else it raises is a crash. The seed corpus of
every target is built from simulated ERP traffic (``streams.simulate``) and the shipped
rule files. Each target runs in its own atheris process, for ``--seconds`` or ``--runs``
(whichever ends first); ``--keep-going`` restarts a target after a crash until its time is
used, collecting distinct crashes. One JSON line per target is printed as it finishes:
``{"bench": "fuzz", "target": ..., "runs": ..., "seconds": ..., "crashes": ...}``.

The same target functions run in the test suite at a small size (tests/test_fuzz_smoke.py).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import hmac
import io
import json
import os
import random
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

OneInput = Callable[[bytes], None]
SEP = b"\x1f"  # between the fields of one input
REC = b"\x1e"  # between the records of one input
NOW = 1_795_000_000.0  # a fixed "now" (late 2026) for time-dependent checks
MODEL_KEY = b"fuzz-model-signing-key"  # signs the model files the model target mutates
# The project's packages: what atheris instruments for coverage.
PACKAGES = ["streams", "detectors", "incidents", "notifier", "console", "breachwatch"]


def fields(data: bytes, n: int, sep: bytes = SEP) -> list[bytes]:
    """``data`` cut into exactly ``n`` fields (the last takes the rest; missing ones are empty)."""
    parts = data.split(sep, n - 1)
    return parts + [b""] * (n - len(parts))


def text(raw: bytes) -> str:
    """Bytes as the str an HTTP framework or JSON reader would hand over (invalid UTF-8 replaced)."""
    return raw.decode("utf-8", "replace")


# --- seeds: simulated traffic -------------------------------------------------------------------


def seed_dump(work: Path) -> Path:
    """A small simulated dump (4 days, 3 tenants, every attack scenario), made once per work dir."""
    from breachwatch.devkit.simulate import simulate

    dump = work / "seed-dump"
    if not (dump / "labels.json").exists():
        simulate(dump, seed=5, days=4, tenants=3)
    return dump


def seed_lines(work: Path, topic: str, n: int, rng: random.Random) -> list[bytes]:
    lines = (seed_dump(work) / f"{topic}.jsonl").read_bytes().splitlines()
    return rng.sample(lines, min(n, len(lines)))


def hostile_values() -> list[bytes]:
    """Message shapes the issue names: deep JSON, huge strings, wrong types, unicode edge cases,
    times far in the past or future; each on top of a valid event."""
    base = {
        "event_id": "e-1",
        "ts": "2026-11-24T10:15:00Z",
        "actor_id": "u-1",
        "actor_type": "customer_user",
        "tenant_id": "t-1",
        "action": "read",
        "resource_type": "customer",
        "records": 3,
    }
    out = [
        b"[" * 5000 + b"]" * 5000,
        b'{"a":' * 3000 + b"1" + b"}" * 3000,
        json.dumps({**base, "actor_id": "x" * 5000}).encode(),
        json.dumps({**base, "records": "3"}).encode(),
        json.dumps({**base, "records": 10**40}).encode(),
        json.dumps({**base, "ts": "0001-01-01T00:00:00+14:00"}).encode(),
        json.dumps({**base, "ts": "9999-12-31T23:59:59-12:00"}).encode(),
        json.dumps({**base, "ts": "2026-11-24T10:15:00"}).encode(),
        json.dumps({**base, "actor_id": "u-\u202e\u0000\ufeff\U0001f600"}).encode(),
        json.dumps({**base, "actor_id": "u-\u202e\u0000\ufeff\U0001f600"}, ensure_ascii=False).encode(),
        b'{"event_id": "e-1", "event_id": 2}',
        b"\xff\xfe{}",
        b"null",
        b"",
    ]
    return out


# --- the targets -------------------------------------------------------------------------------


JSON_TOKENS = ("{", "}", "[", "]", ":", ",", '"', '""', "[]", "{}", "null", "true", "false", "-0", "1e999", "NaN")
JSON_TOKENS += ("\\u0000", "\\ud800", '\\"', "\\\\", "\u202e", "2026-11-24T10:15:00Z", "+14:00", "9999-12-31")
TOML_TOKENS = ("=", "[[", "]]", '"""', "'''", "#", "\n", "inf", "nan", "0x", "1979-05-27T07:32:00Z", "{ a = 1 }", "\\U")
NUMBER_TOKENS = ("0", "-1", "1e300", "99999999999", "9223372036854775808", "0.5")


def _field_names(*models: Any) -> tuple[str, ...]:
    return tuple(sorted({name for m in models for name in m.model_fields}))


def _decode_tokens() -> tuple[str, ...]:
    from breachwatch.core.events import MODEL_BY_TOPIC, Contact

    return JSON_TOKENS + NUMBER_TOKENS + _field_names(Contact, *MODEL_BY_TOPIC.values())


def _settings_tokens() -> tuple[str, ...]:
    from breachwatch.core.settings import Settings

    return TOML_TOKENS + JSON_TOKENS + NUMBER_TOKENS + _field_names(Settings)


def _duties_tokens() -> tuple[str, ...]:
    from breachwatch.notifier.duties import Deadline, DutyRule, Policy, Recipient, RuleFile, Source, Trigger

    return TOML_TOKENS + NUMBER_TOKENS + _field_names(Deadline, DutyRule, Policy, Recipient, RuleFile, Source, Trigger)


@dataclass(frozen=True, slots=True)
class Target:
    """One fuzz target: ``prepare(work)`` returns the one-input function and its seed inputs;
    ``tokens()`` are words of its input language, which the fuzzer splices in (a libFuzzer dict)."""

    name: str
    description: str
    prepare: Callable[[Path], tuple[OneInput, list[bytes]]]
    max_len: int = 16_384
    tokens: Callable[[], tuple[str, ...]] = lambda: JSON_TOKENS


def _decode(work: Path) -> tuple[OneInput, list[bytes]]:
    from typing import get_args

    from jsonschema import Draft202012Validator

    from breachwatch.core import events as models
    from breachwatch.core.events import ALL_TOPICS, EVENT_TOPICS, KEY_FIELD, SCHEMA_FILE
    from breachwatch.streams.decode import DecodeFailure, FailureKind, dead_letter, decode

    contracts = Path(models.__file__).parent / "contracts"
    schemas = {t: Draft202012Validator(json.loads((contracts / SCHEMA_FILE[t]).read_text())) for t in ALL_TOPICS}
    kinds = set(get_args(FailureKind))
    max_bytes = 8192

    def one(data: bytes) -> None:
        if not data:
            return
        topic, value = ALL_TOPICS[data[0] % len(ALL_TOPICS)], data[1:]
        try:
            event = decode(topic, value, max_bytes)
        except DecodeFailure as failure:
            # The contract: a precise, bounded reason, and a dead letter carrying the original bytes.
            assert failure.kind in kinds and failure.reason and len(failure.reason) <= 2000, failure
            d = dead_letter(f"fz.{topic}", 2, 41, b"key", value, failure, 1_700_000_000_000)
            assert d.topic == f"fz.{topic}.dlq" and d.value is value
            assert all(isinstance(k, str) and isinstance(v, bytes) for k, v in d.headers)
            assert dict(d.headers)["bw.error.kind"] == failure.kind.encode()
            return
        assert event is not None, "only a null value is a tombstone"
        # What the model accepts, the topic's JSON Schema accepts too (the models' promise).
        problems = [e.message[:200] for e in schemas[topic].iter_errors(json.loads(value))]
        assert not problems, f"{topic}: decoded, but the schema says {problems}"
        key = getattr(event, KEY_FIELD[topic])
        assert isinstance(key, str) and key, "every decoded message has its contract key"
        key.encode("utf-8")  # the partitioner and the pseudonymiser encode it
        if topic in EVENT_TOPICS:
            assert event.ts.utcoffset() == timedelta(0)
            event.ts.timestamp()  # event time is used as a float everywhere downstream
            # Evidence is stored in this form and read back by the console, exports and replays.
            stored = event.model_dump_json(exclude_none=True).encode()
            assert decode(topic, stored, len(stored)) == event, "the stored form of an event decodes to it"

    rng = random.Random(1)
    seeds = [bytes([ALL_TOPICS.index(t)]) + line for t in ALL_TOPICS for line in seed_lines(work, t, 12, rng)]
    seeds += [bytes([n % len(ALL_TOPICS)]) + v for n, v in enumerate(hostile_values())]
    return one, seeds


def _settings(work: Path) -> tuple[OneInput, list[bytes]]:
    import tomllib

    from breachwatch.core.settings import SECRET_FIELDS, ConfigError, load_settings
    from breachwatch.notifier.notices.config import CONTRACTS_ENV, NOTICES_ENV, NoticeConfig, load_notice_config

    folder = work / "settings"
    folder.mkdir(parents=True, exist_ok=True)
    base = load_settings(db_url="sqlite://")

    def secret_values(raw: bytes, suffix: str) -> list[str]:
        """Secret values in the file that appear nowhere else in it (so no other field can echo them)."""
        try:
            body = raw.decode("utf-8")
            doc = json.loads(body) if suffix == ".json" else tomllib.loads(body)
        except (ValueError, RecursionError):
            return []
        if not isinstance(doc, dict):
            return []
        values = [doc.get(name) for name in SECRET_FIELDS]
        return [v for v in values if isinstance(v, str) and len(v) >= 6 and body.count(v) == 1]

    def one(data: bytes) -> None:
        if not data:
            return
        if data[0] & 2:
            # The notifier's own files: the notice configuration, and per-tenant contract terms.
            path = folder / "notices.toml"
            path.write_bytes(data[1:])
            try:
                loaded = load_notice_config(base, {(CONTRACTS_ENV if data[0] & 1 else NOTICES_ENV): str(path)})
            except ConfigError:
                return
            assert isinstance(loaded, NoticeConfig)
            return
        suffix = ".json" if data[0] & 1 else ".toml"
        path = folder / f"config{suffix}"
        path.write_bytes(data[1:])
        with environment(BREACHWATCH_CONFIG=str(path)):
            try:
                settings = load_settings()
            except ConfigError as exc:
                shown = str(exc)
            else:
                shown = repr(settings) + str(settings.model_dump())
        for secret in secret_values(data[1:], suffix):
            assert secret not in shown, "a secret from the settings file shows in an error or a repr"

    toml = (
        b'kafka_bootstrap = "broker.example:9092"\ntopic_prefix = "prod."\npartitions = 6\n'
        b'db_url = "postgresql://bw@db.example/bw"\nsendgrid_api_key = "SG.fuzz-secret-value"\n'
        b'oncall_emails = ["oncall@unisen.example", "second@unisen.example"]\ncheckpoint_interval_s = 2.5\n'
        b'mail_channel = "sendgrid"\n[extra]\nkey = 1\n'
    )
    as_json = json.dumps(
        {
            "partitions": 3,
            "group_id": "bw",
            "smtp_password": "smtp-fuzz-secret",
            "oncall_emails": "a@unisen.example, b@unisen.example",
            "log_format": "json",
            "metrics_port": 9100,
            "session_timeout_ms": 10_000,
        }
    ).encode()
    seeds = [b"\x00" + toml, b"\x01" + as_json, b"\x00" + b"partitions = 0\n", b"\x01" + b"[1, 2]"]
    # Found by fuzzing (each raised something other than ConfigError): a byte that is not
    # UTF-8, and nesting deeper than the TOML and JSON parsers recurse.
    seeds += [b"\x00partitions = 3\n\xff\n", b"\x00a = " + b"[" * 3000, b"\x01" + b"[" * 3000]
    notices = b'approvals = 2\nsendgrid_webhook_public_key = "MFkw"\n[vendor]\nname = "Unisen"\n'
    notices += b'contact_email = "privacy@unisen.example"\ndpo_email = "dpo@unisen.example"\n'
    contracts = b't-rhein = 24\n[t-indus]\nhours = 48\nreference = "DPA clause 7.2"\n'
    seeds += [b"\x02" + notices, b"\x03" + contracts]
    # The same two faults, found by these seeds in the notices and contracts reader.
    seeds += [b"\x03" + contracts + b"# \xff\n", b"\x02a = " + b"[" * 3000]
    return one, seeds


@contextmanager
def environment(**values: str) -> Iterator[None]:
    """Set environment variables for the duration; settings are read from the environment."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def model_file(work: Path) -> Path:
    """A real model file as ``train`` writes it, small enough to load many times a second."""
    path = work / "model" / "learned.skops"
    if path.exists():
        return path
    import dataclasses

    import numpy as np

    from breachwatch.core.settings import load_settings
    from breachwatch.detectors.learned.detector import save_model, train
    from breachwatch.detectors.learned.features import N_FEATURES
    from breachwatch.detectors.learned.models import PopulationModel
    from breachwatch.runtime import app
    from breachwatch.streams.dump import iter_events, load_reference_tables

    dump = work / "model-dump"
    if not (dump / "labels.json").exists():
        from breachwatch.devkit.simulate import simulate

        simulate(dump, seed=5, days=9, tenants=3)
    settings = load_settings(db_url="sqlite://")
    pipeline = app.build_pipeline(settings, app.database(settings, "sqlite://"), notify=False)
    load_reference_tables(pipeline.apply_reference, dump, lambda _d: None, settings.max_message_bytes)
    events = iter_events(dump, lambda _d: None, settings.max_message_bytes)
    until = datetime(2026, 11, 30, tzinfo=UTC)
    model = train(events, pipeline.tables, until=until, pseudonym_key=b"fuzz-pseudonym-key", warmup_days=1)
    # Three small trees instead of a hundred: the same types and code paths, 50x faster to load.
    rows = np.random.default_rng(0).normal(size=(200, N_FEATURES))
    small = dataclasses.replace(model, population=PopulationModel(n_estimators=3, max_samples=32).fit(rows))
    path.parent.mkdir(parents=True, exist_ok=True)
    save_model(small, path, MODEL_KEY)
    return path


def _model(work: Path) -> tuple[OneInput, list[bytes]]:
    from breachwatch.detectors.learned.detector import ModelFileError, TrainedModel, load_model
    from breachwatch.detectors.learned.signing import seal

    real = model_file(work)
    with zipfile.ZipFile(real) as z:  # reads past the signature in front of the archive
        members = {i.filename: z.read(i.filename) for i in z.infolist()}
    arrays = sorted(n for n in members if n != "schema.json")
    target = work / "model" / "fuzzed.skops"

    def rezip(replace: str, content: bytes) -> bytes:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            for name, blob in members.items():
                z.writestr(name, content if name == replace else blob)
        return buf.getvalue()

    def one(data: bytes) -> None:
        if not data:
            return
        mode = data[0] % 3
        if mode == 0:  # the file itself, signature and all
            blob = data[1:]
        elif mode == 1:  # a real file with its schema replaced, signed (as by someone with the key)
            blob = seal(rezip("schema.json", data[1:]), MODEL_KEY)
        else:  # a real file with one of its arrays replaced, signed
            blob = seal(rezip(arrays[data[1] % len(arrays)] if len(data) > 1 else arrays[0], data[2:]), MODEL_KEY)
        target.write_bytes(blob)
        try:
            loaded = load_model(target, MODEL_KEY)
        except ModelFileError:
            return
        assert isinstance(loaded, TrainedModel)

    seeds = [b"\x00" + real.read_bytes(), b"\x01" + members["schema.json"]]
    # Found by fuzzing: a schema that is JSON but not an object made skops raise AttributeError.
    seeds += [b"\x011", b"\x01[]", b"\x01" + b"[" * 3000]
    seeds += [b"\x02" + bytes([n]) + members[arrays[n]] for n in range(0, len(arrays), max(1, len(arrays) // 6))]
    return one, seeds


def _duties(work: Path) -> tuple[OneInput, list[bytes]]:
    from breachwatch.notifier.duties import DATA_CATEGORIES, DEFAULT_RULES_DIR, RuleFileError, load_rules, window_used

    names = ["_policy.toml", "contract.toml", "eu.toml", "us-ca.toml"]
    originals = {n: (DEFAULT_RULES_DIR / n).read_bytes() for n in names}
    folder = work / "rules"
    folder.mkdir(parents=True, exist_ok=True)
    aware = datetime(2026, 11, 24, 10, tzinfo=UTC)
    code = re.compile(r"^[A-Z]{2}(-[A-Z0-9]{1,3})?$")

    def one(data: bytes) -> None:
        if not data:
            return
        for n, blob in originals.items():
            (folder / n).write_bytes(blob)
        (folder / names[data[0] % len(names)]).write_bytes(data[1:])
        try:
            rules = load_rules(folder)
        except RuleFileError:
            return
        # Rules that load are rules the notifier will apply: they must work for a real breach.
        places = {"DE", "US-CA", "PK"} | {c for r in rules.regimes for c in r.applies_to if code.fullmatch(c)}
        for place in sorted(places):
            for role in ("controller", "processor"):
                for categories in ((), tuple(DATA_CATEGORIES)):
                    for duty in rules.duties_for(
                        place, affected_subjects=1200, data_categories=categories, role=role, aware_at=aware
                    ):
                        window_used(duty, aware + timedelta(hours=30))

    seeds = [bytes([n]) + originals[name] for n, name in enumerate(names)]
    # Found by fuzzing (each raised something other than RuleFileError): not UTF-8, too deep;
    # and, found with these contracts by hand, deadlines so long that assessing a breach
    # overflowed the date arithmetic (OverflowError) although the file had loaded.
    seeds += [b"\x01" + originals["contract.toml"] + b"\n# \xff\n", b"\x02id = " + b"[" * 3000]
    seeds += [b"\x01" + originals["contract.toml"].replace(b"target_hours = 24", b"target_hours = 1e12")]
    seeds += [b"\x02" + re.sub(rb"amount = \d+", b"amount = 99999999999", originals["eu.toml"], count=1)]
    return one, seeds


def _sendgrid(work: Path) -> tuple[OneInput, list[bytes]]:
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from fastapi import FastAPI
    from fastapi.testclient import TestClient
    from sqlalchemy.orm import Session

    from breachwatch.channels.sendgrid_events import PATH, SIGNATURE_HEADER, TIMESTAMP_HEADER, router
    from breachwatch.notifier.outbox import OutboxRow
    from breachwatch.runtime.schema import init_db
    from breachwatch.storage.db import make_engine

    db = work / "sendgrid.db"
    db.unlink(missing_ok=True)
    engine = make_engine(f"sqlite:///{db}")
    init_db(engine)
    with Session(engine) as session, session.begin():
        session.add(
            OutboxRow(
                message_id="msg-fuzz-1",
                message_type="breach_notice",
                channel="sendgrid",
                recipient="dpo@rhein.example",
                subject="Security notice",
                body_text="A notice.",
            )
        )
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    web = FastAPI()
    web.include_router(router)
    web.state.engine = engine
    web.state.sendgrid_webhook_public_key = base64.b64encode(public).decode()
    client = TestClient(web)  # raises what the route raises: an unhandled error is a crash

    def one(data: bytes) -> None:
        stamp = str(int(time.time()))
        signature = base64.b64encode(key.sign(stamp.encode() + data, ec.ECDSA(hashes.SHA256()))).decode()
        response = client.post(PATH, content=data, headers={SIGNATURE_HEADER: signature, TIMESTAMP_HEADER: stamp})
        # Signed by SendGrid: stored (204), or refused as not a JSON array (400) or too large (413).
        assert response.status_code in (204, 400, 413), (response.status_code, response.text[:200])

    event = {
        "email": "dpo@rhein.example",
        "timestamp": 1_795_000_000,
        "event": "delivered",
        "sg_event_id": "sg-1",
        "message_id": "msg-fuzz-1",
        "response": "250 OK",
    }
    seeds = [
        json.dumps([event]).encode(),
        json.dumps(
            [{**event, "event": "bounce", "sg_event_id": "sg-2", "reason": "550 no such user", "type": "bounce"}]
        ).encode(),
        json.dumps([{**event, "event": "open", "sg_event_id": "sg-3"}, {**event, "message_id": "other"}]).encode(),
        json.dumps([{**event, "sg_event_id": None, "timestamp": "soon"}, 7, None, []]).encode(),
        b"{}",
        # Found by fuzzing (each answered 500): nesting deeper than the JSON parser recurses,
        # and an "event" that is a list or an object (not hashable, so no set member).
        b"[" * 3000 + b"]" * 3000,
        b'[{"event": []}]',
        b'[{"event": {"delivered": 1}, "message_id": "msg-fuzz-1"}]',
        # ... and a lone surrogate escape, which json accepts and no database can store.
        b'[{"event": "bounce", "message_id": "msg-fuzz-1", "sg_event_id": "sg-\\ud800"}]',
    ]
    return one, seeds


def _signatures(work: Path) -> tuple[OneInput, list[bytes]]:
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from breachwatch.channels.pagerduty import WebhookEvent
    from breachwatch.channels.pagerduty import verify_signature as pagerduty_verify
    from breachwatch.channels.sendgrid_events import verify_signature
    from breachwatch.channels.webhook import fresh_timestamp, retry_after

    key = ec.generate_private_key(ec.SECP256R1())
    public = base64.b64encode(
        key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    ).decode()

    def one(data: bytes) -> None:
        secret_raw, body, stamp_raw, signature_raw, header_raw = fields(data, 5)
        # Header values reach the code as latin-1 strings; a shared secret is any text.
        secret, stamp = text(secret_raw), stamp_raw.decode("latin-1")
        signature, header = signature_raw.decode("latin-1"), header_raw.decode("latin-1")
        assert pagerduty_verify([secret], body, signature) in (True, False)
        with contextlib.suppress(ValueError):  # not a PagerDuty event: refused by name, never a crash
            WebhookEvent.parse(body)
        assert verify_signature(secret, body, signature, stamp, now=NOW) in (True, False)
        assert verify_signature(public, body, signature, stamp, now=NOW) in (True, False)
        sent = fresh_timestamp(stamp, now=NOW, tolerance_s=300)
        if sent is not None and secret:
            # What PagerDuty signs is accepted; one changed byte of the body is not.
            good = "v1=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
            assert pagerduty_verify([secret], body, good)
            assert not pagerduty_verify([secret], body + b"x", good)
            ecdsa = base64.b64encode(key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))).decode()
            assert verify_signature(public, body, ecdsa, stamp, now=NOW)
        wait = retry_after(header)
        assert wait is None or wait >= 0

    now = str(int(NOW)).encode()
    seeds = [
        SEP.join([b"webhook-secret", b'{"message_id": "m-1"}', now, b"v1=00ff", b"120"]),
        SEP.join(
            [
                b"k",
                b"",
                now,
                b"v1=" + hmac.new(b"k", b"", hashlib.sha256).hexdigest().encode(),
                b"Wed, 21 Oct 2026 07:28:00 GMT",
            ]
        ),
        SEP.join([b"k", b'{"event": {"id": "e1", "event_type": "incident.resolved", "data": {}}}', now, b"v1=0", b"5"]),
        SEP.join([b"k", b"body", b"9" * 40, b"", b"-1"]),
        SEP.join([public.encode(), b"[]", now, b"MEUCIQ==", b"1e400"]),
        # Found by fuzzing: a timestamp too long for a float and a Retry-After date in a year
        # past 9999 (OverflowError), and a DER public key of an algorithm the library does not
        # know (UnsupportedAlgorithm).
        SEP.join([b"k", b"body", b"9" * 400, b"v1=00", b"Wed, 21 Oct 909179500000007 07:28:00 GMT"]),
        SEP.join(
            [
                b"MFkwEwYHKoZIzQ0CAQYIKoZIzj0DAQcDQgAEA2Aw/WSmvjLoeaXZbE1PwpLGYA/Ual9UIhZSwozPTFErkw5P"
                b"wpLGYA/Ual9UIhZSwozPTFErkw5If0n3q3d4xA==",
                b"[]",
                now,
                b"MEUCIQ==",
                b"1e400",
            ]
        ),
    ]
    return one, seeds


def _miner(work: Path) -> tuple[OneInput, list[bytes]]:
    from breachwatch.detectors.logs.templates import TemplateMiner

    def one(data: bytes) -> None:
        if data[:1] == b"\xff":
            # A damaged checkpoint: refused with a data error, or loaded into a working miner.
            try:
                state = json.loads(data[1:])
            except (ValueError, RecursionError):
                return
            miner = TemplateMiner(max_templates=8)
            try:
                miner.load_state(state)
            except (ValueError, TypeError, KeyError, IndexError):
                return
            miner.add("user u-1 signed in from 198.51.100.7")
            json.dumps(miner.state())
            return
        messages = [text(m) for m in data.split(REC)]
        cut = len(messages) // 2
        a = TemplateMiner(max_templates=8, max_children=4, max_tokens=12)
        ids = [a.add(m) for m in messages[:cut]]
        b = TemplateMiner(max_templates=8, max_children=4, max_tokens=12)
        b.load_state(json.loads(json.dumps(a.state())))
        assert b.state() == a.state(), "a checkpoint restores the miner exactly"
        rest_a = [a.add(m) for m in messages[cut:]]
        rest_b = [b.add(m) for m in messages[cut:]]
        assert rest_a == rest_b, "a restored miner mines as the original does"
        assert a.state() == b.state()
        for tid, _ in ids + rest_a:
            assert tid > 0

    rng = random.Random(3)
    lines = [json.loads(x)["message"].encode() for x in seed_lines(work, "erp.logs", 400, rng)]
    seeds = [REC.join(lines[i : i + 25]) for i in range(0, len(lines), 25)]
    seeds.append(
        b"\xff" + json.dumps({"next_id": 3, "leaves": [[[2, "a", "b"], [[1, ["a", "b"], 2]]]], "lru": [1]}).encode()
    )
    return one, seeds


def _log_records(data: bytes, start: float) -> list[Any]:
    """LogRecords from fuzz bytes: each record is gap, level, service, session, actor, message.

    A gap with its top bit set makes the record late (up to 5 minutes before the latest one)
    instead of moving time on; a level byte with its top bit set repeats the record before it,
    as an at-least-once producer may.
    """
    from breachwatch.streams.decode import DecodeFailure, decode

    levels = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
    out: list[Any] = []
    latest = start
    for n, raw in enumerate(data.split(REC)):
        gap, level, service, session, actor, message = fields(raw, 6)
        if level and level[0] & 0x80 and out:
            out.append(out[-1])
            continue
        step = int.from_bytes(gap[:3] or b"\x00", "big")
        if gap and gap[0] & 0x80:
            t = latest - step % 301
        else:
            latest += step  # up to ~97 days between records
            t = latest
        doc = {
            "event_id": f"fz-{n}",
            "ts": datetime.fromtimestamp(t, UTC).isoformat(),
            "service": text(service) or "svc",
            "level": levels[level[0] % len(levels)] if level else "INFO",
            "message": text(message),
            "session_id": text(session) or None,
            "actor_id": text(actor) or None,
        }
        try:
            out.append(decode("erp.logs", json.dumps(doc).encode(), 1 << 20))
        except DecodeFailure:
            continue  # dead-lettered by the consumer; never reaches a detector
    return out


def _logs(work: Path) -> tuple[OneInput, list[bytes]]:
    from breachwatch.core.findings import SEVERITY_RANK, DetectionContext
    from breachwatch.core.reference import ReferenceTables
    from breachwatch.detectors.logs.detector import LogDetector

    ctx = DetectionContext(tables=ReferenceTables())

    def detector() -> LogDetector:
        # Short warm-up, so a few dozen records reach scoring and bursts (the session forest,
        # plain numbers into scikit-learn, is left at its size: fitting it dominates the time).
        return LogDetector(warmup=timedelta(minutes=1), warmup_sessions=3, burst_min_new=2)

    def one(data: bytes) -> None:
        records = _log_records(data, NOW)
        cut = len(records) // 2
        a = detector()
        found_a = a.process(records[:cut], ctx)
        b = detector()
        b.load_state(json.loads(json.dumps(a.state())))
        later_a = a.process(records[cut:], ctx)
        later_b = b.process(records[cut:], ctx)
        assert [f.finding_id for f in later_a] == [f.finding_id for f in later_b], (
            "a detector restored from its checkpoint reaches the same verdicts"
        )
        for f in found_a + later_a:
            assert 0 <= f.score <= 100 and f.severity in SEVERITY_RANK and f.events, f
            json.dumps(f.facts)

    rng = random.Random(4)
    lines = [json.loads(x) for x in seed_lines(work, "erp.logs", 2000, rng)]
    lines.sort(key=lambda d: d["ts"])

    def encode(doc: dict[str, Any], gap: int) -> bytes:
        parts = [
            gap.to_bytes(3, "big"),
            bytes([("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL").index(doc["level"])]),
            doc["service"].encode(),
            (doc.get("session_id") or "").encode(),
            (doc.get("actor_id") or "").encode(),
            doc["message"].encode(),
        ]
        return SEP.join(parts)

    late, repeat = 0x800000 | 120, SEP.join([b"\x00\x00\x01", b"\x80"])
    seeds = []
    for i in range(0, len(lines), 30):
        records = [encode(d, rng.choice((1, 5, 30, 600, 2400, late))) for d in lines[i : i + 30]]
        records.insert(rng.randrange(1, len(records) + 1), repeat)
        seeds.append(REC.join(records))
    return one, seeds


def _dump(work: Path) -> tuple[OneInput, list[bytes]]:
    from breachwatch.core.events import ALL_TOPICS, EVENT_TOPICS
    from breachwatch.runtime import app
    from breachwatch.runtime.pipeline import Pipeline, group_by_unit
    from breachwatch.streams.dump import iter_events, load_reference_tables, read_lines
    from breachwatch.streams.partitions import Partitioner

    folder = work / "dump"
    settings = app_settings()
    store = app.build_pipeline(settings, app.database(settings), notify=False).store

    def one(data: bytes) -> None:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        files: dict[str, bytes] = {}
        for chunk in data.split(b"\x1d"):
            if chunk:
                topic = ALL_TOPICS[chunk[0] % len(ALL_TOPICS)]
                files[topic] = files.get(topic, b"") + chunk[1:]
        for topic, blob in files.items():
            (folder / f"{topic}.jsonl").write_bytes(blob)
        dead: list[Any] = []
        pipeline = Pipeline(store, app.detector_factory(settings))
        refs = load_reference_tables(pipeline.apply_reference, folder, dead.append, 4096)
        events = list(iter_events(folder, dead.append, 4096))
        lines = sum(1 for t in ALL_TOPICS for _ in read_lines(folder / f"{t}.jsonl"))
        assert refs + len(events) + len(dead) == lines, "every line is read as a record or dead-lettered"
        for d in dead:
            assert d.topic.removesuffix(".dlq") in ALL_TOPICS and isinstance(d.value, bytes)
        # The events reach the detectors as a replay batch would: none of them may fail on it.
        for u, batch in group_by_unit(events, Partitioner(4)).items():
            pipeline.worker(u).detect(batch)
        assert not pipeline.stats.detector_errors, f"a detector failed on the batch: {pipeline.stats.detector_errors}"

    rng = random.Random(5)
    seeds = []
    for k in range(6):
        parts = []
        for n, topic in enumerate(ALL_TOPICS):
            lines = sorted(seed_lines(work, topic, 8 if topic in EVENT_TOPICS else 3, rng))
            if k == n:
                lines.insert(1, hostile_values()[k])
            parts.append(bytes([n]) + b"\n".join(lines) + b"\n")
        seeds.append(b"\x1d".join(parts))
    return one, seeds


def app_settings() -> Any:
    """Settings for in-process targets: no broker, no files outside the work dir."""
    from breachwatch.core.settings import load_settings

    return load_settings(db_url="sqlite://", pseudonym_key="fuzz-pseudonym-key")


def _console(work: Path) -> tuple[OneInput, list[bytes]]:
    from urllib.parse import urlsplit

    from pydantic import TypeAdapter, ValidationError
    from sqlalchemy.orm import Session

    from breachwatch.console.security import Signer, csrf_ok
    from breachwatch.console.views import _safe_next, _see
    from breachwatch.incidents.model import STATUSES
    from breachwatch.incidents.queries import ACTIVE, SEVERITIES, IncidentFilter
    from breachwatch.notifier.paging import silences
    from breachwatch.runtime.schema import init_db
    from breachwatch.storage.db import make_engine

    signer = Signer("fuzz-console-secret-key-0123")
    db = work / "console.db"
    db.unlink(missing_ok=True)
    engine = make_engine(f"sqlite:///{db}")
    init_db(engine)
    when = TypeAdapter(datetime)
    browser_strip = re.compile(r"[\t\n\r]")

    def one(data: bytes) -> None:
        nxt, status, severity, kind, tenant, q, cookie, token, actor, ip, reason, ends, numbers = (
            text(f) for f in fields(data, 13)
        )
        # After sign-in the browser goes where ``next`` says: it must stay on this site, read
        # the way a browser reads a Location header (tabs and newlines dropped, \\ taken as /).
        location = _see(_safe_next(nxt)).headers["location"]
        seen = browser_strip.sub("", location.strip("".join(map(chr, range(33))))).replace("\\", "/")
        parts = urlsplit(seen)
        assert not parts.scheme and not parts.netloc and seen.startswith("/"), location

        limit, offset = struct.unpack("<qq", numbers.encode()[:16].ljust(16, b"\x00"))
        flt = IncidentFilter(
            status=status, severity=severity, kind=kind, tenant=tenant, q=q, limit=limit, offset=offset
        ).normalised()
        assert flt.status in (*STATUSES, ACTIVE, "all") and flt.severity in ("", *SEVERITIES)
        assert 1 <= flt.limit <= 500 and flt.offset >= 0 and len(flt.q) <= 200
        assert flt.normalised() == flt

        sid = signer.session_id(cookie)
        assert sid is None or isinstance(sid, str)
        issued, signed = signer.signin_token(cookie)
        assert isinstance(issued, str) and signer.signin_token_ok(signed, issued)
        assert signer.signin_token_ok(cookie, token) in (True, False)
        assert csrf_ok(token, cookie) in (True, False)

        try:
            ends_at = when.validate_python(ends)
        except ValidationError:
            ends_at = datetime(2026, 11, 25, tzinfo=UTC)
        if ends_at.tzinfo is None:
            return  # the API answers 422 before the domain is asked
        with Session(engine) as session:  # closed without a commit: nothing is kept
            try:
                row = silences.add(
                    session,
                    "fuzz@unisen.example",
                    reason,
                    ends_at,
                    actor_id=actor,
                    tenant_id=tenant,
                    kind=kind,
                    ip=ip,
                    now=datetime(2026, 11, 24, tzinfo=UTC),
                )
            except silences.SilenceError:
                return
            assert row.matchers and (row.ip is None or "/" in row.ip)

    seeds = [
        SEP.join(
            [
                b"/incidents?status=open",
                b"active",
                b"high",
                b"cross_tenant_access",
                b"t-rhein",
                b"u-mallory",
                b"",
                b"tok",
                b"u-mallory",
                b"198.51.100.0/24",
                b"known pen test",
                b"2026-11-26T00:00:00Z",
                struct.pack("<qq", 50, 100),
            ]
        ),
        SEP.join([b"//evil.example", b"all", b"", b"", b"", b"", b"x.y.z", b"", b"", b"2001:db8::1", b"r", b"", b""]),
        SEP.join(
            [b"/\\evil.example", b"resolved", b"low", b"k", b"", b"1.2.3.4", b"", b"", b"", b"", b"", b"", b"\xff"]
        ),
    ]
    return one, seeds


WORDS = ("<*>", "0x", "::", "@", "/", "//", "\\", "%2F", "%09", "http:", "\t", "\r\n", "=", "..", "\u0085")
MODEL_TOKENS = (*JSON_TOKENS, "__class__", "__module__", "__loader__", "__id__", "protocol", "content", "builtins")
SENDGRID_TOKENS = (*JSON_TOKENS, "event", "message_id", "sg_event_id", "timestamp", "email", "delivered", "bounce")
SIGNATURE_TOKENS = ("v1=", "1795000000", "GMT", "Wed, 21 Oct 2026 07:28:00 GMT", "MFkwEwYHKoZIzj0C", "==", "9" * 320)
MINER_TOKENS = (*WORDS, *JSON_TOKENS, "next_id", "leaves", "lru")
CONSOLE_TOKENS = (*WORDS, "/incidents", "https://", "javascript:", "/\\", "::ffff:", "/33", "/129", "fe80::1%eth0")

TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target(
            "decode",
            "Kafka message decoder, every topic: an event or a dead-letter reason",
            _decode,
            tokens=_decode_tokens,
        ),
        Target(
            "settings",
            "settings, notices and contracts files: Settings, NoticeConfig or ConfigError",
            _settings,
            tokens=_settings_tokens,
        ),
        Target("model", "learned-model file (skops): a model or ModelFileError", _model, 65_536, lambda: MODEL_TOKENS),
        Target("duties", "duty-rule TOML files: a usable rule set or RuleFileError", _duties, 32_768, _duties_tokens),
        Target(
            "sendgrid",
            "SendGrid event webhook (signed): 204, 400 or 413, never an error",
            _sendgrid,
            tokens=lambda: SENDGRID_TOKENS,
        ),
        Target(
            "signatures",
            "webhook signatures and Retry-After: a verdict, never an error",
            _signatures,
            tokens=lambda: SIGNATURE_TOKENS,
        ),
        Target("miner", "log template miner and its checkpoint state", _miner, tokens=lambda: MINER_TOKENS),
        Target("logs", "log detector on arbitrary log records, across a checkpoint", _logs, 32_768, lambda: WORDS),
        Target("dump", "topic dump reader used by replay, into the detectors", _dump, 32_768, _decode_tokens),
        Target(
            "console",
            "console redirects, list filters, cookies and silence forms",
            _console,
            tokens=lambda: CONSOLE_TOKENS,
        ),
    )
}


# --- running ---------------------------------------------------------------------------------


def write_seeds(corpus: Path, seeds: list[bytes]) -> None:
    corpus.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        (corpus / f"seed-{hashlib.sha1(seed).hexdigest()}").write_bytes(seed)


def worker(name: str, work: Path, runs: int, seconds: int) -> None:
    """Fuzz one target in this process with atheris (exits when done, as libFuzzer does)."""
    import atheris

    target = TARGETS[name]
    with atheris.instrument_imports(include=PACKAGES):
        one, seeds = target.prepare(work)
    corpus = work / "corpus" / name
    crashes = work / "crashes"
    crashes.mkdir(parents=True, exist_ok=True)
    # Inputs that already crashed this target (after a --keep-going restart) leave the corpus,
    # so the run goes on to find what else is wrong instead of stopping at the same input.
    known = {m.group(1) for p in crashes.glob(f"{name}-*") if (m := _ARTIFACT_NAME.fullmatch(p.name))}
    write_seeds(corpus, [seed for seed in seeds if hashlib.sha1(seed).hexdigest() not in known])
    for entry in corpus.iterdir():
        if hashlib.sha1(entry.read_bytes()).hexdigest() in known:
            entry.unlink()
    words = work / "dict" / f"{name}.dict"
    words.parent.mkdir(parents=True, exist_ok=True)
    words.write_text("".join(f'"{_dict_escape(t)}"\n' for t in dict.fromkeys(target.tokens()) if t))
    args = [
        sys.argv[0],
        str(corpus),
        f"-runs={runs}",
        f"-max_total_time={seconds}",
        f"-max_len={target.max_len}",
        f"-dict={words}",
        f"-artifact_prefix={crashes}/{name}-",
        "-timeout=60",
        "-rss_limit_mb=4096",
        "-print_final_stats=1",
    ]
    atheris.Setup(args, one)
    atheris.Fuzz()


def _dict_escape(token: str) -> str:
    """A token in libFuzzer's dictionary syntax: printable ASCII as is, anything else as \\xNN."""
    out = []
    for b in token.encode("utf-8"):
        out.append(chr(b) if 32 <= b < 127 and b not in (34, 92) else f"\\x{b:02x}")
    return "".join(out)


_EXECUTED = re.compile(r"stat::number_of_executed_units:\s*(\d+)")
_PROGRESS = re.compile(r"^#(\d+)\s", re.MULTILINE)
_ARTIFACT = re.compile(r"Test unit written to (\S+)")
_ARTIFACT_NAME = re.compile(r"[a-z]+-(?:crash|timeout|oom|slow-unit)-([0-9a-f]{40})")


def _signature(log: str) -> str:
    """Exception type and innermost project frame of a crash, to tell distinct crashes apart."""
    root = str(Path(__file__).resolve().parents[1])
    frames = re.findall(r'File "([^"]+)", line (\d+)', log)
    ours = [f"{Path(f).relative_to(root)}:{n}" for f, n in frames if f.startswith(root)]
    # The innermost frame in the code under test; a broken contract is raised by its check here.
    ours = [f for f in ours if not f.startswith("bench/fuzz.py")] or ours
    kind = re.search(r"Uncaught Python exception: ===\n([\w.]+)", log)
    return f"{kind.group(1) if kind else 'crash'} @ {ours[-1] if ours else '?'}"


def fuzz_target(name: str, work: Path, runs: int, seconds: int, keep_going: bool) -> dict[str, Any]:
    """Run one target in atheris subprocesses; the JSON summary of what happened."""
    started = time.monotonic()
    total_runs = 0
    found: dict[str, dict[str, str]] = {}
    while True:
        left = seconds - (time.monotonic() - started)
        if seconds and left < 1:
            break
        cmd = [sys.executable, "-m", "bench.fuzz", "--worker", name, "--work", str(work)]
        cmd += ["--runs", str(runs - total_runs if runs > 0 else -1), "--seconds", str(int(left) if seconds else 0)]
        done = subprocess.run(
            cmd, capture_output=True, text=True, check=False, timeout=(left if seconds else 86_400) + 600
        )
        log = done.stdout + done.stderr
        executed = _EXECUTED.findall(log) or _PROGRESS.findall(log)
        total_runs += int(executed[-1]) if executed else 0
        artifact = _ARTIFACT.findall(log)
        if done.returncode == 0 and not artifact:
            break
        signature = _signature(log)
        if signature not in found:
            error = re.search(r"Uncaught Python exception: ===\n([^\n]{0,200})", log)
            found[signature] = {
                "crash": signature,
                "error": error.group(1) if error else log[-300:],
                "input": artifact[-1] if artifact else "(no artifact)",
            }
            progress = re.compile(r"^#\d+\s+(?:NEW|REDUCE|pulse|RELOAD)\b.*\n", re.MULTILINE)
            (work / "crashes" / f"{name}-{len(found)}.log").write_text(progress.sub("", log))
        if not keep_going or (runs > 0 and total_runs >= runs):
            break
    result: dict[str, Any] = {
        "bench": "fuzz",
        "target": name,
        "runs": total_runs,
        "seconds": round(time.monotonic() - started, 1),
        "crashes": len(found),
    }
    if found:
        result["found"] = list(found.values())
    return result


def reproduce(name: str, work: Path, path: Path) -> None:
    one, _ = TARGETS[name].prepare(work)
    one(path.read_bytes())
    print(f"{name}: {path} passes the contract")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", default="all", help=f"one of {', '.join(TARGETS)}, or all")
    ap.add_argument("--runs", type=int, default=0, help="inputs per target (0: no limit)")
    ap.add_argument("--seconds", type=int, default=60, help="time per target (0: no limit)")
    ap.add_argument("--work", type=Path, default=None, help="corpus, crashes and seeds (default: a temporary dir)")
    ap.add_argument("--keep-going", action="store_true", help="restart a target after a crash until its time is up")
    ap.add_argument("--reproduce", type=Path, default=None, help="run one input through --target and check it")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.runs <= 0 and args.seconds <= 0:
        ap.error("give --runs or --seconds, or the fuzzer never stops")
    if args.worker:
        worker(args.worker, args.work, args.runs if args.runs > 0 else -1, args.seconds)
        return
    names = list(TARGETS) if args.target == "all" else [args.target]
    unknown = [n for n in names if n not in TARGETS]
    if unknown:
        ap.error(f"unknown target {unknown[0]!r}; choose from {', '.join(TARGETS)}")
    work = args.work or Path(tempfile.mkdtemp(prefix="breachwatch-fuzz-"))
    work.mkdir(parents=True, exist_ok=True)
    if args.reproduce:
        reproduce(names[0], work, args.reproduce)
        return
    failed = False
    for name in names:
        result = fuzz_target(name, work, args.runs, args.seconds, args.keep_going)
        failed |= result["crashes"] > 0
        print(json.dumps(result), flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
