"""``breachwatch run`` with BREACHWATCH_LOG_FORMAT=json, on a real broker: every line it writes
to stderr is an ECS JSON object, the start-up report on Kafka included."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from breachwatch.core.settings import Settings
from breachwatch.streams.kafka_client import ensure_topics


def test_run_logs_only_json_lines(bw_settings: Settings, kafka_bootstrap: str) -> None:
    ensure_topics(bw_settings, kafka_bootstrap)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("BREACHWATCH_") and k != "KAFKA_BOOTSTRAP"},
        **bw_settings.as_env("kafka_bootstrap", "topic_prefix", "db_url", "outbox_dir"),
        "BREACHWATCH_GROUP_ID": f"{bw_settings.topic_prefix}json",
        "BREACHWATCH_LOG_FORMAT": "json",
    }
    done = subprocess.run(
        [sys.executable, "-m", "breachwatch", "run", "--until-caught-up"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    docs = [json.loads(line) for line in done.stderr.splitlines() if line.strip()]  # fails on a plain line
    messages = [d["message"] for d in docs]
    assert any(m.startswith(f"Kafka at {kafka_bootstrap}: PLAINTEXT, 1 broker(s)") for m in messages), messages
    assert any(m.startswith("database schema migrated from nothing to") for m in messages)
    assert not any("Running upgrade" in m for m in messages)  # Alembic's steps are DEBUG
    assert all(d["service"] == {"name": "breachwatch"} and "log.level" in d for d in docs)
    assert json.loads(done.stdout)["consumed"] == {}  # stdout carries only the result
