"""Every detection kind names its MITRE ATT&CK techniques, each under a tactic ATT&CK files it
under; incidents carry the techniques of every kind of finding they hold."""

from __future__ import annotations

import re

from breachwatch.core.attack import kind_techniques, techniques_of
from breachwatch.detectors.learned.models import ANOMALOUS, KINDS
from breachwatch.detectors.logs.detector import KIND_BURST, KIND_SESSION
from breachwatch.detectors.rules.detector import RULES


def test_every_kind_a_detector_raises_has_techniques() -> None:
    raised = {r.kind for r in RULES} | set(KINDS) | {ANOMALOUS, KIND_SESSION, KIND_BURST, "account_takeover"}
    table = kind_techniques()
    assert raised <= table.keys(), raised - table.keys()
    for kind in raised:
        assert table[kind], kind
        for t in table[kind]:
            assert re.fullmatch(r"T\d{4}(\.\d{3})?", t.technique_id) and re.fullmatch(r"TA\d{4}", t.tactic_id)
    # Each rule's metadata shows them too.
    stuffing = next(r for r in RULES if r.kind == "credential_stuffing")
    assert [(t.technique_id, t.tactic) for t in stuffing.attack] == [("T1110.004", "Credential Access")]


def test_the_named_ids_are_the_published_ones() -> None:
    # Must: the pairs the issue names. Must not: a technique under a tactic ATT&CK does not file it under.
    table = kind_techniques()
    assert ("T1110.004", "TA0006") in {(t.technique_id, t.tactic_id) for t in table["credential_stuffing"]}
    assert table["dormant_account"][0].technique == "Valid Accounts"
    assert table["bulk_export"][1].technique_id == "T1567" and table["bulk_export"][1].tactic == "Exfiltration"
    assert table["slow_exfiltration"][0].technique == "Data from Information Repositories"
    assert techniques_of(["no_such_kind"]) == []


def test_techniques_of_several_kinds_are_listed_once_in_order() -> None:
    got = [
        (t.technique_id, t.tactic_id) for t in techniques_of(["account_takeover", "bulk_export", "account_takeover"])
    ]
    assert got == [("T1078", "TA0001"), ("T1213", "TA0009"), ("T1567", "TA0010")]
    assert techniques_of(["credential_stuffing"])[0].url == "https://attack.mitre.org/techniques/T1110/004/"
