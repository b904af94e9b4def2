"""Plain-words reasons, titles and playbook lines for learned findings.

Each reason names a number the on-call can check against the evidence ("read 9,120 records
in the last hour; this user's 95th-percentile hour is 310"). Reasons are ordered by how many
points the ingredient added to the score, so the first reason is the main one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from breachwatch.core.countries import labelled
from breachwatch.detectors.learned.features import (
    DAY,
    W_AFTER_ROLE,
    W_CROWN_AFTER_ROLE,
    W_EXPORT,
    W_FAILED,
    W_NEW_RESOURCE,
    W_NOVEL_SENSITIVE,
    W_RECORDS,
    W_SENSITIVE,
    local_hour,
)
from breachwatch.detectors.learned.profiles import (
    LIVE,
    NOVEL_FOR,
    T_RESOURCE,
    T_SENSITIVITY,
    ActorProfile,
    Live,
    PeerProfile,
)

TITLES: dict[str, str] = {
    "account_takeover": "Possible account takeover",
    "slow_exfiltration": "Unusual data volume (possible exfiltration)",
    "dormant_account": "Dormant account active again",
    "service_key_misuse": "Integration key used unusually",
    "privilege_escalation": "Role change followed by sensitive reads",
    "anomalous_access": "Anomalous data access",
}

PLAYBOOKS: dict[str, str] = {
    "account_takeover": (
        "Contact the user out of band; if they do not recognise the activity, revoke sessions, "
        "reset the password and MFA, and review what was read or exported."
    ),
    "slow_exfiltration": (
        "Compare the records read with the user's tasks; ask their manager whether the volume is "
        "expected; if not, suspend exports for the account and preserve the access log."
    ),
    "dormant_account": (
        "Confirm with the tenant that the account should still exist and who uses it; disable it "
        "if no one claims it, and review what it read."
    ),
    "service_key_misuse": (
        "Check with the integration owner whether the key moved; if not, rotate the key, "
        "block the new network and review the records it reached."
    ),
    "privilege_escalation": (
        "Find who granted the role and whether a change request covers it; revert the role if "
        "not, and review every sensitive record read since the change."
    ),
    "anomalous_access": (
        "Review the actor's recent activity against their usual pattern and ask the tenant's "
        "security contact whether it is expected."
    ),
}

ACTOR_WORD: dict[str, str] = {"customer_user": "user", "staff": "staff member", "service": "integration key"}


def _n(x: float) -> str:
    return f"{round(x):,}"


def _hours_span(hours: list[float]) -> str:
    """The actor's usual working span, e.g. "08-18h": the smallest set of hours covering 80%."""
    total = sum(hours)
    if total <= 0:
        return "unknown"
    order = sorted(range(24), key=lambda h: -hours[h])
    acc = 0.0
    chosen: list[int] = []
    for h in order:
        chosen.append(h)
        acc += hours[h]
        if acc >= 0.8 * total:
            break
    return f"{min(chosen):02d}-{max(chosen) + 1:02d}h"


def reasons(
    kind: str,
    contributions: Mapping[str, float],
    profile: ActorProfile,
    peer: PeerProfile | None,
    now: float,
    population_score: float | None,
    limit: int = 4,
    features: Mapping[str, float] | None = None,
    judged: list[float] | Live | None = LIVE,
) -> tuple[str, ...]:
    """The top reasons of a finding, strongest first, each with numbers. ``features`` are the
    scored row's values and ``judged`` the counters of its hour as they stood then
    (``ActorProfile.hour_so_far``), used where the profile has moved on since (a row judged
    mid-batch)."""
    who = ACTOR_WORD.get(profile.actor_type, "actor")
    w1 = profile.window_1h(now, judged)
    w24 = profile.window_24h(now, judged)
    out: list[tuple[float, str]] = []
    for name, pts in contributions.items():
        if pts < 2.0:
            continue
        text = _reason(name, who, profile, peer, now, w1, w24, features or {}, judged)
        if text:
            out.append((pts, text))
    out.sort(key=lambda t: -t[0])
    lines = [t for _, t in out[:limit]]
    if population_score is not None and population_score >= 50:
        lines.append(
            f"the population model rates this hour more unusual than almost all training hours "
            f"(anomaly score {population_score:.0f}/100)"
        )
    if not lines:
        lines.append(f"{TITLES.get(kind, kind)} for this {who}")
    return tuple(lines)


