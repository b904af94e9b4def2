"""The learned detector end to end on a small fictional customer base: training (privacy
policy 6.2), model files, findings with reasons, determinism, and restart via state."""

from __future__ import annotations

import io
import json
import random
import zipfile
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import skops.io as sio
from sklearn.linear_model import LogisticRegression

from breachwatch.core.events import TENANTS, AccessEvent, AuthEvent, Contact, Event, Tenant
from breachwatch.core.findings import DetectionContext, Finding, Judgement
from breachwatch.core.reference import ReferenceTables
from breachwatch.detectors.learned import detector as learned
from breachwatch.detectors.learned import signing
from breachwatch.detectors.learned.detector import (
    LearnedDetector,
    ModelFileError,
    TrainedModel,
    load_model,
    save_model,
    train,
)
from breachwatch.detectors.learned.features import FEATURE_NAMES

KEY = b"fictional-pseudonym-key-for-tests-only"
SIGNING_KEY = b"fictional-model-signing-key-for-tests"
T0 = datetime(2026, 11, 2, tzinfo=UTC)  # a Monday
HISTORY_DAYS = 14
UNTIL = T0 + timedelta(days=HISTORY_DAYS)

# tenant id -> (jurisdiction, UTC offset in winter, provider /16 of its users, opted out)
TENANT_SPEC = {
    "t-alpha": ("DE", 1, "91.64", False),
    "t-bravo": ("GB", 0, "81.2", False),
    "t-charlie": ("PK", 5, "39.57", True),
}
USERS = 6


def tables() -> ReferenceTables:
    t = ReferenceTables()
    for tid, (jur, _, _, out) in TENANT_SPEC.items():
        t.apply(
            TENANTS,
            tid,
            Tenant(
                tenant_id=tid,
                name=f"{tid} Trading",
                jurisdiction=jur,
                contacts=(Contact(email=f"security@{tid}.example", role="security"),),
                ai_training_opt_out=out,
            ),
        )
    return t


class World:
    """Builds events with unique ids, so the same world can be rebuilt identically."""

    def __init__(self) -> None:
        self.n = 0

    def _id(self) -> str:
        self.n += 1
        return f"ev-{self.n:07d}"

    def login(
        self,
        ts: datetime,
        actor: str,
        tenant: str | None,
        ip: str,
        country: str,
        ua: str,
        *,
        ok: bool = True,
        atype: str = "customer_user",
        action: str = "login",
        roles: tuple[str, ...] | None = None,
    ) -> AuthEvent:
        extra = {"roles": roles} if roles is not None else {}
        return AuthEvent(
            event_id=self._id(),
            ts=ts,
            actor_id=actor,
            actor_type=atype,
            actor_tenant=tenant,
            action=action,
            outcome="success" if ok else "failure",
            ip=ip,
            country=country,
            user_agent=ua,
            **extra,
        )

    def access(
        self,
        ts: datetime,
        actor: str,
        tenant: str,
        ip: str,
        country: str,
        ua: str,
        *,
        records: int,
        resource: str = "customer",
        sensitivity: str = "personal",
        action: str = "read",
        atype: str = "customer_user",
        session: str = "s",
    ) -> AccessEvent:
        return AccessEvent(
            event_id=self._id(),
            ts=ts,
            actor_id=actor,
            actor_type=atype,
            actor_tenant=tenant,
            tenant_id=tenant,
            action=action,
            resource_type=resource,
            sensitivity=sensitivity,
            records=records,
            ip=ip,
            country=country,
            user_agent=ua,
            session_id=session,
        )


def user_id(tenant: str, i: int) -> str:
    return f"u-{tenant[2:]}-{i}"


def user_ip(tenant: str, i: int) -> str:
    return f"{TENANT_SPEC[tenant][2]}.{10 + i}.{20 + i}"


