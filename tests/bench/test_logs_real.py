"""``bench.logs_real`` at a tiny size: it runs end to end on what data is here and prints its JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.logs_real import main


def test_logs_real_runs_tiny_and_prints_its_json_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--max-lines", "400", "--max-sessions", "80", "--cost-records", "0"]) == 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last["bench"] == "logs_real"
    for name in ("bgl_2k", "hdfs"):
        result = last[name]
        assert result.get("skipped") or 0.0 <= result["detector"]["f1"] <= 1.0


def test_logs_real_skips_cleanly_without_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--bgl", str(tmp_path), "--hdfs", str(tmp_path), "--cost-records", "0"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0].startswith("skipped BGL_2k:")
    assert json.loads(out[-1]) == {"bench": "logs_real", "bgl_2k": {"skipped": True}, "hdfs": {"skipped": True}}
