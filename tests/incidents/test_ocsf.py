"""The OCSF Detection Finding of an incident: validates against the OCSF schema (the maintained
``ocsf-json-schema`` package, not a check of our own), its type_uid agrees with its activity, the
ATT&CK tags come from the incident's kinds (and none for a kind that has none), and the schema
check really refuses what OCSF does not allow."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from breachwatch.core.attack import kind_techniques, techniques_of
from breachwatch.incidents import queries
from breachwatch.incidents.ocsf import VERSION, detection_finding
from breachwatch.incidents.store import IncidentStore
from breachwatch.incidents.tables import IncidentRow
from tests.fixtures.ocsf_schema import ocsf_errors


def _record(engine: Engine, incident_id: str) -> dict:
    with Session(engine) as session:
        incident = session.get(IncidentRow, incident_id)
        assert incident is not None
        return detection_finding(incident, queries.findings(session, incident_id))


def test_a_credential_stuffing_incident_validates_with_its_sub_technique(sqlite_engine, ev: SimpleNamespace) -> None:
    logins = [ev.login(n, actor=f"u-{n}", ip=f"203.0.113.{n}") for n in range(1, 4)]
    stuffing = ev.finding(logins, detector="rules.credential_stuffing", kind="credential_stuffing", actor=None)
    [incident] = IncidentStore(sqlite_engine).record([stuffing]).opened
    record = _record(sqlite_engine, incident)
    assert ocsf_errors(record) == []
    assert record["metadata"]["version"] == VERSION and record["class_uid"] == 2004
    [attack] = record["finding_info"]["attacks"]
    assert (attack["tactic"]["uid"], attack["technique"]["uid"], attack["sub_technique"]["uid"]) == (
        "TA0006",
        "T1110",
        "T1110.004",
    )
    assert {o["value"] for o in record["observables"] if o["type_id"] == 2} == {
        "203.0.113.1",
        "203.0.113.2",
        "203.0.113.3",
    }
    assert "user" not in record["evidences"][0]  # nobody in particular: an address-centric finding


def test_a_kind_with_no_known_technique_carries_no_attack_tags(sqlite_engine, ev: SimpleNamespace) -> None:
    odd = ev.finding([ev.log(1, message="template 17 burst")], detector="logs.session", kind="unmapped_kind")
    [incident] = IncidentStore(sqlite_engine).record([odd]).opened
    record = _record(sqlite_engine, incident)
    assert ocsf_errors(record) == []
    assert "attacks" not in record["finding_info"]
    assert record["finding_info"]["analytic"]["type_id"] == 2  # behavioural (the log detector)


def test_the_attack_table_must_and_must_not() -> None:
    assert [t.technique_id for t in techniques_of(["bulk_export"])] == ["T1213", "T1567"]
    assert techniques_of(["unmapped_kind"]) == []
    # Two kinds sharing a technique under one tactic list it once.
    assert [t.technique_id for t in techniques_of(["account_takeover", "dormant_account"])] == [
        "T1078",
        "T1213",
        "T1078",
    ]
    for kind, techniques in kind_techniques().items():
        for t in techniques:
            assert t.tactic_id.startswith("TA") and t.technique_id.startswith("T1"), kind


@pytest.mark.parametrize(
    ("breakage", "named"),
    [
        (lambda r: r.__setitem__("severity_id", "4"), "severity_id"),
        (lambda r: r["finding_info"].pop("uid"), "finding_info"),
        (lambda r: r.__setitem__("time", "2026-11-24T02:00:00Z"), "time"),
        (lambda r: r.__setitem__("incident_id", "x"), "incident_id"),
        (lambda r: r["finding_info"]["attacks"].__setitem__(0, {"version": "v16"}), "finding_info/attacks/0"),
        (lambda r: r["metadata"].__setitem__("profiles", []), "verdict"),  # incident attributes need the profile
        (lambda r: r.__setitem__("type_uid", 200401), "type_uid"),  # activity 3, type of activity 1
    ],
)
def test_the_schema_check_refuses_what_ocsf_does_not_allow(sqlite_engine, ev, breakage, named) -> None:
    [incident] = IncidentStore(sqlite_engine).record([ev.finding([ev.access(1)])]).opened
    with Session(sqlite_engine) as session, session.begin():
        row = session.get(IncidentRow, incident)
        assert row is not None
        row.status = "false_positive"  # closed (activity 3) with a verdict (the incident profile)
    record = _record(sqlite_engine, incident)
    assert ocsf_errors(record) == []
    broken = copy.deepcopy(record)
    breakage(broken)
    assert any(named in e for e in ocsf_errors(broken)), ocsf_errors(broken)
