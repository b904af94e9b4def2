"""Every benchmark, run as a user runs it, at a tiny size: it must finish, exit 0 and print its
one JSON line last, so none can rot unnoticed between the runs that measure for real."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# (module, arguments, the fields its JSON line must carry), sizes chosen to take seconds.
OFFLINE = [
    (
        "memory",
        ["--actors", "300", "--mature-days", "0"],
        ("results", "checkpoints"),
    ),
    ("quality", ["--run", "3:5", "--days", "10", "--attack-days", "3"], ("runs", "worst_recall", "min_precision")),
]
WITH_BROKER = [
    (
        "throughput",
        ["--tenants", "2", "--days", "3", "--partitions", "1", "--jobs", "1", "--no-model"],
        ("bare_eps", "run_eps", "replay_eps", "ratio", "run_cpu_us_per_event", "replay_cpu_us_per_event_one_process"),
    ),
    ("scaleout", ["--tenants", "2", "--days", "3", "--partitions", "2"], ("one_eps", "two_eps", "speedup")),
    (
        "latency",
        ["--rate", "200", "--seconds", "6", "--attacks-per-second", "2", "--tenants", "2", "--partitions", "1"],
        ("p50_s", "p99_s", "missing", "service_cpu_share"),
    ),
    ("soak", ["--kills", "1", "--events", "2000", "--partitions", "1"], ("duplicates", "missing", "incidents")),
]


@pytest.fixture(scope="module")
def bench_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder of cached dumps and models for every benchmark in this module."""
    return tmp_path_factory.mktemp("bench")


def _run(module: str, args: list[str], bench_dir: Path, **env: str) -> dict[str, object]:
    result = subprocess.run(
        [sys.executable, "-m", f"bench.{module}", *args],
        cwd=ROOT,
        env={**os.environ, "BREACHWATCH_BENCH_DIR": str(bench_dir), **env},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    last = result.stdout.strip().splitlines()[-1]
    return json.loads(last)


@pytest.mark.slow
@pytest.mark.parametrize(("module", "args", "fields"), OFFLINE, ids=[m for m, *_ in OFFLINE])
def test_offline_benchmark_runs_at_a_tiny_size(
    module: str, args: list[str], fields: tuple[str, ...], bench_dir: Path
) -> None:
    line = _run(module, args, bench_dir)
    assert set(fields) <= set(line), line


@pytest.mark.slow
@pytest.mark.parametrize(("module", "args", "fields"), WITH_BROKER, ids=[m for m, *_ in WITH_BROKER])
def test_broker_benchmark_runs_at_a_tiny_size(
    module: str, args: list[str], fields: tuple[str, ...], bench_dir: Path, kafka_bootstrap: str
) -> None:
    line = _run(module, args, bench_dir, KAFKA_BOOTSTRAP=kafka_bootstrap)
    assert line["bench"] == module and set(fields) <= set(line), line
