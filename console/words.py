"""How the console puts values into words: times (relative, with the absolute time on hover),
country names instead of codes, numbers, and text from events with its bidirectional
controls made visible, so a name or log message cannot reorder the console's own text."""

from __future__ import annotations

import ipaddress
import re
from datetime import UTC, datetime
from typing import Any

from markupsafe import Markup

from breachwatch.core import countries

# Embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069) reorder the text after
# them; the marks (U+200E, U+200F, U+061C) only nudge. All are shown as a visible code.
_BIDI = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def neutralise(value: Any) -> Any:
    """``value`` with every bidirectional control replaced by a visible ``[U+XXXX]``; used as
    the template environment's ``finalize``, so it applies to every value a page shows."""
    if isinstance(value, Markup):
        return Markup(_BIDI.sub(lambda m: f"[U+{ord(m.group()):04X}]", str(value)))
    if isinstance(value, str):
        return _BIDI.sub(lambda m: f"[U+{ord(m.group()):04X}]", value)
    return value


def _aware(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if value in (None, ""):
        return None
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def absolute(value: Any, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """``2026-11-24 02:05 UTC`` (an ISO string is read first); empty for nothing."""
    when = _aware(value)
    if when is None:
        return "" if value is None else str(value)
    return when.astimezone(UTC).strftime(fmt) + " UTC"


def relative(value: Any, now: datetime | None = None) -> str:
    """``5 min ago``, ``in 3 h``, ``2 days ago``: the distance from now in one unit."""
    when = _aware(value)
    if when is None:
        return ""
    now = now or datetime.now(UTC)
    seconds = (when - now).total_seconds()
    ahead, span = seconds > 0, abs(seconds)
    if span < 45:
        return "just now" if not ahead else "in a moment"
    if span < 3600:
        text = f"{max(1, round(span / 60))} min"
    elif span < 2 * 86400:
        text = f"{round(span / 3600)} h"
    else:
        text = f"{round(span / 86400)} days"
    return f"in {text}" if ahead else f"{text} ago"


def when(value: Any, fmt: str = "%Y-%m-%d %H:%M") -> Markup:
    """A ``<time>`` element: the relative time as text, the absolute time on hover and for
    machines (the page script keeps the relative text current)."""
    moment = _aware(value)
    if moment is None:
        return Markup("")
    iso = moment.astimezone(UTC).isoformat()
    return Markup('<time datetime="{}" title="{}">{}</time>').format(iso, absolute(moment, fmt), relative(moment))


def country(code: Any) -> str:
    """``Qatar`` for ``QA``; an unknown code is shown as it is."""
    return countries.name(code)


def words(value: str | None) -> str:
    return (value or "").replace("_", " ")


def num(value: Any) -> Any:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else value


def percent(value: Any) -> str:
    return f"{value:.0%}" if isinstance(value, int | float) else ""


_NUMBERS = re.compile(r"\d[\d,.]*")
_WORD = re.compile(r"[\w#-]+")
# What may be an IPv4 or IPv6 address or network; ``ipaddress`` decides (a time such as
# 15:13:02 or a figure such as 0.95 is not one). It ends in a hex digit, so a full stop after
# an address is not taken for part of it.
_ADDRESS_LIKE = re.compile(r"[0-9A-Fa-f]*[:.][0-9A-Fa-f:.]*[0-9A-Fa-f](?:/\d{1,3})?")
# An address becomes a word without digits, so that setting the numbers aside leaves it whole.
_SPELL = str.maketrans("0123456789.:/", "abcdefghijxyz")


def _spelled(match: re.Match[str]) -> str:
    text = match.group()
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return text
    return " ip" + text.lower().translate(_SPELL) + " "


def reason_key(reason: str) -> str:
    """What a reason says whatever its counts, times and word order. Network addresses are not
    numbers here: "34 failed logins from 192.0.2.7" and "23 failed logins from 192.0.2.9" are
    two runs, and folding them would hide one address's attack behind another's."""
    text = _ADDRESS_LIKE.sub(_spelled, reason.lower())
    # The same words in any order ("tenants: a, b and c" / "tenants: c, a and b") are one reason.
    return " ".join(sorted(_WORD.findall(_NUMBERS.sub("#", text))))


def distinct_reasons(reasons: list[str]) -> list[str]:
    """The reasons with repeats folded: findings of one pattern repeat a reason with growing
    counts ("exported 2 times", then "exported 3 times"); only the latest of each is kept, in
    the place of the first. Reasons that say the same in another order fold too."""
    latest: dict[str, str] = {}
    for reason in reasons:
        latest[reason_key(reason)] = reason
    return list(latest.values())
