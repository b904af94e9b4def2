"""The console as a container runs it: JSON log lines only (uvicorn's included), answering
``breachwatch health`` and the containers' light probe (``python -m breachwatch.probe``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from breachwatch.devkit.local_kafka import free_port


def breachwatch(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "breachwatch", *args], env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.slow
def test_console_logs_only_ecs_json_and_answers_health_checks(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("BREACHWATCH_")},
        "BREACHWATCH_DB_URL": f"sqlite:///{tmp_path / 'bw.db'}",
        "BREACHWATCH_CONSOLE_HOST": "0.0.0.0",
        "BREACHWATCH_CONSOLE_PORT": str(port),
        "BREACHWATCH_LOG_FORMAT": "json",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "breachwatch", "console"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).json() == {"status": "alive"}
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and proc.poll() is None, "the console never answered"
                time.sleep(0.2)
        ready = breachwatch("health", "console", "--ready", env=env)
        assert ready.returncode == 0 and json.loads(ready.stdout) == {"status": "ready"}, ready.stderr
        assert breachwatch("health", "console", env=env).returncode == 0
        # The container health check's light probe asks the same address, from the environment alone.
        light = subprocess.run(
            [sys.executable, "-m", "breachwatch.probe", "console", "--ready"], env=env, capture_output=True, text=True
        )
        assert light.returncode == 0 and json.loads(light.stdout) == {"status": "ready"}
        assert subprocess.run([sys.executable, "-m", "breachwatch.probe", "run"], env=env).returncode == 2
        no_port = breachwatch("health", "run", env=env)
        assert no_port.returncode == 2 and "BREACHWATCH_METRICS_PORT is not set" in no_port.stderr
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    docs = [json.loads(line) for line in err.decode().splitlines() if line.strip()]  # fails on any plain line
    messages = [d["message"] for d in docs]
    assert any(m.startswith("no users yet") for m in messages)
    assert f"console on http://0.0.0.0:{port}/" in messages
    assert any(d["log"]["logger"] == "uvicorn.error" and "Application startup complete" in d["message"] for d in docs)
    probes = [d for d in docs if d["log"]["logger"] == "uvicorn.access" and d["url"]["path"] == "/readyz"]
    assert probes and probes[0]["http"]["response"]["status_code"] == 200
