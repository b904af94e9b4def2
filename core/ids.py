"""Deterministic ids and the small value helpers every layer names things with."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


def stable_id(*parts: str, length: int = 24) -> str:
    """A deterministic id: re-processing the same events yields the same id, so a
    re-delivered batch updates what it made the first time instead of adding to it."""
    h = hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()
    return h[:length]


def unique(values: Iterable[str | None]) -> tuple[str, ...]:
    """Distinct non-empty values in first-seen order (for ids, tenants, addresses)."""
    seen: dict[str, None] = {}
    for v in values:
        if v:
            seen.setdefault(v, None)
    return tuple(seen)


def network_prefix(ip: str | None) -> str | None:
    """The /24 of an IPv4 address or the /48 of an IPv6 one: the unit a user's network is
    recognised by (home and office addresses change within it; an attacker's do not)."""
    if not ip:
        return None
    if ":" in ip:
        groups = ip.split(":")
        if "" in groups[:3]:  # "::" inside the first three groups: expand properly
            import ipaddress

            try:
                full = ipaddress.IPv6Address(ip.split("%")[0]).exploded
            except ValueError:
                return None
            groups = full.split(":")
        return ":".join(g.lower() for g in groups[:3]) + "::/48"
    parts = ip.split(".")
    if len(parts) != 4:
        return None
    return f"{parts[0]}.{parts[1]}.{parts[2]}.0/24"