def insights(profile: ActorProfile, peer: PeerProfile | None, events: Sequence[Any], limit: int = 3) -> list[str]:
    """Insights against named baselines, with their windows: the first access (or export) of a
    data type by this actor in the days it has been watched, and data none of its peer group
    (its tenant's users of its kind on its partition, so a sample of them) reads."""
    who = ACTOR_WORD.get(profile.actor_type, "actor")
    out: dict[tuple[str, str], str] = {}
    for ev in events:
        sensitivity = getattr(ev, "sensitivity", None)
        resource = getattr(ev, "resource_type", None)
        if sensitivity is None or resource is None:
            continue
        ts = ev.ts.timestamp()
        watched = (ts - profile.first_seen) / DAY
        if watched < 7.0:
            continue  # "first" means little for an actor seen for days
        verb = "export" if ev.action == "export" else "access"
        for tag, key, noun in (
            (T_SENSITIVITY, sensitivity, f"{sensitivity} data"),
            (T_RESOURCE, resource, f"{resource} records"),
        ):
            first = profile.first_use(tag, key)
            if first is not None and 0.0 <= ts - first < NOVEL_FOR and (verb, noun) not in out:
                out[(verb, noun)] = (
                    f"first {verb} of {noun} by this {who} in the {watched:.0f} days it has been watched"
                )
        if peer is not None and ("peers", resource) not in out and peer.watched_days(ts) >= 7.0 and peer.pushes >= 20:
            first = profile.first_use(T_RESOURCE, resource)
            # The group counted this actor once its first day with the resource closed.
            others = peer.users_of(resource) - (1 if first is not None and first < (ts // DAY) * DAY else 0)
            if others <= 0:
                # "Compared with", not "no other user of the tenant": the group is the tenant's
                # users on this actor's partition (the topic is keyed by actor), a sample.
                out[("peers", resource)] = (
                    f"none of the other {who}s of {profile.home} this one is compared with reads {resource} records "
                    f"({peer.pushes} of their working days watched over {peer.watched_days(ts):.0f} days)"
                )
    return list(out.values())[:limit]


def _reason(
    name: str,
    who: str,
    p: ActorProfile,
    peer: PeerProfile | None,
    now: float,
    w1: list[float],
    w24: list[float],
    x: Mapping[str, float],
    judged: list[float] | Live | None,
) -> str | None:
    if name == "new_country":
        new = ", ".join(labelled(c) for c in sorted(p.new_countries(now) or p.countries_used(now)))
        usual = ", ".join(labelled(c) for c in p.usual_countries(now)) or "none yet"
        extra = (
            f"; none of the tenant's {who}s this one is compared with has been active from there before"
            if peer and any(peer.country_new(c, now) for c in p.countries_used(now))
            else ""
        )
        return f"first activity from {new} for this {who}; usual: {usual}{extra}"
    if name == "new_network":
        level = p.network_novelty(now)
        what = "a provider network block" if level >= 2 else "a network (/24)"
        return f"connected from {what} this {who} has not used before"
    if name == "new_agent":
        return f"a device or client (user agent) not seen for this {who} before"
    if name == "offhour":
        hour = local_hour(now, p.zone)
        return f"active at {hour:02d}:00 local time ({p.zone}); this {who} usually works {_hours_span(p.hours)}"
    if name == "offhour_new_location":
        hour = local_hour(now, p.zone)
        return (
            f"active from the new location at {hour:02d}:00 local time ({p.zone}), an hour this {who} "
            f"does not keep at home or at the location's local time; usual hours {_hours_span(p.hours)}"
        )
    if name == "volume_24h_spread_vs_own":
        return (
            f"read {_n(p.background_volume(now, 1, w24, judged))} sensitive records today outside the busiest hour; "
            f"on a usual day this {who} reads {_n(p.spread_p50)}"
        )
    if name == "volume_3d_spread_vs_own":
        bg3 = p.background_volume(now, 3, w24, judged)
        return (
            f"read {_n(bg3)} sensitive records over the last 3 active days outside each "
            f"day's busiest hour; usual for 3 days: {_n(3 * p.spread_p50)}"
        )
    if name == "volume_cusum":
        return (
            f"sensitive reads outside the busiest hour ran above this {who}'s usual days by "
            f"{x.get('volume_cusum', 0.0):.1f} deviations in all (a sequential test over its recent days, "
            f"today included; usual day {_n(p.spread_p50)})"
        )
    if name == "elevated_days":
        days = int(x.get("elevated_days", 0))
        return f"{days} days in a row reading sensitive data well above usual"
    if name == "failed_logins_1h":
        return f"{_n(w1[W_FAILED])} failed logins in the last hour"
    if name == "novel_location_sensitive":
        return (
            f"{_n(w1[W_NOVEL_SENSITIVE])} sensitive or exported records read from the new location; "
            f"this {who}'s 95th-percentile hour of sensitive reads is {_n(p.sens_p95)}"
        )
    if name == "sensitive_1h_vs_own":
        return (
            f"read {_n(w1[W_SENSITIVE])} sensitive records in the last hour; "
            f"this {who}'s 95th-percentile hour is {_n(p.sens_p95)}"
        )
    if name == "volume_1h_vs_own":
        return (
            f"read {_n(w1[W_RECORDS])} records in the last hour; this {who}'s 95th-percentile hour is {_n(p.hour_p95)}"
        )
    if name == "volume_24h_vs_own":
        return (
            f"read {_n(w24[W_RECORDS])} records in the last 24 hours; "
            f"this {who}'s 95th-percentile day is {_n(p.day_p95)}"
        )
    if name == "volume_1h_vs_peers":
        peer_p99 = peer.hour_p99 if peer else 0.0
        return (
            f"read {_n(w1[W_RECORDS])} records in the last hour; 99% of hours of "
            f"the tenant's accounts this one is compared with stay under {_n(peer_p99)}"
        )
    if name == "sensitive_share_1h":
        share = w1[W_SENSITIVE] / w1[W_RECORDS] if w1[W_RECORDS] else 0.0
        return f"{share:.0%} of the records read in the last hour are personal, financial, payment or credentials"
    if name == "export_24h_vs_own":
        return (
            f"exported {_n(w24[W_EXPORT])} records in the last 24 hours; "
            f"this {who}'s 95th-percentile hour of exports is {_n(p.export_p95)}"
        )
    if name == "new_resource":
        return f"{_n(w24[W_NEW_RESOURCE])} records of data types this {who} has never accessed before"
    if name == "reads_after_role_change":
        when = datetime.fromtimestamp(p.role_change_ts, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")
        granted = ", ".join(p.after_role_seen) or "new roles"
        return (
            f"roles changed at {when} (granted: {granted}); since then read "
            f"{_n(w24[W_AFTER_ROLE])} records of data types this {who} never touched before"
        )
    if name == "crown_jewels_after_role_change":
        return (
            f"read {_n(w24[W_CROWN_AFTER_ROLE])} payment or credentials records of types this {who} "
            "never touched before, after its roles changed"
        )
    if name == "role_change_self":
        return "the role change came from this account's own device and network (self-granted)"
    if name == "role_change_24h":
        return f"roles of this {who} changed in the last 24 hours"
    if name == "dormancy":
        idle = p.burst_gap / DAY
        # The usual break as it stood when the idle stretch ended (before it joined the history).
        usual = idle / max(2.0**p.burst_level - 1.0, 1e-9)
        return f"first activity after {idle:.0f} days idle; this {who}'s usual longest break is {usual:.0f} days"
    if name == "unseen_for":
        watched = peer.watched_days(now) if peer else 0.0
        return f"no activity from this account in the {watched:.0f} days its tenant has been watched"
    if name == "offhour_vs_peers":
        hour = local_hour(now, p.zone)
        return f"active at {hour:02d}:00 local time ({p.zone}), an hour the colleagues it is compared with rarely work"
    if name == "new_network_for_peers":
        return "connected from a provider network none of the tenant's accounts this one is compared with has used"
    if name == "country_switch_1h":
        return f"activity from {p.countries_in_window(now)} countries within one hour"
    return None
