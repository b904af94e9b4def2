"""The simulator's opt-in scenarios (``simulate(extra_kinds=True)``): each opens an incident of
its own kind through the real pipeline (a model trained on the clean days, then a replay), and
they leave every other line of the dump as it was."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from pydantic import SecretStr

from breachwatch.cli import main
from breachwatch.core.settings import load_settings
from breachwatch.devkit.simulate import EXTRA_KINDS, LABELS_FILE, simulate
from breachwatch.incidents.model import IncidentOut
from breachwatch.runtime import app
from breachwatch.runtime.replay import replay
from breachwatch.runtime.training import train_from_dump

SIZE: dict[str, int] = {"seed": 5, "days": 10, "tenants": 5, "attack_days": 3}
KEY = "extra-kinds-" + "7" * 20  # a pseudonym key for this test alone


Judged = tuple[dict[str, Any], list[IncidentOut]]


def _judge(work: Path, *, extra_kinds: bool) -> Judged:
    """Simulate, train on the clean days, replay: the labels and the incidents."""
    dump = work / "dump"
    simulate(dump, extra_kinds=extra_kinds, **SIZE)
    labels = json.loads((dump / LABELS_FILE).read_text())
    settings = load_settings(outbox_dir=work / "outbox", partitions=2, pseudonym_key=SecretStr(KEY))
    model = train_from_dump(settings, dump, datetime.fromisoformat(labels["clean_until"]), KEY.encode())
    pipeline = app.build_pipeline(settings, app.database(settings, "sqlite://"), model, notify=False)
    replay(dump, pipeline, partitions=2, max_bytes=settings.max_message_bytes, jobs=1)
    return labels, pipeline.store.incidents()


@pytest.fixture(scope="module")
def judged(tmp_path_factory: pytest.TempPathFactory) -> Judged:
    return _judge(tmp_path_factory.mktemp("extra"), extra_kinds=True)


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Judged:
    return _judge(tmp_path_factory.mktemp("plain"), extra_kinds=False)


def _caught(labels: dict[str, Any], incidents: list[IncidentOut], kind: str) -> list[str]:
    """The scenarios of ``kind`` that an incident named by ``kind`` holds events of."""
    scenarios = [s for s in labels["scenarios"] if s["kind"] == kind]
    assert len(scenarios) >= 2, f"the simulator placed {len(scenarios)} {kind} scenarios"
    return [
        s["scenario_id"]
        for s in scenarios
        if any(i.kind == kind and set(s["event_ids"]) & set(i.evidence_event_ids) for i in incidents)
    ]


@pytest.mark.parametrize("kind", ["brute_force", "error_burst"])
def test_each_scenario_opens_an_incident_of_its_kind(judged: Judged, kind: str) -> None:
    labels, incidents = judged
    scenarios = [s["scenario_id"] for s in labels["scenarios"] if s["kind"] == kind]
    assert _caught(labels, incidents, kind) == scenarios


@pytest.mark.xfail(
    strict=True,
    reason="in this small dump (10 days, 5 tenants) the scenario's hour scores below the level the"
    " population model's training peaks extrapolate to once a quarter; on 21-day dumps of"
    " 15-40 tenants it opens anomalous_access incidents for some such scenarios (README, Benchmarks)",
)
def test_an_hour_unlike_any_opens_an_anomalous_access_incident(
    judged: Judged,
) -> None:
    labels, incidents = judged
    assert _caught(labels, incidents, "anomalous_access")


def test_the_other_scenarios_keep_their_incidents(judged: Judged, plain: Judged) -> None:
    """No extra scenario joins, renames or hides an incident of another scenario."""

    def kinds_by_scenario(j: Judged) -> dict[tuple[str, str, str], list[str]]:
        labels, incidents = j
        return {
            (s["kind"], s["start"], s["description"]): sorted(
                i.kind for i in incidents if set(s["event_ids"]) & set(i.evidence_event_ids)
            )
            for s in labels["scenarios"]
            if s["kind"] not in EXTRA_KINDS
        }

    want = kinds_by_scenario(plain)
    assert sum(map(len, want.values())) >= 15  # the comparison is about something
    assert kinds_by_scenario(judged) == want


def test_the_scenarios_add_to_the_dump_and_change_nothing_else(tmp_path: Path) -> None:
    """Every line of the plain dump is in the dump with the extra scenarios (the golden-verdict
    test pins the plain dump's verdicts), and only the extra kinds' labels are new."""
    plain = simulate(tmp_path / "plain", **SIZE)
    extra = simulate(tmp_path / "extra", extra_kinds=True, **SIZE)
    for name in ("erp.access.jsonl", "erp.auth.jsonl", "erp.logs.jsonl", "erp.tickets.jsonl", "erp.tenants.jsonl"):
        before = (tmp_path / "plain" / name).read_text().splitlines()
        after = set((tmp_path / "extra" / name).read_text().splitlines())
        assert [line for line in before if line not in after] == [], name
    assert not set(EXTRA_KINDS) & set(plain.scenarios)
    assert {k: n for k, n in extra.scenarios.items() if k not in EXTRA_KINDS} == plain.scenarios
    assert all(extra.scenarios[k] >= 2 for k in EXTRA_KINDS)
    labelled = json.loads((tmp_path / "extra" / LABELS_FILE).read_text())["scenarios"]
    assert {s["kind"] for s in labelled} - set(plain.scenarios) == set(EXTRA_KINDS)


def test_the_command_line_asks_for_them_by_a_flag(tmp_path: Path) -> None:
    small = ["--seed", "5", "--days", "10", "--tenants", "5", "--attack-days", "3"]
    runs = {}
    for flag in ([], ["--extra-kinds"]):
        result = CliRunner().invoke(main, ["simulate", "--out", str(tmp_path / f"d{len(flag)}"), *small, *flag])
        assert result.exit_code == 0, result.output
        runs[bool(flag)] = json.loads(result.stdout)["scenarios"]
    assert not set(EXTRA_KINDS) & set(runs[False])
    assert all(runs[True][k] >= 2 for k in EXTRA_KINDS)
