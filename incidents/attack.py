"""MITRE ATT&CK (Enterprise) tactics and techniques per incident kind, for the standard formats
sent out (the OCSF topic, the API).

One table, kind -> (tactic, technique[, sub-technique]) pairs; a kind absent from it (a log
anomaly, an anomaly of no known shape) carries no ATT&CK tags rather than a guess. Ids and names
are ATT&CK's own (attack.mitre.org, Enterprise matrix, version ``VERSION``). Where a detector
tags its findings itself, those tags should win over this table (``attacks_for``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

VERSION = "v16"


@dataclass(frozen=True, slots=True)
class Tag:
    """An ATT&CK id and its name."""

    uid: str
    name: str


@dataclass(frozen=True, slots=True)
class Attack:
    """One tactic and the technique (and sub-technique) an incident kind is an instance of."""

    tactic: Tag
    technique: Tag
    sub_technique: Tag | None = None


INITIAL_ACCESS = Tag("TA0001", "Initial Access")
PERSISTENCE = Tag("TA0003", "Persistence")
PRIVILEGE_ESCALATION = Tag("TA0004", "Privilege Escalation")
DEFENSE_EVASION = Tag("TA0005", "Defense Evasion")
CREDENTIAL_ACCESS = Tag("TA0006", "Credential Access")
COLLECTION = Tag("TA0009", "Collection")
EXFILTRATION = Tag("TA0010", "Exfiltration")

VALID_ACCOUNTS = Tag("T1078", "Valid Accounts")
BRUTE_FORCE = Tag("T1110", "Brute Force")
INFORMATION_REPOSITORIES = Tag("T1213", "Data from Information Repositories")
WEB_SERVICE = Tag("T1567", "Exfiltration Over Web Service")
SIZE_LIMITS = Tag("T1030", "Data Transfer Size Limits")
ACCOUNT_MANIPULATION = Tag("T1098", "Account Manipulation")
ALTERNATE_AUTHENTICATION = Tag("T1550", "Use Alternate Authentication Material")

BY_KIND: dict[str, tuple[Attack, ...]] = {
    "account_takeover": (Attack(INITIAL_ACCESS, VALID_ACCOUNTS),),
    "dormant_account": (Attack(INITIAL_ACCESS, VALID_ACCOUNTS), Attack(PERSISTENCE, VALID_ACCOUNTS)),
    "credential_stuffing": (Attack(CREDENTIAL_ACCESS, BRUTE_FORCE, Tag("T1110.004", "Credential Stuffing")),),
    "brute_force": (Attack(CREDENTIAL_ACCESS, BRUTE_FORCE),),
    "bulk_export": (Attack(COLLECTION, INFORMATION_REPOSITORIES), Attack(EXFILTRATION, WEB_SERVICE)),
    "slow_exfiltration": (Attack(COLLECTION, INFORMATION_REPOSITORIES), Attack(EXFILTRATION, SIZE_LIMITS)),
    "cross_tenant_access": (Attack(COLLECTION, INFORMATION_REPOSITORIES),),
    "staff_without_ticket": (Attack(INITIAL_ACCESS, VALID_ACCOUNTS), Attack(COLLECTION, INFORMATION_REPOSITORIES)),
    "staff_ticket_mismatch": (Attack(INITIAL_ACCESS, VALID_ACCOUNTS), Attack(COLLECTION, INFORMATION_REPOSITORIES)),
    "staff_access_unapproved": (Attack(INITIAL_ACCESS, VALID_ACCOUNTS), Attack(COLLECTION, INFORMATION_REPOSITORIES)),
    "privilege_escalation": (
        Attack(PRIVILEGE_ESCALATION, ACCOUNT_MANIPULATION),
        Attack(COLLECTION, INFORMATION_REPOSITORIES),
    ),
    "service_key_misuse": (
        Attack(DEFENSE_EVASION, ALTERNATE_AUTHENTICATION, Tag("T1550.001", "Application Access Token")),
    ),
}


def attacks_for(kinds: Iterable[str]) -> list[Attack]:
    """The ATT&CK tags of incidents of these kinds (an incident's own and its findings'), each
    once, in the order of the kinds."""
    out: dict[Attack, None] = {}
    for kind in kinds:
        for attack in BY_KIND.get(kind, ()):
            out.setdefault(attack, None)
    return list(out)
