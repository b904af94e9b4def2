"""The Helm chart (deploy/helm/breachwatch): ``helm lint``, every rendered manifest valid against
the Kubernetes schemas (and the Prometheus Operator's) by kubeconform, and what the manifests
must say for BreachWatch to run: settings that exist, secrets by reference only, the pod name as
the static group instance id, probes on the health endpoints, the alerting rules unchanged.

The tools and schemas come from ``scripts/install_deploy_tools.sh`` (``scripts/setup.sh --test``)."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from breachwatch.core.settings import SECRET_FIELDS, known_variables, load_settings

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "breachwatch"
RULES = ROOT / "deploy" / "prometheus" / "breachwatch-alerts.yml"
CRD_SCHEMAS = Path(__file__).parent / "k8s-schemas"
TOOLS = dict(
    line.split("=", 1)
    for line in (ROOT / "scripts" / "deploy-tools.env").read_text().splitlines()
    if line and not line.startswith("#")
)
K8S_VERSIONS = shlex.split(TOOLS["K8S_VERSIONS"])[0].split()
BOOTSTRAP = ["--set", "settings.KAFKA_BOOTSTRAP=kafka-1.example:9093"]
WITH_OPERATOR = ["--api-versions", "monitoring.coreos.com/v1/PodMonitor"]


def _missing(what: str) -> None:
    """Skip on a developer's machine without the tool; fail on CI, which must have it."""
    message = f"{what} (scripts/install_deploy_tools.sh installs it)"
    if os.environ.get("CI"):
        pytest.fail(f"{message}; CI is set: CI must provide it", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="module")
def cache() -> Path:
    return load_settings().cache_dir


def _tool(cache: Path, name: str) -> str:
    found = cache / "tools" / "bin" / name
    if found.is_file():
        return str(found)
    on_path = shutil.which(name)
    if on_path is None:
        _missing(f"`{name}` is not installed")
    return str(on_path)


@pytest.fixture(scope="module")
def helm(cache: Path) -> str:
    return _tool(cache, "helm")


@pytest.fixture(scope="module")
def kubeconform(cache: Path) -> str:
    return _tool(cache, "kubeconform")


@pytest.fixture(scope="module")
def k8s_schemas(cache: Path) -> Path:
    folder = cache / "k8s-schemas"
    for version in K8S_VERSIONS:
        if not (folder / f"v{version}-local-strict" / "_definitions.json").is_file():
            _missing(f"the Kubernetes {version} JSON schemas are not in {folder}")
    return folder


def run(cmd: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=120, check=False)


def render(helm: str, *args: str) -> str:
    done = run([helm, "template", "ci", str(CHART), *args])
    assert done.returncode == 0, done.stderr
    return done.stdout


def manifests(helm: str, *args: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(render(helm, *args)) if doc]


def validate(kubeconform: str, k8s_schemas: Path, text: str, version: str) -> subprocess.CompletedProcess[str]:
    return run(
        [
            kubeconform,
            "-strict",
            "-summary",
            "-kubernetes-version",
            version,
            "-schema-location",
            f"{k8s_schemas}/{{{{ .NormalizedKubernetesVersion }}}}-local{{{{ .StrictSuffix }}}}/"
            "{{ .ResourceKind }}{{ .KindSuffix }}.json",
            "-schema-location",
            f"{CRD_SCHEMAS}/{{{{ .Group }}}}/{{{{ .ResourceKind }}}}_{{{{ .ResourceAPIVersion }}}}.json",
            "-",
        ],
        stdin=text,
    )


