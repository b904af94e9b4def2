"""The traffic simulator writes a valid, deterministic, labelled dump whose attacks look like attacks."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jsonschema
import pytest

from breachwatch.core.events import (
    ACCESS,
    ALL_TOPICS,
    AUTH,
    EVENT_TOPICS,
    LOGS,
    MODEL_BY_TOPIC,
    SCHEMA_FILE,
    SENSITIVE,
    STAFF,
    TENANTS,
    TICKETS,
    AccessEvent,
    Staff,
    Ticket,
)
from breachwatch.core.justification import ApprovalPolicy, Grant
from breachwatch.core.reference import ReferenceTables
from breachwatch.detectors.rules.justification import justify
from breachwatch.devkit.simulate import (
    ACCESS_REQUESTS_FILE,
    LABELS_FILE,
    SCENARIO_KINDS,
    STAFF_SCENARIO_KINDS,
    SimulationSummary,
    simulate,
)

CONTRACTS = Path(__file__).resolve().parents[2] / "core" / "contracts"
TENANTS_N, DAYS = 8, 6


def _rows(dump: Path, topic: str) -> list[dict[str, Any]]:
    with (dump / f"{topic}.jsonl").open(encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


class Dump:
    """A simulated dump read back: rows per topic, labels and lookups the tests share."""

    def __init__(self, path: Path, summary: SimulationSummary) -> None:
        self.path = path
        self.summary = summary
        self.rows = {topic: _rows(path, topic) for topic in ALL_TOPICS}
        self.labels = json.loads((path / LABELS_FILE).read_text(encoding="utf-8"))
        self.by_id = {r["event_id"]: r for topic in EVENT_TOPICS for r in self.rows[topic]}
        self.clean_until = _ts(self.labels["clean_until"])
        self.tenants = {t["tenant_id"]: t for t in self.rows[TENANTS]}

    def scenarios(self, kind: str) -> list[dict[str, Any]]:
        return [s for s in self.labels["scenarios"] if s["kind"] == kind]

    def labelled_ids(self) -> set[str]:
        return {e for s in self.labels["scenarios"] for e in s["event_ids"]}

    def events_of(self, scenario: dict[str, Any], topic: str) -> list[dict[str, Any]]:
        rows = [self.by_id[e] for e in scenario["event_ids"]]
        keys = {ACCESS: "resource_type", AUTH: "outcome", LOGS: "service"}
        others = [k for t, k in keys.items() if t != topic]
        return sorted((r for r in rows if keys[topic] in r and not any(k in r for k in others)), key=lambda r: r["ts"])

    def tz(self, tenant_id: str) -> ZoneInfo:
        zones = {
            "PK": "Asia/Karachi",
            "DE": "Europe/Berlin",
            "GB": "Europe/London",
            "US-CA": "America/Los_Angeles",
            "US-NY": "America/New_York",
            "US-TX": "America/Chicago",
            "US-FL": "America/New_York",
            "IN": "Asia/Kolkata",
            "SG": "Asia/Singapore",
            "AU": "Australia/Sydney",
            "CA": "America/Toronto",
            "BR": "America/Sao_Paulo",
            "JP": "Asia/Tokyo",
            "SA": "Asia/Riyadh",
            "AE": "Asia/Dubai",
            "FR": "Europe/Paris",
            "NL": "Europe/Amsterdam",
        }
        return ZoneInfo(zones[self.tenants[tenant_id]["jurisdiction"]])


@pytest.fixture(scope="module")
def dump(tmp_path_factory: pytest.TempPathFactory) -> Dump:
    path = tmp_path_factory.mktemp("dump")
    summary = simulate(path, seed=11, days=DAYS, tenants=TENANTS_N)
    return Dump(path, summary)


def _validators() -> Iterator[tuple[str, jsonschema.protocols.Validator]]:
    for topic in ALL_TOPICS:
        schema = json.loads((CONTRACTS / SCHEMA_FILE[topic]).read_text(encoding="utf-8"))
        yield topic, jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


def test_writes_every_topic_and_labels(dump: Dump) -> None:
    names = sorted(p.name for p in dump.path.iterdir())
    assert names == sorted([*(f"{t}.jsonl" for t in ALL_TOPICS), LABELS_FILE, ACCESS_REQUESTS_FILE])
    for topic in ALL_TOPICS:
        assert dump.rows[topic], topic
        assert dump.summary.counts[topic] == len(dump.rows[topic])


def test_every_line_matches_the_contract_schema_and_model(dump: Dump) -> None:
    for topic, validator in _validators():
        model = MODEL_BY_TOPIC[topic]
        with (dump.path / f"{topic}.jsonl").open(encoding="utf-8") as f:
            for line in f:
                errors = list(validator.iter_errors(json.loads(line)))
                assert not errors, f"{topic}: {errors[0].message}: {line}"
                model.model_validate_json(line)


def test_event_files_are_sorted_by_time_and_ids_are_unique(dump: Dump) -> None:
    seen: set[str] = set()
    for topic in EVENT_TOPICS:
        times = [_ts(r["ts"]) for r in dump.rows[topic]]
        assert times == sorted(times), topic
        ids = [r["event_id"] for r in dump.rows[topic]]
        assert len(set(ids)) == len(ids), topic
        assert not seen & set(ids)
        seen |= set(ids)
    versions = [_ts(r["closed_at"] or r["opened_at"]) for r in dump.rows[TICKETS] if r["closed_at"]]
    assert versions == sorted(versions)
    for topic, key in ((TENANTS, "tenant_id"), (STAFF, "staff_id")):
        ids = [r[key] for r in dump.rows[topic]]
        assert len(set(ids)) == len(ids)


def test_events_stay_inside_the_window(dump: Dump) -> None:
    start, end = _ts(dump.labels["start"]), _ts(dump.labels["end"])
    assert end - start == timedelta(days=DAYS)
    for topic in EVENT_TOPICS:
        assert start <= _ts(dump.rows[topic][0]["ts"])
        assert _ts(dump.rows[topic][-1]["ts"]) < end


def test_same_seed_gives_identical_bytes_and_another_seed_differs(dump: Dump, tmp_path: Path) -> None:
    again = simulate(tmp_path / "again", seed=11, days=DAYS, tenants=TENANTS_N)
    other = simulate(tmp_path / "other", seed=12, days=DAYS, tenants=TENANTS_N)
    for name in [*(f"{t}.jsonl" for t in ALL_TOPICS), LABELS_FILE]:
        assert (dump.path / name).read_bytes() == (tmp_path / "again" / name).read_bytes(), name
    assert (dump.path / f"{ACCESS}.jsonl").read_bytes() != (tmp_path / "other" / f"{ACCESS}.jsonl").read_bytes()
    assert again.counts == dump.summary.counts
    assert other.counts != dump.summary.counts


def test_labels_header_and_attack_window(dump: Dump) -> None:
    labels = dump.labels
    assert (labels["seed"], labels["days"], labels["tenants"]) == (11, DAYS, TENANTS_N)
    # The default attack window is the last third of the days.
    assert _ts(labels["end"]) - dump.clean_until == timedelta(days=DAYS // 3)
    assert dump.summary.clean_until == dump.clean_until
    for entry in labels["scenarios"] + labels["hard_negatives"]:
        assert set(entry) == {
            "scenario_id",
            "kind",
            "start",
            "end",
            "actor_ids",
            "tenant_ids",
            "source_ips",
            "event_ids",
            "description",
        }
        assert entry["event_ids"]
        assert _ts(entry["start"]) <= _ts(entry["end"])


def test_every_labelled_event_exists_and_lies_in_the_attack_window(dump: Dump) -> None:
    for entry in dump.labels["scenarios"] + dump.labels["hard_negatives"]:
        for eid in entry["event_ids"]:
            assert eid in dump.by_id, (entry["scenario_id"], eid)
            assert _ts(dump.by_id[eid]["ts"]) >= dump.clean_until, entry["scenario_id"]
    ids = [e for s in dump.labels["scenarios"] for e in s["event_ids"]]
    assert len(ids) == len(set(ids)), "an event belongs to two scenarios"


def test_every_scenario_kind_is_present_at_least_twice(dump: Dump) -> None:
    kinds = defaultdict(int)
    for s in dump.labels["scenarios"]:
        kinds[s["kind"]] += 1
    assert set(kinds) == set(SCENARIO_KINDS)
    assert min(kinds.values()) >= 2
    assert dump.summary.scenarios == dict(kinds)
    negatives = {s["kind"] for s in dump.labels["hard_negatives"]}
    assert {"password_typo", "month_end_export", "staff_ticket_without_id"} <= negatives


def test_customer_directory_spans_jurisdictions_with_a_german_tenant(dump: Dump) -> None:
    tenants = dump.rows[TENANTS]
    german = [t for t in tenants if t["jurisdiction"] == "DE"]
    assert german and all(t["locale"] == "de" for t in german)
    assert len({t["jurisdiction"] for t in tenants}) >= 5
    for t in tenants:
        assert {c["role"] for c in t["contacts"]} >= {"owner", "security"}
        assert all(c["email"].endswith(".example") for c in t["contacts"])
        assert t["data_subjects"] > 0


def test_no_unlabelled_customer_reads_another_tenant(dump: Dump) -> None:
    labelled = dump.labelled_ids()
    for r in dump.rows[ACCESS]:
        if r["actor_type"] != "staff" and r["actor_tenant"] != r["tenant_id"]:
            assert r["event_id"] in labelled
    for s in dump.scenarios("cross_tenant_access"):
        reads = dump.events_of(s, ACCESS)
        assert all(r["actor_tenant"] != r["tenant_id"] for r in reads)
        assert any(r.get("outcome", "success") == "success" for r in reads)


def _tables(dump: Dump) -> ReferenceTables:
    """The dump's tickets and staff, and its approvals as the backtest loads them (links last
    72 hours, so an undecided request expires then or when its window ends)."""
    tables = ReferenceTables()
    for line in (dump.path / f"{TICKETS}.jsonl").read_text(encoding="utf-8").splitlines():
        ticket = Ticket.model_validate_json(line)
        tables.apply(TICKETS, ticket.ticket_id, ticket)
    for line in (dump.path / f"{STAFF}.jsonl").read_text(encoding="utf-8").splitlines():
        staff = Staff.model_validate_json(line)
        tables.apply(STAFF, staff.staff_id, staff)
    doc = json.loads((dump.path / ACCESS_REQUESTS_FILE).read_text(encoding="utf-8"))
    grants = []
    for r in doc["requests"]:
        decided = _ts(r["decided_at"]) if r["decided_at"] else None
        state = {"approve": "approved", "deny": "denied", None: "expired"}[r["decision"]]
        grants.append(
            Grant(
                request_id=r["request_id"],
                tenant_id=r["tenant_id"],
                staff_ids=tuple(r["staff_ids"]),
                ticket_id=r["ticket_id"],
                purpose=r["purpose"],
                starts_at=_ts(r["starts_at"]),
                ends_at=_ts(r["ends_at"]),
                filed_at=_ts(r["filed_at"]),
                expires_at=min(_ts(r["filed_at"]) + timedelta(hours=72), _ts(r["ends_at"])),
                state="revoked" if r["revoked_at"] else state,
                decided_at=decided,
                revoked_at=_ts(r["revoked_at"]) if r["revoked_at"] else None,
            )
        )
    tables.grants.replace([ApprovalPolicy(p["tenant_id"], _ts(p["since"])) for p in doc["policies"]], grants)
    return tables


def test_staff_access_is_justified_except_in_the_staff_scenarios(dump: Dump) -> None:
    """Every staff access outside the staff scenarios has a ticket that fits it, a purpose that
    covers it and, where the tenant requires it, an approval; none inside them does."""
    tables = _tables(dump)
    kinds = ("staff_snooping", *STAFF_SCENARIO_KINDS)
    unjustified = {e for k in kinds for s in dump.scenarios(k) for e in s["event_ids"]}
    staff = [r for r in dump.rows[ACCESS] if r["actor_type"] == "staff"]
    assert any("ticket_id" not in r or r["ticket_id"] is None for r in staff if r["event_id"] not in unjustified)
    for r in staff:
        j = justify(AccessEvent.model_validate_json(json.dumps(r)), tables)
        assert j.justified is (r["event_id"] not in unjustified), (r, j.problems)
    for s in dump.scenarios("staff_snooping"):
        assert any(dump.by_id[e].get("sensitivity") == "personal" for e in s["event_ids"])
    negatives = {s["kind"] for s in dump.labels["hard_negatives"]}
    assert "staff_export_on_request" in negatives


def test_staff_scenarios_show_each_kind_of_mismatch(dump: Dump) -> None:
    tables = _tables(dump)
    expected = {
        "staff_ticket_wrong_tenant": "ticket_other_tenant",
        "staff_ticket_expired": "ticket_outside_window",
        "staff_ticket_other_assignee": "ticket_other_assignee",
        "staff_export_off_purpose": "purpose_excludes_export",
        "staff_access_unapproved": "approval_missing",
    }
    for kind, code in expected.items():
        for s in dump.scenarios(kind):
            for r in dump.events_of(s, ACCESS):
                j = justify(AccessEvent.model_validate_json(json.dumps(r)), tables)
                assert code in [p.code for p in j.problems], (kind, r, j.problems)


def test_contract_1_1_fields(dump: Dump) -> None:
    tickets = dump.rows[TICKETS]
    assert {t["requested_by"] for t in tickets} == {"customer", "vendor"}
    assert all(t["summary"] for t in tickets)
    assert all(t["requested_by"] == "vendor" for t in tickets if t["kind"] != "support")
    assert all(m["country"] == "PK" for m in dump.rows[STAFF])
    for t in dump.rows[TENANTS]:
        split = t["data_subjects_by_jurisdiction"]
        assert sum(split.values()) == t["data_subjects"] and t["jurisdiction"] in split


def test_tenants_that_require_approval_approve_every_ticket_session(dump: Dump) -> None:
    doc = json.loads((dump.path / ACCESS_REQUESTS_FILE).read_text(encoding="utf-8"))
    required = {p["tenant_id"] for p in doc["policies"]}
    assert required and all(p["approvers"] for p in doc["policies"])
    states = {r["decision"] for r in doc["requests"]}
    assert {"approve"} <= states
    assert any(r["revoked_at"] for r in doc["requests"]) or {"deny", None} & states
    assert {r["tenant_id"] for r in doc["requests"]} <= required


def test_account_takeover_is_a_night_login_from_a_new_country(dump: Dump) -> None:
    for s in dump.scenarios("account_takeover"):
        actor, tenant = s["actor_ids"][0], s["tenant_ids"][0]
        before = {
            (r["ip"], r["country"])
            for r in dump.rows[AUTH]
            if r["actor_id"] == actor and _ts(r["ts"]) < dump.clean_until
        }
        logins = [r for r in dump.events_of(s, AUTH) if r["action"] == "login" and r["outcome"] == "success"]
        assert logins
        first = logins[0]
        assert first["country"] not in {c for _, c in before}
        assert first["ip"] not in {ip for ip, _ in before}
        local = _ts(first["ts"]).astimezone(dump.tz(tenant))
        assert local.hour < 6
        assert sum(r["records"] for r in dump.events_of(s, ACCESS) if r["sensitivity"] == "personal") > 100


def test_credential_stuffing_sprays_many_accounts_from_few_addresses(dump: Dump) -> None:
    for s in dump.scenarios("credential_stuffing"):
        auth = dump.events_of(s, AUTH)
        failures = [r for r in auth if r["action"] == "login" and r["outcome"] == "failure"]
        assert len(failures) >= 50
        assert len({r["actor_id"] for r in failures}) >= 10
        assert len({r["actor_tenant"] for r in failures}) >= 2
        assert len({r["ip"] for r in auth}) <= 4
        opened = {r["actor_id"] for r in auth if r["action"] == "login" and r["outcome"] == "success"}
        assert opened and set(s["actor_ids"]) == opened
        assert dump.events_of(s, ACCESS), "a successful account read data"


def test_slow_exfiltration_reads_several_times_the_usual_volume(dump: Dump) -> None:
    for s in dump.scenarios("slow_exfiltration"):
        actor, tz = s["actor_ids"][0], dump.tz(s["tenant_ids"][0])
        per_day: dict[Any, int] = defaultdict(int)
        for r in dump.rows[ACCESS]:
            if r["actor_id"] == actor:
                day = _ts(r["ts"]).astimezone(tz).date()
                per_day[day] += (
                    r["records"] if r["sensitivity"] in SENSITIVE and r["action"] in ("read", "search") else 0
                )
        # Day n of the window is the same calendar date everywhere: local dates before the attack window.
        clean = [v for d, v in per_day.items() if d < dump.clean_until.date()]
        baseline = sum(clean) / max(len(clean), 1)
        attack_days = {_ts(dump.by_id[e]["ts"]).astimezone(tz).date() for e in s["event_ids"]}
        assert min(per_day[d] for d in attack_days) > 2.5 * baseline
        hours = {_ts(r["ts"]).astimezone(tz).hour for r in dump.events_of(s, ACCESS)}
        assert all(6 <= h <= 22 for h in hours)


def _silences(dump: Dump) -> list[timedelta]:
    """For each dormant-account scenario, the time between the account's last use and its wake-up."""
    gaps = []
    for s in dump.scenarios("dormant_account"):
        actor = s["actor_ids"][0]
        wake = _ts(s["start"])
        earlier = [
            _ts(r["ts"]) for t in (ACCESS, AUTH) for r in dump.rows[t] if r["actor_id"] == actor and _ts(r["ts"]) < wake
        ]
        assert earlier, "the account has history before it went quiet"
        assert max(earlier) < dump.clean_until
        assert any(r["sensitivity"] in SENSITIVE for r in dump.events_of(s, ACCESS))
        gaps.append(wake - max(earlier))
    return gaps


