"""Pure feature code: network prefixes, tenant time zones, quantiles, surprise, and the
windowed feature row the learned models score.

Nothing here mutates its inputs or touches I/O, so every function is testable with plain
values. The feature row is built from an actor's profile *after* the events of a batch were
folded in (see ``detectors.profiles``); every feature is oriented so that larger means more
unusual, which keeps the models' one score direction (higher is worse) natural.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from breachwatch.core.ids import network_prefix

if TYPE_CHECKING:  # pragma: no cover - import for type hints only
    from breachwatch.detectors.learned.profiles import ActorProfile, PeerProfile, Places

HOUR = 3600
DAY = 86400
# The smallest change in records per day that can count as a rise in background volume: a
# few pages of a list view. Below it, "five times more" is noise, not exfiltration.
MIN_SLACK_RECORDS = 50.0
# Active days of history before an actor's daily background volume has a usable median.
MIN_BACKGROUND_DAYS = 7
# The sequential test of slow exfiltration (see ``volume_z``): each active day adds how far its
# background volume stands above the actor's usual day, in robust standard deviations of its
# own days, less an allowance; the sum never falls below 0. Days at the usual level drain it,
# so only volume well above usual, day after day or one day far out, keeps it growing.
CUSUM_ALLOWANCE = 0.75
# The smallest spread of an actor's days the test assumes (log2 units: a day 1.4x another is
# half a deviation): an actor whose days were all alike must not make one busier day extreme.
CUSUM_MIN_SCALE = 0.5
# History an actor (or a peer group) needs before "new for it" means something.
MATURE_DAYS = 3

# Counters of an actor's hourly window bucket (see ``detectors.profiles``).
W_EVENTS = 0
W_RECORDS = 1
W_SENSITIVE = 2
W_EXPORT = 3
W_OFFHOUR = 4  # the hour surprise of the bucket's local hour (a max, not a sum)
W_NOVEL_SENSITIVE = 5  # sensitive or exported records read from a location new for the actor
W_NEW_RESOURCE = 6  # records of resource types or sensitivities new for the actor
W_FAILED = 7
W_ATTEMPTS = 8
W_AFTER_ROLE = 9  # records of new resources/sensitivities within a day of a role change
# The largest hour surprise of events from a new location, judged in the home time zone and
# in the location's own, whichever is kinder: a traveller works the destination's day.
W_OFFHOUR_NOVEL = 10
W_SENSITIVE_READ = 11  # sensitive records read (not exported): what slow exfiltration takes
W_CROWN_AFTER_ROLE = 12  # of W_AFTER_ROLE, the payment and credentials records
W_SIZE = 13
# Index of the busiest hour's sensitive reads in ``ActorProfile.window_24h`` (after the counters).
W_PEAK = W_SIZE

# Names of the window features, in column order. Each is >= 0 and grows with how unusual the
# actor's last hour (or day) is compared with its own history and its peers.
FEATURE_NAMES: tuple[str, ...] = (
    "volume_1h_vs_own",  # log2 of last-hour records over the actor's 95th-percentile hour
    "volume_24h_vs_own",  # log2 of last-24h records over the actor's 95th-percentile day
    "volume_24h_spread_vs_own",  # today's records without the busiest hour over the usual such day
    "volume_3d_spread_vs_own",  # the same over the last three active days
    "elevated_days",  # consecutive active days to today with background well above usual
    "volume_cusum",  # sequential test (CUSUM) of daily background against own spread, today so far
    "volume_1h_vs_peers",  # log2 of last-hour records over the peer group's 99th-percentile hour
    "sensitive_1h_vs_own",  # log2 of last-hour sensitive records over the actor's 95th-percentile
    "sensitive_share_1h",  # share of last-hour records that are personal/financial/payment/credentials
    "new_country",  # 0: none; 1: a country new for the actor; 2: new for its peers as well
    "new_network",  # 1: a /24 (/48) new for the actor in the last day; 2: its /16 (/32) too
    "new_agent",  # 1 if a user agent first seen for the actor in the last day
    "offhour",  # bits of surprise of the most unusual local hour of activity in the last hour
    "offhour_new_location",  # the same for events from a new location, in the kinder time zone
    "novel_location_sensitive",  # log2 of sensitive/exported records from a new location over the 95th pct
    "new_resource",  # log2(1 + records of resource types or sensitivities new for the actor)
    "failed_logins_1h",  # log2(1 + failed logins in the last hour)
    "failed_ratio_1h",  # failed / attempted logins in the last hour
    "role_change_24h",  # 1 if the actor's roles changed in the last 24 h
    "reads_after_role_change",  # log2(1 + records of new sensitivities/resources since the change)
    "crown_jewels_after_role_change",  # log2(1 + of those, payment and credentials records)
    "role_change_self",  # 1 if the role change came from the actor's own device and network
    "dormancy",  # log2(1 + idle days before the current burst over the actor's usual gap)
    "unseen_for",  # first day of an account its peer group has been watched without: log2(1 + days/3)
    "offhour_vs_peers",  # hour surprise of the current local hour for the actor's peer group
    "new_network_for_peers",  # 1 if a provider block used in the last hour is new for the peer group
    "country_switch_1h",  # 1 if two or more countries in the last hour
    "export_24h_vs_own",  # log2 of last-24h exported records over the actor's 95th-percentile export hour
    "distinct_resources_1h",  # resource types touched in the last hour
    "maturity",  # log2(1 + days of history): lets the population model tell new from known
    "is_service",
    "is_staff",
)
N_FEATURES = len(FEATURE_NAMES)
COL: dict[str, int] = {name: i for i, name in enumerate(FEATURE_NAMES)}

# Countries whose jurisdiction spans time zones: the zone most of the population works in,
# and the subdivisions that differ from it. zone.tab lists one country's zones in no order
# of importance, so a bare country code would otherwise pick an arbitrary one.
_PRINCIPAL_ZONE: dict[str, str] = {
    "US": "America/New_York",
    "CA": "America/Toronto",
    "AU": "Australia/Sydney",
    "BR": "America/Sao_Paulo",
    "MX": "America/Mexico_City",
    "RU": "Europe/Moscow",
    "CN": "Asia/Shanghai",
    "ID": "Asia/Jakarta",
    "KZ": "Asia/Almaty",
    "AR": "America/Argentina/Buenos_Aires",
    "ES": "Europe/Madrid",
    "PT": "Europe/Lisbon",
    "DE": "Europe/Berlin",
    "CL": "America/Santiago",
    "EC": "America/Guayaquil",
    "NZ": "Pacific/Auckland",
    "MY": "Asia/Kuala_Lumpur",
    "UA": "Europe/Kyiv",
}
_SUBDIVISION_ZONE: dict[str, str] = {
    **{
        f"US-{s}": "America/Chicago"
        for s in ["AL", "AR", "IA", "IL", "KS", "LA", "MN", "MO", "MS", "ND", "NE", "OK", "SD", "TN", "TX", "WI"]
    },
    **{f"US-{s}": "America/Denver" for s in ["CO", "MT", "NM", "UT", "WY", "ID"]},
    "US-AZ": "America/Phoenix",
    **{f"US-{s}": "America/Los_Angeles" for s in ["CA", "NV", "OR", "WA"]},
    "US-AK": "America/Anchorage",
    "US-HI": "Pacific/Honolulu",
    "CA-BC": "America/Vancouver",
    "CA-AB": "America/Edmonton",
    "CA-SK": "America/Regina",
    "CA-MB": "America/Winnipeg",
    "CA-NS": "America/Halifax",
    "CA-NB": "America/Moncton",
    "CA-NL": "America/St_Johns",
    "AU-WA": "Australia/Perth",
    "AU-SA": "Australia/Adelaide",
    "AU-NT": "Australia/Darwin",
    "AU-QLD": "Australia/Brisbane",
    "AU-VIC": "Australia/Melbourne",
    "AU-TAS": "Australia/Hobart",
}


@lru_cache(maxsize=1)
def _zone_table() -> dict[str, str]:
    """Country code -> first zone listed for it in the system's zone.tab (empty if absent)."""
    table: dict[str, str] = {}
    for candidate in ("/usr/share/zoneinfo/zone.tab", "/usr/share/zoneinfo/zone1970.tab"):
        path = Path(candidate)
        if not path.exists():
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line or line.startswith("#"):
                continue
            parts = line.split("\t")
            if len(parts) >= 3:
                for code in parts[0].split(","):
                    table.setdefault(code, parts[2])
        break
    return table