def history(world: World, days: int = HISTORY_DAYS, start: datetime = T0, seed: int = 5) -> list[Event]:
    rng = random.Random(seed)
    out: list[Event] = []
    for tid, (jur, off, _, _) in TENANT_SPEC.items():
        country = jur
        for i in range(USERS):
            uid, ip, ua = user_id(tid, i), user_ip(tid, i), f"Firefox/12{i}"
            for d in range(days):
                day = start + timedelta(days=d)
                if day.weekday() >= 5:
                    continue
                for session_hour in (9, 11, 14):  # local working hours
                    ts = day + timedelta(hours=session_hour - off, minutes=rng.randint(0, 40))
                    out.append(world.login(ts, uid, tid, ip, country, ua))
                    for _ in range(rng.randint(3, 6)):
                        ts += timedelta(minutes=rng.randint(1, 6))
                        res, sens = rng.choice(
                            [("customer", "personal"), ("invoice", "financial"), ("inventory", "internal")]
                        )
                        out.append(
                            world.access(
                                ts,
                                uid,
                                tid,
                                ip,
                                country,
                                ua,
                                records=rng.randint(2, 30),
                                resource=res,
                                sensitivity=sens,
                                session=f"{uid}-{d}-{session_hour}",
                            )
                        )
        svc = f"svc-sync-{tid[2:]}"
        for d in range(days):
            for h in range(0, 24, 2):
                ts = start + timedelta(days=d, hours=h, minutes=5)
                out.append(
                    world.access(
                        ts,
                        svc,
                        tid,
                        "3.120.5.7",
                        "DE",
                        "sync-agent/2",
                        records=rng.randint(50, 80),
                        resource="order",
                        sensitivity="internal",
                        atype="service",
                        session="sync",
                    )
                )
    out.sort(key=lambda e: e.ts)
    return out


def takeover(world: World, tenant: str = "t-alpha", i: int = 2, at: datetime | None = None) -> list[Event]:
    """A night login from a hosting network abroad with a new client, then a data grab."""
    uid = user_id(tenant, i)
    off = TENANT_SPEC[tenant][1]
    at = at or UNTIL + timedelta(hours=2 - off, minutes=10)  # 02:10 local
    ip, ua = "185.220.101.5", "Mozilla/5.0 (X11; Linux x86_64) HeadlessChrome/119"
    ev: list[Event] = [world.login(at + timedelta(seconds=s), uid, tenant, ip, "NL", ua, ok=False) for s in (0, 9)]
    ev.append(world.login(at + timedelta(seconds=30), uid, tenant, ip, "NL", ua))
    for k in range(8):
        ev.append(
            world.access(at + timedelta(seconds=60 + 15 * k), uid, tenant, ip, "NL", ua, records=250, session="s-evil")
        )
    ev.append(
        world.access(
            at + timedelta(seconds=200), uid, tenant, ip, "NL", ua, records=5000, action="export", session="s-evil"
        )
    )
    return ev


def business_trip(world: World, tenant: str = "t-bravo", i: int = 1) -> list[Event]:
    """A user working from France for a day: same laptop, French office hours, usual volumes."""
    uid, ua = user_id(tenant, i), f"Firefox/12{i}"
    ip = "80.12.44.9"
    ev: list[Event] = []
    for session_hour in (9, 14):  # 09:00 and 14:00 in Paris
        ts = UNTIL + timedelta(hours=session_hour - 1)
        ev.append(world.login(ts, uid, tenant, ip, "FR", ua))
        for k in range(4):
            ev.append(
                world.access(
                    ts + timedelta(minutes=2 + k), uid, tenant, ip, "FR", ua, records=12, session=f"trip-{session_hour}"
                )
            )
    return ev


def escalation(world: World, tenant: str = "t-alpha", i: int = 4) -> list[Event]:
    """A clerk granted admin who then reads API keys and integration credentials."""
    uid, ip, ua = user_id(tenant, i), user_ip(tenant, i), f"Firefox/12{i}"
    at = UNTIL + timedelta(hours=10 - TENANT_SPEC[tenant][1])
    ev: list[Event] = [
        world.login(at, uid, tenant, ip, TENANT_SPEC[tenant][0], ua, action="role_change", roles=("clerk", "admin"))
    ]
    for k, res in enumerate(("api_key", "integration_credential", "api_key")):
        ev.append(
            world.access(
                at + timedelta(minutes=3 + k),
                uid,
                tenant,
                ip,
                TENANT_SPEC[tenant][0],
                ua,
                records=40,
                resource=res,
                sensitivity="credentials",
                session="s-adm",
            )
        )
    return ev


def run(det: LearnedDetector, events: Sequence[Event], tb: ReferenceTables, batch: int = 500) -> list[Finding]:
    ctx = DetectionContext(tables=tb)
    out: list[Finding] = []
    for b in range(0, len(events), batch):
        out.extend(det.process(events[b : b + batch], ctx))
    return out


