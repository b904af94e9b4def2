"""``bench.logs_cost`` at a tiny size: it runs as a user runs it, exits 0 and prints its JSON line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_logs_cost_runs_tiny_and_prints_its_json_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench.logs_cost", "--tenants", "2", "--days", "3", "--repeat", "1", "--limit", "3000"],
        cwd=ROOT,
        env={**os.environ, "BREACHWATCH_BENCH_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    last = json.loads(result.stdout.strip().splitlines()[-1])
    assert last["bench"] == "logs_cost"
    assert last["log_records"] == 3000
    assert set(last["us_per_record"]) == {"mine", "online", "history", "trained"}
    assert all(v > 0 for v in last["us_per_record"].values())
    assert len(last["digest"]["online"]) == 16