def test_dormant_account_wakes_after_a_silence(dump: Dump) -> None:
    gaps = _silences(dump)
    assert gaps and min(gaps) >= timedelta(days=1)


def test_dormant_account_silence_is_a_month_in_a_long_window(tmp_path: Path) -> None:
    summary = simulate(tmp_path, seed=2, days=45, tenants=3, events_per_user_day=3)
    gaps = _silences(Dump(tmp_path, summary))
    assert gaps and min(gaps) >= timedelta(days=30)


def test_service_key_misuse_comes_from_a_network_the_key_never_used(dump: Dump) -> None:
    for s in dump.scenarios("service_key_misuse"):
        key = s["actor_ids"][0]
        usual = {r["ip"] for r in dump.rows[ACCESS] if r["actor_id"] == key and r["event_id"] not in s["event_ids"]}
        reads = dump.events_of(s, ACCESS)
        assert reads and all(r["actor_type"] == "service" for r in reads)
        assert not usual & {r["ip"] for r in reads}
        usual_resources = {
            r["resource_type"]
            for r in dump.rows[ACCESS]
            if r["actor_id"] == key and r["event_id"] not in s["event_ids"]
        }
        assert {r["resource_type"] for r in reads} - usual_resources


def test_privilege_escalation_grants_admin_then_reads_secrets(dump: Dump) -> None:
    for s in dump.scenarios("privilege_escalation"):
        auth = dump.events_of(s, AUTH)
        grant = next(r for r in auth if r["action"] == "role_change")
        assert "admin" in grant["roles"]
        after = [r for r in dump.events_of(s, ACCESS) if r["ts"] > grant["ts"]]
        assert {r["sensitivity"] for r in after} & {"credentials", "payment"}


