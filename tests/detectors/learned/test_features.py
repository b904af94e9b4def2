"""Pure feature code: prefixes, time zones, quantiles, hour surprise and the window row."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from breachwatch.core.ids import network_prefix
from breachwatch.detectors.learned.features import (
    COL,
    DAY,
    FEATURE_NAMES,
    HOUR,
    N_FEATURES,
    hour_surprises,
    local_hour,
    log_ratio,
    provider_prefix,
    quantile,
    sorted_quantile,
    window_row,
    zone_for_jurisdiction,
)
from breachwatch.detectors.learned.profiles import ActorProfile, PeerProfile

T0 = datetime(2026, 11, 2, tzinfo=UTC).timestamp()  # a Monday


def keyed(kind: str, value: str) -> str:
    return f"{kind}:{value}"


def test_network_prefix_groups_addresses_by_24_and_48() -> None:
    assert network_prefix("185.220.101.5") == "185.220.101.0/24"
    assert network_prefix("2001:db8:abcd:12::1") == "2001:db8:abcd::/48"
    assert network_prefix("2001:db8::1") == "2001:0db8:0000::/48"
    assert network_prefix(None) is None
    assert network_prefix("not-an-address") is None


def test_provider_prefix_is_the_16_or_32() -> None:
    assert provider_prefix("185.220.101.5") == "185.220.0.0/16"
    assert provider_prefix("2001:db8:abcd:12::1") == "2001:db8::/32"
    assert provider_prefix("") is None


@given(st.text(max_size=60))
def test_prefixes_never_raise_on_arbitrary_text(text: str) -> None:
    network_prefix(text)
    provider_prefix(text)


def test_jurisdiction_maps_to_the_zone_people_work_in() -> None:
    assert zone_for_jurisdiction("DE") == "Europe/Berlin"
    assert zone_for_jurisdiction("PK") == "Asia/Karachi"
    assert zone_for_jurisdiction("US-CA") == "America/Los_Angeles"
    assert zone_for_jurisdiction("US") == "America/New_York"
    assert zone_for_jurisdiction("XX") == "UTC"
    assert zone_for_jurisdiction(None) == "UTC"


def test_local_hour_follows_daylight_saving() -> None:
    summer = datetime(2026, 7, 1, 12, tzinfo=UTC).timestamp()
    winter = datetime(2026, 1, 15, 12, tzinfo=UTC).timestamp()
    assert local_hour(summer, "Europe/Berlin") == 14
    assert local_hour(winter, "Europe/Berlin") == 13
    assert local_hour(winter, "Asia/Kolkata") == 17  # +05:30: 17:30 local
    assert local_hour(winter, "UTC") == 12


def test_quantiles_interpolate() -> None:
    assert quantile([], 0.95) == 0.0
    assert quantile([5.0], 0.5) == 5.0
    assert quantile([3.0, 1.0, 2.0, 4.0], 0.5) == 2.5
    assert sorted_quantile([0.0, 10.0], 0.95) == 9.5


def test_log_ratio_counts_doublings_above_baseline() -> None:
    assert log_ratio(10, 20) == 0.0
    assert log_ratio(63, 15) == 2.0
    assert log_ratio(0, 0) == 0.0


def test_hour_surprise_is_low_in_working_hours_and_high_at_night() -> None:
    hours = [0.0] * 24
    for h in range(9, 17):
        hours[h] = 50.0
    s = hour_surprises(hours)
    assert s[11] == 0.0
    assert s[3] > 4.0  # the middle of the night
    assert s[3] > s[18] > s[12]  # just after work is odd, but less than 3 a.m.
    # Someone who works around the clock is never surprising.
    assert max(hour_surprises([10.0] * 24)) < 0.01


def _profile_with_history(days: int = 10, zone: str = "Europe/Berlin") -> ActorProfile:
    """A user reading ~10 personal records an hour from DE, 09-16 local, on workdays."""
    p = ActorProfile("customer_user", "t-a", zone, T0)
    for d in range(days):
        if d % 7 in (5, 6):
            continue
        for h in range(8, 15):  # 09-16 Berlin in winter
            ts = T0 + d * DAY + h * HOUR + 60
            p.observe_auth(ts, int(ts // HOUR), "login", True, "91.64.10.7", "DE", "Firefox/120", None, keyed)
            for k in range(5):
                t = ts + 60 * (k + 1)
                p.observe_access(
                    t,
                    int(t // HOUR),
                    "read",
                    "customer",
                    "personal",
                    2,
                    "91.64.10.7",
                    "DE",
                    "Firefox/120",
                    f"s{d}",
                    False,
                    keyed,
                )
    p.flush()
    return p


def test_window_row_is_quiet_for_ordinary_work() -> None:
    p = _profile_with_history()
    now = T0 + 10 * DAY + 10 * HOUR  # the next working day (a Thursday), working hours
    t = now
    p.observe_auth(t, int(t // HOUR), "login", True, "91.64.10.7", "DE", "Firefox/120", None, keyed)
    p.observe_access(
        t + 5, int(t // HOUR), "read", "customer", "personal", 3, "91.64.10.7", "DE", "Firefox/120", "s-x", False, keyed
    )
    p.flush()
    row = window_row(p, None, t + 5)
    assert len(row) == N_FEATURES == len(FEATURE_NAMES)
    for name in ("new_country", "new_network", "new_agent", "volume_1h_vs_own", "failed_logins_1h", "dormancy"):
        assert row[COL[name]] == 0.0, name


def test_window_row_flags_a_night_session_from_a_new_country_and_device() -> None:
    p = _profile_with_history()
    peer = PeerProfile(since=T0)
    peer.observe_country("DE", T0)
    t = T0 + 14 * DAY + 1 * HOUR  # 02:00 Berlin
    h = int(t // HOUR)
    p.observe_auth(t, h, "login", False, "185.220.101.5", "NL", "curl/8", None, keyed)
    p.observe_auth(t + 10, h, "login", True, "185.220.101.5", "NL", "curl/8", None, keyed)
    for k in range(5):
        p.observe_access(
            t + 20 + k,
            h,
            "export",
            "customer",
            "personal",
            900,
            "185.220.101.5",
            "NL",
            "curl/8",
            "s-evil",
            False,
            keyed,
        )
    p.flush()
    row = window_row(p, peer, t + 30)
    assert row[COL["new_country"]] == 2.0  # new for the user and for its peers
    assert row[COL["new_network"]] == 2.0  # a new provider block
    assert row[COL["new_agent"]] == 1.0
    assert row[COL["failed_logins_1h"]] == 1.0  # log2(1 + 1)
    assert row[COL["offhour"]] > 2.0
    assert row[COL["novel_location_sensitive"]] > 5.0  # 4,500 records against a 95th pct of ~10
    assert row[COL["export_24h_vs_own"]] > 5.0


def test_window_row_measures_role_change_then_new_sensitive_reads() -> None:
    p = _profile_with_history()
    t = T0 + 14 * DAY + 10 * HOUR
    h = int(t // HOUR)
    p.observe_auth(t, h, "role_change", True, "91.64.10.7", "DE", "Firefox/120", ("clerk", "admin"), keyed)
    p.observe_access(
        t + 60, h, "read", "api_key", "credentials", 40, "91.64.10.7", "DE", "Firefox/120", "s", False, keyed
    )
    p.flush()
    row = window_row(p, None, t + 60)
    assert row[COL["role_change_24h"]] == 1.0
    assert row[COL["reads_after_role_change"]] == log_ratio(40, 0) or row[COL["reads_after_role_change"]] > 5.0


def test_window_row_sees_dormancy() -> None:
    p = _profile_with_history(days=5)
    t = T0 + 40 * DAY + 10 * HOUR
    p.observe_auth(t, int(t // HOUR), "login", True, "91.64.10.7", "DE", "Firefox/120", None, keyed)
    p.flush()
    row = window_row(p, None, t)
    assert row[COL["dormancy"]] > 3.0  # ~36 idle days against a usual break of a few days
