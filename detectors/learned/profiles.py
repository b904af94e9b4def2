"""Per-actor and per-peer-group behaviour profiles, learned from history and updated online.

An ``ActorProfile`` holds what is normal for one actor: local hours of activity (in the time
zone of the actor's tenant), countries, network prefixes and user agents with when each was
first and last seen, resource types and sensitivities, records per hour / day / session,
hourly exports, the daily background of sensitive reads, roles, idle gaps, and hourly window
counters for the last 24 hours. A ``PeerProfile`` holds the habits of a peer group (tenant
and actor type): countries, provider blocks, local hours, hourly and daily volumes.

Everything is bounded (capped tables, rings, a halving hour histogram) and round-trips
exactly through plain JSON (``to_dict`` / ``from_dict``), which is how profiles survive a
restart or a rebalance: the detector's ``state()`` carries them with the checkpointed
offsets. Network prefixes and user agents are stored as keyed digests, never raw, so a
profile can also travel inside a model file.
"""

from __future__ import annotations

import hashlib
import marshal
import math
import sys
from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple, TypeAlias

from breachwatch.core.ids import network_prefix
from breachwatch.detectors.learned.features import (
    DAY,
    HOUR,
    MATURE_DAYS,
    MIN_BACKGROUND_DAYS,
    MIN_SLACK_RECORDS,
    W_AFTER_ROLE,
    W_ATTEMPTS,
    W_CROWN_AFTER_ROLE,
    W_EVENTS,
    W_EXPORT,
    W_FAILED,
    W_NEW_RESOURCE,
    W_NOVEL_SENSITIVE,
    W_OFFHOUR,
    W_OFFHOUR_NOVEL,
    W_RECORDS,
    W_SENSITIVE,
    W_SENSITIVE_READ,
    W_SIZE,
    cusum_step,
    hour_surprises,
    local_hour,
    provider_prefix,
    quantile,
    volume_scale,
    volume_z,
    volume_z_on,
    zone_for_jurisdiction,
)
from breachwatch.detectors.learned.squeeze import Squeezer

# A keyed hash: (what, value) -> digest. Profiles hold digests of networks and user agents.
Keyed = Callable[[str, str], str]

SENSITIVE = frozenset({"personal", "financial", "payment", "credentials"})
# What an escalated account goes for first: secrets and payment data.
CROWN_JEWELS = frozenset({"payment", "credentials"})


class Places(NamedTuple):
    """The tables as the window features read them at a moment (``ActorProfile.places``)."""

    used_countries: list[str]  # countries used in the last hour, in table order
    new_countries: list[str]  # of those, the ones first seen in the last day
    used_providers: list[str]  # provider blocks (digests) used in the last hour
    network_novelty: float  # as ``ActorProfile.network_novelty``
    new_agent: bool  # a user agent first seen in the last day, used in the last hour
    resources: int  # resource types used in the last hour


class Live:
    """Read the current hour's counters as they stand (the default of the readers that take a
    ``judged`` hour: ``window_1h``, ``window_24h``, ``background_volume``)."""


LIVE = Live()

# Caps that keep one actor's profile small whatever it does.
CAP_COUNTRIES = 16
CAP_NETWORKS = 32
CAP_PROVIDERS = 16
CAP_AGENTS = 12
CAP_RESOURCES = 48
CAP_SENSITIVITIES = 8
CAP_RING_HOURS = 96
CAP_RING_DAYS = 35
CAP_RING_SMALL = 32
CAP_PEER_COUNTRIES = 64
CAP_PEER_PROVIDERS = 256
CAP_PEER_RING = 512
CAP_PEER_RESOURCES = 96
HOURS_HALVE_AT = 2000.0

# Kinds of notable things (bits of ``ActorProfile.notable_bits``).
N_PLACE = 1  # activity from a country or provider block new for the actor
N_PLACE_DATA = 2  # sensitive or exported data read from there
N_FAILED = 4  # failed logins
N_ROLE = 8  # roles gained
N_NEW_DATA = 16  # a data type new for the actor
N_CROWN = 32  # payment or credentials data new for the actor after a role change
N_ODD_HOUR = 64  # activity at an hour the actor does not keep
N_IDLE = 128  # back after an unusually long idle stretch

# A location, agent or resource first seen this recently still counts as new.
NOVEL_FOR = DAY


def _appended(ring: array[float], values: Iterable[float], cap: int) -> array[float]:
    """``ring`` with ``values`` appended, keeping its last ``cap`` values; the shared empty
    ring (``_EMPTY``) is never written: it is replaced by a ring of the profile's own."""
    if ring is _EMPTY:
        ring = floats()
    ring.extend(values)
    del ring[:-cap]
    return ring


def _ring_in(values: list[float]) -> array[float]:
    return floats(map(float, values)) if values else _EMPTY


def floats(values: Iterable[float] = ()) -> array[float]:
    """A packed array of doubles: 8 bytes a value, where a list holds a pointer to a 24-byte
    float object (32 bytes), for the same values to the last bit."""
    return array("d", values)


# A table maps a key (a country, a digest, a data type) to its [count, first seen, last seen].
Table: TypeAlias = "dict[str, array[float]]"  # array is generic only to type checkers before 3.12


def _new_entry(count: float, ts: float) -> array[float]:
    return array("d", (count, ts, ts))


def table_out(table: Table) -> dict[str, list[float]]:
    """A table as plain JSON-able lists."""
    return {k: e.tolist() for k, e in table.items()}


def table_in(d: dict[str, list[float]]) -> Table:
    """The table ``table_out`` wrote. Keys are interned: countries and data types repeat in
    every profile, and a restored profile would otherwise hold its own copy of each."""
    return {sys.intern(k): array("d", v) for k, v in d.items()}


# An actor profile keeps its six tables in one dict and one array instead (``ActorProfile.tab``
# and ``tv``): a dict and an entry array per table cost more than the numbers they hold. A
# table's keys carry its tag as a first character, so a resource type spelled like a country
# code or a data type is still its own key.
T_COUNTRY = "c"
T_NETWORK = "n"
T_PROVIDER = "p"
T_AGENT = "a"
T_RESOURCE = "r"
T_SENSITIVITY = "s"
# (tag, name in a checkpoint), in the checkpoint's order.
ACTOR_TABLES: tuple[tuple[str, str], ...] = (
    (T_COUNTRY, "countries"),
    (T_NETWORK, "networks"),
    (T_PROVIDER, "providers"),
    (T_AGENT, "agents"),
    (T_RESOURCE, "resources"),
    (T_SENSITIVITY, "sens"),
)
# Tagged keys are made once and shared by every profile holding them. The cache only saves
# making them again (they are interned, so a key remade is the same string while any profile
# holds it), so it is kept small: at most a few MB per table, however many networks there are.
_TAGGED: dict[str, dict[str, str]] = {tag: {} for tag, _ in ACTOR_TABLES}
_TAGGED_MAX = 20_000
# The per-event path reads these directly (``tagged`` clears, never replaces, them).
_COUNTRY_KEYS = _TAGGED[T_COUNTRY]
_NETWORK_KEYS = _TAGGED[T_NETWORK]
_PROVIDER_KEYS = _TAGGED[T_PROVIDER]
_AGENT_KEYS = _TAGGED[T_AGENT]
_RESOURCE_KEYS = _TAGGED[T_RESOURCE]
_SENSITIVITY_KEYS = _TAGGED[T_SENSITIVITY]


