"""docker-compose.yml and the Prometheus files in deploy/ cannot be run here (no Docker), so
what can drift is checked instead: every setting the services are given exists and is valid,
every file mounted from the checkout exists, and Prometheus scrapes the port the service
serves its metrics on and loads rules that exist."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from breachwatch.core.settings import ENV_PREFIX, Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
# ${NAME:-default} as compose substitutes it when NAME is unset.
SUBSTITUTION = re.compile(r"\$\{[A-Z_][A-Z0-9_]*(?::?-([^}]*))?\}")


def environment(service: str) -> dict[str, str]:
    env: dict[str, Any] = COMPOSE["services"][service].get("environment", {})
    return {k: SUBSTITUTION.sub(lambda m: m.group(1) or "", str(v)) for k, v in env.items()}


@pytest.mark.parametrize("service", ["breachwatch", "console"])
def test_compose_gives_the_services_only_valid_settings(service: str, monkeypatch: pytest.MonkeyPatch) -> None:
    env = environment(service)
    known = {ENV_PREFIX + name.upper() for name in Settings.model_fields} | {"KAFKA_BOOTSTRAP"}
    assert set(env) <= known, f"not settings: {sorted(set(env) - known)}"
    for name in list(known):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        if value:  # an empty secret is the operator's to fill in (.env)
            monkeypatch.setenv(name, value)
    load_settings()  # raises ConfigError naming the variable


def test_compose_mounts_only_files_of_the_checkout_that_exist() -> None:
    for name, service in COMPOSE["services"].items():
        assert "image" in service or (ROOT / service["build"]).is_dir(), name
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name} mounts {source}, which is missing"


def test_prometheus_scrapes_the_metrics_port_and_loads_rules_that_exist() -> None:
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    for rule_file in config["rule_files"]:
        assert (PROMETHEUS_DIR / rule_file).is_file(), rule_file
    mount = next(v for v in COMPOSE["services"]["prometheus"]["volumes"] if v.startswith("./deploy/prometheus:"))
    assert mount.split(":")[1] == "/etc/prometheus"
    targets = [t for job in config["scrape_configs"] for c in job["static_configs"] for t in c["targets"]]
    port = environment("breachwatch")["BREACHWATCH_METRICS_PORT"]
    assert targets == [f"breachwatch:{port}"]


def test_the_image_carries_the_service_and_nothing_of_the_development_kit() -> None:
    """Every folder the service's wheel is built from is copied in; the development kit and
    the benchmarks are not; dependencies come from the hashed lock."""
    import tomllib

    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    copied = {line.split()[1].rstrip("/") for line in dockerfile.splitlines() if line.startswith("COPY ")}
    folders = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"].values())
    assert folders <= copied
    assert not {"devkit", "bench", "tests", "."} & copied
    assert "--require-hashes -r /tmp/service.lock" in dockerfile
    assert "USER breachwatch" in dockerfile
