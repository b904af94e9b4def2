"""The Prometheus alerting rules shipped in ``deploy/prometheus``: every expression is valid
PromQL and reads only metrics the service serves (a renamed metric would silence an alert), and,
where Prometheus's promtool is installed, the rules pass their unit tests (which alert fires on
which series, and when)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest

from breachwatch.core.settings import Settings
from breachwatch.runtime import app
from breachwatch.runtime.metrics import ServiceCollector
from breachwatch.runtime.service import Service

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "breachwatch-alerts.yml"
# The sample names each metric type puts on the page (a counter's TYPE line already ends in _total).
SUFFIXES = {"counter": ("",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}


def served_names(page: str) -> set[str]:
    """Every sample name the page can hold, from its TYPE lines (families without samples yet,
    such as dead letters before the first one, are there too)."""
    names: set[str] = set()
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", page, re.MULTILINE):
        names.update(name + suffix for suffix in SUFFIXES[kind])
    return names


def metrics_read(expr: str) -> set[str]:
    names: set[str] = set()

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            names.add(node.name)

    promql_parser.walk(promql_parser.parse(expr), visit)
    return names


def test_every_alert_is_valid_promql_over_metrics_the_service_serves(
    bw_settings: Settings, kafka_bootstrap: str
) -> None:
    service = Service(bw_settings, kafka_bootstrap, app.build_pipeline(bw_settings, app.database(bw_settings)))
    try:
        registry = CollectorRegistry()
        registry.register(ServiceCollector(service))
        served = served_names(generate_latest(registry).decode())
    finally:
        service.consumer.close()
        service.refs.close()
        service.producer.close()
    assert "breachwatch_consumer_lag" in served and "breachwatch_dead_letters_total" in served

    rules = [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]
    assert len({r["alert"] for r in rules}) == len(rules) >= 6
    for rule in rules:
        read = metrics_read(rule["expr"])  # raises on invalid PromQL
        assert read and read <= served, f"{rule['alert']} reads {sorted(read - served)}, which /metrics lacks"
        assert rule["labels"]["severity"] in {"critical", "warning"}
        assert rule["annotations"]["summary"]


def test_a_misspelt_metric_is_caught() -> None:
    served = served_names("# TYPE breachwatch_findings_total counter\n# TYPE breachwatch_batch_seconds histogram\n")
    assert metrics_read("rate(breachwatch_findings_total[5m]) > 0") <= served
    assert not metrics_read("rate(breachwatch_finding_total[5m]) > 0") <= served
    assert metrics_read("histogram_quantile(0.9, rate(breachwatch_batch_seconds_bucket[5m]))") <= served


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Prometheus) is not installed")
def test_the_rules_pass_their_promtool_unit_tests() -> None:
    done = subprocess.run(
        ["promtool", "test", "rules", RULES.with_name("breachwatch-alerts.test.yml").name],
        cwd=RULES.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