def find(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    [doc] = [d for d in docs if d["kind"] == kind]
    return doc


def container(workload: dict[str, Any]) -> dict[str, Any]:
    [one] = workload["spec"]["template"]["spec"]["containers"]
    return one


def plain_env(c: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in c["env"] if "value" in e}


@pytest.mark.parametrize("monitoring", ["auto", "true"])
def test_the_chart_lints(helm: str, monitoring: str) -> None:
    done = run([helm, "lint", "--strict", str(CHART), *BOOTSTRAP, "--set", f"monitoring.enabled={monitoring}"])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in done.stdout


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_rendered_manifest_is_valid_for_kubernetes(
    helm: str, kubeconform: str, k8s_schemas: Path, version: str
) -> None:
    text = render(helm, *BOOTSTRAP, *WITH_OPERATOR, "--kube-version", version)
    done = validate(kubeconform, k8s_schemas, text, version)
    assert done.returncode == 0, done.stdout + done.stderr
    kinds = sorted(d["kind"] for d in yaml.safe_load_all(text) if d)
    assert kinds == ["Deployment", "PodMonitor", "PrometheusRule", "Service", "Service", "StatefulSet"]
    # Every one was checked against a schema: none skipped for want of one.
    assert f"Valid: {len(kinds)}, Invalid: 0, Errors: 0, Skipped: 0" in done.stdout


def test_the_validator_rejects_what_kubernetes_would(helm: str, kubeconform: str, k8s_schemas: Path) -> None:
    docs = manifests(helm, *BOOTSTRAP, *WITH_OPERATOR)
    container(find(docs, "StatefulSet"))["ports"][0]["containerPortt"] = 9400
    find(docs, "PrometheusRule")["spec"]["groups"][0]["rules"][0]["for"] = "ten minutes"
    done = validate(kubeconform, k8s_schemas, yaml.safe_dump_all(docs), K8S_VERSIONS[-1])
    assert done.returncode == 1
    assert "additional properties 'containerPortt' not allowed" in done.stdout
    assert "/spec/groups/0/rules/0/for" in done.stdout


def test_run_is_a_statefulset_whose_pod_name_is_the_group_instance_id(helm: str) -> None:
    run_set = find(manifests(helm, *BOOTSTRAP), "StatefulSet")
    c = container(run_set)
    assert c["args"] == ["run"]
    [instance] = [e for e in c["env"] if e["name"] == "BREACHWATCH_GROUP_INSTANCE_ID"]
    assert instance["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert run_set["spec"]["podManagementPolicy"] == "Parallel"
    assert run_set["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= 30  # time to drain


def test_processes_get_only_known_valid_settings_and_secrets_by_reference(
    helm: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = manifests(helm, *BOOTSTRAP, "--set", "secrets.keys.BREACHWATCH_MODEL_SIGNING_KEY=model-key")
    secret_names = {f"BREACHWATCH_{name.upper()}" for name in SECRET_FIELDS} | {"BREACHWATCH_DB_URL"}
    for workload in (find(docs, "StatefulSet"), find(docs, "Deployment")):
        env = container(workload)["env"]
        names = [e["name"] for e in env]
        assert len(names) == len(set(names)), names
        assert set(names) <= known_variables() | {"KAFKA_BOOTSTRAP"}
        by_ref = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in env if "secretKeyRef" in e.get("valueFrom", {})}
        assert {"BREACHWATCH_DB_URL", "BREACHWATCH_MODEL_SIGNING_KEY", "BREACHWATCH_CONSOLE_SECRET_KEY"} <= set(by_ref)
        assert all(ref["name"] == "breachwatch" for ref in by_ref.values())
        assert not secret_names & set(plain_env(container(workload))), "a secret given in plain text"
        for name in known_variables() | {"KAFKA_BOOTSTRAP"}:
            monkeypatch.delenv(name, raising=False)
        for name, value in plain_env(container(workload)).items():
            monkeypatch.setenv(name, value)
        load_settings()  # raises ConfigError naming a bad setting


def test_probes_ask_the_health_endpoints_where_each_process_listens(helm: str) -> None:
    docs = manifests(helm, *BOOTSTRAP, "--set", "run.metricsPort=9500", "--set", "console.port=8081")
    for kind, port_name, host, port in (
        ("StatefulSet", "metrics", "BREACHWATCH_METRICS_HOST", "BREACHWATCH_METRICS_PORT"),
        ("Deployment", "http", "BREACHWATCH_CONSOLE_HOST", "BREACHWATCH_CONSOLE_PORT"),
    ):
        c = container(find(docs, kind))
        env = plain_env(c)
        assert env[host] == "0.0.0.0"  # the kubelet probes the pod's address
        [declared] = [p for p in c["ports"] if p["name"] == port_name]
        assert str(declared["containerPort"]) == env[port] != ""
        assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port_name}
        assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port_name}
        assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        pod = find(docs, kind)["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10001
        assert "USER 10001:10001" in (ROOT / "Dockerfile").read_text()


def test_the_prometheus_operator_gets_a_pod_monitor_and_the_alerting_rules_unchanged(helm: str) -> None:
    assert (CHART / "files" / "breachwatch-alerts.yml").read_bytes() == RULES.read_bytes(), (
        "copy deploy/prometheus/breachwatch-alerts.yml to the chart's files/"
    )
    docs = manifests(helm, *BOOTSTRAP, *WITH_OPERATOR)
    rule = find(docs, "PrometheusRule")
    assert rule["spec"] == yaml.safe_load(RULES.read_text())
    monitor = find(docs, "PodMonitor")
    pods = find(docs, "StatefulSet")["spec"]["template"]["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= pods.items()
    assert monitor["spec"]["podMetricsEndpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "30s"}]
    # A cluster without the Operator gets neither (they would fail the install) unless asked.
    without = {d["kind"] for d in manifests(helm, *BOOTSTRAP)}
    assert not {"PodMonitor", "PrometheusRule"} & without
    forced = {d["kind"] for d in manifests(helm, *BOOTSTRAP, "--set", "monitoring.enabled=true")}
    assert {"PodMonitor", "PrometheusRule"} <= forced


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ([], "settings.KAFKA_BOOTSTRAP is required"),
        ([*BOOTSTRAP, "--set", "run.replicas=9"], "run.replicas (9) is more than twice BREACHWATCH_PARTITIONS (4)"),
        ([*BOOTSTRAP, "--set", "run.replicas=two"], "at '/run/replicas': got string, want integer"),
        ([*BOOTSTRAP, "--set", "settings.BREACHWATCH_partitions=4"], "'BREACHWATCH_partitions' does not match pattern"),
        ([*BOOTSTRAP, "--set", "monitoring.enabled=sometimes"], "at '/monitoring/enabled': value must be one of"),
    ],
)
def test_wrong_values_stop_the_install_naming_them(helm: str, args: list[str], error: str) -> None:
    done = run([helm, "template", "ci", str(CHART), *args])
    assert done.returncode != 0
    assert error in done.stderr