def tagged(tag: str, key: str) -> str:
    """``key`` of the table ``tag``, as ``ActorProfile.tab`` holds it."""
    made = _TAGGED[tag]
    k = made.get(key)
    if k is None:
        if len(made) >= _TAGGED_MAX:
            made.clear()
        k = made[key] = sys.intern(tag + key)
    return k


# Shared by every new profile until it has values of its own, and never written: a profile
# that has yet to close a day or be reported costs none of its rings, hour surprises or
# reported counters (about 1 KB). Code that writes in place checks for them first.
_EMPTY = floats()
_ZEROS_24 = floats([0.0] * 24)
_ZEROS_W = floats([0.0] * W_SIZE)

_SURP_OF_NONE = floats(hour_surprises(_ZEROS_24))


def _slot(hour: int) -> int:
    """Where an epoch hour's bucket goes among an actor's (``ActorProfile.wb``)."""
    return hour % 24


class ActorProfile:
    """What is normal for one actor, plus its last 24 hours of window counters.

    The per-event path is kept to a handful of comparisons: an event from the same place
    and of the same data type as the actor's previous one reuses the table entries resolved
    then (their counts are settled by ``flush``), and per-hour work (hour histogram, hourly
    and daily baselines, off-hours surprise) happens once, when an hour closes.
    """

    __slots__ = (
        # Underscored slots are transient caches, rebuilt on demand and never persisted.
        "_cur",
        "_loc",
        "_loc_key",
        "_loc_last",
        "_loc_n",
        "_loc_novel_until",
        "_mature_from",
        "_next_day",
        "_peer",
        "_touched",
        "_vz",
        "active_days",
        "actor_type",
        "after_role_seen",
        "burst_gap",
        "burst_level",
        "burst_start",
        "cur_day",
        "cur_day_reads",
        "cur_day_records",
        "cur_hour",
        "cur_lh",
        "cur_session",
        "cur_session_records",
        "cusum",
        "day_p95",
        "day_peak",
        "day_ring",
        "export_p95",
        "export_ring",
        "first_seen",
        "gap_ring",
        "home",
        "hour_p95",
        "hour_ring",
        "hour_surp",
        "hours",
        "hours_mark",
        "last_seen",
        "n_events",
        "notable_bits",
        "notable_until",
        "rep_hour",
        "rep_vec",
        "role_change_ts",
        "role_self",
        "roles",
        "sens_p95",
        "sens_ring",
        "session_ring",
        "spread_p50",
        "spread_ring",
        "tab",
        "tv",
        "wb",
        "wv",
        "zone",
    )

    def __init__(self, actor_type: str, home: str, zone: str, ts: float) -> None:
        # Shared by many profiles: one copy each, not one per profile.
        self.actor_type = sys.intern(actor_type)
        self.home = sys.intern(home)
        self.zone = sys.intern(zone)
        self.first_seen = ts
        self.last_seen = ts
        self.n_events = 0
        self.active_days = 0
        # Numbers live in packed arrays (``floats``): a mature profile holds several hundred.
        self.hours = _ZEROS_24
        self.hour_surp = _ZEROS_24
        self.hours_mark = 0.0
        # The tables: tagged key -> slot i, whose [count, first seen, last seen] are
        # tv[3i : 3i + 3]. A slot is reused by the key that evicts its holder.
        self.tab: dict[str, int] = {}
        self.tv = floats()
        self.hour_ring = _EMPTY
        self.sens_ring = _EMPTY
        self.day_ring = _EMPTY
        # Sensitive records read (not exported) per day without the day's busiest hour: the
        # background volume. Exports (month-end close, and bulk theft, which the rules catch)
        # and a one-off big report barely move it; reading a few times more personal or
        # financial data than usual, day after day, does.
        self.spread_ring = _EMPTY
        self.spread_p50 = 0.0
        # The sequential test of the background over the days closed so far (``volume_z``).
        self.cusum = 0.0
        self.day_peak = 0.0
        self.export_ring = _EMPTY
        self.session_ring = _EMPTY
        self.gap_ring = _EMPTY
        self.hour_p95 = 0.0
        self.sens_p95 = 0.0
        self.day_p95 = 0.0
        self.export_p95 = 0.0
        self.cur_hour = int(ts // HOUR)
        self.cur_day = int(ts // DAY)
        self.cur_lh = local_hour(ts, zone)
        self.cur_day_records = 0.0
        self.cur_day_reads = 0.0
        self.cur_session = ""
        self.cur_session_records = 0.0
        self.burst_start = -1.0
        self.burst_gap = 0.0
        self.burst_level = 0.0
        self.role_change_ts = -1.0
        self.role_self = False
        # Tuples: the empty one is shared by every profile that never had a role change.
        self.roles: tuple[str, ...] = ()
        self.after_role_seen: tuple[str, ...] = ()
        # Until when something notable (new place, new data type, failed login, role change,
        # odd hour) keeps the actor worth scoring even if its volumes are ordinary.
        self.notable_until = -1.0
        # Which kinds of notable thing happened in the current notable stretch (N_* bits): the
        # detector judges the actor again each time a new kind shows up.
        self.notable_bits = 0
        # What a finding already reported: the 24-hour sums leave it out afterwards, so one
        # burst does not raise a second finding the next morning (see ``mark_reported``).
        self.rep_hour = -1
        self.rep_vec = _ZEROS_W
        # Hourly buckets, one per hour of the day at most (slot ``b % 24`` of epoch hour b):
        # wb[k] is the epoch hour the k-th held bucket counts, wv[k] its counters, in the
        # order of their slots. Only slots ever used are held, so an actor costs the hours it
        # was active in, not 24 buckets. Epoch hours fit 32 bits for a few hundred thousand
        # years: half the bytes of "q".
        self.wb = array("i")
        self.wv: list[array[float]] = []
        self._reset_caches()

    def _reset_caches(self) -> None:
        self._loc_key: tuple[str | None, str | None, str | None] | None = None
        self._loc: tuple[int, ...] = ()  # the table slots of the cached place (-1: none)
        self._loc_n = 0
        self._loc_last = 0.0
        self._loc_novel_until = -1.0
        self._mature_from = self.first_seen + MATURE_DAYS * DAY
        self._next_day = (int(self.last_seen // DAY) + 1) * DAY if self.n_events else -1.0
        self._cur: array[float] | None = self._find(self.cur_hour)
        # The peer group this actor teaches; set by the detector that owns both.
        self._peer: PeerProfile | None = getattr(self, "_peer", None)
        # The time of the actor's latest event, as the detector that owns the profile saw it
        # (for packing idle profiles); never idle until it has set it.
        self._touched = math.inf
        # (slack, ``volume_scale`` of the spread ring at that slack), until the ring changes.
        self._vz: tuple[float, tuple[float, float]] | None = None

    # ---- online update -------------------------------------------------------------------

    def _roll(self, ts: float, h: int) -> array[float]:
        """Start hour ``h``'s bucket, closing the day if it is a new one; return the bucket.

        Per-hour work is kept to a few additions: the hourly and daily baselines and the
        peer group learn from the buckets once per day, when the actor's day closes.
        """
        if h < self.cur_hour:
            # A late event: count it in its hour if that bucket is still held, else drop its
            # window counts (it is older than every window) rather than clobber a live bucket.
            held = self._bucket(h)
            return held if held is not None else floats(_ZEROS_W)
        v = self._cur
        if v is not None and v[W_EVENTS] > 0:
            self.cur_day_records += v[W_RECORDS]
            reads = v[W_SENSITIVE_READ]
            self.cur_day_reads += reads
            if reads > self.day_peak:
                self.day_peak = reads
            if self.hours is _ZEROS_24:
                self.hours = floats(_ZEROS_24)
            self.hours[self.cur_lh] += v[W_EVENTS]
        d = h // 24
        if d > self.cur_day:
            self._close_day()
            self.cur_day = d
        elif self.n_events < 50:
            # A new actor's hours settle quickly; refresh hourly until they have.
            self._refresh_hours()
        self.cur_hour = h
        self.cur_lh = local_hour(h * HOUR, self.zone)
        v = floats(_ZEROS_W)
        if self.n_events >= 20:
            v[W_OFFHOUR] = self.hour_surp[self.cur_lh]
            if v[W_OFFHOUR] >= 2.0:
                self._note(N_ODD_HOUR, (h + 2) * HOUR)
        self._hold(h, v)
        self._cur = v
        return v

    def _bucket(self, h: int) -> array[float] | None:
        """The counters of epoch hour ``h`` if its bucket is held (the current hour's are
        ``_cur``, which every reader asks for most)."""
        return self._cur if h == self.cur_hour else self._find(h)

    def _find(self, h: int) -> array[float] | None:
        wb = self.wb
        if len(wb) == 24:  # every slot held (most actors after a few days): slot i is at i
            i = h % 24
            return self.wv[i] if wb[i] == h else None
        return self.wv[wb.index(h)] if h in wb else None

    def _hold(self, h: int, v: array[float]) -> None:
        """Hold ``v`` as hour ``h``'s bucket, in place of the one of its slot (``h % 24``)."""
        i = h % 24
        wb = self.wb
        k = bisect_left(wb, i, key=_slot)
        if k < len(wb) and wb[k] % 24 == i:
            wb[k] = h
            self.wv[k] = v
            return
        # A new slot: both made anew at their exact size (appending would over-allocate, and
        # most actors hold a few hours).
        self.wb = wb[:k] + array("i", (h,)) + wb[k:]
        self.wv = self.wv[:k] + [v] + self.wv[k:]

    def _close_day(self) -> None:
        """Fold the finished day (all its hourly buckets are still held) into the baselines."""
        day = self.cur_day
        held = sorted((b, v) for b, v in zip(self.wb, self.wv, strict=True) if b // 24 == day and v[W_EVENTS] > 0)
        if held:
            self.hour_ring = _appended(self.hour_ring, (v[W_RECORDS] for _, v in held), CAP_RING_HOURS)
            self.sens_ring = _appended(self.sens_ring, (v[W_SENSITIVE] for _, v in held), CAP_RING_HOURS)
            self.hour_p95 = quantile(self.hour_ring, 0.95)
            self.sens_p95 = quantile(self.sens_ring, 0.95)
            exports = [v[W_EXPORT] for _, v in held if v[W_EXPORT] > 0]
            if exports:
                self.export_ring = _appended(self.export_ring, exports, CAP_RING_SMALL)
                self.export_p95 = quantile(self.export_ring, 0.95)
        background = self.cur_day_reads - self.day_peak
        if self.cur_day_records > 0:
            if len(self.spread_ring) >= MIN_BACKGROUND_DAYS:
                self.cusum = cusum_step(self.cusum, volume_z(background, self.spread_ring, self.slack()))
            self.day_ring = _appended(self.day_ring, (self.cur_day_records,), CAP_RING_DAYS)
            self.day_p95 = quantile(self.day_ring, 0.95)
            self.spread_ring = _appended(self.spread_ring, (background,), CAP_RING_DAYS)
            self._vz = None
            self.spread_p50 = quantile(self.spread_ring, 0.5)
        if self._peer is not None and held:
            self._peer.observe_day(self, day, held, background if self.cur_day_records > 0 else None)
        self.cur_day_records = 0.0
        self.cur_day_reads = 0.0
        self.day_peak = 0.0
        self._refresh_hours()

    def _refresh_hours(self) -> None:
        """Recompute the per-hour surprise once the hour histogram has grown by a quarter since
        the last time (habits move slowly, and it costs a pass of logarithms)."""
        total = sum(self.hours)
        if total > HOURS_HALVE_AT:
            self.hours = floats(c / 2.0 for c in self.hours)
            total /= 2.0
            self.hours_mark = total
        elif self.hours_mark > 0 and total < 1.25 * self.hours_mark:
            return
        self.hours_mark = total
        # Until its first hour closes, an actor's surprises are those of an empty histogram.
        self.hour_surp = _SURP_OF_NONE if self.hours is _ZEROS_24 else floats(hour_surprises(self.hours))

    def _new_day_activity(self, ts: float) -> None:
        """First successful event of a UTC day: active days, and the idle gap it ends."""
        last = self.last_seen
        if self.n_events > 0 and ts - last >= DAY:
            usual = self.usual_gap_days()
            self.burst_start = ts
            self.burst_gap = ts - last
            self.burst_level = math.log2(1.0 + (self.burst_gap / DAY) / usual)
            if self.burst_level >= 1.5:
                self._note(N_IDLE, ts + HOUR)
            self.gap_ring = _appended(self.gap_ring, (ts - last,), CAP_RING_SMALL)
        self.active_days += 1
        self._next_day = (int(ts // DAY) + 1) * DAY

    def _flush_loc(self) -> None:
        if self._loc_n:
            tv = self.tv
            last = self._loc_last
            for i in self._loc:
                if i >= 0:
                    j = 3 * i
                    tv[j] += self._loc_n
                    if last > tv[j + 2]:
                        tv[j + 2] = last
            self._loc_n = 0

    def flush(self) -> None:
        """Settle the counts and last-seen times of the cached entries (before any read)."""
        self._flush_loc()

    def _locate(self, ts: float, key: tuple[str | None, str | None, str | None], keyed: Keyed) -> None:
        """Resolve where an event came from into table entries (a new place for this actor
        is a new country or a new provider block; a new /24 inside a known block is how
        mobile and office addresses normally move)."""
        self._flush_loc()
        ip, country, ua = key
        slots = [-1, -1, -1, -1]
        if country:
            slots[0] = self._entry(_COUNTRY_KEYS.get(country) or tagged(T_COUNTRY, country), ts, CAP_COUNTRIES)
            if self._peer is not None:
                self._peer.observe_country(country, ts)
        if ip:
            net = network_prefix(ip)
            if net:
                k = keyed("net", net)
                slots[1] = self._entry(_NETWORK_KEYS.get(k) or tagged(T_NETWORK, k), ts, CAP_NETWORKS)
                prov = provider_prefix(ip)
                if prov:
                    k = keyed("prov", prov)
                    slots[2] = self._entry(_PROVIDER_KEYS.get(k) or tagged(T_PROVIDER, k), ts, CAP_PROVIDERS)
        if ua:
            k = keyed("ua", ua)
            slots[3] = self._entry(_AGENT_KEYS.get(k) or tagged(T_AGENT, k), ts, CAP_AGENTS)
        # The country as the one string every profile shares (the event's own copy would stay
        # with each live profile); the key compares equal either way.
        self._loc_key = (ip, sys.intern(country), ua) if country else key
        self._loc = tuple(slots)
        self._loc_last = ts
        firsts = [self.tv[3 * i + 1] for i in (slots[0], slots[2]) if i >= 0]
        self._loc_novel_until = max(firsts) + NOVEL_FOR if firsts else -1.0

    def _entry(self, key: str, ts: float, cap: int) -> int:
        """Count the tagged ``key`` at ``ts`` in its capped table and return its slot. When the
        table is full, the key seen longest ago makes room (old habits go first)."""
        tab = self.tab
        tv = self.tv
        i = tab.get(key)
        if i is not None:
            j = 3 * i
            tv[j] += 1.0
            if ts > tv[j + 2]:
                tv[j + 2] = ts
            return i
        tag = key[0]
        mine = [k for k in tab if k[0] == tag]
        if len(mine) >= cap:
            # The first of the least recently seen, in the table's order, as a dict's min.
            i = tab.pop(min(mine, key=lambda k: tv[3 * tab[k] + 2]))
            tv[3 * i : 3 * i + 3] = floats((1.0, ts, ts))
        else:
            i = len(tv) // 3
            tv.extend((1.0, ts, ts))
        tab[key] = i
        return i

    def observe_access(
        self,
        ts: float,
        h: int,
        action: str,
        resource_type: str,
        sensitivity: str,
        records: int,
        ip: str | None,
        country: str | None,
        ua: str | None,
        session: str | None,
        denied: bool,
        keyed: Keyed,
    ) -> None:
        """Fold one access event (epoch seconds ``ts``, epoch hour ``h``) in."""
        v = self._cur if h == self.cur_hour and self._cur is not None else self._roll(ts, h)
        mature = self.active_days >= MATURE_DAYS and ts >= self._mature_from
        loc = (ip, country, ua)
        if loc == self._loc_key:
            self._loc_n += 1
            self._loc_last = ts
        else:
            self._locate(ts, loc, keyed)
        tv = self.tv
        tab = self.tab
        rk = _RESOURCE_KEYS.get(resource_type) or tagged(T_RESOURCE, resource_type)
        ri = tab.get(rk)
        if ri is None:
            rj = 3 * self._entry(rk, ts, CAP_RESOURCES)
        else:
            rj = 3 * ri
            tv[rj] += 1.0
            if ts > tv[rj + 2]:
                tv[rj + 2] = ts
        sk = _SENSITIVITY_KEYS.get(sensitivity) or tagged(T_SENSITIVITY, sensitivity)
        si = tab.get(sk)
        if si is None:
            sj = 3 * self._entry(sk, ts, CAP_SENSITIVITIES)
        else:
            sj = 3 * si
            tv[sj] += 1.0
            if ts > tv[sj + 2]:
                tv[sj + 2] = ts
        recs = 0.0 if denied else float(records)
        v[W_EVENTS] += 1.0
        v[W_RECORDS] += recs
        sens = sensitivity in SENSITIVE
        export = action == "export"
        if sens:
            v[W_SENSITIVE] += recs
            if not export:
                v[W_SENSITIVE_READ] += recs
        if export:
            v[W_EXPORT] += recs
        if mature:
            if ts < self._loc_novel_until:
                self._note(N_PLACE, ts + HOUR)
                if sens or export:
                    v[W_NOVEL_SENSITIVE] += recs
                    self.notable_bits |= N_PLACE_DATA
                if self.n_events >= 20:
                    self._novel_hour(ts, country, v)
            if ts - tv[rj + 1] < NOVEL_FOR or ts - tv[sj + 1] < NOVEL_FOR:
                self._note(N_NEW_DATA, ts + HOUR)
                v[W_NEW_RESOURCE] += recs
                if self.role_change_ts >= 0 and ts - self.role_change_ts <= DAY:
                    v[W_AFTER_ROLE] += recs
                    if sensitivity in CROWN_JEWELS:
                        v[W_CROWN_AFTER_ROLE] += recs
                        self.notable_bits |= N_CROWN
        if session:
            if session != self.cur_session:
                if self.cur_session_records > 0:
                    self.session_ring = _appended(self.session_ring, (self.cur_session_records,), CAP_RING_SMALL)
                self.cur_session = session
                self.cur_session_records = 0.0
            self.cur_session_records += recs
        if not denied:
            if ts >= self._next_day:
                self._new_day_activity(ts)
            if ts > self.last_seen:
                self.last_seen = ts
            self.n_events += 1

    def observe_auth(
        self,
        ts: float,
        h: int,
        action: str,
        success: bool,
        ip: str | None,
        country: str | None,
        ua: str | None,
        roles: tuple[str, ...] | None,
        keyed: Keyed,
    ) -> None:
        """Fold one auth event in; failures count in the window but teach nothing."""
        v = self._cur if h == self.cur_hour and self._cur is not None else self._roll(ts, h)
        if action == "login":
            v[W_ATTEMPTS] += 1.0
            if not success:
                v[W_FAILED] += 1.0
                self._note(N_FAILED, ts + HOUR)
        if not success:
            # A failure may be someone else trying this name: it is not the actor's habit.
            return
        if action == "role_change":
            self._role_change(ts, ip, ua, roles, keyed)
            return
        loc = (ip, country, ua)
        if loc == self._loc_key:
            self._loc_n += 1
            self._loc_last = ts
        else:
            self._locate(ts, loc, keyed)
        if ts < self._loc_novel_until and self.mature(ts):
            self._note(N_PLACE, ts + HOUR)
            if self.n_events >= 20:
                self._novel_hour(ts, country, v)
        v[W_EVENTS] += 1.0
        if ts >= self._next_day:
            self._new_day_activity(ts)
        if ts > self.last_seen:
            self.last_seen = ts
        self.n_events += 1

    def _role_change(
        self, ts: float, ip: str | None, ua: str | None, roles: tuple[str, ...] | None, keyed: Keyed
    ) -> None:
        """A change of the actor's roles. It is recorded against the account but is often
        made by someone else (an administrator), so where it came from is not learned as the
        actor's habit; whether it came from the actor's own device and network is kept:
        a self-granted role is what separation of duties forbids."""
        new_roles = list(roles or ())
        if not self.roles or set(new_roles) - set(self.roles):
            net = network_prefix(ip)
            self.role_change_ts = ts
            self.role_self = bool(
                ua
                and net
                and self.first_use(T_AGENT, keyed("ua", ua)) is not None
                and self.first_use(T_NETWORK, keyed("net", net)) is not None
            )
            self.after_role_seen = tuple(sorted(set(new_roles) - set(self.roles))[:8])
            self._note(N_ROLE, ts + HOUR)
        self.roles = tuple(new_roles[:16])

    def _note(self, reason: int, until: float) -> None:
        """Something notable happened: keep the actor worth scoring until ``until``."""
        if until > self.notable_until:
            self.notable_until = until
        self.notable_bits |= reason

    def add_failures(self, ts: float, n: float) -> None:
        """Failed logins under this name from before it had a profile (its first hour)."""
        v = self._cur if int(ts // HOUR) == self.cur_hour and self._cur is not None else self._roll(ts, int(ts // HOUR))
        v[W_FAILED] += n
        v[W_ATTEMPTS] += n
        self._note(N_FAILED, ts + HOUR)

    def _novel_hour(self, ts: float, country: str | None, v: array[float]) -> None:
        """Book the hour surprise of an event from a new location (see ``W_OFFHOUR_NOVEL``)."""
        home = self.hour_surp[self.cur_lh] if int(ts // HOUR) == self.cur_hour else 0.0
        there = self.hour_surp[local_hour(ts, zone_for_jurisdiction(country))] if country else home
        s = min(home, there)
        if s > v[W_OFFHOUR_NOVEL]:
            v[W_OFFHOUR_NOVEL] = s

    # ---- reads (pure, after ``flush``) ---------------------------------------------------

    def worth_scoring(self, now: float) -> bool:
        """False only when no finding's gate can be open, so a busy stream can skip building
        feature rows that cannot alert: nothing notable in the last hour (new place, device or
        data type, failed login, odd hour), no young idle burst or role change, not a first
        day, and today's background volume not yet elevated."""
        if now < self.notable_until:
            return True
        if self.first_seen > now - DAY and not self.mature(now):
            return True
        if self.role_change_ts >= 0 and now - self.role_change_ts <= DAY:
            return True
        if self.burst_level >= 1.5 and self.burst_start >= 0 and now - self.burst_start <= DAY:
            return True
        v = self._cur
        if v is None:
            return False
        if self.cusum >= 1.0:
            return True  # the sequential test has been rising: today may take it over
        # Slow exfiltration needs today's background well above usual (see ``elevated_days``).
        cur = v[W_SENSITIVE_READ]
        today = self.cur_day_reads + cur - max(self.day_peak, cur)
        return today > 2.0 * self.spread_p50 + 0.5 * max(self.hour_p95, MIN_SLACK_RECORDS)

    def mature(self, now: float) -> bool:
        """Enough history that "new for this actor" is meaningful."""
        return self.active_days >= MATURE_DAYS and now - self.first_seen >= MATURE_DAYS * DAY

    def history_days(self, now: float) -> float:
        return max(0.0, (now - self.first_seen) / DAY)

    def window_1h(self, now: float, judged: Sequence[float] | Live | None = LIVE) -> list[float]:
        """Counters of the last hour: this hour plus the previous one pro rata (max for hours).

        ``judged``: ``hour_so_far(now)`` as taken at the moment judged, read instead of the
        hour's counters as they stand (which may include events after ``now``)."""
        h = int(now // HOUR)
        out = [0.0] * W_SIZE
        current = self._current(h, judged)
        if current is not None:
            out = list(current)
        prev = self._bucket(h - 1)
        if prev is not None:
            frac = 1.0 - (now - h * HOUR) / HOUR
            for k in range(W_SIZE):
                if k in (W_OFFHOUR, W_OFFHOUR_NOVEL):
                    out[k] = max(out[k], prev[k])
                else:
                    out[k] += prev[k] * frac
        return out

    def window_24h(self, now: float, judged: Sequence[float] | Live | None = LIVE) -> list[float]:
        """Counters summed over the last 24 hourly buckets (max for the hour surprises),
        leaving out what was already reported, plus one extra entry: the sensitive reads of
        the busiest of those hours (to tell a one-off spike from volume spread over days).
        ``judged`` as for ``window_1h``."""
        h = int(now // HOUR)
        lo = max(h - 24, self.rep_hour - 1)
        rep = self.rep_hour
        current = self._current(h, judged)
        held = []
        for b, v in zip(self.wb, self.wv, strict=True):
            if lo < b <= h:
                if b == h:
                    if current is None:
                        continue
                    v = current  # in the ring's order: the sums stay the same to the last bit
                held.append(v if b != rep else [max(0.0, x - y) for x, y in zip(v, self.rep_vec, strict=True)])
        if not held:
            return [0.0] * (W_SIZE + 1)
        cols = list(zip(*held, strict=True))
        out = [sum(c) for c in cols]
        out[W_OFFHOUR] = max(cols[W_OFFHOUR])
        out[W_OFFHOUR_NOVEL] = max(cols[W_OFFHOUR_NOVEL])
        out.append(max(cols[W_SENSITIVE_READ]))
        return out

    def background_volume(
        self, now: float, days: int, w24: list[float], judged: Sequence[float] | Live | None = LIVE
    ) -> float:
        """Sensitive records read (not exported) today so far plus on the ``days - 1`` previous
        active days, each without its busiest hour. After a finding, only what came since.
        ``judged`` as for ``window_1h``."""
        if self.rep_hour >= 0 and self.cur_day - self.rep_hour // 24 < days:
            return max(0.0, w24[W_SENSITIVE_READ] - w24[W_SIZE])
        v = self._cur if isinstance(judged, Live) else judged
        cur = v[W_SENSITIVE_READ] if v is not None else 0.0
        today = self.cur_day_reads + cur - max(self.day_peak, cur)
        past = self.spread_ring[-(days - 1) :] if days > 1 else []
        return today + sum(past)

    def elevated_days(self, now: float, w24: list[float], slack: float) -> int:
        """Consecutive active days, ending today, whose background volume was well above
        usual (over twice the median plus half the slack): slow exfiltration lasts days."""
        limit = 2.0 * self.spread_p50 + 0.5 * slack
        n = 1 if self.background_volume(now, 1, w24) > limit else 0
        if n == 0:
            return 0
        for x in reversed(self.spread_ring[-6:]):
            if x <= limit:
                break
            n += 1
        return n

    def slack(self) -> float:
        """A rise in background volume counts from a few pages up, or from what the actor's
        peers read on a usual day: rising to what colleagues read daily is not exfiltration."""
        peer = self._peer.spread_p50 if self._peer is not None else 0.0
        return max(MIN_SLACK_RECORDS, peer)

    def volume_cusum(self, now: float, w24: list[float]) -> float:
        """The sequential test with today's background so far as today's day: it grows through
        a day that runs well above usual, so one such day can cross a threshold before it ends."""
        slack = self.slack()
        if not self.spread_ring:
            return cusum_step(self.cusum, 0.0)
        vz = self._vz
        if vz is None or vz[0] != slack:
            vz = self._vz = (slack, volume_scale(self.spread_ring, slack))
        return cusum_step(self.cusum, volume_z_on(self.background_volume(now, 1, w24), slack, vz[1]))

    def providers_used(self, now: float) -> list[str]:
        """Provider blocks (digests) used in the last hour."""
        return self._used(T_PROVIDER, now)

    def _current(self, h: int, judged: Sequence[float] | Live | None) -> Sequence[float] | None:
        """The counters of hour ``h``: ``judged`` if given, else as they stand (None if none)."""
        if not isinstance(judged, Live):
            return judged
        return self._bucket(h)

    def hour_so_far(self, now: float) -> list[float] | None:
        """A copy of the counters of ``now``'s hour as they stand (None if it has none)."""
        current = self._current(int(now // HOUR), LIVE)
        return list(current) if current is not None else None

    def mark_reported(self, now: float, judged: Sequence[float] | Live | None = LIVE) -> None:
        """Everything up to ``now`` has been reported: keep it out of later 24-hour sums.

        ``judged`` as for ``window_1h``; by default the hour's counters are read as they stand
        now, which includes any events since ``now``.
        """
        h = int(now // HOUR)
        current = self._current(h, judged)
        self.rep_hour = h
        self.rep_vec = floats(current) if current is not None else _ZEROS_W

    def table(self, tag: str) -> dict[str, list[float]]:
        """One table (``T_COUNTRY``, ...) as key -> [count, first seen, last seen], in its order."""
        tv = self.tv
        return {k[1:]: tv[3 * i : 3 * i + 3].tolist() for k, i in self.tab.items() if k[0] == tag}

    def first_use(self, tag: str, key: str) -> float | None:
        """When ``key`` of the table ``tag`` was first seen (None if it is not held)."""
        # Looked up, not made: the shared tagged key if there is one, else a throwaway.
        i = self.tab.get(_TAGGED[tag].get(key) or tag + key)
        return None if i is None else self.tv[3 * i + 1]

    def _novel_in_window(self, tag: str, now: float) -> list[str]:
        # First seen at ``now`` or before: read after later events, a place first used after
        # the judged moment is not part of it.
        tv = self.tv
        return [
            k[1:]
            for k, i in self.tab.items()
            if k[0] == tag and 0.0 <= now - tv[3 * i + 1] < NOVEL_FOR and now - tv[3 * i + 2] <= HOUR
        ]

    def _used(self, tag: str, now: float) -> list[str]:
        """Keys of the table ``tag`` used in the last hour."""
        tv = self.tv
        return [k[1:] for k, i in self.tab.items() if k[0] == tag and now - tv[3 * i + 2] <= HOUR]

    def places(self, now: float) -> Places:
        """What the window features read of the tables at ``now``, in one pass over them (each
        reader below makes a pass of its own; a feature row needs seven of them)."""
        tv = self.tv
        used_countries: list[str] = []
        new_countries: list[str] = []
        used_providers: list[str] = []
        new_provider = new_network = new_agent = False
        resources = 0
        for k, i in self.tab.items():
            tag = k[0]
            j = 3 * i
            if now - tv[j + 2] > HOUR or tag == T_SENSITIVITY:
                continue  # not used in the last hour: neither used nor new in the window
            if tag == T_RESOURCE:
                resources += 1
                continue
            novel = 0.0 <= now - tv[j + 1] < NOVEL_FOR
            if tag == T_COUNTRY:
                used_countries.append(k[1:])
                if novel:
                    new_countries.append(k[1:])
            elif tag == T_PROVIDER:
                used_providers.append(k[1:])
                new_provider = new_provider or novel
            elif tag == T_NETWORK:
                new_network = new_network or novel
            elif tag == T_AGENT:
                new_agent = new_agent or novel
        return Places(
            used_countries,
            new_countries,
            used_providers,
            2.0 if new_provider else 1.0 if new_network else 0.0,
            new_agent,
            resources,
        )

    def new_countries(self, now: float) -> list[str]:
        """Countries first seen in the last day and used in the last hour."""
        return self._novel_in_window(T_COUNTRY, now)

    def countries_used(self, now: float) -> list[str]:
        """Countries used in the last hour."""
        return self._used(T_COUNTRY, now)

    def network_novelty(self, now: float) -> float:
        """0: known networks only in the last hour; 1: a new /24; 2: a new provider block too."""
        if self._novel_in_window(T_PROVIDER, now):
            return 2.0
        return 1.0 if self._novel_in_window(T_NETWORK, now) else 0.0

    def new_agent(self, now: float) -> bool:
        return bool(self._novel_in_window(T_AGENT, now))

    def usual_countries(self, now: float, limit: int = 3) -> list[str]:
        """The actor's most used countries, excluding those new in the last day."""
        tv = self.tv
        old = [
            (tv[3 * i], k[1:]) for k, i in self.tab.items() if k[0] == T_COUNTRY and now - tv[3 * i + 1] >= NOVEL_FOR
        ]
        return [k for _, k in sorted(old, reverse=True)[:limit]]

    def countries_in_window(self, now: float) -> int:
        return len(self._used(T_COUNTRY, now))

    def distinct_resources_1h(self, now: float) -> int:
        return len(self._used(T_RESOURCE, now))

    def role_changed_within(self, now: float, span: float) -> bool:
        return self.role_change_ts >= 0 and 0 <= now - self.role_change_ts <= span

    def usual_gap_days(self) -> float:
        """The actor's usual longest idle stretch in days (weekends and holidays included),
        from the gaps before the current one."""
        return max(1.0, quantile(self.gap_ring, 0.9) / DAY) if self.gap_ring else 1.0

    def dormancy(self, now: float) -> float:
        """log2(1 + idle days before the current burst / usual gap), while the burst is young."""
        if self.burst_start < 0 or now - self.burst_start > DAY:
            return 0.0
        return self.burst_level

    # ---- packing (in memory) -------------------------------------------------------------

    def pack(self) -> bytes:
        """A compact copy for keeping an idle actor's profile in memory (see ``unpack``).

        marshal and zlib run in C: packing and unpacking a mature profile costs about as much
        as folding a few dozen events, where going through ``to_dict`` and JSON costs several
        times that. marshal's format belongs to this Python version, so these bytes never
        leave the process; checkpoints use ``to_dict``.
        """
        self.flush()
        return _SQUEEZER.squeeze(marshal.dumps(self._packed_values()))

    def _packed_values(self) -> list[Any]:
        """The persisted slots as marshal takes them: arrays travel as their bytes (the same
        doubles, bit for bit)."""
        values = [v.tobytes() if isinstance(v, array) else v for v in map(self.__getattribute__, _PACKED)]
        values[_WV] = [v.tobytes() for v in self.wv]
        return values

    @classmethod
    def unpack(cls, blob: bytes) -> ActorProfile:
        """The profile ``pack`` copied, identical in every later verdict (its caches rebuilt)."""
        p = cls.__new__(cls)
        for name, value in zip(_PACKED, marshal.loads(_SQUEEZER.unsqueeze(blob)), strict=True):
            if name in _ARRAYS:
                # What a new profile shares (an empty ring, a zero histogram) is shared again:
                # every writer replaces such an array before writing (see ``_EMPTY``).
                start = _SHARED.get(name)
                value = start if start is not None and value == start.tobytes() else array(_ARRAYS[name], value)
            setattr(p, name, value)
        p.wv = [array("d", v) for v in p.wv]
        p._reset_caches()
        return p

    # ---- persistence ---------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form (serialise it before the profile changes again); only the
        window buckets of the last 24 hours are kept."""
        self.flush()
        buckets = [[b, v.tolist()] for b, v in zip(self.wb, self.wv, strict=True) if b >= 0 and self.cur_hour - b < 24]
        return {
            "t": self.actor_type,
            "home": self.home,
            "zone": self.zone,
            "first": self.first_seen,
            "last": self.last_seen,
            "n": self.n_events,
            "days": self.active_days,
            "hours": self.hours.tolist(),
            "hsurp": [self.hour_surp.tolist(), self.hours_mark],
            **{name: self.table(tag) for tag, name in ACTOR_TABLES},
            "rings": [
                self.hour_ring.tolist(),
                self.sens_ring.tolist(),
                self.day_ring.tolist(),
                self.export_ring.tolist(),
                self.session_ring.tolist(),
                self.gap_ring.tolist(),
            ],
            "p95": [self.hour_p95, self.sens_p95, self.day_p95, self.export_p95],
            "cur": [self.cur_hour, self.cur_day, self.cur_day_records, self.cur_lh, self.day_peak, self.cur_day_reads],
            "spread": [self.spread_ring.tolist(), self.spread_p50, self.cusum],
            "notable": [self.notable_until, self.notable_bits],
            "session": [self.cur_session, self.cur_session_records],
            "burst": [self.burst_start, self.burst_gap, self.burst_level],
            "role": [self.role_change_ts, list(self.roles), list(self.after_role_seen), self.role_self],
            "buckets": buckets,
            "reported": [self.rep_hour, self.rep_vec.tolist()],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ActorProfile:
        p = cls(d["t"], d["home"], d["zone"], d["first"])
        p.last_seen = d["last"]
        p.n_events = d["n"]
        p.active_days = d["days"]
        p.hours = floats(map(float, d["hours"]))
        p.hour_surp = floats(map(float, d["hsurp"][0]))
        p.hours_mark = float(d["hsurp"][1])
        for tag, name in ACTOR_TABLES:
            for k, e in d[name].items():
                p.tab[tagged(tag, k)] = len(p.tv) // 3
                p.tv.extend(map(float, e))
        rings = d["rings"]
        p.hour_ring, p.sens_ring, p.day_ring, p.export_ring, p.session_ring, p.gap_ring = (_ring_in(r) for r in rings)
        p.hour_p95, p.sens_p95, p.day_p95, p.export_p95 = (float(x) for x in d["p95"])
        p.cur_hour, p.cur_day, p.cur_day_records = int(d["cur"][0]), int(d["cur"][1]), float(d["cur"][2])
        p.cur_lh = int(d["cur"][3])
        p.day_peak = float(d["cur"][4])
        p.cur_day_reads = float(d["cur"][5])
        p.spread_ring = _ring_in(d["spread"][0])
        p.spread_p50 = float(d["spread"][1])
        # Profiles saved before the sequential test start it at 0.
        p.cusum = float(d["spread"][2]) if len(d["spread"]) > 2 else 0.0
        p.notable_until = float(d["notable"][0])
        p.notable_bits = int(d["notable"][1])
        p.cur_session, p.cur_session_records = str(d["session"][0]), float(d["session"][1])
        p.burst_start, p.burst_gap, p.burst_level = (float(x) for x in d["burst"])
        p.role_change_ts = float(d["role"][0])
        p.role_self = bool(d["role"][3])
        p.roles = tuple(d["role"][1])
        p.after_role_seen = tuple(d["role"][2])
        p.rep_hour = int(d["reported"][0])
        p.rep_vec = floats(map(float, d["reported"][1]))
        for b, v in d["buckets"]:
            p._hold(int(b), floats(map(float, v)))
        p._reset_caches()
        return p


# What ``ActorProfile.pack`` keeps: every slot but the underscored caches.
_PACKED: tuple[str, ...] = tuple(name for name in ActorProfile.__slots__ if not name.startswith("_"))
_WV = _PACKED.index("wv")
# The packed slots held as arrays (by their type codes), read off a new profile, and those of
# them a new profile shares with every other until it has values of its own.
_fresh = ActorProfile("staff", "", "UTC", 0.0)
_ARRAYS: dict[str, str] = {
    name: getattr(_fresh, name).typecode for name in _PACKED if isinstance(getattr(_fresh, name), array)
}
_SHARED: dict[str, array[float]] = {
    name: getattr(_fresh, name)
    for name in _ARRAYS
    if any(getattr(_fresh, name) is shared for shared in (_EMPTY, _ZEROS_24, _ZEROS_W))
}
del _fresh


def _typical_packing() -> bytes:
    """What ``pack`` compresses for a young actor (a login and a few reads, synthetic values):
    the preset dictionary of every packed profile (see ``squeeze``)."""

    def digest(kind: str, value: str, length: int = 16) -> str:
        return hashlib.sha256(f"{kind}:{value}".encode()).hexdigest()[:length]

    ts = 1.7e9
    p = ActorProfile("customer_user", "tenant", "UTC", ts)
    h = int(ts // HOUR)
    p.observe_auth(ts, h, "login", True, "192.0.2.1", "DE", "agent/1.0", None, digest)
    for k in range(3):
        p.observe_access(
            ts + k, h, "read", "invoice", "financial", 5, "192.0.2.1", "DE", "agent/1.0", "session", False, digest
        )
    p.flush()
    return marshal.dumps(p._packed_values())


_SQUEEZER = Squeezer(_typical_packing())
# Every array any number of profiles may point at: none of them is one profile's memory.
SHARED_ARRAYS: tuple[array[float], ...] = (_EMPTY, _ZEROS_24, _ZEROS_W, _SURP_OF_NONE)


class PeerProfile:
    """Habits of a peer group (same tenant and actor type): countries, provider blocks, local
    hours and hourly volumes of its members, and since when the group has been watched."""

    __slots__ = (
        "countries",
        "hour_p99",
        "hour_ring",
        "hour_surp",
        "hours",
        "providers",
        "pushes",
        "resources",
        "since",
        "spread_p50",
        "spread_ring",
    )

    def __init__(self, since: float = -1.0) -> None:
        self.countries: Table = {}
        self.providers: Table = {}
        self.hours = floats(_ZEROS_24)
        self.hour_surp = floats(_ZEROS_24)
        self.hour_ring = floats()
        self.hour_p99 = 0.0
        self.pushes = 0
        self.since = since
        self.spread_ring = floats()
        self.spread_p50 = 0.0
        # Resource types -> [members who took them up, first seen, last seen]: what is common
        # among the group and what only one of them reads.
        self.resources: Table = {}

    @staticmethod
    def _count(table: Table, key: str, ts: float, weight: float, cap: int) -> None:
        entry = table.get(key)
        if entry is not None:
            entry[0] += weight
            if ts > entry[2]:
                entry[2] = ts
            return
        if len(table) >= cap:
            del table[min(table, key=lambda k: table[k][2])]
        table[sys.intern(key)] = _new_entry(weight, ts)

    def observe_country(self, country: str, ts: float) -> None:
        """A member used ``country``. Only when the group first saw it matters (and a member
        reports a country once per change of place), so later sightings change nothing."""
        if country not in self.countries:
            if len(self.countries) >= CAP_PEER_COUNTRIES:
                del self.countries[min(self.countries, key=lambda k: self.countries[k][1])]
            self.countries[sys.intern(country)] = _new_entry(1.0, ts)

    def country_new(self, country: str, now: float) -> bool:
        """True if no one in the group used ``country`` before the last day."""
        e = self.countries.get(country)
        return e is None or now - e[1] < NOVEL_FOR

    def provider_new(self, provider: str, now: float) -> bool:
        """True if no one in the group used the provider block before the last day."""
        e = self.providers.get(provider)
        return e is None or now - e[1] < NOVEL_FOR

    def observe_day(
        self, member: ActorProfile, day: int, hours: list[tuple[int, array[float]]], background: float | None
    ) -> None:
        """Learn from a member's finished day: hourly volumes, local hours, networks used, and
        its background volume."""
        start = day * DAY
        if self.since < 0:
            self.since = start
        self.hour_ring = _appended(self.hour_ring, (v[W_RECORDS] for _, v in hours), CAP_PEER_RING)
        for b, v in hours:
            self.hours[local_hour(b * HOUR, member.zone)] += v[W_EVENTS]
        # The member's provider blocks and resource types used that day, each table in its
        # order (read off its slots: building the tables as dicts costs more than this).
        tv = member.tv
        for k, i in member.tab.items():
            tag = k[0]
            if tag != T_PROVIDER and tag != T_RESOURCE:
                continue
            last = tv[3 * i + 2]
            if last < start:
                continue
            if tag == T_PROVIDER:
                self._count(self.providers, k[1:], last, 1.0, CAP_PEER_PROVIDERS)
            else:
                # A member counts once per resource type: on the day it first used it.
                self._count(self.resources, k[1:], last, 1.0 if tv[3 * i + 1] >= start else 0.0, CAP_PEER_RESOURCES)
        if background is not None:
            self.spread_ring = _appended(self.spread_ring, (background,), CAP_PEER_RING)
        self.pushes += 1
        # Percentiles and the hour profile move slowly: refresh them every few member-days.
        if self.pushes % 8 == 1:
            self.hour_p99 = quantile(self.hour_ring, 0.99)
            self.spread_p50 = quantile(self.spread_ring, 0.5)
            total = sum(self.hours)
            if total > 50 * HOURS_HALVE_AT:
                self.hours = floats(c / 2.0 for c in self.hours)
            self.hour_surp = floats(hour_surprises(self.hours))

    def watched_days(self, now: float) -> float:
        return max(0.0, (now - self.since) / DAY) if self.since >= 0 else 0.0

    def users_of(self, resource: str) -> int:
        """How many members took up ``resource`` (as far as the group has watched them)."""
        e = self.resources.get(resource)
        return int(e[0]) if e is not None else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "countries": table_out(self.countries),
            "providers": table_out(self.providers),
            "hours": self.hours.tolist(),
            "hsurp": self.hour_surp.tolist(),
            "ring": self.hour_ring.tolist(),
            "p99": self.hour_p99,
            "pushes": self.pushes,
            "since": self.since,
            "spread": [self.spread_ring.tolist(), self.spread_p50],
            "resources": table_out(self.resources),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PeerProfile:
        p = cls(float(d["since"]))
        p.countries = table_in(d["countries"])
        p.providers = table_in(d["providers"])
        p.hours = floats(map(float, d["hours"]))
        p.hour_surp = floats(map(float, d["hsurp"]))
        p.hour_ring = floats(map(float, d["ring"]))
        p.hour_p99 = float(d["p99"])
        p.pushes = int(d["pushes"])
        p.spread_ring = floats(map(float, d["spread"][0]))
        p.spread_p50 = float(d["spread"][1])
        p.resources = table_in(d.get("resources", {}))  # none in states saved before
        return p