def after(events: Sequence[Event], extra: Sequence[Event]) -> list[Event]:
    return sorted([*events, *extra], key=lambda e: e.ts)


@pytest.fixture(scope="module")
def world_history() -> tuple[World, list[Event]]:
    w = World()
    return w, history(w)


@pytest.fixture(scope="module")
def model(world_history: tuple[World, list[Event]]) -> TrainedModel:
    _, events = world_history
    return train(events, tables(), until=UNTIL, pseudonym_key=KEY, max_alerts_per_day=4.0)


@pytest.fixture(scope="module")
def model_file(model: TrainedModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("model") / "learned.skops"
    save_model(model, path, SIGNING_KEY)
    return path


def test_training_uses_only_tenants_that_allow_it(model: TrainedModel) -> None:
    report = model.report
    assert report is not None
    assert report.tenants_used == ["t-alpha", "t-bravo"]
    assert report.tenants_excluded == ["t-charlie"]
    assert report.events_opted_out > 0 and report.events_used > 0
    assert report.rows_fit > 0 and report.actors == 2 * USERS + 2
    assert any("opted out" in line for line in report.lines())
    assert model.metadata["counts"]["tenants_excluded"] == 1


def test_model_file_holds_no_identities(model_file: Path, world_history: tuple[World, list[Event]]) -> None:
    _, events = world_history
    with zipfile.ZipFile(model_file) as z:
        blob = b"".join(z.read(n) for n in z.namelist())
    raw = model_file.read_bytes() + blob
    identities = {e.actor_id for e in events} | {e.ip for e in events if e.ip} | {e.user_agent for e in events}
    identities |= {f"security@{t}.example" for t in TENANT_SPEC} | set(TENANT_SPEC)
    leaked = sorted(i for i in identities if i.encode() in raw)
    assert leaked == []


def test_model_file_round_trips_with_its_metadata(model: TrainedModel, model_file: Path) -> None:
    loaded = load_model(model_file, SIGNING_KEY)
    meta = loaded.metadata
    assert meta["features"] == model.metadata["features"] and len(meta["features"]) > 10
    assert meta["training_window"]["until"] == UNTIL.isoformat()
    assert meta["counts"]["events_used"] == model.report.events_used  # type: ignore[union-attr]
    assert loaded.threshold == meta["threshold"] == meta["calibration"]["threshold"]
    assert meta["calibration"]["max_alerts_per_day"] == 4.0
    assert loaded.population is not None
    assert (loaded.population.score_samples([[0.0] * len(meta["features"])]) >= 0).all()


def test_damaged_or_foreign_model_files_are_refused(model_file: Path, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.skops"
    garbage.write_bytes(b"this is not a model")
    with pytest.raises(ModelFileError, match="not a BreachWatch model"):
        load_model(garbage, SIGNING_KEY)

    # Signed with the right key, but holding types this version never writes.
    foreign = tmp_path / "foreign.skops"
    archive = sio.dumps({"format": "breachwatch.learned", "version": 2, "patterns": LogisticRegression()})
    foreign.write_bytes(signing.seal(archive, SIGNING_KEY))
    with pytest.raises(ModelFileError, match="does not trust"):
        load_model(foreign, SIGNING_KEY)


def _edit_baselines(model_file: Path, out: Path) -> None:
    """The model file with its stored baselines edited and its signature line kept, as someone
    who can write the file but has no key might try (a long history faked)."""
    data = model_file.read_bytes()
    head, archive = data[: data.index(b"PK\x03\x04")], data[data.index(b"PK\x03\x04") :]
    edited = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(archive)) as src, zipfile.ZipFile(edited, "w") as dst:
        for item in src.infolist():
            blob = src.read(item.filename)
            if item.filename == "schema.json":
                schema = json.loads(blob)
                content = schema["content"]["baselines"]
                baselines = json.loads(json.loads(content["content"]))
                next(iter(baselines["actors"].values()))["days"] += 100
                content["content"] = json.dumps(json.dumps(baselines))
                blob = json.dumps(schema).encode()
            dst.writestr(item, blob)
    out.write_bytes(head + edited.getvalue())


def test_model_files_are_signed_and_refused_on_any_mismatch(model_file: Path, tmp_path: Path) -> None:
    assert model_file.read_bytes().startswith(signing.MAGIC)

    tampered = tmp_path / "tampered.skops"
    _edit_baselines(model_file, tampered)
    with pytest.raises(ModelFileError, match="changed after it was signed"):
        load_model(tampered, SIGNING_KEY)

    other_key = b"another-fictional-signing-key"
    with pytest.raises(ModelFileError, match="signed with another key than BREACHWATCH_MODEL_SIGNING_KEY") as caught:
        load_model(model_file, other_key)
    assert other_key.decode() not in str(caught.value) and SIGNING_KEY.decode() not in str(caught.value)

    # Re-signed by someone who guessed no key: still the wrong signature.
    forged = tmp_path / "forged.skops"
    archive = model_file.read_bytes()[model_file.read_bytes().index(b"PK\x03\x04") :]
    forged.write_bytes(signing.seal(archive, other_key))
    with pytest.raises(ModelFileError, match="signed with another key"):
        load_model(forged, SIGNING_KEY)

    # A file of the version before signing: a plain skops archive.
    unsigned = tmp_path / "unsigned.skops"
    unsigned.write_bytes(archive)
    with pytest.raises(ModelFileError, match=r"not signed \(written by an older version\): train it again"):
        load_model(unsigned, SIGNING_KEY)

    damaged = tmp_path / "damaged.skops"
    damaged.write_bytes(signing.MAGIC + b"{not json\n" + archive)
    with pytest.raises(ModelFileError, match="signature line is damaged"):
        load_model(damaged, SIGNING_KEY)


def test_a_model_from_another_scikit_learn_is_refused(
    model: TrainedModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sklearn

    path = tmp_path / "old.skops"
    monkeypatch.setattr(signing, "library_versions", lambda: {"scikit-learn": "1.4.2", "skops": "0.10.0"})
    save_model(model, path, SIGNING_KEY)
    monkeypatch.undo()
    header = json.loads(path.read_bytes().split(b"\n")[1])
    assert header["versions"] == {"scikit-learn": "1.4.2", "skops": "0.10.0"}
    expected = f"written with scikit-learn 1.4.2 and this installation has {sklearn.__version__}"
    with pytest.raises(ModelFileError, match=expected):
        load_model(path, SIGNING_KEY)
    save_model(model, path, SIGNING_KEY)  # written here: recorded as this version, and loads
    assert json.loads(path.read_bytes().split(b"\n")[1])["versions"]["scikit-learn"] == sklearn.__version__
    assert load_model(path, SIGNING_KEY).threshold == model.threshold


def test_takeover_is_found_with_reasons_numbers_and_evidence(
    model: TrainedModel, world_history: tuple[World, list[Event]]
) -> None:
    w, _ = world_history
    attack = takeover(w)
    det = LearnedDetector(model, pseudonym_key=KEY)
    findings = run(det, after(history(World(), days=1, start=UNTIL - timedelta(days=1)), attack), tables())
    ato = [f for f in findings if f.kind == "account_takeover"]
    assert len({f.finding_id for f in ato}) == 1, findings
    f = ato[0]
    assert f.actor_id == "u-alpha-2" and f.tenant_ids == ("t-alpha",) and f.source_ips == ("185.220.101.5",)
    assert f.score >= model.threshold and f.severity in ("high", "critical")
    text = " ".join(f.reasons)
    assert "Netherlands (NL)" in text and "usual: Germany (DE)" in text
    assert any(ch.isdigit() for ch in text)
    assert f.playbook
    assert {e.event_id for e in f.events} <= {e.event_id for e in attack}
    assert f.events[0].ts == attack[0].ts  # the failed logins are evidence too
    assert f.facts["threshold"] == pytest.approx(model.threshold, abs=0.1)


def test_a_business_trip_is_not_an_incident(model: TrainedModel) -> None:
    det = LearnedDetector(model, pseudonym_key=KEY)
    w = World()
    findings = run(det, after(history(w, days=1, start=UNTIL - timedelta(days=1)), business_trip(w)), tables())
    assert [f for f in findings if f.actor_id == user_id("t-bravo", 1)] == []


def test_opted_out_tenants_are_still_protected(model: TrainedModel) -> None:
    # No baselines for t-charlie are in the model; the detector learns them from the stream.
    w = World()
    events = after(history(w), takeover(w, tenant="t-charlie", i=3))
    findings = run(LearnedDetector(model, pseudonym_key=KEY), events, tables())
    assert any(f.kind == "account_takeover" and f.actor_id == "u-charlie-3" for f in findings)


def test_without_a_model_the_profile_checks_still_run() -> None:
    w = World()
    events = after(history(w), escalation(w))
    findings = run(LearnedDetector(None), events, tables())
    esc = [f for f in findings if f.kind == "privilege_escalation"]
    assert esc and esc[0].actor_id == "u-alpha-4"
    assert any("admin" in r for r in esc[0].reasons)
    assert not [f for f in findings if f.ts < UNTIL]  # ordinary history raised nothing


def test_same_events_give_the_same_findings() -> None:
    def once() -> list[tuple[str, str, float]]:
        w = World()
        events = after(history(w), [*takeover(w), *escalation(w)])
        return [(f.finding_id, f.kind, f.score) for f in run(LearnedDetector(None), events, tables(), batch=300)]

    first = once()
    assert first and first == once()


def test_profiles_survive_a_restart(model: TrainedModel) -> None:
    """A consumer that checkpoints its state, dies and is replaced raises exactly the
    findings an uninterrupted one does (state travels as JSON)."""
    w = World()
    grab = takeover(w)
    events = after(history(w), [*grab, *escalation(w), *business_trip(w)])
    tb = tables()
    steady = run(LearnedDetector(model, pseudonym_key=KEY), events, tb)

    # Anywhere, not only at a batch boundary of the uninterrupted run: inside the takeover's
    # hour, after its first finding, whose mark is still waiting for the hour to end.
    cut = events.index(grab[2]) + 3
    first = LearnedDetector(model, pseudonym_key=KEY)
    before = run(first, events[:cut], tb)
    checkpoint = json.loads(json.dumps(first.state()))
    assert checkpoint["marks"], "the cut must fall between a finding and the end of its hour"
    second = LearnedDetector(model, pseudonym_key=KEY)
    second.load_state(checkpoint)
    resumed = before + run(second, events[cut:], tb)

    assert finding_keys(resumed) == finding_keys(steady)
    assert {f.kind for f in steady} >= {"account_takeover", "privilege_escalation"}


@pytest.mark.parametrize("remembered", [True, False], ids=["evicted-remembered", "register-trimmed"])
def test_checkpoints_hold_the_changed_actors_and_restore_the_whole_state(
    model: TrainedModel, remembered: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A checkpoint writes the detector's head and the actors that changed since the last one
    saved: an evicted actor's item keeps when it was last seen, and one the register forgets
    is dropped. Applied in turn, they restore exactly the state a whole checkpoint would, at
    every checkpoint: with idle profiles packed, actors evicted, findings' marks pending, and
    writes that failed on the way (their changes go with the next). A detector resumed from
    them raises the same findings."""
    if not remembered:
        monkeypatch.setattr(learned, "REGISTER_DAYS", 10)  # the newcomer's day forgets the rest
    w = World()
    events = after(history(w), [*takeover(w), *escalation(w), *business_trip(w)])
    tb = tables()
    ctx = DetectionContext(tables=tb)

    def detector() -> LearnedDetector:
        return LearnedDetector(model, pseudonym_key=KEY, pack_after=120, live_max=0, idle_days=5)

    def plain(state: dict[str, Any]) -> Any:
        return json.loads(json.dumps(state))

    steady = run(detector(), events, tb, batch=150)
    det = detector()
    head: dict[str, Any] = {}
    items: dict[str, Any] = {}

    def save() -> int:
        """Apply the next delta to the store, as the store does; check it restores the state."""
        nonlocal head, items
        delta = det.state_delta()
        if delta.complete:
            items = {}
        for key in delta.dropped:
            del items[key]
        items.update(plain(delta.items))
        head = plain(delta.head)
        det.delta_saved()
        restored = detector()
        restored.load_state_items(head, items)
        assert plain(restored.state()) == plain(det.state())
        return len(delta.items)

    rng = random.Random(11)
    written: list[int] = []
    found: list[Finding] = []
    middle: tuple[Any, Any, int, int] | None = None
    for b in range(0, len(events), 150):
        found += det.process(events[b : b + 150], ctx)
        if b and rng.random() < 0.25:
            continue  # the write failed: nothing is saved, the next one holds these changes too
        written.append(save())
        if middle is None and b >= len(events) // 2:
            middle = (plain(head), plain(items), b + 150, len(found))
    assert written[0] > 10, written
    save()
    everyone = len(items)

    # Days later a newcomer's first event evicts every idle actor: what is kept of them is when
    # they were last seen, in their items, unless the register forgot them too.
    newcomer = w.access(T0 + timedelta(days=30), "u-newcomer", "t-alpha", "91.64.1.1", "DE", "Firefox/1", records=1)
    det.process([newcomer], ctx)
    save()
    evicted = [a for a, it in items.items() if "profile" not in it]
    if remembered:
        assert len(evicted) == everyone and all(items[a] == {"register": det._register[a]} for a in evicted)
    else:
        assert evicted == [] and list(items) == ["u-newcomer"]
    # A minute later only the newcomer acts: the next checkpoint writes it alone.
    later = newcomer.ts + timedelta(minutes=1)
    det.process([w.access(later, "u-newcomer", "t-alpha", "91.64.1.1", "DE", "Firefox/1", records=2)], ctx)
    assert save() == 1

    assert middle is not None
    head, items, at, n = middle
    resumed = detector()
    resumed.load_state_items(head, items)
    assert finding_keys(found[:n] + run(resumed, events[at:], tb, batch=150)) == finding_keys(steady)
    assert {f.kind for f in steady} >= {"account_takeover", "privilege_escalation"}


def test_the_model_needs_the_key_it_was_trained_with(model: TrainedModel) -> None:
    with pytest.raises(ValueError, match="pseudonym key"):
        LearnedDetector(model, pseudonym_key=b"another-key")
    with pytest.raises(ValueError, match="pseudonym key"):
        train([], tables(), until=UNTIL, pseudonym_key=b"")


def test_state_is_bounded_by_evicting_idle_actors() -> None:
    w = World()
    events: Iterator[Event] = iter(history(w, days=3))
    det = LearnedDetector(None, idle_days=2)
    run(det, list(events), tables())
    late = w.access(T0 + timedelta(days=9), "u-newcomer", "t-alpha", "91.64.1.1", "DE", "Firefox/1", records=1)
    run(det, [late], tables())
    state = det.state()
    assert list(state["profiles"]) == ["u-newcomer"]
    assert "u-alpha-0" in state["register"]  # remembered, so waking up later counts as dormancy


def finding_keys(fs: list[Finding]) -> list[tuple[Any, ...]]:
    """What a finding says: identity, kind, score, when it was judged, evidence, reasons, facts."""
    return [
        (f.finding_id, f.kind, f.score, f.detected_at, f.event_ids, f.reasons, json.dumps(f.facts, sort_keys=True))
        for f in fs
    ]


@pytest.mark.parametrize("batch", [1, 7, 333])
def test_findings_do_not_depend_on_how_the_stream_is_batched(model: TrainedModel, batch: int) -> None:
    """A poll, a restart or a replay cuts the stream anywhere: the same events in batches of
    any size raise the same findings, with the same evidence, reasons and facts, as one batch
    holding everything."""
    w = World()
    events = after(history(w), [*takeover(w), *escalation(w), *business_trip(w)])
    tb = tables()
    whole = run(LearnedDetector(model, pseudonym_key=KEY), events, tb, batch=len(events))
    assert {f.kind for f in whole} >= {"account_takeover", "privilege_escalation"}
    assert finding_keys(run(LearnedDetector(model, pseudonym_key=KEY), events, tb, batch=batch)) == finding_keys(whole)


def test_a_takeovers_data_grab_joins_its_evidence(model: TrainedModel) -> None:
    """The login is reported as soon as it is judged; the reads and the export that follow in
    the same hour are reported too (same episode, so the incident gathers them), even when
    one batch holds all of it."""
    w = World()
    grab = takeover(w)
    det = LearnedDetector(model, pseudonym_key=KEY)
    tb = tables()
    run(det, history(w), tb)
    tail = grab[-1].ts + timedelta(minutes=5)
    found = run(
        det,
        [*grab, w.access(tail, user_id("t-bravo", 0), "t-bravo", user_ip("t-bravo", 0), "GB", "F/1", records=3)],
        tb,
    )
    takeovers = [f for f in found if f.kind == "account_takeover"]
    assert len({f.finding_id for f in takeovers}) == 1, "one episode"
    shown = {e for f in takeovers for e in f.event_ids}
    assert {grab[0].event_id, grab[-1].event_id} <= shown


def test_packing_idle_profiles_changes_no_verdict(model: TrainedModel) -> None:
    """Idle actors' profiles are kept packed (compressed) until their next event; the
    findings and the checkpointed state are those of a detector that keeps every profile live,
    also across a restart (a checkpoint restores profiles packed)."""
    w = World()
    events = after(history(w), [*takeover(w), *escalation(w), *business_trip(w)])
    tb = tables()
    live = LearnedDetector(model, pseudonym_key=KEY, pack_after=0)
    steady = run(live, events, tb, batch=100)
    assert not live._packed

    cut = (len(events) - 700) // 100 * 100
    packing = LearnedDetector(model, pseudonym_key=KEY, pack_after=120, live_max=0)
    found = run(packing, events[:cut], tb, batch=100)
    assert packing._packed, "some actors were idle for two minutes and should be packed"
    resumed = LearnedDetector(model, pseudonym_key=KEY, pack_after=120, live_max=0)
    resumed.load_state(json.loads(json.dumps(packing.state())))
    found += run(resumed, events[cut:], tb, batch=100)

    def key(fs: list[Finding]) -> list[tuple[str, str, float, tuple[str, ...], tuple[str, ...]]]:
        return [(f.finding_id, f.kind, f.score, f.reasons, f.event_ids) for f in fs]

    assert key(found) == key(steady)
    assert {f.kind for f in steady} >= {"account_takeover", "privilege_escalation"}
    assert resumed.state() == live.state()
    assert resumed.actor_count == len(live._profiles)


def test_a_packed_actor_keeps_its_carried_evidence(model: TrainedModel) -> None:
    """Failed logins, a pause long enough for the profile to be packed while others work,
    then the takeover: the finding still starts at the failed logins."""
    w = World()
    uid = user_id("t-alpha", 2)
    at = UNTIL + timedelta(hours=1, minutes=10)
    ip, ua = "185.220.101.5", "Mozilla/5.0 (X11; Linux x86_64) HeadlessChrome/119"
    fails = [w.login(at + timedelta(seconds=s), uid, "t-alpha", ip, "NL", ua, ok=False) for s in (0, 9)]
    other, other_ip = user_id("t-bravo", 0), user_ip("t-bravo", 0)
    others = [
        w.access(at + timedelta(minutes=m), other, "t-bravo", other_ip, "GB", "Firefox/120", records=3)
        for m in (2, 3, 4, 5)
    ]
    grab = takeover(w, at=at + timedelta(minutes=6))[2:]  # the login and the grab, not its failures
    past = history(w)
    tb = tables()

    def findings(pack_after: float) -> list[Finding]:
        det = LearnedDetector(model, pseudonym_key=KEY, pack_after=pack_after, live_max=0)
        run(det, past, tb)
        out = run(det, sorted([*fails, *others], key=lambda e: e.ts), tb, batch=1)
        assert (uid in det._packed) == (pack_after > 0)
        return out + run(det, grab, tb, batch=1)

    live = findings(0)
    packed = findings(120)
    takeovers = [f for f in packed if f.kind == "account_takeover"]
    assert takeovers and {e.event_id for e in fails} <= set(takeovers[0].event_ids)
    assert [(f.finding_id, f.event_ids) for f in packed] == [(f.finding_id, f.event_ids) for f in live]


def test_profiles_are_packed_only_when_there_are_many() -> None:
    w = World()
    events = history(w, days=3)
    few = LearnedDetector(None, pack_after=120)  # the default live_max: far more than 21 actors
    run(few, events, tables(), batch=100)
    assert not few._packed and few.actor_count == 21
    many = LearnedDetector(None, pack_after=120, live_max=10)
    run(many, events, tables(), batch=100)
    assert many._packed and many.actor_count == 21


def test_packing_is_configured_from_settings() -> None:
    from breachwatch.core.settings import load_settings
    from breachwatch.runtime.app import detector_factory

    learned = [
        d for d in detector_factory(load_settings(profile_live_max=5, profile_pack_after_s=60))() if d.name == "learned"
    ]
    assert isinstance(learned[0], LearnedDetector)
    assert (learned[0].live_max, learned[0].pack_after) == (5, 60)


def test_a_slot_judged_in_a_batch_without_the_actor_still_reports(model: TrainedModel) -> None:
    """The export that makes the takeover is judged when its two-minute slot ends, in a batch
    holding only someone else's event: the finding is raised there, with the carried evidence."""
    w = World()
    grab = takeover(w)
    other, other_ip = user_id("t-bravo", 0), user_ip("t-bravo", 0)
    later = w.access(grab[-1].ts + timedelta(minutes=10), other, "t-bravo", other_ip, "GB", "Firefox/120", records=3)
    det = LearnedDetector(model, pseudonym_key=KEY)
    tb = tables()
    run(det, history(w), tb)
    run(det, grab, tb, batch=len(grab))
    found = run(det, [later], tb)
    assert [f.kind for f in found] == ["account_takeover"]
    assert found[0].actor_id == grab[0].actor_id
    assert grab[-1].event_id in found[0].event_ids


def test_a_false_positive_verdict_mutes_the_pattern_and_a_reopening_lifts_it() -> None:
    w = World()
    events = after(history(w), escalation(w))
    [esc] = [f for f in run(LearnedDetector(None), events, tables()) if f.kind == "privilege_escalation"][:1]
    verdict = Judgement(1, "u-alpha-4", ("privilege_escalation",), esc.ts, esc.ts, esc.score)
    # Must not: the judged pattern again, with the verdict taken in first (the pipeline feeds
    # verdicts between batches).
    det = LearnedDetector(None)
    det.judged([verdict])
    assert det.judgement_seq() == 1
    assert not [f for f in run(det, events, tables()) if f.kind == "privilege_escalation"]
    assert det.muted >= 1
    # ... nor after a restart: the verdict is part of the checkpointed state.
    restored = LearnedDetector(None)
    restored.load_state(json.loads(json.dumps(det.state())))
    assert restored.judgement_seq() == 1
    # Must: another actor's pattern, and the same one once the incident is reopened.
    other = Judgement(1, "u-alpha-3", ("privilege_escalation",), esc.ts, esc.ts, esc.score)
    det2 = LearnedDetector(None)
    det2.judged([other])
    assert [f for f in run(det2, events, tables()) if f.kind == "privilege_escalation"]
    det3 = LearnedDetector(None)
    det3.judged([verdict, Judgement(2, "u-alpha-4", ("privilege_escalation",), esc.ts, esc.ts, 0.0, False)])
    assert [f for f in run(det3, events, tables()) if f.kind == "privilege_escalation"]
    # Switched off (``BREACHWATCH_FALSE_POSITIVE_SUPPRESS_DAYS=0``), verdicts are not asked for.
    assert LearnedDetector(None, feedback_days=0).judgement_seq() is None


def test_reasons_state_first_times_against_the_actors_own_history() -> None:
    # Must: credentials read for the first time in the fortnight the clerk has been watched.
    w = World()
    findings = run(LearnedDetector(None), after(history(w), escalation(w)), tables())
    [esc] = [f for f in findings if f.kind == "privilege_escalation"][:1]
    assert "first access of credentials data by this user in the 14 days it has been watched" in esc.reasons
    # Must: none of the tenant's users it is compared with reads API keys (peer-uncommon, with
    # the group's window); and it says that it speaks of the group it was compared with.
    peer_line = "none of the other users of t-alpha this one is compared with reads api_key records ("
    assert any(r.startswith(peer_line) for r in esc.reasons), esc.reasons
    assert not any(r.startswith("no other user") for r in esc.reasons)
    # Must not: data the actor reads every day is no first, and what colleagues read is common.
    assert not any("first access of personal data" in r or "of internal data" in r for r in esc.reasons)
    assert not any("reads customer records" in r for r in esc.reasons)


def test_the_population_model_alone_names_only_days_beyond_its_extrapolated_level(model: TrainedModel) -> None:
    """``anomalous_access`` is raised for a row no kind explains whose population score is past
    the level extrapolated from the training days' peaks (``tail_threshold``), never for one
    below it and never instead of a kind."""
    cal = model.metadata["anomaly_calibration"]
    assert model.anomaly_threshold >= cal["threshold"] > cal["training_max"]
    assert model.anomaly_threshold <= 100.0  # reachable: the population score tops out at 100
    det = LearnedDetector(model, KEY)
    level = model.anomaly_threshold
    det._pop_score = lambda X: np.array([level + 0.5, level - 0.5][: len(X)])
    quiet = np.zeros((2, len(FEATURE_NAMES)))  # no kind's gate is open on an all-zero row
    best, score, _, _ = det._score(quiet)
    assert best.tolist()[0] == -1 and score[0] == pytest.approx(level + 0.5)
    assert best.tolist()[1] != -1 and score[1] < det.threshold
