"""The backtest's judge: what counts as catching a scenario, a false incident, time to detect."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from breachwatch.devkit.backtest import evaluate
from breachwatch.incidents.model import IncidentOut

CLEAN_UNTIL = datetime(2026, 11, 26, tzinfo=UTC)
END = CLEAN_UNTIL + timedelta(days=7)


def iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def scenario(sid: str, kind: str, start: datetime, minutes: int, actor: str, events: list[str]) -> dict[str, Any]:
    return {
        "scenario_id": sid,
        "kind": kind,
        "start": iso(start),
        "end": iso(start + timedelta(minutes=minutes)),
        "actor_ids": [actor],
        "source_ips": [],
        "event_ids": events,
    }


def incident(
    iid: str,
    opened: datetime,
    kind: str,
    actor: str,
    events: list[str] | None = None,
    detected: datetime | None = None,
) -> IncidentOut:
    return IncidentOut(
        incident_id=iid,
        opened_at=opened,
        updated_at=opened + timedelta(hours=1),
        detected_at=detected,
        severity="high",
        kind=kind,
        title=f"{kind}: {actor}",
        actor_ids=[actor],
        score=80.0,
        evidence_event_ids=events or [],
    )


ATTACK = CLEAN_UNTIL + timedelta(days=2, hours=3)
LABELS: dict[str, Any] = {
    "start": iso(CLEAN_UNTIL - timedelta(days=14)),
    "end": iso(END),
    "clean_until": iso(CLEAN_UNTIL),
    "tenants": 50,
    "scenarios": [
        scenario("sc-1", "account_takeover", ATTACK, 20, "u-one", ["e-1", "e-2"]),
        scenario("sc-2", "account_takeover", ATTACK + timedelta(days=1), 20, "u-two", ["e-3"]),
        scenario("sc-3", "dormant_account", ATTACK, 30, "u-three", ["e-4"]),
    ],
    "hard_negatives": [scenario("hn-1", "business_trip", ATTACK, 600, "u-traveller", [])],
}


def test_recall_precision_false_rate_and_time_to_detect() -> None:
    # Time to detect runs to each incident's detected_at, not to when its evidence starts.
    incidents = [
        incident(
            "i-1", ATTACK + timedelta(minutes=1), "account_takeover", "u-one", ["e-2"], ATTACK + timedelta(minutes=2)
        ),
        # Names sc-3's actor while it runs, without sharing an event: still a detection.
        incident(
            "i-2", ATTACK + timedelta(minutes=5), "dormant_account", "u-three", None, ATTACK + timedelta(minutes=6)
        ),
        incident("i-3", ATTACK + timedelta(hours=2), "account_takeover", "u-traveller"),
        incident("i-4", ATTACK + timedelta(hours=4), "bulk_export", "u-nobody"),
    ]
    ev = evaluate(incidents, LABELS)
    assert ev.recall == {"account_takeover": (1, 2), "dormant_account": (1, 1)}
    assert ev.missed == ["account_takeover sc-2 (u-two)"]
    assert (ev.incidents, ev.true_incidents, ev.false_incidents) == (4, 2, 2)
    assert ev.precision == 0.5
    assert ev.false_by_hard_negative == {"business_trip": 1}
    # Each false incident is named, so a reader can look it up.
    named = [f.split(":")[0] for f in ev.false_list]
    assert named == ["account_takeover i-3 (u-traveller)", "bulk_export i-4 (u-nobody)"]
    assert ev.as_dict()["false"] == ev.false_list
    # Two false incidents in 7 days at 50 tenants: 2 / 7 * 25 / 50 per day per 25 tenants.
    assert abs(ev.false_per_day_per_25_tenants - 2 / 7 / 2) < 1e-9
    assert ev.time_to_detect_s == {"account_takeover": [120.0], "dormant_account": [360.0]}
    figures = ev.as_dict()
    assert figures["median_time_to_detect_s_by_kind"] == {"account_takeover": 120.0, "dormant_account": 360.0}
    assert figures["p95_time_to_detect_s"] == 120.0 + 0.95 * 240.0
    assert "p95" in ev.table()


def test_an_earlier_incident_about_the_same_actor_is_not_an_early_catch() -> None:
    # Opened a day before the attack for something else: it neither detects sc-1 nor, having
    # opened before the judged window, counts as a false incident of it.
    early = incident("i-0", CLEAN_UNTIL - timedelta(hours=6), "slow_exfiltration", "u-one")
    ev = evaluate([early], LABELS)
    assert ev.recall["account_takeover"] == (0, 2)
    assert (ev.incidents, ev.false_incidents) == (0, 0)
    # Evidence shared with the attack makes it a detection whenever it opened.
    shared = incident("i-0", CLEAN_UNTIL - timedelta(hours=6), "slow_exfiltration", "u-one", ["e-1"])
    assert evaluate([shared], LABELS).recall["account_takeover"] == (1, 2)


def test_a_backtest_judges_with_the_key_its_model_was_trained_with(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Without a configured pseudonym key the backtest makes one up; the replay must use that same
    key, or every trained baseline is ignored and the figures are those of an untrained model."""
    from breachwatch.core.settings import load_settings
    from breachwatch.devkit.backtest import backtest_dump
    from breachwatch.devkit.simulate import simulate

    dump = tmp_path / "dump"
    simulate(dump, seed=3, days=10, tenants=5, attack_days=3)
    truth = json.loads((dump / "labels.json").read_text())
    settings = load_settings(pseudonym_key=None)
    with caplog.at_level(logging.WARNING):
        result = backtest_dump(settings, dump, truth, datetime.fromisoformat(truth["clean_until"]))
    assert "learning online only" not in caplog.text
    assert result.as_dict()["recall"]