def test_bulk_export_dwarfs_the_tenants_usual_exports(dump: Dump) -> None:
    for s in dump.scenarios("bulk_export"):
        tenant = s["tenant_ids"][0]
        usual = [
            r["records"]
            for r in dump.rows[ACCESS]
            if r["tenant_id"] == tenant
            and r["action"] == "export"
            and r["sensitivity"] in ("personal", "payment")
            and r["event_id"] not in dump.labelled_ids()
        ]
        biggest = max(r["records"] for r in dump.events_of(s, ACCESS) if r["action"] == "export")
        assert biggest > 5 * max(usual, default=0)


def test_month_end_exports_happen_at_month_end(dump: Dump) -> None:
    for s in (x for x in dump.labels["hard_negatives"] if x["kind"] == "month_end_export"):
        day = _ts(s["start"]).astimezone(dump.tz(s["tenant_ids"][0])).date()
        assert day.day >= 25 or day.day <= 5


def test_progress_reports_growing_counts(tmp_path: Path) -> None:
    seen: list[int] = []
    summary = simulate(tmp_path, seed=3, days=3, tenants=2, attack_days=1, progress=seen.append)
    assert seen == sorted(seen) and seen[-1] == summary.events
    assert summary.to_dict()["events"] == summary.events
    assert summary.start == datetime(2026, 11, 30, tzinfo=UTC)