@lru_cache(maxsize=1024)
def zone_for_jurisdiction(jurisdiction: str | None) -> str:
    """IANA time zone for a jurisdiction code ("DE", "US-CA"); "UTC" when unknown."""
    if not jurisdiction:
        return "UTC"
    code = jurisdiction.upper()
    name = _SUBDIVISION_ZONE.get(code) or _PRINCIPAL_ZONE.get(code[:2]) or _zone_table().get(code[:2])
    if name is None:
        return "UTC"
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return "UTC"
    return name


@lru_cache(maxsize=1024)
def _zoneinfo(name: str) -> ZoneInfo:
    # ZoneInfo's own cache keeps only a handful of zones strongly; a customer base spans more.
    return ZoneInfo(name)


@lru_cache(maxsize=65536)
def utc_offset(zone: str, epoch_hour: int) -> int:
    """Seconds the zone is ahead of UTC during the UTC hour ``epoch_hour`` (cached: DST
    changes fall on hour boundaries, so one look-up per zone and hour is exact)."""
    if zone == "UTC":
        return 0
    moment = datetime.fromtimestamp(epoch_hour * HOUR, tz=UTC).astimezone(_zoneinfo(zone))
    off = moment.utcoffset() or timedelta(0)
    return int(off.total_seconds())


