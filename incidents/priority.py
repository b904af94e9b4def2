"""Which incident to look at first, beyond severity: a 0-100 priority from the detector's
score, how sensitive the data is, how many records, and how long it has waited for a person.

Severity has four values and most serious incidents are "critical"; the priority orders them.
It is read from what an incident row holds (no evidence is read), so a list of thousands is
ranked at once.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime

from breachwatch.core.clock import utcnow
from breachwatch.incidents.model import CLOSED_STATUSES
from breachwatch.incidents.tables import IncidentRow

# Words the findings use for the data they touched, and what each adds (the most sensitive wins).
SENSITIVITY: tuple[tuple[str, float], ...] = (
    ("credentials", 15.0),
    ("payment", 15.0),
    ("health", 15.0),
    ("personal", 10.0),
    ("financial", 6.0),
    ("confidential", 6.0),
)
_WORDS = re.compile(r"\b(" + "|".join(w for w, _ in SENSITIVITY) + r")\b", re.IGNORECASE)
RECORD_FACTS = ("records_over_limit", "records", "sensitive_records", "records_last_24h")


@dataclass(frozen=True, slots=True)
class Priority:
    value: float
    parts: dict[str, float]

    def explain(self) -> str:
        return ", ".join(f"{k} {v:.0f}" for k, v in self.parts.items() if v)


def _records(incident: IncidentRow) -> int:
    facts = incident.facts or {}
    best = 0
    for name in RECORD_FACTS:
        value = facts.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            best = max(best, int(value))
    return best


def _sensitivity(incident: IncidentRow) -> float:
    text = " ".join([incident.title, *(incident.reasons or [])[:6]])
    weights = dict(SENSITIVITY)
    return max((weights[m.lower()] for m in _WORDS.findall(text)), default=0.0)


def priority(incident: IncidentRow, *, now: datetime | None = None, breach: bool = False) -> Priority:
    """The incident's priority; closed incidents rank by their score alone."""
    now = now or utcnow()
    parts = {"score": round(0.55 * incident.score, 1)}
    if incident.status not in CLOSED_STATUSES:
        parts["data"] = _sensitivity(incident)
        records = _records(incident)
        parts["records"] = min(15.0, 3.0 * math.log10(records)) if records > 1 else 0.0
        # Waiting counts only while nobody has taken it: an hour unacknowledged adds 2.5, up to 10.
        if incident.status == "open":
            waited = (now - incident.created_at).total_seconds() / 3600 if incident.created_at else 0.0
            parts["waiting"] = min(10.0, max(0.0, 2.5 * waited))
        if breach:
            parts["breach"] = 5.0
    return Priority(min(100.0, round(sum(parts.values()), 1)), parts)