def test_start_and_attack_days_are_honoured(tmp_path: Path) -> None:
    start = datetime(2027, 3, 1, tzinfo=UTC)
    simulate(tmp_path, seed=5, days=4, tenants=3, attack_days=2, start=start)
    labels = json.loads((tmp_path / LABELS_FILE).read_text(encoding="utf-8"))
    assert labels["start"] == "2027-03-01T00:00:00Z"
    assert labels["clean_until"] == "2027-03-03T00:00:00Z"
    assert all(_ts(s["start"]) >= _ts(labels["clean_until"]) for s in labels["scenarios"])


def test_the_shortest_window_allowed_simulates(tmp_path: Path) -> None:
    summary = simulate(tmp_path, seed=2, days=3, tenants=2)
    labels = json.loads((tmp_path / LABELS_FILE).read_text(encoding="utf-8"))
    assert summary.events > 0 and _ts(labels["end"]) - _ts(labels["start"]) == timedelta(days=3)


@pytest.mark.parametrize(
    "kwargs",
    [{"days": 2}, {"tenants": 1}, {"attack_days": 6}, {"attack_days": 0}, {"events_per_user_day": 0}],
)
def test_rejects_impossible_arguments(tmp_path: Path, kwargs: dict[str, Any]) -> None:
    args = {"days": 6, "tenants": 3, **kwargs}
    with pytest.raises(ValueError):
        simulate(tmp_path, **args)
