"""What an event costs to judge, as a consumer measures it: the weights the group balances by."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from breachwatch.core.events import ACCESS, AUTH, LOGS, AuthEvent, LogRecord
from breachwatch.core.settings import load_settings
from breachwatch.runtime import app
from breachwatch.streams.units import COST_HALF_AFTER, COST_MIN_EVENTS, EVENT_COST, CostMeter, unit_of


def test_the_default_costs_hold_until_both_kinds_are_measured() -> None:
    meter = CostMeter()
    meter.add("actor", COST_MIN_EVENTS, 1.0)
    meter.add("log", COST_MIN_EVENTS - 1, 1.0)
    assert meter.costs() == EVENT_COST
    assert set(meter.per_event()) == {"actor"}
    meter.add("log", 1, 0.0)
    # Actor events: 50 us each; log records: 50 us each as well.
    assert meter.costs() == pytest.approx({ACCESS: 1.0, AUTH: 1.0, LOGS: 1.0})


def test_the_measured_ratio_follows_a_workload_that_changes_and_stays_bounded() -> None:
    meter = CostMeter()
    meter.add("actor", 100_000, 4.0)  # 40 us
    meter.add("log", 100_000, 2.0)  # 20 us
    assert meter.costs()[ACCESS] == pytest.approx(2.0)
    # The model is dropped: actor events now cost 10 us. Older figures fade as more arrive.
    for _ in range(20):
        meter.add("actor", 100_000, 1.0)
        meter.add("log", 100_000, 2.0)
    assert meter.events["actor"] <= COST_HALF_AFTER
    assert meter.costs()[ACCESS] == pytest.approx(0.5, rel=0.02)
    meter.add("actor", 10_000_000, 1e6)  # however lopsided a measurement
    assert meter.costs()[ACCESS] == 10.0


def test_the_pipeline_counts_what_each_unit_kind_took(tmp_path: Path) -> None:
    settings = load_settings(db_url=f"sqlite:///{tmp_path}/bw.db")
    pipeline = app.build_pipeline(settings, app.database(settings), notify=False)
    t0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
    logins = [
        AuthEvent.model_validate(
            {
                "event_id": f"l-{n}",
                "ts": (t0 + timedelta(seconds=n)).isoformat(),
                "actor_id": f"u-{n % 7}",
                "actor_type": "customer_user",
                "actor_tenant": "t-rhein",
                "action": "login",
                "outcome": "success",
                "ip": "198.51.100.7",
            }
        )
        for n in range(30)
    ]
    records = [
        LogRecord.model_validate(
            {
                "event_id": f"g-{n}",
                "ts": (t0 + timedelta(seconds=n)).isoformat(),
                "service": "api",
                "level": "INFO",
                "message": f"request {n} served",
            }
        )
        for n in range(12)
    ]
    pipeline.detect({unit_of(AUTH, 1): logins, unit_of(LOGS, 1): records})
    assert pipeline.costs.events == {"actor": 30, "log": 12}
    assert pipeline.costs.seconds["actor"] > 0 and pipeline.costs.seconds["log"] > 0
