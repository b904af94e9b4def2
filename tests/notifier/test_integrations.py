"""Incident changes reach the outside systems through the outbox, as ``run`` and the console
wire them: every change of an incident's life (opened, new findings, acknowledged, breach
confirmed, resolved, reopened, false positive, merged away) as an OCSF Detection Finding that
validates against the OCSF schema; PagerDuty told of acknowledgement, resolution and
reopening and of nothing else; Jira and the webhook told of every change; all in order per
incident and system, and a batch stored twice queues nothing twice."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from breachwatch.core.clock import utcnow
from breachwatch.core.settings import ConfigError, Settings, load_settings
from breachwatch.incidents import lifecycle
from breachwatch.notifier.integrations import change_channel_names
from breachwatch.notifier.outbox import OutboxRow
from breachwatch.notifier.paging import silences
from breachwatch.runtime.app import incident_store, lifecycle_hooks
from tests.fixtures.incident_db import access, finding, login
from tests.fixtures.ocsf_schema import ocsf_errors

WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"fictional-webhook-key-for-tests!").decode()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        outbox_dir=tmp_path / "outbox",
        pagerduty_routing_key="R0UT1NGKEYF1CT10NAL0000000000001",
        jira_url="https://unisen-sec.example",
        jira_email="breachwatch-bot@unisen.example",
        jira_api_token="jira-fictional-token",
        jira_project="SEC",
        webhook_url="https://hooks.unisen.example/breachwatch",
        webhook_secret=WEBHOOK_SECRET,
    )


def _rows(engine: Engine, channel: str, incident_id: str | None = None) -> list[OutboxRow]:
    with Session(engine) as session:
        query = select(OutboxRow).where(OutboxRow.channel == channel)
        if incident_id is not None:
            query = query.where(OutboxRow.incident_id == incident_id)
        rows = list(session.scalars(query.order_by(OutboxRow.incident_id, OutboxRow.seq)))
        session.expunge_all()
        return rows


def _act(engine: Engine, settings: Settings, call: Callable[..., Any], *args: Any, **kw: Any) -> None:
    with Session(engine) as session, session.begin():
        call(session, *args, on_change=lifecycle_hooks(settings), **kw)


def _life(engine: Engine, settings: Settings) -> str:
    """An incident's life: opened, more findings, acknowledged, breach confirmed, resolved, then
    reopened by new evidence within a week, and finally judged a false positive."""
    store = incident_store(settings, engine)
    [incident] = store.record([finding([access(1), access(2)])]).opened
    store.record([finding([access(3, minutes=5)], detector="learned", kind="slow_exfiltration", severity="critical")])
    _act(engine, settings, lifecycle.transition, incident, "acknowledge", "ada", None)
    _act(engine, settings, lifecycle.confirm_breach, incident, "ada", "records left the tenant")
    _act(engine, settings, lifecycle.transition, incident, "resolve", "ada", "access revoked, tenant told")
    store.record([finding([access(4, minutes=60)], detector="rules.other_export")])
    _act(engine, settings, lifecycle.transition, incident, "false_positive", "bo", "the tenant's own warehouse")
    return incident


def test_every_change_is_an_ocsf_detection_finding_that_validates(engine, settings) -> None:
    incident = _life(engine, settings)
    rows = _rows(engine, "ocsf", incident)
    records = [json.loads(r.body_text) for r in rows]
    for record in records:
        assert ocsf_errors(record) == [], record["unmapped"]["breachwatch"]["change"]
    changes = [r["unmapped"]["breachwatch"]["change"]["action"] for r in records]
    assert changes == ["opened", "updated", "acknowledge", "confirm_breach", "resolve", "reopen", "false_positive"]
    assert [r["activity_id"] for r in records] == [1, 2, 2, 2, 3, 2, 3]
    assert [r["status_id"] for r in records] == [1, 1, 2, 2, 4, 1, 3]
    assert [r["is_suspected_breach"] for r in records] == [False, False, False, True, True, True, True]
    assert records[-1]["verdict_id"] == 1 and records[3]["verdict_id"] == 2
    assert [r.seq for r in rows] == list(range(1, 8))
    last = records[-1]
    assert last["finding_info"]["uid"] == incident and last["type_uid"] == 200403
    assert last["severity_id"] == 5  # the slow exfiltration raised it to critical
    tactics = {a["tactic"]["uid"] for a in last["finding_info"]["attacks"]}
    techniques = {a["technique"]["uid"] for a in last["finding_info"]["attacks"]}
    assert tactics == {"TA0009", "TA0010"} and {"T1213", "T1567", "T1030"} <= techniques
    assert len(last["evidences"]) == 3 and last["evidences"][0]["user"] == {"uid": "u-hans"}
    assert last["unmapped"]["breachwatch"]["change"]["actor"] == "bo"


def test_pagerduty_hears_of_taking_closing_and_reopening_only(engine, settings) -> None:
    incident = _life(engine, settings)
    rows = _rows(engine, "pagerduty", incident)
    pages = [(r.message_type, r.headers.get("X-BreachWatch-Page-Action", "trigger")) for r in rows]
    assert pages == [
        ("oncall_alert", "trigger"),  # the first page
        ("incident.acknowledged", "acknowledge"),
        ("incident.resolved", "resolve"),
        ("incident.reopened", "trigger"),
        ("incident.false_positive", "resolve"),
    ]
    assert [r.seq for r in rows] == [1, 2, 3, 4, 5]


def test_jira_and_the_webhook_hear_of_every_change(engine, settings) -> None:
    incident = _life(engine, settings)
    expected = [
        "incident.opened",
        "incident.updated",
        "incident.acknowledged",
        "incident.breach_confirmed",
        "incident.resolved",
        "incident.reopened",
        "incident.false_positive",
    ]
    assert [r.message_type for r in _rows(engine, "jira", incident)] == expected
    hooks = [r.message_type for r in _rows(engine, "webhook", incident)]
    assert hooks == ["oncall_alert", *expected]
    ack = _rows(engine, "jira", incident)[2]
    assert ack.body_text.startswith(f"Incident {incident} acknowledged by ada.")
    assert ack.headers["X-BreachWatch-Status"] == "acknowledged"


def test_a_batch_stored_twice_queues_each_change_once(engine, settings) -> None:
    store = incident_store(settings, engine)
    batch = [finding([access(1), access(2)]), finding([login(1, actor="u-eve", ip="203.0.113.9")], actor="u-eve")]
    store.record(batch)
    with Session(engine) as session:
        before = len(session.scalars(select(OutboxRow)).all())
    store.record(batch)
    with Session(engine) as session:
        assert len(session.scalars(select(OutboxRow)).all()) == before


def test_merging_closes_the_source_and_updates_the_target(engine, settings) -> None:
    store = incident_store(settings, engine)
    [a] = store.record([finding([access(1)])]).opened
    [b] = store.record([finding([access(1, actor="u-ines")], actor="u-ines")]).opened
    _act(engine, settings, lifecycle.merge, a, [b], "ada", "one insider, two accounts")
    source = [json.loads(r.body_text) for r in _rows(engine, "ocsf", b)]
    target = [json.loads(r.body_text) for r in _rows(engine, "ocsf", a)]
    assert [(r["activity_id"], r["status_id"]) for r in source] == [(1, 1), (3, 4)]
    assert "evidences" not in source[-1]  # its findings moved to the target
    assert [r["activity_id"] for r in target] == [1, 2] and len(target[-1]["evidences"]) == 2
    assert all(ocsf_errors(r) == [] for r in source + target)
    assert [r.headers.get("X-BreachWatch-Page-Action") for r in _rows(engine, "pagerduty", b)][-1] == "resolve"


def test_a_split_off_incident_is_created_in_every_system(engine, settings) -> None:
    store = incident_store(settings, engine)
    first, second = finding([access(1)]), finding([access(2, minutes=3)], detector="learned", kind="slow_exfiltration")
    [incident] = store.record([first, second]).opened
    _act(engine, settings, lifecycle.split, incident, [second.finding_id], "ada", "a separate pattern")
    with Session(engine) as session:
        new = session.scalars(select(OutboxRow.incident_id).where(OutboxRow.incident_id != incident)).first()
    [record] = [json.loads(r.body_text) for r in _rows(engine, "ocsf", new)]
    assert record["activity_id"] == 1 and ocsf_errors(record) == []
    assert [r.message_type for r in _rows(engine, "jira", new)] == ["incident.split_from"]


def test_a_reopened_incident_under_a_silence_is_not_triggered(engine, settings) -> None:
    store = incident_store(settings, engine)
    [incident] = store.record([finding([access(1)])]).opened
    _act(engine, settings, lifecycle.transition, incident, "resolve", "ada", "done")
    with Session(engine) as session, session.begin():
        silences.add(session, "ada", "pen test this week", utcnow() + timedelta(days=1), actor_id="u-hans")
    store.record([finding([access(5, minutes=30)], detector="rules.other_export")])
    actions = [r.headers.get("X-BreachWatch-Page-Action") for r in _rows(engine, "pagerduty", incident)]
    assert actions == [None, "resolve"]  # the first page, the resolution; no trigger on reopening


def test_no_system_configured_queues_nothing_but_the_default_topic(engine, tmp_path) -> None:
    plain = Settings(outbox_dir=tmp_path / "outbox")
    assert change_channel_names(plain) == ["ocsf"]
    assert change_channel_names(Settings(outbox_dir=tmp_path, ocsf_topic="")) == []
    store = incident_store(plain, engine)
    store.record([finding([access(1)])])
    with Session(engine) as session:
        assert sorted({r.channel for r in session.scalars(select(OutboxRow))}) == ["email", "ocsf"]


def test_a_half_configured_jira_stops_start_up_naming_what_is_missing(tmp_path) -> None:
    with pytest.raises(ConfigError, match="BREACHWATCH_JIRA_API_TOKEN, BREACHWATCH_JIRA_PROJECT"):
        change_channel_names(
            load_settings(jira_url="https://unisen-sec.example", jira_email="bot@unisen.example", outbox_dir=tmp_path)
        )


def test_a_webhook_secret_that_is_not_a_standard_webhooks_key_stops_start_up(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"BREACHWATCH_WEBHOOK_SECRET: .*whsec_") as caught:
        load_settings(webhook_secret="a-plain-shared-password", outbox_dir=tmp_path)
    assert "a-plain-shared-password" not in str(caught.value)