def local_hour(epoch: float, zone: str) -> int:
    """Hour of day (0-23) at ``epoch`` seconds in ``zone``."""
    e = int(epoch)
    return ((e + utc_offset(zone, e // HOUR)) // HOUR) % 24


def provider_prefix(ip: str | None) -> str | None:
    """The /16 of an IPv4 address or the /32 of an IPv6 one: a coarse stand-in for the
    provider's block. Mobile and cloud addresses wander between /24s inside it."""
    net = network_prefix(ip)
    if net is None:
        return None
    if net.endswith("::/48"):
        return ":".join(net[:-5].split(":")[:2]) + "::/32"
    a, b, _rest = net.split(".", 2)
    return f"{a}.{b}.0.0/16"


def quantile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0-1) of ``values`` by linear interpolation; 0.0 for no values."""
    return sorted_quantile(sorted(values), q)


def sorted_quantile(s: Sequence[float], q: float) -> float:
    """``quantile`` of values already in ascending order."""
    n = len(s)
    if n == 0:
        return 0.0
    pos = q * (n - 1)
    lo = int(pos)
    hi = min(lo + 1, n - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def volume_z(background: float, days: Sequence[float], slack: float) -> float:
    """How far a day's background volume stands above the ``days`` before it, in robust
    standard deviations of log2(volume + slack), at least ``CUSUM_MIN_SCALE``. The slack (a
    few pages) keeps a few more records than nothing from counting as a leap."""
    if not days:
        return 0.0
    return volume_z_on(background, slack, volume_scale(days, slack))


def volume_scale(days: Sequence[float], slack: float) -> tuple[float, float]:
    """The centre and spread ``volume_z`` measures a day against (``days`` not empty): they
    change only when a day closes, so a profile keeps them between its feature rows."""
    logs = sorted(math.log2(max(d, 0.0) + slack) for d in days)
    center = sorted_quantile(logs, 0.5)
    # The spread from the middle half (MAD) and from the upper tail (the 90th percentile is
    # 1.28 deviations up): daily volumes of people who read a few lists a day are skewed, and
    # their busy days, not their typical ones, say what a busy day is.
    mad = 1.4826 * sorted_quantile(sorted(abs(x - center) for x in logs), 0.5)
    tail = (sorted_quantile(logs, 0.9) - center) / 1.2816
    return center, max(mad, tail, CUSUM_MIN_SCALE)


def volume_z_on(background: float, slack: float, scale: tuple[float, float]) -> float:
    """``volume_z`` against a ``volume_scale`` worked out before."""
    return (math.log2(max(background, 0.0) + slack) - scale[0]) / scale[1]


def cusum_step(total: float, z: float) -> float:
    """The sequential sum after a day scoring ``z`` (see ``CUSUM_ALLOWANCE``)."""
    return max(0.0, total + z - CUSUM_ALLOWANCE)


def log_ratio(value: float, baseline: float) -> float:
    """log2((value + 1) / (baseline + 1)) floored at 0: doublings above the baseline."""
    if value <= baseline:
        return 0.0
    return math.log2((value + 1.0) / (baseline + 1.0))


def surprise_bits(count: float, total: float, prior: float, strength: float = 4.0) -> float:
    """-log2 of a smoothed probability: ``count`` of ``total`` observations, shrunk towards
    ``prior`` with ``strength`` pseudo-observations (a new user borrows the peers' habits)."""
    p = (count + strength * prior) / (total + strength)
    return -math.log2(max(p, 1e-9))


def hour_surprises(hours: Sequence[float], prior: Sequence[float] | None = None) -> list[float]:
    """Surprise (bits) of activity at each local hour, from an hour histogram smoothed towards
    ``prior`` (flat when None). The histogram's own entropy is subtracted, so that people who
    work at all hours do not look odd at any of them: 0 means "a typical hour for this actor"."""
    # People keep hours, not minutes: an hour next to one's usual ones is a little unusual,
    # the middle of the night very. A circular kernel spreads each count to its neighbours.
    hours = [
        hours[h] + 0.5 * (hours[h - 1] + hours[(h + 1) % 24]) + 0.25 * (hours[h - 2] + hours[(h + 2) % 24])
        for h in range(24)
    ]
    total = float(sum(hours))
    if prior is not None and sum(prior) > 0:
        ptot = float(sum(prior))
        base = [(c + 0.5) / (ptot + 12.0) for c in prior]
    else:
        base = [1.0 / 24.0] * 24
    strength = 4.0
    probs = [(hours[h] + strength * base[h]) / (total + strength) for h in range(24)]
    norm = sum(probs)
    probs = [p / norm for p in probs]
    typical = -sum(p * math.log2(p) for p in probs if p > 0)
    return [max(0.0, -math.log2(max(p, 1e-12)) - typical) for p in probs]


def country_novelty(
    profile: ActorProfile, peer: PeerProfile | None, now: float, mature: bool, places: Places | None = None
) -> float:
    """0: no new country in the last hour; 1: one new for the actor; 2: new for its peers too.
    An actor without enough history only gets the peer-level signal. ``places``: the
    profile's ``places(now)``, if read already."""
    if places is None:
        recent = profile.new_countries(now) if mature else profile.countries_used(now)
    else:
        recent = places.new_countries if mature else places.used_countries
    if not recent:
        return 0.0
    if peer is not None and any(peer.country_new(c, now) for c in recent):
        return 2.0
    return 1.0 if mature else 0.0


def window_row(
    profile: ActorProfile,
    peer: PeerProfile | None,
    now: float,
    peer_ready: bool = True,
) -> list[float]:
    """The feature row of one actor at event time ``now`` (epoch seconds), from its profile.

    Reads the profile only. An actor with little history (``profile.mature(now)`` false) is
    compared with its peers instead of itself, and gets no "new for this actor" features:
    for someone seen for a day, everything is new.
    """
    w1 = profile.window_1h(now)
    w24 = profile.window_24h(now)
    mature = profile.mature(now)
    places = profile.places(now)
    recs_1h = w1[W_RECORDS]
    sens_1h = w1[W_SENSITIVE]
    peer_p99 = peer.hour_p99 if (peer is not None and peer_ready) else 0.0

    c = COL
    row = [0.0] * N_FEATURES
    if mature:
        # Against the actor's own habits only once it has some: for an actor seen for a
        # day, every volume is "new", and only the peers say what is a lot.
        row[c["volume_1h_vs_own"]] = log_ratio(recs_1h, profile.hour_p95)
        row[c["volume_24h_vs_own"]] = log_ratio(w24[W_RECORDS], profile.day_p95)
        if len(profile.spread_ring) >= MIN_BACKGROUND_DAYS:
            # Background volume is compared with one usual busy hour of slack on each side:
            # an actor whose days are mostly one burst has a background near 0, and one more
            # ordinary hour must not look like a hundredfold rise. The peers' usual day sets
            # the floor too: rising to what colleagues read every day is not exfiltration.
            # (And the background's median needs a week or so of active days to mean anything.)
            slack = max(profile.hour_p95, MIN_SLACK_RECORDS, peer.spread_p50 if peer is not None else 0.0)
            row[c["volume_24h_spread_vs_own"]] = log_ratio(
                profile.background_volume(now, 1, w24) + slack, profile.spread_p50 + slack
            )
            row[c["volume_3d_spread_vs_own"]] = log_ratio(
                profile.background_volume(now, 3, w24) + 3.0 * slack, 3.0 * (profile.spread_p50 + slack)
            )
            row[c["elevated_days"]] = float(profile.elevated_days(now, w24, slack))
            row[c["volume_cusum"]] = profile.volume_cusum(now, w24)
        row[c["sensitive_1h_vs_own"]] = log_ratio(sens_1h, profile.sens_p95)
        row[c["new_network"]] = places.network_novelty
        row[c["new_agent"]] = 1.0 if places.new_agent else 0.0
        row[c["offhour_new_location"]] = w1[W_OFFHOUR_NOVEL]
        row[c["novel_location_sensitive"]] = log_ratio(w1[W_NOVEL_SENSITIVE], profile.sens_p95)
        row[c["new_resource"]] = math.log2(1.0 + w24[W_NEW_RESOURCE])
        if w24[W_EXPORT] > 0:
            row[c["export_24h_vs_own"]] = log_ratio(w24[W_EXPORT], profile.export_p95)
    if peer_p99 > 0:
        row[c["volume_1h_vs_peers"]] = log_ratio(recs_1h, peer_p99)
    row[c["sensitive_share_1h"]] = sens_1h / recs_1h if recs_1h > 0 else 0.0
    row[c["new_country"]] = country_novelty(profile, peer, now, mature, places)
    row[c["offhour"]] = w1[W_OFFHOUR]
    attempts = w1[W_ATTEMPTS]
    row[c["failed_logins_1h"]] = math.log2(1.0 + w1[W_FAILED])
    row[c["failed_ratio_1h"]] = w1[W_FAILED] / attempts if attempts > 0 else 0.0
    if profile.role_changed_within(now, DAY):
        row[c["role_change_24h"]] = 1.0
        row[c["reads_after_role_change"]] = math.log2(1.0 + w24[W_AFTER_ROLE])
        row[c["crown_jewels_after_role_change"]] = math.log2(1.0 + w24[W_CROWN_AFTER_ROLE])
        row[c["role_change_self"]] = 1.0 if profile.role_self else 0.0
    row[c["dormancy"]] = profile.dormancy(now)
    if peer is not None and peer_ready:
        watched = peer.watched_days(now)
        if profile.history_days(now) < 1.0 and watched >= MATURE_DAYS:
            # Seen for the first time although its peers have been watched for days: an
            # account that was idle for longer than the history goes back (or a new hire).
            row[c["unseen_for"]] = math.log2(1.0 + watched / 3.0)
        if watched >= MATURE_DAYS:
            row[c["offhour_vs_peers"]] = peer.hour_surp[profile.cur_lh]
            if any(peer.provider_new(k, now) for k in places.used_providers):
                row[c["new_network_for_peers"]] = 1.0
    row[c["country_switch_1h"]] = 1.0 if len(places.used_countries) >= 2 else 0.0
    row[c["distinct_resources_1h"]] = float(places.resources)
    row[c["maturity"]] = math.log2(1.0 + profile.history_days(now))
    row[c["is_service"]] = 1.0 if profile.actor_type == "service" else 0.0
    row[c["is_staff"]] = 1.0 if profile.actor_type == "staff" else 0.0
    return row
