"""The risk-of-harm assessment's vocabulary: the factors the statutes and guidance weigh, and how
each is rated. An assessment rates each factor it considers (low, medium or high, with a note),
and decides: notify, or not notify with its reasons.

The factors, and where they come from:

* sensitivity, identifiability, recipient, acquired, mitigation: the four factors of 45 CFR
  164.402(2)(i)-(iv) (the nature and extent of the PHI and the likelihood of re-identification;
  the unauthorised person who used it or to whom it was disclosed; whether it was actually
  acquired or viewed; the extent to which the risk has been mitigated);
* misuse: PIPEDA s10.1(8)(b) (the probability that the information has been, is being or will
  be misused), with sensitivity, s10.1(8)(a);
* protection and consequences: Privacy Act 1988 (Cth) s26WG (the kinds and sensitivity of the
  information, whether it is protected by security measures, the nature of the harm);
* volume, vulnerable: EDPB Guidelines 9/2022 on the criteria for assessing risk (the number of
  individuals affected; special characteristics of the individuals, e.g. children);
* consequences, mitigation: GDPR recitals 75-76 and Art 34(3)(b).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

FACTORS: Mapping[str, str] = {
    "sensitivity": "How sensitive the data is (identifiers, financial, health, special categories)",
    "identifiability": "How easily the individuals can be identified from it",
    "recipient": "Who obtained it, or could have (an unknown attacker, a trusted party)",
    "acquired": "Whether the data was actually acquired or viewed",
    "misuse": "The probability that it has been, is being or will be misused",
    "protection": "Security measures that protected it (encryption, masking)",
    "mitigation": "How far the risk has been mitigated (data retrieved, credentials reset)",
    "volume": "How many individuals and records are affected",
    "vulnerable": "Whether vulnerable individuals (children, patients) are affected",
    "consequences": "How severe the likely consequences are (identity theft, fraud, distress)",
}
LEVELS: tuple[str, ...] = ("low", "medium", "high")
DECISIONS: tuple[str, ...] = ("notify", "no_notify")
OWNERS: tuple[str, ...] = ("vendor", "customer")
MAX_NOTE = 2000


def checked_factors(factors: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """Factor -> {level, note}, or ValueError naming what is wrong. A bare level is accepted."""
    out: dict[str, dict[str, str]] = {}
    for name, value in factors.items():
        if name not in FACTORS:
            raise ValueError(f"unknown factor {str(name)[:40]!r}; expected some of: {', '.join(FACTORS)}")
        entry = {"level": value} if isinstance(value, str) else dict(value)
        level, note = entry.get("level"), entry.get("note") or ""
        if level not in LEVELS:
            raise ValueError(f"factor {name}: level must be one of {', '.join(LEVELS)}")
        if not isinstance(note, str) or len(note) > MAX_NOTE:
            raise ValueError(f"factor {name}: the note must be text of at most {MAX_NOTE} characters")
        out[str(name)] = {"level": str(level), "note": note}
    return out
