"""docker-compose.yml, the Dockerfile and the Prometheus files in deploy/ cannot be run here (no
Docker), so what can drift is checked instead: every setting the services are given exists and
is valid, every file mounted from the checkout exists, Prometheus scrapes the address the
service's metrics are bound to, the health checks ask the address each process listens on, and
the image is pinned, unprivileged and carries the service only."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from breachwatch import probe
from breachwatch.core.settings import Settings, known_variables, load_settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())  # resolves the <<: merges
DOCKERFILE = (ROOT / "Dockerfile").read_text(encoding="utf-8")
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
# ${NAME:-default} as compose substitutes it when NAME is unset.
SUBSTITUTION = re.compile(r"\$\{[A-Z_][A-Z0-9_]*(?::?-([^}]*))?\}")
EVERY_ADDRESS = {"0.0.0.0", "::"}


def image_env() -> dict[str, str]:
    """The ENV defaults the Dockerfile gives every container of the image."""
    env: dict[str, str] = {}
    for instruction in re.findall(r"^ENV (.+?)(?<!\\)$", DOCKERFILE, flags=re.MULTILINE | re.DOTALL):
        for pair in shlex.split(instruction.replace("\\\n", " ")):
            name, _, value = pair.partition("=")
            env[name] = value
    return env


def environment(service: str) -> dict[str, str]:
    """What a compose service's process sees: the image's defaults, then the service's own."""
    env: dict[str, Any] = COMPOSE["services"][service].get("environment", {})
    given = {k: SUBSTITUTION.sub(lambda m: m.group(1) or "", str(v)) for k, v in env.items()}
    return {**{k: v for k, v in image_env().items() if k.startswith("BREACHWATCH_")}, **given}


def settings_of(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in list(known_variables()) + ["KAFKA_BOOTSTRAP"]:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        if value:  # an empty secret is the operator's to fill in (.env)
            monkeypatch.setenv(name, value)
    return load_settings()  # raises ConfigError naming a bad or unknown variable


@pytest.mark.parametrize("service", ["breachwatch", "console"])
def test_compose_gives_the_services_only_valid_settings(service: str, monkeypatch: pytest.MonkeyPatch) -> None:
    env = environment(service)
    assert set(env) <= known_variables() | {"KAFKA_BOOTSTRAP"}, f"not settings: {sorted(set(env) - known_variables())}"
    settings_of(env, monkeypatch)


def test_compose_mounts_only_files_of_the_checkout_that_exist() -> None:
    for name, service in COMPOSE["services"].items():
        assert "image" in service or (ROOT / service["build"]).is_dir(), name
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name} mounts {source}, which is missing"


def test_prometheus_scrapes_the_address_the_metrics_are_bound_to(monkeypatch: pytest.MonkeyPatch) -> None:
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    for rule_file in config["rule_files"]:
        assert (PROMETHEUS_DIR / rule_file).is_file(), rule_file
    mount = next(v for v in COMPOSE["services"]["prometheus"]["volumes"] if v.startswith("./deploy/prometheus:"))
    assert mount.split(":")[1] == "/etc/prometheus"
    targets = [t for job in config["scrape_configs"] for c in job["static_configs"] for t in c["targets"]]
    assert targets
    for target in targets:
        host, _, port = target.rpartition(":")
        assert host in COMPOSE["services"], f"{target}: no compose service {host}"
        settings = settings_of(environment(host), monkeypatch)
        assert settings.metrics_port == int(port), f"{target}: {host} serves metrics on {settings.metrics_port}"
        # Another container reaches it only if it listens on the container's own addresses.
        assert settings.metrics_host in EVERY_ADDRESS | {host}, f"{host} binds its metrics to {settings.metrics_host}"


@pytest.mark.parametrize(("service", "process"), [("breachwatch", "run"), ("console", "console")])
def test_compose_health_checks_ask_each_process_where_it_listens(
    service: str, process: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = COMPOSE["services"][service]
    command = spec.get("command", ["run"])
    assert command[0] == process
    test = spec["healthcheck"]["test"]
    assert test == ["CMD", "python", "-m", "breachwatch.probe", process, "--ready"]
    env = environment(service)
    settings = settings_of(env, monkeypatch)
    for name, value in env.items():  # the probe reads the same environment
        monkeypatch.setenv(name, value)
    asked = probe._address(process, "/readyz")
    if process == "run":
        assert asked == probe.url(settings.metrics_host, settings.metrics_port, "/readyz")
    else:
        assert asked == probe.url(settings.console_host, settings.console_port, "/readyz")
        assert "--host" not in command and "--port" not in command  # the probe knows only the settings
    assert asked is not None and asked.startswith("http://127.0.0.1:")


def test_the_probe_assumes_the_settings_defaults() -> None:
    fields = Settings.model_fields
    assert probe.DEFAULT_HOST == fields["console_host"].default == fields["metrics_host"].default
    assert fields["console_port"].default == probe.DEFAULT_CONSOLE_PORT


def test_the_image_is_pinned_unprivileged_and_keeps_its_data_in_a_volume(monkeypatch: pytest.MonkeyPatch) -> None:
    assert re.search(r"^FROM python:3\.11\.\d+-slim@sha256:[0-9a-f]{64}$", DOCKERFILE, flags=re.MULTILINE)
    assert len(re.findall(r"^FROM ", DOCKERFILE, flags=re.MULTILINE)) == 1
    user = re.findall(r"^USER (\d+):(\d+)$", DOCKERFILE, flags=re.MULTILINE)
    assert user and user[-1][0] != "0", "a numeric non-root user (so runAsNonRoot can check it)"
    assert f"chown -R {user[-1][0]}:{user[-1][1]} /data" in DOCKERFILE
    assert 'VOLUME ["/data"]' in DOCKERFILE
    settings = settings_of(image_env(), monkeypatch)
    for where in (settings.outbox_dir, settings.cache_dir, Path(settings.db_url.removeprefix("sqlite:///"))):
        assert Path(where).is_relative_to("/data"), where
    assert settings.metrics_host in EVERY_ADDRESS and settings.metrics_port is not None
    healthcheck = re.search(r"^HEALTHCHECK .* CMD (\[.*\])$", DOCKERFILE, flags=re.MULTILINE)
    assert healthcheck and yaml.safe_load(healthcheck.group(1)) == ["python", "-m", "breachwatch.probe", "run"]


def test_the_image_carries_the_service_and_nothing_of_the_development_kit() -> None:
    """Every folder the service's wheel is built from is copied in; the development kit and
    the benchmarks are not; dependencies come from the hashed lock."""
    copied = {line.split()[1].rstrip("/") for line in DOCKERFILE.splitlines() if line.startswith("COPY ")}
    folders = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"].values())
    assert folders <= copied
    assert not {"devkit", "bench", "tests", "."} & copied
    assert "--require-hashes -r /tmp/service.lock" in DOCKERFILE
