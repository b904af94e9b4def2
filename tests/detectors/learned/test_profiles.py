"""Per-actor and peer profiles: what they learn, that they stay bounded, and that they
round-trip through JSON exactly (which is how they survive a restart)."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

from breachwatch.detectors.learned.features import DAY, HOUR, W_EVENTS, W_FAILED, W_RECORDS, W_SIZE
from breachwatch.detectors.learned.models import CUSUM_ALARM
from breachwatch.detectors.learned.profiles import (
    CAP_COUNTRIES,
    CAP_NETWORKS,
    CAP_RESOURCES,
    T_AGENT,
    T_COUNTRY,
    T_NETWORK,
    T_RESOURCE,
    T_SENSITIVITY,
    ActorProfile,
    PeerProfile,
)

T0 = datetime(2026, 11, 2, tzinfo=UTC).timestamp()  # a Monday


def keyed(kind: str, value: str) -> str:
    return hashlib.sha256(f"{kind}:{value}".encode()).hexdigest()[:16]


def read(
    p: ActorProfile,
    ts: float,
    records: int = 5,
    *,
    ip: str = "91.64.10.7",
    country: str = "DE",
    ua: str = "Firefox/120",
    resource: str = "customer",
    sensitivity: str = "personal",
    action: str = "read",
    session: str | None = "s1",
) -> None:
    p.observe_access(
        ts, int(ts // HOUR), action, resource, sensitivity, records, ip, country, ua, session, False, keyed
    )


def working_weeks(p: ActorProfile, days: int, per_hour: int = 4, records: int = 5) -> None:
    for d in range(days):
        if d % 7 in (5, 6):
            continue
        for h in range(8, 16):
            for k in range(per_hour):
                read(p, T0 + d * DAY + h * HOUR + 60 * (k + 1), records)


def test_profile_learns_hours_places_and_volumes() -> None:
    p = ActorProfile("customer_user", "t-a", "Europe/Berlin", T0)
    working_weeks(p, 14)
    p.flush()
    assert p.active_days == 10
    assert p.mature(T0 + 14 * DAY)
    assert list(p.table(T_COUNTRY)) == ["DE"]
    assert p.table(T_COUNTRY)["DE"][0] == 320  # every event counted, including the cached fast path
    assert len(p.table(T_NETWORK)) == 1 and len(p.table(T_AGENT)) == 1
    state = json.dumps(p.to_dict())
    assert "91.64" not in state and "Firefox" not in state  # networks and agents: digests only
    assert p.hour_p95 == 20.0  # 4 reads of 5 records an hour
    assert p.day_p95 == 160.0
    assert sum(p.hours[9:17]) == sum(p.hours)  # 08-16 UTC is 09-17 in Berlin (winter)
    assert p.usual_gap_days() < 3.0  # weekends


def test_tables_and_rings_stay_bounded() -> None:
    p = ActorProfile("customer_user", "t-a", "UTC", T0)
    for i in range(200):
        read(p, T0 + i * 30 * 60, ip=f"10.{i}.{i}.1", country=f"C{i % 40:02d}"[-2:].upper().replace("0", "A"))
    p.flush()
    assert len(p.table(T_COUNTRY)) <= CAP_COUNTRIES
    assert len(p.table(T_NETWORK)) <= CAP_NETWORKS
    assert len(p.hour_ring) <= 96
    state = json.dumps(p.to_dict())
    assert len(state) < 20_000


def test_tables_sharing_one_store_keep_their_keys_apart_and_their_order() -> None:
    p = ActorProfile("customer_user", "t-a", "UTC", T0)
    # A resource type spelled like a country code, and one spelled like a data type.
    read(p, T0 + 60, resource="DE", sensitivity="payment")
    read(p, T0 + 120, resource="payment", sensitivity="personal")
    p.flush()
    assert p.table(T_COUNTRY) == {"DE": [2.0, T0 + 60, T0 + 120]}
    assert p.table(T_RESOURCE) == {"DE": [1.0, T0 + 60, T0 + 60], "payment": [1.0, T0 + 120, T0 + 120]}
    assert list(p.table(T_SENSITIVITY)) == ["payment", "personal"]
    # A full table: the type seen longest ago makes room, the others keep their counts and order.
    for i in range(CAP_RESOURCES):
        read(p, T0 + 600 + i, resource=f"type-{i}")
    p.flush()
    held = p.table(T_RESOURCE)
    assert len(held) == CAP_RESOURCES
    assert "DE" not in held and "payment" not in held
    assert list(held)[-1] == f"type-{CAP_RESOURCES - 1}"
    assert held["type-0"] == [1.0, T0 + 600, T0 + 600]
    assert p.table(T_COUNTRY)["DE"][0] == CAP_RESOURCES + 2.0  # the country is untouched by it
    # Packed in memory and through a checkpoint: the same tables, in the same order.
    for copy in (ActorProfile.unpack(p.pack()), ActorProfile.from_dict(json.loads(json.dumps(p.to_dict())))):
        for tag in (T_COUNTRY, T_RESOURCE, T_SENSITIVITY, T_NETWORK, T_AGENT):
            assert list(copy.table(tag).items()) == list(p.table(tag).items())


def test_late_event_does_not_clobber_the_current_hour() -> None:
    p = ActorProfile("customer_user", "t-a", "UTC", T0)
    now = T0 + 30 * HOUR
    read(p, now, 7)
    read(p, now - 2 * DAY, 1000)  # older than every window: dropped from the window counters
    p.flush()
    assert p.window_1h(now)[W_RECORDS] == 7.0
    assert p.window_24h(now)[W_RECORDS] == 7.0


def test_reported_volume_is_left_out_of_later_day_sums() -> None:
    p = ActorProfile("customer_user", "t-a", "UTC", T0)
    read(p, T0 + HOUR, 5000)
    p.flush()
    p.mark_reported(T0 + HOUR + 10)
    read(p, T0 + HOUR + 20, 30)
    read(p, T0 + 5 * HOUR, 40)
    p.flush()
    assert p.window_24h(T0 + 5 * HOUR)[W_RECORDS] == 70.0


def test_idle_gap_is_measured_against_the_usual_break() -> None:
    p = ActorProfile("customer_user", "t-a", "UTC", T0)
    working_weeks(p, 12)
    back = T0 + 40 * DAY + 9 * HOUR
    read(p, back)
    assert p.burst_gap >= 28 * DAY
    assert p.dormancy(back) > 3.0
    assert p.dormancy(back + 2 * DAY) == 0.0  # only while the burst is young


def test_failures_do_not_teach_the_profile() -> None:
    p = ActorProfile("customer_user", "t-a", "UTC", T0)
    working_weeks(p, 5)
    t = T0 + 5 * DAY + 9 * HOUR
    p.observe_auth(t, int(t // HOUR), "login", False, "185.220.101.5", "NL", "curl/8", None, keyed)
    p.flush()
    assert "NL" not in p.table(T_COUNTRY)
    assert p.window_1h(t)[W_FAILED] == 1.0  # but the failure is in the window


def test_state_round_trip_is_exact_and_behaves_the_same() -> None:
    a = ActorProfile("customer_user", "t-a", "Europe/Berlin", T0)
    working_weeks(a, 9)
    read(a, T0 + 9 * DAY + 9 * HOUR, 12)  # a pending fast-path count that must not be lost
    b = ActorProfile.from_dict(json.loads(json.dumps(a.to_dict())))
    assert json.dumps(b.to_dict(), sort_keys=True) == json.dumps(a.to_dict(), sort_keys=True)
    for p in (a, b):
        read(p, T0 + 9 * DAY + 9 * HOUR + 30, 3)
        read(p, T0 + 11 * DAY + 2 * HOUR, 50, ip="185.220.101.5", country="NL")
        p.flush()
    assert json.dumps(b.to_dict(), sort_keys=True) == json.dumps(a.to_dict(), sort_keys=True)


def test_worth_scoring_skips_only_ordinary_hours() -> None:
    p = ActorProfile("customer_user", "t-a", "UTC", T0)
    working_weeks(p, 10)
    t = T0 + 10 * DAY + 9 * HOUR
    read(p, t)
    p.flush()
    assert not p.worth_scoring(t)
    read(p, t + 60, 5, ip="185.220.101.5", country="NL")  # a new place
    assert p.worth_scoring(t + 60)


def test_peer_group_learns_from_members_days() -> None:
    peer = PeerProfile()
    members = [ActorProfile("customer_user", "t-a", "UTC", T0) for _ in range(3)]
    for m in members:
        m._peer = peer
        working_weeks(m, 6)
    assert peer.watched_days(T0 + 6 * DAY) >= 4
    assert peer.hour_p99 == 20.0
    assert max(peer.hours) > 0
    assert not peer.provider_new(keyed("prov", "91.64.0.0/16"), T0 + 6 * DAY)
    peer.observe_country("DE", T0)
    assert not peer.country_new("DE", T0 + 2 * DAY)
    assert peer.country_new("NL", T0 + 2 * DAY)
    again = PeerProfile.from_dict(json.loads(json.dumps(peer.to_dict())))
    assert again.to_dict() == peer.to_dict()


def test_window_counters_have_the_documented_size() -> None:
    p = ActorProfile("service", "t-a", "UTC", T0)
    read(p, T0)
    p.flush()
    assert len(p.window_1h(T0)) == W_SIZE
    assert len(p.window_24h(T0)) == W_SIZE + 1
    assert p.window_1h(T0)[W_EVENTS] == 1.0


def test_unused_hour_slots_cost_nothing() -> None:
    p = ActorProfile("customer_user", "t-a", "UTC", T0)
    q = ActorProfile("customer_user", "t-b", "UTC", T0)
    read(p, T0 + 3 * HOUR + 60, 5)
    read(p, T0 + HOUR + 60, 9)  # late, into an hour slot never used: counted in no bucket
    read(p, T0 + 5 * HOUR, 3)
    p.flush()
    assert p.window_24h(T0 + 5 * HOUR)[W_RECORDS] == 8.0  # the late 9 counted nowhere
    p.mark_reported(T0 + 5 * HOUR + 1)
    h0 = int(T0 // HOUR)
    assert list(p.wb) == [h0 + 3, h0 + 5]  # the two hours it was active in, nothing else
    assert len({id(v) for v in p.wv}) == 2
    assert not q.wb and not q.wv
    assert q.window_24h(T0 + 5 * HOUR)[W_RECORDS] == 0.0


def test_hour_buckets_replace_the_same_hour_of_an_earlier_day_in_slot_order() -> None:
    p = ActorProfile("customer_user", "t-a", "UTC", T0)
    h0 = int(T0 // HOUR)
    for hours in (5, 2, 9, 26):  # 26: the slot of hour 2, a day later
        read(p, T0 + hours * HOUR + 60, 1)
    assert h0 % 24 == 0  # T0 is midnight UTC: slot i is hour i of the day
    assert list(p.wb) == [h0 + 26, h0 + 5, h0 + 9]
    again = ActorProfile.from_dict(json.loads(json.dumps(p.to_dict())))
    assert list(again.wb) == list(p.wb) and again.to_dict() == p.to_dict()
    assert ActorProfile.unpack(p.pack()).to_dict() == p.to_dict()


def test_what_new_profiles_share_until_they_learn_is_never_written() -> None:
    """A new profile shares its empty rings and zero vectors with every other new one (that is
    what keeps it small); learning, packing or a report must give it its own first."""
    fresh = ActorProfile("customer_user", "t-b", "UTC", T0).to_dict()
    p = ActorProfile("customer_user", "t-a", "UTC", T0)
    q = ActorProfile.unpack(ActorProfile("customer_user", "t-b", "UTC", T0).pack())
    working_weeks(p, 21)
    read(p, T0 + 22 * DAY + 9 * HOUR, 5, session="s2", action="export")
    p.mark_reported(T0 + 22 * DAY + 9 * HOUR + 1)
    p = ActorProfile.unpack(p.pack())
    working_weeks(p, 28)
    peer = PeerProfile()
    peer.observe_day(p, 0, [(8, p.wv[0])], 3.0)
    p.flush()
    assert all(p.to_dict()["rings"]) and p.to_dict()["spread"][0] and any(p.to_dict()["hours"])
    assert ActorProfile("customer_user", "t-b", "UTC", T0).to_dict() == fresh
    assert q.to_dict() == fresh


def test_a_report_marks_the_hour_as_it_stood_when_judged() -> None:
    """A batch folds on past the judged moment before its findings are made: marking what was
    reported must not take in events of the same hour that came after."""
    judged_then = ActorProfile("customer_user", "t-1", "UTC", T0)
    later = ActorProfile("customer_user", "t-1", "UTC", T0)
    for p in (judged_then, later):
        p.observe_access(
            T0 + 60, int((T0 + 60) // HOUR), "read", "invoice", "financial", 40, None, None, None, None, False, keyed
        )
    snapshot = judged_then.hour_so_far(T0 + 60)
    for p in (judged_then, later):
        p.observe_access(
            T0 + 600, int((T0 + 600) // HOUR), "read", "invoice", "financial", 500, None, None, None, None, False, keyed
        )
    judged_then.mark_reported(T0 + 60, snapshot)
    later.mark_reported(T0 + 60)
    # The 500 records read after the judgement still count in the 24-hour window.
    assert judged_then.window_24h(T0 + 700)[W_RECORDS] == 500
    assert later.window_24h(T0 + 700)[W_RECORDS] == 0


def _workday(p: ActorProfile, d: int, per_hour: int, records: int = 5, action: str = "read") -> None:
    for h in range(8, 16):
        for k in range(per_hour):
            read(p, T0 + d * DAY + h * HOUR + 60 * (k + 1), records, action=action)


def _cusum_at_end_of(p: ActorProfile, d: int) -> float:
    now = T0 + d * DAY + 15 * HOUR + 3000
    p.flush()
    return p.volume_cusum(now, p.window_24h(now))


def test_one_day_far_above_usual_is_caught_the_same_day() -> None:
    # Must: sixteen times the usual sensitive reads in ordinary sessions, spread over the day.
    p = ActorProfile("customer_user", "t-a", "UTC", T0)
    working_weeks(p, 14)
    _workday(p, 14, per_hour=64)
    assert _cusum_at_end_of(p, 14) >= CUSUM_ALARM
    # Must not: a day like the others.
    q = ActorProfile("customer_user", "t-a", "UTC", T0)
    working_weeks(q, 14)
    _workday(q, 14, per_hour=4)
    assert _cusum_at_end_of(q, 14) == 0.0


def test_a_month_end_export_is_not_slow_exfiltration() -> None:
    # Must not: the same twelvefold volume exported at month-end close (exports are the bulk
    # rules' business; slow exfiltration reads).
    p = ActorProfile("customer_user", "t-a", "UTC", T0)
    working_weeks(p, 14)
    _workday(p, 14, per_hour=4)
    _workday(p, 14, per_hour=44, action="export")
    assert _cusum_at_end_of(p, 14) == 0.0


def test_days_well_above_usual_accumulate_and_usual_days_drain_the_test() -> None:
    p = ActorProfile("customer_user", "t-a", "UTC", T0)
    working_weeks(p, 14)
    _workday(p, 14, per_hour=16)
    first = _cusum_at_end_of(p, 14)
    _workday(p, 15, per_hour=16)
    second = _cusum_at_end_of(p, 15)
    assert 0.0 < first < second and p.cusum > 0.0  # day 14 closed into the running sum
    for d in (16, 17, 18):
        _workday(p, d, per_hour=4)
    _workday(p, 21, per_hour=4)
    assert p.cusum < second - 1.5  # back to usual: each usual day drains the sum
    # The running sum survives a restart.
    assert ActorProfile.from_dict(json.loads(json.dumps(p.to_dict()))).cusum == p.cusum


def test_a_new_hire_is_not_tested_against_a_history_it_does_not_have() -> None:
    # Must not: a first week growing from light to full days (no usual day yet to exceed).
    p = ActorProfile("customer_user", "t-a", "UTC", T0)
    for d in range(5):
        _workday(p, d, per_hour=1 + 3 * d)
    assert p.cusum == 0.0 and _cusum_at_end_of(p, 4) < CUSUM_ALARM


def test_the_peer_group_counts_who_takes_up_each_resource_once() -> None:
    peer = PeerProfile()
    for i, resource in enumerate(("customer", "customer", "payroll")):
        p = ActorProfile("customer_user", "t-a", "UTC", T0)
        p._peer = peer
        for d in range(3):  # three days each: a member counts on its first day only
            read(p, T0 + d * DAY + 9 * HOUR + i, resource=resource)
        read(p, T0 + 3 * DAY + 9 * HOUR, resource=resource)  # closes day 2
    assert peer.users_of("customer") == 2 and peer.users_of("payroll") == 1 and peer.users_of("ledger") == 0
    assert PeerProfile.from_dict(json.loads(json.dumps(peer.to_dict()))).users_of("customer") == 2
